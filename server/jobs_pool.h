/* jobs_pool: training jobs, queued in the registry's SQLite file and run by a
 * pool of worker threads.
 *
 *     jobs_pool_options o;
 *     jobs_pool_options_default(&o);
 *     o.data_dir = "var"; o.workers = 1; o.job_mem_limit = (size_t)2048 << 20;
 *     jobs_pool *p;
 *     if (jobs_pool_new(reg, &o, &p, err, sizeof err)) ...     // requeues crashed jobs, starts workers
 *     jobs_pool_submit(p, body, len, &id, err, sizeof err);    // JOBS_POOL_ERR_INVALID -> 422
 *     char *job = jobs_pool_get_json(p, id, err, sizeof err);  // GET /jobs/{id}; caller frees
 *     while (jobs_pool_wait_events(p, id, last_seq, 1000) > 0) // SSE: GET /jobs/{id}/events
 *         jobs_pool_events_after(p, id, last_seq, 64, &ev, &n, ...); ... last_seq = ev[n-1].seq;
 *     jobs_pool_cancel(p, id, err, sizeof err);                // POST /jobs/{id}/cancel
 *     jobs_pool_shutdown(p, JOBS_POOL_STOP_CHECKPOINT);         // SIGTERM: save, requeue, join
 *     jobs_pool_free(p);
 *
 * Workers take queued jobs oldest first (registry_claim_next_job). A job
 * loads its data set, trains epoch by epoch and after each epoch writes
 * DATA_DIR/jobs/ID/resume.safetensors atomically: parameters, Adam m and v,
 * the data order (F32, exact below 2^24 images) as tensors; the job config,
 * model config, Adam step, generator state (4 x u64 hex), trainer position
 * (sums as %.17g, exact) and the per-epoch metrics so far as metadata. A job
 * found 'running' when a pool starts (the daemon died) is queued again and
 * resumes from that file, ending with exactly `epochs` epochs of metrics and,
 * with one BLAS thread, the parameters an uninterrupted run would have.
 * JOBS_POOL_STOP_CHECKPOINT (SIGTERM) stops each running job before its next
 * step, saves the mid-epoch position the same way and leaves the job queued.
 *
 * On success the model becomes the next version of spec.model (the checkpoint
 * metrics: per-epoch losses, no timings, so the same seed gives the same
 * bytes) and the job 'succeeded' in the same transaction; 'latest' follows.
 * A non-finite loss fails the job with the epoch, step and reason; nothing is
 * registered. A cancelled running job stops before its next step.
 *
 * Events (registry job_events): "state" at each transition, "epoch" with each
 * epoch's metrics, "progress" at most every progress_interval_s (1 s).
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

#include "server/registry.h"

typedef enum {
    JOBS_POOL_OK = 0,
    JOBS_POOL_ERR_INVALID,   /* the spec: bad key, value, data set, or over the memory limit (422) */
    JOBS_POOL_ERR_NOT_FOUND, /* no such job (404) */
    JOBS_POOL_ERR_CONFLICT,  /* e.g. cancelling a finished job (409) */
    JOBS_POOL_ERR_STOPPING,  /* the pool is shutting down (503) */
    JOBS_POOL_ERR_DB,        /* the registry failed (500) */
    JOBS_POOL_ERR_IO,
    JOBS_POOL_ERR_NOMEM
} jobs_pool_status;

typedef enum {
    /* SIGTERM: stop running jobs before their next step, save where they are
     * and leave them queued, to resume at the next start. */
    JOBS_POOL_STOP_CHECKPOINT = 0,
    /* For tests only: stop as a crash would. Nothing is saved or changed:
     * running jobs stay 'running' with their last per-epoch resume file. */
    JOBS_POOL_STOP_ABANDON
} jobs_pool_stop_mode;

typedef struct {
    const char *data_dir;       /* resume files in DATA_DIR/jobs/ID/; required */
    const char *data_root;      /* data sets root; NULL = data_sets_root() */
    int workers;                /* training threads; 0 = accept and queue only */
    size_t job_mem_limit;       /* bytes; a spec estimated above it is refused; 0 = none */
    double progress_interval_s; /* least time between progress events (default 1) */
    int nice;                   /* added to each worker's niceness (default 10) */
    /* Called from a worker after each event is stored (type "state", "epoch",
     * "progress"; data_json borrowed for the call). It may call jobs_pool_stop
     * and jobs_pool_cancel, not jobs_pool_shutdown or jobs_pool_free. */
    void (*on_event)(void *ctx, int64_t job_id, const char *type, const char *data_json);
    void *on_event_ctx;
    /* Added with the jobs HTTP API: 1 parses specs with jobs_spec_parse_confined
     * (a daemon: "data" only under data_root); 0 (default) jobs_spec_parse. */
    int confine_data;
} jobs_pool_options;

typedef struct jobs_pool jobs_pool;

void jobs_pool_options_default(jobs_pool_options *o);
/* Requeues jobs left 'running', then starts the workers. The registry is
 * borrowed and must outlive the pool. */
int jobs_pool_new(registry *reg, const jobs_pool_options *o, jobs_pool **out, char *err,
                 size_t errlen);
/* Stops (as JOBS_POOL_STOP_CHECKPOINT unless already stopped), waits for the
 * workers and frees the pool. */
void jobs_pool_free(jobs_pool *p);

/* Validates a JSON job spec (see jobs_spec.h; len bytes, need not end in NUL)
 * and queues it: *id is the new job. JOBS_POOL_ERR_INVALID with the reason in
 * err for a bad spec or one over job_mem_limit. */
int jobs_pool_submit(jobs_pool *p, const char *json, size_t len, int64_t *id, char *err,
                    size_t errlen);
/* A queued job never starts; a running one stops before its next step (its
 * state becomes 'cancelled' when its worker notices, within one step).
 * JOBS_POOL_ERR_CONFLICT for a finished job. */
int jobs_pool_cancel(jobs_pool *p, int64_t id, char *err, size_t errlen);

/* GET /jobs/{id}: {"id", "state", "config", "progress" (null or {epoch,
 * epochs, step, steps, images_per_s, eta_s, loss}), "metrics" ([] or one
 * object per epoch: epoch, train_loss, train_recon, train_kl, test_loss,
 * test_recon, test_kl (null without a test set), images_per_s, seconds),
 * "result" (null or {model, version}), "error" (null or text), "created_at",
 * "started_at", "finished_at" (null until set)}. malloc'd, caller frees; NULL
 * on failure with the status in *status (may be NULL). */
char *jobs_pool_get_json(jobs_pool *p, int64_t id, int *status, char *err, size_t errlen);
/* GET /jobs: {"jobs": [job, ...]} in submission order, only jobs in state
 * when state is not NULL (an unknown state is JOBS_POOL_ERR_INVALID). */
char *jobs_pool_list_json(jobs_pool *p, const char *state, int *status, char *err,
                         size_t errlen);

/* Waits until job id has an event with seq > after_seq: returns 1 when it
 * has, 0 on timeout or once the pool is stopping, -1 when there is no such
 * job. */
int jobs_pool_wait_events(jobs_pool *p, int64_t id, int64_t after_seq, int timeout_ms);
/* At most max events after after_seq (see registry_list_job_events; free
 * with registry_free_job_events). An SSE stream sends each as "id: SEQ",
 * "event: TYPE", "data: DATA_JSON" and ends after a "state" event whose state
 * is final (registry_job_state_is_final). */
int jobs_pool_events_after(jobs_pool *p, int64_t id, int64_t after_seq, int max,
                          registry_job_event **list, size_t *count, char *err, size_t errlen);

/* Stops accepting jobs and asks running jobs to stop; returns at once (safe
 * from on_event and from a thread woken by a signal). */
void jobs_pool_stop(jobs_pool *p, jobs_pool_stop_mode mode);
/* jobs_pool_stop, then waits for every worker to finish (a step, and the
 * resume file for JOBS_POOL_STOP_CHECKPOINT). */
void jobs_pool_shutdown(jobs_pool *p, jobs_pool_stop_mode mode);

/* HTTP status for a jobs_pool_status. */
int jobs_pool_http_status(int status);

#endif
