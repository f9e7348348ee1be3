/* api_infer: the inference endpoints — /sample, /encode, /decode,
 * /interpolate — and /readyz, /metrics, /openapi.yaml.
 *
 *     api_infer_start(&opts, threads, err, sizeof err);  // before the daemon starts
 *     ... routes call api_infer_sample(ctx, c, req) etc. ...
 *     api_infer_stop();                                  // before MHD_stop_daemon
 *
 * Model math never stalls a libmicrohttpd polling thread for long: requests
 * of at most API_INFER_INLINE_* size (well under a millisecond) run where
 * they arrive, since handing them over would cost more than they do; the
 * rest go to compute threads. For those, a handler checks
 * what is cheap to check (query parameters, Content-Type, Accept), then
 * admits the request into a bounded compute queue, suspends the connection
 * and returns; a compute thread parses the body, runs the model, builds the
 * response and resumes the connection; MHD calls the handler again, which
 * queues the finished response. The queue admits at most limit requests
 * (queued + running, limit = API_INFER_QUEUE_PER_THREAD x compute threads);
 * past that a request gets 429 too_many_requests with Retry-After: 1, so a
 * burst costs bounded memory and what was admitted waits a bounded time (32
 * of the largest requests, n = 1024, take about 0.3 s on one core). 32, not
 * 4: 64 keep-alive clients on 2 cores must not see 429 in normal use, and a
 * cheap request (one /encode) costs ~0.1 ms, so 32 queued ones are ~3 ms.
 *
 * Per-request state hangs off http_request.work and is freed by
 * http_request.work_free from the NOTIFY_COMPLETED callback.
 * One compute pool per process (state is module-level): vaed runs one server.
 */
#ifndef API_INFER_H
#define API_INFER_H

#include "server/http_server.h"

/* Largest batch of /sample, /encode and /decode, and of /interpolate steps. */
#define API_INFER_MAX_N 1024
#define API_INFER_MAX_STEPS 256
/* Deepest JSON nesting accepted in a request body. */
#define API_INFER_MAX_JSON_DEPTH 8
/* Requests this small run on the polling thread itself (see api_infer.c,
 * job_is_cheap): /sample and GET /interpolate of at most this many images,
 * /encode and /decode bodies of at most this many bytes. */
#define API_INFER_INLINE_IMAGES 4
#define API_INFER_INLINE_BODY (32 * 1024)
/* Admitted inference requests (queued or running) per compute thread. */
#define API_INFER_QUEUE_PER_THREAD 32

/* Starts compute_threads compute threads (0: the number of cores). */
int api_infer_start(const server_options *o, unsigned compute_threads, char *err, size_t errlen);
/* Finishes what was admitted (resuming every suspended connection), then
 * joins the threads; later requests get 503. */
void api_infer_stop(void);

enum MHD_Result api_infer_sample(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_encode(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_decode(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_interpolate_post(http_ctx *ctx, struct MHD_Connection *c,
                                           http_request *req);
enum MHD_Result api_infer_interpolate_get(http_ctx *ctx, struct MHD_Connection *c,
                                          http_request *req);
enum MHD_Result api_infer_readyz(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_metrics(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_openapi(http_ctx *ctx, struct MHD_Connection *c, http_request *req);

#endif
