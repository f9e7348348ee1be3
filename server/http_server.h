/* http_server: the HTTP face of vaed, on libmicrohttpd.
 *
 *     server_options o;
 *     server_options_default(&o);
 *     o.listen = "127.0.0.1:8080"; o.data_dir = "var";
 *     if (server_run(&o, &stop_flag, err, sizeof err)) ...   // returns after stop_flag
 *
 * server_run opens DATA_DIR/registry.db, creates the model and response
 * caches, listens, and dispatches each request through one route table in
 * http_server.c ({method, path, handler} rows; a "*" path segment matches
 * any one segment and is captured in http_request.params). Unknown paths answer 404
 * not_found, a known path with another method 405 method_not_allowed with an
 * Allow header. Request bodies are read into http_request.body (capped at
 * max_body, 413 payload_too_large) before the handler runs, so a handler sees
 * the whole request at once.
 */
#ifndef HTTP_SERVER_H
#define HTTP_SERVER_H

#include <signal.h>
#include <stddef.h>

#include <microhttpd.h>

#include "server/model_cache.h"
#include "server/registry.h"
#include "server/response_cache.h"

typedef enum {
    SERVER_OK = 0,
    SERVER_ERR_ARG,    /* a bad option, e.g. an unparsable listen address */
    SERVER_ERR_IO,     /* data dir or port file */
    SERVER_ERR_DB,     /* the registry did not open */
    SERVER_ERR_NOMEM,
    SERVER_ERR_LISTEN  /* libmicrohttpd did not start (port in use, ...) */
} server_status;

typedef struct {
    const char *listen;        /* "127.0.0.1:8080"; port 0 = any free port */
    const char *data_dir;      /* registry at DATA_DIR/registry.db */
    const char *port_file;     /* when set, the bound port is written here (atomically) once listening */
    const char *default_model; /* may be NULL */
    int threads;               /* MHD thread pool size; 0 = number of cores */
    int max_connections;       /* default 256 */
    int timeout_s;             /* per-connection idle timeout, default 30 */
    size_t max_body;           /* default 16 MiB */
    size_t model_cache_mb;     /* default 512 */
    size_t response_cache_mb;  /* finished GET /interpolate bodies kept, default 16; 0 = none */
    const char *token;         /* bearer token for mutations; NULL = none configured */
    size_t max_upload;         /* largest checkpoint upload, default 256 MiB */
    int workers;               /* training worker threads, default 1 */
    size_t job_mem_mb;         /* memory estimate limit of one job, default 4096 */
} server_options;

void server_options_default(server_options *o);
/* Serves until *stop becomes non-zero (set from a signal handler), then shuts
 * down cleanly. Returns a server_status; err says why on failure. */
int server_run(const server_options *o, volatile sig_atomic_t *stop, char *err, size_t errlen);

/* The route table, read by a unit test that checks schema/openapi.yaml
 * documents every route: row i's method and path pattern ("*" segments).
 * Returns 0, or -1 when i is past the end. */
size_t http_server_route_count(void);
int http_server_route_at(size_t i, const char **method, const char **path);

/* What a route handler sees. */
#define HTTP_MAX_PARAMS 4
#define HTTP_PARAM_MAX 256

struct api_jobs;

typedef struct {
    const server_options *opts;
    registry *reg;        /* borrowed by handlers */
    struct api_jobs *jobs; /* borrowed by handlers: the training jobs (api_jobs.h) */
    model_cache *cache;   /* borrowed by handlers */
    response_cache *responses; /* borrowed by handlers; NULL when --response-cache-mb 0 */
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
    size_t body_max;      /* this request's body cap: max_body, or max_upload for an upload route */
    int n_params;         /* "*" segments of the matched route, in order */
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
    /* Added with the inference issue. A handler that suspends the connection
     * keeps its state in work; work_free(work) runs when the request ends. */
    void *work;
    void (*work_free)(void *work);
    const char *route;    /* the matched route's pattern, for metrics; NULL when none */
    double started;       /* CLOCK_MONOTONIC seconds when the headers were in */
} http_request;

/* A handler queues exactly one response (or returns MHD_NO to drop the
 * connection). */
typedef enum MHD_Result (*http_handler)(http_ctx *ctx, struct MHD_Connection *c,
                                        http_request *req);

#endif
