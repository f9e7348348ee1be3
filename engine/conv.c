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
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CONV_HAVE_AVX2 1
#else
#define CONV_HAVE_AVX2 0
#endif

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

static void im2col_conv2d_forward(float *y, const float *x, const float *w, const float *b, int N,
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

static void im2col_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
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

static void im2col_conv_transpose2d_forward(float *y, const float *x, const float *w, const float *b, int N,
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

static void im2col_conv_transpose2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
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

/* ---------- implicit GEMM (AVX2 + FMA) ----------
 *
 * The same three products without the col matrix. Each layer's product is
 * C (M, N) (+)= A (M, K) . B (K, N) where A is read where it lies (the
 * weights, or the small grid's rows) and B is either a plain matrix read
 * where it lies or the im2col matrix of the big grid, which is never built:
 * a block of it (KC rows by up to NC columns) is gathered straight from the
 * image into the layout the kernel reads (16 floats per row), the job of
 * im2col and of sgemm's own copy of B at once, in a block that stays in the
 * second-level cache. The col2im side is the kernel's epilogue: a finished
 * tile (6 or 12 rows by 16) is added into the big grid where its rows' taps land.
 *
 *   gather  (Conv2d forward, ConvT dx):  C = W . im2col(big)          C plain
 *   scatter (Conv2d dx, ConvT forward):  big += col2im(W^T . small)   B plain
 *   wgrad   (both dW):                   dW += small . im2col(big)^T  C plain
 *
 * Summation order: every output is a sum over K in blocks of KC in order,
 * within a block in k order; the scatter adds its taps' tiles in the order
 * of the rows (channel, ky, kx) of W^T, as col2im did within a chunk. */
#if CONV_HAVE_AVX2
enum { IG_MR_MAX = 12, IG_NR = 16, IG_KC = 256, IG_NC = 256 };

/* The tile kernel a product runs on: gemm's 6 x 16 AVX2 one or its 12 x 16
 * AVX-512 twin (the same bits per tile, twice the rows per packed panel). */
typedef void ig_kernel_fn(int mr, int nr, int masked, int kc, const float *a, long ars, long acs,
                          const float *b, long ldb, gemm_dest dest, float *out, long ldo,
                          const float *bias);
typedef void ig_kernel32_fn(int mr, int nr, int kc, const float *a, long ars, long acs,
                            const float *b0, const float *b1, gemm_dest dest, float *out,
                            long ldo, const float *bias);
typedef struct {
    ig_kernel_fn *run;
    int mr;
    ig_kernel32_fn *run32; /* two packed panels at once into a plain C, or NULL */
} ig_kernel;

typedef enum { IG_B_PLAIN, IG_B_GATHER, IG_B_WGRAD } ig_b_kind;

/* The big grid (channels cs apart, images H*W apart) and the small grid of
 * output positions of a window, for the packers and the scatter. */
typedef struct {
    const float *big;
    float *big_out; /* the scatter's destination */
    size_t cs;
    int H, W, sh, sw, k, stride, pad;
    /* The window's columns and their padding: k and pad but in the
     * sub-convolutions of ConvT's forward pass, whose windows are a parity's
     * taps (1 x 2, 2 x 1, ...); only the gather and ig_position read them. */
    int kw, padx;
} ig_grid;

typedef struct {
    int M, N, K;
    const float *a;
    long ars, acs;      /* a(i, k) = a[i*ars + k*acs] */
    ig_b_kind b_kind;
    const float *b;     /* IG_B_PLAIN: b(k, j) = b[k*ldb + j] */
    long ldb;
    int scatter;        /* 0: c[i*ldc + j] (+)= ; 1: col2im into grid.big_out */
    float *c;
    long ldc;
    int accumulate;     /* plain C: add to what is there */
    const float *bias;  /* plain C, not accumulating: c = bias[i] + product */
    ig_grid g;
    ig_kernel kernel;
} ig_product;

/* Where output position p of the small grid puts its window's corner. */
typedef struct {
    int base[IG_NC]; /* n*H*W + y0*W + x0 */
    int y0[IG_NC], x0[IG_NC];
} ig_positions;

static void ig_position(const ig_grid *g, int p, int *base, int *y0, int *x0)
{
    int shw = g->sh * g->sw, n = p / shw, r = p - n * shw, oy = r / g->sw, ox = r - oy * g->sw;
    *y0 = oy * g->stride - g->pad;
    *x0 = ox * g->stride - g->padx;
    *base = n * g->H * g->W + *y0 * g->W + *x0;
}

/* Positions j0 .. j0+n-1 into pos; unused slots up to a multiple of 16 get
 * a corner no tap reaches. */
static void ig_positions_of(const ig_grid *g, ig_positions *pos, int j0, int n)
{
    int i = 0;
    for (; i < n; i++) ig_position(g, j0 + i, &pos->base[i], &pos->y0[i], &pos->x0[i]);
    for (; i % IG_NR; i++) {
        pos->base[i] = 0;
        pos->y0[i] = INT_MIN / 2;
        pos->x0[i] = INT_MIN / 2;
    }
}

#define IGK __attribute__((target("avx2,fma")))
#define IGK_INLINE static inline __attribute__((always_inline)) IGK

/* 0 <= v < n per lane, as a lane mask */
IGK_INLINE __m256i ig_inside(__m256i v, int n)
{
    __m256i lo = _mm256_cmpgt_epi32(v, _mm256_set1_epi32(-1));
    __m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), v);
    return _mm256_and_si256(lo, hi);
}

/* IG_B_GATHER: rows k0.. of im2col(big), (channel, ky, kx), at the 16
 * positions of pos + jo: bp[k*16 + jj]; zero outside the image. */
IGK static void ig_pack_gather(const ig_product *p, float *bp, const ig_positions *pos, int jo,
                               int k0, int kc)
{
    const ig_grid *g = &p->g;
    int kk = g->k * g->kw, c = k0 / kk, t = k0 - c * kk, ky = t / g->kw, kx = t - ky * g->kw;
    __m256i b0 = _mm256_loadu_si256((const __m256i *)(pos->base + jo));
    __m256i b1 = _mm256_loadu_si256((const __m256i *)(pos->base + jo + 8));
    __m256i y0 = _mm256_loadu_si256((const __m256i *)(pos->y0 + jo));
    __m256i y1 = _mm256_loadu_si256((const __m256i *)(pos->y0 + jo + 8));
    __m256i x0 = _mm256_loadu_si256((const __m256i *)(pos->x0 + jo));
    __m256i x1 = _mm256_loadu_si256((const __m256i *)(pos->x0 + jo + 8));
    const __m256 zero = _mm256_setzero_ps();
    /* 8 positions in one row of the small grid at stride 2 read every other
     * float of 15 in a row of the big one: two masked loads (the mask is the
     * image's border) and a shuffle of the even lanes, instead of a gather;
     * at stride 1 they read 8 floats in a row, one masked load */
    int run8[2];
    for (int h = 0; h < 2; h++) {
        int a = jo + 8 * h, z = a + 7, span = 7 * g->stride;
        run8[h] = (g->stride == 1 || g->stride == 2) && pos->y0[a] == pos->y0[z] &&
                  pos->x0[z] - pos->x0[a] == span && pos->base[z] - pos->base[a] == span;
    }
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int r = 0; r < kc; r++) {
        const float *src = g->big + c * g->cs + ky * g->W + kx;
        __m256i vy = _mm256_set1_epi32(ky), vx = _mm256_set1_epi32(kx);
        if (run8[0] && run8[1]) {
            for (int h = 0; h < 2; h++) {
                int a = jo + 8 * h;
                __m256 v = zero;
                if ((unsigned)(pos->y0[a] + ky) < (unsigned)g->H) {
                    const float *q = src + pos->base[a];
                    __m256i xs = _mm256_add_epi32(iota, _mm256_set1_epi32(pos->x0[a] + kx));
                    __m256i ma = ig_inside(xs, g->W);
                    if (g->stride == 1) {
                        v = _mm256_maskload_ps(q, ma);
                    } else {
                        __m256i mb = ig_inside(_mm256_add_epi32(xs, _mm256_set1_epi32(8)), g->W);
                        __m256 lo = _mm256_maskload_ps(q, ma), hi = _mm256_maskload_ps(q + 8, mb);
                        /* [l0 l2 h0 h2 | l4 l6 h4 h6] -> [l0 l2 l4 l6 h0 h2 h4 h6] */
                        v = _mm256_castpd_ps(_mm256_permute4x64_pd(
                            _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
                    }
                }
                _mm256_storeu_ps(bp + r * 16 + 8 * h, v);
            }
        } else {
            __m256i m0 = _mm256_and_si256(ig_inside(_mm256_add_epi32(y0, vy), g->H),
                                          ig_inside(_mm256_add_epi32(x0, vx), g->W));
            __m256i m1 = _mm256_and_si256(ig_inside(_mm256_add_epi32(y1, vy), g->H),
                                          ig_inside(_mm256_add_epi32(x1, vx), g->W));
            _mm256_storeu_ps(bp + r * 16,
                             _mm256_mask_i32gather_ps(zero, src, b0, _mm256_castsi256_ps(m0), 4));
            _mm256_storeu_ps(bp + r * 16 + 8,
                             _mm256_mask_i32gather_ps(zero, src, b1, _mm256_castsi256_ps(m1), 4));
        }
        if (++kx == g->kw) {
            kx = 0;
            if (++ky == g->k) ky = 0, c++;
        }
    }
}

/* IG_B_WGRAD: im2col(big)^T, rows k0.. the positions, columns j0 .. j0+nr-1
 * the (channel, ky, kx) of the window: bp[k*16 + jj]. */
IGK static void ig_pack_wgrad(const ig_product *p, float *bp, int j0, int nr, int k0, int kc)
{
    const ig_grid *g = &p->g;
    int off[16], kys[16], kxs[16], kk = g->k * g->k;
    for (int jj = 0; jj < 16; jj++) {
        int j = j0 + jj, c = j / kk, t = j - c * kk;
        kys[jj] = jj < nr ? t / g->k : INT_MIN / 2;
        kxs[jj] = t % g->k;
        off[jj] = jj < nr ? (int)(c * g->cs) + (t / g->k) * g->W + t % g->k : 0;
    }
    __m256i o0 = _mm256_loadu_si256((const __m256i *)off), o1 = _mm256_loadu_si256((const __m256i *)(off + 8));
    __m256i ky0 = _mm256_loadu_si256((const __m256i *)kys), ky1 = _mm256_loadu_si256((const __m256i *)(kys + 8));
    __m256i kx0 = _mm256_loadu_si256((const __m256i *)kxs), kx1 = _mm256_loadu_si256((const __m256i *)(kxs + 8));
    const __m256 zero = _mm256_setzero_ps();
    int shw = g->sh * g->sw, n = k0 / shw, oy = (k0 - n * shw) / g->sw;
    int ox = k0 - n * shw - oy * g->sw;
    for (int r = 0; r < kc; r++) {
        int y0 = oy * g->stride - g->pad, x0 = ox * g->stride - g->pad;
        int base = n * g->H * g->W + y0 * g->W + x0;
        __m256i vb = _mm256_set1_epi32(base), vy = _mm256_set1_epi32(y0), vx = _mm256_set1_epi32(x0);
        __m256i m0 = _mm256_and_si256(ig_inside(_mm256_add_epi32(ky0, vy), g->H),
                                      ig_inside(_mm256_add_epi32(kx0, vx), g->W));
        __m256i m1 = _mm256_and_si256(ig_inside(_mm256_add_epi32(ky1, vy), g->H),
                                      ig_inside(_mm256_add_epi32(kx1, vx), g->W));
        _mm256_storeu_ps(bp + r * 16, _mm256_mask_i32gather_ps(zero, g->big, _mm256_add_epi32(o0, vb),
                                                               _mm256_castsi256_ps(m0), 4));
        _mm256_storeu_ps(bp + r * 16 + 8, _mm256_mask_i32gather_ps(zero, g->big, _mm256_add_epi32(o1, vb),
                                                                   _mm256_castsi256_ps(m1), 4));
        if (++ox == g->sw) {
            ox = 0;
            if (++oy == g->sh) oy = 0, n++;
        }
    }
}

/* A finished tile (rows i0.., columns jo.. of the block at pos) into C. */
IGK static void ig_epilogue(const ig_product *p, const float *tile, int i0, int mr, int j0, int nr,
                        const ig_positions *pos, int jo, int first)
{
    if (!p->scatter) {
        for (int r = 0; r < mr; r++) {
            float *c = p->c + (size_t)(i0 + r) * p->ldc + j0;
            const float *t = tile + r * 16;
            if (first && !p->accumulate) {
                float b = p->bias ? p->bias[i0 + r] : 0.0f;
                for (int jj = 0; jj < nr; jj++) c[jj] = b + t[jj];
            } else {
                for (int jj = 0; jj < nr; jj++) c[jj] += t[jj];
            }
        }
        return;
    }
    const ig_grid *g = &p->g;
    int kk = g->k * g->k;
    /* 8 columns of one row of the small grid land on every other pixel of a
     * row of the big one at stride 2: one vector of tile interleaved with
     * zeros added to 15 pixels, where all 8 taps are inside */
    int run8[2];
    for (int h = 0; h < 2; h++) {
        int a = jo + 8 * h, z = a + 7;
        run8[h] = g->stride == 2 && 8 * h + 8 <= nr && pos->y0[a] == pos->y0[z] &&
                  pos->x0[z] - pos->x0[a] == 14 && pos->base[z] - pos->base[a] == 14;
    }
    const __m256i first15 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0);
    for (int r = 0; r < mr; r++) {
        int i = i0 + r, c = i / kk, t = i - c * kk, ky = t / g->k, kx = t - ky * g->k;
        float *dst = g->big_out + c * g->cs + ky * g->W + kx;
        const float *tr = tile + r * 16;
        for (int jj = 0; jj < nr;) {
            int a = jo + jj;
            if ((jj & 7) == 0 && run8[jj >> 3] && (unsigned)(pos->y0[a] + ky) < (unsigned)g->H &&
                pos->x0[a] + kx >= 0 && pos->x0[a + 7] + kx < g->W) {
                float *d = dst + pos->base[a];
                __m256 v = _mm256_loadu_ps(tr + jj), z = _mm256_setzero_ps();
                __m256 lo = _mm256_unpacklo_ps(v, z), hi = _mm256_unpackhi_ps(v, z);
                _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), _mm256_permute2f128_ps(lo, hi, 0x20)));
                _mm256_maskstore_ps(d + 8, first15,
                                    _mm256_add_ps(_mm256_maskload_ps(d + 8, first15),
                                                  _mm256_permute2f128_ps(lo, hi, 0x31)));
                jj += 8;
                continue;
            }
            int y = pos->y0[a] + ky, x = pos->x0[a] + kx;
            if ((unsigned)y < (unsigned)g->H && (unsigned)x < (unsigned)g->W)
                dst[pos->base[a]] += tr[jj];
            jj++;
        }
    }
}

/* col2im of a block of col (rows the (channel, ky, kx) of the window, np
 * columns the positions p0 ..) into the big grid: big += scatter(col),
 * a run of one row of the small grid at a time, its taps' bounds worked out
 * once per run. */
static void ig_col2im_block(const ig_product *p, const float *col, int p0, int np)
{
    const ig_grid *g = &p->g;
    int kk = g->k * g->k, shw = g->sh * g->sw;
    for (int i = 0; i < p->M; i++) {
        int c = i / kk, t = i - c * kk, ky = t / g->k, kx = t - ky * g->k, xlo, xhi;
        tap_range(kx, g->stride, g->pad, g->W, g->sw, &xlo, &xhi);
        const float *row = col + (size_t)i * np;
        float *img0 = g->big_out + c * g->cs + kx - g->pad;
        int n = p0 / shw, oy = (p0 - n * shw) / g->sw, ox0 = p0 - n * shw - oy * g->sw;
        for (int q = 0; q < np;) {
            int len = g->sw - ox0;
            if (len > np - q) len = np - q;
            int y = oy * g->stride - g->pad + ky;
            if ((unsigned)y < (unsigned)g->H) {
                float *dst = img0 + (size_t)n * g->H * g->W + (size_t)y * g->W;
                const float *r = row + q - ox0;
                int lo = xlo > ox0 ? xlo : ox0, hi = xhi < ox0 + len ? xhi : ox0 + len;
                if (g->stride == 2)
                    for (int ox = lo; ox < hi; ox++) dst[2 * ox] += r[ox];
                else
                    for (int ox = lo; ox < hi; ox++) dst[ox * g->stride] += r[ox];
            }
            q += len;
            ox0 = 0;
            if (++oy == g->sh) oy = 0, n++;
        }
    }
}

/* The scatter products with room for a block of col: the product into a
 * block of col of at most this many floats (it stays in the second-level
 * cache), then col2im of the block; the per-tile scatter of ig_epilogue
 * costs more per element than col2im's runs. */
#define IG_COL_BLOCK_FLOATS (64 * 1024)

/* col: the block of col, then room for the block of B copied into the
 * kernel's layout (rows of B, a conv layer's positions, are a power of two
 * apart and read in place would share one set of the first-level cache). */
IGK static void ig_run_col_block(const ig_product *p, float *col, size_t col_floats)
{
    size_t room = col_floats < IG_COL_BLOCK_FLOATS ? col_floats : IG_COL_BLOCK_FLOATS;
    int nc = (int)(room / ((size_t)p->M + IG_KC)) / 16 * 16;
    int packed = nc >= 16;
    if (!packed) nc = (int)(room / (size_t)p->M) / 16 * 16;
    if (nc < 16) nc = 16; /* the caller checked col_floats >= 16 M */
    float *bp = col + (size_t)p->M * nc;
    const ig_kernel kn = p->kernel;
    for (int jc = 0; jc < p->N; jc += nc) {
        int ncb = p->N - jc < nc ? p->N - jc : nc;
        for (int pc = 0; pc < p->K; pc += IG_KC) {
            int kc = p->K - pc < IG_KC ? p->K - pc : IG_KC;
            const float *b0 = p->b + (size_t)pc * p->ldb + jc;
            if (packed)
                for (int jo = 0; jo < ncb; jo += 16)
                    gemm_pack_panel16(bp + (size_t)jo * kc, b0 + jo, p->ldb, kc,
                                      ncb - jo < 16 ? ncb - jo : 16);
            for (int i0 = 0; i0 < p->M; i0 += kn.mr) {
                int mr = p->M - i0 < kn.mr ? p->M - i0 : kn.mr;
                const float *a = p->a + (size_t)i0 * p->ars + (size_t)pc * p->acs;
                for (int jo = 0; jo < ncb; jo += 16) {
                    int nr = ncb - jo < 16 ? ncb - jo : 16;
                    kn.run(mr, nr, !packed && nr < 16, kc, a, p->ars, p->acs,
                                     packed ? bp + (size_t)jo * kc : b0 + jo, packed ? 16 : p->ldb,
                                     pc == 0 ? GEMM_TO_C_SET : GEMM_TO_C_ADD,
                                     col + (size_t)i0 * ncb + jo, ncb, NULL);
                }
            }
        }
        ig_col2im_block(p, col, jc, ncb);
    }
}

/* scratch: at least IG_KC * 16 floats for the packed block of B. */
IGK static void ig_run(const ig_product *p, float *scratch, size_t scratch_floats)
{
    if (p->scatter && scratch_floats >= (size_t)p->M * 16) {
        ig_run_col_block(p, scratch, scratch_floats);
        return;
    }
    int nc = (int)(scratch_floats / IG_KC) / 16 * 16;
    if (nc > IG_NC) nc = IG_NC;
    ig_positions pos;
    float tile[IG_MR_MAX * 16];
    const ig_kernel kn = p->kernel;
    for (int jc = 0; jc < p->N; jc += nc) {
        int ncb = p->N - jc < nc ? p->N - jc : nc;
        if (p->b_kind == IG_B_GATHER || p->scatter) ig_positions_of(&p->g, &pos, jc, ncb);
        for (int pc = 0; pc < p->K; pc += IG_KC) {
            int kc = p->K - pc < IG_KC ? p->K - pc : IG_KC;
            if (p->b_kind != IG_B_PLAIN)
                for (int jo = 0; jo < ncb; jo += 16) {
                    float *bp = scratch + (size_t)jo * kc;
                    if (p->b_kind == IG_B_GATHER)
                        ig_pack_gather(p, bp, &pos, jo, pc, kc);
                    else
                        ig_pack_wgrad(p, bp, jc + jo, ncb - jo < 16 ? ncb - jo : 16, pc, kc);
                }
            for (int i0 = 0; i0 < p->M; i0 += kn.mr) {
                int mr = p->M - i0 < kn.mr ? p->M - i0 : kn.mr;
                const float *a = p->a + (size_t)i0 * p->ars + (size_t)pc * p->acs;
                for (int jo = 0; jo < ncb; jo += 16) {
                    int nr = ncb - jo < 16 ? ncb - jo : 16;
                    if (kn.run32 && p->b_kind != IG_B_PLAIN && !p->scatter && ncb - jo > 16) {
                        /* two packed panels, the same bits as one at a time */
                        int set = pc == 0 && !p->accumulate;
                        const float *b0 = scratch + (size_t)jo * kc;
                        kn.run32(mr, ncb - jo < 32 ? ncb - jo : 32, kc, a, p->ars, p->acs, b0,
                                 b0 + (size_t)16 * kc, set ? GEMM_TO_C_SET : GEMM_TO_C_ADD,
                                 p->c + (size_t)i0 * p->ldc + jc + jo, p->ldc,
                                 set && p->bias ? p->bias + i0 : NULL);
                        jo += 16;
                        continue;
                    }
                    const float *b;
                    long ldb;
                    int masked = 0;
                    if (p->b_kind == IG_B_PLAIN) {
                        b = p->b + (size_t)pc * p->ldb + jc + jo;
                        ldb = p->ldb;
                        masked = nr < 16;
                    } else {
                        b = scratch + (size_t)jo * kc;
                        ldb = 16;
                    }
                    if (!p->scatter) {
                        /* a tile of a plain C: no round trip through tile */
                        int set = pc == 0 && !p->accumulate;
                        kn.run(mr, nr, masked, kc, a, p->ars, p->acs, b, ldb,
                                         set ? GEMM_TO_C_SET : GEMM_TO_C_ADD,
                                         p->c + (size_t)i0 * p->ldc + jc + jo, p->ldc,
                                         set && p->bias ? p->bias + i0 : NULL);
                        continue;
                    }
                    kn.run(mr, 16, masked, kc, a, p->ars, p->acs, b, ldb, GEMM_TO_TILE,
                                     tile, 16, NULL);
                    ig_epilogue(p, tile, i0, mr, jc + jo, nr, &pos, jo, pc == 0);
                }
            }
        }
    }
}
#endif

/* ---------- which path ---------- */

static int implicit_state = -1; /* -1 until the first call looks at the CPU */

/* The widest path the CPU runs. */
static int path_available(void)
{
#if CONV_HAVE_AVX2
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return CONV_IM2COL;
    return __builtin_cpu_supports("avx512f") ? CONV_IMPLICIT_AVX512 : CONV_IMPLICIT_AVX2;
#else
    return CONV_IM2COL;
#endif
}

int conv_uses_implicit_gemm(void)
{
    int v = __atomic_load_n(&implicit_state, __ATOMIC_RELAXED);
    if (v >= 0)
        return v;
    const char *env = getenv("VAED_CONV");
    v = path_available();
    if (env && strcmp(env, "im2col") == 0)
        v = CONV_IM2COL;
    else if (env && strcmp(env, "avx2") == 0 && v > CONV_IMPLICIT_AVX2)
        v = CONV_IMPLICIT_AVX2;
    __atomic_store_n(&implicit_state, v, __ATOMIC_RELAXED);
    return v;
}

int conv_set_path(int path)
{
    int best = path_available(), v = path < CONV_IM2COL ? CONV_IM2COL : path;
    if (v > best) v = best;
    __atomic_store_n(&implicit_state, v, __ATOMIC_RELAXED);
    return v;
}

int conv_set_implicit_gemm(int on) { return conv_set_path(on ? CONV_IMPLICIT_AVX512 : CONV_IM2COL); }

#if CONV_HAVE_AVX2
/* The big grid of a layer: its input for Conv2d, its output for ConvT. */
static ig_grid grid_of(const conv_shape *s, int N)
{
    ig_grid g = {.k = s->k, .stride = s->stride, .pad = s->pad, .kw = s->k, .padx = s->pad};
    g.H = s->transposed ? s->oh : s->h;
    g.W = s->transposed ? s->ow : s->w;
    g.sh = s->transposed ? s->h : s->oh;
    g.sw = s->transposed ? s->w : s->ow;
    g.cs = (size_t)N * g.H * g.W;
    return g;
}

/* The gathers index the big tensor with 32-bit offsets. A window of fewer
 * rows than one 16-wide panel (the model's first conv, 1 x 3 x 3, and its
 * last ConvT, whose weight gradient has 9 columns) goes to im2col + gemm:
 * measured faster there (scripts/bench_conv.c: 0.87-0.90x for the first
 * layer's forward, 0.72-0.77x for the last one's backward on the implicit
 * GEMM). */
static int implicit_fits(const conv_shape *s, int N)
{
    ig_grid g = grid_of(s, N);
    size_t big = g.cs * (size_t)col_channels(s), small = (size_t)N * g.sh * g.sw;
    size_t rows = (size_t)col_channels(s) * s->k * s->k;
    return conv_uses_implicit_gemm() && big < INT_MAX / 2 && small < INT_MAX / 2 &&
           rows >= IG_NR && rows < INT_MAX / 2;
}

static ig_kernel kernel_in_use(void)
{
    if (conv_uses_implicit_gemm() == CONV_IMPLICIT_AVX512)
        return (ig_kernel){gemm_kernel_12x16, 12, gemm_kernel_12x32};
    return (ig_kernel){gemm_kernel_6x16, 6, NULL};
}

/* The packed block of B lives in the caller's col when it is large enough,
 * else on the stack, one 16-column panel at a time. */
#define IG_STACK_FLOATS (IG_KC * 16)
#define IG_RUN(p, col, col_floats)                                                              \
    do {                                                                                         \
        (p)->kernel = kernel_in_use();                                                           \
        if ((col_floats) >= (size_t)IG_KC * 32) {                                                \
            ig_run(p, col, col_floats);                                                          \
        } else {                                                                                 \
            float panel[IG_STACK_FLOATS];                                                        \
            ig_run(p, panel, IG_STACK_FLOATS);                                                   \
        }                                                                                        \
    } while (0)
#endif

void conv2d_forward(float *y, const float *x, const float *w, const float *b, int N,
                    const conv_shape *s, float *col, size_t col_floats)
{
#if CONV_HAVE_AVX2
    if (implicit_fits(s, N)) {
        int K = s->cin * s->k * s->k, npos = N * s->oh * s->ow;
        ig_product p = {.M = s->cout, .N = npos, .K = K, .a = w, .ars = K, .acs = 1,
                        .b_kind = IG_B_GATHER, .c = y, .ldc = npos, .bias = b, .g = grid_of(s, N)};
        p.g.big = x;
        IG_RUN(&p, col, col_floats);
        return;
    }
#endif
    im2col_conv2d_forward(y, x, w, b, N, s, col, col_floats);
}

void conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int N, const conv_shape *s, float *col, size_t col_floats)
{
#if CONV_HAVE_AVX2
    if (implicit_fits(s, N)) {
        int K = s->cin * s->k * s->k, npos = N * s->oh * s->ow, hw = s->h * s->w;
        sum_bias(db, dy, s->cout, (size_t)npos);
        ig_product p = {.M = s->cout, .N = K, .K = npos, .a = dy, .ars = npos, .acs = 1,
                        .b_kind = IG_B_WGRAD, .c = dw, .ldc = K, .accumulate = 1,
                        .g = grid_of(s, N)};
        p.g.big = x;
        IG_RUN(&p, col, col_floats);
        if (!dx)
            return;
        memset(dx, 0, sizeof(float) * (size_t)s->cin * N * hw);
        ig_product q = {.M = K, .N = npos, .K = s->cout, .a = w, .ars = 1, .acs = K,
                        .b_kind = IG_B_PLAIN, .b = dy, .ldb = npos, .scatter = 1,
                        .g = grid_of(s, N)};
        q.g.big_out = dx;
        IG_RUN(&q, col, col_floats);
        return;
    }
#endif
    im2col_conv2d_backward(dx, dw, db, dy, x, w, N, s, col, col_floats);
}

#if CONV_HAVE_AVX2
/* ---------- ConvT forward by output parity ----------
 *
 * Output pixel oy of a ConvT receives the taps ky with (oy + pad - ky) a
 * multiple of stride, from input row (oy + pad - ky) / stride. So the pixels
 * of one parity (oy % stride, ox % stride) form an ordinary stride-1 conv of
 * the input with a window of only those taps (k = 3, stride 2: 1 x 1, 1 x 2,
 * 2 x 1 and 2 x 2 windows, the nine taps between them): one gather product
 * each, on the tile kernel, written to a plain block and then interleaved
 * into y. No col, no col2im: measured in a training step, the product into
 * a chunked col and col2im were 31 % of the step, their col streaming through
 * memory. */

/* The taps of parity p along one axis: n of them, kmax - stride * t for
 * t < n, reading input row (or column) i + dmin + t for output i. */
typedef struct {
    int n, kmax, dmin;
} parity_taps;

static parity_taps parity_taps_of(int p, int k, int stride, int pad)
{
    int r = (p + pad) % stride;
    parity_taps t = {0, 0, 0};
    if (r < k) {
        t.n = (k - 1 - r) / stride + 1;
        t.kmax = r + stride * (t.n - 1);
        t.dmin = (p + pad - t.kmax) / stride; /* exact */
    }
    return t;
}

/* Output rows (or columns) of parity p: p, p + stride, ... < n_out. */
static int parity_count(int p, int stride, int n_out)
{
    return p < n_out ? (n_out - p + stride - 1) / stride : 0;
}

/* Scratch for the parity path: every parity's packed weights (the weight
 * tensor's size), the largest parity's output block, and the packed block
 * of the gather. */
/* The largest parity's output block: parity 0 has the most rows and columns. */
static size_t parity_block_floats(const conv_shape *s, int N)
{
    return (size_t)s->cout * N * parity_count(0, s->stride, s->oh) *
           parity_count(0, s->stride, s->ow);
}

static size_t parity_scratch_floats(const conv_shape *s, int N)
{
    return conv_weight_floats(s) + parity_block_floats(s, N) + (size_t)IG_KC * IG_NC;
}

enum { PARITY_MAX = 16 }; /* stride <= 4 */

static void convt_parity_forward(float *y, const float *x, const float *w, const float *b, int N,
                                 const conv_shape *s, float *col, size_t col_floats)
{
    int k = s->k, st = s->stride, hw = s->h * s->w, np = st * st;
    /* One table for both axes: the kernel, stride and padding are square. */
    parity_taps taps[4];
    for (int p = 0; p < st; p++)
        taps[p] = parity_taps_of(p, k, st, s->pad);
    /* wc[q] (cout, K_q) for parity q = py * st + px, K_q as the gather's
     * (channel, row tap, column tap), off[q] its taps in w's k x k. Output
     * channels outermost: the writes are np runs, and the reads of one
     * channel's taps (k*k floats, cout*k*k apart) hit the lines the previous
     * channel read; with input channels outermost the writes went K_q apart
     * and the packing took a quarter of the layer. */
    float *wc[PARITY_MAX], *dst[PARITY_MAX];
    int kq[PARITY_MAX], nt[PARITY_MAX], off[PARITY_MAX][16];
    float *at = col;
    for (int q = 0; q < np; q++) {
        const parity_taps *a = &taps[q / st], *c = &taps[q % st];
        nt[q] = a->n * c->n;
        for (int i = 0; i < a->n; i++)
            for (int j = 0; j < c->n; j++)
                off[q][i * c->n + j] = (a->kmax - st * i) * k + c->kmax - st * j;
        kq[q] = s->cin * nt[q];
        wc[q] = at;
        at += (size_t)s->cout * kq[q];
    }
    for (int co = 0; co < s->cout; co++) {
        for (int q = 0; q < np; q++) dst[q] = wc[q] + (size_t)co * kq[q];
        for (int ci = 0; ci < s->cin; ci++) {
            const float *src = w + ((size_t)ci * s->cout + co) * k * k;
            for (int q = 0; q < np; q++)
                for (int t = 0; t < nt[q]; t++) *dst[q]++ = src[off[q][t]];
        }
    }
    float *blk = at;
    float *scratch = blk + parity_block_floats(s, N);
    size_t scratch_floats = col_floats - (size_t)(scratch - col);
    for (int q = 0; q < np; q++) {
        int py = q / st, px = q % st;
        int rows = parity_count(py, st, s->oh), cols = parity_count(px, st, s->ow);
        int npc = N * rows * cols, K = kq[q];
        if (npc == 0)
            continue;
        if (K == 0) { /* no tap lands on this parity: the bias alone */
            for (int co = 0; co < s->cout; co++)
                for (int i = 0; i < npc; i++) blk[(size_t)co * npc + i] = b[co];
        } else {
            ig_product p = {.M = s->cout, .N = npc, .K = K, .a = wc[q], .ars = K, .acs = 1,
                            .b_kind = IG_B_GATHER, .c = blk, .ldc = npc, .bias = b};
            p.g = (ig_grid){.big = x, .cs = (size_t)N * hw, .H = s->h, .W = s->w,
                            .sh = rows, .sw = cols, .k = taps[py].n, .stride = 1,
                            .pad = -taps[py].dmin, .kw = taps[px].n, .padx = -taps[px].dmin};
            p.kernel = kernel_in_use();
            ig_run(&p, scratch, scratch_floats);
        }
        for (int co = 0; co < s->cout; co++)
            for (int n = 0; n < N; n++) {
                const float *src = blk + (size_t)co * npc + (size_t)n * rows * cols;
                float *dst = y + ((size_t)co * N + n) * s->oh * s->ow + (size_t)py * s->ow + px;
                for (int i = 0; i < rows; i++, src += cols, dst += (size_t)st * s->ow)
                    for (int j = 0; j < cols; j++) dst[(size_t)j * st] = src[j];
            }
    }
}
#endif

void conv_transpose2d_forward(float *y, const float *x, const float *w, const float *b, int N,
                              const conv_shape *s, float *col, size_t col_floats)
{
#if CONV_HAVE_AVX2
    if (implicit_fits(s, N) && s->stride <= 4 && s->k <= 4 * s->stride &&
        col_floats >= parity_scratch_floats(s, N)) {
        convt_parity_forward(y, x, w, b, N, s, col, col_floats);
        return;
    }
    /* Measured (scripts/bench_conv.c, the model's four ConvT layers): the
     * product into whole chunks of col (on gemm's AVX2 kernel, which reads
     * W^T and x in place) then col2im ran 8-37 % faster here than the
     * scatter into col blocks of L2 size, so a col of at least one image
     * takes that way; col2im remains on this path. */
    if (implicit_fits(s, N) && col_floats < conv_col_floats(s, 1)) {
        int M = s->cout * s->k * s->k, npos = N * s->h * s->w;
        size_t plane = (size_t)N * s->oh * s->ow;
        /* the taps add into the bias */
        for (int c = 0; c < s->cout; c++)
            for (size_t i = 0; i < plane; i++) y[c * plane + i] = b[c];
        ig_product p = {.M = M, .N = npos, .K = s->cin, .a = w, .ars = 1, .acs = M,
                        .b_kind = IG_B_PLAIN, .b = x, .ldb = npos, .scatter = 1,
                        .g = grid_of(s, N)};
        p.g.big_out = y;
        IG_RUN(&p, col, col_floats);
        return;
    }
#endif
    im2col_conv_transpose2d_forward(y, x, w, b, N, s, col, col_floats);
}

void conv_transpose2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int N, const conv_shape *s, float *col,
                               size_t col_floats)
{
#if CONV_HAVE_AVX2
    if (implicit_fits(s, N)) {
        int K = s->cout * s->k * s->k, npos = N * s->h * s->w;
        sum_bias(db, dy, s->cout, (size_t)N * s->oh * s->ow);
        ig_product p = {.M = s->cin, .N = K, .K = npos, .a = x, .ars = npos, .acs = 1,
                        .b_kind = IG_B_WGRAD, .c = dw, .ldc = K, .accumulate = 1,
                        .g = grid_of(s, N)};
        p.g.big = dy;
        IG_RUN(&p, col, col_floats);
        if (!dx)
            return;
        ig_product q = {.M = s->cin, .N = npos, .K = K, .a = w, .ars = K, .acs = 1,
                        .b_kind = IG_B_GATHER, .c = dx, .ldc = npos, .g = grid_of(s, N)};
        q.g.big = dy;
        IG_RUN(&q, col, col_floats);
        return;
    }
#endif
    im2col_conv_transpose2d_backward(dx, dw, db, dy, x, w, N, s, col, col_floats);
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
