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

void linear_backward_to(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int B, int in, int out, int accumulate)
{
    gemm(GEMM_T, GEMM_N, out, in, B, dy, out, x, in, accumulate, dw, in);
    if (!accumulate) memset(db, 0, sizeof(float) * (size_t)out);
    vae_kernels_column_sums(db, dy, B, out);
    if (dx)
        gemm(GEMM_N, GEMM_N, B, in, out, dy, out, w, in, 0, dx, in);
}

void linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int B, int in, int out)
{
    linear_backward_to(dx, dw, db, dy, x, w, B, in, out, 1);
}
