/* pca: axes and variances of clouds whose axes are known by construction (a
 * random orthonormal basis scaled by known standard deviations), the sign
 * rule, projections against their definition, degenerate clouds and bad
 * arguments. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/pca.h"
#include "engine/rng.h"

enum { N = 4000, D = 6 };

/* rows of basis (D, D): orthonormal, by Gram-Schmidt on normal draws */
static void random_basis(rng_state *r, double *basis)
{
    for (int i = 0; i < D; i++) {
        for (int a = 0; a < D; a++) {
            float f;
            rng_normal_fill(r, &f, 1);
            basis[i * D + a] = f;
        }
        for (int p = 0; p < i; p++) {
            double dot = 0;
            for (int a = 0; a < D; a++) dot += basis[i * D + a] * basis[p * D + a];
            for (int a = 0; a < D; a++) basis[i * D + a] -= dot * basis[p * D + a];
        }
        double norm = 0;
        for (int a = 0; a < D; a++) norm += basis[i * D + a] * basis[i * D + a];
        for (int a = 0; a < D; a++) basis[i * D + a] /= sqrt(norm);
    }
}

static void test_known_axes(void **state)
{
    (void)state;
    static const double sd[D] = {3.0, 1.0, 0.3, 0.1, 0.05, 0.01};
    static const float offset[D] = {5, -2, 0.5f, 0, 1, -1};
    double basis[D * D];
    rng_state r;
    rng_seed(&r, 11);
    random_basis(&r, basis);
    float *x = malloc(sizeof(float) * N * D);
    float *xy = malloc(sizeof(float) * N * 2);
    assert_non_null(x);
    assert_non_null(xy);
    for (int i = 0; i < N; i++) {
        float c[D];
        rng_normal_fill(&r, c, D);
        for (int a = 0; a < D; a++) {
            double v = offset[a];
            for (int j = 0; j < D; j++) v += sd[j] * c[j] * basis[j * D + a];
            x[i * D + a] = (float)v;
        }
    }
    float mean[D], axes[2 * D], var[2];
    char err[128] = "";
    assert_int_equal(pca_fit(x, N, D, 2, mean, axes, var, err, sizeof err), VAE_OK);
    for (int a = 0; a < D; a++) assert_true(fabsf(mean[a] - offset[a]) < 0.2f);
    for (int j = 0; j < 2; j++) {
        double dot = 0, norm = 0;
        int big = 0;
        for (int a = 0; a < D; a++) {
            dot += axes[j * D + a] * basis[j * D + a];
            norm += axes[j * D + a] * axes[j * D + a];
            if (fabsf(axes[j * D + a]) > fabsf(axes[j * D + big]))
                big = a;
        }
        assert_true(fabs(norm - 1) < 1e-5);
        assert_true(fabs(fabs(dot) - 1) < 1e-3); /* the axis is the basis vector, up to sign */
        assert_true(axes[j * D + big] > 0);       /* the sign rule */
        assert_true(fabs(var[j] - sd[j] * sd[j]) < 0.1 * sd[j] * sd[j]);
    }
    double ortho = 0;
    for (int a = 0; a < D; a++) ortho += axes[a] * axes[D + a];
    assert_true(fabs(ortho) < 1e-5);
    /* projections: the definition, in double */
    pca_project(x, N, D, 2, mean, axes, xy);
    for (int i = 0; i < N; i += 97)
        for (int j = 0; j < 2; j++) {
            double s = 0;
            for (int a = 0; a < D; a++) s += ((double)x[i * D + a] - mean[a]) * axes[j * D + a];
            assert_true(fabs(xy[i * 2 + j] - s) < 1e-4);
        }
    /* the same input, the same bits */
    float mean2[D], axes2[2 * D], var2[2];
    assert_int_equal(pca_fit(x, N, D, 2, mean2, axes2, var2, err, sizeof err), VAE_OK);
    assert_memory_equal(axes, axes2, sizeof axes);
    assert_memory_equal(var, var2, sizeof var);
    free(x);
    free(xy);
}

static void test_degenerate_and_bad_arguments(void **state)
{
    (void)state;
    float x[3 * 4] = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}; /* one point, three times */
    float mean[4], axes[8], var[2];
    char err[128] = "";
    assert_int_equal(pca_fit(x, 3, 4, 2, mean, axes, var, err, sizeof err), VAE_OK);
    assert_true(var[0] == 0 && var[1] == 0);
    for (int j = 0; j < 2; j++) {
        double norm = 0;
        for (int a = 0; a < 4; a++) norm += axes[j * 4 + a] * axes[j * 4 + a];
        assert_true(fabs(norm - 1) < 1e-6);
    }
    /* a line: the second axis has no variance, and is still orthogonal */
    for (int i = 0; i < 3; i++)
        for (int a = 0; a < 4; a++) x[i * 4 + a] = (float)(i * (a + 1));
    assert_int_equal(pca_fit(x, 3, 4, 2, mean, axes, var, err, sizeof err), VAE_OK);
    assert_true(fabs(var[0] - 20) < 1e-4 && var[1] < 1e-5 * var[0]); /* float axes: not exactly 0 */
    double ortho = 0;
    for (int a = 0; a < 4; a++) ortho += axes[a] * axes[4 + a];
    assert_true(fabs(ortho) < 1e-5);
    assert_int_equal(pca_fit(x, 0, 4, 2, mean, axes, var, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(pca_fit(x, 3, 4, 5, mean, axes, var, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(pca_fit(x, 3, PCA_MAX_DIM + 1, 2, mean, axes, var, err, sizeof err),
                     VAE_ERR_ARG);
    assert_true(strstr(err, "invalid") != NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_axes),
        cmocka_unit_test(test_degenerate_and_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
