/* latent: walks through a VAE's latent space, for interpolation strips.
 *
 *     float z[steps * L];
 *     latent_walk(mu_a, mu_b, L, steps, LATENT_SLERP, z);   // row s: step s of steps
 *     vae_decode(m, ws, z, steps, x);
 *
 * Pure arithmetic on caller-owned arrays: no allocation, no state.
 */
#ifndef LATENT_H
#define LATENT_H

typedef enum {
    LATENT_LERP = 0, /* the straight line from a to b */
    LATENT_SLERP     /* the great circle between the directions of a and b */
} latent_path;

/* z (steps, L): from a to b in steps points (steps >= 2), both ends exactly
 * a and b, bit for bit. LATENT_SLERP uses the usual sin-weighted form,
 * sin((1-t)w)/sin(w) a + sin(tw)/sin(w) b with w the angle between a and b
 * (so equal-norm ends keep their norm all the way), and falls back to the
 * straight line when a and b are (anti)parallel or one of them is zero. */
void latent_walk(const float *a, const float *b, int L, int steps, latent_path path, float *z);

#endif
