/* Training on real data: a 2,000-image MNIST subset, whose loss falls. */
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

#include "engine/trainer.h"

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
    dataset test = d; /* the next 500 images, held out */
    dataset_truncate(&d, 60000);
    test.x = NULL;
    test.labels = NULL;
    dataset_free(&test);
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
    trainer *t = trainer_new(&m, &d, NULL, err, sizeof err);
    volatile int cancel = 1;
    trainer_callbacks cb = {.cancel = &cancel};
    trainer_epoch_metrics e;
    assert_int_not_equal(trainer_run_epoch(t, &cb, &e, err, sizeof err), 0);
    assert_non_null(strstr(err, "cancelled"));
    assert_int_equal(trainer_epochs_done(t), 0);
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
    dataset_free(&d);
}


typedef struct {
    int calls, cancel_at;
    volatile int *cancel;
} cancel_after;

static void cancel_on_progress(void *ctx, const trainer_progress *p)
{
    (void)p;
    cancel_after *c = ctx;
    if (++c->calls == c->cancel_at) *c->cancel = 1;
}

/* Stopping mid-epoch, saving everything a job checkpoint keeps, and resuming
 * in a new trainer ends with the same parameters as never stopping. */
static void test_resume_mid_epoch_is_exact(void **state)
{
    (void)state;
    openblas_set_num_threads(1); /* bit-for-bit needs one BLAS thread */
    char err[300];
    dataset d = {.n = 250, .channels = 1, .height = 5, .width = 5};
    d.x = malloc(sizeof(float) * 250 * 25);
    rng_state r;
    rng_seed(&r, 4);
    for (int i = 0; i < 250 * 25; i++) d.x[i] = rng_uniform(&r);
    vae_config c;
    vae_config_default(&c);
    c.height = c.width = 5;
    c.hidden[0] = 12;
    c.latent = 3;
    c.batch = 16;
    c.epochs = 3;
    trainer_epoch_metrics e;

    vae_model ref;
    assert_int_equal(vae_init(&ref, &c, 2, err, sizeof err), 0);
    trainer *t = trainer_new(&ref, &d, NULL, err, sizeof err);
    for (int i = 0; i < 3; i++) assert_int_equal(trainer_run_epoch(t, NULL, &e, err, sizeof err), 0);
    double ref_loss = e.train_loss;
    trainer_free(t);

    vae_model a;
    assert_int_equal(vae_init(&a, &c, 2, err, sizeof err), 0);
    t = trainer_new(&a, &d, NULL, err, sizeof err);
    assert_int_equal(trainer_run_epoch(t, NULL, &e, err, sizeof err), 0);
    volatile int cancel = 0;
    cancel_after ca = {.cancel_at = 7, .cancel = &cancel};
    trainer_callbacks cb = {.on_progress = cancel_on_progress, .ctx = &ca, .cancel = &cancel};
    assert_int_equal(trainer_run_epoch(t, &cb, &e, err, sizeof err), VAE_ERR_CANCELLED);
    /* what a job checkpoint keeps */
    trainer_position pos;
    trainer_get_position(t, &pos);
    assert_int_equal(pos.epochs_done, 1);
    assert_int_equal(pos.next_step, 7);
    int *order = malloc(sizeof(int) * 250);
    memcpy(order, trainer_order(t), sizeof(int) * 250);
    rng_state saved_rng = *trainer_rng(t);
    vae_train_state *ts = trainer_train_state(t);
    size_t np = a.n_params;
    float *p = malloc(4 * np), *m1 = malloc(4 * np), *m2 = malloc(4 * np);
    memcpy(p, a.params, 4 * np);
    memcpy(m1, vae_train_adam_m(ts), 4 * np);
    memcpy(m2, vae_train_adam_v(ts), 4 * np);
    int64_t steps = *vae_train_adam_step(ts);
    trainer_free(t);
    vae_free(&a);

    vae_model b;
    assert_int_equal(vae_init(&b, &c, 99, err, sizeof err), 0); /* other weights, then overwritten */
    memcpy(b.params, p, 4 * np);
    t = trainer_new(&b, &d, NULL, err, sizeof err);
    ts = trainer_train_state(t);
    memcpy(vae_train_adam_m(ts), m1, 4 * np);
    memcpy(vae_train_adam_v(ts), m2, 4 * np);
    *vae_train_adam_step(ts) = steps;
    *trainer_rng(t) = saved_rng;
    int bad[250];
    for (int i = 0; i < 250; i++) bad[i] = 0;
    assert_int_not_equal(trainer_set_position(t, &pos, bad, 250, err, sizeof err), 0);
    assert_int_equal(trainer_set_position(t, &pos, order, 250, err, sizeof err), 0);
    assert_int_equal(trainer_run_epoch(t, NULL, &e, err, sizeof err), 0);
    assert_int_equal(e.epoch, 2);
    assert_int_equal(trainer_run_epoch(t, NULL, &e, err, sizeof err), 0);
    assert_int_equal(e.epoch, 3);
    assert_memory_equal(b.params, ref.params, 4 * np);
    assert_true(e.train_loss == ref_loss);
    trainer_free(t);
    free(order);
    free(p);
    free(m1);
    free(m2);
    vae_free(&b);
    vae_free(&ref);
    dataset_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_on_mnist_subset),
        cmocka_unit_test(test_cancel_stops_within_a_step),
        cmocka_unit_test(test_shape_mismatch_is_refused),
        cmocka_unit_test(test_resume_mid_epoch_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
