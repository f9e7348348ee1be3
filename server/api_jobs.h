/* api_jobs: training jobs over HTTP, on the job pool (job_pool.h).
 *
 *     api_jobs_start(&opts, reg, err, sizeof err); // after the registry opens: starts the workers
 *     ... routes call api_jobs_submit(ctx, c, req) etc. ...
 *     api_jobs_stop();   // SIGTERM: checkpoints running jobs, ends event streams (MHD still up)
 *     MHD_stop_daemon(d);
 *     api_jobs_free();   // after MHD has stopped: no handler can reach the pool any more
 *
 * Routes (rows of the table in http_server.c; {id} is one "*" segment):
 *
 *     POST /jobs               api_jobs_submit  202 + Location: /jobs/{id} + the job;
 *                                               400 not JSON, 415, 422 invalid or over
 *                                               --job-mem-mb (the reason in the message)
 *     GET  /jobs[?state=S]     api_jobs_list    {"jobs": [...]} in submission order
 *     GET  /jobs/{id}          api_jobs_get     the job (job_pool_get_json)
 *     GET  /jobs/{id}/events   api_jobs_events  text/event-stream, see below
 *     POST /jobs/{id}/cancel   api_jobs_cancel  200 cancelled, 202 stopping (a running job
 *                                               stops before its next step), 409 finished
 *
 * The event stream sends each stored event as "id: SEQ\nevent: TYPE\ndata:
 * JSON\n\n" ("state", "epoch", "progress"), from the one after Last-Event-ID
 * (or from the first), and ends after a final state event. When there is
 * nothing to send, the connection is suspended, so a stream never holds a
 * libmicrohttpd polling thread: one watcher thread wakes when the pool stores
 * an event (job_pool_options.on_event) or a stream has been quiet for
 * API_JOBS_KEEPALIVE_S, and resumes those streams; a quiet stream gets a
 * ": keep-alive" comment line, which also finds clients that went away.
 * A stream's state belongs to its MHD response and is freed with it, also
 * when the client disconnects.
 *
 * The pool parses specs with job_spec_parse_confined: "data" is mnist,
 * fashion, or a file under the daemon's data root ($VAED_DATA, else ./data).
 * The pool also feeds /metrics through metrics_set_jobs_hook and
 * metrics_set_training_hook. One pool per process (module state).
 */
#ifndef API_JOBS_H
#define API_JOBS_H

#include "server/http_server.h"
#include "server/registry.h"

/* Seconds a quiet event stream waits before a keep-alive comment. */
#define API_JOBS_KEEPALIVE_S 1.0

/* Creates the job pool (o->workers workers, o->job_mem_mb limit, resume
 * files under o->data_dir/jobs) on reg, which must outlive api_jobs_free, and
 * the event-stream watcher. Jobs left running by a crash are queued again
 * and resume. SERVER_OK, or a server_status with err. */
int api_jobs_start(const server_options *o, registry *reg, char *err, size_t errlen);
/* Stops taking jobs, checkpoints the running ones (they stay queued and
 * resume at the next start; JOB_POOL_STOP_CHECKPOINT), waits for the workers,
 * then ends every event stream (resuming suspended connections). Call before
 * MHD_stop_daemon; safe when api_jobs_start was not called or failed. */
void api_jobs_stop(void);
/* Frees the pool; after MHD_stop_daemon. */
void api_jobs_free(void);

enum MHD_Result api_jobs_submit(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_jobs_list(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_jobs_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_jobs_events(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_jobs_cancel(http_ctx *ctx, struct MHD_Connection *c, http_request *req);

#endif
