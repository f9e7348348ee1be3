/* vae_kernels: the element-wise passes of a training step, vectorised.
 *
 * Each kernel is compiled for AVX-512, AVX2 and baseline x86-64 and the
 * loader picks the best the CPU has (GCC target_clones), so one binary runs
 * everywhere and uses the wide units where they exist. Their plain scalar
 * counterparts in vae.c's history are the references: tests compare the
 * whole step against PyTorch and a double-precision reference.
 */
#ifndef VAE_KERNELS_H
#define VAE_KERNELS_H

#include <stddef.h>

/* One Adam step over n parameters (PyTorch semantics: L2 decay in the
 * gradient; step_size = lr / (1 - beta1^t), inv_sqrt_bc2 = 1/sqrt(1 - beta2^t)).
 * The gradient is g, plus g2 when not NULL (the two halves of a batch). */
void vk_adam(float *restrict p, const float *restrict g, const float *restrict g2,
             float *restrict m, float *restrict v, size_t n, float beta1, float beta2, float eps,
             float weight_decay, float step_size, float inv_sqrt_bc2);
/* Bernoulli likelihood from logits: returns sum over d of softplus(l) - x*l,
 * and overwrites l with (sigmoid(l) - x) * scale. */
double vk_bernoulli_nll_grad(float *restrict l, const float *restrict x, int n, float scale);
/* y = 1 / (1 + exp(-x)) for n values (a NaN gives 0: these are pixel means). */
void vk_sigmoid(float *restrict y, const float *restrict x, int n);
/* y[r, j] += b[j] for r < rows, then the activation (0 relu, 1 leaky 0.01). */
void vk_bias_relu(float *restrict y, const float *restrict b, int rows, int cols, int leaky);
void vk_bias(float *restrict y, const float *restrict b, int rows, int cols);
/* dy[i] = y[i] > 0 ? dy[i] : slope * dy[i] */
void vk_relu_backward(float *restrict dy, const float *restrict y, size_t n, float slope);
/* db[j] += sum over rows of dy[r, j] */
void vk_column_sums(float *restrict db, const float *restrict dy, int rows, int cols);

#endif
