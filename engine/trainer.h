/* trainer: epochs of minibatch training over a dataset, with evaluation.
 *
 *     trainer *t = trainer_new(&model, &train, &test, err, sizeof err);
 *     for (e = 0; e < epochs; e++)
 *         if (trainer_run_epoch(t, &callbacks, &metrics, err, sizeof err)) break;
 *     trainer_free(t);
 *
 * The trainer borrows the model and datasets; they must outlive it. Its state
 * (Adam moments, the generator, the epoch count) lives in the trainer, so a
 * caller can save and restore it between epochs.
 */
#ifndef TRAINER_H
#define TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/dataset.h"
#include "engine/vae.h"

typedef struct {
    int epoch, epochs;          /* epoch is 1-based, the one running */
    int64_t step, steps;        /* within this epoch */
    double images_per_s;
    double eta_s;               /* for the remaining epochs */
    double loss;                /* running negative ELBO per image this epoch */
} trainer_progress;

typedef struct {
    int epoch;                  /* 1-based */
    double train_loss;          /* negative ELBO per image, nats (recon + kl) */
    double train_recon, train_kl;
    double test_loss;           /* NAN when there is no test set */
    double test_recon, test_kl;
    double images_per_s;        /* training steps only */
    double seconds;
} trainer_epoch_metrics;

typedef struct {
    /* Called after every step; the callee throttles what it prints. */
    void (*on_progress)(void *ctx, const trainer_progress *p);
    void *ctx;
    /* When non-NULL and non-zero, the epoch stops before its next step and
     * trainer_run_epoch returns VAE_ERR_CANCELLED; the trainer's position
     * then says where to resume. */
    const volatile int *cancel;
} trainer_callbacks;

typedef struct trainer trainer;

trainer *trainer_new(vae_model *m, const dataset *train, const dataset *test, char *err,
                     size_t errlen);
void trainer_free(trainer *t);
/* Training threads (data parallel when >= 2); see vae_train_state_set_threads. */
int trainer_set_threads(trainer *t, int threads, char *err, size_t errlen);
int trainer_epochs_done(const trainer *t);
int trainer_run_epoch(trainer *t, const trainer_callbacks *cb, trainer_epoch_metrics *out,
                      char *err, size_t errlen);
/* Negative ELBO per image (recon and KL) over a whole dataset, eps drawn from
 * a generator seeded with seed, so the figure is repeatable. */
int trainer_evaluate(const vae_model *m, const dataset *d, uint64_t seed, double *loss,
                     double *recon, double *kl, char *err, size_t errlen);
/* The trainer's generator and its Adam state, for checkpoints that resume. */
rng_state *trainer_rng(trainer *t);
vae_train_state *trainer_train_state(trainer *t);

/* Where training stands, for checkpoints that resume mid-epoch: the epochs
 * finished, the steps of the current epoch done (0 = the next epoch starts
 * with a new shuffle) and that epoch's running sums. */
typedef struct {
    int epochs_done;
    int64_t next_step;
    double recon_sum, kl_sum;
    int seen;
    double seconds;            /* training time spent in the epoch so far */
} trainer_position;

void trainer_get_position(const trainer *t, trainer_position *p);
/* The current epoch's data order (n indices into the training set). */
const int *trainer_order(const trainer *t);
int trainer_order_len(const trainer *t);
/* Restores a position; order (n indices, a permutation) is required when
 * p->next_step > 0. */
int trainer_set_position(trainer *t, const trainer_position *p, const int *order, int n,
                         char *err, size_t errlen);

#endif
