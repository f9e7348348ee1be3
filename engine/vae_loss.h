/* vae_loss: what every VAE architecture shares between its encoder's heads
 * and its decoder's output logits: the reparameterisation with its
 * closed-form KL, the likelihoods, and the loss figures of a batch.
 *
 *     double kl_opt, kl = vae_loss_latent_forward(cfg, heads, eps, B, z, kl_dim, &kl_opt);
 *     ... decoder: z -> logits ...
 *     vae_loss_terms t = {vae_loss_output_nll(cfg, logits, x, B, L), kl, kl_opt};
 *     vae_loss_stats(&stats, &t, vae_loss_beta(cfg, step), B);   // logits -> dlogits
 *     ... decoder backward: dlogits -> dz ...
 *     vae_loss_latent_backward(cfg, heads, eps, dz, kl_dim, B, beta, dheads);
 *
 * heads: (B, 2Z), mu then logvar per row; eps and z: (B*L, Z), row b*L + l is
 * sample l of image b; logits: (B*L, Dout). Every buffer is the caller's;
 * nothing here allocates or keeps a pointer.
 */
#ifndef VAE_LOSS_H
#define VAE_LOSS_H

#include <stdint.h>

#include "engine/vae_config.h"

/* logvar is clamped to this range before exp() so that sigma and the KL stay
 * finite in float (exp(0.5*30) ~ 3.3e6); the gradient is zero outside it. */
#define LOGVAR_MIN (-30.0f)
#define LOGVAR_MAX 30.0f

/* logvar clamped to [LOGVAR_MIN, LOGVAR_MAX], as it is before every exp(). */
float vae_clamp_logvar(float logvar);

/* What a forward pass found, before the KL weight: -log p(x|z) averaged over
 * the samples, the closed-form KL and the KL as optimised (free bits), each
 * summed over the batch. */
typedef struct {
    double recon, kl, kl_opt;
} vae_loss_terms;

/* The KL weight at optimiser step step: beta, rising linearly from 0 over
 * the first kl_warmup steps. */
double vae_loss_beta(const vae_config *c, int64_t step);
/* stats for a batch of B from its terms and KL weight: loss = recon + beta *
 * kl_opt. VAE_ERR_NONFINITE when that is not finite. */
vae_status vae_loss_stats(vae_stats *stats, const vae_loss_terms *t, double beta, int B);

/* -log p(x|z) summed over the B*L rows and divided by L; the logits are
 * replaced in place by the gradient of that with respect to them. */
double vae_loss_output_nll(const vae_config *c, float *logits, const float *x, int B, int L);
/* The likelihood's mean, clamped to [0, 1]: logits (B, Dout) -> x_mean (B, D). */
void vae_loss_output_mean(const vae_config *c, const float *logits, int B, float *x_mean);
/* log p(x | logits) of one image, in double. */
double vae_loss_output_log_likelihood(const vae_config *c, const float *logits, const float *x);
/* z = mu + exp(logvar/2) * eps; returns the closed-form KL summed over the
 * batch, its per-dimension sums in kl_dim (Z), and in *kl_opt the KL as
 * optimised (free bits: a dimension whose batch-mean KL is under the floor
 * costs the floor, Kingma et al. 2016). */
double vae_loss_latent_forward(const vae_config *c, const float *heads, const float *eps, int B,
                               float *z, double *kl_dim, double *kl_opt);
/* dz and beta times the KL's gradient -> dheads (B, 2Z). */
void vae_loss_latent_backward(const vae_config *c, const float *heads, const float *eps,
                              const float *dz, const double *kl_dim, int B, double beta,
                              float *dheads);

#endif
