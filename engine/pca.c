/* pca: covariance, then power iteration with deflation, in double. A latent
 * space has tens of dimensions and a few thousand points, so building the
 * covariance (n d^2 / 2) is the cost and the eigenvectors are nearly free;
 * only the top k (2 for a map) are wanted, so a full eigensolver would be
 * wasted. Iteration stops when the axis moves less than 1e-12, or after
 * PCA_ITERATIONS (equal leading eigenvalues converge to some unit vector of
 * their plane, which is as good a projection). */
#include "engine/pca.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/util.h"

#define PCA_ITERATIONS 2000

vae_status pca_fit(const float *x, int n, int d, int k, float *mean, float *axes,
                   float *variance, char *err, size_t errlen)
{
    if (!x || !mean || !axes || !variance || n < 1 || d < 1 || d > PCA_MAX_DIM || k < 1 ||
        k > d) {
        util_set_err(err, errlen, "pca: invalid arguments (n=%d d=%d k=%d)", n, d, k);
        return VAE_ERR_ARG;
    }
    size_t D = (size_t)d;
    /* owned: cov, then mu, v, w and the axes found so far (k, d), in double
     * so that deflating by them leaves no float rounding behind */
    double *cov = calloc(D * D + 3 * D + (size_t)k * D, sizeof *cov);
    if (!cov) {
        util_set_err(err, errlen, "pca: out of memory for a %dx%d covariance", d, d);
        return VAE_ERR_NOMEM;
    }
    double *mu = cov + D * D, *v = mu + D, *w = v + D, *found = w + D;
    for (int i = 0; i < n; i++)
        for (size_t a = 0; a < D; a++) mu[a] += x[(size_t)i * D + a];
    for (size_t a = 0; a < D; a++) mu[a] /= n;
    /* the upper triangle, then mirrored */
    for (int i = 0; i < n; i++) {
        const float *row = x + (size_t)i * D;
        for (size_t a = 0; a < D; a++) {
            double ca = row[a] - mu[a];
            double *c = cov + a * D;
            for (size_t b = a; b < D; b++) c[b] += ca * (row[b] - mu[b]);
        }
    }
    for (size_t a = 0; a < D; a++)
        for (size_t b = a; b < D; b++) {
            cov[a * D + b] /= n;
            cov[b * D + a] = cov[a * D + b];
        }
    for (size_t a = 0; a < D; a++) mean[a] = (float)mu[a];

    for (int j = 0; j < k; j++) {
        /* a start that no axis is orthogonal to by accident */
        for (size_t a = 0; a < D; a++) v[a] = 1.0 + 0.01 * (double)a;
        for (int it = 0; it < PCA_ITERATIONS; it++) {
            /* v minus its parts along the axes found so far, normalised */
            for (int p = 0; p < j; p++) {
                double dot = 0;
                for (size_t a = 0; a < D; a++) dot += v[a] * found[(size_t)p * D + a];
                for (size_t a = 0; a < D; a++) v[a] -= dot * found[(size_t)p * D + a];
            }
            double norm = 0;
            for (size_t a = 0; a < D; a++) norm += v[a] * v[a];
            norm = sqrt(norm);
            if (!(norm > 1e-300)) { /* nothing left: the points span fewer than k axes */
                for (size_t a = 0; a < D; a++) v[a] = 0;
                break;
            }
            for (size_t a = 0; a < D; a++) v[a] /= norm;
            for (size_t a = 0; a < D; a++) {
                double s = 0;
                for (size_t b = 0; b < D; b++) s += cov[a * D + b] * v[b];
                w[a] = s;
            }
            double wn = 0, moved = 0;
            for (size_t a = 0; a < D; a++) wn += w[a] * w[a];
            wn = sqrt(wn);
            if (!(wn > 1e-300))
                break;
            for (size_t a = 0; a < D; a++) {
                double next = w[a] / wn;
                moved += (next - v[a]) * (next - v[a]);
                v[a] = next;
            }
            if (moved < 1e-24)
                break;
        }
        /* orthogonal to the earlier axes once more, then the sign rule */
        for (int p = 0; p < j; p++) {
            double dot = 0;
            for (size_t a = 0; a < D; a++) dot += v[a] * found[(size_t)p * D + a];
            for (size_t a = 0; a < D; a++) v[a] -= dot * found[(size_t)p * D + a];
        }
        double norm = 0;
        size_t big = 0;
        for (size_t a = 0; a < D; a++) {
            norm += v[a] * v[a];
            if (fabs(v[a]) > fabs(v[big]))
                big = a;
        }
        norm = sqrt(norm);
        if (!(norm > 1e-300)) { /* a degenerate cloud: any unit vector not yet used */
            memset(v, 0, D * sizeof *v);
            v[(size_t)j % D] = 1;
            norm = 1;
            big = (size_t)j % D;
        }
        double sign = v[big] < 0 ? -1.0 : 1.0;
        double *axis = found + (size_t)j * D;
        for (size_t a = 0; a < D; a++) {
            axis[a] = sign * v[a] / norm;
            axes[(size_t)j * D + a] = (float)axis[a];
        }
        /* the variance along it, then that variance out of the covariance */
        double lambda = 0;
        for (size_t a = 0; a < D; a++) {
            double s = 0;
            for (size_t b = 0; b < D; b++) s += cov[a * D + b] * axis[b];
            lambda += axis[a] * s;
        }
        for (size_t a = 0; a < D; a++)
            for (size_t b = 0; b < D; b++) cov[a * D + b] -= lambda * axis[a] * axis[b];
        variance[j] = (float)(lambda > 0 ? lambda : 0);
    }
    free(cov);
    return VAE_OK;
}

void pca_project(const float *x, int n, int d, int k, const float *mean, const float *axes,
                 float *out)
{
    size_t D = (size_t)d;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            double s = 0;
            for (size_t a = 0; a < D; a++)
                s += ((double)x[(size_t)i * D + a] - mean[a]) * axes[(size_t)j * D + a];
            out[(size_t)i * (size_t)k + (size_t)j] = (float)s;
        }
}
