/* vae_kernels: every vectorised kernel against its naive reference, element
 * by element, on every instruction set this CPU has (vae_kernels_use_isa),
 * for every length from 0 to MAX_N (so every partial group of 4-, 8- and
 * 16-float vectors, and several whole ones), on random values and with each
 * special value (NaN, +-inf, +-FLT_MAX, +-1e30, tiny and subnormal numbers,
 * +-0) put at each position in turn. The floats past the end of every output
 * must stay untouched.
 *
 * Tolerances:
 *   adam, bias, bias_relu, relu_backward, column_sums
 *       exact: the same float operations in the same order (the build's
 *       -std=c11 keeps GCC from contracting them into fmas), so a result
 *       that differs by an ulp is a kernel computing something else
 *   sigmoid
 *       |fast - ref| <= 4e-7 |ref| + 2e-38: the kernel's exp polynomial is
 *       good to about 1 ulp, and it saturates exp(-|x|) at exp(-87) ~ 1.6e-38
 *       where the double reference goes on down to 0
 *   bernoulli_nll_grad
 *       gradient |fast - ref| <= 4e-7 (|ref| + |scale|) + 2e-38 |scale|:
 *       sigmoid's error, on a value in [0, 1], times scale; the sum
 *       |fast - ref| <= 2e-6 sum |term|: the kernel sums 16 lanes in float
 *       before it sums them in double, about n/16 roundings of the largest
 *       term (each term is a float in both, so both overflow alike)
 *   NaN must give NaN and an infinity the same infinity, whatever the
 *   tolerance (sigmoid's NaN gives 0, its contract).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/rng.h"
#include "engine/vae_kernels.h"

#define MAX_N 70
#define PAD 17             /* floats after an output that must stay as they were */
#define SENTINEL 12345.0f

static const float specials[] = {NAN,     INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, 1e30f,
                                 -1e30f,  1e-30f,   -1e-38f,   1e-45f,  -1e-45f,  0.0f,
                                 -0.0f};
#define N_SPECIALS ((int)(sizeof specials / sizeof specials[0]))

static rng_state rng;

static void fill(float *v, int n, float scale)
{
    rng_normal_fill(&rng, v, (size_t)n);
    for (int i = 0; i < n; i++) v[i] *= scale;
    for (int i = n; i < n + PAD; i++) v[i] = SENTINEL;
}

/* 1 when got stands for want: NaN for NaN, the same infinity, or within tol. */
static int matches(double got, double want, double tol)
{
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= tol;
}

/* The PAD floats after an output of n, as fill() left them. */
static void check_untouched(const char *what, const float *out, int n, int isa)
{
    for (int i = n; i < n + PAD; i++)
        if (out[i] != SENTINEL)
            fail_msg("%s on %s, n %d: wrote [%d] past the end", what, vae_kernels_isa_name(isa),
                     n, i);
}

static void check_exact(const char *what, const float *got, const float *want, int n, int isa)
{
    for (int i = 0; i < n; i++)
        if (!matches(got[i], want[i], 0.0))
            fail_msg("%s on %s, n %d: [%d] is %.9g, reference %.9g", what,
                     vae_kernels_isa_name(isa), n, i, got[i], want[i]);
    check_untouched(what, got, n, isa);
}

/* Runs check(isa, n, special position, special value) for each n, once on
 * random values (pos -1) and once per special value at each position. */
static void for_each_case(int isa, void (*check)(int isa, int n, int pos, float special))
{
    for (int n = 0; n <= MAX_N; n++) {
        check(isa, n, -1, 0.0f);
        for (int pos = 0; pos < n; pos++)
            for (int k = 0; k < N_SPECIALS; k++) check(isa, n, pos, specials[k]);
    }
}

/* Every instruction set the CPU has; the others are said and skipped. */
static void for_each_isa(void (*check)(int isa, int n, int pos, float special))
{
    int ran = 0;
    for (int isa = 0; isa < vae_kernels_isa_count(); isa++) {
        if (!vae_kernels_use_isa(isa)) {
            print_message("(no %s on this CPU: not tested here)\n", vae_kernels_isa_name(isa));
            continue;
        }
        for_each_case(isa, check);
        ran++;
    }
    assert_true(ran >= 1); /* the baseline runs everywhere */
    for (int isa = 0; !vae_kernels_use_isa(isa); isa++) continue; /* back to the best */
}

/* ---------- Adam ---------- */

static void check_adam(int isa, int n, int pos, float special)
{
    float p[MAX_N + PAD], g[MAX_N + PAD], g2[MAX_N + PAD], m[MAX_N + PAD], v[MAX_N + PAD];
    fill(p, n, 1.0f);
    fill(g, n, 0.1f);
    fill(g2, n, 0.1f);
    fill(m, n, 0.01f);
    fill(v, n, 0.001f);
    for (int i = 0; i < n; i++) v[i] = fabsf(v[i]);
    /* the special goes into each input in turn */
    float *inputs[] = {p, g, g2, m, v};
    int which = pos < 0 ? 0 : pos % 5;
    if (pos >= 0) inputs[which][pos] = special;
    for (int with_g2 = 0; with_g2 < 2; with_g2++) {
        float p1[MAX_N + PAD], m1[MAX_N + PAD], v1[MAX_N + PAD];
        float p2[MAX_N + PAD], m2[MAX_N + PAD], v2[MAX_N + PAD];
        memcpy(p1, p, sizeof p);
        memcpy(m1, m, sizeof m);
        memcpy(v1, v, sizeof v);
        memcpy(p2, p, sizeof p);
        memcpy(m2, m, sizeof m);
        memcpy(v2, v, sizeof v);
        const float *h = with_g2 ? g2 : NULL;
        vae_kernels_adam(p1, g, h, m1, v1, (size_t)n, 0.9f, 0.999f, 1e-8f, 1e-2f, 1.3e-3f, 7.0f);
        vae_kernels_adam_naive(p2, g, h, m2, v2, (size_t)n, 0.9f, 0.999f, 1e-8f, 1e-2f, 1.3e-3f,
                               7.0f);
        check_exact("adam p", p1, p2, n, isa);
        check_exact("adam m", m1, m2, n, isa);
        check_exact("adam v", v1, v2, n, isa);
    }
}

static void test_adam(void **state)
{
    (void)state;
    for_each_isa(check_adam);
}

/* ---------- sigmoid ---------- */

static void check_sigmoid(int isa, int n, int pos, float special)
{
    float x[MAX_N + PAD], y1[MAX_N + PAD], y2[MAX_N + PAD];
    fill(x, n, 8.0f); /* through both tails of the curve */
    if (pos >= 0) x[pos] = special;
    fill(y1, n, 0.0f);
    fill(y2, n, 0.0f);
    vae_kernels_sigmoid(y1, x, n);
    vae_kernels_sigmoid_naive(y2, x, n);
    for (int i = 0; i < n; i++)
        if (!matches(y1[i], y2[i], 4e-7 * fabs(y2[i]) + 2e-38))
            fail_msg("sigmoid on %s, n %d: sigmoid(%.9g) is %.9g, reference %.9g",
                     vae_kernels_isa_name(isa), n, x[i], y1[i], y2[i]);
    check_untouched("sigmoid", y1, n, isa);
}

static void test_sigmoid(void **state)
{
    (void)state;
    for_each_isa(check_sigmoid);
}

/* ---------- Bernoulli loss and gradient ---------- */

static void check_bernoulli(int isa, int n, int pos, float special)
{
    float l[MAX_N + PAD], x[MAX_N + PAD], l1[MAX_N + PAD], l2[MAX_N + PAD];
    fill(l, n, 6.0f);
    fill(x, n, 1.0f);
    for (int i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i])); /* pixels in (0, 1) */
    if (pos >= 0) {
        if (pos % 2) x[pos] = special; /* in a target, then in a logit */
        else l[pos] = special;
    }
    const float scale = 0.37f;
    memcpy(l1, l, sizeof l);
    memcpy(l2, l, sizeof l);
    double s1 = vae_kernels_bernoulli_nll_grad(l1, x, n, scale);
    double s2 = vae_kernels_bernoulli_nll_grad_naive(l2, x, n, scale);
    double terms = 0;
    for (int i = 0; i < n; i++)
        terms += fabsf(fmaxf(l[i], 0.0f) + log1pf(expf(-fabsf(l[i]))) - x[i] * l[i]);
    if (!matches(s1, s2, 2e-6 * terms))
        fail_msg("bernoulli on %s, n %d: sum %.12g, reference %.12g", vae_kernels_isa_name(isa), n,
                 s1, s2);
    for (int i = 0; i < n; i++)
        if (!matches(l1[i], l2[i], 4e-7 * (fabs(l2[i]) + scale) + 2e-38 * scale))
            fail_msg("bernoulli on %s, n %d: gradient at logit %.9g, target %.9g is %.9g, "
                     "reference %.9g",
                     vae_kernels_isa_name(isa), n, l[i], x[i], l1[i], l2[i]);
    check_untouched("bernoulli", l1, n, isa);
}

static void test_bernoulli_nll_grad(void **state)
{
    (void)state;
    for_each_isa(check_bernoulli);
}

/* ---------- bias, bias + ReLU, ReLU backward, column sums ---------- */

/* The row kernels, on rows x n for a few row counts; the special goes into
 * y (or dy) at pos of row 0, then of the last row, and into b at pos. */
static void check_rows(int isa, int n, int pos, float special)
{
    enum { MAX_ROWS = 3 };
    const int row_counts[] = {0, 1, MAX_ROWS};
    for (int rc = 0; rc < 3; rc++) {
        int rows = row_counts[rc], total = rows * n;
        float y[MAX_ROWS * MAX_N + PAD], b[MAX_N + PAD];
        float y1[MAX_ROWS * MAX_N + PAD], y2[MAX_ROWS * MAX_N + PAD];
        float db1[MAX_N + PAD], db2[MAX_N + PAD];
        fill(y, total, 1.0f);
        fill(b, n, 1.0f);
        if (pos >= 0 && rows > 0) {
            y[pos] = special;
            y[(rows - 1) * n + pos] = special;
            b[(pos + 1) % n] = special;
        }
        const float slopes[] = {0.0f, 0.01f, 0.2f};
        for (int k = 0; k < 3; k++) {
            memcpy(y1, y, sizeof y);
            memcpy(y2, y, sizeof y);
            vae_kernels_bias_relu(y1, b, rows, n, slopes[k]);
            vae_kernels_bias_relu_naive(y2, b, rows, n, slopes[k]);
            check_exact("bias_relu", y1, y2, total, isa);

            /* dy: b's values (and its special) spread over the rows */
            for (int i = 0; i < total; i++) y1[i] = b[i % (n ? n : 1)] * (float)(i % 7 - 3);
            for (int i = total; i < total + PAD; i++) y1[i] = SENTINEL;
            memcpy(y2, y1, sizeof y1);
            vae_kernels_relu_backward(y1, y, (size_t)total, slopes[k]);
            vae_kernels_relu_backward_naive(y2, y, (size_t)total, slopes[k]);
            check_exact("relu_backward", y1, y2, total, isa);
        }
        memcpy(y1, y, sizeof y);
        memcpy(y2, y, sizeof y);
        vae_kernels_bias(y1, b, rows, n);
        vae_kernels_bias_naive(y2, b, rows, n);
        check_exact("bias", y1, y2, total, isa);

        fill(db1, n, 1.0f); /* column sums add to what is there */
        memcpy(db2, db1, sizeof db1);
        vae_kernels_column_sums(db1, y, rows, n);
        vae_kernels_column_sums_naive(db2, y, rows, n);
        check_exact("column_sums", db1, db2, n, isa);
    }
}

static void test_row_kernels(void **state)
{
    (void)state;
    for_each_isa(check_rows);
}

/* The references themselves on values worked by hand, so that a wrong
 * reference cannot agree with a wrong kernel. */
static void test_references_by_hand(void **state)
{
    (void)state;
    float y[4] = {1.0f, -2.0f, 0.5f, -0.5f}, b[2] = {0.5f, 1.0f};
    vae_kernels_bias_relu_naive(y, b, 2, 2, 0.1f); /* rows (1.5, -1), (1, 0.5) */
    assert_true(y[0] == 1.5f && y[1] == -0.1f && y[2] == 1.0f && y[3] == 0.5f);
    float db[2] = {1.0f, 0.0f};
    vae_kernels_column_sums_naive(db, y, 2, 2);
    assert_true(db[0] == 3.5f && db[1] == 0.4f);
    float dy[3] = {2.0f, 2.0f, 2.0f}, act[3] = {1.0f, 0.0f, -1.0f};
    vae_kernels_relu_backward_naive(dy, act, 3, 0.25f);
    assert_true(dy[0] == 2.0f && dy[1] == 0.5f && dy[2] == 0.5f);
    float x[3] = {0.0f, 2.0f, NAN}, s[3];
    vae_kernels_sigmoid_naive(s, x, 3);
    assert_true(s[0] == 0.5f && fabsf(s[1] - 0.880797078f) < 1e-7f && s[2] == 0.0f);
    /* Bernoulli at logit 0: log 2 per value whatever x; gradient 0.5 - x */
    float l[2] = {0.0f, 0.0f}, t[2] = {0.0f, 1.0f};
    double nll = vae_kernels_bernoulli_nll_grad_naive(l, t, 2, 2.0f);
    assert_true(fabs(nll - 2 * log(2.0)) < 1e-6 && l[0] == 1.0f && l[1] == -1.0f);
    /* Adam's first step from zero moments moves p by about lr against g */
    float p[1] = {1.0f}, g[1] = {0.5f}, m[1] = {0.0f}, v[1] = {0.0f};
    float step_size = 1e-3f / (1.0f - 0.9f), inv = 1.0f / sqrtf(1.0f - 0.999f);
    vae_kernels_adam_naive(p, g, NULL, m, v, 1, 0.9f, 0.999f, 1e-8f, 0.0f, step_size, inv);
    assert_true(fabsf(p[0] - (1.0f - 1e-3f)) < 1e-6f);
}

int main(void)
{
    rng_seed(&rng, 20240611);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_references_by_hand),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_sigmoid),
        cmocka_unit_test(test_bernoulli_nll_grad),
        cmocka_unit_test(test_row_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
