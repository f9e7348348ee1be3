/* vae_conv: the convolutional VAE, the model behind cfg.arch == VAE_ARCH_CONV.
 *
 * Callers use vae.h: vae_init, vae_encode, vae_train_step ... run this
 * network when the config says arch conv (vae.c reaches it through the
 * private table vae_conv_ops, vae_arch.h). This header describes it and
 * exports the one fact others need:
 *
 *     int side = vae_conv_padded_size(&cfg);   // 32 for a 28x28 input
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
 * A conditional model (K = n_classes > 0) takes the label as K more input
 * channels after the C image ones, one-hot planes over the whole padded
 * P x P side (plane k is all 1 for label k, all 0 otherwise), so encoder.0
 * is Conv2d(C + K -> ch[0]); and decoder_input is Linear(latent + K -> ...)
 * on z with the one-hot after it. The rest is the same network.
 *
 * Tensors (PyTorch layouts, in the flat parameter array in this order):
 *   encoder.i.weight [ch[i], in (C + K for i = 0), 3, 3], encoder.i.bias [ch[i]], fc_mu.weight,
 *   fc_logvar.weight [latent, ch[n-1] F F], fc_mu.bias, fc_logvar.bias,
 *   decoder_input.weight [ch[n-1] F F, latent (+ K)], decoder_input.bias,
 *   decoder.i.weight [in, out, 3, 3], decoder.i.bias [out].
 */
#ifndef VAE_CONV_H
#define VAE_CONV_H

#include "engine/vae_config.h"

#define VAE_CONV_LEAKY_SLOPE 0.2f

/* The side the network runs at: 32 for 28, else the image side. */
int vae_conv_padded_size(const vae_config *cfg);

#endif
