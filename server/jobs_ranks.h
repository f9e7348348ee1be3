/* jobs_ranks: a training job run as ranks under mpirun instead of in the
 * daemon's worker thread, with the same callbacks a train_run gives.
 *
 *     jobs_ranks_options o = {.hostfile = "hosts", .ranks = 2, .vaed = "/usr/bin/vaed",
 *                             .spec_path = "var/jobs/7/spec.json", .data_root = root,
 *                             .resume_path = "var/jobs/7/resume.safetensors",
 *                             .out_path = "var/jobs/7/result.safetensors",
 *                             .log_path = "var/jobs/7/ranks.log",
 *                             .on_progress = f, .on_epoch = g, .on_resumed = h, .ctx = job,
 *                             .cancel = &slot->cancel};
 *     trainer_epoch_metrics *h; int n;           // h: the caller frees
 *     jobs_ranks_status st = jobs_ranks_run(&o, &h, &n, err, sizeof err);
 *
 * It starts `mpirun --hostfile FILE -np N VAED train --job-spec SPEC --events
 * --resume RESUME --out OUT` (every rank the same command; cli_train reads
 * the spec with jobs_spec_parse) in a process group of its own, so a signal
 * meant for the daemon's terminal does not reach it. Rank 0 writes one line
 * per event on its stdout, which comes here through a pipe: "@progress", then
 * "@epoch" after each epoch (its resume file written) and "@history" for
 * each epoch a resumed run restored; each becomes the callback a train_run
 * would have called. When *cancel turns non-zero, mpirun gets SIGUSR1, which
 * it passes to every rank: they stop at the same step and rank 0 keeps the
 * position in the resume file (JOBS_RANKS_CANCELLED). The ranks' stderr goes
 * to log_path; a failed run's err is its last "vaed train" line.
 *
 * If the daemon dies, rank 0's next event line meets a closed pipe and the
 * ranks end (SIGPIPE), so no run outlives its daemon by more than a step.
 *
 * Everything is borrowed for the call; it returns once mpirun has exited.
 */
#ifndef JOBS_RANKS_H
#define JOBS_RANKS_H

#include <stddef.h>

#include "engine/trainer.h"

typedef enum {
    JOBS_RANKS_OK = 0,       /* the checkpoint is at out_path */
    JOBS_RANKS_ERR_START,    /* mpirun could not be started */
    JOBS_RANKS_ERR_FAILED,   /* the run failed; err says why */
    JOBS_RANKS_CANCELLED,    /* stopped on *cancel; the position is in resume_path */
    JOBS_RANKS_ERR_NOMEM
} jobs_ranks_status;

typedef struct {
    const char *mpirun;      /* NULL: "mpirun" from PATH */
    const char *hostfile;    /* required */
    int ranks;               /* >= 2 */
    const char *vaed;        /* the vaed binary every host runs (the same path on each) */
    const char *spec_path, *data_root, *resume_path, *out_path, *log_path;
    void (*on_progress)(void *ctx, const trainer_progress *p);
    void (*on_epoch)(void *ctx, const trainer_epoch_metrics *history, int n_done);
    void (*on_resumed)(void *ctx, const trainer_epoch_metrics *history, int n_done);
    void *ctx;
    const volatile int *cancel;
} jobs_ranks_options;

/* *history (malloc'd, the caller frees; NULL when none) gets the metrics of
 * every epoch done, restored ones first, *n_done of them. */
jobs_ranks_status jobs_ranks_run(const jobs_ranks_options *o, trainer_epoch_metrics **history,
                                 int *n_done, char *err, size_t errlen);

/* The event lines of rank 0, for cli_train to write and this module to
 * read: one line each, figures as %.17g (nan for a missing one). */
void jobs_ranks_print_progress(const trainer_progress *p);
void jobs_ranks_print_epoch(const char *kind, const trainer_epoch_metrics *m);

#endif
