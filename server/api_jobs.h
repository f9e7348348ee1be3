/* api_jobs: training jobs over HTTP, on the job pool (jobs_pool.h).
 *
 *     api_jobs *jobs;
 *     api_jobs_new(&opts, reg, &jobs, err, sizeof err); // after the registry opens: starts the workers
 *     ctx.jobs = jobs;   // routes call api_jobs_submit(ctx, c, req) etc.
 *     api_jobs_stop(jobs);   // SIGTERM: checkpoints running jobs, ends event streams (MHD still up)
 *     MHD_stop_daemon(d);
 *     api_jobs_free(jobs);   // after MHD has stopped: no handler can reach it any more
 *
 * Routes (rows of the table in routes.c; {id} is one "*" segment):
 *
 *     POST /jobs               api_jobs_submit  202 + Location: /jobs/{id} + the job;
 *                                               400 not JSON, 415, 422 invalid or over
 *                                               --job-mem-mb (the reason in the message)
 *     GET  /jobs[?state=S]     api_jobs_list    {"jobs": [...], "next": ID or null} in
 *          [&limit=N&after=ID]                   submission order, a page at a time
 *     GET  /jobs/{id}          api_jobs_get     the job (see job_json in api_jobs.c)
 *     GET  /jobs/{id}/events   api_jobs_events  text/event-stream, see below
 *     POST /jobs/{id}/cancel   api_jobs_cancel  200 cancelled, 202 stopping (a running job
 *                                               stops before its next step; one past its last
 *                                               step ends cancelled too), 409 finished, or
 *                                               registering its model
 *
 * A submission and a cancel write the registry, so after the checks the
 * request can fail on its own (no pool, not JSON, a bad id: answered at
 * once) they run on the registry's I/O pool (http_ctx.registry_io) with the
 * connection suspended: a database that makes writes wait holds no polling
 * thread. Reads (GET) stay where they arrive: they have connections of their
 * own and never wait for a write.
 *
 * The event stream sends each stored event as "id: SEQ\nevent: TYPE\ndata:
 * JSON\n\n" ("state", "epoch", "progress"), from the one after Last-Event-ID
 * (or from the first), and ends after a final state event. When there is
 * nothing to send, the connection is suspended, so a stream never holds a
 * libmicrohttpd polling thread: one watcher thread wakes when the pool stores
 * an event (jobs_pool_options.on_event) or a stream has been quiet for
 * API_JOBS_KEEPALIVE_S, and resumes those streams; a quiet stream gets a
 * ": keep-alive" comment line, which also finds clients that went away.
 * A stream's state belongs to its MHD response and is freed with it, also
 * when the client disconnects. At most --max-streams streams are open at
 * once (past that 503 with Retry-After), and each ends after --stream-max-s
 * seconds, between two events, with a "retry:" line: an EventSource
 * reconnects and resumes with Last-Event-ID, so a client loses nothing
 * while idle streams cannot hold the connection slots for ever.
 *
 * The pool parses specs with jobs_spec_parse_confined: "data" is mnist,
 * fashion, or a file under the daemon's data root ($VAED_DATA, else ./data).
 * The pool also feeds /metrics through metrics_set_jobs_hook and
 * metrics_set_training_hook, with the instance as the hooks' argument.
 */
#ifndef API_JOBS_H
#define API_JOBS_H

#include "server/http_server.h"
#include "server/registry.h"

/* GET /jobs pages: ?limit= at most this (default the other), ?after=ID. */
#define API_JOBS_PAGE_MAX 1000
#define API_JOBS_PAGE_DEFAULT 100

/* Seconds a quiet event stream waits before a keep-alive comment. */
#define API_JOBS_KEEPALIVE_S 1.0

typedef struct api_jobs api_jobs;

/* Creates the job pool (o->workers workers, o->job_mem_mb limit, resume
 * files under o->data_dir/jobs) on reg, which must outlive api_jobs_free, and
 * the event-stream watcher. Jobs left running by a crash are queued again
 * and resume. SERVER_OK with *out (the caller's: api_jobs_free), or a
 * server_status with err. */
int api_jobs_new(const server_options *o, registry *reg, api_jobs **out, char *err,
                 size_t errlen);
/* Stops taking jobs, checkpoints the running ones (they stay queued and
 * resume at the next start; JOBS_POOL_STOP_CHECKPOINT), waits for the workers,
 * then ends every event stream (resuming suspended connections). Call before
 * MHD_stop_daemon; NULL is a no-op. */
void api_jobs_stop(api_jobs *jobs);
/* Frees what api_jobs_new made; after MHD_stop_daemon. NULL is a no-op. */
void api_jobs_free(api_jobs *jobs);

enum MHD_Result api_jobs_submit(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_jobs_list(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_jobs_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_jobs_events(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_jobs_cancel(http_ctx *ctx, struct MHD_Connection *c, http_request *req);

#endif
