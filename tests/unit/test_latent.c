/* latent_walk: both ends bit for bit, lerp on the straight line, slerp on the
 * great circle (it keeps the norm of equal-norm ends, and differs from lerp
 * where it should), and slerp falling back to lerp when the ends are
 * parallel, antiparallel or zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "engine/latent.h"
#include "engine/rng.h"

#define L 16
#define STEPS 9

static double norm(const float *v)
{
    double s = 0;
    for (int k = 0; k < L; k++)
        s += (double)v[k] * v[k];
    return sqrt(s);
}

static void random_latent(rng_state *r, float *v)
{
    rng_normal_fill(r, v, L);
}

static void test_ends_exact(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 1);
    for (int trial = 0; trial < 50; trial++) {
        float a[L], b[L], z[STEPS * L];
        random_latent(&r, a);
        random_latent(&r, b);
        for (int path = LATENT_LERP; path <= LATENT_SLERP; path++) {
            for (int steps = 2; steps <= STEPS; steps++) {
                memset(z, 0xff, sizeof z);
                latent_walk(a, b, L, steps, (latent_path)path, z);
                assert_memory_equal(z, a, sizeof a);
                assert_memory_equal(z + (size_t)(steps - 1) * L, b, sizeof b);
            }
        }
    }
}

static void test_lerp_is_the_line(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 2);
    float a[L], b[L], z[STEPS * L];
    random_latent(&r, a);
    random_latent(&r, b);
    latent_walk(a, b, L, STEPS, LATENT_LERP, z);
    for (int s = 0; s < STEPS; s++) {
        double t = (double)s / (STEPS - 1);
        for (int k = 0; k < L; k++)
            assert_float_equal(z[s * L + k], (1 - t) * a[k] + t * b[k], 1e-6);
    }
}

static void test_slerp_keeps_the_norm(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 3);
    for (int trial = 0; trial < 50; trial++) {
        float a[L], b[L], z[STEPS * L];
        random_latent(&r, a);
        random_latent(&r, b);
        double scale = norm(a) / norm(b);
        for (int k = 0; k < L; k++)
            b[k] = (float)(b[k] * scale);
        latent_walk(a, b, L, STEPS, LATENT_SLERP, z);
        for (int s = 0; s < STEPS; s++)
            assert_float_equal(norm(z + s * L), norm(a), 1e-5 * norm(a));
    }
    /* Orthogonal unit ends: slerp's midpoint has norm 1, lerp's 1/sqrt(2). */
    float a[L] = {1}, b[L] = {0, 1}, zs[3 * L], zl[3 * L];
    latent_walk(a, b, L, 3, LATENT_SLERP, zs);
    latent_walk(a, b, L, 3, LATENT_LERP, zl);
    assert_float_equal(norm(zs + L), 1.0, 1e-6);
    assert_float_equal(norm(zl + L), sqrt(0.5), 1e-6);
    assert_float_equal(zs[L], sqrt(0.5), 1e-6);
    assert_float_equal(zs[L + 1], sqrt(0.5), 1e-6);
}

static void test_slerp_falls_back_to_lerp(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 4);
    float a[L], zero[L] = {0}, ends[4][L];
    random_latent(&r, a);
    for (int k = 0; k < L; k++) {
        ends[0][k] = 2.5f * a[k];  /* parallel */
        ends[1][k] = -a[k];        /* antiparallel */
        ends[2][k] = zero[k];      /* zero */
        ends[3][k] = a[k];         /* the same */
    }
    for (int i = 0; i < 4; i++) {
        float zs[STEPS * L], zl[STEPS * L];
        latent_walk(a, ends[i], L, STEPS, LATENT_SLERP, zs);
        latent_walk(a, ends[i], L, STEPS, LATENT_LERP, zl);
        for (int j = 0; j < STEPS * L; j++)
            assert_false(isnan(zs[j]));
        assert_memory_equal(zs, zl, sizeof zs);
        /* ... and from the zero end too. */
        latent_walk(zero, ends[i], L, STEPS, LATENT_SLERP, zs);
        latent_walk(zero, ends[i], L, STEPS, LATENT_LERP, zl);
        assert_memory_equal(zs, zl, sizeof zs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ends_exact),
        cmocka_unit_test(test_lerp_is_the_line),
        cmocka_unit_test(test_slerp_keeps_the_norm),
        cmocka_unit_test(test_slerp_falls_back_to_lerp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
