/* jobs_pool: training jobs, queued in the registry's SQLite file and run by a
 * pool of worker threads.
 *
 *     jobs_pool_options o;
 *     jobs_pool_options_default(&o);
 *     o.data_dir = "var"; o.workers = 1; o.job_mem_limit = (size_t)2048 << 20;
 *     jobs_pool *p;
 *     if (jobs_pool_new(reg, &o, &p, err, sizeof err)) ...     // requeues crashed jobs, starts workers
 *     jobs_pool_submit(p, body, len, &id, err, sizeof err);    // JOBS_POOL_ERR_INVALID: a bad spec
 *     registry_job j;
 *     jobs_pool_get_job(p, id, &j, err, sizeof err); ... registry_free_job(&j);
 *     while (jobs_pool_wait_events(p, id, last_seq, 1000) > 0) // a new event was stored
 *         jobs_pool_events_after(p, id, last_seq, 64, &ev, &n, ...); ... last_seq = ev[n-1].seq;
 *     jobs_pool_cancel(p, id, err, sizeof err);                // POST /jobs/{id}/cancel
 *     jobs_pool_shutdown(p, JOBS_POOL_STOP_CHECKPOINT);         // SIGTERM: save, requeue, join
 *     jobs_pool_free(p);
 *
 * Workers take queued jobs oldest first (registry_claim_next_job) and run
 * each through the training pipeline `vaed train` uses (train_run.h): data,
 * epochs, evaluation, registration. After each epoch the whole training
 * state goes to DATA_DIR/jobs/ID/resume.safetensors atomically (the engine's
 * resume file, trainer_save_resume, keyed to the job spec). A job found
 * 'running' when a pool starts (the daemon died) is queued again and resumes
 * from that file, ending with exactly `epochs` epochs of metrics and, with
 * one BLAS thread, the parameters an uninterrupted run would have.
 * JOBS_POOL_STOP_CHECKPOINT (SIGTERM) stops each running job before its next
 * step, saves the mid-epoch position the same way and leaves the job queued.
 *
 * On success the model becomes the next version of spec.model (the checkpoint
 * metrics: per-epoch losses, no timings, so the same seed gives the same
 * bytes) and the job 'succeeded' in the same transaction; 'latest' follows.
 * A non-finite loss fails the job with the epoch, step and reason; nothing is
 * registered. A cancelled running job stops before its next step.
 *
 * Events (registry job_events, their JSON written by jobs_record): "state" at
 * each transition, "epoch" with each epoch's metrics, "progress" at most every
 * progress_interval_s (1 s). Each stored event is also handed to the
 * observer (on_event) as a native jobs_event. The pool speaks no HTTP and
 * builds no response: the HTTP layer (api_jobs) turns registry_job structs
 * and jobs_pool_status values into bodies and status codes.
 *
 * Threads: BLAS thread count is process-wide (OpenBLAS); `vaed serve` sets
 * one thread, so each worker uses one core. Workers also lower their own
 * scheduling priority (nice +10, per thread on Linux), so with --workers 1 on
 * two cores, inference requests keep a core and win any contention.
 */
#ifndef JOBS_POOL_H
#define JOBS_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "server/jobs.h"
#include "server/registry.h"

typedef enum {
    JOBS_POOL_OK = 0,
    JOBS_POOL_ERR_INVALID,   /* the spec: bad key, value, data set, or over the memory limit */
    JOBS_POOL_ERR_NOT_FOUND, /* no such job */
    JOBS_POOL_ERR_CONFLICT,  /* e.g. cancelling a finished job */
    JOBS_POOL_ERR_STOPPING,  /* the pool is shutting down */
    JOBS_POOL_ERR_DB,        /* the registry failed */
    JOBS_POOL_ERR_IO,
    JOBS_POOL_ERR_NOMEM,
    JOBS_POOL_ERR_FULL,      /* max_queued jobs wait already */
    JOBS_POOL_ERR_UNAVAILABLE /* a shared registry's database is away now: try again */
} jobs_pool_status;

typedef enum {
    /* SIGTERM: stop running jobs before their next step, save where they are
     * and leave them queued, to resume at the next start. */
    JOBS_POOL_STOP_CHECKPOINT = 0,
    /* For tests only: stop as a crash would. Nothing is saved or changed:
     * running jobs stay 'running' with their last per-epoch resume file. */
    JOBS_POOL_STOP_ABANDON
} jobs_pool_stop_mode;

/* What on_event receives: one stored event, in native figures. */
typedef struct {
    int64_t job_id;
    jobs_event_type type;
    jobs_state state;         /* JOBS_EVENT_STATE: the new state; else JOBS_STATE_RUNNING */
    int epoch, epochs;        /* EPOCH: the epoch finished; PROGRESS: the one running; 0 */
    int64_t step, steps;      /* PROGRESS: within the epoch; 0 otherwise */
    double images_per_s;      /* EPOCH and PROGRESS; NAN for a state */
} jobs_event;

typedef struct {
    const char *data_dir;       /* resume files in DATA_DIR/jobs/ID/; required */
    const char *data_root;      /* data sets root; NULL = data_sets_root() */
    int workers;                /* training threads; 0 = accept and queue only */
    size_t job_mem_limit;       /* bytes; a spec estimated above it is refused; 0 = none */
    double progress_interval_s; /* least time between progress events (default 1) */
    int nice;                   /* added to each worker's niceness (default 10) */
    /* Called after each event is stored, with no pool lock held (e borrowed
     * for the call), from a worker or from the thread that submitted or
     * cancelled. It may call jobs_pool_stop and jobs_pool_cancel, not
     * jobs_pool_shutdown or jobs_pool_free. */
    void (*on_event)(void *ctx, const jobs_event *e);
    void *on_event_ctx;
    /* 1 parses specs with jobs_spec_parse_confined (a daemon: "data" only
     * under data_root); 0 (default) jobs_spec_parse. */
    int confine_data;
    /* A submit past this many queued jobs is refused (JOBS_POOL_ERR_FULL);
     * 0 = no limit. */
    int max_queued;
    /* Jobs of "ranks" N > 1 run under `mpirun --hostfile mpi_hostfile -np N`
     * (jobs_ranks.h) on those hosts, each running the vaed binary at
     * vaed_path (NULL: this process's own, /proc/self/exe) with the same
     * data root path; without a hostfile such a job is refused
     * (JOBS_POOL_ERR_INVALID). The job's events, cancel, resume and result
     * are as a local job's; the ranks' messages are in DATA_DIR/jobs/ID/ranks.log
     * while it runs. */
    const char *mpi_hostfile;
    const char *vaed_path;
} jobs_pool_options;

typedef struct jobs_pool jobs_pool;

void jobs_pool_options_default(jobs_pool_options *o);
/* Requeues jobs left 'running', then starts the workers. The registry is
 * borrowed and must outlive the pool. */
jobs_pool_status jobs_pool_new(registry *reg, const jobs_pool_options *o, jobs_pool **out,
                               char *err, size_t errlen);
/* Stops (as JOBS_POOL_STOP_CHECKPOINT unless already stopped), waits for the
 * workers and frees the pool. */
void jobs_pool_free(jobs_pool *p);

/* Validates a JSON job spec (see jobs_spec.h; len bytes, need not end in NUL)
 * and queues it: *id is the new job. JOBS_POOL_ERR_INVALID with the reason in
 * err for a bad spec or one over job_mem_limit. */
jobs_pool_status jobs_pool_submit(jobs_pool *p, const char *json, size_t len, int64_t *id,
                                  char *err, size_t errlen);
/* A queued job never starts; a running one stops before its next step (its
 * state becomes 'cancelled' when its worker notices, within one step).
 * JOBS_POOL_ERR_CONFLICT for a finished job. */
jobs_pool_status jobs_pool_cancel(jobs_pool *p, int64_t id, char *err, size_t errlen);

/* One job (free with registry_free_job): its state, its spec, progress and
 * metrics as the JSON text jobs_record wrote, its result and times.
 * JOBS_POOL_ERR_NOT_FOUND when there is no such job. */
/* Takes the server's directories (the data root, the data dir) out of text
 * in place (data_sets_strip_dir): what a client is told names files as it
 * named them. Every error the pool stores or returns has been through it. */
void jobs_pool_hide_paths(const jobs_pool *p, char *text);
jobs_pool_status jobs_pool_get_job(jobs_pool *p, int64_t id, registry_job *out, char *err,
                                   size_t errlen);
/* Jobs in submission order, only those in *only when only is not NULL (a
 * value that is not a state is JOBS_POOL_ERR_INVALID); *list (free with
 * registry_free_jobs) has *count entries. */
/* Deletes the jobs that finished more than max_age_s seconds ago (their
 * events too); *deleted (may be NULL) counts them. */
jobs_pool_status jobs_pool_prune(jobs_pool *p, double max_age_s, int64_t *deleted, char *err,
                                 size_t errlen);
/* A page of jobs (registry_list_jobs: ids after after_id, at most limit). */
jobs_pool_status jobs_pool_list_jobs(jobs_pool *p, const jobs_state *only, int64_t after_id,
                                     int limit, registry_job **list,
                                     size_t *count, char *err, size_t errlen);
/* counts[s]: the jobs in state s (for /metrics: counted, not listed). */
jobs_pool_status jobs_pool_count_jobs(jobs_pool *p, int64_t counts[JOBS_STATE_COUNT], char *err,
                                      size_t errlen);

/* Waits until job id has an event with seq > after_seq: returns 1 when it
 * has, 0 on timeout or once the pool is stopping, -1 when there is no such
 * job. */
int jobs_pool_wait_events(jobs_pool *p, int64_t id, int64_t after_seq, int timeout_ms);
/* At most max events after after_seq (see registry_list_job_events; free
 * with registry_free_job_events). An SSE stream sends each as "id: SEQ",
 * "event: TYPE", "data: DATA_JSON" and ends after a state event whose state
 * is final (jobs_state_is_final). */
jobs_pool_status jobs_pool_events_after(jobs_pool *p, int64_t id, int64_t after_seq, int max,
                                        registry_job_event **list, size_t *count, char *err,
                                        size_t errlen);

/* Stops accepting jobs and asks running jobs to stop; returns at once (safe
 * from on_event and from a thread woken by a signal). */
void jobs_pool_stop(jobs_pool *p, jobs_pool_stop_mode mode);
/* jobs_pool_stop, then waits for every worker to finish (a step, and the
 * resume file for JOBS_POOL_STOP_CHECKPOINT). */
void jobs_pool_shutdown(jobs_pool *p, jobs_pool_stop_mode mode);

#endif
