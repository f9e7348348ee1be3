#include "engine/linear.h"

#include <stddef.h>
#include <string.h>

#include "engine/gemm.h"
#include "engine/vae_kernels.h"

void linear_matmul_wt(float *y, const float *x, const float *w, int B, int in, int out)
{
    gemm(GEMM_N, GEMM_T, B, out, in, x, in, w, in, 0, y, out);
}

void linear_forward(float *y, const float *x, const float *w, const float *b, int B, int in,
                    int out)
{
    linear_matmul_wt(y, x, w, B, in, out);
    vae_kernels_bias(y, b, B, out);
}

void linear_matmul_wt_rowwise(float *y, const float *x, const float *w, int B, int in, int out)
{
    gemm_nt_rowwise(B, out, in, x, in, w, in, y, out);
}

void linear_forward_rowwise(float *y, const float *x, const float *w, const float *b, int B,
                            int in, int out)
{
    linear_matmul_wt_rowwise(y, x, w, B, in, out);
    vae_kernels_bias(y, b, B, out);
}

void linear_backward_params(float *dw, float *db, const float *dy, const float *x, int B, int in,
                            int out, int r0, int r1, int accumulate)
{
    gemm(GEMM_T, GEMM_N, r1 - r0, in, B, dy + r0, out, x, in, accumulate, dw + (size_t)r0 * in, in);
    if (!accumulate) memset(db + r0, 0, sizeof(float) * (size_t)(r1 - r0));
    if (r0 == 0 && r1 == out) {
        vae_kernels_column_sums(db, dy, B, out);
        return;
    }
    for (int r = 0; r < B; r++) vae_kernels_column_sums(db + r0, dy + (size_t)r * out + r0, 1, r1 - r0);
}

void linear_backward_input(float *dx, const float *dy, const float *w, int B, int in, int out)
{
    gemm(GEMM_N, GEMM_N, B, in, out, dy, out, w, in, 0, dx, in);
}

void linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int B, int in, int out)
{
    linear_backward_params(dw, db, dy, x, B, in, out, 0, out, 1);
    if (dx) linear_backward_input(dx, dy, w, B, in, out);
}
