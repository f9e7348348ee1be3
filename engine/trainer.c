/* trainer: the epoch loop, evaluation and the resume file. See trainer.h. */
#include "engine/trainer.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "engine/util.h"

struct trainer {
    vae_model *m;            /* borrowed */
    const dataset *train;    /* borrowed; with ranks, this rank's shard */
    int n;                   /* training images (all ranks') */
    const trainer_dist *dist; /* borrowed; NULL: one process */
    /* with ranks only: the whole batch's eps, this rank's slots of the batch
     * and the sum the ranks reduce (gradients, then DIST_TAIL figures) */
    float *eps_all;          /* owned; (cfg.batch * mc_samples, latent) */
    int *slots;              /* owned; cfg.batch */
    float *reduce;           /* owned; n_params + DIST_TAIL */
    float *reduce_kl;        /* owned; 2 * latent, free bits only */
    const dataset *test;     /* borrowed, may be NULL */
    trainer_dist_part test_part; /* what of the test set test holds and this rank takes */
    vae_train_state *ts;     /* owned */
    rng_state rng;
    int *order;              /* owned; train->n indices */
    float *batch;            /* owned; cfg.batch images */
    int *batch_labels;       /* owned; cfg.batch labels of a conditional model, else NULL */
    int epochs_done;
    trainer_position pos;    /* mid-epoch progress (pos.epochs_done unused) */
    trainer_epoch_metrics *history; /* owned; cfg.epochs entries, epochs_done filled */
};

static int check_shape(const vae_model *m, const dataset *d, const char *what, char *err,
                       size_t errlen)
{
    const vae_config *c = &m->cfg;
    if (d->channels != c->channels || d->height != c->height || d->width != c->width) {
        util_set_err(err, errlen, "the %s set holds %dx%dx%d images; the model takes %dx%dx%d", what,
                 d->channels, d->height, d->width, c->channels, c->height, c->width);
        return -1;
    }
    if (d->n < 1) {
        util_set_err(err, errlen, "the %s set is empty", what);
        return -1;
    }
    if (!vae_config_is_conditional(c)) return 0;
    if (!d->labels) {
        util_set_err(err, errlen,
                     "the %s set has no labels: a conditional model needs a label for every image",
                     what);
        return -1;
    }
    for (int i = 0; i < d->n; i++)
        if (d->labels[i] >= c->n_classes) {
            util_set_err(err, errlen,
                         "image %d of the %s set has label %d; the model has %d classes (0 to %d)",
                         i, what, d->labels[i], c->n_classes, c->n_classes - 1);
            return -1;
        }
    return 0;
}

/* The labels of images first..first+n-1 of d (through idx, when not NULL)
 * into out when the model is conditional (check_shape saw them); NULL
 * otherwise. */
static const int *labels_of(const vae_model *m, const dataset *d, const int *idx, int first,
                            int n, int *out)
{
    if (!vae_config_is_conditional(&m->cfg)) return NULL;
    for (int i = 0; i < n; i++) out[i] = d->labels[idx ? idx[first + i] : first + i];
    return out;
}

/* What the ranks sum after the gradients: recon and KL sums (each split
 * in two floats), whether a rank's loss was not finite, whether a rank was
 * asked to stop. */
enum { TAIL_RECON = 0, TAIL_KL = 2, TAIL_NONFINITE = 4, TAIL_CANCEL = 5, DIST_TAIL = 6 };

trainer *trainer_new(vae_model *m, const dataset *train, const dataset *test, char *err,
                     size_t errlen)
{
    return trainer_new_dist(m, train, train->n, test, NULL, err, errlen);
}

trainer *trainer_new_dist(vae_model *m, const dataset *train, int n_global, const dataset *test,
                          const trainer_dist *dist, char *err, size_t errlen)
{
    if (check_shape(m, train, "training", err, errlen)) return NULL;
    if (test && check_shape(m, test, "test", err, errlen)) return NULL;
    int ranks = trainer_dist_active(dist) ? dist->size : 1, rank = ranks > 1 ? dist->rank : 0;
    int shard_n = (n_global - rank + ranks - 1) / ranks; /* the images g % ranks == rank */
    if (rank < 0 || rank >= ranks || train->n != shard_n) {
        util_set_err(err, errlen, "rank %d's shard holds %d images; of %d it should hold %d", rank,
                     train->n, n_global, shard_n);
        return NULL;
    }
    trainer *t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->m = m;
    t->train = train;
    t->n = n_global;
    t->test = test;
    t->test_part = (trainer_dist_part){.kind = TRAINER_DIST_STRIDED, .n_all = test ? test->n : 0};
    if (ranks > 1) {
        const vae_config *c = &m->cfg;
        t->dist = dist;
        if (!(t->eps_all = malloc(sizeof(float) * (size_t)c->batch * c->mc_samples * c->latent)) ||
            !(t->slots = malloc(sizeof(int) * (size_t)c->batch)) ||
            !(t->reduce = malloc(sizeof(float) * (m->n_params + DIST_TAIL))) ||
            !(t->reduce_kl = malloc(sizeof(float) * 2 * (size_t)c->latent)))
            goto nomem;
    }
    rng_seed(&t->rng, m->cfg.seed);
    if (!(t->ts = vae_train_state_new(m, m->cfg.batch, err, errlen))) {
        trainer_free(t);
        return NULL;
    }
    if (!(t->order = malloc(sizeof(int) * (size_t)t->n))) goto nomem;
    /* a permutation from the start, so a resume file written before the first
     * epoch holds one */
    for (int i = 0; i < t->n; i++) t->order[i] = i;
    if (!(t->batch = malloc(sizeof(float) * (size_t)m->cfg.batch * dataset_dim(train)))) goto nomem;
    if (vae_config_is_conditional(&m->cfg) &&
        !(t->batch_labels = malloc(sizeof(int) * (size_t)m->cfg.batch)))
        goto nomem;
    size_t epochs = m->cfg.epochs > 0 ? (size_t)m->cfg.epochs : 1;
    if (!(t->history = calloc(epochs, sizeof *t->history))) goto nomem;
    return t;
nomem:
    util_set_err(err, errlen, "out of memory for the trainer");
    trainer_free(t);
    return NULL;
}

void trainer_free(trainer *t)
{
    if (!t) return;
    vae_train_state_free(t->ts);
    free(t->order);
    free(t->batch);
    free(t->batch_labels);
    free(t->history);
    free(t->eps_all);
    free(t->slots);
    free(t->reduce);
    free(t->reduce_kl);
    free(t);
}

vae_status trainer_dist_share_state(trainer *t, char *err, size_t errlen)
{
    const trainer_dist *d = t->dist;
    if (!d) return VAE_OK;
    struct {
        int64_t adam_step;
        rng_state rng;
        int epochs_done;
        trainer_position pos;
    } head = {*vae_train_adam_step(t->ts), t->rng, t->epochs_done, t->pos};
    size_t np = t->m->n_params;
    vae_status rc;
    if ((rc = d->broadcast(d->ctx, &head, sizeof head, err, errlen))) return rc;
    if (head.epochs_done < 0 || head.epochs_done > t->m->cfg.epochs) {
        util_set_err(err, errlen, "rank 0 sent a state of %d epochs done", head.epochs_done);
        return VAE_ERR_IO;
    }
    void *bufs[] = {t->m->params, vae_train_adam_m(t->ts), vae_train_adam_v(t->ts), t->order,
                    t->history};
    size_t bytes[] = {sizeof(float) * np, sizeof(float) * np, sizeof(float) * np,
                      sizeof(int) * (size_t)t->n, sizeof *t->history * (size_t)head.epochs_done};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bytes[i] && (rc = d->broadcast(d->ctx, bufs[i], bytes[i], err, errlen))) return rc;
    *vae_train_adam_step(t->ts) = head.adam_step;
    t->rng = head.rng;
    t->epochs_done = head.epochs_done;
    t->pos = head.pos;
    return VAE_OK;
}

vae_status trainer_set_threads(trainer *t, int threads, char *err, size_t errlen)
{
    return vae_train_state_set_threads(t->ts, t->m, threads, err, errlen);
}

int trainer_epochs_done(const trainer *t) { return t->epochs_done; }
const trainer_epoch_metrics *trainer_history(const trainer *t) { return t->history; }

const rng_state *trainer_rng(const trainer *t) { return &t->rng; }
vae_train_state *trainer_train_state(const trainer *t) { return t->ts; }
const int *trainer_order(const trainer *t) { return t->order; }
int trainer_order_len(const trainer *t) { return t->n; }

void trainer_get_position(const trainer *t, trainer_position *p)
{
    *p = t->pos;
    p->epochs_done = t->epochs_done;
}


static int64_t steps_per_epoch(const trainer *t)
{
    return (t->n + t->m->cfg.batch - 1) / t->m->cfg.batch;
}

/* 1 when order[0..n) holds each of 0..n-1 once (else a step would read out of
 * bounds), 0 when not, -1 when out of memory. */
static int is_permutation(const int *order, int n)
{
    char *seen = calloc((size_t)n ? (size_t)n : 1, 1); /* owned here */
    if (!seen) return -1;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        ok = order[i] >= 0 && order[i] < n && !seen[order[i]];
        if (ok) seen[order[i]] = 1;
    }
    free(seen);
    return ok;
}

/* The draws one process makes for a batch of nb slots (vae_train_step_cond's,
 * in its order: D uniforms per slot for dynamic binarisation, then the noise
 * of every slot), when this rank holds the images of slots[0..k) (ascending)
 * alone, in x (k, D): they are binarised with their slots' draws and their
 * slots' noise rows move to the front of eps (nb * mc_samples, latent). */
static void draw_held(const vae_config *c, rng_state *r, float *x, const int *slots, int k, int nb,
                      float *eps)
{
    size_t D = (size_t)vae_config_input_dim(c), LZ = (size_t)c->mc_samples * c->latent;
    if (c->binarize == VAE_BIN_DYNAMIC) {
        for (int i = 0, j = 0; i < nb; i++) {
            float *xi = j < k && slots[j] == i ? x + (size_t)j++ * D : NULL;
            for (size_t p = 0; p < D; p++) {
                float u = rng_uniform(r);
                if (xi) xi[p] = u < xi[p] ? 1.0f : 0.0f;
            }
        }
    } else if (c->binarize == VAE_BIN_STATIC) {
        for (size_t p = 0; p < (size_t)k * D; p++) x[p] = x[p] > 0.5f ? 1.0f : 0.0f;
    }
    rng_normal_fill(r, eps, (size_t)nb * LZ);
    for (int j = 0; j < k; j++) /* slots ascend, so no row is overwritten before it is moved */
        if (slots[j] != j)
            memmove(eps + (size_t)j * LZ, eps + (size_t)slots[j] * LZ, sizeof(float) * LZ);
}

/* One step of the batch at slots [b0, b0 + nb) of the order when the ranks
 * share it: this rank's images of it, the noise of the whole batch drawn as
 * one process draws it (so an image's noise is its slot's, whichever rank
 * holds it), this rank's part of the gradient, the sum over the ranks, and
 * the same update on every rank. stop: this rank was asked to stop; when any
 * was, no rank takes the step (VAE_ERR_CANCELLED, the generator as before). */
static vae_status dist_step(trainer *t, int b0, int nb, int stop, vae_stats *st, char *err,
                            size_t errlen)
{
    vae_model *m = t->m;
    const vae_config *c = &m->cfg;
    const trainer_dist *dd = t->dist;
    const dataset *d = t->train;
    size_t D = (size_t)dataset_dim(d), np = m->n_params;
    rng_state before = t->rng;
    int k = 0;
    for (int i = 0; i < nb; i++) {
        int g = t->order[b0 + i];
        if (g % dd->size != dd->rank) continue;
        t->slots[k] = i;
        dataset_image(d, g / dd->size, t->batch + (size_t)k * D);
        if (t->batch_labels) t->batch_labels[k] = d->labels[g / dd->size];
        k++;
    }
    draw_held(c, &t->rng, t->batch, t->slots, k, nb, t->eps_all);
    vae_zero_grad(t->ts);
    vae_stats local = {0};
    int failed = k > 0 && vae_forward_loss_cond(m, t->ts, t->batch, t->batch_labels, t->eps_all,
                                                k, &local) != VAE_OK;
    vae_status rc;
    if (c->free_bits > 0.0f) {
        /* free bits weigh each dimension by its mean KL over the whole batch */
        double *kl = vae_train_batch_kl(t->ts);
        for (int z = 0; z < c->latent; z++)
            trainer_dist_split(k > 0 && !failed ? kl[z] : 0.0, t->reduce_kl + 2 * z);
        if ((rc = dd->allreduce_sum(dd->ctx, t->reduce_kl, 2 * (size_t)c->latent, err, errlen)))
            return rc;
        for (int z = 0; k > 0 && z < c->latent; z++)
            kl[z] = trainer_dist_join(t->reduce_kl + 2 * z) * k / nb;
    }
    if (k > 0 && !failed) vae_backward(m, t->ts);
    float *tail = t->reduce + np;
    memcpy(t->reduce, vae_train_grads(t->ts), sizeof(float) * np);
    trainer_dist_split(local.recon, tail + TAIL_RECON);
    trainer_dist_split(local.kl, tail + TAIL_KL);
    tail[TAIL_NONFINITE] = failed ? 1.0f : 0.0f;
    tail[TAIL_CANCEL] = stop ? 1.0f : 0.0f;
    if ((rc = dd->allreduce_sum(dd->ctx, t->reduce, np + DIST_TAIL, err, errlen))) return rc;
    st->recon = trainer_dist_join(tail + TAIL_RECON);
    st->kl = trainer_dist_join(tail + TAIL_KL);
    st->loss = tail[TAIL_NONFINITE] > 0.0f ? NAN : st->recon + st->kl;
    st->batch = nb;
    if (tail[TAIL_CANCEL] > 0.0f) {
        t->rng = before;
        return VAE_ERR_CANCELLED;
    }
    if (tail[TAIL_NONFINITE] > 0.0f) return VAE_ERR_NONFINITE;
    memcpy(vae_train_grads(t->ts), t->reduce, sizeof(float) * np);
    vae_adam_update(m, t->ts);
    return VAE_OK;
}

static vae_status evaluate(const vae_model *m, const dataset *d, const trainer_dist_part *p,
                           uint64_t seed, const trainer_dist *dist, double *loss, double *recon,
                           double *kl, char *err, size_t errlen);

vae_status trainer_set_test_part(trainer *t, int first, int n_test, char *err, size_t errlen)
{
    int ranks = t->dist ? t->dist->size : 1, rank = t->dist ? t->dist->rank : 0;
    int lo = (int)((int64_t)n_test * rank / ranks), hi = (int)((int64_t)n_test * (rank + 1) / ranks);
    if (!t->test || first < 0 || n_test < 1 || first > n_test - t->test->n || lo < first ||
        hi > first + t->test->n) {
        util_set_err(err, errlen,
                     "test images %d.. of %d: not a part of the test set holding rank %d's block",
                     first, n_test, rank);
        return VAE_ERR_ARG;
    }
    t->test_part = (trainer_dist_part){.kind = TRAINER_DIST_BLOCK, .n_all = n_test,
                                       .first = first, .lo = lo, .hi = hi};
    return VAE_OK;
}

/* Collective, at the end of an epoch: every rank holds the same parameters
 * (the sums and updates are the same bits everywhere; this makes sure). */
static vae_status dist_check_params(trainer *t, char *err, size_t errlen)
{
    char crc[16];
    snprintf(crc, sizeof crc, "%08lx",
             (unsigned long)crc32_z(crc32(0L, Z_NULL, 0), (const Bytef *)t->m->params,
                                    sizeof(float) * t->m->n_params));
    char why[512];
    vae_status rc = trainer_dist_agree(t->dist, 1, crc, why, sizeof why);
    if (rc == VAE_ERR_ARG)
        util_set_err(err, errlen, "the ranks' parameters drifted apart at epoch %d (%s)",
                     t->epochs_done + 1, why);
    else if (rc)
        util_set_err(err, errlen, "%s", why);
    return rc;
}

vae_status trainer_run_epoch(trainer *t, const trainer_callbacks *cb, trainer_epoch_metrics *out,
                             char *err, size_t errlen)
{
    const vae_config *c = &t->m->cfg;
    const dataset *d = t->train;
    size_t D = (size_t)dataset_dim(d);
    int n = t->n, B = c->batch;
    int64_t steps = steps_per_epoch(t);
    if (t->epochs_done >= c->epochs) {
        util_set_err(err, errlen, "all %d epochs are done", c->epochs);
        return VAE_ERR_ARG;
    }
    /* Stopped before its first step, an epoch has not started: the generator
     * goes back to before the shuffle, which a resume then makes again. */
    rng_state unshuffled = t->rng;
    int fresh = t->pos.next_step == 0;
    if (fresh) {
        for (int i = 0; i < n; i++) t->order[i] = i;
        rng_shuffle(&t->rng, t->order, n);
        memset(&t->pos, 0, sizeof t->pos);
    }
    memset(out, 0, sizeof *out);
    out->epoch = t->epochs_done + 1;
    double t0 = util_mono_s() - t->pos.seconds;
    for (int64_t s = t->pos.next_step; s < steps; s++) {
        int stop = cb && cb->cancel && *cb->cancel;
        int b0 = (int)(s * B), nb = n - b0 < B ? n - b0 : B;
        vae_stats st;
        vae_status rc = VAE_ERR_CANCELLED;
        if (t->dist) {
            rc = dist_step(t, b0, nb, stop, &st, err, errlen);
        } else if (!stop) {
            for (int i = 0; i < nb; i++)
                dataset_image(d, t->order[b0 + i], t->batch + (size_t)i * D);
            const int *labels = labels_of(t->m, d, t->order, b0, nb, t->batch_labels);
            rc = vae_train_step_cond(t->m, t->ts, t->batch, labels, nb, &t->rng, &st);
        }
        if (rc == VAE_ERR_CANCELLED) {
            if (fresh && s == 0) t->rng = unshuffled;
            t->pos.next_step = s;
            t->pos.seconds = util_mono_s() - t0;
            util_set_err(err, errlen, "cancelled");
            return VAE_ERR_CANCELLED;
        }
        if (rc == VAE_ERR_IO || rc == VAE_ERR_NOMEM) return rc; /* err says which rank */
        if (rc == VAE_ERR_NONFINITE) {
            util_set_err(err, errlen, "the loss is not finite (%g) at epoch %d, step %lld", st.loss,
                     out->epoch, (long long)s + 1);
            return rc;
        }
        if (rc) {
            util_set_err(err, errlen, "training step %lld failed", (long long)s + 1);
            return rc;
        }
        t->pos.recon_sum += st.recon;
        t->pos.kl_sum += st.kl;
        t->pos.seen += nb;
        t->pos.next_step = s + 1;
        if (cb && cb->on_progress) {
            double el = util_mono_s() - t0;
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
    if (t->dist) {
        vae_status rc = dist_check_params(t, err, errlen);
        if (rc) return rc;
    }
    double recon = t->pos.recon_sum, kl = t->pos.kl_sum;
    memset(&t->pos, 0, sizeof t->pos);
    double el = util_mono_s() - t0;
    out->train_recon = recon / n;
    out->train_kl = kl / n;
    out->train_loss = out->train_recon + out->train_kl;
    out->images_per_s = el > 0 ? n / el : 0.0;
    out->test_loss = out->test_recon = out->test_kl = NAN;
    if (t->test) {
        int rc = evaluate(t->m, t->test, &t->test_part, c->seed ^ 0x7e57ULL, t->dist, &out->test_loss,
                          &out->test_recon, &out->test_kl, err, errlen);
        if (rc) return rc;
    }
    out->seconds = util_mono_s() - t0;
    t->history[t->epochs_done++] = *out;
    return VAE_OK;
}

/* The evaluation of trainer_evaluate; with ranks (dist active) each rank
 * takes its images of the whole set of p->n_all (p says which, and where d
 * holds them), with the noise of their slots drawn as one process draws
 * them, and the sums are added over the ranks, so every rank gets the
 * figures of the whole set. */
static vae_status evaluate(const vae_model *m, const dataset *d, const trainer_dist_part *p,
                           uint64_t seed, const trainer_dist *dist, double *loss, double *recon,
                           double *kl, char *err, size_t errlen)
{
    const vae_config *c = &m->cfg;
    if (check_shape(m, d, "evaluation", err, errlen)) return VAE_ERR_ARG;
    int ranks = trainer_dist_active(dist) ? dist->size : 1, rank = ranks > 1 ? dist->rank : 0;
    int n_all = p->n_all;
    int B = c->batch < 500 ? 500 : c->batch;
    vae_train_state *ts = vae_train_state_new(m, B, err, errlen); /* owned */
    size_t D = (size_t)dataset_dim(d), LZ = (size_t)c->mc_samples * c->latent;
    float *batch = malloc(sizeof(float) * (size_t)B * D); /* owned */
    float *eps = malloc(sizeof(float) * (size_t)B * LZ);  /* owned */
    int *labels = malloc(sizeof(int) * (size_t)B);        /* owned */
    int *slots = malloc(sizeof(int) * (size_t)B);         /* owned: this rank's of a batch */
    vae_status rc = VAE_OK;
    if (!ts || !batch || !eps || !labels || !slots) {
        util_set_err(err, errlen, "out of memory for evaluation");
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    rng_state r;
    rng_seed(&r, seed);
    double recon_sum = 0.0, kl_sum = 0.0;
    int failed = 0;
    for (int b0 = 0; b0 < n_all; b0 += B) {
        int nb = n_all - b0 < B ? n_all - b0 : B;
        /* this rank's slots of the batch, and where d holds their images */
        int k = 0;
        for (int i = 0; i < nb; i++) {
            int at = trainer_dist_part_index(p, rank, ranks, b0 + i);
            if (at < 0) continue;
            slots[k] = i;
            labels[k] = d->labels ? d->labels[at] : 0;
            dataset_image(d, at, batch + (size_t)k++ * D);
        }
    /* the test set is binarised once, the same way every time */
        draw_held(c, &r, batch, slots, k, nb, eps);
        if (k == 0 || failed) continue;
        vae_stats st;
        const int *y = vae_config_is_conditional(c) ? labels : NULL;
        vae_status frc = vae_forward_loss_cond(m, ts, batch, y, eps, k, &st);
        if (frc && ranks == 1) {
            util_set_err(err, errlen, "evaluation: the loss is not finite");
            rc = frc;
            goto end;
        }
        if (frc) { /* the other ranks still come to the sum */
            failed = 1;
            continue;
        }
        recon_sum += st.recon;
        kl_sum += st.kl;
    }
    if (ranks > 1) {
        float sums[5];
        trainer_dist_split(recon_sum, sums);
        trainer_dist_split(kl_sum, sums + 2);
        sums[4] = failed ? 1.0f : 0.0f;
        if ((rc = dist->allreduce_sum(dist->ctx, sums, 5, err, errlen))) goto end;
        recon_sum = trainer_dist_join(sums);
        kl_sum = trainer_dist_join(sums + 2);
        failed = sums[4] > 0.0f;
    }
    if (failed) {
        util_set_err(err, errlen, "evaluation: the loss is not finite");
        rc = VAE_ERR_NONFINITE;
        goto end;
    }
    *recon = recon_sum / n_all;
    *kl = kl_sum / n_all;
    *loss = *recon + *kl;
end:
    vae_train_state_free(ts);
    free(batch);
    free(eps);
    free(labels);
    free(slots);
    return rc;
}

vae_status trainer_evaluate(const vae_model *m, const dataset *d, uint64_t seed, double *loss,
                            double *recon, double *kl, char *err, size_t errlen)
{
    trainer_dist_part whole = {.kind = TRAINER_DIST_STRIDED, .n_all = d->n};
    return evaluate(m, d, &whole, seed, NULL, loss, recon, kl, err, errlen);
}

vae_status trainer_evaluate_part(const vae_model *m, const dataset *d, const trainer_dist_part *p,
                                 const trainer_dist *dist, uint64_t seed, double *loss,
                                 double *recon, double *kl, char *err, size_t errlen)
{
    int ranks = trainer_dist_active(dist) ? dist->size : 1, rank = ranks > 1 ? dist->rank : 0;
    int need = p->kind == TRAINER_DIST_SHARD ? (p->n_all - rank + ranks - 1) / ranks
               : p->kind == TRAINER_DIST_BLOCK ? p->hi - p->first
                                               : p->n_all;
    if (p->n_all < 1 || d->n < need || (p->kind == TRAINER_DIST_BLOCK && p->lo < p->first)) {
        util_set_err(err, errlen, "evaluation: %d images do not hold rank %d's part of %d", d->n,
                     rank, p->n_all);
        return VAE_ERR_ARG;
    }
    return evaluate(m, d, p, seed, dist, loss, recon, kl, err, errlen);
}

/* ---------- the resume file ---------- */

/* A safetensors file. Tensors: "params", "adam_m", "adam_v" (F32, n_params),
 * "order" (I32, the training set's size), "epoch_sums" (F64: the current
 * epoch's recon and KL sums and its seconds so far) and "metrics" (F64,
 * (epochs_done, RESUME_METRIC_FIELDS), in metrics_row's order). Doubles are
 * stored as their bytes, so they come back bit for bit (NaN too). Metadata:
 * "format", "model_config" (ckpt_config_to_json), "adam_step", "rng" (four
 * hex words), "epochs_done", "next_step", "seen", "data_crc32" (CRC-32 of the
 * whole data area, so a damaged tensor is refused rather than trained on) and
 * the caller's pairs, each key prefixed with RESUME_META_PREFIX so that no
 * caller key can collide with these. */
#define RESUME_FORMAT "vaed-resume-2"
#define RESUME_META_PREFIX "meta."
#define RESUME_METRIC_FIELDS 9
#define RESUME_N_TENSORS 6
#define RESUME_N_KEYS 8

static void metrics_row(const trainer_epoch_metrics *e, double *row)
{
    const double v[RESUME_METRIC_FIELDS] = {e->epoch,        e->train_loss, e->train_recon,
                                            e->train_kl,     e->test_loss,  e->test_recon,
                                            e->test_kl,      e->images_per_s, e->seconds};
    memcpy(row, v, sizeof v);
}

static void metrics_from_row(const double *row, trainer_epoch_metrics *e)
{
    e->epoch = (int)row[0];
    e->train_loss = row[1];
    e->train_recon = row[2];
    e->train_kl = row[3];
    e->test_loss = row[4];
    e->test_recon = row[5];
    e->test_kl = row[6];
    e->images_per_s = row[7];
    e->seconds = row[8];
}

static size_t tensor_bytes(const st_tensor_out *t)
{
    size_t n = strcmp(t->dtype, "F64") == 0 ? 8 : 4;
    for (int k = 0; k < t->ndim; k++) n *= (size_t)t->shape[k];
    return n;
}

vae_status trainer_save_resume(const trainer *t, const char *path, const trainer_meta *meta,
                               int n_meta, char *err, size_t errlen)
{
    if (!t || !path || !path[0] || n_meta < 0 || (n_meta && !meta)) {
        util_set_err(err, errlen, "trainer_save_resume: invalid arguments");
        return VAE_ERR_ARG;
    }
    const vae_model *m = t->m;
    int n = t->n, done = t->epochs_done;
    char model_cfg[4096];
    if (ckpt_config_to_json(&m->cfg, model_cfg, sizeof model_cfg) < 0) {
        util_set_err(err, errlen, "the model config does not fit in %zu bytes", sizeof model_cfg);
        return VAE_ERR_ARG;
    }
    vae_status rc = VAE_ERR_NOMEM;
    int n_keys = RESUME_N_KEYS + n_meta;
    double *rows = malloc(sizeof(double) * RESUME_METRIC_FIELDS * (size_t)(done ? done : 1));
    const char **keys = calloc((size_t)n_keys, sizeof *keys);   /* owned here */
    const char **values = calloc((size_t)n_keys, sizeof *values); /* owned here */
    char **meta_keys = calloc((size_t)(n_meta ? n_meta : 1), sizeof *meta_keys); /* owned here, each */
    if (!rows || !keys || !values || !meta_keys) goto nomem;
    for (int i = 0; i < done; i++) metrics_row(&t->history[i], rows + (size_t)i * RESUME_METRIC_FIELDS);
    double sums[3] = {t->pos.recon_sum, t->pos.kl_sum, t->pos.seconds};
    st_tensor_out tensors[RESUME_N_TENSORS] = {
        {.name = "params", .ndim = 1, .shape = {(int64_t)m->n_params}, .data = m->params, .dtype = "F32"},
        {.name = "adam_m", .ndim = 1, .shape = {(int64_t)m->n_params}, .data = vae_train_adam_m(t->ts), .dtype = "F32"},
        {.name = "adam_v", .ndim = 1, .shape = {(int64_t)m->n_params}, .data = vae_train_adam_v(t->ts), .dtype = "F32"},
        {.name = "order", .ndim = 1, .shape = {n}, .data = t->order, .dtype = "I32"},
        {.name = "epoch_sums", .ndim = 1, .shape = {3}, .data = sums, .dtype = "F64"},
        {.name = "metrics", .ndim = 2, .shape = {done, RESUME_METRIC_FIELDS}, .data = rows, .dtype = "F64"},
    };
    /* st_write_mem lays the data out in this order, so the CRC of the pieces
     * is the CRC of the data area */
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < RESUME_N_TENSORS; i++)
        crc = crc32_z(crc, tensors[i].data, tensor_bytes(&tensors[i]));
    char adam_step[24], rng[80], epochs_done[16], next_step[24], seen[16], data_crc[16];
    const rng_state *r = &t->rng;
    snprintf(adam_step, sizeof adam_step, "%" PRId64, *vae_train_adam_step(t->ts));
    snprintf(rng, sizeof rng, "%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64, r->s[0],
             r->s[1], r->s[2], r->s[3]);
    snprintf(epochs_done, sizeof epochs_done, "%d", done);
    snprintf(next_step, sizeof next_step, "%" PRId64, t->pos.next_step);
    snprintf(seen, sizeof seen, "%d", t->pos.seen);
    snprintf(data_crc, sizeof data_crc, "%08lx", (unsigned long)crc);
    const char *fixed_keys[RESUME_N_KEYS] = {"format", "model_config", "adam_step", "rng",
                                             "epochs_done", "next_step", "seen", "data_crc32"};
    const char *fixed_values[RESUME_N_KEYS] = {RESUME_FORMAT, model_cfg, adam_step, rng,
                                               epochs_done,   next_step, seen,      data_crc};
    memcpy(keys, fixed_keys, sizeof fixed_keys);
    memcpy(values, fixed_values, sizeof fixed_values);
    for (int i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value) {
            util_set_err(err, errlen, "trainer_save_resume: meta entry %d is NULL", i);
            rc = VAE_ERR_ARG;
            goto end;
        }
        size_t len = strlen(RESUME_META_PREFIX) + strlen(meta[i].key) + 1;
        if (!(meta_keys[i] = malloc(len))) goto nomem;
        snprintf(meta_keys[i], len, "%s%s", RESUME_META_PREFIX, meta[i].key);
        keys[RESUME_N_KEYS + i] = meta_keys[i];
        values[RESUME_N_KEYS + i] = meta[i].value;
    }
    char serr[384];
    rc = st_write_file(path, tensors, RESUME_N_TENSORS, keys, values, n_keys, serr, sizeof serr);
    if (rc) util_set_err(err, errlen, "cannot write the resume file %s: %s", path, serr);
    goto end;
nomem:
    util_set_err(err, errlen, "out of memory writing the resume file %s", path);
    rc = VAE_ERR_NOMEM;
end:
    for (int i = 0; meta_keys && i < n_meta; i++) free(meta_keys[i]);
    free(meta_keys);
    free(keys);
    free(values);
    free(rows);
    return rc;
}

/* The tensor name of dtype and shape (n0) or (n0, n1) (n1 < 0: 1-D), else NULL. */
static const uint8_t *resume_tensor(const st_file *f, const char *name, const char *dtype,
                                    int64_t n0, int64_t n1)
{
    const st_tensor_info *t = st_find(f, name);
    if (!t || strcmp(t->dtype, dtype) != 0 || t->ndim != (n1 < 0 ? 1 : 2) || t->shape[0] != n0 ||
        (n1 >= 0 && t->shape[1] != n1))
        return NULL;
    return f->data + t->begin;
}

/* The decimal integer stored under key, in lo..hi. */
static int resume_int(const st_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const char *s = st_meta_get(f, key);
    char *end;
    if (!s || !*s) return -1;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

vae_status trainer_load_resume(trainer *t, const char *path, const trainer_meta *meta,
                               int n_meta, char *err, size_t errlen)
{
    if (!t || !path || n_meta < 0 || (n_meta && !meta)) {
        util_set_err(err, errlen, "trainer_load_resume: invalid arguments");
        return VAE_ERR_ARG;
    }
    st_file f;
    char serr[512];
    vae_status rc = st_read_file(path, &f, serr, sizeof serr);
    if (rc) {
        util_set_err(err, errlen, "cannot resume: %s", serr); /* serr names the file */
        return rc;
    }
    rc = VAE_ERR_FORMAT;
    int *order = NULL; /* owned here */
    vae_model *m = t->m;
    size_t np = m->n_params;
    int n = t->n;
    const char *format = st_meta_get(&f, "format");
    if (!format || strcmp(format, RESUME_FORMAT) != 0) {
        if (format)
            util_set_err(err, errlen, "cannot resume: %s is a \"%.64s\" file; this vaed reads \"%s\"",
                     path, format, RESUME_FORMAT);
        else
            util_set_err(err, errlen, "cannot resume: %s is not a vaed resume file (no format)", path);
        goto end;
    }
    int64_t crc_stored;
    const char *crc_s = st_meta_get(&f, "data_crc32");
    char *crc_end;
    crc_stored = crc_s ? (int64_t)strtoull(crc_s, &crc_end, 16) : -1;
    if (!crc_s || !*crc_s || *crc_end ||
        crc_stored != (int64_t)crc32_z(crc32(0L, Z_NULL, 0), f.data, (size_t)f.data_len)) {
        util_set_err(err, errlen, "cannot resume: %s is corrupt (its data does not match its checksum)",
                 path);
        goto end;
    }
    char model_cfg[4096];
    const char *stored_cfg = st_meta_get(&f, "model_config");
    if (ckpt_config_to_json(&m->cfg, model_cfg, sizeof model_cfg) < 0 || !stored_cfg ||
        strcmp(stored_cfg, model_cfg) != 0) {
        util_set_err(err, errlen, "cannot resume: %s belongs to another run (another model config)",
                 path);
        goto end;
    }
    for (int i = 0; i < n_meta; i++) {
        char key[256];
        snprintf(key, sizeof key, "%s%s", RESUME_META_PREFIX, meta[i].key ? meta[i].key : "");
        const char *v = st_meta_get(&f, key);
        if (!meta[i].key || !meta[i].value || !v || strcmp(v, meta[i].value) != 0) {
            util_set_err(err, errlen, "cannot resume: %s belongs to another run (its \"%.64s\" %s)",
                     path, meta[i].key ? meta[i].key : "", v ? "differs" : "is missing");
            goto end;
        }
    }
    const st_tensor_info *order_info = st_find(&f, "order");
    if (order_info && order_info->ndim == 1 && order_info->shape[0] != n) {
        util_set_err(err, errlen,
                 "cannot resume: %s belongs to another run (it trained on %lld images, this one "
                 "has %d)",
                 path, (long long)order_info->shape[0], n);
        goto end;
    }
    int64_t adam_step, epochs_done, next_step, seen;
    rng_state rng;
    const char *rng_s = st_meta_get(&f, "rng");
    const uint8_t *params = resume_tensor(&f, "params", "F32", (int64_t)np, -1),
                  *adam_m = resume_tensor(&f, "adam_m", "F32", (int64_t)np, -1),
                  *adam_v = resume_tensor(&f, "adam_v", "F32", (int64_t)np, -1),
                  *order_bytes = resume_tensor(&f, "order", "I32", n, -1),
                  *sums_bytes = resume_tensor(&f, "epoch_sums", "F64", 3, -1), *rows = NULL;
    int complete =
        params && adam_m && adam_v && order_bytes && sums_bytes && rng_s &&
        !resume_int(&f, "adam_step", 0, INT64_MAX, &adam_step) &&
        !resume_int(&f, "epochs_done", 0, m->cfg.epochs, &epochs_done) &&
        !resume_int(&f, "next_step", 0, steps_per_epoch(t) - 1, &next_step) &&
        !resume_int(&f, "seen", 0, n, &seen) &&
        sscanf(rng_s, "%" SCNx64 ",%" SCNx64 ",%" SCNx64 ",%" SCNx64, &rng.s[0], &rng.s[1],
               &rng.s[2], &rng.s[3]) == 4 &&
        (rows = resume_tensor(&f, "metrics", "F64", epochs_done, RESUME_METRIC_FIELDS));
    if (!complete) {
        util_set_err(err, errlen, "cannot resume: %s is incomplete or corrupt", path);
        goto end;
    }
    if (!(order = malloc(sizeof(int) * (size_t)(n ? n : 1)))) {
        util_set_err(err, errlen, "out of memory resuming from %s", path);
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    memcpy(order, order_bytes, sizeof(int32_t) * (size_t)n);
    int ok = is_permutation(order, n);
    if (ok <= 0) {
        util_set_err(err, errlen, ok < 0 ? "out of memory resuming from %s"
                                     : "cannot resume: %s holds a data order that is not a "
                                       "permutation",
                 path);
        rc = ok < 0 ? VAE_ERR_NOMEM : VAE_ERR_FORMAT;
        goto end;
    }
    for (int64_t i = 0; i < epochs_done; i++) {
        double epoch;
        memcpy(&epoch, rows + (size_t)i * RESUME_METRIC_FIELDS * sizeof(double), sizeof epoch);
        if (epoch != (double)(i + 1)) {
            util_set_err(err, errlen, "cannot resume: %s holds bad metrics", path);
            goto end;
        }
    }
    /* everything checked: from here nothing fails */
    for (int64_t i = 0; i < epochs_done; i++) {
        double row[RESUME_METRIC_FIELDS];
        memcpy(row, rows + (size_t)i * sizeof row, sizeof row);
        metrics_from_row(row, &t->history[i]);
    }
    double sums[3];
    memcpy(sums, sums_bytes, sizeof sums);
    memcpy(m->params, params, sizeof(float) * np);
    memcpy(vae_train_adam_m(t->ts), adam_m, sizeof(float) * np);
    memcpy(vae_train_adam_v(t->ts), adam_v, sizeof(float) * np);
    *vae_train_adam_step(t->ts) = adam_step;
    memcpy(t->order, order, sizeof(int) * (size_t)n);
    t->rng = rng;
    t->epochs_done = (int)epochs_done;
    t->pos = (trainer_position){.next_step = next_step, .recon_sum = sums[0], .kl_sum = sums[1],
                                .seen = (int)seen, .seconds = sums[2]};
    rc = VAE_OK;
end:
    free(order);
    st_free(&f);
    return rc;
}
