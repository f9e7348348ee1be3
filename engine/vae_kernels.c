/* The kernels of vae_kernels.h. Each body below is written once and
 * inlined into one function per instruction set (KERNEL_SET), and the first
 * call picks the best set the CPU has; tests can pick any other it has.
 * The naive references follow at the end.
 *
 * The build's -std=c11 keeps GCC from contracting a*b + c into an fma, so
 * the auto-vectorised kernels compute the same float operations in the same
 * order on every instruction set as the references: their results are
 * identical, which is what keeps checkpoints the same from machine to
 * machine. Only sigmoid and the Bernoulli loss, on their own polynomials,
 * differ from libm (by about an ulp).
 */
#include "engine/vae_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define BODY static inline __attribute__((always_inline))

BODY void adam_body(float *restrict p, const float *restrict g, const float *restrict g2,
                    float *restrict m, float *restrict v, size_t n, float beta1, float beta2,
                    float eps, float weight_decay, float step_size, float inv_sqrt_bc2)
{
    float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + (g2 ? g2[i] : 0.0f) + weight_decay * p[i];
        float mi = beta1 * m[i] + c1 * gi;
        float vi = beta2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

/* 16 lanes at a time with GCC's vector extensions, so that every clone (SSE,
 * AVX2, AVX-512) gets straight-line vector code; an array's last partial
 * group goes through the same code in a zero-padded copy. */
/* The vector helpers are static and always inlined, so no vector ever
 * crosses a call: the ABI note about passing 64-byte vectors does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) vf16 vsel(vi16 mask, vf16 a, vf16 b)
{
    return (vf16)(((vi16)a & mask) | ((vi16)b & ~mask));
}

/* exp(x) for x <= 0 (Cephes' expf: range reduction by ln 2, a degree-6
 * polynomial, about 1 ulp; the nearest integer by the 1.5*2^23 trick), with
 * no branch and no libm call. */
static inline __attribute__((always_inline)) vf16 vexp_neg(vf16 x)
{
    const vf16 lo = (vf16){0} - 87.0f;
    x = vsel(x >= lo, x, lo); /* NaN fails the test and becomes -87 too */
    vf16 fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    vf16 z = x * x;
    vf16 y = ((((1.9875691500e-4f * x + 1.3981999507e-3f) * x + 8.3334519073e-3f) * x +
               4.1665795894e-2f) * x + 1.6666665459e-1f) * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    vi16 bits = (__builtin_convertvector(fx, vi16) + 127) << 23;
    return y * (vf16)bits;
}

/* log(1 + e) for e in [0, 1] (Cephes' logf polynomial on the mantissa; e
 * itself below sqrt(2) - 1 keeps tiny values exact). */
static inline __attribute__((always_inline)) vf16 vlog1p_unit(vf16 e)
{
    vf16 y = 1.0f + e;
    vi16 big = y > 1.41421356f;
    vf16 half_y_m1 = 0.5f * y - 1.0f;
    vf16 x = vsel(big, half_y_m1, e);
    vf16 k = vsel(big, (vf16){0} + 1.0f, (vf16){0});
    vf16 z = x * x;
    vf16 p = ((((((((7.0376836292e-2f * x - 1.1514610310e-1f) * x + 1.1676998740e-1f) * x -
                   1.2420140846e-1f) * x + 1.4249322787e-1f) * x - 1.6668057665e-1f) * x +
                2.0000714765e-1f) * x - 2.4999993993e-1f) * x + 3.3333331174e-1f) * x * z;
    p += -2.12194440e-4f * k - 0.5f * z;
    return x + p + 0.693359375f * k;
}

static inline __attribute__((always_inline)) vf16 vsigmoid_parts(vf16 l, vf16 *e_out)
{
    const vi16 abs_mask = (vi16){0} + 0x7fffffff;
    vf16 e = vexp_neg((vf16)((vi16)l & abs_mask) * -1.0f); /* exp(-|l|) */
    vf16 inv = 1.0f / (1.0f + e);
    *e_out = e;
    return vsel(l >= 0.0f, inv, e * inv);
}

/* softplus(l) - x*l per lane; l becomes (sigmoid(l) - x) * scale. */
static inline __attribute__((always_inline)) vf16 bernoulli16(vf16 *l, vf16 x, float scale)
{
    vf16 lj = *l, e;
    vf16 sig = vsigmoid_parts(lj, &e);
    vf16 sp = vsel(lj > 0.0f, lj, (vf16){0}) + vlog1p_unit(e);
    *l = (sig - x) * scale;
    return sp - x * lj;
}

BODY double bernoulli_body(float *restrict l, const float *restrict x, int n, float scale)
{
    vf16 acc = {0};
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        vf16 lj, xj;
        memcpy(&lj, l + j, sizeof lj);
        memcpy(&xj, x + j, sizeof xj);
        acc += bernoulli16(&lj, xj, scale);
        memcpy(l + j, &lj, sizeof lj);
    }
    double sum = 0.0;
    for (int k = 0; k < 16; k++) sum += acc[k];
    if (j < n) {
        int r = n - j;
        vf16 lj = {0}, xj = {0};
        memcpy(&lj, l + j, sizeof(float) * (size_t)r);
        memcpy(&xj, x + j, sizeof(float) * (size_t)r);
        vf16 nll = bernoulli16(&lj, xj, scale);
        memcpy(l + j, &lj, sizeof(float) * (size_t)r);
        for (int k = 0; k < r; k++) sum += nll[k];
    }
    return sum;
}

BODY void sigmoid_body(float *restrict y, const float *restrict x, int n)
{
    vf16 e;
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        vf16 xj;
        memcpy(&xj, x + j, sizeof xj);
        vf16 sig = vsigmoid_parts(xj, &e);
        memcpy(y + j, &sig, sizeof sig);
    }
    if (j < n) {
        vf16 xj = {0};
        memcpy(&xj, x + j, sizeof(float) * (size_t)(n - j));
        vf16 sig = vsigmoid_parts(xj, &e);
        memcpy(y + j, &sig, sizeof(float) * (size_t)(n - j));
    }
}

BODY void bias_relu_body(float *restrict y, const float *restrict b, int rows, int cols,
                         float slope)
{
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * cols;
        for (int j = 0; j < cols; j++) {
            float v = yr[j] + b[j];
            yr[j] = v > 0.0f ? v : slope * v;
        }
    }
}

BODY void bias_body(float *restrict y, const float *restrict b, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * cols;
        for (int j = 0; j < cols; j++) yr[j] += b[j];
    }
}

BODY void relu_backward_body(float *restrict dy, const float *restrict y, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++) dy[i] = y[i] > 0.0f ? dy[i] : slope * dy[i];
}

BODY void column_sums_body(float *restrict db, const float *restrict dy, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        const float *d = dy + (size_t)r * cols;
        for (int j = 0; j < cols; j++) db[j] += d[j];
    }
}

/* ---------- one set of kernels per instruction set ---------- */

typedef struct {
    const char *name;
    void (*adam)(float *restrict, const float *restrict, const float *restrict, float *restrict,
                 float *restrict, size_t, float, float, float, float, float, float);
    double (*bernoulli_nll_grad)(float *restrict, const float *restrict, int, float);
    void (*sigmoid)(float *restrict, const float *restrict, int);
    void (*bias_relu)(float *restrict, const float *restrict, int, int, float);
    void (*bias)(float *restrict, const float *restrict, int, int);
    void (*relu_backward)(float *restrict, const float *restrict, size_t, float);
    void (*column_sums)(float *restrict, const float *restrict, int, int);
} kernel_set;

#define KERNEL_SET(isa, name, attr)                                                            \
    attr static void adam_##isa(float *restrict p, const float *restrict g,                     \
                                const float *restrict g2, float *restrict m, float *restrict v, \
                                size_t n, float b1, float b2, float eps, float wd, float step,  \
                                float inv)                                                      \
    {                                                                                           \
        adam_body(p, g, g2, m, v, n, b1, b2, eps, wd, step, inv);                              \
    }                                                                                           \
    attr static double bernoulli_##isa(float *restrict l, const float *restrict x, int n,      \
                                       float scale)                                             \
    {                                                                                           \
        return bernoulli_body(l, x, n, scale);                                                  \
    }                                                                                           \
    attr static void sigmoid_##isa(float *restrict y, const float *restrict x, int n)           \
    {                                                                                           \
        sigmoid_body(y, x, n);                                                                  \
    }                                                                                           \
    attr static void bias_relu_##isa(float *restrict y, const float *restrict b, int rows,      \
                                     int cols, float slope)                                     \
    {                                                                                           \
        bias_relu_body(y, b, rows, cols, slope);                                                \
    }                                                                                           \
    attr static void bias_##isa(float *restrict y, const float *restrict b, int rows, int cols) \
    {                                                                                           \
        bias_body(y, b, rows, cols);                                                            \
    }                                                                                           \
    attr static void relu_backward_##isa(float *restrict dy, const float *restrict y, size_t n, \
                                         float slope)                                           \
    {                                                                                           \
        relu_backward_body(dy, y, n, slope);                                                    \
    }                                                                                           \
    attr static void column_sums_##isa(float *restrict db, const float *restrict dy, int rows,  \
                                       int cols)                                                \
    {                                                                                           \
        column_sums_body(db, dy, rows, cols);                                                   \
    }                                                                                           \
    static const kernel_set set_##isa = {name,          adam_##isa,          bernoulli_##isa,   \
                                         sigmoid_##isa, bias_relu_##isa,     bias_##isa,        \
                                         relu_backward_##isa, column_sums_##isa};

#if defined(__x86_64__)
KERNEL_SET(avx512, "avx512f", __attribute__((target("avx512f"))))
KERNEL_SET(v3, "x86-64-v3", __attribute__((target("arch=x86-64-v3"))))
#endif
KERNEL_SET(base, "baseline", )

static const kernel_set *const sets[] = {
#if defined(__x86_64__)
    &set_avx512,
    &set_v3,
#endif
    &set_base,
};
#define N_SETS ((int)(sizeof sets / sizeof sets[0]))

static int cpu_has(const kernel_set *k)
{
#if defined(__x86_64__)
    if (k == &set_avx512) return __builtin_cpu_supports("avx512f");
#if defined(__clang__) /* clang 14 knows the features, not the level's name */
    if (k == &set_v3)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("bmi2");
#else
    if (k == &set_v3) return __builtin_cpu_supports("x86-64-v3");
#endif
#endif
    return k == &set_base;
}

static const kernel_set *active; /* NULL until the first call looks at the CPU */

static const kernel_set *kernels(void)
{
    const kernel_set *k = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (k) return k;
    for (int i = 0; i < N_SETS && !k; i++)
        if (cpu_has(sets[i])) k = sets[i];
    __atomic_store_n(&active, k, __ATOMIC_RELEASE); /* racing first calls pick the same */
    return k;
}

int vae_kernels_isa_count(void) { return N_SETS; }
const char *vae_kernels_isa_name(int isa)
{
    return isa >= 0 && isa < N_SETS ? sets[isa]->name : "?";
}

int vae_kernels_use_isa(int isa)
{
    if (isa < 0 || isa >= N_SETS || !cpu_has(sets[isa])) return 0;
    __atomic_store_n(&active, sets[isa], __ATOMIC_RELEASE);
    return 1;
}

void vae_kernels_adam(float *restrict p, const float *restrict g, const float *restrict g2,
                      float *restrict m, float *restrict v, size_t n, float beta1, float beta2,
                      float eps, float weight_decay, float step_size, float inv_sqrt_bc2)
{
    kernels()->adam(p, g, g2, m, v, n, beta1, beta2, eps, weight_decay, step_size, inv_sqrt_bc2);
}

double vae_kernels_bernoulli_nll_grad(float *restrict l, const float *restrict x, int n,
                                      float scale)
{
    return kernels()->bernoulli_nll_grad(l, x, n, scale);
}

void vae_kernels_sigmoid(float *restrict y, const float *restrict x, int n)
{
    kernels()->sigmoid(y, x, n);
}

void vae_kernels_bias_relu(float *restrict y, const float *restrict b, int rows, int cols,
                           float slope)
{
    kernels()->bias_relu(y, b, rows, cols, slope);
}

void vae_kernels_bias(float *restrict y, const float *restrict b, int rows, int cols)
{
    kernels()->bias(y, b, rows, cols);
}

void vae_kernels_relu_backward(float *restrict dy, const float *restrict y, size_t n, float slope)
{
    kernels()->relu_backward(dy, y, n, slope);
}

void vae_kernels_column_sums(float *restrict db, const float *restrict dy, int rows, int cols)
{
    kernels()->column_sums(db, dy, rows, cols);
}

/* ---------- the naive references ---------- */

void vae_kernels_adam_naive(float *p, const float *g, const float *g2, float *m, float *v,
                            size_t n, float beta1, float beta2, float eps, float weight_decay,
                            float step_size, float inv_sqrt_bc2)
{
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + (g2 ? g2[i] : 0.0f) + weight_decay * p[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        p[i] -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}

/* In double, then rounded: the reference of the float polynomials above. */
static double sigmoid_ref(double x)
{
    if (isnan(x)) return 0.0;
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* Each term in float as the kernel has it (so both overflow alike), on
 * libm; summed in double. */
double vae_kernels_bernoulli_nll_grad_naive(float *l, const float *x, int n, float scale)
{
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        float lj = l[j], softplus = fmaxf(lj, 0.0f) + log1pf(expf(-fabsf(lj)));
        sum += softplus - x[j] * lj;
        l[j] = ((float)sigmoid_ref(lj) - x[j]) * scale;
    }
    return sum;
}

void vae_kernels_sigmoid_naive(float *y, const float *x, int n)
{
    for (int j = 0; j < n; j++) y[j] = (float)sigmoid_ref(x[j]);
}

void vae_kernels_bias_relu_naive(float *y, const float *b, int rows, int cols, float slope)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            float v = y[(size_t)r * cols + j] + b[j];
            y[(size_t)r * cols + j] = v > 0.0f ? v : slope * v;
        }
}

void vae_kernels_bias_naive(float *y, const float *b, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) y[(size_t)r * cols + j] += b[j];
}

void vae_kernels_relu_backward_naive(float *dy, const float *y, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++)
        if (!(y[i] > 0.0f)) dy[i] *= slope;
}

void vae_kernels_column_sums_naive(float *db, const float *dy, int rows, int cols)
{
    for (int j = 0; j < cols; j++)
        for (int r = 0; r < rows; r++) db[j] += dy[(size_t)r * cols + j];
}
