/* pca: the principal axes of a cloud of points, to draw a latent space in 2-D
 * (the daemon's latent map projects the test set's mu with it).
 *
 *     float mean[L], axes[2 * L], variance[2];
 *     if (pca_fit(mu, n, L, 2, mean, axes, variance, err, sizeof err)) ...
 *     pca_project(mu, n, L, 2, mean, axes, xy);         // xy: (n, 2)
 *     // a point (u, v) of the map back in the latent space:
 *     //   z = mean + u * axes[0..L) + v * axes[L..2L)
 *
 * Everything is the caller's: pca_fit allocates only its d x d covariance
 * (doubles) and frees it before returning. The axes are unit vectors,
 * orthogonal, by decreasing variance, each with its largest-magnitude
 * coordinate positive so that the same points always give the same axes
 * (an eigenvector's sign is otherwise arbitrary). Deterministic: the same
 * input gives the same bits.
 */
#ifndef PCA_H
#define PCA_H

#include <stddef.h>

#include "engine/vae_status.h"

/* The largest dimension pca_fit takes: the covariance is d x d doubles and
 * costs n * d * d / 2 multiply-adds to build. */
#define PCA_MAX_DIM 1024

/* x: (n, d) -> mean (d), axes (k, d), variance (k): the variance of the
 * points along each axis (the covariance's eigenvalues, divided by n).
 * n >= 1, 1 <= k <= d <= PCA_MAX_DIM; else VAE_ERR_ARG. */
vae_status pca_fit(const float *x, int n, int d, int k, float *mean, float *axes,
                   float *variance, char *err, size_t errlen);
/* x: (n, d) -> out: (n, k), the coordinates of x - mean along each axis. */
void pca_project(const float *x, int n, int d, int k, const float *mean, const float *axes,
                 float *out);

#endif
