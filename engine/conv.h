/* conv: Conv2d and ConvTranspose2d, forward and backward, on engine/gemm.
 *
 *     conv_shape s = conv2d_shape(cin, cout, h, w, 3, 2, 1);
 *     float *col = malloc(col_floats * sizeof(float));   // any size >= conv_col_floats(&s, 1)
 *     conv2d_forward(y, x, weight, bias, N, &s, col, col_floats);
 *     conv2d_backward(dx, dweight, dbias, dy, x, weight, N, &s, col, col_floats);
 *
 * Activations are "channel-major" (C, N, H, W): channel c of image n starts at
 * (c * N + n) * H * W. In that layout a whole batch is one im2col matrix
 * (C*k*k, N*Ho*Wo) and a layer is one matrix product whose result is already the next
 * layer's input; (N, C, H, W) would need a transpose per layer.
 *
 * Weights have PyTorch's layouts: nn.Conv2d [out, in, kh, kw], nn.ConvTranspose2d
 * [in, out, kh, kw]; bias [out].
 *
 * col is the caller's scratch (no allocation here): the batch is processed in
 * chunks of as many images as fit in col_floats, so memory is bounded
 * whatever N is. Backward passes add into dweight and dbias (zeroing is the
 * caller's) and overwrite dx; dx may be NULL when the input needs no
 * gradient. The *_naive functions are direct loops with the same contract and
 * no col, the reference the fast ones are tested against.
 *
 * On CPUs with AVX2 and FMA the fast functions run an implicit GEMM: the
 * im2col matrix is never written, a block of it is gathered from the image
 * into the matrix kernel's own layout, and col2im is the kernel's epilogue
 * (conv.c), on 12-row tiles where the CPU has AVX-512. col is then only the
 * room for that block (it falls back on 16 KB of stack when col is
 * smaller). Elsewhere, or with VAED_CONV=im2col in the environment, they run
 * im2col + gemm in chunks of col_floats.
 */
#ifndef CONV_H
#define CONV_H

#include <stddef.h>

typedef struct {
    int transposed;     /* 0: Conv2d, 1: ConvTranspose2d */
    int cin, cout;
    int h, w;           /* input spatial size */
    int oh, ow;         /* output spatial size */
    int k, stride, pad, out_pad;
} conv_shape;

/* oh = (h + 2 pad - k) / stride + 1 */
conv_shape conv2d_shape(int cin, int cout, int h, int w, int k, int stride, int pad);
/* oh = (h - 1) stride - 2 pad + k + out_pad (out_pad < stride) */
conv_shape conv_transpose2d_shape(int cin, int cout, int h, int w, int k, int stride, int pad,
                                  int out_pad);
/* Floats in the weight tensor ([out,in,k,k] or [in,out,k,k]: the same count). */
static inline size_t conv_weight_floats(const conv_shape *s)
{
    return (size_t)s->cin * s->cout * s->k * s->k;
}
/* Scratch floats for n images at once; conv_col_floats(s, 1) is the minimum. */
size_t conv_col_floats(const conv_shape *s, int n);

/* x: (cin, N, h, w) -> y: (cout, N, oh, ow) */
void conv2d_forward(float *y, const float *x, const float *w, const float *b, int N,
                    const conv_shape *s, float *col, size_t col_floats);
void conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int N, const conv_shape *s, float *col, size_t col_floats);
void conv_transpose2d_forward(float *y, const float *x, const float *w, const float *b, int N,
                              const conv_shape *s, float *col, size_t col_floats);
void conv_transpose2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int N, const conv_shape *s, float *col,
                               size_t col_floats);

/* The fast functions' path: im2col + gemm, or the implicit GEMM on gemm's
 * 6 x 16 AVX2 tile kernel or on its 12 x 16 AVX-512 twin (the same bits per
 * tile; the scatter without col may add a pixel's taps in another order). */
enum { CONV_IM2COL = 0, CONV_IMPLICIT_AVX2 = 1, CONV_IMPLICIT_AVX512 = 2 };
/* The path in use: the widest the CPU has, unless VAED_CONV=im2col or
 * VAED_CONV=avx2 in the environment chose a narrower one. Nonzero when the
 * implicit GEMM runs. */
int conv_uses_implicit_gemm(void);
/* Tests and benchmarks: choose a path (a CONV_* value; the widest the CPU has
 * when it lacks that one) for every later call; returns the path now in use.
 * conv_set_implicit_gemm(1) is the widest implicit path, (0) im2col. Not to
 * be called while another thread is inside a conv function. */
int conv_set_path(int path);
int conv_set_implicit_gemm(int on);

void conv2d_forward_naive(float *y, const float *x, const float *w, const float *b, int N,
                          const conv_shape *s);
void conv2d_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                           const float *w, int N, const conv_shape *s);
void conv_transpose2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                                    int N, const conv_shape *s);
void conv_transpose2d_backward_naive(float *dx, float *dw, float *db, const float *dy,
                                     const float *x, const float *w, int N, const conv_shape *s);

#endif
