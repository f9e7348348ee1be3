/* http_request: what a route handler sees — the server's context, the
 * request, and the handler's type.
 *
 *     enum MHD_Result api_thing_get(http_ctx *ctx, struct MHD_Connection *c,
 *                                   http_request *req)
 *     {
 *         // req->params[0] is the route's first "*" segment, req->body the whole body
 *         return http_send_json(c, MHD_HTTP_OK, root);   // exactly one response
 *     }
 *
 * The layers: http_server.c (transport) reads the request and its body, then
 * calls routes.c, which finds the row of the route table and calls its
 * handler (api_*.c) with the http_ctx that server_run built. Everything in
 * http_ctx belongs to server_run, which creates it before the daemon starts
 * and frees it after the daemon has stopped: handlers borrow it. An
 * http_request belongs to the transport: allocated when the headers are in,
 * freed when libmicrohttpd reports the request complete (also when the client
 * went away), after work_free(work).
 *
 * The services are only declared here, so a handler compiles against the
 * services it includes and no others.
 */
#ifndef HTTP_REQUEST_H
#define HTTP_REQUEST_H

#include <stddef.h>

#include <microhttpd.h>

#define HTTP_MAX_PARAMS 4
#define HTTP_PARAM_MAX 256

struct server_options;                     /* server/http_server.h */
struct api_jobs;                           /* server/api_jobs.h */
typedef struct registry registry;          /* server/registry.h */
typedef struct model_cache model_cache;    /* server/model_cache.h */
typedef struct response_cache response_cache; /* server/response_cache.h */
typedef struct compute_pool compute_pool;  /* server/compute_pool.h */
typedef struct data_cache data_cache;      /* server/data_cache.h */

typedef struct {
    const struct server_options *opts;
    registry *reg;             /* borrowed by handlers */
    struct api_jobs *jobs;     /* borrowed by handlers: the training jobs (api_jobs.h) */
    model_cache *cache;        /* borrowed by handlers */
    response_cache *responses; /* borrowed by handlers; NULL when --response-cache-mb 0 */
    compute_pool *compute;     /* borrowed: the threads that run model math (api_infer.c) */
    compute_pool *uploads;     /* borrowed: the thread that checks and stores uploads (api_models.c) */
    compute_pool *registry_io; /* borrowed: threads that wait for the registry's database:
                                * downloads' pieces and registry writes (api_models.c) */
    data_cache *data;          /* borrowed: data sets GET /interpolate reads images from */
    struct http_budget *answers; /* borrowed: answers held at once (http_util.h); NULL = none */
} http_ctx;

typedef struct {
    const char *method;   /* MHD's strings, valid for the request */
    const char *path;
    char *body;           /* owned; body_len bytes plus a NUL, NULL when empty */
    size_t body_len;
    size_t body_cap;
    size_t body_seen;     /* bytes received, including those dropped past the cap */
    int too_large;
    int responded;        /* a response was queued before the body was read */
    size_t body_max;      /* this request's body cap: max_body, or max_upload for an upload
                           * route, 0 for a route that takes no body */
    size_t body_reserved; /* bytes of the server's body budget this request holds */
    int body_declared;    /* body_reserved is its Content-Length (+1), reserved up front */
    int n_params;         /* "*" segments of the matched route, in order */
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
    /* A handler that suspends the connection keeps its state in work;
     * work_free(work) runs when the request ends. */
    void *work;
    void (*work_free)(void *work);
    const char *route;    /* the matched route's pattern, for metrics; NULL when none */
    double started;       /* CLOCK_MONOTONIC seconds when the headers were in */
    size_t query_bytes;   /* > 0: the query was over a bound and emptied (http_server.c) */
    size_t query_params;
    int path_nul;         /* the path held %00: libmicrohttpd's decoded path ends there */
} http_request;

/* A handler queues exactly one response (or returns MHD_NO to drop the
 * connection). A handler that suspended the connection is called again
 * after the resume, with req->work still set, and queues the response then. */
typedef enum MHD_Result (*http_handler)(http_ctx *ctx, struct MHD_Connection *c,
                                        http_request *req);

#endif
