/* Conv2d and ConvTranspose2d: output shapes, PyTorch's weight layouts pinned
 * on one-hot inputs, the fast (im2col + sgemm, chunked) kernels against the
 * naive loops, and every gradient against central differences of a
 * double-precision reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/conv.h"
#include "engine/rng.h"

static float *rand_floats(rng_state *r, size_t n, float scale)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = (2.0f * rng_uniform(r) - 1.0f) * scale;
    return v;
}

static size_t in_floats(const conv_shape *s, int N) { return (size_t)s->cin * N * s->h * s->w; }
static size_t out_floats(const conv_shape *s, int N) { return (size_t)s->cout * N * s->oh * s->ow; }

static void test_shapes(void **state)
{
    (void)state;
    conv_shape s = conv2d_shape(3, 32, 64, 64, 3, 2, 1);
    assert_int_equal(s.oh, 32);
    assert_int_equal(s.ow, 32);
    s = conv2d_shape(1, 8, 28, 28, 3, 2, 1);
    assert_int_equal(s.oh, 14);
    s = conv2d_shape(1, 8, 7, 5, 3, 1, 1);
    assert_int_equal(s.oh, 7);
    assert_int_equal(s.ow, 5);
    s = conv_transpose2d_shape(256, 128, 2, 2, 3, 2, 1, 1);
    assert_int_equal(s.oh, 4);
    assert_int_equal(s.ow, 4);
    s = conv_transpose2d_shape(8, 3, 16, 16, 3, 2, 1, 1);
    assert_int_equal(s.oh, 32);
    assert_int_equal(conv_weight_floats(&s), 8 * 3 * 9);
    /* col: Conv2d gathers its input per output position, ConvT its output per input position */
    assert_int_equal(conv_col_floats(&s, 2), 3 * 9 * 16 * 16 * 2);
}

/* nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1), weight
 * [[1,2,3],[4,5,6],[7,8,9]], bias 0.5: a one-hot input at (iy, ix) writes the
 * kernel at output (2 iy - 1 + ky, 2 ix - 1 + kx), cropped to 4x4. */
static void test_transpose_layout_pinned(void **state)
{
    (void)state;
    conv_shape s = conv_transpose2d_shape(1, 1, 2, 2, 3, 2, 1, 1);
    float w[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, b = 0.5f, x[4] = {1, 0, 0, 0}, y[16];
    float col[128];
    const float want00[16] = {5, 6, 0, 0, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    conv_transpose2d_forward(y, x, w, &b, 1, &s, col, 64);
    for (int i = 0; i < 16; i++) assert_float_equal(y[i], want00[i] + 0.5f, 1e-6);
    float x11[4] = {0, 0, 0, 1};
    const float want11[16] = {0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0, 7, 8, 9};
    conv_transpose2d_forward(y, x11, w, &b, 1, &s, col, 64);
    for (int i = 0; i < 16; i++) assert_float_equal(y[i], want11[i] + 0.5f, 1e-6);

    /* two output channels: weight [in=1, out=2, 3, 3], channel 1 is the second block */
    conv_shape s2 = conv_transpose2d_shape(1, 2, 2, 2, 3, 2, 1, 1);
    float w2[18], b2[2] = {0, 0}, y2[32];
    for (int i = 0; i < 18; i++) w2[i] = (float)(i + 1);
    conv_transpose2d_forward(y2, x11, w2, b2, 1, &s2, col, 128);
    assert_float_equal(y2[16 + 5], 10.0f, 1e-6); /* channel 1, (1,1) <- w2[1][0][0][0] */
    assert_float_equal(y2[16 + 15], 18.0f, 1e-6);
}

/* nn.Conv2d(2, 1, 3, stride=2, padding=1): weight [out=1, in=2, 3, 3]; a one-hot
 * input in channel 1 at (2, 2) of 4x4 reaches only output (1, 1), through the
 * centre tap of the channel-1 kernel. */
static void test_conv2d_layout_pinned(void **state)
{
    (void)state;
    conv_shape s = conv2d_shape(2, 1, 4, 4, 3, 2, 1);
    float w[18], b = -1.0f, x[32] = {0}, y[4], col[128];
    for (int i = 0; i < 18; i++) w[i] = (float)(i + 1);
    x[16 + 2 * 4 + 2] = 1.0f;
    conv2d_forward(y, x, w, &b, 1, &s, col, 128);
    const float want[4] = {-1, -1, -1, 9 + 5 - 1};
    for (int i = 0; i < 4; i++) assert_float_equal(y[i], want[i], 1e-6);
    /* (0,0) of channel 0 is tap (1,1) of output (0,0) */
    memset(x, 0, sizeof x);
    x[0] = 2.0f;
    conv2d_forward(y, x, w, &b, 1, &s, col, 128);
    assert_float_equal(y[0], 2.0f * 5 - 1, 1e-6);
    assert_float_equal(y[1], -1.0f, 1e-6);
}

/* ---------- fast against naive ---------- */

static void assert_close(const float *a, const float *b, size_t n, double tol, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > tol * fmax(1.0, fabs((double)b[i])))
            fail_msg("%s[%zu]: fast %.8g, naive %.8g", what, i, a[i], b[i]);
    }
}

static void fast_vs_naive(const conv_shape *s, int N, int chunk)
{
    rng_state r;
    rng_seed(&r, 17 + (uint64_t)chunk);
    size_t nx = in_floats(s, N), ny = out_floats(s, N), nw = conv_weight_floats(s);
    float *x = rand_floats(&r, nx, 1.0f), *w = rand_floats(&r, nw, 0.5f);
    float *b = rand_floats(&r, (size_t)s->cout, 0.5f), *dy = rand_floats(&r, ny, 1.0f);
    /* outputs are overwritten: start the two sides from different values */
    float *y1 = rand_floats(&r, ny, 1e3f), *y2 = rand_floats(&r, ny, 1e3f);
    float *dx1 = rand_floats(&r, nx, 1e3f), *dx2 = rand_floats(&r, nx, 1e3f);
    /* backward adds: start both from the same non-zero gradients */
    float *dw1 = rand_floats(&r, nw, 1.0f), *dw2 = malloc(sizeof(float) * nw);
    float *db1 = rand_floats(&r, (size_t)s->cout, 1.0f), *db2 = malloc(sizeof(float) * s->cout);
    memcpy(dw2, dw1, sizeof(float) * nw);
    memcpy(db2, db1, sizeof(float) * s->cout);
    size_t ncol = conv_col_floats(s, chunk);
    float *col = malloc(sizeof(float) * ncol);
    if (s->transposed) {
        conv_transpose2d_forward(y1, x, w, b, N, s, col, ncol);
        conv_transpose2d_forward_naive(y2, x, w, b, N, s);
        conv_transpose2d_backward(dx1, dw1, db1, dy, x, w, N, s, col, ncol);
        conv_transpose2d_backward_naive(dx2, dw2, db2, dy, x, w, N, s);
    } else {
        conv2d_forward(y1, x, w, b, N, s, col, ncol);
        conv2d_forward_naive(y2, x, w, b, N, s);
        conv2d_backward(dx1, dw1, db1, dy, x, w, N, s, col, ncol);
        conv2d_backward_naive(dx2, dw2, db2, dy, x, w, N, s);
    }
    assert_close(y1, y2, ny, 1e-5, "y");
    assert_close(dx1, dx2, nx, 1e-5, "dx");
    assert_close(dw1, dw2, nw, 1e-4, "dw");
    assert_close(db1, db2, (size_t)s->cout, 1e-4, "db");
    /* dx == NULL is allowed: the parameter gradients are the same */
    memset(dw1, 0, sizeof(float) * nw);
    memset(db1, 0, sizeof(float) * s->cout);
    memset(dw2, 0, sizeof(float) * nw);
    memset(db2, 0, sizeof(float) * s->cout);
    if (s->transposed) {
        conv_transpose2d_backward(NULL, dw1, db1, dy, x, w, N, s, col, ncol);
        conv_transpose2d_backward_naive(NULL, dw2, db2, dy, x, w, N, s);
    } else {
        conv2d_backward(NULL, dw1, db1, dy, x, w, N, s, col, ncol);
        conv2d_backward_naive(NULL, dw2, db2, dy, x, w, N, s);
    }
    assert_close(dw1, dw2, nw, 1e-4, "dw (dx NULL)");
    assert_close(db1, db2, (size_t)s->cout, 1e-4, "db (dx NULL)");
    free(x); free(w); free(b); free(dy); free(y1); free(y2); free(dx1); free(dx2);
    free(dw1); free(dw2); free(db1); free(db2); free(col);
}

static void test_fast_matches_naive(void **state)
{
    (void)state;
    const int N = 5;
    for (int chunk = 1; chunk <= N; chunk += 2) {
        conv_shape s = conv2d_shape(3, 4, 8, 8, 3, 2, 1);
        fast_vs_naive(&s, N, chunk);
        s = conv2d_shape(2, 3, 7, 5, 3, 2, 1); /* odd sizes */
        fast_vs_naive(&s, N, chunk);
        s = conv2d_shape(2, 3, 6, 5, 3, 1, 1); /* stride 1 */
        fast_vs_naive(&s, N, chunk);
        s = conv_transpose2d_shape(4, 3, 4, 4, 3, 2, 1, 1);
        fast_vs_naive(&s, N, chunk);
        s = conv_transpose2d_shape(3, 2, 3, 5, 3, 2, 1, 0); /* no output padding */
        fast_vs_naive(&s, N, chunk);
        s = conv_transpose2d_shape(8, 6, 1, 1, 3, 2, 1, 1); /* 1x1 -> 2x2 */
        fast_vs_naive(&s, N, chunk);
    }
}

/* Both fast paths (the implicit GEMM where the CPU has it, and im2col +
 * gemm) against the naive loops on shapes that reach every edge of the
 * implicit GEMM: channel counts and positions not multiples of its 6 x 16
 * tile or of its 16-column panels, more rows of K than one block of 256
 * (cin * 9 > 256, cout * 9 > 256), a batch of one, non-square images,
 * stride 1 and 3, no padding, kernels of 1 and 5, and a col too small for a
 * block (the 16 KB stack panel) or large enough for several. */
static void test_paths_match_naive_odd_shapes(void **state)
{
    (void)state;
    const struct {
        int transposed, cin, cout, h, w, k, stride, pad, out_pad, N;
    } cases[] = {
        {0, 1, 32, 32, 32, 3, 2, 1, 0, 3},   /* the model's first layer */
        {0, 5, 7, 9, 11, 3, 2, 1, 0, 2},     /* nothing a multiple of anything */
        {0, 33, 17, 6, 5, 3, 2, 1, 0, 1},    /* K = 297 > 256, batch 1 */
        {0, 33, 17, 12, 10, 3, 2, 1, 0, 2},  /* K > 256 over whole 16-column tiles */
        {0, 3, 19, 7, 7, 3, 1, 1, 0, 2},     /* stride 1 */
        {0, 4, 6, 11, 8, 3, 3, 0, 0, 2},     /* stride 3, no padding */
        {0, 6, 5, 5, 6, 1, 1, 0, 0, 3},      /* 1x1 */
        {0, 3, 4, 9, 7, 5, 2, 2, 0, 2},      /* 5x5 */
        {0, 2, 3, 40, 40, 3, 2, 1, 0, 2},    /* positions span several blocks */
        {1, 7, 5, 3, 4, 3, 2, 1, 1, 2},      /* ConvT, odd channels */
        {1, 40, 31, 2, 2, 3, 2, 1, 1, 3},    /* ConvT, cout * 9 = 279 > 256 */
        {1, 40, 31, 4, 4, 3, 2, 1, 1, 2},    /* the same over whole tiles */
        {1, 300, 3, 2, 3, 3, 2, 1, 1, 1},    /* ConvT, cin = K > 256 */
        {1, 3, 6, 5, 4, 3, 2, 1, 0, 2},      /* no output padding */
        {1, 4, 3, 4, 5, 3, 1, 1, 0, 2},      /* ConvT stride 1 */
        {1, 5, 4, 3, 3, 5, 3, 1, 2, 2},      /* ConvT 5x5 stride 3 */
        {1, 32, 1, 16, 16, 3, 2, 1, 1, 2},   /* the model's last layer */
        {0, 3, 13, 6, 6, 3, 2, 1, 0, 2},     /* one row past the 12-row tile */
        {0, 13, 25, 5, 7, 3, 2, 1, 0, 2},    /* 25 rows, dx's K = 117 rows */
        {1, 13, 11, 3, 3, 3, 2, 1, 1, 2},    /* ConvT: cout * 9 = 99 rows */
    };
    for (int path = CONV_IMPLICIT_AVX512; path >= CONV_IM2COL; path--) {
        int on = conv_set_path(path);
        if (on != path) {
            print_message("(path %d is not on this CPU: not tested)\n", path);
            continue;
        }
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            conv_shape s = cases[i].transposed
                               ? conv_transpose2d_shape(cases[i].cin, cases[i].cout, cases[i].h,
                                                        cases[i].w, cases[i].k, cases[i].stride,
                                                        cases[i].pad, cases[i].out_pad)
                               : conv2d_shape(cases[i].cin, cases[i].cout, cases[i].h, cases[i].w,
                                              cases[i].k, cases[i].stride, cases[i].pad);
            fast_vs_naive(&s, cases[i].N, 1);
            fast_vs_naive(&s, cases[i].N, cases[i].N);
            fast_vs_naive(&s, cases[i].N, 64); /* col of 64 images: the block in col */
        }
    }
    conv_set_implicit_gemm(1);
}

/* The implicit GEMM's two tile kernels give the same bytes wherever a
 * product's tiles go straight to C or through a block of col (the chunked
 * ConvT forward and the scatter without col may order a pixel's taps
 * otherwise, and are only held to the naive loops above). */
static void conv_both_ways(const conv_shape *s, int N, int path, float **out, size_t *n_out)
{
    rng_state r;
    rng_seed(&r, 29);
    size_t nx = in_floats(s, N), ny = out_floats(s, N), nw = conv_weight_floats(s);
    float *x = rand_floats(&r, nx, 1.0f), *w = rand_floats(&r, nw, 0.5f);
    float *b = rand_floats(&r, (size_t)s->cout, 0.5f), *dy = rand_floats(&r, ny, 1.0f);
    size_t ncol = conv_col_floats(s, N), total = ny + nx + nw + (size_t)s->cout;
    float *col = malloc(sizeof(float) * ncol), *o = calloc(total, sizeof(float));
    assert_non_null(col);
    assert_non_null(o);
    assert_int_equal(conv_set_path(path), path);
    float *y = o, *dx = y + ny, *dw = dx + nx, *db = dw + nw;
    if (s->transposed) {
        conv_transpose2d_backward(dx, dw, db, dy, x, w, N, s, col, ncol);
    } else {
        conv2d_forward(y, x, w, b, N, s, col, ncol);
        conv2d_backward(dx, dw, db, dy, x, w, N, s, col, ncol);
    }
    *out = o;
    *n_out = total;
    free(x); free(w); free(b); free(dy); free(col);
}

static void test_tile_kernels_same_bytes(void **state)
{
    (void)state;
    if (conv_set_path(CONV_IMPLICIT_AVX512) != CONV_IMPLICIT_AVX512) {
        conv_set_implicit_gemm(1);
        skip();
    }
    const conv_shape shapes[] = {
        conv2d_shape(2, 32, 32, 32, 3, 2, 1),
        conv2d_shape(13, 25, 9, 7, 3, 2, 1),
        conv2d_shape(33, 17, 12, 10, 3, 2, 1),
        conv_transpose2d_shape(40, 31, 4, 4, 3, 2, 1, 1),
        conv_transpose2d_shape(13, 11, 3, 5, 3, 2, 1, 1),
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        float *wide, *narrow;
        size_t n, n2;
        conv_both_ways(&shapes[i], 3, CONV_IMPLICIT_AVX512, &wide, &n);
        conv_both_ways(&shapes[i], 3, CONV_IMPLICIT_AVX2, &narrow, &n2);
        assert_int_equal(n, n2);
        if (memcmp(wide, narrow, sizeof(float) * n) != 0)
            fail_msg("shape %zu: the 12-row and 6-row tile kernels differ", i);
        free(wide);
        free(narrow);
    }
    conv_set_implicit_gemm(1);
}

/* ConvT's forward pass by output parity (the implicit paths, given room for
 * the packed weights) against im2col + col2im, on odd sizes, tile edges (12
 * or 32 output channels and positions off 16 / 32), the model's stride 2,
 * pad 1, out_pad 1, and other strides, kernels and paddings; the AVX2 and
 * AVX-512 tiles give the same bytes. */
static void test_convt_parity_forward(void **state)
{
    (void)state;
    const conv_shape shapes[] = {
        conv_transpose2d_shape(256, 128, 2, 2, 3, 2, 1, 1),
        conv_transpose2d_shape(40, 31, 4, 4, 3, 2, 1, 1),
        conv_transpose2d_shape(13, 11, 3, 5, 3, 2, 1, 1),
        conv_transpose2d_shape(17, 25, 5, 3, 3, 2, 1, 0),
        conv_transpose2d_shape(16, 13, 7, 6, 3, 2, 0, 0),
        conv_transpose2d_shape(20, 33, 6, 5, 3, 1, 1, 0),
        conv_transpose2d_shape(18, 12, 4, 3, 4, 2, 1, 0),
        conv_transpose2d_shape(24, 14, 3, 4, 2, 2, 0, 1),
        conv_transpose2d_shape(16, 19, 3, 3, 3, 3, 1, 2),
    };
    size_t ncol = (size_t)1 << 21;
    float *col = malloc(sizeof(float) * ncol);
    assert_non_null(col);
    const int paths[] = {CONV_IMPLICIT_AVX512, CONV_IMPLICIT_AVX2};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const conv_shape *s = &shapes[i];
        int N = 3;
        rng_state r;
        rng_seed(&r, 41 + (unsigned)i);
        size_t nx = in_floats(s, N), ny = out_floats(s, N);
        float *x = rand_floats(&r, nx, 1.0f), *w = rand_floats(&r, conv_weight_floats(s), 0.5f);
        float *b = rand_floats(&r, (size_t)s->cout, 0.5f);
        float *ref = malloc(sizeof(float) * ny), *got[2] = {malloc(sizeof(float) * ny),
                                                             malloc(sizeof(float) * ny)};
        assert_true(ref && got[0] && got[1]);
        conv_set_path(CONV_IM2COL);
        conv_transpose2d_forward(ref, x, w, b, N, s, col, ncol);
        for (int p = 0; p < 2; p++) {
            if (conv_set_path(paths[p]) != paths[p]) {
                memcpy(got[p], got[0], sizeof(float) * ny);
                continue;
            }
            for (size_t j = 0; j < ny; j++) got[p][j] = NAN; /* every output written */
            conv_transpose2d_forward(got[p], x, w, b, N, s, col, ncol);
            for (size_t j = 0; j < ny; j++)
                if (!(fabsf(got[p][j] - ref[j]) <= 1e-4f * (1.0f + fabsf(ref[j]))))
                    fail_msg("shape %zu path %d: y[%zu] = %g, im2col %g", i, paths[p], j,
                             got[p][j], ref[j]);
        }
        if (memcmp(got[0], got[1], sizeof(float) * ny) != 0)
            fail_msg("shape %zu: the 12-row and 6-row tiles differ on ConvT forward", i);
        free(x); free(w); free(b); free(ref); free(got[0]); free(got[1]);
    }
    free(col);
    conv_set_implicit_gemm(1);
}

/* ---------- gradients against central differences ---------- */

/* The layer in double, channel-major, straight from the definition. */
static void ref_layer(double *y, const double *x, const double *w, const double *b, int N,
                      const conv_shape *s)
{
    int k = s->k;
    for (size_t i = 0; i < out_floats(s, N); i++) y[i] = b[i / ((size_t)N * s->oh * s->ow)];
    for (int ci = 0; ci < s->cin; ci++)
        for (int co = 0; co < s->cout; co++)
            for (int n = 0; n < N; n++)
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++) {
                        double wv = s->transposed ? w[((ci * s->cout + co) * k + ky) * k + kx]
                                                  : w[((co * s->cin + ci) * k + ky) * k + kx];
                        /* (small grid position) -> (big grid position) */
                        int sh = s->transposed ? s->h : s->oh, sw = s->transposed ? s->w : s->ow;
                        int bh = s->transposed ? s->oh : s->h, bw = s->transposed ? s->ow : s->w;
                        for (int py = 0; py < sh; py++)
                            for (int px = 0; px < sw; px++) {
                                int qy = py * s->stride - s->pad + ky, qx = px * s->stride - s->pad + kx;
                                if (qy < 0 || qy >= bh || qx < 0 || qx >= bw) continue;
                                if (s->transposed)
                                    y[(((size_t)co * N + n) * bh + qy) * bw + qx] +=
                                        wv * x[(((size_t)ci * N + n) * sh + py) * sw + px];
                                else
                                    y[(((size_t)co * N + n) * sh + py) * sw + px] +=
                                        wv * x[(((size_t)ci * N + n) * bh + qy) * bw + qx];
                            }
                    }
}

/* L = sum(r * layer(x)) */
static double ref_objective(const conv_shape *s, int N, const double *x, const double *w,
                            const double *b, const float *r, double *ybuf)
{
    ref_layer(ybuf, x, w, b, N, s);
    double L = 0;
    for (size_t i = 0; i < out_floats(s, N); i++) L += r[i] * ybuf[i];
    return L;
}

static void check_grads(double *p, size_t n, const float *ana, const char *what,
                        const conv_shape *s, int N, double *x, double *w, double *b,
                        const float *r, double *ybuf)
{
    for (size_t i = 0; i < n; i++) {
        double keep = p[i], h = 1e-5;
        p[i] = keep + h;
        double lp = ref_objective(s, N, x, w, b, r, ybuf);
        p[i] = keep - h;
        double lm = ref_objective(s, N, x, w, b, r, ybuf);
        p[i] = keep;
        double num = (lp - lm) / (2 * h);
        double rel = fabs(num - ana[i]) / fmax(fabs(num) + fabs(ana[i]), 1e-3);
        if (rel > 1e-3)
            fail_msg("%s %s[%zu]: analytic %.8g, numeric %.8g", s->transposed ? "convT" : "conv",
                     what, i, ana[i], num);
    }
}

static void gradcheck(const conv_shape *s, int N)
{
    rng_state rg;
    rng_seed(&rg, 5);
    size_t nx = in_floats(s, N), ny = out_floats(s, N), nw = conv_weight_floats(s);
    float *xf = rand_floats(&rg, nx, 1.0f), *wf = rand_floats(&rg, nw, 0.5f);
    float *bf = rand_floats(&rg, (size_t)s->cout, 0.5f), *r = rand_floats(&rg, ny, 1.0f);
    float *dx = malloc(sizeof(float) * nx), *dw = calloc(nw, sizeof(float));
    float *db = calloc((size_t)s->cout, sizeof(float));
    size_t ncol = conv_col_floats(s, 2); /* chunks of 2 images */
    float *col = malloc(sizeof(float) * ncol);
    if (s->transposed)
        conv_transpose2d_backward(dx, dw, db, r, xf, wf, N, s, col, ncol);
    else
        conv2d_backward(dx, dw, db, r, xf, wf, N, s, col, ncol);
    double *x = malloc(sizeof(double) * nx), *w = malloc(sizeof(double) * nw);
    double *b = malloc(sizeof(double) * s->cout), *ybuf = malloc(sizeof(double) * ny);
    for (size_t i = 0; i < nx; i++) x[i] = xf[i];
    for (size_t i = 0; i < nw; i++) w[i] = wf[i];
    for (int i = 0; i < s->cout; i++) b[i] = bf[i];

    /* the fast forward agrees with the double reference too */
    float *y = malloc(sizeof(float) * ny);
    if (s->transposed)
        conv_transpose2d_forward(y, xf, wf, bf, N, s, col, ncol);
    else
        conv2d_forward(y, xf, wf, bf, N, s, col, ncol);
    ref_layer(ybuf, x, w, b, N, s);
    for (size_t i = 0; i < ny; i++) assert_true(fabs(y[i] - ybuf[i]) < 1e-5 * fmax(1, fabs(ybuf[i])));

    check_grads(w, nw, dw, "weight", s, N, x, w, b, r, ybuf);
    check_grads(b, (size_t)s->cout, db, "bias", s, N, x, w, b, r, ybuf);
    check_grads(x, nx, dx, "input", s, N, x, w, b, r, ybuf);
    free(xf); free(wf); free(bf); free(r); free(dx); free(dw); free(db); free(col);
    free(x); free(w); free(b); free(ybuf); free(y);
}

static void test_gradcheck_conv2d(void **state)
{
    (void)state;
    conv_shape s = conv2d_shape(2, 3, 6, 6, 3, 2, 1);
    gradcheck(&s, 3);
    s = conv2d_shape(3, 2, 5, 7, 3, 2, 1);
    gradcheck(&s, 2);
}

static void test_gradcheck_conv_transpose2d(void **state)
{
    (void)state;
    conv_shape s = conv_transpose2d_shape(3, 2, 3, 3, 3, 2, 1, 1);
    gradcheck(&s, 3);
    s = conv_transpose2d_shape(2, 4, 2, 4, 3, 2, 1, 1);
    gradcheck(&s, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_transpose_layout_pinned),
        cmocka_unit_test(test_conv2d_layout_pinned),
        cmocka_unit_test(test_fast_matches_naive),
        cmocka_unit_test(test_paths_match_naive_odd_shapes),
        cmocka_unit_test(test_tile_kernels_same_bytes),
        cmocka_unit_test(test_convt_parity_forward),
        cmocka_unit_test(test_gradcheck_conv2d),
        cmocka_unit_test(test_gradcheck_conv_transpose2d),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
