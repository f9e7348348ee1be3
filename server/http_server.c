#include "server/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "engine/file_io.h"
#include "engine/safetensors.h"
#include "engine/util.h"
#include "server/api_auth.h"
#include "server/api_infer.h"
#include "server/api_jobs.h"
#include "server/compute_pool.h"
#include "server/data_cache.h"
#include "server/data_sets.h"
#include "server/http_util.h"
#include "server/infer_body.h"
#include "server/metrics.h"
#include "server/model_cache.h"
#include "server/registry.h"
#include "server/response_cache.h"
#include "server/routes.h"

void server_options_default(server_options *o)
{
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:8080";
    o->data_dir = "var";
    o->port_file = NULL;
    o->default_model = NULL;
    o->threads = 0;
    o->max_connections = 256;
    o->timeout_s = 30;
    o->max_body = (size_t)16 << 20;
    o->model_cache_mb = 512;
    o->response_cache_mb = 16;
    o->token = NULL;
    o->max_upload = (size_t)256 << 20;
    o->workers = 1;
    o->job_mem_mb = 4096;
    o->max_bodies_mb = 512;
    o->max_answers_mb = 256;
    o->min_body_rate_kb = 64;
    o->max_per_ip = 128;
    o->max_batch = 32;
    o->max_streams = 32;
    o->stream_max_s = 600;
    o->request_mem_mb = 1024;
    o->job_retention_days = 30;
    o->job_lease_s = 30;
    o->max_queued_jobs = 100;
    o->max_n = API_INFER_MAX_N;
    o->max_steps = API_INFER_MAX_STEPS;
    o->max_json_depth = INFER_BODY_MAX_JSON_DEPTH;
    o->max_small_body = ROUTES_SMALL_BODY_MAX;
    o->max_header = ST_MAX_HEADER;
    o->max_header_values = ST_MAX_HEADER_VALUES;
    o->max_query = SERVER_MAX_QUERY;
    o->max_query_params = SERVER_MAX_QUERY_PARAMS;
}

/* ---- the transport's own state ------------------------------------------ */

/* Open connections of one client address. */
typedef struct {
    uint32_t addr; /* IPv4, network order */
    unsigned count;
} ip_slot;

/* One open connection, from libmicrohttpd's NOTIFY_STARTED to its
 * NOTIFY_CLOSED (its socket_context). */
typedef struct conn_state {
    struct conn_state *prev, *next; /* the transport's list, under ip_mu */
    MHD_socket fd;                  /* valid until NOTIFY_CLOSED, which precedes the close */
    double waiting_since;           /* when it began waiting for a request's headers */
    int in_request;                 /* headers in, request not yet completed */
    double body_since;              /* when its headers came in */
    int body_open;                  /* atomic: 1 while that request's body is read */
    size_t body_seen;               /* atomic: bytes of that body read so far */
    int ended;                      /* shut down for taking too long over its headers */
    int counted;                    /* in its address's ip_slot */
    uint32_t addr;
} conn_state;

/* What the transport keeps beside the context handlers see: the budget of
 * request bodies held in memory, the connections per client address, and
 * every open connection, for the deadline on its headers. */
typedef struct {
    http_ctx ctx;              /* handlers borrow it (dispatch passes &t->ctx) */
    size_t bodies_max;         /* bytes; 0 = no budget */
    size_t bodies_held;        /* atomic: bytes reserved by bodies read or being read */
    http_budget answers;       /* answers held for clients (ctx.answers borrows it) */
    unsigned per_ip_max;       /* 0 = no limit */
    unsigned conns_max;        /* --max-connections */
    unsigned conns_open;       /* atomic: connections libmicrohttpd holds */
    int stopping;              /* atomic: 1 once the daemon stops taking connections */
    char listen_host[64];      /* the host of --listen: a Host a tokenless daemon also serves */
    pthread_mutex_t ip_mu;     /* guards ips and conns */
    conn_state *conns;         /* owned: open connections (freed at NOTIFY_CLOSED) */
    ip_slot *ips;              /* owned: one slot per address with a connection open */
    size_t n_ips, cap_ips;
} http_transport;

/* Reserves n bytes of the body budget: 0, or -1 (nothing reserved) when it
 * would go over. */
static int bodies_reserve(http_transport *t, size_t n)
{
    size_t held = __atomic_add_fetch(&t->bodies_held, n, __ATOMIC_RELAXED);
    if (t->bodies_max && held > t->bodies_max) {
        __atomic_sub_fetch(&t->bodies_held, n, __ATOMIC_RELAXED);
        return -1;
    }
    return 0;
}

static void bodies_release(http_transport *t, size_t n)
{
    if (n)
        __atomic_sub_fetch(&t->bodies_held, n, __ATOMIC_RELAXED);
}

static ip_slot *ip_find_locked(http_transport *t, uint32_t addr)
{
    for (size_t i = 0; i < t->n_ips; i++)
        if (t->ips[i].addr == addr)
            return &t->ips[i];
    return NULL;
}

/* libmicrohttpd asks before it accepts a connection: no to an address that
 * has --max-per-ip open already. The count moves in on_connection, right
 * after, on the same polling thread; the other polling threads may each let
 * one more in meanwhile, so the limit holds to within the thread count. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    http_transport *t = cls;
    if (__atomic_load_n(&t->stopping, __ATOMIC_RELAXED))
        return MHD_NO;
    /* --max-connections is checked here, so that a refusal is counted;
     * libmicrohttpd's own limit, a little above, is the backstop. */
    if (__atomic_load_n(&t->conns_open, __ATOMIC_RELAXED) >= t->conns_max) {
        metrics_count_refusal(METRICS_LIMIT_CONNECTIONS);
        return MHD_NO;
    }
    if (!t->per_ip_max || addr->sa_family != AF_INET || addrlen < sizeof(struct sockaddr_in))
        return MHD_YES;
    uint32_t a = ((const struct sockaddr_in *)addr)->sin_addr.s_addr;
    pthread_mutex_lock(&t->ip_mu);
    const ip_slot *slot = ip_find_locked(t, a);
    int full = slot && slot->count >= t->per_ip_max;
    pthread_mutex_unlock(&t->ip_mu);
    if (full)
        metrics_count_refusal(METRICS_LIMIT_PER_IP);
    return full ? MHD_NO : MHD_YES;
}

/* A connection opened or closed: it joins or leaves the list of open
 * connections, and its address's count moves. *socket_context is its
 * conn_state (NULL when there was no memory for one: then it is neither
 * counted nor given a deadline). */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_transport *t = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        __atomic_add_fetch(&t->conns_open, 1, __ATOMIC_RELAXED);
    else
        __atomic_sub_fetch(&t->conns_open, 1, __ATOMIC_RELAXED);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        conn_state *cs = fd ? calloc(1, sizeof *cs) : NULL; /* owned: freed at NOTIFY_CLOSED */
        if (!cs)
            return;
        cs->fd = fd->connect_fd;
        cs->waiting_since = util_mono_s();
        int v4 = ci && ci->client_addr && ci->client_addr->sa_family == AF_INET;
        cs->addr = v4 ? ((const struct sockaddr_in *)ci->client_addr)->sin_addr.s_addr : 0;
        pthread_mutex_lock(&t->ip_mu);
        cs->next = t->conns;
        if (t->conns)
            t->conns->prev = cs;
        t->conns = cs;
        ip_slot *slot = t->per_ip_max && v4 ? ip_find_locked(t, cs->addr) : NULL;
        if (t->per_ip_max && v4 && !slot && t->n_ips == t->cap_ips) {
            size_t cap = t->cap_ips ? 2 * t->cap_ips : 64;
            ip_slot *grown = realloc(t->ips, cap * sizeof *grown);
            if (grown) {
                t->ips = grown;
                t->cap_ips = cap;
            }
        }
        if (t->per_ip_max && v4 && !slot && t->n_ips < t->cap_ips) {
            slot = &t->ips[t->n_ips++];
            *slot = (ip_slot){cs->addr, 0};
        }
        if (slot) { /* else out of memory: this connection is not counted */
            slot->count++;
            cs->counted = 1;
        }
        *socket_context = cs;
        pthread_mutex_unlock(&t->ip_mu);
        return;
    }
    conn_state *cs = *socket_context;
    if (!cs)
        return;
    pthread_mutex_lock(&t->ip_mu);
    ip_slot *slot = cs->counted ? ip_find_locked(t, cs->addr) : NULL;
    if (slot && --slot->count == 0)
        *slot = t->ips[--t->n_ips];
    if (cs->prev)
        cs->prev->next = cs->next;
    else
        t->conns = cs->next;
    if (cs->next)
        cs->next->prev = cs->prev;
    pthread_mutex_unlock(&t->ip_mu);
    free(cs);
    *socket_context = NULL;
}

/* A request's headers are in (in_request 1), or its answer is done and the
 * connection waits for the next one's (0). */
static conn_state *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void conn_mark(http_transport *t, struct MHD_Connection *c, int in_request)
{
    conn_state *cs = conn_of(c);
    if (!cs)
        return;
    pthread_mutex_lock(&t->ip_mu);
    cs->in_request = in_request;
    if (!in_request)
        cs->waiting_since = util_mono_s();
    cs->body_since = util_mono_s();
    __atomic_store_n(&cs->body_open, in_request, __ATOMIC_RELAXED);
    __atomic_store_n(&cs->body_seen, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&t->ip_mu);
}

/* len more bytes of c's body read, or (done) the body is whole: its clock
 * stops. Atomics, not ip_mu: this runs for every piece of every body. */
static void conn_body(struct MHD_Connection *c, size_t len, int done)
{
    conn_state *cs = conn_of(c);
    if (!cs)
        return;
    __atomic_add_fetch(&cs->body_seen, len, __ATOMIC_RELAXED);
    if (done)
        __atomic_store_n(&cs->body_open, 0, __ATOMIC_RELAXED);
}

/* libmicrohttpd's --timeout is an idle timer: a client that sends a byte of
 * its headers now and then (slowloris) kept its connection for ever, and
 * --max-per-ip connections from each of two addresses locked every other
 * client out. A connection that has waited more than timeout_s for a
 * request's headers is shut down here (from the server's own thread;
 * libmicrohttpd then reads the end and closes it on its polling thread, as
 * if the client had gone). A body sent as slowly held its declared length
 * of --max-bodies-mb as long: 32 clients each sending a byte of a 16 MiB
 * body now and then kept every other body out. A body gets timeout_s, and
 * one second more for each min_rate bytes of it that arrived; past that
 * its connection is shut down the same way (counted: body_rate). */
static void conns_end_slow(http_transport *t, double timeout_s, double min_rate)
{
    double now = util_mono_s();
    pthread_mutex_lock(&t->ip_mu);
    for (conn_state *cs = t->conns; cs; cs = cs->next) {
        int slow_headers = !cs->in_request && now - cs->waiting_since > timeout_s;
        int slow_body = cs->in_request && __atomic_load_n(&cs->body_open, __ATOMIC_RELAXED) &&
                        min_rate > 0 &&
                        now - cs->body_since >
                            timeout_s +
                                (double)__atomic_load_n(&cs->body_seen, __ATOMIC_RELAXED) / min_rate;
        if (cs->ended || !(slow_headers || slow_body))
            continue;
        shutdown(cs->fd, SHUT_RDWR);
        cs->ended = 1;
        if (slow_body)
            metrics_count_refusal(METRICS_LIMIT_BODY_RATE);
    }
    pthread_mutex_unlock(&t->ip_mu);
}

/* ---- routing ----------------------------------------------------------- */

/* A printable, bounded copy of s for messages: request paths arrive
 * percent-decoded and may hold any byte. */
static void printable(char *out, size_t outlen, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < outlen; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') ? s[i] : '?';
    out[i] = '\0';
}

static enum MHD_Result dispatch(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    const routes_entry *r = routes_find(req->method, req->path, req);
    /* A job spec or alias body is JSON that cJSON parses where its handler
     * runs: its nesting is bounded here, once, as the inference bodies'
     * are where they are read (its values are bounded by its size). */
    if (r && r->flags & ROUTES_SMALL_BODY && req->body) {
        char msg[HTTP_MESSAGE_MAX];
        http_error e = infer_body_prescan(req->body, req->body_len, ctx->opts->max_json_depth,
                                          req->body_len + 1, msg, sizeof msg);
        if (e != HTTP_ERR_NONE)
            return http_send_error(c, e, "%s", msg);
    }
    if (r)
        return r->handler(ctx, c, req);
    char allow[ROUTES_ALLOW_MAX], shown[128];
    printable(shown, sizeof shown, req->path);
    if (!routes_allowed(req->path, allow, sizeof allow))
        return http_send_error(c, HTTP_ERR_NOT_FOUND, "no such endpoint: %s", shown);
    return http_send_error_with_header(c, HTTP_ERR_METHOD_NOT_ALLOWED, MHD_HTTP_HEADER_ALLOW, allow,
                                       "%s does not accept %.32s (allowed: %s)", shown,
                                       req->method, allow);
}

/* ---- request life cycle ------------------------------------------------ */

/* Appends a piece of the body; past max the body is dropped and only
 * counted. The buffer never outgrows what the request reserved of the body
 * budget: -1 when out of memory, -2 when the budget has no room left. */
static int body_append(http_transport *t, http_request *req, const char *data, size_t len,
                       size_t max)
{
    req->body_seen += len;
    if (req->too_large || req->body_len + len > max) {
        req->too_large = 1;
        free(req->body);
        req->body = NULL;
        req->body_len = req->body_cap = 0;
        return 0;
    }
    if (req->body_len + len + 1 > req->body_cap) {
        /* A declared length is allocated once, whole, at its first piece
         * (what it reserved; libmicrohttpd delivers no more): no doubling,
         * no copies. A chunked body doubles from 4 KiB. */
        size_t cap = req->body_declared ? req->body_reserved
                     : req->body_cap    ? req->body_cap
                                        : 4096;
        while (cap < req->body_len + len + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
        if (cap > req->body_reserved) {
            if (bodies_reserve(t, cap - req->body_reserved))
                return -2;
            req->body_reserved = cap;
        }
        char *grown = realloc(req->body, cap);
        if (!grown)
            return -1;
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, len);
    req->body_len += len;
    req->body[req->body_len] = '\0';
    return 0;
}

/* What a body over its cap is counted as: a small body's bound
 * (--max-small-body-kb) apart from --max-body-mb's and --max-upload's. */
static metrics_limit body_size_limit(const routes_entry *route)
{
    return route && route->flags & ROUTES_SMALL_BODY ? METRICS_LIMIT_SMALL_BODY
                                                     : METRICS_LIMIT_BODY_SIZE;
}

/* Answers at once, before any of the body is read (MHD then closes the
 * connection rather than read the rest): the request is marked answered. */
static enum MHD_Result answer_early(http_request *req, enum MHD_Result queued)
{
    req->responded = 1;
    return queued;
}

/* The checks of a request whose headers are in, before a byte of its body is
 * read: the route, the token, the body's declared size and its share of the
 * body budget. MHD_YES to read the body, or the answer already queued. */
static enum MHD_Result on_headers(http_transport *t, struct MHD_Connection *c, http_request *req)
{
    const server_options *o = t->ctx.opts;
    char why[HTTP_MESSAGE_MAX];
    /* Framing first: what a check below reads must be what the client
     * meant, one Host and one way to find the body's end. */
    if (http_headers_malformed(c, why, sizeof why))
        return answer_early(req, http_send_error(c, HTTP_ERR_BAD_REQUEST, "%s", why));
    /* Without a token every request could change the registry, so only
     * this machine may send one: a page that rebinds its own name to
     * 127.0.0.1 still sends that name as Host, and a page that posts here
     * from another origin says so in Origin (browsers send it on every
     * request that is not GET or HEAD). */
    if (!o->token) {
        const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
        const char *origin =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN);
        int reads = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
        char shown[64];
        if (host && !http_host_is_local(host, t->listen_host)) {
            printable(shown, sizeof shown, host);
            return answer_early(req, http_send_refusal(
                                         c, METRICS_LIMIT_HOST, HTTP_ERR_FORBIDDEN, NULL,
                                         "Host %s is not this machine: a server without a token "
                                         "answers only to localhost, 127.0.0.1 and its --listen "
                                         "name",
                                         shown));
        }
        if (origin && !reads && !http_origin_is_local(origin, t->listen_host)) {
            printable(shown, sizeof shown, origin);
            return answer_early(req, http_send_refusal(
                                         c, METRICS_LIMIT_ORIGIN, HTTP_ERR_FORBIDDEN, NULL,
                                         "a page from %s may not send %s requests to a server "
                                         "without a token",
                                         shown, req->method));
        }
    }
    const routes_entry *route = routes_find(req->method, req->path, req);
    req->route = route ? route->path : NULL;
    if (!route) /* 404 or 405: nothing of the body is needed */
        return answer_early(req, dispatch(&t->ctx, c, req));
    int takes_body = routes_take_body(route);
    req->body_max = !takes_body                       ? 0
                    : route->flags & ROUTES_UPLOAD     ? o->max_upload
                    : route->flags & ROUTES_SMALL_BODY ? o->max_small_body
                                                       : o->max_body;
    metrics_limit size_limit = body_size_limit(route);
    /* The one access check. */
    if (o->token && routes_need_token(route) &&
        !api_auth_bearer_ok(o->token, MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                                  MHD_HTTP_HEADER_AUTHORIZATION)))
        return answer_early(req, api_auth_send_unauthorized(
                                     c, "this request changes the registry: send "
                                        "Authorization: Bearer TOKEN with the server's token"));
    /* One rule for every route, before any handler reads a parameter: a
     * name given twice is refused, not read as its first value. */
    int repeated = http_query_repeated(c, why, sizeof why);
    if (repeated)
        return answer_early(req, http_send_error(c,
                                                 repeated == -2 ? HTTP_ERR_UNAVAILABLE
                                                                : HTTP_ERR_DUPLICATE_PARAMETER,
                                                 "%s", why));
    size_t max = req->body_max;
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t declared = 0;
    if (cl && http_parse_u64(cl, &declared))
        declared = 0; /* MHD refuses a Content-Length it cannot read itself */
    if (declared > max && !takes_body)
        return answer_early(req, http_send_refusal(c, METRICS_LIMIT_NO_BODY,
                                                   HTTP_ERR_PAYLOAD_TOO_LARGE, NULL,
                                                   "%s %s takes no request body (%llu bytes sent)",
                                                   route->method, route->path,
                                                   (unsigned long long)declared));
    if (declared > max)
        return answer_early(req, http_send_refusal(
                                     c, size_limit, HTTP_ERR_PAYLOAD_TOO_LARGE, NULL,
                                     "request body of %llu bytes exceeds the limit of %zu bytes",
                                     (unsigned long long)declared, max));
    /* A declared body takes its whole share of the budget now, so many
     * clients each sending most of a large body cannot together hold more
     * than --max-bodies-mb. */
    if (declared && bodies_reserve(t, (size_t)declared + 1))
        return answer_early(req, http_send_refusal(
                                     c, METRICS_LIMIT_BODY_BUDGET, HTTP_ERR_UNAVAILABLE, "1",
                                     "the server holds as many request bodies as it may "
                                     "(--max-bodies-mb %zu): retry shortly",
                                     t->bodies_max >> 20));
    req->body_reserved = declared ? (size_t)declared + 1 : 0;
    req->body_declared = declared != 0;
    return MHD_YES;
}

/* MHD hands over the request line before it parses the query, and then
 * parses every parameter into a record of the connection's 128 KiB: with
 * ~2,000 of them the pool is gone and libmicrohttpd 0.9.75 logs its 431 but
 * has no memory left to send it, so the client waits for --timeout. This is
 * the one hook before that: a query over a bound is emptied here (MHD's own
 * buffer, writable; the '?' it found stays, the parameters after it go), and
 * the request is refused with a 414 as soon as its headers are in. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)c;
    const server_options *o = ((http_transport *)cls)->ctx.opts;
    http_request *req = calloc(1, sizeof *req); /* owned: freed in on_completed */
    if (!req || !uri)
        return req; /* NULL: on_request ends the connection */
    char *query = strchr(uri, '?');
    size_t path_len = query ? (size_t)(query - uri) : strlen(uri);
    for (size_t i = 0; i + 2 < path_len; i++)
        req->path_nul |= uri[i] == '%' && uri[i + 1] == '0' && uri[i + 2] == '0';
    if (!query)
        return req;
    size_t bytes = strlen(query + 1), params = bytes ? 1 : 0;
    for (const char *p = query + 1; *p; p++)
        params += *p == '&';
    if (bytes > o->max_query || params > (size_t)o->max_query_params) {
        req->query_bytes = bytes;
        req->query_params = params;
        query[1] = '\0';
    }
    return req;
}

/* MHD calls this first when the headers are in (upload_data_size 0), then
 * once per piece of body, then once more with 0 when the request is
 * complete; only that last call answers, except for what on_headers
 * refuses before a byte of the body is read. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    http_transport *t = cls;
    http_request *req = *con_cls; /* from on_uri, not yet seen here when method is NULL */

    if (!req || !req->method) {
        if (!req) /* on_uri could not allocate it: out of memory */
            return MHD_NO;
        req->method = method;
        req->path = url;
        req->started = util_mono_s();
        *con_cls = req;
        conn_mark(t, c, 1);
        if (req->query_bytes)
            return answer_early(
                req, http_send_refusal(c, METRICS_LIMIT_QUERY, HTTP_ERR_URI_TOO_LONG, NULL,
                                       "the query has %zu bytes and %zu parameters; at most %zu "
                                       "bytes (--max-query-kb) and %d parameters "
                                       "(--max-query-params)",
                                       req->query_bytes, req->query_params,
                                       t->ctx.opts->max_query, t->ctx.opts->max_query_params));
        /* RFC 9112 3.2; and a tokenless daemon's Host check needs one */
        if (version && !strcmp(version, MHD_HTTP_VERSION_1_1) &&
            !MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))
            return answer_early(req, http_send_error(c, HTTP_ERR_BAD_REQUEST,
                                                     "an HTTP/1.1 request needs a Host header"));
        /* "/models/a%00b" would be served as "/models/a" */
        if (req->path_nul)
            return answer_early(req, http_send_error(c, HTTP_ERR_BAD_REQUEST,
                                                     "the path holds %%00 (a NUL byte): no "
                                                     "name or number of this API does"));
        return on_headers(t, c, req);
    }
    size_t max = req->body_max;
    if (*upload_data_size) {
        size_t len = *upload_data_size;
        *upload_data_size = 0;
        conn_body(c, len, 0);
        if (req->responded)
            return MHD_YES;
        int rc = body_append(t, req, upload_data, len, max);
        if (rc == -2) /* a chunked body outgrew the budget: no room to answer it */
            metrics_count_refusal(METRICS_LIMIT_BODY_BUDGET);
        if (rc)
            return MHD_NO;
        /* A chunked body far past the cap is not worth reading to its end. */
        if (req->too_large && req->body_seen > 2 * max + ((size_t)1 << 20))
            return MHD_NO;
        return MHD_YES;
    }
    conn_body(c, 0, 1);
    if (req->responded)
        return MHD_YES;
    if (req->too_large)
        return max ? http_send_refusal(c, body_size_limit(routes_find(req->method, req->path,
                                                                      req)),
                                       HTTP_ERR_PAYLOAD_TOO_LARGE,
                                       NULL, "request body exceeds the limit of %zu bytes", max)
                   : http_send_refusal(c, METRICS_LIMIT_NO_BODY, HTTP_ERR_PAYLOAD_TOO_LARGE,
                                       NULL, "%s %s takes no request body", req->method,
                                       req->path);
    return dispatch(&t->ctx, c, req);
}

/* Runs for every request that got a state, also when the client went away. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_transport *t = cls;
    (void)toe;
    http_request *req = *con_cls;
    conn_mark(t, c, 0);
    if (req && req->method) {
        /* Status 0: the connection closed before any response was queued. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        double elapsed = util_mono_s() - req->started;
        metrics_observe(req->route, req->method, ci ? ci->http_status : 0, elapsed);
        if (req->work_free)
            req->work_free(req->work);
        free(req->body);
        bodies_release(t, req->body_reserved);
        free(req);
        *con_cls = NULL;
    } else if (req) { /* on_uri's, for a request MHD refused itself (414, 431) */
        free(req);
        *con_cls = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t len = strlen(line);
    while (len && line[len - 1] == '\n')
        line[--len] = '\0';
    fprintf(stderr, "vaed: http: %s\n", line);
}

/* ---- start and stop ---------------------------------------------------- */

/* "HOST:PORT" with an IPv4 HOST ("localhost" allowed, empty = all). */
static int parse_listen(const char *listen, struct sockaddr_in *addr, char *err, size_t errlen)
{
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon) {
        snprintf(err, errlen, "listen address '%s' is not HOST:PORT", listen ? listen : "");
        return -1;
    }
    char host[64];
    size_t host_len = (size_t)(colon - listen);
    if (host_len >= sizeof host) {
        snprintf(err, errlen, "listen address '%s': host too long", listen);
        return -1;
    }
    memcpy(host, listen, host_len);
    host[host_len] = '\0';
    int64_t port;
    if (http_parse_i64(colon + 1, &port) || port > 65535) {
        snprintf(err, errlen, "listen address '%s': port must be a number from 0 to 65535",
                 listen);
        return -1;
    }
    addr->sin_port = htons((uint16_t)port);
    if (host_len == 0) {
        addr->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (!strcmp(host, "localhost")) {
        addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &addr->sin_addr) != 1) {
        snprintf(err, errlen, "listen address '%s': '%s' is not an IPv4 address", listen,
                 host);
        return -1;
    }
    return 0;
}

/* Takes DATA_DIR/vaed.lock for the life of the daemon (flock: released when
 * the process ends, however it ends) and writes its PID there: two daemons
 * on one data directory would both claim its queued jobs. The fd, or -1
 * with err naming the other daemon. */
static int lock_data_dir(const char *data_dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/vaed.lock", data_dir) >= (int)sizeof path) {
        snprintf(err, errlen, "data dir path too long");
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int busy = errno == EWOULDBLOCK;
        char pid[32] = "";
        ssize_t n = busy ? pread(fd, pid, sizeof pid - 1, 0) : -1;
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        char who[64] = "another vaed";
        if (pid[0])
            snprintf(who, sizeof who, "another vaed (pid %.16s)", pid);
        if (busy)
            snprintf(err, errlen,
                     "%s is serving %s (it holds %s): two daemons on one data directory would "
                     "run the same jobs; stop it, or give another --data-dir",
                     who, data_dir, path);
        if (!busy)
            snprintf(err, errlen, "%s: cannot lock: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Atomically (file_io_write_atomic), so a test polling for it reads a whole number. */
static int write_port_file(const char *path, unsigned port, char *err, size_t errlen)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%u\n", port);
    return file_io_write_atomic(path, (const uint8_t *)text, (size_t)n, err, errlen) ? -1 : 0;
}

static struct MHD_Daemon *start_daemon(unsigned flags, const server_options *o,
                                       unsigned threads, const struct sockaddr_in *addr,
                                       http_transport *t)
{
    return MHD_start_daemon(
        flags, ntohs(addr->sin_port), on_accept, t, on_request, t,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections + threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, t,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, t,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, t,
        MHD_OPTION_END);
}

server_status server_run(const server_options *o, volatile sig_atomic_t *stop, char *err,
                         size_t errlen)
{
    struct sockaddr_in addr;
    if (parse_listen(o->listen, &addr, err, errlen))
        return SERVER_ERR_ARG;
    /* Mutations are open without a token: only this machine may reach them. */
    if ((ntohl(addr.sin_addr.s_addr) >> 24) != 127 && (!o->token || !*o->token)) {
        snprintf(err, errlen,
                 "refusing to listen on %s without a token: anyone who can reach it could "
                 "upload or delete models; give --token-file FILE (or set VAED_TOKEN), or "
                 "listen on 127.0.0.1",
                 o->listen);
        return SERVER_ERR_ARG;
    }
    if (!o->data_dir || !*o->data_dir) {
        snprintf(err, errlen, "no data dir given");
        return SERVER_ERR_ARG;
    }
    if (o->max_bodies_mb && (o->max_upload > (o->max_bodies_mb << 20) ||
                             o->max_body > (o->max_bodies_mb << 20))) {
        snprintf(err, errlen,
                 "--max-bodies-mb %zu is less than one largest body (--max-body-mb %zu, "
                 "--max-upload %zu): such a request could never be read",
                 o->max_bodies_mb, o->max_body >> 20, o->max_upload >> 20);
        return SERVER_ERR_ARG;
    }
    if (o->threads < 0 || o->threads > 1024 || o->max_connections < 1 || o->timeout_s < 0 ||
        o->max_body < 1 || o->max_streams < 0 || o->stream_max_s < 1) {
        snprintf(err, errlen, "bad server options (threads %d, max connections %d, timeout %d)",
                 o->threads, o->max_connections, o->timeout_s);
        return SERVER_ERR_ARG;
    }
    /* The format bounds: each at most the ceiling the code is built for
     * (arrays of API_INFER_MAX_N labels, engine calls of that many rows). */
    if (o->max_n < 1 || o->max_n > API_INFER_MAX_N || o->max_steps < 2 ||
        o->max_steps > API_INFER_MAX_STEPS || o->max_json_depth < 1 ||
        o->max_json_depth > SERVER_MAX_JSON_DEPTH || o->max_small_body < 1 ||
        o->max_header < 1 || o->max_header_values < 1) {
        snprintf(err, errlen,
                 "bad format bounds (max n %d of 1..%d, max steps %d of 2..%d, JSON depth %d of "
                 "1..%d, small body %zu, header %zu bytes, %zu values: each at least 1)",
                 o->max_n, API_INFER_MAX_N, o->max_steps, API_INFER_MAX_STEPS, o->max_json_depth,
                 SERVER_MAX_JSON_DEPTH, o->max_small_body, o->max_header, o->max_header_values);
        return SERVER_ERR_ARG;
    }
    if (o->max_query < 1 || o->max_query > SERVER_MAX_QUERY || o->max_query_params < 1 ||
        o->max_query_params > SERVER_MAX_QUERY_PARAMS) {
        snprintf(err, errlen, "bad query bounds (%zu bytes of 1..%zu, %d parameters of 1..%d)",
                 o->max_query, SERVER_MAX_QUERY, o->max_query_params, SERVER_MAX_QUERY_PARAMS);
        return SERVER_ERR_ARG;
    }
    unsigned threads = (unsigned)o->threads;
    if (!threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (unsigned)cores : 1;
    }
    if (threads > (unsigned)o->max_connections)
        threads = (unsigned)o->max_connections;

    char db_path[PATH_MAX];
    if (o->registry && *o->registry) {
        if (snprintf(db_path, sizeof db_path, "%s", o->registry) >= (int)sizeof db_path) {
            snprintf(err, errlen, "registry URL too long");
            return SERVER_ERR_ARG;
        }
    } else if (snprintf(db_path, sizeof db_path, "%s/registry.db", o->data_dir) >=
               (int)sizeof db_path) {
        snprintf(err, errlen, "data dir path too long");
        return SERVER_ERR_ARG;
    }
    if (file_io_make_dirs(o->data_dir, err, errlen))
        return SERVER_ERR_IO;
    int lock_fd = lock_data_dir(o->data_dir, err, errlen); /* owned: closed at end */
    if (lock_fd < 0)
        return SERVER_ERR_IO;
    /* No other daemon writes here now: what a crash left half-written goes. */
    int stale = 0;
    char why_stale[256];
    if (file_io_remove_stale_temps(o->data_dir, &stale, why_stale, sizeof why_stale))
        fprintf(stderr, "vaed: %s\n", why_stale);
    if (stale)
        fprintf(stderr, "vaed: removed %d temporary file(s) a crash left in %s\n", stale,
                o->data_dir);

    server_status status = SERVER_OK;
    registry *reg = NULL;             /* owned: closed at end */
    model_cache *cache = NULL;        /* owned: freed at end */
    response_cache *responses = NULL; /* owned: freed at end */
    compute_pool *compute = NULL;     /* owned: stopped and freed at end */
    compute_pool *uploads = NULL;     /* owned: stopped and freed at end */
    compute_pool *registry_io = NULL; /* owned: stopped and freed at end */
    data_cache *data = NULL;          /* owned: freed at end */
    api_jobs *jobs = NULL;            /* owned: freed at end */
    struct MHD_Daemon *d = NULL;      /* owned: stopped at end */
    http_transport transport = {.bodies_max = o->max_bodies_mb << 20,
                                .answers = {.max = o->max_answers_mb << 20},
                                .per_ip_max = o->max_per_ip,
                                .conns_max = (unsigned)o->max_connections}; /* ips owned: freed at end */
    const char *colon = strrchr(o->listen, ':'); /* parse_listen checked it */
    snprintf(transport.listen_host, sizeof transport.listen_host, "%.*s",
             (int)(colon - o->listen), o->listen);
    pthread_mutex_init(&transport.ip_mu, NULL);
    char why[256];

    char shown[256]; /* db_path without a password: what is printed */
    registry_redact_url(db_path, shown, sizeof shown);
    if (registry_open(db_path, &reg, why, sizeof why)) {
        snprintf(err, errlen, "cannot open registry %s: %s", shown, why);
        status = SERVER_ERR_DB;
        goto end;
    }
    if (registry_is_shared(reg)) {
        registry_set_job_lease(reg, o->job_lease_s);
        fprintf(stderr, "vaed: shared registry %s\n", shown);
    }
    if ((int64_t)o->max_upload > registry_max_blob_bytes(reg)) {
        snprintf(err, errlen,
                 "--max-upload %zu MiB is more than the registry can store in one checkpoint "
                 "(%lld bytes, SQLite's length limit)",
                 o->max_upload >> 20, (long long)registry_max_blob_bytes(reg));
        status = SERVER_ERR_ARG;
        goto end;
    }
    if (o->default_model)
        registry_set_default_model(reg, o->default_model);
    cache = model_cache_new(o->model_cache_mb << 20);
    if (!cache) {
        snprintf(err, errlen, "out of memory creating the model cache");
        status = SERVER_ERR_NOMEM;
        goto end;
    }

    if (o->response_cache_mb) {
        responses = response_cache_new(o->response_cache_mb << 20);
        if (!responses) {
            snprintf(err, errlen, "out of memory creating the response cache");
            status = SERVER_ERR_NOMEM;
            goto end;
        }
    }

    /* Training workers (and jobs a crash left running, resumed) start with
     * the registry, before requests can reach them. */
    if ((status = api_jobs_new(o, reg, &jobs, err, errlen)) != SERVER_OK)
        goto end;
    /* Model math runs on its own threads, one per core like the MHD pool
     * (see api_infer.h). Uploads are hashed, checked and committed on a
     * thread of their own, so a 256 MiB checkpoint holds neither a polling
     * thread nor a compute thread; that pool admits as many as there can be
     * connections, so an upload is never refused for being one of many. */
    if (compute_pool_new(threads, (int)threads * COMPUTE_POOL_QUEUE_PER_THREAD,
                         "inference requests", &compute, err, errlen) != COMPUTE_POOL_OK ||
        compute_pool_new(1, o->max_connections, "uploads", &uploads, err,
                         errlen) != COMPUTE_POOL_OK ||
        /* Threads that mostly wait (a download's next piece, an fsync'd
         * write): more than the cores, admitting as many as uploads. */
        compute_pool_new(4, o->max_connections, "registry requests", &registry_io, err,
                         errlen) != COMPUTE_POOL_OK) {
        status = SERVER_ERR_NOMEM;
        goto end;
    }
    if (compute_pool_set_batching(compute, o->max_batch, o->max_queue_delay_us) !=
        COMPUTE_POOL_OK) {
        snprintf(err, errlen, "bad batching options (max batch %d, max queue delay %d us)",
                 o->max_batch, o->max_queue_delay_us);
        status = SERVER_ERR_ARG;
        goto end;
    }
    data = data_cache_new(data_sets_root());
    if (!data) {
        snprintf(err, errlen, "out of memory creating the data-set cache");
        status = SERVER_ERR_NOMEM;
        goto end;
    }
    transport.ctx = (http_ctx){.opts = o, .reg = reg, .jobs = jobs, .cache = cache,
                               .responses = responses, .compute = compute, .uploads = uploads,
                               .registry_io = registry_io, .data = data,
                               .answers = &transport.answers};
    d = start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                         MHD_ALLOW_SUSPEND_RESUME, o,
                     threads, &addr, &transport);
    if (!d) /* no epoll (not Linux, or a libmicrohttpd built without it) */
        d = start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
                             MHD_ALLOW_SUSPEND_RESUME, o,
                         threads, &addr, &transport);
    if (!d) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not available)",
                 o->listen);
        status = SERVER_ERR_LISTEN;
        goto end;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : ntohs(addr.sin_port);
    if (o->port_file && write_port_file(o->port_file, port, err, errlen)) {
        status = SERVER_ERR_IO;
        goto end;
    }
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
    fprintf(stderr, "vaed: listening on http://%s:%u\n", host, port);

    /* Every TRIM_EVERY pauses the allocator hands freed pages back. glibc
     * keeps what each thread's arena once held: under a mixed load the live
     * heap is flat after the first minute (heaptrack: ~6 MB) while the
     * resident size went on climbing for minutes (24 to 30 MB) as each
     * arena reached its own high-water mark. A trim takes a few
     * milliseconds of one arena's lock at a time. */
    enum { TRIM_EVERY = 50 };
    for (unsigned pauses = 1; !*stop; pauses++) {
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
#ifdef __GLIBC__
        if (pauses % TRIM_EVERY == 0)
            malloc_trim(0);
#endif
        if (o->timeout_s && pauses % 10 == 0)
            conns_end_slow(&transport, o->timeout_s, (double)o->min_body_rate_kb * 1024);
    }

end:;
    /* Stop order: no new connections; running jobs checkpointed (within a
     * training step) and event streams ended; then inference. */
    /* Not MHD_quiesce_daemon: in libmicrohttpd 0.9.75 it races an epoll
     * polling thread for the removal of the listen socket from that
     * thread's epoll set, and the loser aborts the process ("Failed to
     * remove listen FD from epoll set"; seen under ASan in CI). Refusing in
     * on_accept closes each new connection as it comes instead. */
    __atomic_store_n(&transport.stopping, 1, __ATOMIC_RELAXED);
    api_jobs_stop(jobs);
    /* Finishes admitted work and resumes its connections: MHD must not stop
     * with a connection suspended. */
    compute_pool_stop(compute);
    compute_pool_stop(uploads);
    compute_pool_stop(registry_io);
    if (d)
        MHD_stop_daemon(d);
    compute_pool_free(compute);
    compute_pool_free(uploads);
    compute_pool_free(registry_io);
    data_cache_free(data);
    api_jobs_free(jobs);
    if (cache)
        model_cache_free(cache);
    response_cache_free(responses); /* bodies of responses still held would live on */
    if (reg)
        registry_close(reg);
    free(transport.ips);
    pthread_mutex_destroy(&transport.ip_mu);
    close(lock_fd); /* the lock goes with it */
    return status;
}
