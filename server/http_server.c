#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "../engine/image.h"
#include "../engine/rng.h"
#include "../engine/vae.h"
#include "http_util.h"

#ifndef VAED_VERSION
#define VAED_VERSION "0.0.0"
#endif

#define SAMPLE_MAX_N 256
#define SAMPLE_DEFAULT_N 16

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
    o->token = NULL;
    o->max_upload = (size_t)256 << 20;
    o->workers = 1;
    o->job_mem_mb = 4096;
}

/* ---- handlers ---------------------------------------------------------- */

static enum MHD_Result handle_healthz(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)ctx;
    (void)req;
    cJSON *root = cJSON_CreateObject(); /* owned: handed to http_send_json */
    if (root && (!cJSON_AddStringToObject(root, "status", "ok") ||
                 !cJSON_AddStringToObject(root, "version", VAED_VERSION))) {
        cJSON_Delete(root);
        root = NULL;
    }
    return http_send_json(c, MHD_HTTP_OK, root);
}

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* Sends the error for a failed model_cache_acquire. named: the request chose
 * a model or version, so "nothing matches" is that name's 404, not the empty
 * registry's 503. */
static enum MHD_Result send_acquire_error(http_ctx *ctx, struct MHD_Connection *c, int rc,
                                          int named, const char *model, const char *version,
                                          const char *why)
{
    switch (rc) {
    case MODEL_CACHE_ERR_NO_MODEL:
        if (named)
            return http_send_error(c, HTTP_ERR_MODEL_NOT_FOUND,
                                   "no checkpoint matches model '%s' version '%s'",
                                   model ? model : "(default)", version ? version : "latest");
        if (registry_count_checkpoints(ctx->reg) == 0)
            return http_send_error(c, HTTP_ERR_NO_MODEL,
                                   "no model is loaded: the registry is empty; train one with "
                                   "`vaed train` or register a checkpoint");
        return http_send_error(c, HTTP_ERR_NO_MODEL,
                               "no model is loaded: no default model resolves (%s)", why);
    case MODEL_CACHE_ERR_LOAD:
        return http_send_error(c, HTTP_ERR_INTERNAL, "the stored checkpoint did not load: %s",
                               why);
    case MODEL_CACHE_ERR_NOMEM:
        return http_send_error(c, HTTP_ERR_UNAVAILABLE, "out of memory loading the model");
    default:
        return http_send_error(c, HTTP_ERR_INTERNAL, "registry error: %s", why);
    }
}

/* POST /sample?n=N&seed=S[&model=NAME][&version=V]: a PNG grid of n decoded
 * draws z ~ N(0, I). The decoder runs here, in the MHD pool thread that took
 * the request: the pool is sized for it, and a sample of at most 256 small
 * images takes milliseconds. Longer work (training) must not run here. */
static enum MHD_Result handle_sample(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)req;
    char msg[256];
    int64_t n;
    uint64_t seed;
    int have_seed;
    const char *model = NULL, *version = NULL;

    if (http_query_int(c, "n", 1, SAMPLE_MAX_N, SAMPLE_DEFAULT_N, &n, msg, sizeof msg) ||
        http_query_u64(c, "seed", &have_seed, &seed, msg, sizeof msg) ||
        http_query_str(c, "model", 64, &model, msg, sizeof msg) ||
        http_query_str(c, "version", 64, &version, msg, sizeof msg))
        return http_send_error(c, HTTP_ERR_BAD_REQUEST, "%s", msg);
    if (model && !registry_valid_name(model))
        return http_send_error(c, HTTP_ERR_BAD_REQUEST,
                               "parameter 'model' is not a valid model name");
    if (!have_seed)
        seed = random_seed();

    model_handle *h = NULL; /* released before returning */
    char why[256] = "";
    int rc = model_cache_acquire(ctx->cache, ctx->reg, model, version, &h, why, sizeof why);
    if (rc != MODEL_CACHE_OK)
        return send_acquire_error(ctx, c, rc, model || version, model, version, why);

    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    size_t n_latent = (size_t)n * (size_t)cfg->latent;
    size_t n_pixels = (size_t)n * (size_t)vae_config_input_dim(cfg);
    float *z = malloc(n_latent * sizeof *z);  /* owned: freed below */
    float *x = malloc(n_pixels * sizeof *x);  /* owned: freed below */
    vae_workspace *ws = vae_workspace_new(m, (int)n); /* owned: freed below */
    uint8_t *png = NULL;                      /* owned: handed to the response */
    size_t png_len = 0;
    http_error fail = HTTP_ERR_COUNT;
    char fail_msg[256] = "";

    if (!z || !x || !ws) {
        fail = HTTP_ERR_UNAVAILABLE;
        snprintf(fail_msg, sizeof fail_msg, "out of memory for %lld samples", (long long)n);
        goto end;
    }
    rng_state rng;
    rng_seed(&rng, seed);
    rng_normal_fill(&rng, z, n_latent);
    if (vae_decode(m, ws, z, (int)n, x) != VAE_OK) {
        fail = HTTP_ERR_INTERNAL;
        snprintf(fail_msg, sizeof fail_msg, "decoding failed");
        goto end;
    }
    if (image_encode_grid_png(x, (int)n, cfg->channels, cfg->height, cfg->width, 0, &png,
                              &png_len, fail_msg, sizeof fail_msg) != IMAGE_OK) {
        fail = HTTP_ERR_INTERNAL;
        goto end;
    }

end:;
    char model_name[sizeof h->info.model];
    char version_str[32], seed_str[32];
    snprintf(model_name, sizeof model_name, "%s", h->info.model);
    snprintf(version_str, sizeof version_str, "%lld", (long long)h->info.version);
    snprintf(seed_str, sizeof seed_str, "%llu", (unsigned long long)seed);
    vae_workspace_free(ws);
    free(z);
    free(x);
    model_cache_release(ctx->cache, h);
    if (fail != HTTP_ERR_COUNT) {
        free(png);
        return http_send_error(c, fail, "%s", fail_msg);
    }

    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(png_len, png, free);
    if (!resp) {
        free(png);
        return MHD_NO;
    }
    /* The seed and checkpoint let a client reproduce exactly this image. */
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "image/png") == MHD_YES &&
        MHD_add_response_header(resp, "X-Seed", seed_str) == MHD_YES &&
        MHD_add_response_header(resp, "X-Model", model_name) == MHD_YES &&
        MHD_add_response_header(resp, "X-Model-Version", version_str) == MHD_YES)
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- routing ----------------------------------------------------------- */

typedef struct {
    const char *method;
    const char *path; /* "*" as a whole segment matches any one non-empty segment */
    http_handler handler;
} http_route;

static const http_route routes[] = {
    {"GET", "/healthz", handle_healthz},
    {"POST", "/sample", handle_sample},
};

/* Matches path against pattern; on success copies the "*" segments into req. */
static int route_match(const char *pattern, const char *path, http_request *req)
{
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
    int n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        int wildcard = *p == '*' && (p == pattern || p[-1] == '/') && (p[1] == '/' || !p[1]);
        if (wildcard) {
            size_t len = strcspn(s, "/");
            if (len == 0 || len >= HTTP_PARAM_MAX || n >= HTTP_MAX_PARAMS)
                return 0;
            memcpy(params[n], s, len);
            params[n][len] = '\0';
            n++;
            p++;
            s += len;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return 0;
        }
    }
    if (*p || *s)
        return 0;
    req->n_params = n;
    memcpy(req->params, params, sizeof params[0] * (size_t)n);
    return 1;
}

/* HEAD is answered by every GET route; MHD leaves out the body. */
static int method_matches(const char *route_method, const char *method)
{
    return !strcmp(route_method, method) ||
           (!strcmp(route_method, "GET") && !strcmp(method, "HEAD"));
}

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
    char allow[128] = "";
    int known_path = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const http_route *r = &routes[i];
        if (!route_match(r->path, req->path, req))
            continue;
        if (method_matches(r->method, req->method))
            return r->handler(ctx, c, req);
        known_path = 1;
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof allow - used, "%s%s%s", used ? ", " : "", r->method,
                 strcmp(r->method, "GET") ? "" : ", HEAD");
    }
    char shown[128];
    printable(shown, sizeof shown, req->path);
    if (!known_path)
        return http_send_error(c, HTTP_ERR_NOT_FOUND, "no such endpoint: %s", shown);

    char message[512];
    snprintf(message, sizeof message, "%s does not accept %.32s (allowed: %s)", shown,
             req->method, allow);
    struct MHD_Response *resp = http_error_response(HTTP_ERR_METHOD_NOT_ALLOWED, message);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) == MHD_YES)
        ret = MHD_queue_response(c, http_error_status(HTTP_ERR_METHOD_NOT_ALLOWED), resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- request life cycle ------------------------------------------------ */

/* Appends a piece of the body; past max the body is dropped and only counted. */
static int body_append(http_request *req, const char *data, size_t len, size_t max)
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
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < req->body_len + len + 1)
            cap *= 2;
        if (cap > max + 1)
            cap = max + 1;
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

/* MHD calls this first when the headers are in (upload_data_size 0), then
 * once per piece of body, then once more with 0 when the request is
 * complete; only that last call answers, except for a Content-Length over the
 * cap, refused before a byte of it is read. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    http_ctx *ctx = cls;
    http_request *req = *con_cls;
    size_t max = ctx->opts->max_body;

    if (!req) {
        req = calloc(1, sizeof *req); /* owned: freed in on_completed */
        if (!req)
            return MHD_NO;
        req->method = method;
        req->path = url;
        *con_cls = req;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        uint64_t declared;
        if (cl && !http_parse_u64(cl, &declared) && declared > max) {
            req->responded = 1;
            return http_send_error(c, HTTP_ERR_PAYLOAD_TOO_LARGE,
                                   "request body of %llu bytes exceeds the limit of %zu bytes",
                                   (unsigned long long)declared, max);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t len = *upload_data_size;
        *upload_data_size = 0;
        if (req->responded)
            return MHD_YES;
        if (body_append(req, upload_data, len, max))
            return MHD_NO;
        /* A chunked body far past the cap is not worth reading to its end. */
        if (req->too_large && req->body_seen > 2 * max + ((size_t)1 << 20))
            return MHD_NO;
        return MHD_YES;
    }
    if (req->responded)
        return MHD_YES;
    if (req->too_large)
        return http_send_error(c, HTTP_ERR_PAYLOAD_TOO_LARGE,
                               "request body exceeds the limit of %zu bytes", max);
    return dispatch(ctx, c, req);
}

/* Runs for every request that got a state, also when the client went away. */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    http_request *req = *con_cls;
    if (req) {
        free(req->body);
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

/* mkdir -p */
static int make_dirs(const char *path, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, errlen, "data dir path too long");
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) && errno != EEXIST) {
                snprintf(err, errlen, "cannot create %s: %s", buf, strerror(errno));
                return -1;
            }
            *p = saved;
            if (!saved)
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data dir %s is not a directory", path);
        return -1;
    }
    return 0;
}

/* Written to a temporary name then renamed, so a reader sees all or nothing. */
static int write_port_file(const char *path, unsigned port, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        snprintf(err, errlen, "port file path too long");
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        return -1;
    }
    int bad = fprintf(f, "%u\n", port) < 0;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static struct MHD_Daemon *start_daemon(unsigned flags, const server_options *o,
                                       unsigned threads, const struct sockaddr_in *addr,
                                       http_ctx *ctx)
{
    return MHD_start_daemon(
        flags, ntohs(addr->sin_port), NULL, NULL, on_request, ctx,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
        MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_END);
}

int server_run(const server_options *o, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    struct sockaddr_in addr;
    if (parse_listen(o->listen, &addr, err, errlen))
        return SERVER_ERR_ARG;
    if (!o->data_dir || !*o->data_dir) {
        snprintf(err, errlen, "no data dir given");
        return SERVER_ERR_ARG;
    }
    if (o->threads < 0 || o->threads > 1024 || o->max_connections < 1 || o->timeout_s < 0 ||
        o->max_body < 1) {
        snprintf(err, errlen, "bad server options (threads %d, max connections %d, timeout %d)",
                 o->threads, o->max_connections, o->timeout_s);
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
    if (snprintf(db_path, sizeof db_path, "%s/registry.db", o->data_dir) >= (int)sizeof db_path) {
        snprintf(err, errlen, "data dir path too long");
        return SERVER_ERR_ARG;
    }
    if (make_dirs(o->data_dir, err, errlen))
        return SERVER_ERR_IO;

    int status = SERVER_OK;
    registry *reg = NULL;         /* owned: closed at end */
    model_cache *cache = NULL;    /* owned: freed at end */
    struct MHD_Daemon *d = NULL;  /* owned: stopped at end */
    char why[256];

    if (registry_open(db_path, &reg, why, sizeof why)) {
        snprintf(err, errlen, "cannot open registry %s: %s", db_path, why);
        status = SERVER_ERR_DB;
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

    http_ctx ctx = {.opts = o, .reg = reg, .cache = cache};
    d = start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, o,
                     threads, &addr, &ctx);
    if (!d) /* no epoll (not Linux, or a libmicrohttpd built without it) */
        d = start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG, o,
                         threads, &addr, &ctx);
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

    while (!*stop) {
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }

end:
    if (d)
        MHD_stop_daemon(d);
    if (cache)
        model_cache_free(cache);
    if (reg)
        registry_close(reg);
    return status;
}
