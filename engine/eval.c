/* eval: the negative ELBO, the importance-weighted bound and active units.
 * See eval.h. */
#include "engine/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/trainer.h"
#include "engine/util.h"

#define LOG_2PI 1.8378770664093453
#define IWAE_CHUNK 500

vae_status eval_run(const vae_model *m, const dataset *d, int iwae_k, uint64_t seed,
                    eval_result *out, char *err, size_t errlen)
{
    return eval_run_iwae_images(m, d, iwae_k, 0, seed, out, err, errlen);
}

vae_status eval_run_iwae_images(const vae_model *m, const dataset *d, int iwae_k, int iwae_images,
                                uint64_t seed, eval_result *out, char *err, size_t errlen)
{
    const vae_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    out->n = d->n;
    out->latent = c->latent;
    vae_status rc = trainer_evaluate(m, d, seed, &out->neg_elbo, &out->recon, &out->kl, err, errlen);
    if (rc) return rc;
    if (iwae_k < 0 || iwae_k > 1000000 || iwae_images < 0) {
        util_set_err(err, errlen, "iwae K must be in 0..1000000 and its image count >= 0");
        return VAE_ERR_ARG;
    }
    int iwae_n = iwae_k && (iwae_images == 0 || iwae_images > d->n) ? d->n
                 : iwae_k                                           ? iwae_images
                                                                    : 0;
    int Z = c->latent, D = dataset_dim(d);
    int chunk = iwae_k > 0 && iwae_k < IWAE_CHUNK ? iwae_k : IWAE_CHUNK;
    vae_workspace *ws = vae_workspace_new(m, chunk);          /* owned */
    float *mu = malloc(sizeof(float) * Z);                     /* owned */
    float *logvar = malloc(sizeof(float) * Z);                 /* owned */
    float *eps = malloc(sizeof(float) * (size_t)chunk * Z);    /* owned */
    float *z = malloc(sizeof(float) * (size_t)chunk * Z);      /* owned */
    float *x = malloc(sizeof(float) * (size_t)D);              /* owned: one image */
    double *log_lik = malloc(sizeof(double) * chunk);          /* owned: log p(x|z_k) */
    double *kl_dim = calloc((size_t)Z, sizeof(double));        /* owned */
    if (!ws || !mu || !logvar || !eps || !z || !x || !log_lik || !kl_dim) {
        util_set_err(err, errlen, "out of memory for evaluation");
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    rng_state r;
    rng_seed(&r, seed ^ 0x1a3eULL);
    double total = 0.0;
    for (int i = 0; i < d->n; i++) {
        dataset_image(d, i, x);
        if (c->binarize != VAE_BIN_NONE)
            for (int j = 0; j < D; j++)
                x[j] = c->binarize == VAE_BIN_STATIC ? (x[j] > 0.5f ? 1.0f : 0.0f)
                                                     : (rng_uniform(&r) < x[j] ? 1.0f : 0.0f);
        /* a conditional model's images have labels: trainer_evaluate checked */
        int label = vae_config_is_conditional(c) ? d->labels[i] : -1;
        vae_encode_cond(m, ws, x, label >= 0 ? &label : NULL, 1, mu, logvar);
        for (int u = 0; u < Z; u++) {
            float l = vae_clamp_logvar(logvar[u]);
            kl_dim[u] += 0.5 * ((double)mu[u] * mu[u] + exp(l) - 1.0 - l);
        }
        if (i >= iwae_n) continue;
        /* log-mean-exp of log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), streamed */
        double run_max = -INFINITY, run_sum = 0.0;
        for (int k0 = 0; k0 < iwae_k; k0 += chunk) {
            int kn = iwae_k - k0 < chunk ? iwae_k - k0 : chunk;
            rng_normal_fill(&r, eps, (size_t)kn * Z);
            for (int k = 0; k < kn; k++)
                for (int u = 0; u < Z; u++) {
                    float l = vae_clamp_logvar(logvar[u]);
                    z[(size_t)k * Z + u] = mu[u] + expf(0.5f * l) * eps[(size_t)k * Z + u];
                }
            vae_log_likelihood_cond(m, ws, x, label, z, kn, log_lik);
            for (int k = 0; k < kn; k++) {
                double lp = 0.0, lq = 0.0;
                for (int u = 0; u < Z; u++) {
                    double zz = z[(size_t)k * Z + u], e = eps[(size_t)k * Z + u];
                    double l = vae_clamp_logvar(logvar[u]);
                    lp += -0.5 * (zz * zz + LOG_2PI);
                    lq += -0.5 * (e * e + LOG_2PI + l);
                }
                double lw = log_lik[k] + lp - lq;
                if (lw > run_max) {
                    run_sum = run_sum * exp(run_max - lw) + 1.0;
                    run_max = lw;
                } else {
                    run_sum += exp(lw - run_max);
                }
            }
        }
        total += -(run_max + log(run_sum) - log((double)iwae_k));
    }
    out->iwae_k = iwae_n ? iwae_k : 0;
    out->iwae_n = iwae_n;
    out->iwae_nll = iwae_n ? total / iwae_n : NAN;
    for (int u = 0; u < Z; u++)
        if (kl_dim[u] / d->n > 0.01) out->active_units++;
    rc = VAE_OK;
end:
    vae_workspace_free(ws);
    free(mu);
    free(logvar);
    free(eps);
    free(z);
    free(x);
    free(log_lik);
    free(kl_dim);
    return rc;
}
