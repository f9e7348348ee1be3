#include "engine/vae_kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define VK_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define VK_CLONES
#endif

VK_CLONES
void vk_adam(float *restrict p, const float *restrict g, const float *restrict g2,
             float *restrict m, float *restrict v, size_t n, float beta1, float beta2, float eps,
             float weight_decay, float step_size, float inv_sqrt_bc2)
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

VK_CLONES
double vk_bernoulli_nll_grad(float *restrict l, const float *restrict x, int n, float scale)
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

VK_CLONES
void vk_sigmoid(float *restrict y, const float *restrict x, int n)
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

VK_CLONES
void vk_bias_relu(float *restrict y, const float *restrict b, int rows, int cols, int leaky)
{
    float slope = leaky ? 0.01f : 0.0f;
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * cols;
        for (int j = 0; j < cols; j++) {
            float v = yr[j] + b[j];
            yr[j] = v > 0.0f ? v : slope * v;
        }
    }
}

VK_CLONES
void vk_bias(float *restrict y, const float *restrict b, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        float *yr = y + (size_t)r * cols;
        for (int j = 0; j < cols; j++) yr[j] += b[j];
    }
}

VK_CLONES
void vk_relu_backward(float *restrict dy, const float *restrict y, size_t n, float slope)
{
    for (size_t i = 0; i < n; i++) dy[i] = y[i] > 0.0f ? dy[i] : slope * dy[i];
}

VK_CLONES
void vk_column_sums(float *restrict db, const float *restrict dy, int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        const float *d = dy + (size_t)r * cols;
        for (int j = 0; j < cols; j++) db[j] += d[j];
    }
}
