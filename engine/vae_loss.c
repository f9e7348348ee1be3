/* The likelihoods and the latent layer of every VAE architecture (see
 * vae_loss.h): the loss and its gradient with respect to the decoder's
 * output logits, the reparameterisation with the closed-form KL, their
 * backward pass, and the KL weight and the batch's figures. */
#include "engine/vae_loss.h"

#include <math.h>
#include <stddef.h>

#include "engine/vae_kernels.h"

#define LOG_2PI 1.8378770664093453

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float softplusf(float x) { return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))); }
float vae_clamp_logvar(float logvar)
{
    return logvar < LOGVAR_MIN ? LOGVAR_MIN : (logvar > LOGVAR_MAX ? LOGVAR_MAX : logvar);
}
/* The continuous Bernoulli (Loaiza-Ganem and Cunningham 2019) of logit l:
 * its log normaliser log C, d log C / dl, and its mean, each with the
 * series near l = 0 where the closed forms lose their digits. */
static inline double cb_log_norm(double l)
{
    double a = fabs(l);
    if (a < 1e-3) return 0.6931471805599453 + l * l / 12.0;
    return log(a) - log(tanh(a / 2.0));
}
static inline double cb_dlog_norm(double l)
{
    double a = fabs(l);
    if (a < 1e-3) return l / 6.0;
    if (a > 40.0) return 1.0 / l;
    return 1.0 / l - 1.0 / sinh(l);
}
static inline float cb_mean(float l)
{
    double a = fabs((double)l);
    if (a < 1e-3) return (float)(0.5 + l / 12.0);
    double lam = 1.0 / (1.0 + exp(-(double)l));
    return (float)(lam / (2.0 * lam - 1.0) - 1.0 / l);
}

/* -log p(x|z) summed over the B*L rows of logits (BL, Dout) and divided by L;
 * the logits are replaced in place by d(that)/d(logits). x: (B, D). */
double vae_loss_output_nll(const vae_config *c, float *logits, const float *x, int B, int L)
{
    int D = vae_config_input_dim(c), Dout = vae_config_output_dim(c);
    double recon = 0.0;
    float inv_L = 1.0f / (float)L;
    for (int r = 0; r < B * L; r++) {
        const float *target = x + (size_t)(r / L) * D;
        float *row = logits + (size_t)r * Dout;
        double nll = 0.0;
        switch (c->likelihood) {
        case VAE_LIK_BERNOULLI:
            nll = vae_kernels_bernoulli_nll_grad(row, target, D, inv_L);
            break;
        case VAE_LIK_CBERNOULLI:
            for (int j = 0; j < D; j++) {
                float l = row[j];
                nll += softplusf(l) - target[j] * l - cb_log_norm(l);
                row[j] = (float)(sigmoidf(l) - target[j] - cb_dlog_norm(l)) * inv_L;
            }
            break;
        case VAE_LIK_GAUSSIAN: {
            float var = c->sigma * c->sigma;
            nll += D * (log((double)c->sigma) + 0.5 * LOG_2PI);
            for (int j = 0; j < D; j++) {
                float mean = sigmoidf(row[j]), d = mean - target[j];
                nll += 0.5 * d * d / var;
                row[j] = d / var * mean * (1.0f - mean) * inv_L;
            }
            break;
        }
        case VAE_LIK_GAUSSIAN_LEARNED:
            /* row: D mean logits, then D per-pixel logvars */
            for (int j = 0; j < D; j++) {
                float mean = sigmoidf(row[j]), d = mean - target[j];
                float logvar = vae_clamp_logvar(row[D + j]), inv_var = expf(-logvar);
                nll += 0.5 * ((double)d * d * inv_var + logvar + LOG_2PI);
                row[j] = d * inv_var * mean * (1.0f - mean) * inv_L;
                int inside = row[D + j] > LOGVAR_MIN && row[D + j] < LOGVAR_MAX;
                row[D + j] = inside ? 0.5f * (1.0f - d * d * inv_var) * inv_L : 0.0f;
            }
            break;
        }
        recon += nll;
    }
    return recon / L;
}

/* logits (B, Dout) -> x_mean (B, D) clamped to [0, 1]. */
void vae_loss_output_mean(const vae_config *c, const float *logits, int B, float *x_mean)
{
    int D = vae_config_input_dim(c), Dout = vae_config_output_dim(c);
    for (int r = 0; r < B; r++) {
        const float *row = logits + (size_t)r * Dout;
        float *mean = x_mean + (size_t)r * D;
        if (c->likelihood == VAE_LIK_CBERNOULLI)
            for (int j = 0; j < D; j++) mean[j] = cb_mean(row[j]);
        else
            vae_kernels_sigmoid(mean, row, D);
        for (int j = 0; j < D; j++)
            mean[j] = mean[j] < 0.0f ? 0.0f : (mean[j] > 1.0f ? 1.0f : mean[j]);
    }
}

/* heads (B, 2Z) mu | logvar, eps (BL, Z) -> z (BL, Z); KL per dimension
 * summed over the batch into kl_dim (Z); returns the KL and, in *kl_opt, the
 * KL as optimised (with free bits). */
double vae_loss_latent_forward(const vae_config *c, const float *heads, const float *eps, int B,
                               float *z, double *kl_dim, double *kl_opt)
{
    int Z = c->latent, L = c->mc_samples;
    double kl = 0.0;
    for (int j = 0; j < Z; j++) kl_dim[j] = 0.0;
    for (int b = 0; b < B; b++) {
        const float *mu = heads + (size_t)b * 2 * Z, *logvar = mu + Z;
        for (int j = 0; j < Z; j++) {
            float lv = vae_clamp_logvar(logvar[j]);
            float var = expf(lv), sd = expf(0.5f * lv);
            double k = 0.5 * ((double)mu[j] * mu[j] + var - 1.0 - lv);
            kl_dim[j] += k;
            kl += k;
            for (int l = 0; l < L; l++) {
                size_t r = (size_t)(b * L + l) * Z + j;
                z[r] = mu[j] + sd * eps[r];
            }
        }
    }
    *kl_opt = kl;
    if (c->free_bits > 0.0f) {
        *kl_opt = 0.0;
        for (int j = 0; j < Z; j++) {
            double mean = kl_dim[j] / B;
            *kl_opt += (mean < c->free_bits ? (double)c->free_bits : mean) * B;
        }
    }
    return kl;
}

/* dz (BL, Z) and the KL term -> dheads (B, 2Z). */
void vae_loss_latent_backward(const vae_config *c, const float *heads, const float *eps,
                              const float *dz, const double *kl_dim, int B, double beta,
                              float *dheads)
{
    int Z = c->latent, L = c->mc_samples;
    for (int b = 0; b < B; b++) {
        const float *mu = heads + (size_t)b * 2 * Z, *logvar = mu + Z;
        float *dmu = dheads + (size_t)b * 2 * Z, *dlogvar = dmu + Z;
        for (int j = 0; j < Z; j++) {
            int active = !(c->free_bits > 0.0f && kl_dim[j] / B < c->free_bits);
            int inside = logvar[j] > LOGVAR_MIN && logvar[j] < LOGVAR_MAX;
            float sd = expf(0.5f * vae_clamp_logvar(logvar[j])), var = sd * sd;
            float dmu_j = 0.0f, dlogvar_j = 0.0f; /* summed over the L samples */
            for (int l = 0; l < L; l++) {
                size_t r = (size_t)(b * L + l) * Z + j;
                dmu_j += dz[r];
                dlogvar_j += dz[r] * eps[r] * 0.5f * sd;
            }
            if (active) {
                dmu_j += (float)beta * mu[j];
                dlogvar_j += (float)beta * 0.5f * (var - 1.0f);
            }
            dmu[j] = dmu_j;
            dlogvar[j] = inside ? dlogvar_j : 0.0f;
        }
    }
}

double vae_loss_beta(const vae_config *c, int64_t step)
{
    double beta = c->beta;
    if (c->kl_warmup > 0 && step < c->kl_warmup) beta *= (double)step / (double)c->kl_warmup;
    return beta;
}

vae_status vae_loss_stats(vae_stats *stats, const vae_loss_terms *t, double beta, int B)
{
    stats->recon = t->recon;
    stats->kl = t->kl;
    stats->beta_eff = beta;
    stats->loss = t->recon + beta * t->kl_opt;
    stats->batch = B;
    return isfinite(stats->loss) ? VAE_OK : VAE_ERR_NONFINITE;
}

double vae_loss_output_log_likelihood(const vae_config *c, const float *logits, const float *x)
{
    int D = vae_config_input_dim(c);
    double s = 0.0;
    for (int j = 0; j < D; j++) {
        double l = logits[j], target = x[j];
        switch (c->likelihood) {
        case VAE_LIK_BERNOULLI:
            s -= softplusf((float)l) - target * l;
            break;
        case VAE_LIK_CBERNOULLI:
            s -= softplusf((float)l) - target * l - cb_log_norm(l);
            break;
        case VAE_LIK_GAUSSIAN: {
            double d = 1.0 / (1.0 + exp(-l)) - target, sigma = c->sigma;
            s -= 0.5 * d * d / (sigma * sigma) + log(sigma) + 0.5 * LOG_2PI;
            break;
        }
        case VAE_LIK_GAUSSIAN_LEARNED: {
            double d = 1.0 / (1.0 + exp(-l)) - target, logvar = vae_clamp_logvar(logits[D + j]);
            s -= 0.5 * (d * d * exp(-logvar) + logvar + LOG_2PI);
            break;
        }
        }
    }
    return s;
}
