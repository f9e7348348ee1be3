/* http_server: the transport of vaed, on libmicrohttpd, and the server's
 * life cycle.
 *
 *     server_options o;
 *     server_options_default(&o);
 *     o.listen = "127.0.0.1:8080"; o.data_dir = "var";
 *     if (server_run(&o, &stop_flag, err, sizeof err)) ...   // returns after stop_flag
 *
 * server_run owns everything a request can reach (http_request.h's http_ctx):
 * it opens DATA_DIR/registry.db, creates the model and response caches, the
 * compute pools, the data-set cache and the training jobs, listens, and
 * frees them all after the daemon has stopped. This file is the transport
 * only: for each request it finds the route (routes.h) when the headers are
 * in, checks the bearer token there (api_auth.h) before a byte of the body is
 * read, reads the body into http_request.body (capped at max_body, or
 * max_upload for an upload route: 413 payload_too_large; a route that takes
 * no body reads none, routes_take_body), and then calls the route's handler
 * with the whole request. Unknown paths answer 404 not_found, a known path
 * with another method 405 method_not_allowed with an Allow header, both
 * before any body is read.
 *
 * Bounds before cost: every body reserves its bytes of one budget shared by
 * all connections (max_bodies_mb; a declared Content-Length reserves it all
 * when the headers are in, else 503 with Retry-After), computed answers
 * waiting for their clients to read them hold bytes of another
 * (max_answers_mb, compute_request.h), an address may hold
 * max_per_ip connections and all together max_connections (past either the
 * connection is closed unanswered, and counted in /metrics). A request's
 * headers must be in within timeout_s, and its body within timeout_s and a
 * second more per min_body_rate_kb KiB of it read (else the connection is
 * closed: a slow body would hold its share of max_bodies_mb as long).
 */
#ifndef HTTP_SERVER_H
#define HTTP_SERVER_H

#include <signal.h>
#include <stddef.h>

#include <microhttpd.h>

#include "server/http_request.h"

typedef enum {
    SERVER_OK = 0,
    SERVER_ERR_ARG,    /* a bad option, e.g. an unparsable listen address */
    SERVER_ERR_IO,     /* data dir or port file */
    SERVER_ERR_DB,     /* the registry did not open */
    SERVER_ERR_NOMEM,
    SERVER_ERR_LISTEN  /* libmicrohttpd did not start (port in use, ...) */
} server_status;

/* The deepest --max-json-depth: cJSON recurses once per level. */
#define SERVER_MAX_JSON_DEPTH 64
/* The most --max-query-kb and --max-query-params allow: a query this big
 * still leaves room in libmicrohttpd's 128 KiB per connection for the
 * headers and the answer (see on_uri in http_server.c). */
#define SERVER_MAX_QUERY ((size_t)16 << 10)
#define SERVER_MAX_QUERY_PARAMS 1000

typedef struct server_options {
    const char *listen;        /* "127.0.0.1:8080"; port 0 = any free port */
    const char *data_dir;      /* registry at DATA_DIR/registry.db unless registry is set */
    const char *registry;      /* a registry file or postgresql:// URL; NULL = DATA_DIR/registry.db */
    int job_lease_s;           /* shared registry: seconds a claimed job is held unrenewed, default 30 */
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
    size_t max_bodies_mb;      /* request bodies held at once, all connections, default 512; 0 = no limit */
    size_t max_answers_mb;     /* computed answers held at once for clients, default 256; 0 = no limit */
    size_t min_body_rate_kb;   /* KiB/s a body must average past its first timeout_s, default 64; 0 = none */
    unsigned max_per_ip;       /* open connections from one address, default 128; 0 = no limit */
    int max_streams;           /* open GET /jobs/ID/events streams, default 32 */
    int stream_max_s;          /* seconds an event stream lasts before the client resumes, default 600 */
    size_t request_mem_mb;     /* most one inference request may allocate, default 1024; 0 = no limit */
    int job_retention_days;    /* finished jobs kept this long, default 30; 0 = for ever */
    int max_queued_jobs;       /* jobs waiting at once, default 100; 0 = no limit */
    const char *mpi_hostfile;  /* jobs of "ranks" > 1 run under mpirun on these hosts; NULL = refused */
    int max_batch;             /* inference requests one engine call may serve, default 32; 1 = none */
    int max_queue_delay_us;    /* wait for a batch to fill, microseconds, default 0 */
    /* Format bounds on untrusted inputs (README "Bounds"); each is at most
     * its compiled-in ceiling, which is also its default. */
    int max_n;                 /* images/latents/labels of a request, default 1024 (API_INFER_MAX_N) */
    int max_steps;             /* /interpolate steps, default 256 (API_INFER_MAX_STEPS) */
    int max_json_depth;        /* nesting of a JSON request body, default 8 */
    size_t max_small_body;     /* bytes of a job spec or alias body, default 64 KiB */
    size_t max_header;         /* an uploaded checkpoint's safetensors header, default 100 MiB */
    size_t max_header_values;  /* JSON values in that header, default 65536 */
    size_t max_query;          /* bytes of a URL's query, default 16 KiB (SERVER_MAX_QUERY) */
    int max_query_params;      /* parameters of a URL's query, default 1000 (SERVER_MAX_QUERY_PARAMS) */
} server_options;

void server_options_default(server_options *o);
/* Serves until *stop becomes non-zero (set from a signal handler), then shuts
 * down cleanly. Returns a server_status; err says why on failure. */
server_status server_run(const server_options *o, volatile sig_atomic_t *stop, char *err,
                         size_t errlen);

#endif
