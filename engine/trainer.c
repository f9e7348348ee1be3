#include "engine/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct trainer {
    vae_model *m;            /* borrowed */
    const dataset *train;    /* borrowed */
    const dataset *test;     /* borrowed, may be NULL */
    vae_train_state *ts;     /* owned */
    rng_state rng;
    int *order;              /* owned; train->n indices */
    float *batch;            /* owned; cfg.batch images */
    int epochs_done;
    trainer_position pos;    /* mid-epoch progress (pos.epochs_done unused) */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int check_shape(const vae_model *m, const dataset *d, const char *what, char *err,
                       size_t errlen)
{
    const vae_config *c = &m->cfg;
    if (d->channels != c->channels || d->height != c->height || d->width != c->width) {
        snprintf(err, errlen, "the %s set holds %dx%dx%d images; the model takes %dx%dx%d", what,
                 d->channels, d->height, d->width, c->channels, c->height, c->width);
        return -1;
    }
    if (d->n < 1) {
        snprintf(err, errlen, "the %s set is empty", what);
        return -1;
    }
    return 0;
}

trainer *trainer_new(vae_model *m, const dataset *train, const dataset *test, char *err,
                     size_t errlen)
{
    if (check_shape(m, train, "training", err, errlen)) return NULL;
    if (test && check_shape(m, test, "test", err, errlen)) return NULL;
    trainer *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->m = m;
    t->train = train;
    t->test = test;
    rng_seed(&t->rng, m->cfg.seed);
    if (!(t->ts = vae_train_state_new(m, m->cfg.batch, err, errlen))) {
        trainer_free(t);
        return NULL;
    }
    if (!(t->order = malloc(sizeof(int) * (size_t)train->n))) goto nomem;
    if (!(t->batch = malloc(sizeof(float) * (size_t)m->cfg.batch * dataset_dim(train)))) goto nomem;
    return t;
nomem:
    snprintf(err, errlen, "out of memory for the trainer");
    trainer_free(t);
    return NULL;
}

void trainer_free(trainer *t)
{
    if (!t) return;
    vae_train_state_free(t->ts);
    free(t->order);
    free(t->batch);
    free(t);
}

int trainer_set_threads(trainer *t, int threads, char *err, size_t errlen)
{
    return vae_train_state_set_threads(t->ts, t->m, threads, err, errlen);
}

int trainer_epochs_done(const trainer *t) { return t->epochs_done; }
rng_state *trainer_rng(trainer *t) { return &t->rng; }
vae_train_state *trainer_train_state(trainer *t) { return t->ts; }

void trainer_get_position(const trainer *t, trainer_position *p)
{
    *p = t->pos;
    p->epochs_done = t->epochs_done;
}

const int *trainer_order(const trainer *t) { return t->order; }
int trainer_order_len(const trainer *t) { return t->train->n; }

int trainer_set_position(trainer *t, const trainer_position *p, const int *order, int n,
                         char *err, size_t errlen)
{
    int64_t steps = (t->train->n + t->m->cfg.batch - 1) / t->m->cfg.batch;
    if (p->epochs_done < 0 || p->next_step < 0 || p->next_step >= steps || p->seen < 0) {
        snprintf(err, errlen, "resume position out of range");
        return VAE_ERR_ARG;
    }
    if (p->next_step > 0) {
        if (!order || n != t->train->n) {
            snprintf(err, errlen, "resuming mid-epoch needs the data order of %d images", t->train->n);
            return VAE_ERR_ARG;
        }
        /* must be a permutation, or a step would read out of bounds */
        char *seen = calloc((size_t)n, 1);
        if (!seen) {
            snprintf(err, errlen, "out of memory");
            return VAE_ERR_NOMEM;
        }
        int ok = 1;
        for (int i = 0; i < n && ok; i++) {
            ok = order[i] >= 0 && order[i] < n && !seen[order[i]];
            if (ok) seen[order[i]] = 1;
        }
        free(seen);
        if (!ok) {
            snprintf(err, errlen, "the saved data order is not a permutation");
            return VAE_ERR_FORMAT;
        }
        memcpy(t->order, order, sizeof(int) * (size_t)n);
    }
    t->epochs_done = p->epochs_done;
    t->pos = *p;
    return VAE_OK;
}

int trainer_run_epoch(trainer *t, const trainer_callbacks *cb, trainer_epoch_metrics *out,
                      char *err, size_t errlen)
{
    const vae_config *c = &t->m->cfg;
    const dataset *d = t->train;
    size_t D = (size_t)dataset_dim(d);
    int n = d->n, B = c->batch;
    int64_t steps = (n + B - 1) / B;
    if (t->pos.next_step == 0) {
        for (int i = 0; i < n; i++) t->order[i] = i;
        rng_shuffle(&t->rng, t->order, n);
        memset(&t->pos, 0, sizeof t->pos);
    }
    memset(out, 0, sizeof *out);
    out->epoch = t->epochs_done + 1;
    double t0 = now_s() - t->pos.seconds;
    for (int64_t s = t->pos.next_step; s < steps; s++) {
        if (cb && cb->cancel && *cb->cancel) {
            t->pos.next_step = s;
            t->pos.seconds = now_s() - t0;
            snprintf(err, errlen, "cancelled");
            return VAE_ERR_CANCELLED;
        }
        int b0 = (int)(s * B), nb = n - b0 < B ? n - b0 : B;
        for (int i = 0; i < nb; i++)
            dataset_image(d, t->order[b0 + i], t->batch + (size_t)i * D);
        vae_stats st;
        int rc = vae_train_step(t->m, t->ts, t->batch, nb, &t->rng, &st);
        if (rc == VAE_ERR_NONFINITE) {
            snprintf(err, errlen, "the loss is not finite (%g) at epoch %d, step %lld", st.loss,
                     out->epoch, (long long)s + 1);
            return rc;
        }
        if (rc) {
            snprintf(err, errlen, "training step %lld failed", (long long)s + 1);
            return rc;
        }
        t->pos.recon_sum += st.recon;
        t->pos.kl_sum += st.kl;
        t->pos.seen += nb;
        t->pos.next_step = s + 1;
        if (cb && cb->on_progress) {
            double el = now_s() - t0;
            int seen = t->pos.seen;
            trainer_progress p = {.epoch = out->epoch, .epochs = c->epochs, .step = s + 1,
                                  .steps = steps};
            p.images_per_s = el > 0 ? seen / el : 0.0;
            double left = (double)(n - seen) + (double)n * (c->epochs - out->epoch);
            p.eta_s = p.images_per_s > 0 ? left / p.images_per_s : 0.0;
            p.loss = (t->pos.recon_sum + t->pos.kl_sum) / seen;
            cb->on_progress(cb->ctx, &p);
        }
    }
    double recon = t->pos.recon_sum, kl = t->pos.kl_sum;
    memset(&t->pos, 0, sizeof t->pos);
    double el = now_s() - t0;
    out->train_recon = recon / n;
    out->train_kl = kl / n;
    out->train_loss = out->train_recon + out->train_kl;
    out->images_per_s = el > 0 ? n / el : 0.0;
    out->test_loss = out->test_recon = out->test_kl = NAN;
    if (t->test) {
        int rc = trainer_evaluate(t->m, t->test, c->seed ^ 0x7e57ULL, &out->test_loss,
                                  &out->test_recon, &out->test_kl, err, errlen);
        if (rc) return rc;
    }
    out->seconds = now_s() - t0;
    t->epochs_done++;
    return VAE_OK;
}

int trainer_evaluate(const vae_model *m, const dataset *d, uint64_t seed, double *loss,
                     double *recon, double *kl, char *err, size_t errlen)
{
    const vae_config *c = &m->cfg;
    if (check_shape(m, d, "evaluation", err, errlen)) return VAE_ERR_ARG;
    int B = c->batch < 500 ? 500 : c->batch;
    vae_train_state *ts = vae_train_state_new(m, B, err, errlen); /* owned */
    size_t D = (size_t)dataset_dim(d);
    float *xb = malloc(sizeof(float) * (size_t)B * D);                   /* owned */
    float *eps = malloc(sizeof(float) * (size_t)B * c->mc_samples * c->latent); /* owned */
    int rc = VAE_OK;
    if (!ts || !xb || !eps) {
        snprintf(err, errlen, "out of memory for evaluation");
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    rng_state r;
    rng_seed(&r, seed);
    double sr = 0.0, sk = 0.0;
    for (int b0 = 0; b0 < d->n; b0 += B) {
        int nb = d->n - b0 < B ? d->n - b0 : B;
        for (int i = 0; i < nb; i++) dataset_image(d, b0 + i, xb + (size_t)i * D);
        if (c->binarize != VAE_BIN_NONE) {
            /* the test set is binarised once, the same way every time */
            for (size_t i = 0; i < (size_t)nb * D; i++)
                xb[i] = c->binarize == VAE_BIN_STATIC ? (xb[i] > 0.5f ? 1.0f : 0.0f)
                                                      : (rng_uniform(&r) < xb[i] ? 1.0f : 0.0f);
        }
        const float *x = xb;
        rng_normal_fill(&r, eps, (size_t)nb * c->mc_samples * c->latent);
        vae_stats st;
        rc = vae_forward_loss(m, ts, x, eps, nb, &st);
        if (rc) {
            snprintf(err, errlen, "evaluation: the loss is not finite");
            goto end;
        }
        sr += st.recon;
        sk += st.kl;
    }
    *recon = sr / d->n;
    *kl = sk / d->n;
    *loss = *recon + *kl;
end:
    vae_train_state_free(ts);
    free(xb);
    free(eps);
    return rc;
}
