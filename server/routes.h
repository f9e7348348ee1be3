/* routes: the route table of vaed and how a request finds its row.
 *
 *     http_request req = ...;                            // method and path set
 *     const routes_entry *r = routes_find(req.method, req.path, &req);
 *     if (r) return r->handler(ctx, c, &req);           // req.params: the "*" segments
 *     char allow[ROUTES_ALLOW_MAX];
 *     if (routes_allowed(req.path, allow, sizeof allow)) ... 405 with Allow: allow
 *     else ... 404
 *
 * One row per {method, path pattern, handler, flags}; a "*" path segment
 * matches any one non-empty segment and is captured, in order, in
 * http_request.params. HEAD is answered by every GET row (libmicrohttpd
 * leaves out the body). The table is the only place that names the
 * handlers: the transport (http_server.c) knows rows, not api_* modules, and
 * test_openapi_routes reads the rows through routes_count / routes_at to
 * check that schema/openapi.yaml documents each one.
 */
#ifndef ROUTES_H
#define ROUTES_H

#include <stddef.h>

#include "server/http_request.h"

/* A route that is not GET needs the bearer token (when one is configured)
 * unless it is ROUTES_OPEN: a computation such as /sample changes nothing.
 * ROUTES_UPLOAD: the body may be up to max_upload instead of max_body.
 * ROUTES_NO_BODY: a POST or PUT that takes no body (GET and DELETE never
 * do); a body sent to one is refused before a byte of it is read.
 * ROUTES_SMALL_BODY: a body of a few fields (a job spec, an alias), at most
 * ROUTES_SMALL_BODY_MAX bytes rather than max_body, so parsing it is cheap
 * wherever it happens. */
enum {
    ROUTES_OPEN = 1u << 0,
    ROUTES_UPLOAD = 1u << 1,
    ROUTES_NO_BODY = 1u << 2,
    ROUTES_SMALL_BODY = 1u << 3
};
#define ROUTES_SMALL_BODY_MAX ((size_t)64 << 10)

typedef struct {
    const char *method;
    const char *path;     /* the pattern; outlives the process (metrics labels use it) */
    http_handler handler;
    unsigned flags;       /* ROUTES_* */
} routes_entry;

/* Longest Allow list routes_allowed writes. */
#define ROUTES_ALLOW_MAX 128

/* The row for method and path, with its "*" segments copied into req
 * (n_params, params); NULL when none matches. */
const routes_entry *routes_find(const char *method, const char *path, http_request *req);
/* 1 when some row matches path and writes the methods of all such rows into
 * allow ("GET, HEAD, DELETE"; allow_len > 0, ROUTES_ALLOW_MAX is enough); 0
 * when the path is unknown. */
int routes_allowed(const char *path, char *allow, size_t allow_len);
/* 1 when the route changes the registry and so needs the token (when one is
 * configured): not GET, not ROUTES_OPEN. NULL (no route) needs none. */
int routes_need_token(const routes_entry *r);
/* 1 when the route reads a request body: not GET (nor HEAD), not DELETE,
 * not ROUTES_NO_BODY. NULL (no route) reads none. */
int routes_take_body(const routes_entry *r);

/* Row i's method and path pattern: 0, or -1 when i is past the end. */
size_t routes_count(void);
int routes_at(size_t i, const char **method, const char **path);

#endif
