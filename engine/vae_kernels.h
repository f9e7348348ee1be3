/* vae_kernels: the element-wise passes of a training step, vectorised, each
 * with the naive scalar reference it is tested against.
 *
 *     vae_kernels_bias_relu(y, b, B, H, 0.01f);        // y = leaky_relu(y + b)
 *     double nll = vae_kernels_bernoulli_nll_grad(logits, x, D, 1.0f);
 *     vae_kernels_bias_relu_naive(y2, b, B, H, 0.01f); // the same, one float at a time
 *
 * Every kernel is built for AVX-512, AVX2 (x86-64-v3) and baseline x86-64,
 * and the first call picks the best the CPU has, so one binary runs
 * everywhere and uses the wide units where they exist. Tests run each
 * instruction set the CPU has (vae_kernels_use_isa) against the *_naive
 * references. The callers own every buffer; nothing here allocates, and
 * the kernels are thread-safe.
 *
 * Special values: NaN and infinities go through as IEEE arithmetic says,
 * except where a kernel says otherwise (sigmoid: a NaN gives 0).
 */
#ifndef VAE_KERNELS_H
#define VAE_KERNELS_H

#include <stddef.h>

/* One Adam step over n parameters (PyTorch semantics: L2 decay in the
 * gradient; step_size = lr / (1 - beta1^t), inv_sqrt_bc2 = 1/sqrt(1 - beta2^t)).
 * The gradient is g, plus g2 when not NULL (the two halves of a batch). */
void vae_kernels_adam(float *restrict p, const float *restrict g, const float *restrict g2,
                      float *restrict m, float *restrict v, size_t n, float beta1, float beta2,
                      float eps, float weight_decay, float step_size, float inv_sqrt_bc2);
/* Bernoulli likelihood from logits: returns the sum over the n values of
 * softplus(l) - x*l, and overwrites l with (sigmoid(l) - x) * scale. */
double vae_kernels_bernoulli_nll_grad(float *restrict l, const float *restrict x, int n,
                                      float scale);
/* y = 1 / (1 + exp(-x)) for n values (a NaN gives 0: these are pixel means). */
void vae_kernels_sigmoid(float *restrict y, const float *restrict x, int n);
/* y[r, j] += b[j] for r < rows, then y = y > 0 ? y : slope * y (ReLU for
 * slope 0, LeakyReLU otherwise). */
void vae_kernels_bias_relu(float *restrict y, const float *restrict b, int rows, int cols,
                           float slope);
/* y[r, j] += b[j] for r < rows */
void vae_kernels_bias(float *restrict y, const float *restrict b, int rows, int cols);
/* dy[i] = y[i] > 0 ? dy[i] : slope * dy[i] */
void vae_kernels_relu_backward(float *restrict dy, const float *restrict y, size_t n, float slope);
/* db[j] += sum over rows of dy[r, j] */
void vae_kernels_column_sums(float *restrict db, const float *restrict dy, int rows, int cols);

/* The references: the same contracts, plain scalar loops on libm. */
void vae_kernels_adam_naive(float *p, const float *g, const float *g2, float *m, float *v,
                            size_t n, float beta1, float beta2, float eps, float weight_decay,
                            float step_size, float inv_sqrt_bc2);
double vae_kernels_bernoulli_nll_grad_naive(float *l, const float *x, int n, float scale);
void vae_kernels_sigmoid_naive(float *y, const float *x, int n);
void vae_kernels_bias_relu_naive(float *y, const float *b, int rows, int cols, float slope);
void vae_kernels_bias_naive(float *y, const float *b, int rows, int cols);
void vae_kernels_relu_backward_naive(float *dy, const float *y, size_t n, float slope);
void vae_kernels_column_sums_naive(float *db, const float *dy, int rows, int cols);

/* The instruction sets the kernels are built for, best first (0 ..
 * vae_kernels_isa_count() - 1, the last the baseline), and their names. */
int vae_kernels_isa_count(void);
const char *vae_kernels_isa_name(int isa);
/* Tests: from now on every kernel runs on instruction set isa. 1 when the
 * CPU has it, else 0 and nothing changes. Not for use while other threads
 * run kernels. */
int vae_kernels_use_isa(int isa);

#endif
