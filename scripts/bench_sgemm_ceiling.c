/* The ceiling of a vaed MLP training step (784-400-20, batch 128) on this
 * machine: only its five large matrix products, shaped as vaed's
 * data-parallel step runs them (two threads, one BLAS thread each, half the
 * batch each), through the engine's gemm (vaed's own kernels, or OpenBLAS
 * with VAED_GEMM=blas), and nothing else. bench-train.sh prints vaed's
 * images/s as a fraction of this, measured in the same run.
 *   make build/bench_sgemm_ceiling && build/bench_sgemm_ceiling
 * prints: images/s GFLOP/s */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/gemm.h"

enum { B = 64, D = 784, H = 400, ITERS = 600 };

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static void *stream(void *arg)
{
    (void)arg;
    float *x = calloc(B * D, 4), *w1 = calloc(H * D, 4), *h = calloc(B * H, 4);
    float *w4 = calloc(D * H, 4), *o = calloc(B * D, 4), *dw = calloc(D * H, 4);
    float *dh = calloc(B * H, 4);
    if (!x || !w1 || !h || !w4 || !o || !dw || !dh) return NULL;
    for (int it = 0; it < ITERS; it++) {
        /* encoder and output layers forward; output dW and dX; encoder dW */
        gemm(GEMM_N, GEMM_T, B, H, D, x, D, w1, D, 0, h, H);
        gemm(GEMM_N, GEMM_T, B, D, H, h, H, w4, H, 0, o, D);
        gemm(GEMM_T, GEMM_N, D, H, B, o, D, h, H, 0, dw, H);
        gemm(GEMM_N, GEMM_N, B, H, D, o, D, w4, H, 0, dh, H);
        gemm(GEMM_T, GEMM_N, H, D, B, dh, H, x, D, 0, dw, D);
    }
    free(x), free(w1), free(h), free(w4), free(o), free(dw), free(dh);
    return NULL;
}

int main(void)
{
    openblas_set_num_threads(1);
    pthread_t t[2];
    double t0 = now_s();
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, stream, NULL);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    double el = now_s() - t0;
    printf("%.0f %.1f\n", 2.0 * B * ITERS / el, 2.0 * 2.0 * B * D * H * 5 * ITERS / el / 1e9);
    return 0;
}
