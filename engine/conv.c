/* Conv2d / ConvTranspose2d as im2col + gemm in the channel-major layout.
 * See conv.h.
 *
 * Both layers share one geometry: a Conv2d reads a k x k window of its input
 * for each output position; a ConvTranspose2d is the adjoint, so it scatters
 * each input position into a window of its output. With "big" the larger
 * spatial grid and "small" the strided one, im2col gathers big -> col and
 * col2im scatter-adds col -> big:
 *   Conv2d forward      y = W . im2col(x)                (big = x)
 *   Conv2d backward     dW += dy . im2col(x)^T ; dx = col2im(W^T . dy)
 *   ConvT forward       y = col2im(W^T . x)             (big = y)
 *   ConvT backward      dW += x . im2col(dy)^T ; dx = W . im2col(dy)
 */
#include "engine/conv.h"

#include "engine/gemm.h"

#include <assert.h>
#include <string.h>

conv_shape conv2d_shape(int cin, int cout, int h, int w, int k, int stride, int pad)
{
    conv_shape s = {.transposed = 0, .cin = cin, .cout = cout, .h = h, .w = w, .k = k,
                    .stride = stride, .pad = pad, .out_pad = 0};
    s.oh = (h + 2 * pad - k) / stride + 1;
    s.ow = (w + 2 * pad - k) / stride + 1;
    return s;
}

conv_shape conv_transpose2d_shape(int cin, int cout, int h, int w, int k, int stride, int pad,
                                  int out_pad)
{
    conv_shape s = {.transposed = 1, .cin = cin, .cout = cout, .h = h, .w = w, .k = k,
                    .stride = stride, .pad = pad, .out_pad = out_pad};
    s.oh = (h - 1) * stride - 2 * pad + k + out_pad;
    s.ow = (w - 1) * stride - 2 * pad + k + out_pad;
    return s;
}

/* The big grid's channels and the small grid's size, per layer kind. */
static int col_channels(const conv_shape *s) { return s->transposed ? s->cout : s->cin; }

size_t conv_col_floats(const conv_shape *s, int n)
{
    size_t small = s->transposed ? (size_t)s->h * s->w : (size_t)s->oh * s->ow;
    return (size_t)col_channels(s) * s->k * s->k * small * (size_t)(n < 1 ? 1 : n);
}

/* Output positions o in [lo, hi) whose tap o*stride - pad + kk lands inside [0, n). */
static void tap_range(int kk, int stride, int pad, int n, int n_out, int *lo, int *hi)
{
    int a = pad - kk; /* need o*stride >= a */
    int l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = n - 1 + pad - kk; /* need o*stride <= b */
    int h = b < 0 ? 0 : b / stride + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* big: channel c of image b at big + c*cs + b*H*W, (H, W); col: (C*k*k, nb*Ho*Wo). */
static void im2col(float *col, const float *big, size_t cs, int C, int nb, int H, int W, int Ho,
                   int Wo, int k, int stride, int pad)
{
    size_t ncol = (size_t)nb * Ho * Wo;
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < k; ky++) {
            int ylo, yhi;
            tap_range(ky, stride, pad, H, Ho, &ylo, &yhi);
            for (int kx = 0; kx < k; kx++) {
                int xlo, xhi;
                tap_range(kx, stride, pad, W, Wo, &xlo, &xhi);
                float *row = col + ((size_t)(c * k + ky) * k + kx) * ncol;
                for (int b = 0; b < nb; b++) {
                    const float *img = big + c * cs + (size_t)b * H * W;
                    float *r = row + (size_t)b * Ho * Wo;
                    for (int oy = 0; oy < Ho; oy++, r += Wo) {
                        if (oy < ylo || oy >= yhi) {
                            memset(r, 0, sizeof(float) * Wo);
                            continue;
                        }
                        const float *src = img + (size_t)(oy * stride - pad + ky) * W;
                        int off = kx - pad;
                        for (int ox = 0; ox < xlo; ox++) r[ox] = 0.0f;
                        if (stride == 2)
                            for (int ox = xlo; ox < xhi; ox++) r[ox] = src[2 * ox + off];
                        else
                            for (int ox = xlo; ox < xhi; ox++) r[ox] = src[ox * stride + off];
                        for (int ox = xhi; ox < Wo; ox++) r[ox] = 0.0f;
                    }
                }
            }
        }
}

/* The adjoint of im2col: big += scatter(col). */
static void col2im(float *big, size_t cs, const float *col, int C, int nb, int H, int W, int Ho,
                   int Wo, int k, int stride, int pad)
{
    size_t ncol = (size_t)nb * Ho * Wo;
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < k; ky++) {
            int ylo, yhi;
            tap_range(ky, stride, pad, H, Ho, &ylo, &yhi);
            for (int kx = 0; kx < k; kx++) {
                int xlo, xhi;
                tap_range(kx, stride, pad, W, Wo, &xlo, &xhi);
                const float *row = col + ((size_t)(c * k + ky) * k + kx) * ncol;
                for (int b = 0; b < nb; b++) {
                    float *img = big + c * cs + (size_t)b * H * W;
                    const float *r = row + (size_t)b * Ho * Wo;
                    for (int oy = ylo; oy < yhi; oy++) {
                        float *dst = img + (size_t)(oy * stride - pad + ky) * W;
                        const float *ro = r + (size_t)oy * Wo;
                        int off = kx - pad;
                        if (stride == 2)
                            for (int ox = xlo; ox < xhi; ox++) dst[2 * ox + off] += ro[ox];
                        else
                            for (int ox = xlo; ox < xhi; ox++) dst[ox * stride + off] += ro[ox];
                    }
                }
            }
        }
}

static int chunk_images(const conv_shape *s, int N, size_t col_floats)
{
    size_t per = conv_col_floats(s, 1);
    assert(col_floats >= per); /* a programmer error: the caller sized col */
    size_t c = col_floats / per;
    return c >= (size_t)N ? N : (int)c;
}

static void add_bias(float *y, const float *b, int C, size_t plane)
{
    for (int c = 0; c < C; c++) {
        float *yc = y + (size_t)c * plane, bc = b[c];
        for (size_t i = 0; i < plane; i++) yc[i] += bc;
    }
}

static void sum_bias(float *db, const float *dy, int C, size_t plane)
{
    for (int c = 0; c < C; c++) {
        const float *d = dy + (size_t)c * plane;
        float s = 0.0f;
        for (size_t i = 0; i < plane; i++) s += d[i];
        db[c] += s;
    }
}

void conv2d_forward(float *y, const float *x, const float *w, const float *b, int N,
                    const conv_shape *s, float *col, size_t col_floats)
{
    int K = s->cin * s->k * s->k, hw = s->h * s->w, ohw = s->oh * s->ow;
    int chunk = chunk_images(s, N, col_floats);
    for (int b0 = 0; b0 < N; b0 += chunk) {
        int nb = N - b0 < chunk ? N - b0 : chunk;
        im2col(col, x + (size_t)b0 * hw, (size_t)N * hw, s->cin, nb, s->h, s->w, s->oh, s->ow,
               s->k, s->stride, s->pad);
        gemm(GEMM_N, GEMM_N, s->cout, nb * ohw, K, w, K, col, nb * ohw, 0, y + (size_t)b0 * ohw, N * ohw);
    }
    add_bias(y, b, s->cout, (size_t)N * ohw);
}

void conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int N, const conv_shape *s, float *col, size_t col_floats)
{
    int K = s->cin * s->k * s->k, hw = s->h * s->w, ohw = s->oh * s->ow;
    int chunk = chunk_images(s, N, col_floats);
    sum_bias(db, dy, s->cout, (size_t)N * ohw);
    if (dx)
        for (int c = 0; c < s->cin; c++) memset(dx + (size_t)c * N * hw, 0, sizeof(float) * N * hw);
    for (int b0 = 0; b0 < N; b0 += chunk) {
        int nb = N - b0 < chunk ? N - b0 : chunk;
        const float *dyc = dy + (size_t)b0 * ohw;
        im2col(col, x + (size_t)b0 * hw, (size_t)N * hw, s->cin, nb, s->h, s->w, s->oh, s->ow,
               s->k, s->stride, s->pad);
        gemm(GEMM_N, GEMM_T, s->cout, K, nb * ohw, dyc, N * ohw, col, nb * ohw, 1, dw, K);
        if (!dx) continue;
        gemm(GEMM_T, GEMM_N, K, nb * ohw, s->cout, w, K, dyc, N * ohw, 0, col, nb * ohw);
        col2im(dx + (size_t)b0 * hw, (size_t)N * hw, col, s->cin, nb, s->h, s->w, s->oh, s->ow,
               s->k, s->stride, s->pad);
    }
}

void conv_transpose2d_forward(float *y, const float *x, const float *w, const float *b, int N,
                              const conv_shape *s, float *col, size_t col_floats)
{
    int K = s->cout * s->k * s->k, hw = s->h * s->w, ohw = s->oh * s->ow;
    int chunk = chunk_images(s, N, col_floats);
    for (int c = 0; c < s->cout; c++) memset(y + (size_t)c * N * ohw, 0, sizeof(float) * N * ohw);
    for (int b0 = 0; b0 < N; b0 += chunk) {
        int nb = N - b0 < chunk ? N - b0 : chunk;
        gemm(GEMM_T, GEMM_N, K, nb * hw, s->cin, w, K, x + (size_t)b0 * hw, N * hw, 0, col, nb * hw);
        col2im(y + (size_t)b0 * ohw, (size_t)N * ohw, col, s->cout, nb, s->oh, s->ow, s->h, s->w,
               s->k, s->stride, s->pad);
    }
    add_bias(y, b, s->cout, (size_t)N * ohw);
}

void conv_transpose2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int N, const conv_shape *s, float *col,
                               size_t col_floats)
{
    int K = s->cout * s->k * s->k, hw = s->h * s->w, ohw = s->oh * s->ow;
    int chunk = chunk_images(s, N, col_floats);
    sum_bias(db, dy, s->cout, (size_t)N * ohw);
    for (int b0 = 0; b0 < N; b0 += chunk) {
        int nb = N - b0 < chunk ? N - b0 : chunk;
        im2col(col, dy + (size_t)b0 * ohw, (size_t)N * ohw, s->cout, nb, s->oh, s->ow, s->h, s->w,
               s->k, s->stride, s->pad);
        gemm(GEMM_N, GEMM_T, s->cin, K, nb * hw, x + (size_t)b0 * hw, N * hw, col, nb * hw, 1, dw, K);
        if (dx)
            gemm(GEMM_N, GEMM_N, s->cin, nb * hw, K, w, K, col, nb * hw, 0, dx + (size_t)b0 * hw, N * hw);
    }
}

/* ---------- naive references ---------- */

/* Channel-major index of (c, n, y, x) in a (C, N, H, W) tensor. */
#define AT(c, n, yy, xx, N, H, W) ((((size_t)(c) * (N) + (n)) * (H) + (yy)) * (W) + (xx))

void conv2d_forward_naive(float *y, const float *x, const float *w, const float *b, int N,
                          const conv_shape *s)
{
    int k = s->k;
    for (int co = 0; co < s->cout; co++)
        for (int n = 0; n < N; n++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) {
                    double acc = b[co];
                    for (int ci = 0; ci < s->cin; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * s->stride - s->pad + ky, ix = ox * s->stride - s->pad + kx;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                acc += (double)w[((size_t)(co * s->cin + ci) * k + ky) * k + kx] *
                                       x[AT(ci, n, iy, ix, N, s->h, s->w)];
                            }
                    y[AT(co, n, oy, ox, N, s->oh, s->ow)] = (float)acc;
                }
}

void conv2d_backward_naive(float *dx, float *dw, float *db, const float *dy, const float *x,
                           const float *w, int N, const conv_shape *s)
{
    int k = s->k;
    if (dx) memset(dx, 0, sizeof(float) * (size_t)s->cin * N * s->h * s->w);
    for (int co = 0; co < s->cout; co++)
        for (int n = 0; n < N; n++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) {
                    float g = dy[AT(co, n, oy, ox, N, s->oh, s->ow)];
                    db[co] += g;
                    for (int ci = 0; ci < s->cin; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int iy = oy * s->stride - s->pad + ky, ix = ox * s->stride - s->pad + kx;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                size_t wi = ((size_t)(co * s->cin + ci) * k + ky) * k + kx;
                                size_t xi = AT(ci, n, iy, ix, N, s->h, s->w);
                                dw[wi] += g * x[xi];
                                if (dx) dx[xi] += g * w[wi];
                            }
                }
}

/* ConvTranspose2d: input (iy, ix) feeds output (iy*stride - pad + ky, ix*stride - pad + kx). */
void conv_transpose2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                                    int N, const conv_shape *s)
{
    int k = s->k;
    for (int co = 0; co < s->cout; co++)
        for (int n = 0; n < N; n++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) y[AT(co, n, oy, ox, N, s->oh, s->ow)] = b[co];
    for (int ci = 0; ci < s->cin; ci++)
        for (int n = 0; n < N; n++)
            for (int iy = 0; iy < s->h; iy++)
                for (int ix = 0; ix < s->w; ix++) {
                    float v = x[AT(ci, n, iy, ix, N, s->h, s->w)];
                    for (int co = 0; co < s->cout; co++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int oy = iy * s->stride - s->pad + ky, ox = ix * s->stride - s->pad + kx;
                                if (oy < 0 || oy >= s->oh || ox < 0 || ox >= s->ow) continue;
                                y[AT(co, n, oy, ox, N, s->oh, s->ow)] +=
                                    v * w[((size_t)(ci * s->cout + co) * k + ky) * k + kx];
                            }
                }
}

void conv_transpose2d_backward_naive(float *dx, float *dw, float *db, const float *dy,
                                     const float *x, const float *w, int N, const conv_shape *s)
{
    int k = s->k;
    for (int co = 0; co < s->cout; co++)
        for (int n = 0; n < N; n++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) db[co] += dy[AT(co, n, oy, ox, N, s->oh, s->ow)];
    for (int ci = 0; ci < s->cin; ci++)
        for (int n = 0; n < N; n++)
            for (int iy = 0; iy < s->h; iy++)
                for (int ix = 0; ix < s->w; ix++) {
                    size_t xi = AT(ci, n, iy, ix, N, s->h, s->w);
                    double acc = 0.0;
                    for (int co = 0; co < s->cout; co++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                int oy = iy * s->stride - s->pad + ky, ox = ix * s->stride - s->pad + kx;
                                if (oy < 0 || oy >= s->oh || ox < 0 || ox >= s->ow) continue;
                                size_t wi = ((size_t)(ci * s->cout + co) * k + ky) * k + kx;
                                float g = dy[AT(co, n, oy, ox, N, s->oh, s->ow)];
                                dw[wi] += g * x[xi];
                                acc += (double)g * w[wi];
                            }
                    if (dx) dx[xi] = (float)acc;
                }
}
