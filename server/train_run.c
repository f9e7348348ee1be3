/* train_run: the training pipeline of `vaed train` and of jobs. See train_run.h. */
#include "server/train_run.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/checkpoint.h"
#include "engine/util.h"
#include "server/checkpoint_metrics.h"
#include "server/data_sets.h"
#include "server/jobs_record.h"

struct train_run {
    train_run_options o;     /* strings, ctx and cancel borrowed */
    dataset train, test;     /* owned */
    int have_test;
    int n_classes;           /* of a conditional model, from the data; else 0 */
    int sharded;             /* with ranks: train holds this rank's shard as loaded */
    int train_top;           /* sharded: the largest label of the whole data set */
    int test_first, n_test;  /* test holds images test_first.. of n_test (a block, with ranks) */
    vae_model model;         /* owned */
    trainer *t;              /* owned; freed by train_run_evaluate */
    trainer_epoch_metrics *history; /* owned; the trainer's, kept once it is freed */
    int n_done;              /* entries of history */
    train_run_info info;
    int evaluated;
    eval_result er;
    char *metrics_json;      /* owned; the checkpoint's, NULL before train_run_evaluate */
};

static train_run_status from_engine(vae_status rc, train_run_status otherwise)
{
    return rc == VAE_ERR_NOMEM ? TRAIN_RUN_ERR_NOMEM : otherwise;
}

void train_run_options_default(train_run_options *o)
{
    memset(o, 0, sizeof *o);
    o->klass = -1;
    vae_config_default(&o->cfg);
    o->threads = 1;
    o->iwae_k = EVAL_TRAIN_IWAE_K;
}

/* A conditional model's class count into r->n_classes: 1 + the largest
 * label of the data as loaded. */
static train_run_status count_classes(train_run *r, char *err, size_t errlen)
{
    const dataset *sets[2] = {&r->train, r->have_test ? &r->test : NULL};
    int top = r->sharded ? r->train_top : -1; /* the sets may be parts */
    for (int k = 0; k < 2; k++) {
        const dataset *d = sets[k];
        if (!d)
            continue;
        if (!d->labels) {
            util_set_err(err, errlen,
                         "a conditional model needs a label for every image, and %s has none "
                         "in its %s images",
                         r->o.data, k ? "test" : "training");
            return TRAIN_RUN_ERR_ARG;
        }
        for (int i = 0; i < d->n && !r->sharded; i++)
            if (d->labels[i] > top)
                top = d->labels[i];
    }
    r->n_classes = top + 1;
    return TRAIN_RUN_OK;
}

/* With ranks the test split, or the held-out images, are evaluated in
 * blocks, one per rank, when there is an image for every rank
 * (test_in_blocks): each rank then reads only its block, after every epoch
 * and at the end (train_run_evaluate); else every rank holds the whole
 * set. */
#define TEST_BLOCK_MIN 1
static int test_in_blocks(int n_test, const trainer_dist *dist)
{
    return n_test / dist->size >= TEST_BLOCK_MIN;
}

/* With ranks: the test split as test_in_blocks says. No test split
 * (r->have_test 0) when it cannot be read, as data_sets_load. */
static train_run_status load_test_part(train_run *r, const char *root, const trainer_dist *dist,
                                       char *err, size_t errlen)
{
    char images[PATH_MAX], labels[PATH_MAX], why[256];
    dataset_source src;
    if (data_sets_source(root, r->o.data, DATA_SETS_TEST, &src, images, labels, sizeof images))
        return TRAIN_RUN_OK;
    dataset_shard_spec spec = {.klass = r->o.klass, .rank = dist->rank, .size = dist->size,
                               .held_all = 1, .held_block = TEST_BLOCK_MIN};
    dataset none; /* the training images of a test split: none */
    dataset_shard_info info;
    vae_status rc = dataset_load_shard(&src, &spec, &none, &r->test, &info, why, sizeof why);
    dataset_free(&none);
    if (rc && r->o.klass >= 0 && strstr(why, "no images with label")) {
        util_set_err(err, errlen, "class %d: %s", r->o.klass, why);
        return TRAIN_RUN_ERR_ARG;
    }
    if (rc)
        return TRAIN_RUN_OK;
    r->have_test = 1;
    r->test_first = info.val_first;
    r->n_test = info.n_val;
    if (info.top_label > r->train_top)
        r->train_top = info.top_label;
    return TRAIN_RUN_OK;
}

/* The training split (and the test split, or a held-out part of the
 * training images), one class, the first limit images. */
static train_run_status load_data(train_run *r, char *err, size_t errlen)
{
    const train_run_options *o = &r->o;
    train_run_status st;
    const char *root = o->data_root ? o->data_root : data_sets_root();
    char why[256];
    /* with ranks, each reads only its shard of the training images (class,
     * limit and a validation split applied from the index of the source, so
     * before any image is read) and its block of the test split or of the
     * held-out images (test_in_blocks) */
    char images[PATH_MAX], labels[PATH_MAX];
    dataset_source src;
    int n_file, h, w;
    const trainer_dist *dist = trainer_dist_active(o->dist) ? o->dist : NULL;
    r->sharded = dist &&
                 data_sets_source(root, o->data, DATA_SETS_TRAIN, &src, images, labels,
                                  sizeof images) == 0 &&
                 (src.kind != DATASET_SOURCE_IDX ||
                  dataset_peek_idx(images, &n_file, &h, &w, NULL, 0) == VAE_OK);
    if (r->sharded) {
        r->train_top = -1;
        if ((st = load_test_part(r, root, dist, err, errlen)))
            return st;
        dataset_shard_spec spec = {.klass = o->klass, .limit = o->limit,
                                   .val_split = r->have_test ? 0.0 : o->val_split,
                                   .seed = o->cfg.seed, .rank = dist->rank, .size = dist->size,
                                   .held_block = TEST_BLOCK_MIN};
        dataset_shard_info info;
        if (dataset_load_shard(&src, &spec, &r->train, spec.val_split > 0.0 ? &r->test : NULL,
                               &info, why, sizeof why)) {
            if (o->klass >= 0 && strstr(why, "no images with label"))
                util_set_err(err, errlen, "class %d: %s", o->klass, why);
            else if (strncmp(why, "val-split", 9) == 0)
                util_set_err(err, errlen, "--val-split: %s", why);
            else
                util_set_err(err, errlen, "%s", why);
            return TRAIN_RUN_ERR_ARG;
        }
        r->info.n_train = info.n_train;
        if (info.top_label > r->train_top)
            r->train_top = info.top_label;
        r->info.val_split_unused = r->have_test && o->val_split > 0.0;
        if (spec.val_split > 0.0) {
            r->have_test = 1;
            r->test_first = info.val_first;
            r->n_test = info.n_val;
        }
    } else if ((o->val_split > 0.0 ? data_sets_load : data_sets_load_compact)(
                   root, o->data, DATA_SETS_TRAIN, &r->train, err, errlen)) {
        /* splitting needs the float form; otherwise the bytes take a quarter of the memory */
        return TRAIN_RUN_ERR_ARG;
    } else {
        r->have_test = data_sets_load_compact(root, o->data, DATA_SETS_TEST, &r->test, why,
                                              sizeof why) == 0;
    }
    if (o->val_split > 0.0 && !r->sharded) {
        if (r->have_test) {
            r->info.val_split_unused = 1;
        } else if (dataset_split_validation(&r->train, o->val_split, o->cfg.seed, &r->test, why,
                                            sizeof why)) {
            util_set_err(err, errlen, "--val-split: %s", why);
            return TRAIN_RUN_ERR_ARG;
        } else {
            r->have_test = 1;
        }
    }
    if (o->conditional && (st = count_classes(r, err, errlen)))
        return st;
    if (o->klass >= 0 &&
        ((!r->sharded && dataset_filter_class(&r->train, o->klass, why, sizeof why)) ||
         (r->have_test && dataset_filter_class(&r->test, o->klass, why, sizeof why)))) {
        util_set_err(err, errlen, "class %d: %s", o->klass, why);
        return TRAIN_RUN_ERR_ARG;
    }
    if (!r->sharded && o->limit > 0 && o->limit < r->train.n)
        dataset_truncate(&r->train, o->limit);
    if (!r->sharded)
        r->info.n_train = r->train.n;
    if (!r->sharded)
        r->n_test = r->test.n;
    r->info.n_test = r->have_test ? r->n_test : 0;
    r->info.test_first = r->have_test ? r->test_first : 0;
    r->info.test_held = r->have_test ? r->test.n : 0;
    return TRAIN_RUN_OK;
}

/* What every rank must have the same of to train the same run. */
static void run_text(const train_run *r, char *s, size_t len)
{
    const train_run_options *o = &r->o;
    char cfg[4096] = "";
    if (r->t) ckpt_config_to_json(&r->model.cfg, cfg, sizeof cfg);
    int n = snprintf(s, len,
                     "model_config=%s\ndata=%s\nclass=%d\nlimit=%d\nval_split=%.17g\n"
                     "training images=%d\ntest images=%d\nconditional=%d\niwae=%d\nresume=%s\n",
                     cfg, o->data, o->klass, o->limit, o->val_split, r->info.n_train,
                     r->info.n_test, o->conditional, o->iwae_k, o->resume_path ? "yes" : "no");
    for (int i = 0; i < o->n_meta && n > 0 && (size_t)n < len; i++)
        n += snprintf(s + n, len - (size_t)n, "%s=%s\n", o->meta[i].key, o->meta[i].value);
}

static train_run_status run_setup(train_run *r, char *err, size_t errlen);

train_run_status train_run_new(const train_run_options *o, train_run **out, char *err,
                               size_t errlen)
{
    *out = NULL;
    if (!o->data || !(o->val_split >= 0.0 && o->val_split < 1.0) || o->threads < 1 ||
        o->iwae_k < 0 || o->n_meta < 0) {
        util_set_err(err, errlen, "train_run: a data set, a split in [0, 1), 1 or more threads");
        return TRAIN_RUN_ERR_ARG;
    }
    train_run *r = calloc(1, sizeof *r); /* owned by the caller via *out */
    if (!r) {
        util_set_err(err, errlen, "out of memory");
        return TRAIN_RUN_ERR_NOMEM;
    }
    r->o = *o;
    train_run_status st = run_setup(r, err, errlen);
    if (trainer_dist_active(o->dist)) {
        /* every rank comes here, also one whose setup failed, so that no
         * rank waits for another that has given up */
        char *text = malloc(8192); /* owned here */
        if (!text) {
            util_set_err(err, errlen, "out of memory");
            train_run_free(r);
            return TRAIN_RUN_ERR_NOMEM;
        }
        run_text(r, text, 8192);
        vae_status rc = trainer_dist_agree(o->dist, st == TRAIN_RUN_OK, text, err, errlen);
        free(text);
        if (!rc) rc = trainer_dist_share_state(r->t, err, errlen);
        if (rc && st == TRAIN_RUN_OK)
            st = rc == VAE_ERR_ARG ? TRAIN_RUN_ERR_ARG : from_engine(rc, TRAIN_RUN_ERR_RANKS);
        if (st == TRAIN_RUN_OK) {
            r->info.epochs_done = trainer_epochs_done(r->t);
            trainer_get_position(r->t, &r->info.position);
        }
    }
    if (st) {
        train_run_free(r);
        return st;
    }
    *out = r;
    return TRAIN_RUN_OK;
}

/* The data, the model and its trainer, and the resume file's state: this
 * rank's part of train_run_new. */
static train_run_status run_setup(train_run *r, char *err, size_t errlen)
{
    const train_run_options *o = &r->o;
    const trainer_dist *dist = trainer_dist_active(o->dist) ? o->dist : NULL;
    train_run_status st = load_data(r, err, errlen);
    if (st)
        return st;
    char why[256];
    if (dist && !r->sharded &&
        dataset_keep_shard(&r->train, dist->rank, dist->size, why, sizeof why)) {
        util_set_err(err, errlen, "%s", why);
        return TRAIN_RUN_ERR_ARG;
    }
    vae_config cfg = o->cfg;
    cfg.channels = r->train.channels;
    cfg.height = r->train.height;
    cfg.width = r->train.width;
    cfg.n_classes = r->n_classes;
    vae_status rc;
    if ((rc = vae_init(&r->model, &cfg, cfg.seed, err, errlen)))
        return from_engine(rc, TRAIN_RUN_ERR_ARG);
    /* with ranks every rank holds the test set and evaluates its part of it */
    if (!(r->t = trainer_new_dist(&r->model, &r->train, r->info.n_train,
                                  r->have_test ? &r->test : NULL, dist, err, errlen)))
        return TRAIN_RUN_ERR_ARG;
    if (dist && r->sharded && r->have_test && test_in_blocks(r->n_test, dist) &&
        (rc = trainer_set_test_part(r->t, r->test_first, r->n_test, err, errlen)))
        return from_engine(rc, TRAIN_RUN_ERR_ARG);
    /* a rank trains with one thread: there is one rank per core */
    if ((rc = trainer_set_threads(r->t, !dist && o->threads >= 2 ? 2 : 1, err, errlen)))
        return from_engine(rc, TRAIN_RUN_ERR_ARG);
    if (o->resume_path && (!dist || dist->rank == 0) && access(o->resume_path, F_OK) == 0) {
        if ((rc = trainer_load_resume(r->t, o->resume_path, o->meta, o->n_meta, err, errlen)))
            return from_engine(rc, TRAIN_RUN_ERR_RESUME);
        r->info.resumed = 1;
    }
    r->info.epochs_done = trainer_epochs_done(r->t);
    trainer_get_position(r->t, &r->info.position);
    return TRAIN_RUN_OK;
}

void train_run_free(train_run *r)
{
    if (!r)
        return;
    trainer_free(r->t);
    vae_free(&r->model);
    dataset_free(&r->train);
    dataset_free(&r->test);
    free(r->history);
    free(r->metrics_json);
    free(r);
}

const train_run_info *train_run_get_info(const train_run *r)
{
    return &r->info;
}

const vae_model *train_run_model(const train_run *r)
{
    return &r->model;
}

void train_run_get_position(const train_run *r, trainer_position *p)
{
    if (r->t) {
        trainer_get_position(r->t, p);
        return;
    }
    memset(p, 0, sizeof *p);
    p->epochs_done = r->n_done;
}

const trainer_epoch_metrics *train_run_history(const train_run *r, int *n_done)
{
    if (!r->t) {
        *n_done = r->n_done;
        return r->history;
    }
    *n_done = trainer_epochs_done(r->t);
    return trainer_history(r->t);
}

/* After the epochs: an error when the trainer is gone (train_run_evaluate). */
static int trainer_gone(const train_run *r, char *err, size_t errlen)
{
    if (r->t)
        return 0;
    util_set_err(err, errlen, "train_run: the run is evaluated; its trainer is gone");
    return 1;
}

train_run_status train_run_save_resume(train_run *r, char *err, size_t errlen)
{
    if (!r->o.resume_path) {
        util_set_err(err, errlen, "train_run: no resume file was given");
        return TRAIN_RUN_ERR_ARG;
    }
    if (trainer_gone(r, err, errlen))
        return TRAIN_RUN_ERR_ARG;
    if (trainer_dist_active(r->o.dist) && r->o.dist->rank != 0)
        return TRAIN_RUN_OK; /* rank 0 keeps the run's state */
    vae_status rc =
        trainer_save_resume(r->t, r->o.resume_path, r->o.meta, r->o.n_meta, err, errlen);
    return rc ? from_engine(rc, TRAIN_RUN_ERR_RESUME) : TRAIN_RUN_OK;
}

train_run_status train_run_epochs(train_run *r, char *err, size_t errlen)
{
    const train_run_options *o = &r->o;
    trainer_callbacks cb = {.on_progress = o->on_progress, .ctx = o->ctx, .cancel = o->cancel};
    if (trainer_gone(r, err, errlen))
        return TRAIN_RUN_ERR_ARG;
    while (trainer_epochs_done(r->t) < r->model.cfg.epochs) {
        trainer_epoch_metrics m;
        vae_status rc = trainer_run_epoch(r->t, &cb, &m, err, errlen);
        if (rc == VAE_ERR_CANCELLED)
            return TRAIN_RUN_ERR_CANCELLED;
        if (rc == VAE_ERR_IO)
            return TRAIN_RUN_ERR_RANKS;
        if (rc)
            return from_engine(rc, TRAIN_RUN_ERR_TRAIN);
        if (o->resume_path) {
            train_run_status st = train_run_save_resume(r, err, errlen);
            if (st)
                return st;
        }
        if (o->on_epoch)
            o->on_epoch(o->ctx, trainer_history(r->t), trainer_epochs_done(r->t));
    }
    if (o->cancel && *o->cancel) { /* asked to stop after the last step */
        util_set_err(err, errlen, "cancelled");
        return TRAIN_RUN_ERR_CANCELLED;
    }
    return TRAIN_RUN_OK;
}

const eval_result *train_run_evaluate(train_run *r)
{
    if (!r->t)
        return r->evaluated ? &r->er : NULL;
    int n = trainer_epochs_done(r->t);
    if (n == 0)
        return NULL;
    /* The training state goes before the evaluation makes its own, so the two
     * are not held at once (jobs_spec_memory_bytes counts on it). */
    r->history = malloc(sizeof *r->history * (size_t)n);
    if (!r->history)
        return NULL; /* no metrics: as when the evaluation fails for want of memory */
    memcpy(r->history, trainer_history(r->t), sizeof *r->history * (size_t)n);
    r->n_done = n;
    trainer_free(r->t);
    r->t = NULL;
    char why[384];
    /* with ranks each evaluates what it holds: its block of the test set, or
     * the whole set, or (without one) its shard of the training images */
    const trainer_dist *dist = trainer_dist_active(r->o.dist) ? r->o.dist : NULL;
    const dataset *d = r->have_test ? &r->test : &r->train;
    trainer_dist_part part = {.kind = TRAINER_DIST_STRIDED, .n_all = d->n};
    if (dist && !r->have_test) {
        part = (trainer_dist_part){.kind = TRAINER_DIST_SHARD, .n_all = r->info.n_train};
    } else if (dist && r->sharded && test_in_blocks(r->n_test, dist)) {
        int64_t n = r->n_test;
        part = (trainer_dist_part){.kind = TRAINER_DIST_BLOCK, .n_all = r->n_test,
                                   .first = r->test_first,
                                   .lo = (int)(n * dist->rank / dist->size),
                                   .hi = (int)(n * (dist->rank + 1) / dist->size)};
    }
    r->evaluated = eval_run_part(&r->model, d, &part, dist, r->o.iwae_k, EVAL_TRAIN_IWAE_IMAGES,
                                 r->model.cfg.seed, &r->er, why, sizeof why) == VAE_OK;
    r->metrics_json = checkpoint_metrics_json(r->history, n, r->evaluated ? &r->er : NULL);
    return r->evaluated ? &r->er : NULL;
}

train_run_status train_run_write_file(train_run *r, const char *path, char *err, size_t errlen)
{
    vae_status rc = ckpt_save_file(&r->model, r->metrics_json, path, err, errlen);
    return rc ? from_engine(rc, TRAIN_RUN_ERR_SAVE) : TRAIN_RUN_OK;
}

train_run_status train_run_register(train_run *r, registry *reg, const char *model,
                                    int64_t job_id, registry_checkpoint_info *info, char *err,
                                    size_t errlen)
{
    registry_checkpoint_info scratch;
    if (!info)
        info = &scratch;
    char cfg_json[4096];
    if (ckpt_config_to_json(&r->model.cfg, cfg_json, sizeof cfg_json) < 0) {
        util_set_err(err, errlen, "the model config does not fit in %zu bytes", sizeof cfg_json);
        return TRAIN_RUN_ERR_SAVE;
    }
    uint8_t *blob = NULL; /* owned: freed below */
    size_t len = 0;
    vae_status rc = ckpt_save_mem(&r->model, r->metrics_json, &blob, &len, err, errlen);
    if (rc)
        return from_engine(rc, TRAIN_RUN_ERR_SAVE);
    train_run_status st = TRAIN_RUN_OK;
    int rrc;
    if (job_id == 0) {
        int created = 0;
        /* no expected sha256: the registry hashes the bytes itself, once */
        rrc = registry_put_checkpoint(reg, model, blob, len, NULL, cfg_json, r->metrics_json,
                                      "train", info, &created, err, errlen);
    } else {
        int n;
        const trainer_epoch_metrics *ms = train_run_history(r, &n);
        char *records = jobs_record_epochs_json(ms, n); /* owned: freed below */
        rrc = records ? registry_succeed_job(reg, job_id, model, blob, len, cfg_json,
                                             r->metrics_json, records, info, err, errlen)
                      : REGISTRY_ERR_NOMEM;
        if (!records)
            util_set_err(err, errlen, "out of memory registering the model");
        free(records);
    }
    if (rrc)
        st = TRAIN_RUN_ERR_REGISTRY;
    free(blob);
    return st;
}
