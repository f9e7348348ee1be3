/* trainer: epochs of minibatch training over a dataset, with evaluation, and
 * the resume file that continues an interrupted run to the same bytes.
 *
 *     trainer *t = trainer_new(&model, &train, &test, err, sizeof err);
 *     trainer_meta meta[] = {{"data", "mnist"}};   // what else makes this run this run
 *     if (access(path, F_OK) == 0 &&
 *         trainer_load_resume(t, path, meta, 1, err, sizeof err)) ...   // refused: err says why
 *     trainer_callbacks cb = {.on_progress = show, .ctx = &ui, .cancel = &stop};
 *     while (trainer_epochs_done(t) < model.cfg.epochs) {
 *         vae_status rc = trainer_run_epoch(t, &cb, &metrics, err, sizeof err);
 *         if (rc == VAE_OK || rc == VAE_ERR_CANCELLED)
 *             trainer_save_resume(t, path, meta, 1, err, sizeof err);
 *         if (rc) break;
 *     }
 *     const trainer_epoch_metrics *h = trainer_history(t);   // every epoch, also resumed ones
 *     trainer_free(t);
 *
 * The trainer borrows the model and datasets; they must outlive it. Its state
 * (Adam moments, the generator, the data order and the position in the epoch,
 * the metrics of the epochs done) lives in the trainer; trainer_save_resume
 * writes all of it with the model's parameters, so a run stopped anywhere,
 * even mid-epoch, resumes bit for bit (with one training thread: two threads
 * sum gradients in an order that is repeatable but not the same).
 *
 * With ranks (trainer_new_dist) the epochs are the same as one process's:
 * the same generator on every rank makes the same data order and draws the
 * noise of the whole batch, each rank keeps the draws of the slots it holds,
 * and the gradients and the loss sums are summed over the ranks before the
 * one update (clipping and KL warm-up see the whole batch); only the
 * order in which a batch's gradients are added differs, so the parameters
 * agree with one process's to float rounding. Every rank trains with one
 * thread.
 */
#ifndef TRAINER_H
#define TRAINER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/dataset.h"
#include "engine/trainer_dist.h"
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
     * then says where to resume. Atomic: another thread (a job's cancel) or
     * a signal handler sets it while the epoch reads it. */
    const atomic_int *cancel;
} trainer_callbacks;

typedef struct trainer trainer;

trainer *trainer_new(vae_model *m, const dataset *train, const dataset *test, char *err,
                     size_t errlen);
/* Data parallel over processes (trainer_dist.h): train is this rank's shard
 * of the n_global training images; every rank calls every trainer function
 * below in the same order, except trainer_save_resume and
 * trainer_load_resume, which rank 0 alone calls (then
 * trainer_dist_share_state), and trainer_evaluate. test is the whole test
 * set on every rank (or NULL on every rank): each evaluates the images
 * i % size == rank of it after an epoch and every rank gets the sums; or,
 * after trainer_set_test_part, each rank's block of it. A
 * step that cannot reach every rank fails with VAE_ERR_IO. dist NULL or of
 * size 1 is trainer_new. */
trainer *trainer_new_dist(vae_model *m, const dataset *train, int n_global, const dataset *test,
                          const trainer_dist *dist, char *err, size_t errlen);
/* With ranks: the test set is evaluated in blocks, rank r taking images
 * n_test * r / size .. n_test * (r + 1) / size - 1, and test (of
 * trainer_new_dist) holds images first .. first + test->n - 1 of n_test,
 * which must include that block: the block alone, or more (rank 0 holds the
 * whole set for the evaluation it makes alone at the end). The noise of each
 * image's slot is drawn as one process draws it, and the sums over the ranks
 * are the whole set's. VAE_ERR_ARG when test does not hold the block. */
vae_status trainer_set_test_part(trainer *t, int first, int n_test, char *err, size_t errlen);
/* Collective: rank 0's parameters and whole state (what a resume file
 * holds) to every rank; at the start, after rank 0 may have resumed. */
vae_status trainer_dist_share_state(trainer *t, char *err, size_t errlen);
void trainer_free(trainer *t);
/* Training threads (data parallel when >= 2); see vae_train_state_set_threads. */
vae_status trainer_set_threads(trainer *t, int threads, char *err, size_t errlen);
int trainer_epochs_done(const trainer *t);
/* Runs the next epoch (VAE_ERR_ARG when all cfg.epochs are done) and fills out
 * with its metrics, which the history keeps too. */
vae_status trainer_run_epoch(trainer *t, const trainer_callbacks *cb, trainer_epoch_metrics *out,
                             char *err, size_t errlen);
/* The per-epoch metrics of the epochs done (trainer_epochs_done(t) entries), also those
 * restored by trainer_load_resume; the trainer's, valid until it is freed. */
const trainer_epoch_metrics *trainer_history(const trainer *t);

/* An opaque string the caller stores in a resume file and wants back the same. */
typedef struct {
    const char *key, *value;
} trainer_meta;

/* Everything a run needs to continue to the same bytes: parameters, Adam m, v and step,
 * the generator, the epoch's data order and position (also mid-epoch, after a cancel),
 * the per-epoch metrics so far, the model config, and the caller's meta (opaque strings,
 * e.g. the job spec or the CLI's data and flags). Written atomically (temporary file,
 * fsync, rename). */
vae_status trainer_save_resume(const trainer *t, const char *path, const trainer_meta *meta,
                               int n_meta, char *err, size_t errlen);
/* Restores a trainer made for the same model config and data from path. Each of the
 * n_meta given pairs must be in the file with the same value, and the model config must be
 * the same, else VAE_ERR_FORMAT with err saying the file belongs to another run; a
 * missing, truncated or corrupt file is an error naming it. On failure t is unchanged. */
vae_status trainer_load_resume(trainer *t, const char *path, const trainer_meta *meta,
                               int n_meta, char *err, size_t errlen);

/* Negative ELBO per image (recon and KL) over a whole dataset, eps drawn from
 * a generator seeded with seed, so the figure is repeatable. */
vae_status trainer_evaluate(const vae_model *m, const dataset *d, uint64_t seed, double *loss,
                            double *recon, double *kl, char *err, size_t errlen);
/* Collective with ranks (dist active): the same figures over the whole set
 * of p->n_all images, each rank taking its part p of it (trainer_dist.h),
 * held in d; every rank gets the sums. VAE_ERR_ARG when d cannot hold the
 * part. */
vae_status trainer_evaluate_part(const vae_model *m, const dataset *d, const trainer_dist_part *p,
                                 const trainer_dist *dist, uint64_t seed, double *loss,
                                 double *recon, double *kl, char *err, size_t errlen);
/* Where training stands (what progress reports and a resume file say): the
 * epochs finished, the steps of the current epoch done (0 = the next epoch
 * starts with a new shuffle) and that epoch's running sums. */
typedef struct {
    int epochs_done;
    int64_t next_step;
    double recon_sum, kl_sum;
    int seen;
    double seconds;            /* training time spent in the epoch so far */
} trainer_position;

void trainer_get_position(const trainer *t, trainer_position *p);
/* What a resume file holds, for tests that check a resumed run is the same
 * one; a caller resumes with trainer_save_resume and trainer_load_resume,
 * never by writing these. The generator, the training state (Adam moments and
 * step: vae_train_adam_*), the current epoch's data order (n indices). */
const rng_state *trainer_rng(const trainer *t);
vae_train_state *trainer_train_state(const trainer *t);
const int *trainer_order(const trainer *t);
int trainer_order_len(const trainer *t);

#endif
