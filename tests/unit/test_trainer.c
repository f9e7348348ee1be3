/* Unit tests for engine/trainer.c: training on real data (a 2,000-image MNIST
 * subset, whose loss falls), cancelling, the shape checks, and the resume
 * file: stopping after an epoch or mid-epoch, saving, and loading into a new
 * model and trainer ends with the same bytes as never stopping; files of
 * another run, format or a damaged file are refused and leave the trainer as
 * it was. Bit-for-bit comparisons need one training and one BLAS thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "engine/trainer.h"
#include "tests/lib/harness.h"

#define MNIST_TRAIN "data/mnist/train-images-idx3-ubyte"
#define MNIST_TRAIN_LABELS "data/mnist/train-labels-idx1-ubyte"

typedef struct {
    int calls;
    int64_t last_step;
} progress_seen;

static void on_progress(void *ctx, const trainer_progress *p)
{
    progress_seen *s = ctx;
    s->calls++;
    s->last_step = p->step;
}

static void test_loss_falls_on_mnist_subset(void **state)
{
    (void)state;
    if (access(MNIST_TRAIN, R_OK) != 0) fail_msg("%s missing: run scripts/get-data.sh mnist", MNIST_TRAIN);
    char err[300];
    dataset d;
    assert_int_equal(dataset_load_idx(&d, MNIST_TRAIN, MNIST_TRAIN_LABELS, err, sizeof err), 0);
    /* the 500 images after the first 2,000, held out */
    dataset held = {.n = 500, .channels = 1, .height = 28, .width = 28};
    held.x = malloc(sizeof(float) * 500 * 784);
    memcpy(held.x, d.x + (size_t)2000 * 784, sizeof(float) * 500 * 784);
    dataset_truncate(&d, 2000);

    vae_config c;
    vae_config_default(&c);
    c.epochs = 3;
    vae_model m;
    assert_int_equal(vae_init(&m, &c, 1, err, sizeof err), 0);
    trainer *t = trainer_new(&m, &d, &held, err, sizeof err);
    assert_non_null(t);
    double before, r, k;
    assert_int_equal(trainer_evaluate(&m, &held, 5, &before, &r, &k, err, sizeof err), 0);
    /* an untrained decoder outputs ~0.5 everywhere: about 784 ln 2 = 543 nats */
    assert_true(before > 400 && before < 700);
    progress_seen seen = {0};
    trainer_callbacks cb = {.on_progress = on_progress, .ctx = &seen};
    trainer_epoch_metrics e[3];
    for (int i = 0; i < 3; i++) assert_int_equal(trainer_run_epoch(t, &cb, &e[i], err, sizeof err), 0);
    assert_int_equal(seen.calls, 3 * 16); /* ceil(2000 / 128) steps an epoch */
    assert_int_equal(seen.last_step, 16);
    assert_true(e[1].train_loss < e[0].train_loss);
    assert_true(e[2].train_loss < e[1].train_loss);
    assert_true(e[2].test_loss < before - 200);
    assert_true(isfinite(e[2].test_recon) && e[2].test_kl > 0);
    assert_int_equal(trainer_epochs_done(t), 3);
    trainer_free(t);
    vae_free(&m);
    dataset_free(&d);
    dataset_free(&held);
}

typedef struct {
    int calls, cancel_at;
    atomic_int *cancel;
} cancel_after;

static void cancel_on_progress(void *ctx, const trainer_progress *p)
{
    (void)p;
    cancel_after *c = ctx;
    if (++c->calls == c->cancel_at) *c->cancel = 1;
}

static void test_cancel_stops_within_a_step(void **state)
{
    (void)state;
    char err[300];
    dataset d = {.n = 300, .channels = 1, .height = 4, .width = 4};
    d.x = calloc(300 * 16, sizeof(float));
    vae_config c;
    vae_config_default(&c);
    c.height = c.width = 4;
    c.hidden[0] = 8;
    c.latent = 2;
    c.batch = 10;
    vae_model m;
    assert_int_equal(vae_init(&m, &c, 1, err, sizeof err), 0);
    float *before = malloc(sizeof(float) * m.n_params);
    assert_non_null(before);
    memcpy(before, m.params, sizeof(float) * m.n_params);
    trainer *t = trainer_new(&m, &d, NULL, err, sizeof err);
    assert_non_null(t);
    atomic_int cancel = 1;
    trainer_callbacks cb = {.cancel = &cancel};
    trainer_epoch_metrics e;
    assert_int_equal(trainer_run_epoch(t, &cb, &e, err, sizeof err), VAE_ERR_CANCELLED);
    assert_non_null(strstr(err, "cancelled"));
    /* no step ran: the parameters and the Adam step are as they were */
    assert_int_equal(trainer_epochs_done(t), 0);
    trainer_position pos;
    trainer_get_position(t, &pos);
    assert_true(pos.next_step == 0 && pos.seen == 0);
    assert_memory_equal(m.params, before, sizeof(float) * m.n_params);
    /* a cancel seen after three steps stops before the fourth */
    cancel = 0;
    cancel_after ca = {.cancel_at = 3, .cancel = &cancel};
    cb = (trainer_callbacks){.on_progress = cancel_on_progress, .ctx = &ca, .cancel = &cancel};
    assert_int_equal(trainer_run_epoch(t, &cb, &e, err, sizeof err), VAE_ERR_CANCELLED);
    trainer_get_position(t, &pos);
    assert_true(pos.next_step == 3 && pos.seen == 30);
    /* three Adam steps: the same parameters as three steps taken by hand */
    vae_model byhand;
    assert_int_equal(vae_init(&byhand, &c, 1, err, sizeof err), 0);
    vae_train_state *ts = vae_train_state_new(&byhand, c.batch, err, sizeof err);
    assert_non_null(ts);
    rng_state r;
    rng_seed(&r, c.seed);
    int order[300];
    for (int i = 0; i < d.n; i++) order[i] = i;
    rng_shuffle(&r, order, d.n);
    float *x = malloc(sizeof(float) * (size_t)c.batch * dataset_dim(&d));
    assert_non_null(x);
    vae_stats st;
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < c.batch; i++)
            dataset_image(&d, order[s * c.batch + i], x + (size_t)i * dataset_dim(&d));
        assert_int_equal(vae_train_step(&byhand, ts, x, c.batch, &r, &st), VAE_OK);
    }
    assert_int_equal(*vae_train_adam_step(ts), 3);
    assert_memory_equal(m.params, byhand.params, sizeof(float) * m.n_params);
    free(x);
    vae_train_state_free(ts);
    vae_free(&byhand);
    free(before);
    trainer_free(t);
    vae_free(&m);
    dataset_free(&d);
}

static void test_shape_mismatch_is_refused(void **state)
{
    (void)state;
    char err[300];
    dataset d = {.n = 4, .channels = 1, .height = 3, .width = 3};
    d.x = calloc(4 * 9, sizeof(float));
    vae_config c;
    vae_config_default(&c);
    c.hidden[0] = 8;
    vae_model m;
    assert_int_equal(vae_init(&m, &c, 1, err, sizeof err), 0);
    assert_null(trainer_new(&m, &d, NULL, err, sizeof err));
    assert_non_null(strstr(err, "1x3x3"));
    vae_free(&m);

    /* a conditional model: the images need labels, each a class it has */
    c.height = c.width = 3;
    c.n_classes = 3;
    assert_int_equal(vae_init(&m, &c, 1, err, sizeof err), 0);
    assert_null(trainer_new(&m, &d, NULL, err, sizeof err));
    assert_non_null(strstr(err, "the training set has no labels"));
    d.labels = calloc(4, 1);
    d.labels[2] = 3;
    assert_null(trainer_new(&m, &d, NULL, err, sizeof err));
    assert_non_null(
        strstr(err, "image 2 of the training set has label 3; the model has 3 classes (0 to 2)"));
    d.labels[2] = 2;
    trainer *t = trainer_new(&m, &d, NULL, err, sizeof err);
    assert_non_null(t);
    trainer_free(t);
    double loss, recon, kl;
    dataset bare = d;
    bare.labels = NULL;
    assert_int_equal(trainer_evaluate(&m, &bare, 1, &loss, &recon, &kl, err, sizeof err),
                     VAE_ERR_ARG);
    assert_int_equal(trainer_evaluate(&m, &d, 1, &loss, &recon, &kl, err, sizeof err), VAE_OK);
    vae_free(&m);
    dataset_free(&d);
}


/* ---------- the resume file ---------- */

/* A small random training set and a test set, the same for every call. */
static void resume_data(dataset *train, dataset *test)
{
    rng_state r;
    rng_seed(&r, 4);
    *train = (dataset){.n = 90, .channels = 1, .height = 5, .width = 5};
    *test = (dataset){.n = 20, .channels = 1, .height = 5, .width = 5};
    train->x = malloc(sizeof(float) * 90 * 25);
    test->x = malloc(sizeof(float) * 20 * 25);
    assert_non_null(train->x);
    assert_non_null(test->x);
    for (int i = 0; i < 90 * 25; i++) train->x[i] = rng_uniform(&r);
    for (int i = 0; i < 20 * 25; i++) test->x[i] = rng_uniform(&r);
}

static vae_config resume_config(void)
{
    vae_config c;
    vae_config_default(&c);
    c.height = c.width = 5;
    c.hidden[0] = 12;
    c.latent = 3;
    c.batch = 16;           /* 6 steps an epoch, the last one of 10 images */
    c.epochs = 3;
    c.binarize = VAE_BIN_DYNAMIC; /* the generator matters for the data too */
    c.kl_warmup = 10;             /* and the Adam step for the loss */
    return c;
}

/* Everything a resumed run must reproduce. */
typedef struct {
    size_t np;
    float *params, *adam_m, *adam_v; /* owned */
    int64_t adam_step;
    rng_state rng;
    trainer_position pos;
    int order[90];
    int done;
    trainer_epoch_metrics history[3];
} run_state;

static void state_take(run_state *s, trainer *t, const vae_model *m)
{
    vae_train_state *ts = trainer_train_state(t);
    s->np = m->n_params;
    s->params = malloc(4 * s->np);
    s->adam_m = malloc(4 * s->np);
    s->adam_v = malloc(4 * s->np);
    assert_non_null(s->params);
    assert_non_null(s->adam_m);
    assert_non_null(s->adam_v);
    memcpy(s->params, m->params, 4 * s->np);
    memcpy(s->adam_m, vae_train_adam_m(ts), 4 * s->np);
    memcpy(s->adam_v, vae_train_adam_v(ts), 4 * s->np);
    s->adam_step = *vae_train_adam_step(ts);
    s->rng = *trainer_rng(t);
    trainer_get_position(t, &s->pos);
    assert_int_equal(trainer_order_len(t), 90);
    memcpy(s->order, trainer_order(t), sizeof s->order);
    s->done = trainer_epochs_done(t);
    memset(s->history, 0, sizeof s->history);
    memcpy(s->history, trainer_history(t), sizeof s->history[0] * (size_t)s->done);
}

static void state_free(run_state *s)
{
    free(s->params);
    free(s->adam_m);
    free(s->adam_v);
}

/* Bit for bit, all but the timings. */
static void metrics_same(const trainer_epoch_metrics *a, const trainer_epoch_metrics *b)
{
    assert_int_equal(a->epoch, b->epoch);
    assert_memory_equal(&a->train_loss, &b->train_loss, sizeof(double));
    assert_memory_equal(&a->train_recon, &b->train_recon, sizeof(double));
    assert_memory_equal(&a->train_kl, &b->train_kl, sizeof(double));
    assert_memory_equal(&a->test_loss, &b->test_loss, sizeof(double));
    assert_memory_equal(&a->test_recon, &b->test_recon, sizeof(double));
    assert_memory_equal(&a->test_kl, &b->test_kl, sizeof(double));
}

static void state_same(const run_state *a, const run_state *b, int with_timing)
{
    assert_int_equal(a->np, b->np);
    assert_memory_equal(a->params, b->params, 4 * a->np);
    assert_memory_equal(a->adam_m, b->adam_m, 4 * a->np);
    assert_memory_equal(a->adam_v, b->adam_v, 4 * a->np);
    assert_true(a->adam_step == b->adam_step);
    assert_memory_equal(&a->rng, &b->rng, sizeof a->rng);
    assert_int_equal(a->done, b->done);
    assert_int_equal(a->pos.epochs_done, b->pos.epochs_done);
    assert_true(a->pos.next_step == b->pos.next_step);
    assert_int_equal(a->pos.seen, b->pos.seen);
    assert_memory_equal(&a->pos.recon_sum, &b->pos.recon_sum, sizeof(double));
    assert_memory_equal(&a->pos.kl_sum, &b->pos.kl_sum, sizeof(double));
    assert_memory_equal(a->order, b->order, sizeof a->order);
    for (int i = 0; i < a->done; i++) metrics_same(&a->history[i], &b->history[i]);
    if (with_timing) {
        assert_memory_equal(&a->pos.seconds, &b->pos.seconds, sizeof(double));
        assert_memory_equal(a->history, b->history, sizeof a->history);
    }
}

/* All epochs without a stop. */
static void run_straight(const vae_config *c, const dataset *train, const dataset *test,
                         run_state *out)
{
    char err[300];
    vae_model m;
    assert_int_equal(vae_init(&m, c, 2, err, sizeof err), 0);
    trainer *t = trainer_new(&m, train, test, err, sizeof err);
    assert_non_null(t);
    trainer_epoch_metrics e;
    for (int i = 0; i < c->epochs; i++) {
        assert_int_equal(trainer_run_epoch(t, NULL, &e, err, sizeof err), VAE_OK);
        assert_int_equal(e.epoch, i + 1);
        metrics_same(&e, &trainer_history(t)[i]);
    }
    /* the history has room for cfg.epochs and no more */
    assert_int_equal(trainer_run_epoch(t, NULL, &e, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "epochs are done"));
    state_take(out, t, &m);
    trainer_free(t);
    vae_free(&m);
}

static const trainer_meta run_meta[] = {{"data", "random 90"}, {"flags", "--epochs 3 \"q\""}};

/* Runs `epochs` whole epochs, then (cancel_at > 0) cancel_at steps of the
 * next; saves to path; a new model (other weights) and trainer load it and
 * finish the run into *out. */
static void run_resumed(const vae_config *c, const dataset *train, const dataset *test,
                        int epochs, int cancel_at, const char *path, run_state *out)
{
    char err[300];
    vae_model a;
    assert_int_equal(vae_init(&a, c, 2, err, sizeof err), 0);
    trainer *t = trainer_new(&a, train, test, err, sizeof err);
    assert_non_null(t);
    trainer_epoch_metrics e;
    for (int i = 0; i < epochs; i++)
        assert_int_equal(trainer_run_epoch(t, NULL, &e, err, sizeof err), VAE_OK);
    if (cancel_at > 0) {
        atomic_int cancel = 0;
        cancel_after ca = {.cancel_at = cancel_at, .cancel = &cancel};
        trainer_callbacks cb = {.on_progress = cancel_on_progress, .ctx = &ca, .cancel = &cancel};
        assert_int_equal(trainer_run_epoch(t, &cb, &e, err, sizeof err), VAE_ERR_CANCELLED);
        assert_int_equal(ca.calls, cancel_at);
    }
    run_state saved;
    state_take(&saved, t, &a);
    assert_int_equal(saved.done, epochs);
    assert_true(saved.pos.next_step == cancel_at);
    int rc = trainer_save_resume(t, path, run_meta, 2, err, sizeof err);
    if (rc) fail_msg("save: %s", err);
    trainer_free(t);
    vae_free(&a);

    vae_model b;
    assert_int_equal(vae_init(&b, c, 99, err, sizeof err), 0); /* other weights, then overwritten */
    t = trainer_new(&b, train, test, err, sizeof err);
    assert_non_null(t);
    rc = trainer_load_resume(t, path, run_meta, 2, err, sizeof err);
    if (rc) fail_msg("load: %s", err);
    run_state loaded;
    state_take(&loaded, t, &b);
    state_same(&saved, &loaded, 1); /* what was saved comes back, timings included */
    state_free(&saved);
    state_free(&loaded);
    while (trainer_epochs_done(t) < c->epochs)
        assert_int_equal(trainer_run_epoch(t, NULL, &e, err, sizeof err), VAE_OK);
    state_take(out, t, &b);
    trainer_free(t);
    vae_free(&b);
}

/* For each stop (epochs done, steps into the next; 0 = at an epoch's end):
 * stopped, saved and resumed equals straight through. */
static void check_resumes(const int (*stops)[2], size_t n_stops)
{
    openblas_set_num_threads(1);
    char dir[HARNESS_PATH_MAX], path[HARNESS_PATH_MAX + 32];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/resume.safetensors", dir);
    dataset train, test;
    resume_data(&train, &test);
    vae_config c = resume_config();
    run_state ref;
    run_straight(&c, &train, &test, &ref);
    assert_int_equal(ref.done, 3);
    for (size_t i = 0; i < n_stops; i++) {
        run_state got;
        run_resumed(&c, &train, &test, stops[i][0], stops[i][1], path, &got);
        state_same(&ref, &got, 0);
        state_free(&got);
    }
    state_free(&ref);
    dataset_free(&train);
    dataset_free(&test);
    harness_rm_rf(dir);
}

static void test_resume_after_epochs_is_exact(void **state)
{
    (void)state;
    const int stops[][2] = {{0, 0}, {1, 0}, {2, 0}};
    check_resumes(stops, sizeof stops / sizeof stops[0]);
}

static void test_resume_mid_epoch_from_file_is_exact(void **state)
{
    (void)state;
    /* in the first epoch (no metrics yet), in the middle, and before the last step */
    const int stops[][2] = {{0, 2}, {1, 3}, {2, 5}};
    check_resumes(stops, sizeof stops / sizeof stops[0]);
}

static void write_bytes(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    uint8_t *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Loading path into t fails with want, err names the file and holds why, and
 * t is as before. */
static void expect_refused(trainer *t, const vae_model *m, const run_state *before,
                           const char *path, const trainer_meta *meta, int n_meta,
                           vae_status want, const char *why)
{
    char err[600] = "";
    vae_status rc = trainer_load_resume(t, path, meta, n_meta, err, sizeof err);
    if (rc != want) fail_msg("%s: status %d, wanted %d (%s)", path, rc, want, err);
    if (!strstr(err, path) || !strstr(err, why))
        fail_msg("error \"%s\" should name %s and say \"%s\"", err, path, why);
    run_state after;
    state_take(&after, t, m);
    state_same(before, &after, 1);
    state_free(&after);
}

/* The resume file of a run that has not started, with run_meta. */
static void save_new_run(const vae_config *c, const dataset *train, const dataset *test,
                         const char *path)
{
    char err[300];
    vae_model m;
    assert_int_equal(vae_init(&m, c, 2, err, sizeof err), 0);
    trainer *t = trainer_new(&m, train, test, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(trainer_save_resume(t, path, run_meta, 2, err, sizeof err), VAE_OK);
    trainer_free(t);
    vae_free(&m);
}

static void test_resume_refusals(void **state)
{
    (void)state;
    openblas_set_num_threads(1);
    char err[300];
    char dir[HARNESS_PATH_MAX], good[HARNESS_PATH_MAX + 32], bad[HARNESS_PATH_MAX + 32];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    snprintf(good, sizeof good, "%s/good.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    dataset train, test;
    resume_data(&train, &test);
    vae_config c = resume_config();

    /* a file written after one epoch and two steps */
    vae_model a;
    assert_int_equal(vae_init(&a, &c, 2, err, sizeof err), 0);
    trainer *ta = trainer_new(&a, &train, &test, err, sizeof err);
    assert_non_null(ta);
    trainer_epoch_metrics e;
    assert_int_equal(trainer_run_epoch(ta, NULL, &e, err, sizeof err), VAE_OK);
    atomic_int cancel = 0;
    cancel_after ca = {.cancel_at = 2, .cancel = &cancel};
    trainer_callbacks cb = {.on_progress = cancel_on_progress, .ctx = &ca, .cancel = &cancel};
    assert_int_equal(trainer_run_epoch(ta, &cb, &e, err, sizeof err), VAE_ERR_CANCELLED);
    assert_int_equal(trainer_save_resume(ta, good, run_meta, 2, err, sizeof err), VAE_OK);

    /* the trainer that refuses: at another point of the same run */
    vae_model m;
    assert_int_equal(vae_init(&m, &c, 2, err, sizeof err), 0);
    trainer *t = trainer_new(&m, &train, &test, err, sizeof err);
    assert_non_null(t);
    cancel = 0;
    ca = (cancel_after){.cancel_at = 4, .cancel = &cancel};
    assert_int_equal(trainer_run_epoch(t, &cb, &e, err, sizeof err), VAE_ERR_CANCELLED);
    run_state before;
    state_take(&before, t, &m);

    /* the caller's meta: a value that differs, a key the file lacks */
    const trainer_meta other_data[] = {{"data", "random 91"}, {"flags", "--epochs 3 \"q\""}};
    expect_refused(t, &m, &before, good, other_data, 2, VAE_ERR_FORMAT, "another run");
    expect_refused(t, &m, &before, good, other_data, 2, VAE_ERR_FORMAT, "\"data\" differs");
    const trainer_meta extra[] = {{"flags", "--epochs 3 \"q\""}, {"job", "7"}};
    expect_refused(t, &m, &before, good, extra, 2, VAE_ERR_FORMAT, "\"job\" is missing");

    /* another model config: a learning rate, or another latent size */
    vae_config c2 = c;
    c2.lr *= 2;
    save_new_run(&c2, &train, &test, bad);
    expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_FORMAT, "another model config");
    c2 = c;
    c2.latent = 4;
    save_new_run(&c2, &train, &test, bad);
    expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_FORMAT, "another model config");

    /* the same config on other data */
    dataset fewer = train;
    fewer.n = 80;
    save_new_run(&c, &fewer, &test, bad);
    expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_FORMAT, "80 images");

    /* truncated anywhere: in the data, in the header, in the length */
    size_t len;
    uint8_t *bytes = read_bytes(good, &len);
    const size_t cuts[] = {len - 1, len / 2, 100, 7, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(bad, bytes, cuts[i]);
        expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_FORMAT, "cannot resume");
    }
    /* one bit flipped in a tensor */
    bytes[len - 200] ^= 0x10;
    write_bytes(bad, bytes, len);
    expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_FORMAT, "corrupt");
    bytes[len - 200] ^= 0x10;
    free(bytes);

    /* files of another format: the format before this one, and a checkpoint */
    float one = 1.0f;
    st_tensor_out p = {.name = "params", .ndim = 1, .shape = {1}, .data = &one};
    const char *keys[] = {"format", "job_config"}, *values[] = {"vaed-job-resume-1", "{}"};
    assert_int_equal(st_write_file(bad, &p, 1, keys, values, 2, err, sizeof err), 0);
    expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_FORMAT, "\"vaed-job-resume-1\"");
    assert_int_equal(ckpt_save_file(&m, NULL, bad, err, sizeof err), VAE_OK);
    expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_FORMAT, "\"pt\" file");
    assert_int_equal(st_write_file(bad, &p, 1, NULL, NULL, 0, err, sizeof err), 0);
    expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_FORMAT, "not a vaed resume file");

    /* no file at all */
    snprintf(bad, sizeof bad, "%s/missing.safetensors", dir);
    expect_refused(t, &m, &before, bad, run_meta, 2, VAE_ERR_IO, "No such file");

    /* and the good file still loads, with fewer meta pairs than it holds */
    assert_int_equal(trainer_load_resume(t, good, run_meta + 1, 1, err, sizeof err), VAE_OK);
    run_state want, got;
    state_take(&want, ta, &a);
    state_take(&got, t, &m);
    state_same(&want, &got, 1);
    state_free(&want);
    state_free(&got);

    state_free(&before);
    trainer_free(t);
    trainer_free(ta);
    vae_free(&m);
    vae_free(&a);
    dataset_free(&train);
    dataset_free(&test);
    harness_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_on_mnist_subset),
        cmocka_unit_test(test_cancel_stops_within_a_step),
        cmocka_unit_test(test_shape_mismatch_is_refused),
        cmocka_unit_test(test_resume_after_epochs_is_exact),
        cmocka_unit_test(test_resume_mid_epoch_from_file_is_exact),
        cmocka_unit_test(test_resume_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
