/* A conditional VAE generates the class it is asked for: trained briefly on
 * real MNIST (30,000 training images, 3 epochs, 784-256-2, one training
 * thread), its samples of each class are classified as that class by a
 * nearest-class-mean classifier on pixels (learnt from the training images)
 * at least 80 % of the time (eval_class_accuracy, what `vaed eval` prints;
 * scripts/measure-conditional.sh makes the README's figure with the full
 * set and 5 epochs). The same check on the untrained model, whose samples
 * do not depend on the label yet, stays far below it, so the check can
 * fail; and the classifier itself manages about 80 % on real digits, so it
 * is not a trivial one. Skipped without data/mnist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <stdio.h>
#include <sys/stat.h>

#include "engine/eval.h"
#include "engine/trainer.h"

#define MNIST_TRAIN "data/mnist/train-images-idx3-ubyte"
#define MNIST_TRAIN_LABELS "data/mnist/train-labels-idx1-ubyte"

static void test_samples_are_of_their_class(void **state)
{
    (void)state;
    struct stat st;
    if (stat(MNIST_TRAIN, &st) != 0) {
        print_message("data/mnist is absent: skipped\n");
        skip();
    }
    char err[256];
    dataset train;
    if (dataset_load_idx_compact(&train, MNIST_TRAIN, MNIST_TRAIN_LABELS, err, sizeof err))
        fail_msg("%s", err);
    dataset_truncate(&train, 30000);
    vae_config c;
    vae_config_default(&c);
    c.hidden[0] = 256;
    c.latent = 2;
    c.n_classes = 10;
    c.epochs = 3;
    c.seed = 3;
    vae_model m;
    assert_int_equal(vae_init(&m, &c, c.seed, err, sizeof err), VAE_OK);

    eval_class_result before, after;
    assert_int_equal(eval_class_accuracy(&m, &train, 200, 9, 1.0, &before, err, sizeof err), VAE_OK);
    trainer *t = trainer_new(&m, &train, NULL, err, sizeof err);
    assert_non_null(t);
    trainer_epoch_metrics em;
    while (trainer_epochs_done(t) < c.epochs)
        assert_int_equal(trainer_run_epoch(t, NULL, &em, err, sizeof err), VAE_OK);
    trainer_free(t);
    assert_int_equal(eval_class_accuracy(&m, &train, 200, 9, 1.0, &after, err, sizeof err), VAE_OK);
    print_message("nearest class mean on real digits %.3f; samples as their class: untrained "
                  "%.3f, trained %.3f (",
                  after.data_accuracy, before.accuracy, after.accuracy);
    for (int k = 0; k < 10; k++)
        print_message("%s%d:%.2f", k ? " " : "", k, after.class_accuracy[k]);
    print_message(")\n");
    assert_true(after.data_accuracy > 0.75 && after.data_accuracy < 0.9);
    assert_true(before.accuracy < 0.5);
    assert_true(after.accuracy >= 0.8);

    /* temperature 0: every sample of a class is the decoded z = 0, so each
     * class is classified all right or all wrong; the temperature reaches z */
    eval_class_result cold;
    assert_int_equal(eval_class_accuracy(&m, &train, 50, 9, 0.0, &cold, err, sizeof err), VAE_OK);
    for (int k = 0; k < 10; k++)
        assert_true(cold.class_accuracy[k] == 0.0 || cold.class_accuracy[k] == 1.0);
    assert_int_equal(eval_class_accuracy(&m, &train, 10, 1, -0.5, &cold, err, sizeof err),
                     VAE_ERR_ARG);
    assert_int_equal(eval_class_accuracy(&m, &train, 10, 1, 10.5, &cold, err, sizeof err),
                     VAE_ERR_ARG);

    /* refusals: an unconditional model, images without labels */
    dataset bare = train;
    bare.labels = NULL;
    assert_int_equal(eval_class_accuracy(&m, &bare, 10, 1, 1.0, &after, err, sizeof err), VAE_ERR_ARG);
    vae_free(&m);
    c.n_classes = 0;
    assert_int_equal(vae_init(&m, &c, 1, err, sizeof err), VAE_OK);
    assert_int_equal(eval_class_accuracy(&m, &train, 10, 1, 1.0, &after, err, sizeof err), VAE_ERR_ARG);
    vae_free(&m);
    dataset_free(&train);
}

int main(void)
{
    openblas_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples_are_of_their_class),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
