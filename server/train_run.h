/* train_run: one training run, from a data set to a registered checkpoint,
 * the same for `vaed train` and for training jobs.
 *
 *     train_run_options o;
 *     train_run_options_default(&o);
 *     o.data = "mnist"; o.cfg = cfg;                 // the flags or the job spec
 *     o.resume_path = "run.resume";                  // optional: continue, and keep state there
 *     o.on_progress = show; o.on_epoch = print_line; o.ctx = &ui; o.cancel = &stop;
 *     train_run *run;
 *     if (train_run_new(&o, &run, err, sizeof err)) ...   // data, model, trainer; resumes
 *     train_run_status st = train_run_epochs(run, err, sizeof err);   // the epochs still to run
 *     if (st == TRAIN_RUN_ERR_CANCELLED) train_run_save_resume(run, err, sizeof err);
 *     train_run_evaluate(run);                            // IWAE bound, checkpoint metrics
 *     train_run_write_file(run, "model.safetensors", err, sizeof err);
 *     train_run_register(run, reg, "digits", 0, &info, err, sizeof err);
 *     train_run_free(run);
 *
 * The stages are separate calls because the two callers act between them
 * (the CLI prints, a job stores events) and decide differently when a run
 * is cancelled (the CLI and a daemon shutting down save the position; a
 * user's cancel of a job drops it). Every caller runs them in this order.
 *
 * The data: a built-in name (mnist, fashion) or a path (data_sets.h),
 * training split kept as bytes (a quarter of the memory) unless val_split
 * needs floats; the test split when there is one, else with val_split > 0 a
 * held-out fraction of the training images (chosen by cfg.seed); then class
 * and limit. The model's image shape comes from the data, and so does a
 * conditional model's class count: 1 + the largest label of the training
 * and test images as loaded (before class and limit), so 10 for MNIST,
 * Fashion-MNIST and CIFAR-10 and the sub-folder count of a PNG folder; a
 * data set without labels is refused.
 *
 * Resuming: when resume_path names a file, train_run_new continues from it
 * (trainer_load_resume); the model config and each of the caller's meta
 * pairs must match, else TRAIN_RUN_ERR_RESUME saying it belongs to another
 * run. After every epoch the whole state goes to resume_path atomically, so
 * a run killed at any point loses at most an epoch; train_run_save_resume
 * also keeps a mid-epoch position. With one training thread a resumed run
 * ends in the same bytes as one never interrupted.
 *
 * The checkpoint's metrics (checkpoint_metrics_json): the per-epoch losses,
 * restored ones included, and the IWAE bound with iwae_k samples on the
 * first EVAL_TRAIN_IWAE_IMAGES test images (training images without a test
 * split); no timings, so a seed gives the same bytes every time.
 *
 * Ownership: the run borrows the option strings, the callbacks' ctx and the
 * cancel flag for its lifetime; everything else it holds is its own.
 */
#ifndef TRAIN_RUN_H
#define TRAIN_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "engine/eval.h"
#include "engine/trainer.h"
#include "engine/vae.h"
#include "server/registry.h"

typedef enum {
    TRAIN_RUN_OK = 0,
    TRAIN_RUN_ERR_ARG,       /* the data or options: a missing file, no such class, a bad split */
    TRAIN_RUN_ERR_RESUME,    /* the resume file belongs to another run, or cannot be read or written */
    TRAIN_RUN_ERR_TRAIN,     /* an epoch failed (a loss that is not finite); nothing was saved */
    TRAIN_RUN_ERR_CANCELLED, /* stopped before a step on request; the position is kept */
    TRAIN_RUN_ERR_SAVE,      /* the checkpoint could not be made or written */
    TRAIN_RUN_ERR_REGISTRY,  /* the registry refused or failed (err is the registry's) */
    TRAIN_RUN_ERR_NOMEM,
    TRAIN_RUN_ERR_RANKS      /* with ranks: one did not answer in time or failed; end them all */
} train_run_status;

typedef struct {
    const char *data;           /* built-in name or path; required */
    const char *data_root;      /* where built-in data sets live; NULL: data_sets_root() */
    int klass;                  /* -1: every label */
    int limit;                  /* the first N training images; 0: all */
    double val_split;           /* held-out fraction when there is no test split, [0, 1) */
    vae_config cfg;             /* the model and its training; the image shape is the data's */
    int conditional;            /* a conditional model on the data's labels (cfg.n_classes is set
                                   from the data; ignored when 0) */
    int threads;                /* training threads (>= 2: data parallel); default 1 */
    int iwae_k;                 /* K of the bound in the metrics; 0: none; default 64 */
    const char *resume_path;    /* NULL: none */
    const trainer_meta *meta;   /* what else must match to resume, stored with the state */
    int n_meta;
    /* After every step (the callee throttles), and after every epoch with
     * the metrics of all epochs done so far (history[n_done - 1] is the new
     * one; the resume file is written by then). Either may be NULL. */
    void (*on_progress)(void *ctx, const trainer_progress *p);
    void (*on_epoch)(void *ctx, const trainer_epoch_metrics *history, int n_done);
    void *ctx;
    const atomic_int *cancel; /* non-zero: stop before the next step; may be NULL */
    /* Data parallel over processes (engine/trainer_dist.h), NULL: one. Every
     * rank runs the same options through train_run_new and train_run_epochs;
     * each keeps its shard of the training images and its block of the test
     * set (or of the held-out images; the whole set when it has fewer images
     * than ranks), every rank evaluates its part after each epoch and in
     * train_run_evaluate (collective: every rank calls it), and rank 0 alone
     * reads and writes resume_path and calls _write_file and _register. The
     * ranks first agree that they run the same run (the model config, the
     * data and its size, class, limit, split and meta), else every rank's
     * train_run_new fails, TRAIN_RUN_ERR_ARG. */
    const trainer_dist *dist;
} train_run_options;

/* What train_run_new found. */
typedef struct {
    int n_train, n_test;        /* images, after class and limit; n_test 0 without a test set */
    int test_first, test_held;  /* this rank holds test images test_first .. + test_held - 1
                                   (with ranks, its block; else all n_test) */
    int val_split_unused;       /* val_split was given, but the data has a test split */
    int resumed;                /* the state came from resume_path */
    int epochs_done;            /* by then (from the resume file) */
    trainer_position position;  /* by then: mid-epoch when next_step > 0 */
} train_run_info;

typedef struct train_run train_run;

void train_run_options_default(train_run_options *o);
/* Loads the data, builds the model and its trainer and, when resume_path
 * exists, restores the state from it. *out is the caller's (train_run_free),
 * NULL on failure. */
train_run_status train_run_new(const train_run_options *o, train_run **out, char *err,
                               size_t errlen);
void train_run_free(train_run *run);

const train_run_info *train_run_get_info(const train_run *run);
/* The model: its config has the data's image shape. Borrowed from the run. */
const vae_model *train_run_model(const train_run *run);
/* Where training stands now (epochs done, and the step within the next). */
void train_run_get_position(const train_run *run, trainer_position *p);
/* The metrics of the epochs done, *n_done of them. Borrowed from the run. */
const trainer_epoch_metrics *train_run_history(const train_run *run, int *n_done);

/* Runs the epochs not done yet. TRAIN_RUN_ERR_CANCELLED when the cancel flag
 * stopped it (also once the last step is done); the trainer then stands where
 * it stopped and train_run_save_resume keeps that. */
train_run_status train_run_epochs(train_run *run, char *err, size_t errlen);
/* Writes the whole state to resume_path (atomically). */
train_run_status train_run_save_resume(train_run *run, char *err, size_t errlen);

/* After the epochs: the evaluation (iwae_k samples) and the checkpoint
 * metrics; nothing with no epoch done. The trainer (its training state) is
 * freed first, so the evaluation's state is not held beside it: after this,
 * train_run_epochs and train_run_save_resume refuse. Never fails: without
 * an evaluation the metrics say null. NULL or the result, borrowed from the
 * run. */
const eval_result *train_run_evaluate(train_run *run);
/* The checkpoint (with its metrics) to path, atomically. */
train_run_status train_run_write_file(train_run *run, const char *path, char *err,
                                      size_t errlen);
/* The checkpoint becomes the next version of model in reg: as source
 * "train" when job_id is 0, else as job job_id's result, the job marked
 * succeeded with its per-epoch records in the same transaction
 * (registry_succeed_job). info may be NULL. */
train_run_status train_run_register(train_run *run, registry *reg, const char *model,
                                    int64_t job_id, registry_checkpoint_info *info, char *err,
                                    size_t errlen);

#endif
