/* vae_conv: the convolutional VAE, the model behind cfg.arch == VAE_ARCH_CONV.
 *
 * vae.c owns the model, the workspace and the training state and hands the
 * conv-specific work to these functions (callers outside the engine use vae.h):
 *
 *     vae_conv_build_tensors(m);                 // from vae_alloc: the tensor table
 *     vae_conv_init_params(m, seed);             // from vae_init: PyTorch's defaults
 *     float *s = malloc(vae_conv_workspace_floats(&m->cfg, B) * sizeof(float));
 *     vae_conv_encode(m, s, x, B, mu, logvar);   // inference, thread-safe per scratch
 *     float *logits = vae_conv_decode_logits(m, s, z, B);
 *     vae_conv_train *ct = vae_conv_train_new(m, B, err, sizeof err);
 *     vae_conv_forward_loss(m, ct, x, eps, B, step, &stats);
 *     vae_conv_backward(m, ct, grads);           // grads: n_params floats, overwritten
 *
 * The network (S = image side, P = S padded to 32 when S is 28, n = n_conv,
 * ch = conv_channels, F = P / 2^n, C' = C, or 2C for gaussian-learned):
 *   encoder.i   Conv2d(ch[i-1] (C for i = 0) -> ch[i], 3, stride 2, padding 1),
 *               LeakyReLU(0.2) after each; flatten (ch[n-1], F, F) in PyTorch's
 *               order; fc_mu, fc_logvar: Linear(ch[n-1] F F -> latent)
 *   decoder_input  Linear(latent -> ch[n-1] F F), reshaped to (ch[n-1], F, F),
 *               no activation
 *   decoder.i   ConvTranspose2d(ch[n-1-i] -> ch[n-2-i] (C' for the last), 3,
 *               stride 2, padding 1, output_padding 1), LeakyReLU(0.2) between,
 *               the last one's output is the logits (cfg.activation is not used)
 * A 28x28 input is zero-padded by 2 on each side to 32x32 and the output
 * logits cropped back to the centre 28x28. For gaussian-learned the first C
 * output channels are mean logits and the next C per-pixel logvar, so the
 * flat (Dout) layout is the MLP's: D means then D logvars.
 *
 * Tensors (PyTorch layouts, in the flat parameter array in this order):
 *   encoder.i.weight [ch[i], in, 3, 3], encoder.i.bias [ch[i]], fc_mu.weight,
 *   fc_logvar.weight [latent, ch[n-1] F F], fc_mu.bias, fc_logvar.bias,
 *   decoder_input.weight [ch[n-1] F F, latent], decoder_input.bias,
 *   decoder.i.weight [in, out, 3, 3], decoder.i.bias [out].
 */
#ifndef VAE_CONV_H
#define VAE_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae.h"
#include "engine/vae_arch.h"

#define VAE_CONV_LEAKY_SLOPE 0.2f

/* The conv-specific checks: channels 1 or 3, square, side 16, 32 or 64 (or 28,
 * padded to 32), 1..6 conv layers of 1..1024 channels leaving at least 1x1. */
int vae_conv_config_validate(const vae_config *cfg, char *err, size_t errlen);
/* The side the network runs at: 32 for 28, else the image side. */
int vae_conv_padded_size(const vae_config *cfg);

/* Appends the tensors to m->tensors (m->cfg set, m->n_tensors and m->n_params
 * counting from where they are); does not allocate. VAE_ERR_ARG when the
 * table would overflow. */
int vae_conv_build_tensors(vae_model *m);
/* Fills m->params like PyTorch's defaults for Conv2d, ConvTranspose2d and
 * Linear: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in the
 * product of the weight's dims after the first (for ConvTranspose2d that is
 * out * k * k, as torch computes it). */
void vae_conv_init_params(vae_model *m, uint64_t seed);

/* Inference scratch: floats for batches up to max_batch. */
size_t vae_conv_workspace_floats(const vae_config *cfg, int max_batch);
/* x: (B, D) -> mu, logvar: (B, latent). scratch: vae_conv_workspace_floats(B). */
int vae_conv_encode(const vae_model *m, float *scratch, const float *x, int B, float *mu,
                    float *logvar);
/* z: (B, latent) -> the output logits (B, Dout), in scratch (valid until the
 * next call with that scratch). */
float *vae_conv_decode_logits(const vae_model *m, float *scratch, const float *z, int B);
/* z -> x_mean (B, D): the likelihood's mean, clamped to [0, 1]. */
int vae_conv_decode(const vae_model *m, float *scratch, const float *z, int B, float *x_mean);

/* Training: activations and scratch for batches up to max_batch (with
 * cfg.mc_samples decoder passes per image). Gradients and Adam live with the
 * caller. */
typedef struct vae_conv_train vae_conv_train;
vae_conv_train *vae_conv_train_new(const vae_model *m, int max_batch, char *err, size_t errlen);
void vae_conv_train_free(vae_conv_train *ct);
/* The state laid out in l (vae_arch.h): NULL while sizing. */
vae_conv_train *vae_conv_train_layout(const vae_config *c, int max_batch, vae_layout *l);
/* Tests: run the naive reference kernels instead of im2col + gemm. */
void vae_conv_train_use_naive(vae_conv_train *ct, int on);
/* Forward and loss; eps: (B*mc, latent), copied. step sets the KL warm-up.
 * The same contract as vae_forward_loss (VAE_ERR_NONFINITE on a NaN loss). */
int vae_conv_forward_loss(const vae_model *m, vae_conv_train *ct, const float *x, const float *eps,
                          int B, int64_t step, vae_stats *stats);
/* The gradient of the last forward's loss into grads (n_params floats,
 * overwritten). */
int vae_conv_backward(const vae_model *m, vae_conv_train *ct, float *grads);

#endif
