/* gemm: every transpose variant, every edge of the 6 x 64 and 6 x 4 tiles,
 * strided operands and accumulation, against the double-precision naive
 * product; and the same shapes with OpenBLAS forced, so both paths agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gemm.h"
#include "engine/rng.h"

static float *rand_floats(rng_state *r, size_t n)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = 2.0f * rng_uniform(r) - 1.0f;
    return v;
}

/* Runs one product both ways and compares; padding columns of c (beyond N,
 * within ldc) must come back untouched. Returns the largest error relative
 * to the size of the sum (sqrt K), which the caller bounds. */
static double check_one(rng_state *r, gemm_trans ta, gemm_trans tb, int M, int N, int K,
                        int pad, int accumulate)
{
    int lda = (ta == GEMM_N ? K : M) + pad, ldb = (tb == GEMM_N ? N : K) + pad, ldc = N + pad;
    size_t arows = ta == GEMM_N ? M : K, brows = tb == GEMM_N ? K : N;
    float *a = rand_floats(r, arows * lda);
    float *b = rand_floats(r, brows * ldb);
    float *c = rand_floats(r, (size_t)M * ldc);
    float *ref = malloc(sizeof(float) * M * ldc);
    assert_non_null(ref);
    memcpy(ref, c, sizeof(float) * M * ldc);
    gemm(ta, tb, M, N, K, a, lda, b, ldb, accumulate, c, ldc);
    gemm_naive(ta, tb, M, N, K, a, lda, b, ldb, accumulate, ref, ldc);
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < ldc; j++) {
            float got = c[(size_t)i * ldc + j], want = ref[(size_t)i * ldc + j];
            if (j >= N) {
                assert_true(got == want); /* untouched padding */
                continue;
            }
            double e = fabs((double)got - want) / sqrt((double)K + 1);
            if (!(e <= worst))
                worst = e; /* a NaN ends up here and fails the caller */
        }
    free(a);
    free(b);
    free(c);
    free(ref);
    return worst;
}

static void sweep(void)
{
    rng_state r;
    rng_seed(&r, 7);
    static const int Ms[] = {1, 2, 5, 6, 7, 12, 13, 64};
    static const int Ns[] = {1, 3, 4, 5, 16, 17, 20, 63, 64, 65, 130, 400};
    static const int Ks[] = {1, 15, 16, 17, 20, 33, 128, 401};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
                for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
                    for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++) {
                        int M = Ms[mi], N = Ns[ni], K = Ks[ki];
                        int pad = (int)((mi + ni + ki) % 3), acc = (int)((mi + ki) % 2);
                        double e = check_one(&r, (gemm_trans)ta, (gemm_trans)tb, M, N, K, pad, acc);
                        if (!(e < 2e-6))
                            fail_msg("ta=%d tb=%d M=%d N=%d K=%d pad=%d acc=%d: error %g", ta, tb,
                                     M, N, K, pad, acc, e);
                    }
}

static void test_own_kernels_match_naive(void **state)
{
    (void)state;
    if (!gemm_uses_own_kernels())
        print_message("(this CPU has no AVX-512: gemm is OpenBLAS here)\n");
    sweep();
}

/* The choice of path is made once per process, so the OpenBLAS path runs in
 * a child of this program started with VAED_GEMM=blas. Its cmocka output is
 * dropped (the suite counts summary lines); on failure, rerun the printed
 * command by hand. */
static const char *self_path; /* argv[0] */

static void test_blas_path_matches_naive(void **state)
{
    (void)state;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "VAED_GEMM=blas %s --sweep-only", self_path);
    char quiet[4200];
    snprintf(quiet, sizeof quiet, "%s >/dev/null 2>&1", cmd);
    if (system(quiet) != 0)
        fail_msg("failed: %s", cmd);
}

static void test_zero_k_and_empty(void **state)
{
    (void)state;
    const float start[6] = {1, 2, 3, 4, 5, 6};
    float c[6], a[1] = {0}, b[1] = {0};
    memcpy(c, start, sizeof c);
    gemm(GEMM_N, GEMM_T, 2, 3, 0, a, 1, b, 1, 1, c, 3); /* c += nothing */
    assert_memory_equal(c, start, sizeof c);
    gemm(GEMM_N, GEMM_N, 2, 3, 0, a, 1, b, 3, 0, c, 3); /* c = empty sum */
    for (int i = 0; i < 6; i++) assert_true(c[i] == 0.0f);
    /* no rows or no columns: nothing written, with or without accumulation */
    for (int acc = 0; acc < 2; acc++) {
        memcpy(c, start, sizeof c);
        gemm(GEMM_T, GEMM_N, 0, 3, 4, a, 1, b, 3, acc, c, 3);
        assert_memory_equal(c, start, sizeof c);
        gemm(GEMM_N, GEMM_T, 2, 0, 4, a, 4, b, 4, acc, c, 3);
        assert_memory_equal(c, start, sizeof c);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--sweep-only") == 0) {
        if (gemm_uses_own_kernels())
            return 2; /* VAED_GEMM=blas was ignored */
        /* cmocka's fail_msg needs a test context: run the sweep as one */
        const struct CMUnitTest only[] = {cmocka_unit_test(test_own_kernels_match_naive)};
        return cmocka_run_group_tests(only, NULL, NULL);
    }
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_kernels_match_naive),
        cmocka_unit_test(test_blas_path_matches_naive),
        cmocka_unit_test(test_zero_k_and_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
