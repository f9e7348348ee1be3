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

#include "../../engine/trainer.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_on_mnist_subset),
        cmocka_unit_test(test_cancel_stops_within_a_step),
        cmocka_unit_test(test_shape_mismatch_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
