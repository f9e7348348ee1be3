/* eval: the negative ELBO, the importance-weighted bound and active units.
 * See eval.h. */
#include "engine/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image.h"
#include "engine/trainer.h"
#include "engine/util.h"

#define LOG_2PI 1.8378770664093453
#define IWAE_CHUNK 500

/* What the importance-weighted bound of one input works in: a workspace and
 * buffers of chunk latents. */
typedef struct {
    vae_workspace *ws;
    float *eps, *z;    /* (chunk, Z) */
    double *log_lik;   /* (chunk) log p(x|z_k) */
} iwae_scratch;

/* -log of the mean of w_k = p(x|z_k) p(z_k) / q(z_k|x) over K draws z_k ~
 * q(z|x) = N(mu, exp(logvar)), streamed in chunks of at most chunk draws
 * from r (log-mean-exp with a running maximum); with recon, the mean of
 * -log p(x|z_k) too. x has the label label (-1: none). */
static double iwae_nll_of(const vae_model *m, const iwae_scratch *sc, const float *x, int label,
                          const float *mu, const float *logvar, int K, int chunk, rng_state *r,
                          double *recon)
{
    int Z = m->cfg.latent;
    double run_max = -INFINITY, run_sum = 0.0, ll_sum = 0.0;
    for (int k0 = 0; k0 < K; k0 += chunk) {
        int kn = K - k0 < chunk ? K - k0 : chunk;
        rng_normal_fill(r, sc->eps, (size_t)kn * Z);
        for (int k = 0; k < kn; k++)
            for (int u = 0; u < Z; u++) {
                float l = vae_clamp_logvar(logvar[u]);
                sc->z[(size_t)k * Z + u] = mu[u] + expf(0.5f * l) * sc->eps[(size_t)k * Z + u];
            }
        vae_log_likelihood_cond(m, sc->ws, x, label, sc->z, kn, sc->log_lik);
        for (int k = 0; k < kn; k++) {
            double lp = 0.0, lq = 0.0;
            for (int u = 0; u < Z; u++) {
                double zz = sc->z[(size_t)k * Z + u], e = sc->eps[(size_t)k * Z + u];
                double l = vae_clamp_logvar(logvar[u]);
                lp += -0.5 * (zz * zz + LOG_2PI);
                lq += -0.5 * (e * e + LOG_2PI + l);
            }
            double lw = sc->log_lik[k] + lp - lq;
            ll_sum += sc->log_lik[k];
            if (lw > run_max) {
                run_sum = run_sum * exp(run_max - lw) + 1.0;
                run_max = lw;
            } else {
                run_sum += exp(lw - run_max);
            }
        }
    }
    if (recon) *recon = -ll_sum / K;
    return -(run_max + log(run_sum) - log((double)K));
}

vae_status eval_run(const vae_model *m, const dataset *d, int iwae_k, uint64_t seed,
                    eval_result *out, char *err, size_t errlen)
{
    return eval_run_iwae_images(m, d, iwae_k, 0, seed, out, err, errlen);
}

vae_status eval_run_iwae_images(const vae_model *m, const dataset *d, int iwae_k, int iwae_images,
                                uint64_t seed, eval_result *out, char *err, size_t errlen)
{
    trainer_dist_part whole = {.kind = TRAINER_DIST_STRIDED, .n_all = d->n};
    return eval_run_part(m, d, &whole, NULL, iwae_k, iwae_images, seed, out, err, errlen);
}

/* Advances r past the draws iwae_nll_of makes for one input (rng_normal_fill
 * takes two words per pair of normals, chunk by chunk) without making them:
 * a rank steps over the images another rank evaluates. */
static void iwae_skip(rng_state *r, int K, int chunk, int Z)
{
    for (int k0 = 0; k0 < K; k0 += chunk) {
        size_t n = (size_t)(K - k0 < chunk ? K - k0 : chunk) * Z;
        for (size_t i = 0; i < n; i += 2) {
            rng_next_u64(r);
            rng_next_u64(r);
        }
    }
}

vae_status eval_run_part(const vae_model *m, const dataset *d, const trainer_dist_part *part,
                         const trainer_dist *dist, int iwae_k, int iwae_images, uint64_t seed,
                         eval_result *out, char *err, size_t errlen)
{
    const vae_config *c = &m->cfg;
    int ranks = trainer_dist_active(dist) ? dist->size : 1, rank = ranks > 1 ? dist->rank : 0;
    int n_all = part->n_all;
    memset(out, 0, sizeof *out);
    out->n = n_all;
    out->latent = c->latent;
    vae_status rc = trainer_evaluate_part(m, d, part, ranks > 1 ? dist : NULL, seed,
                                          &out->neg_elbo, &out->recon, &out->kl, err, errlen);
    if (rc) return rc;
    if (iwae_k < 0 || iwae_k > 1000000 || iwae_images < 0) {
        util_set_err(err, errlen, "iwae K must be in 0..1000000 and its image count >= 0");
        return VAE_ERR_ARG;
    }
    int iwae_n = iwae_k && (iwae_images == 0 || iwae_images > n_all) ? n_all
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
    /* owned: -log p(x) of each of the first iwae_n images, 0 for another rank's */
    double *nll = calloc((size_t)iwae_n + 1, sizeof(double));
    /* owned, with ranks: kl_dim then nll as split doubles (trainer_dist_split) */
    float *sums = ranks > 1 ? malloc(sizeof(float) * 2 * ((size_t)Z + iwae_n)) : NULL;
    float ok = ws && mu && logvar && eps && z && x && log_lik && kl_dim && nll &&
               (ranks == 1 || sums);
    /* every rank comes to the sums, also one that could not allocate */
    if (ranks > 1 && (rc = dist->allreduce_sum(dist->ctx, &ok, 1, err, errlen))) goto end;
    if (ok != (float)ranks) {
        util_set_err(err, errlen, "out of memory for evaluation");
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    rng_state r;
    rng_seed(&r, seed ^ 0x1a3eULL);
    /* every rank makes the draws of every image in one process's order (the
     * noise of an image is its index's, whichever rank holds it) and keeps
     * those of its own */
    for (int g = 0; g < n_all; g++) {
        int at = trainer_dist_part_index(part, rank, ranks, g);
        if (at >= 0) dataset_image(d, at, x);
        if (c->binarize == VAE_BIN_DYNAMIC)
            for (int j = 0; j < D; j++) {
                float u = rng_uniform(&r);
                if (at >= 0) x[j] = u < x[j] ? 1.0f : 0.0f;
            }
        else if (c->binarize == VAE_BIN_STATIC && at >= 0)
            for (int j = 0; j < D; j++) x[j] = x[j] > 0.5f ? 1.0f : 0.0f;
        if (at < 0) {
            if (g < iwae_n) iwae_skip(&r, iwae_k, chunk, Z);
            continue;
        }
        /* a conditional model's images have labels: trainer_evaluate checked */
        int label = vae_config_is_conditional(c) ? d->labels[at] : -1;
        vae_encode_cond(m, ws, x, label >= 0 ? &label : NULL, 1, mu, logvar);
        for (int u = 0; u < Z; u++) {
            float l = vae_clamp_logvar(logvar[u]);
            kl_dim[u] += 0.5 * ((double)mu[u] * mu[u] + exp(l) - 1.0 - l);
        }
        if (g >= iwae_n) continue;
        iwae_scratch sc = {ws, eps, z, log_lik};
        nll[g] = iwae_nll_of(m, &sc, x, label, mu, logvar, iwae_k, chunk, &r, NULL);
    }
    if (ranks > 1) {
        for (int u = 0; u < Z; u++) trainer_dist_split(kl_dim[u], sums + 2 * u);
        for (int i = 0; i < iwae_n; i++) trainer_dist_split(nll[i], sums + 2 * ((size_t)Z + i));
        if ((rc = dist->allreduce_sum(dist->ctx, sums, 2 * ((size_t)Z + iwae_n), err, errlen)))
            goto end;
        for (int u = 0; u < Z; u++) kl_dim[u] = trainer_dist_join(sums + 2 * u);
        for (int i = 0; i < iwae_n; i++) nll[i] = trainer_dist_join(sums + 2 * ((size_t)Z + i));
    }
    /* summed in image order, as one process always has */
    double total = 0.0;
    for (int i = 0; i < iwae_n; i++) total += nll[i];
    out->iwae_k = iwae_n ? iwae_k : 0;
    out->iwae_n = iwae_n;
    out->iwae_nll = iwae_n ? total / iwae_n : NAN;
    for (int u = 0; u < Z; u++)
        if (kl_dim[u] / n_all > 0.01) out->active_units++;
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
    free(nll);
    free(sums);
    return rc;
}

/* ---------- a conditional model's classes ---------- */

/* The class whose mean image (means: (K, D)) is nearest to x in squared
 * distance. */
static int nearest_mean(const double *means, int K, int D, const float *x)
{
    int best = 0;
    double best_d = INFINITY;
    for (int k = 0; k < K; k++) {
        double s = 0.0;
        for (int j = 0; j < D; j++) {
            double d = x[j] - means[(size_t)k * D + j];
            s += d * d;
        }
        if (s < best_d) {
            best_d = s;
            best = k;
        }
    }
    return best;
}

vae_status eval_class_accuracy(const vae_model *m, const dataset *d, int per_class, uint64_t seed,
                               double temperature, eval_class_result *out, char *err,
                               size_t errlen)
{
    const vae_config *c = &m->cfg;
    int K = c->n_classes, D = vae_config_input_dim(c), Z = c->latent;
    memset(out, 0, sizeof *out);
    if (!vae_config_is_conditional(c) || !d->labels || dataset_dim(d) != D || d->n < 1 ||
        per_class < 1 || per_class > 1000000 || !(temperature >= 0.0 && temperature <= 10.0)) {
        util_set_err(err, errlen, "class accuracy needs a conditional model, labelled images of "
                                  "its size, 1 or more samples per class and a temperature "
                                  "from 0 to 10");
        return VAE_ERR_ARG;
    }
    out->n_classes = K;
    out->per_class = per_class;
    int chunk = per_class < IWAE_CHUNK ? per_class : IWAE_CHUNK;
    double *means = calloc((size_t)K * D, sizeof *means); /* owned */
    int *count = calloc((size_t)K, sizeof *count);         /* owned */
    int *labels = malloc(sizeof(int) * (size_t)chunk);     /* owned */
    float *z = malloc(sizeof(float) * (size_t)chunk * Z);  /* owned */
    float *x = malloc(sizeof(float) * (size_t)chunk * D);  /* owned: decoded, or one image */
    vae_workspace *ws = vae_workspace_new(m, chunk);       /* owned */
    vae_status rc = VAE_OK;
    if (!means || !count || !labels || !z || !x || !ws) {
        util_set_err(err, errlen, "out of memory for the class accuracy");
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    for (int i = 0; i < d->n; i++) {
        int k = d->labels[i];
        if (k >= K) {
            util_set_err(err, errlen, "image %d has label %d; the model has classes 0 to %d", i, k,
                         K - 1);
            rc = VAE_ERR_ARG;
            goto end;
        }
        dataset_image(d, i, x);
        for (int j = 0; j < D; j++) means[(size_t)k * D + j] += x[j];
        count[k]++;
    }
    for (int k = 0; k < K; k++) {
        if (!count[k]) {
            util_set_err(err, errlen, "no image of class %d to learn its mean from", k);
            rc = VAE_ERR_ARG;
            goto end;
        }
        for (int j = 0; j < D; j++) means[(size_t)k * D + j] /= count[k];
    }
    out->data_n = d->n < EVAL_CLASS_DATA_MAX ? d->n : EVAL_CLASS_DATA_MAX;
    int right = 0;
    for (int i = 0; i < out->data_n; i++) {
        dataset_image(d, i, x);
        right += nearest_mean(means, K, D, x) == d->labels[i];
    }
    out->data_accuracy = (double)right / out->data_n;
    rng_state r;
    rng_seed(&r, seed);
    long total = 0;
    for (int k = 0; k < K; k++) {
        int own = 0;
        for (int s0 = 0; s0 < per_class; s0 += chunk) {
            int n = per_class - s0 < chunk ? per_class - s0 : chunk;
            rng_normal_fill(&r, z, (size_t)n * Z);
            for (size_t i = 0; i < (size_t)n * Z; i++) z[i] *= (float)temperature;
            for (int i = 0; i < n; i++) labels[i] = k;
            if ((rc = vae_decode_cond(m, ws, z, labels, n, x))) {
                util_set_err(err, errlen, "decoding failed");
                goto end;
            }
            for (int i = 0; i < n; i++) own += nearest_mean(means, K, D, x + (size_t)i * D) == k;
        }
        out->class_accuracy[k] = (double)own / per_class;
        total += own;
    }
    out->accuracy = (double)total / ((double)per_class * K);
end:
    vae_workspace_free(ws);
    free(means);
    free(count);
    free(labels);
    free(z);
    free(x);
    return rc;
}

/* ---------- anomaly scores ---------- */

#define LN2 0.6931471805599453

void eval_score_options_default(eval_score_options *o)
{
    memset(o, 0, sizeof *o);
    o->iwae_k = 64;
    o->regret_lr = 1e-3;
    o->seed = 1;
}

/* The length in bits of x's zlib stream in the PNG the engine writes for it
 * (image_encode_grid_png: Sub-filtered 8-bit rows, literals only), read from
 * its IDAT chunk's length (the first chunk after the 33 bytes of signature
 * and IHDR); -1 when out of memory. */
static double png_complexity_bits(const vae_config *c, const float *x)
{
    uint8_t *png = NULL; /* owned */
    size_t len = 0;
    if (image_encode_grid_png(x, 1, c->channels, c->height, c->width, 1, &png, &len, NULL, 0))
        return -1.0;
    double bits = 8.0 * (double)util_be32(png + 33);
    free(png);
    return bits;
}

/* The least -log p(x|z) any decoder output can give x (D values as
 * scored): the entropy of its grey levels, sum_j H(x_j), under a Bernoulli
 * likelihood (the output's logits at logit(x_j)); the constant D (log sigma
 * + log(2 pi) / 2) of a fixed Gaussian; 0 where no such floor is at hand
 * (continuous Bernoulli, a learned variance). */
static double recon_floor(const vae_config *c, const float *x)
{
    int D = vae_config_input_dim(c);
    double s = 0.0;
    if (c->likelihood == VAE_LIK_BERNOULLI) {
        for (int j = 0; j < D; j++) {
            double p = x[j];
            if (p > 0.0 && p < 1.0)
                s -= p * log(p) + (1.0 - p) * log1p(-p);
        }
    } else if (c->likelihood == VAE_LIK_GAUSSIAN) {
        s = D * (log((double)c->sigma) + 0.5 * LOG_2PI);
    }
    return s;
}

/* A model whose encoder likelihood regret fits: a copy of m's parameters
 * and config with the training options that would move anything but the
 * fit (weight decay, clipping, free bits, warm-up, beta) neutral, and a
 * training state for one input. */
typedef struct {
    vae_model fit;          /* owned */
    vae_train_state *ts;    /* owned */
    size_t n_enc;           /* the encoder's parameters, first in the array */
} regret_fit;

/* The copy's config: m's with those options neutral. */
static vae_config regret_fit_config(const vae_config *m, double lr)
{
    vae_config c = *m;
    c.lr = (float)lr;
    c.weight_decay = 0.0f; /* with zero gradients the decoder's Adam step is then exactly 0 */
    c.clip_grad = 0.0f;
    c.free_bits = 0.0f;
    c.kl_warmup = 0;
    c.beta = 1.0f;
    c.mc_samples = 1;
    return c;
}

static vae_status regret_fit_init(regret_fit *f, const vae_model *m, double lr, char *err,
                                  size_t errlen)
{
    memset(f, 0, sizeof *f);
    vae_config c = regret_fit_config(&m->cfg, lr);
    vae_status rc = vae_alloc(&f->fit, &c, err, errlen);
    if (rc) return rc;
    if (!(f->ts = vae_train_state_new(&f->fit, 1, err, errlen))) {
        vae_free(&f->fit);
        return VAE_ERR_NOMEM;
    }
    f->n_enc = vae_encoder_param_count(m);
    return VAE_OK;
}

static void regret_fit_free(regret_fit *f)
{
    vae_train_state_free(f->ts);
    vae_free(&f->fit);
}

/* Fits the copy's encoder to x alone from m's parameters: steps Adam steps
 * from fresh moments, each on the negative ELBO with one draw of z from r
 * (into eps, latent floats); the decoder's gradient is dropped, so it stays
 * m's. */
static vae_status regret_fit_run(regret_fit *f, const vae_model *m, const float *x,
                                 const int *label, int steps, double deadline, rng_state *r,
                                 float *eps, char *err, size_t errlen)
{
    size_t n = m->n_params;
    memcpy(f->fit.params, m->params, sizeof(float) * n);
    memset(vae_train_adam_m(f->ts), 0, sizeof(float) * n);
    memset(vae_train_adam_v(f->ts), 0, sizeof(float) * n);
    *vae_train_adam_step(f->ts) = 0;
    float *g = vae_train_grads(f->ts);
    int Z = m->cfg.latent;
    for (int s = 0; s < steps; s++) {
        if (deadline > 0 && util_mono_s() > deadline) {
            util_set_err(err, errlen, "the likelihood regret ran out of time after %d of %d steps",
                         s, steps);
            return VAE_ERR_TOO_LARGE;
        }
        rng_normal_fill(r, eps, (size_t)Z);
        vae_stats st;
        vae_status rc = vae_forward_loss_cond(&f->fit, f->ts, x, label, eps, 1, &st);
        if (rc) {
            util_set_err(err, errlen, "the likelihood regret's fit diverged at step %d", s + 1);
            return rc;
        }
        vae_zero_grad(f->ts);
        vae_backward(&f->fit, f->ts);
        memset(g + f->n_enc, 0, sizeof(float) * (n - f->n_enc));
        vae_adam_update(&f->fit, f->ts);
    }
    return VAE_OK;
}

size_t eval_score_bytes(const vae_config *c, const eval_score_options *o)
{
    int Z = c->latent, D = vae_config_input_dim(c);
    int chunk = o->iwae_k < IWAE_CHUNK ? o->iwae_k : IWAE_CHUNK;
    if (chunk < 1)
        chunk = 1;
    /* as eval_score_inputs allocates them, and the PNG of one input */
    size_t bytes = vae_config_workspace_bytes(c, chunk) + sizeof(float) * 2 * (size_t)Z +
                   2 * sizeof(float) * (size_t)chunk * Z + sizeof(float) * (size_t)D +
                   sizeof(double) * (size_t)chunk + 3 * (size_t)D + 1024;
    if (o->regret_steps > 0) {
        vae_config f = regret_fit_config(c, o->regret_lr);
        bytes += sizeof(float) * vae_config_param_count(&f) + vae_config_train_state_bytes(&f, 1, 1);
    }
    return bytes;
}

/* KL(N(mu, exp(logvar)) || N(0, I)) over Z dimensions, in closed form. */
static double kl_of(const float *mu, const float *logvar, int Z)
{
    double kl = 0.0;
    for (int u = 0; u < Z; u++) {
        float l = vae_clamp_logvar(logvar[u]);
        kl += 0.5 * ((double)mu[u] * mu[u] + exp(l) - 1.0 - l);
    }
    return kl;
}

vae_status eval_score_inputs(const vae_model *m, const float *x, const int *labels, int n,
                             const eval_score_options *o, eval_score *out, char *err,
                             size_t errlen)
{
    const vae_config *c = &m->cfg;
    int Z = c->latent, D = vae_config_input_dim(c), K = o->iwae_k;
    if (n < 1 || K < 1 || K > EVAL_SCORE_MAX_K || o->regret_steps < 0 ||
        o->regret_steps > EVAL_SCORE_MAX_REGRET_STEPS || !(o->regret_lr > 0) ||
        (labels != NULL) != vae_config_is_conditional(c)) {
        util_set_err(err, errlen,
                     "scores need 1 or more inputs, K in 1..%d, 0..%d regret steps and labels "
                     "exactly for a conditional model",
                     EVAL_SCORE_MAX_K, EVAL_SCORE_MAX_REGRET_STEPS);
        return VAE_ERR_ARG;
    }
    for (int i = 0; labels && i < n; i++)
        if (labels[i] < 0 || labels[i] >= c->n_classes) {
            util_set_err(err, errlen, "input %d has label %d; the model has classes 0 to %d", i,
                         labels[i], c->n_classes - 1);
            return VAE_ERR_ARG;
        }
    int chunk = K < IWAE_CHUNK ? K : IWAE_CHUNK;
    vae_workspace *ws = vae_workspace_new(m, chunk);      /* owned */
    float *mu = malloc(sizeof(float) * 2 * Z);            /* owned: mu then logvar */
    float *eps = malloc(sizeof(float) * (size_t)chunk * Z); /* owned */
    float *z = malloc(sizeof(float) * (size_t)chunk * Z);   /* owned */
    float *xi = malloc(sizeof(float) * (size_t)D);          /* owned: the input, binarised */
    double *log_lik = malloc(sizeof(double) * chunk);       /* owned */
    regret_fit fit;                                         /* owned when have_fit */
    int have_fit = 0;
    vae_status rc = VAE_OK;
    if (!ws || !mu || !eps || !z || !xi || !log_lik) {
        util_set_err(err, errlen, "out of memory for the scores");
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    if (o->regret_steps) {
        if ((rc = regret_fit_init(&fit, m, o->regret_lr, err, errlen))) goto end;
        have_fit = 1;
    }
    rng_state r;
    rng_seed(&r, o->seed);
    iwae_scratch sc = {ws, eps, z, log_lik};
    for (int i = 0; i < n; i++) {
        if (o->deadline > 0 && util_mono_s() > o->deadline) {
            util_set_err(err, errlen, "scoring ran out of time after %d of %d inputs", i, n);
            rc = VAE_ERR_TOO_LARGE;
            goto end;
        }
        const float *xr = x + (size_t)i * D;
        for (int j = 0; j < D; j++)
            xi[j] = c->binarize == VAE_BIN_NONE     ? xr[j]
                    : c->binarize == VAE_BIN_STATIC ? (xr[j] > 0.5f ? 1.0f : 0.0f)
                                                    : (rng_uniform(&r) < xr[j] ? 1.0f : 0.0f);
        int label = labels ? labels[i] : -1;
        const int *y = labels ? labels + i : NULL;
        eval_score *s = &out[i];
        vae_encode_cond(m, ws, xi, y, 1, mu, mu + Z);
        s->kl = kl_of(mu, mu + Z, Z);
        /* the regret's second bound takes the same draws of eps (common
         * random numbers): the difference is the fit's, not the draws' */
        rng_state at_bound = r;
        s->iwae_nll = iwae_nll_of(m, &sc, xi, label, mu, mu + Z, K, chunk, &r, &s->recon);
        s->neg_elbo = s->recon + s->kl;
        if ((s->complexity_bits = png_complexity_bits(c, xr)) < 0) {
            util_set_err(err, errlen, "out of memory for the scores");
            rc = VAE_ERR_NOMEM;
            goto end;
        }
        s->corrected_bits = s->iwae_nll / LN2 - s->complexity_bits;
        s->recon_floor = recon_floor(c, xi);
        s->ood_score = s->iwae_nll - s->recon_floor;
        s->regret = NAN;
        if (!have_fit) continue;
        if ((rc = regret_fit_run(&fit, m, xi, y, o->regret_steps, o->deadline, &r, eps, err,
                                 errlen)))
            goto end;
        vae_encode_cond(&fit.fit, ws, xi, y, 1, mu, mu + Z);
        double recon_fit;
        iwae_nll_of(m, &sc, xi, label, mu, mu + Z, K, chunk, &at_bound, &recon_fit);
        s->regret = s->neg_elbo - (recon_fit + kl_of(mu, mu + Z, Z));
    }
end:
    if (have_fit) regret_fit_free(&fit);
    vae_workspace_free(ws);
    free(mu);
    free(eps);
    free(z);
    free(xi);
    free(log_lik);
    return rc;
}

static int cmp_value(const void *a, const void *b)
{
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x < y ? -1 : x > y;
}

double eval_auroc(const double *normal, int n0, const double *anomalies, int n1)
{
    if (n0 < 1 || n1 < 1) return NAN;
    for (int i = 0; i < n0; i++)
        if (isnan(normal[i])) return NAN;
    for (int i = 0; i < n1; i++)
        if (isnan(anomalies[i])) return NAN;
    size_t n = (size_t)n0 + (size_t)n1;
    double *v = malloc(sizeof(double) * 2 * n); /* owned: (value, is_anomaly) pairs */
    if (!v) return NAN;
    for (int i = 0; i < n0; i++) {
        v[2 * i] = normal[i];
        v[2 * i + 1] = 0.0;
    }
    for (int i = 0; i < n1; i++) {
        v[2 * ((size_t)n0 + i)] = anomalies[i];
        v[2 * ((size_t)n0 + i) + 1] = 1.0;
    }
    qsort(v, n, 2 * sizeof(double), cmp_value);
    /* the anomalies' rank sum, ties given their mean rank */
    double rank_sum = 0.0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && v[2 * j] == v[2 * i]) j++;
        double mean_rank = 0.5 * ((double)i + 1 + (double)j);
        for (size_t k = i; k < j; k++) rank_sum += v[2 * k + 1] * mean_rank;
        i = j;
    }
    free(v);
    return (rank_sum - 0.5 * (double)n1 * (n1 + 1.0)) / ((double)n0 * n1);
}
