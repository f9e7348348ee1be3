#include "server/api_infer.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "engine/dataset.h"
#include "engine/image.h"
#include "engine/rng.h"
#include "engine/vae.h"
#include "server/data_sets.h"
#include "server/http_util.h"
#include "server/metrics.h"
#include "server/json_num.h"
#include "server/model_cache.h"
#include "server/npy.h"
#include "server/registry.h"
#include "server/response_cache.h"
#include "server/sha256.h"

#define SAMPLE_DEFAULT_N 16
#define STEPS_DEFAULT 8
#define TEMPERATURE_MAX 10.0
#define NAME_MAX_LEN 64
#define DATA_REF_MAX 64
/* A response-cache key: 64 hex digits, a model name (< 128), a version. */
#define CACHE_KEY_MAX 256
/* More JSON values than a full batch of images could need is refused before
 * cJSON builds a node (64 bytes) for each. */
#define JSON_SLACK_VALUES 4096

/* schema/openapi.yaml, compiled in by the Makefile (scripts/embed-file.sh). */
extern const unsigned char vaed_openapi_yaml[];
extern const size_t vaed_openapi_yaml_len;

/* ---- output formats and content negotiation ----------------------------- */

typedef enum { FMT_PNG = 0, FMT_JSON, FMT_NPY, FMT_COUNT } out_format;
static const char *const fmt_names[FMT_COUNT] = {"png", "json", "npy"};
static const char *const fmt_mimes[FMT_COUNT] = {"image/png", "application/json",
                                                 "application/x-npy"};
#define OFFER_IMAGES ((1u << FMT_PNG) | (1u << FMT_JSON) | (1u << FMT_NPY))
#define OFFER_JSON (1u << FMT_JSON)

/* How well the media range r (type/subtype, no parameters) matches mime:
 * 3 exactly, 2 type/ *, 1 * / *, 0 not at all. */
static int range_specificity(const char *r, size_t rlen, const char *mime)
{
    if (rlen == 3 && !strncmp(r, "*/*", 3))
        return 1;
    const char *slash = strchr(mime, '/');
    size_t tlen = (size_t)(slash - mime);
    if (rlen == tlen + 2 && !strncasecmp(r, mime, tlen) && r[tlen] == '/' && r[tlen + 1] == '*')
        return 2;
    if (rlen == strlen(mime) && !strncasecmp(r, mime, rlen))
        return 3;
    return 0;
}

/* The q of the most specific range of accept that matches mime (0 when none). */
static double accept_q(const char *accept, const char *mime)
{
    double q_best = 0.0;
    int spec_best = 0;
    const char *p = accept;
    while (*p) {
        size_t item_len = strcspn(p, ",");
        const char *item = p;
        p += item_len;
        if (*p == ',')
            p++;
        while (item_len && (*item == ' ' || *item == '\t')) {
            item++;
            item_len--;
        }
        size_t type_len = 0;
        while (type_len < item_len && item[type_len] != ';' && item[type_len] != ' ' &&
               item[type_len] != '\t')
            type_len++;
        int spec = range_specificity(item, type_len, mime);
        if (spec <= spec_best)
            continue;
        double q = 1.0;
        for (size_t i = type_len; i + 2 < item_len; i++) {
            if (item[i] == ';') {
                size_t k = i + 1;
                while (k < item_len && item[k] == ' ')
                    k++;
                if (k + 2 <= item_len && (item[k] == 'q' || item[k] == 'Q') && item[k + 1] == '=') {
                    char num[16];
                    size_t n = 0;
                    for (k += 2; k < item_len && n + 1 < sizeof num && item[k] != ';' &&
                                 item[k] != ' ';
                         k++)
                        num[n++] = item[k];
                    num[n] = '\0';
                    char *end;
                    q = strtod(num, &end);
                    if (end == num || *end || !(q >= 0.0 && q <= 1.0))
                        q = 0.0; /* a q we cannot read is no consent */
                }
            }
        }
        spec_best = spec;
        q_best = q;
    }
    return q_best;
}

/* ?format= wins; else Accept picks among the offered formats (ties go to the
 * first offered, PNG before JSON before NPY); no Accept gives the first. */
static enum MHD_Result negotiate(struct MHD_Connection *c, unsigned offered, out_format *out,
                                 int *failed)
{
    char msg[160];
    const char *format = NULL;
    *failed = 1;
    if (http_query_str(c, "format", 16, &format, msg, sizeof msg))
        return http_send_error(c, HTTP_ERR_BAD_REQUEST, "%s", msg);
    if (format) {
        for (int f = 0; f < FMT_COUNT; f++)
            if ((offered & (1u << f)) && !strcmp(format, fmt_names[f])) {
                *out = (out_format)f;
                *failed = 0;
                return MHD_YES;
            }
        return http_send_error(c, HTTP_ERR_BAD_REQUEST, "parameter 'format' must be %s",
                               offered == OFFER_JSON ? "json" : "png, json or npy");
    }
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    int best = -1;
    double best_q = 0.0;
    for (int f = 0; f < FMT_COUNT; f++) {
        if (!(offered & (1u << f)))
            continue;
        double q = (accept && *accept) ? accept_q(accept, fmt_mimes[f]) : 1.0;
        if (q > best_q) {
            best_q = q;
            best = f;
        }
    }
    if (best < 0) {
        char offered_list[96] = "";
        for (int f = 0; f < FMT_COUNT; f++)
            if (offered & (1u << f)) {
                size_t used = strlen(offered_list);
                snprintf(offered_list + used, sizeof offered_list - used, "%s%s",
                         used ? ", " : "", fmt_mimes[f]);
            }
        return http_send_error(c, HTTP_ERR_NOT_ACCEPTABLE,
                               "the Accept header excludes every format this endpoint offers "
                               "(%s)",
                               offered_list);
    }
    *out = (out_format)best;
    *failed = 0;
    return MHD_YES;
}

/* ---- jobs: one admitted request ----------------------------------------- */

typedef enum { JOB_SAMPLE, JOB_ENCODE, JOB_DECODE, JOB_INTERP_POST, JOB_INTERP_GET } job_kind;

typedef struct infer_job {
    struct infer_job *next;
    job_kind kind;
    http_ctx *ctx;               /* borrowed */
    struct MHD_Connection *c;    /* borrowed; suspended while the job runs */
    const char *body;            /* borrowed from http_request, alive until completion */
    size_t body_len;
    int body_png;                /* /encode: Content-Type image/png */
    char model[NAME_MAX_LEN + 1], version[NAME_MAX_LEN + 1];
    out_format fmt;
    int64_t n;
    uint64_t seed;
    double temperature;
    char from[DATA_REF_MAX + 1], to[DATA_REF_MAX + 1];
    int64_t steps;
    int slerp;
    char if_none_match[512];
    /* GET /interpolate with a response cache: the key its answer is kept
     * under ("" for every other job), whether the polling thread already
     * looked that key up (and missed), and the body just computed (owned
     * reference), shared with the cache once the answer is complete. */
    char cache_key[CACHE_KEY_MAX];
    int cache_checked;
    response_body *fresh;
    /* the answer, built by the compute thread */
    struct MHD_Response *resp;   /* owned until queued */
    unsigned status;
    int submitted;
} infer_job;

static void job_free(void *p)
{
    infer_job *j = p;
    if (!j)
        return;
    if (j->resp)
        MHD_destroy_response(j->resp);
    response_body_release(j->fresh);
    free(j);
}

static infer_job *job_new(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                          job_kind kind)
{
    infer_job *j = calloc(1, sizeof *j); /* owned by req: freed by work_free */
    if (!j)
        return NULL;
    j->kind = kind;
    j->ctx = ctx;
    j->c = c;
    j->body = req->body;
    j->body_len = req->body_len;
    j->temperature = 1.0;
    req->work = j;
    req->work_free = job_free;
    return j;
}

static void job_error(infer_job *j, http_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void job_error(infer_job *j, http_error e, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (j->resp)
        MHD_destroy_response(j->resp);
    j->resp = http_error_response(e, message);
    j->status = http_error_status(e);
}

/* A response sending b's bytes as b's content type. Takes the reference b:
 * the response releases it when MHD destroys it (NULL when out of memory,
 * b released). */
static struct MHD_Response *body_response(response_body *b)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        b->len, (void *)b->bytes, response_body_release_cb, b);
    if (!resp) {
        response_body_release(b);
        return NULL;
    }
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, b->content_type) != MHD_YES) {
        MHD_destroy_response(resp); /* releases b */
        return NULL;
    }
    return resp;
}

/* Takes buf (malloc'd). */
static void job_body(infer_job *j, unsigned status, const char *content_type, void *buf,
                     size_t len)
{
    if (j->resp)
        MHD_destroy_response(j->resp);
    j->status = status;
    if (j->cache_key[0]) {
        /* A body the response cache can share later (run_interpolate_get). */
        response_body_release(j->fresh);
        j->fresh = response_body_new(buf, len, content_type);
        j->resp = j->fresh ? body_response(response_body_ref(j->fresh)) : NULL;
        return;
    }
    j->resp = MHD_create_response_from_buffer_with_free_callback(len, buf, free);
    if (!j->resp) {
        free(buf);
        return;
    }
    if (MHD_add_response_header(j->resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(j->resp);
        j->resp = NULL;
    }
}

static void job_header(infer_job *j, const char *name, const char *value)
{
    if (j->resp && MHD_add_response_header(j->resp, name, value) != MHD_YES) {
        MHD_destroy_response(j->resp);
        j->resp = NULL;
    }
}

static void job_model_headers(infer_job *j, const registry_checkpoint_info *info)
{
    char version[32];
    snprintf(version, sizeof version, "%lld", (long long)info->version);
    job_header(j, "X-Model", info->model);
    job_header(j, "X-Model-Version", version);
}

/* Queues the answer j built on this (polling) thread. */
static enum MHD_Result job_queue_now(infer_job *j)
{
    if (!j->resp)
        return MHD_NO; /* out of memory building it: drop the connection */
    enum MHD_Result ret = MHD_queue_response(j->c, j->status, j->resp);
    MHD_destroy_response(j->resp);
    j->resp = NULL;
    return ret;
}

/* ---- the compute pool --------------------------------------------------- */

static void job_run(infer_job *j);

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    infer_job *head, *tail;      /* borrowed: each job is owned by its request */
    pthread_t *threads;          /* owned */
    unsigned n_threads;
    int running;
    int stopping;
    int in_flight;
    int limit;
    uint64_t rejected;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* Data sets named by GET /interpolate, loaded on first use and kept. */
#define DATA_CACHE_SLOTS 8
static struct {
    pthread_mutex_t lock;
    int used;
    struct {
        char name[32];
        data_sets_split split;
        dataset d;
    } slot[DATA_CACHE_SLOTS];
} data_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *pool_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&pool.lock);
        while (!pool.head && !pool.stopping)
            pthread_cond_wait(&pool.wake, &pool.lock);
        infer_job *j = pool.head;
        if (!j) { /* stopping and drained */
            pthread_mutex_unlock(&pool.lock);
            return NULL;
        }
        pool.head = j->next;
        if (!pool.head)
            pool.tail = NULL;
        pthread_mutex_unlock(&pool.lock);

        job_run(j);

        pthread_mutex_lock(&pool.lock);
        pool.in_flight--;
        pthread_mutex_unlock(&pool.lock);
        /* After this the connection's thread may queue j->resp and free j. */
        MHD_resume_connection(j->c);
    }
}

int api_infer_start(const server_options *o, unsigned compute_threads, char *err, size_t errlen)
{
    (void)o;
    if (!compute_threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        compute_threads = cores > 0 ? (unsigned)cores : 1;
    }
    pthread_mutex_lock(&pool.lock);
    int already = pool.running;
    pthread_mutex_unlock(&pool.lock);
    if (already) {
        snprintf(err, errlen, "the inference pool is already running");
        return -1;
    }
    pool.threads = calloc(compute_threads, sizeof *pool.threads);
    if (!pool.threads) {
        snprintf(err, errlen, "out of memory starting %u compute threads", compute_threads);
        return -1;
    }
    pool.head = pool.tail = NULL;
    pool.stopping = 0;
    pool.in_flight = 0;
    pool.rejected = 0;
    pool.limit = (int)compute_threads * API_INFER_QUEUE_PER_THREAD;
    pool.n_threads = 0;
    for (unsigned i = 0; i < compute_threads; i++) {
        if (pthread_create(&pool.threads[i], NULL, pool_main, NULL)) {
            snprintf(err, errlen, "cannot start compute thread %u", i);
            pool.running = 1;
            api_infer_stop();
            return -1;
        }
        pool.n_threads++;
    }
    pthread_mutex_lock(&pool.lock);
    pool.running = 1;
    pthread_mutex_unlock(&pool.lock);
    return 0;
}

void api_infer_stop(void)
{
    pthread_mutex_lock(&pool.lock);
    if (!pool.running) {
        pthread_mutex_unlock(&pool.lock);
        return;
    }
    pool.stopping = 1;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (unsigned i = 0; i < pool.n_threads; i++)
        pthread_join(pool.threads[i], NULL);
    free(pool.threads);
    pool.threads = NULL;
    pool.n_threads = 0;
    pthread_mutex_lock(&pool.lock);
    pool.running = 0;
    pthread_mutex_unlock(&pool.lock);

    pthread_mutex_lock(&data_cache.lock);
    for (int i = 0; i < data_cache.used; i++)
        dataset_free(&data_cache.slot[i].d);
    data_cache.used = 0;
    pthread_mutex_unlock(&data_cache.lock);
}

/* Work small enough to do on the polling thread: well under a millisecond
 * (one /encode of an image is ~0.1 ms of math and as much JSON). Handing it
 * to a compute thread costs two context switches and a wake-up of the
 * polling thread, about as much as the work itself. Measured with
 * scripts/bench-http.sh on 2 cores: /encode ~7,900 req/s handed over, ~8,100
 * inline (the CPU is the limit either way: ~0.05 ms of JSON, ~0.09 ms of
 * math); /sample?n=16 (0.2 ms decode + 0.45 ms PNG) was faster handed over
 * (~2,600 vs ~1,700 req/s), so only batches of a few images stay here. */
static int job_is_cheap(const infer_job *j)
{
    switch (j->kind) {
    case JOB_SAMPLE:
        return j->n <= API_INFER_INLINE_IMAGES;
    case JOB_ENCODE:
    case JOB_DECODE:
        return j->body_len <= API_INFER_INLINE_BODY;
    case JOB_INTERP_POST:
        return j->body_len <= 2 * API_INFER_INLINE_BODY;
    case JOB_INTERP_GET:
        return j->steps <= API_INFER_INLINE_IMAGES;
    }
    return 0;
}

/* Admits j and suspends its connection, or answers 429 / 503 at once. */
static enum MHD_Result job_submit(infer_job *j)
{
    if (job_is_cheap(j)) {
        job_run(j);
        return job_queue_now(j);
    }
    pthread_mutex_lock(&pool.lock);
    if (!pool.running || pool.stopping) {
        pthread_mutex_unlock(&pool.lock);
        return http_send_error(j->c, HTTP_ERR_UNAVAILABLE, "the server is shutting down");
    }
    if (pool.in_flight >= pool.limit) {
        pool.rejected++;
        int limit = pool.limit;
        pthread_mutex_unlock(&pool.lock);
        char message[160];
        snprintf(message, sizeof message,
                 "%d inference requests are already queued or running; retry shortly", limit);
        struct MHD_Response *resp = http_error_response(HTTP_ERR_TOO_MANY_REQUESTS, message);
        if (!resp)
            return MHD_NO;
        enum MHD_Result ret = MHD_NO;
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1") == MHD_YES)
            ret = MHD_queue_response(j->c, http_error_status(HTTP_ERR_TOO_MANY_REQUESTS), resp);
        MHD_destroy_response(resp);
        return ret;
    }
    pool.in_flight++;
    j->submitted = 1;
    /* Suspended before a compute thread can see j, so the resume always
     * follows the suspend. */
    MHD_suspend_connection(j->c);
    j->next = NULL;
    if (pool.tail)
        pool.tail->next = j;
    else
        pool.head = j;
    pool.tail = j;
    pthread_cond_signal(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    return MHD_YES;
}

/* The handler's second call, after the compute thread resumed the connection. */
static enum MHD_Result job_finish(struct MHD_Connection *c, http_request *req)
{
    infer_job *j = req->work;
    if (!j->resp)
        return MHD_NO; /* out of memory building it: drop the connection */
    enum MHD_Result ret = MHD_queue_response(c, j->status, j->resp);
    MHD_destroy_response(j->resp);
    j->resp = NULL;
    return ret;
}

/* ---- request checks on the polling thread ------------------------------- */

static uint64_t random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
}

/* ?model= and ?version= into j; a response was queued when *failed. */
static enum MHD_Result read_model_params(infer_job *j, int *failed)
{
    char msg[160];
    const char *model = NULL, *version = NULL;
    *failed = 1;
    if (http_query_str(j->c, "model", NAME_MAX_LEN, &model, msg, sizeof msg) ||
        http_query_str(j->c, "version", NAME_MAX_LEN, &version, msg, sizeof msg))
        return http_send_error(j->c, HTTP_ERR_BAD_REQUEST, "%s", msg);
    if (model && !registry_valid_name(model))
        return http_send_error(j->c, HTTP_ERR_BAD_REQUEST,
                               "parameter 'model' is not a valid model name");
    snprintf(j->model, sizeof j->model, "%s", model ? model : "");
    snprintf(j->version, sizeof j->version, "%s", version ? version : "");
    *failed = 0;
    return MHD_YES;
}

/* A decimal number (no spaces, nothing after it) in (lo, hi]. */
static int query_double(struct MHD_Connection *c, const char *name, double lo, double hi,
                        double def, double *out, char *msg, size_t msglen)
{
    const char *value = NULL;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, name, strlen(name), &value,
                                      NULL) != MHD_YES) {
        *out = def;
        return 0;
    }
    char *end = NULL;
    double v = value && *value && (value[0] == '.' || (value[0] >= '0' && value[0] <= '9'))
                   ? strtod(value, &end)
                   : NAN;
    if (!end || *end || !isfinite(v) || v <= lo || v > hi) {
        snprintf(msg, msglen, "parameter '%s' must be a number greater than %g and at most %g",
                 name, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int media_type_is(const char *header, const char *type)
{
    if (!header)
        return 0;
    while (*header == ' ' || *header == '\t')
        header++;
    size_t len = strcspn(header, "; \t");
    return len == strlen(type) && !strncasecmp(header, type, len);
}

/* A body is required: 411 when the request declared no length at all, 400
 * when it is empty, 415 for a Content-Type other than the accepted ones. */
static enum MHD_Result require_body(struct MHD_Connection *c, http_request *req, int png_ok,
                                    int *is_png, int *failed)
{
    *failed = 1;
    *is_png = 0;
    if (!req->body_len) {
        if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
            !MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
            return http_send_error(c, HTTP_ERR_LENGTH_REQUIRED,
                                   "a request body is required: send it with Content-Length or "
                                   "chunked");
        return http_send_error(c, HTTP_ERR_BAD_REQUEST, "the request body is empty");
    }
    const char *ctype =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (media_type_is(ctype, "application/json")) {
        *failed = 0;
        return MHD_YES;
    }
    if (png_ok && media_type_is(ctype, "image/png")) {
        *is_png = 1;
        *failed = 0;
        return MHD_YES;
    }
    return http_send_error(c, HTTP_ERR_UNSUPPORTED_MEDIA, "Content-Type must be %s (got %s)",
                           png_ok ? "application/json or image/png" : "application/json",
                           ctype ? "another type" : "none");
}

/* DATASET:SPLIT:INDEX, e.g. mnist:test:3. */
typedef struct {
    char name[32];
    data_sets_split split;
    int64_t index;
} data_ref;

static int parse_data_ref(const char *s, data_ref *out)
{
    const char *a = strchr(s, ':');
    const char *b = a ? strchr(a + 1, ':') : NULL;
    if (!a || !b || (size_t)(a - s) >= sizeof out->name || a == s)
        return -1;
    memcpy(out->name, s, (size_t)(a - s));
    out->name[a - s] = '\0';
    if (!data_sets_is_builtin(out->name))
        return -1;
    size_t split_len = (size_t)(b - a - 1);
    if (split_len == 4 && !strncmp(a + 1, "test", 4))
        out->split = DATA_SETS_TEST;
    else if (split_len == 5 && !strncmp(a + 1, "train", 5))
        out->split = DATA_SETS_TRAIN;
    else
        return -1;
    return http_parse_i64(b + 1, &out->index);
}

/* ---- GET /interpolate and the response cache ----------------------------- */

/* Same checkpoint and parameters, same bytes: the ETag is a hash of them,
 * and of the model name and version, which the X-Model headers and a JSON
 * body carry (the same checkpoint bytes may be stored under several). The
 * response-cache key (key, CACHE_KEY_MAX bytes) is that hash followed by the
 * name and version. */
static void interp_tags(const infer_job *j, const registry_checkpoint_info *info, char etag[40],
                        char *key)
{
    char text[640], hex[65];
    snprintf(text, sizeof text, "%s|%s|%lld|%s|%s|%lld|%s|%s", info->sha256, info->model,
             (long long)info->version, j->from, j->to, (long long)j->steps,
             j->slerp ? "slerp" : "lerp", fmt_names[j->fmt]);
    sha256_hex((const uint8_t *)text, strlen(text), hex);
    snprintf(etag, 40, "\"%.32s\"", hex);
    snprintf(key, CACHE_KEY_MAX, "%s|%s|%lld", hex, info->model, (long long)info->version);
}

/* A pinned version never changes; "latest" or the default model may, so
 * clients revalidate (cheaply, with the tag) before reusing. */
static const char *interp_cache_control(const infer_job *j)
{
    int pinned = j->model[0] && j->version[0] &&
                 strspn(j->version, "0123456789") == strlen(j->version);
    return pinned ? "public, max-age=31536000, immutable" : "public, no-cache";
}

/* The 200 of GET /interpolate from a kept body (takes the reference b), with
 * the headers a computed answer has, in the same order. */
static void interp_answer_cached(infer_job *j, const registry_checkpoint_info *info,
                                 response_body *b, const char *etag)
{
    if (j->resp)
        MHD_destroy_response(j->resp);
    j->resp = body_response(b);
    j->status = MHD_HTTP_OK;
    job_model_headers(j, info);
    job_header(j, MHD_HTTP_HEADER_ETAG, etag);
    job_header(j, MHD_HTTP_HEADER_CACHE_CONTROL, interp_cache_control(j));
}

/* On the polling thread: when the model's resolution is known without the
 * registry (model_cache_peek_resolved) and the answer is kept, builds it in j
 * and returns 1; else 0, and the job computes it. A conditional request whose
 * tag matches is left to the job, which answers 304. */
static int interp_try_cached(infer_job *j)
{
    http_ctx *ctx = j->ctx;
    registry_checkpoint_info info;
    if (!ctx->responses || !ctx->cache || !ctx->reg ||
        !model_cache_peek_resolved(ctx->cache, ctx->reg, j->model[0] ? j->model : NULL,
                                   j->version[0] ? j->version : NULL, &info))
        return 0;
    char etag[40];
    interp_tags(j, &info, etag, j->cache_key);
    if (j->if_none_match[0] && http_etag_listed(j->if_none_match, etag))
        return 0;
    response_body *b = NULL; /* a reference, handed to the response */
    j->cache_checked = 1;
    if (response_cache_get(ctx->responses, j->cache_key, &b) != RESPONSE_CACHE_OK)
        return 0;
    interp_answer_cached(j, &info, b, etag);
    return 1;
}

/* ---- handlers ------------------------------------------------------------ */

enum MHD_Result api_infer_sample(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    if (req->work)
        return job_finish(c, req);
    infer_job *j = job_new(ctx, c, req, JOB_SAMPLE);
    if (!j)
        return MHD_NO;
    char msg[160];
    int have_seed, failed;
    enum MHD_Result ret = read_model_params(j, &failed);
    if (failed)
        return ret;
    if (http_query_int(c, "n", 1, API_INFER_MAX_N, SAMPLE_DEFAULT_N, &j->n, msg, sizeof msg) ||
        http_query_u64(c, "seed", &have_seed, &j->seed, msg, sizeof msg) ||
        query_double(c, "temperature", 0.0, TEMPERATURE_MAX, 1.0, &j->temperature, msg,
                     sizeof msg))
        return http_send_error(c, HTTP_ERR_BAD_REQUEST, "%s", msg);
    ret = negotiate(c, OFFER_IMAGES, &j->fmt, &failed);
    if (failed)
        return ret;
    if (!have_seed)
        j->seed = random_seed();
    return job_submit(j);
}

enum MHD_Result api_infer_encode(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    if (req->work)
        return job_finish(c, req);
    infer_job *j = job_new(ctx, c, req, JOB_ENCODE);
    if (!j)
        return MHD_NO;
    int failed;
    enum MHD_Result ret = read_model_params(j, &failed);
    if (failed)
        return ret;
    ret = negotiate(c, OFFER_JSON, &j->fmt, &failed);
    if (failed)
        return ret;
    ret = require_body(c, req, 1, &j->body_png, &failed);
    if (failed)
        return ret;
    return job_submit(j);
}

/* A JSON body in, images out: /decode and POST /interpolate start alike. */
static enum MHD_Result json_images_job(http_ctx *ctx, struct MHD_Connection *c,
                                       http_request *req, int kind)
{
    if (req->work)
        return job_finish(c, req);
    infer_job *j = job_new(ctx, c, req, kind);
    if (!j)
        return MHD_NO;
    int failed, is_png;
    enum MHD_Result ret = read_model_params(j, &failed);
    if (failed)
        return ret;
    ret = negotiate(c, OFFER_IMAGES, &j->fmt, &failed);
    if (failed)
        return ret;
    ret = require_body(c, req, 0, &is_png, &failed);
    if (failed)
        return ret;
    return job_submit(j);
}

enum MHD_Result api_infer_decode(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return json_images_job(ctx, c, req, JOB_DECODE);
}

enum MHD_Result api_infer_interpolate_post(http_ctx *ctx, struct MHD_Connection *c,
                                           http_request *req)
{
    return json_images_job(ctx, c, req, JOB_INTERP_POST);
}

enum MHD_Result api_infer_interpolate_get(http_ctx *ctx, struct MHD_Connection *c,
                                          http_request *req)
{
    if (req->work)
        return job_finish(c, req);
    infer_job *j = job_new(ctx, c, req, JOB_INTERP_GET);
    if (!j)
        return MHD_NO;
    char msg[160];
    int failed;
    enum MHD_Result ret = read_model_params(j, &failed);
    if (failed)
        return ret;
    const char *from = NULL, *to = NULL, *mode = NULL;
    if (http_query_str(c, "from", DATA_REF_MAX, &from, msg, sizeof msg) ||
        http_query_str(c, "to", DATA_REF_MAX, &to, msg, sizeof msg) ||
        http_query_str(c, "mode", 16, &mode, msg, sizeof msg) ||
        http_query_int(c, "steps", 2, API_INFER_MAX_STEPS, STEPS_DEFAULT, &j->steps, msg,
                       sizeof msg))
        return http_send_error(c, HTTP_ERR_BAD_REQUEST, "%s", msg);
    data_ref ref;
    if (!from || parse_data_ref(from, &ref))
        return http_send_error(c, HTTP_ERR_BAD_REQUEST,
                               "parameter 'from' must be a data set reference DATASET:SPLIT:INDEX "
                               "such as mnist:test:3 (DATASET mnist or fashion, SPLIT train or "
                               "test)");
    if (!to || parse_data_ref(to, &ref))
        return http_send_error(c, HTTP_ERR_BAD_REQUEST,
                               "parameter 'to' must be a data set reference DATASET:SPLIT:INDEX "
                               "such as mnist:test:7");
    if (mode && strcmp(mode, "lerp") && strcmp(mode, "slerp"))
        return http_send_error(c, HTTP_ERR_BAD_REQUEST, "parameter 'mode' must be lerp or slerp");
    j->slerp = mode && !strcmp(mode, "slerp");
    snprintf(j->from, sizeof j->from, "%s", from);
    snprintf(j->to, sizeof j->to, "%s", to);
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && strlen(inm) < sizeof j->if_none_match)
        snprintf(j->if_none_match, sizeof j->if_none_match, "%s", inm);
    ret = negotiate(c, OFFER_IMAGES, &j->fmt, &failed);
    if (failed)
        return ret;
    /* A kept answer costs a lookup: no trip through the compute pool. */
    if (interp_try_cached(j))
        return job_queue_now(j);
    return job_submit(j);
}

enum MHD_Result api_infer_readyz(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)req;
    if (!ctx->reg || !ctx->cache)
        return http_send_error(c, HTTP_ERR_UNAVAILABLE, "the registry is not open");
    model_handle *h = NULL; /* released below */
    char why[256] = "";
    int rc = model_cache_acquire(ctx->cache, ctx->reg, NULL, NULL, &h, why, sizeof why);
    if (rc != MODEL_CACHE_OK) {
        if (rc == MODEL_CACHE_ERR_NO_MODEL)
            return http_send_error(c, HTTP_ERR_NO_MODEL,
                                   "not ready: no default model resolves (%s)", why);
        return http_send_error(c, HTTP_ERR_UNAVAILABLE,
                               "not ready: the default model does not load (%s)", why);
    }
    cJSON *root = cJSON_CreateObject(); /* owned: handed to http_send_json */
    if (root && (!cJSON_AddStringToObject(root, "status", "ready") ||
                 !cJSON_AddStringToObject(root, "model", h->info.model) ||
                 !cJSON_AddNumberToObject(root, "version", (double)h->info.version))) {
        cJSON_Delete(root);
        root = NULL;
    }
    model_cache_release(ctx->cache, h);
    return http_send_json(c, MHD_HTTP_OK, root);
}

enum MHD_Result api_infer_metrics(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)req;
    metrics_gauges g = {0};
    if (ctx->cache) {
        g.models_loaded = model_cache_count(ctx->cache);
        g.cache_bytes = model_cache_bytes(ctx->cache);
    }
    if (ctx->responses) {
        response_cache_stats s;
        response_cache_get_stats(ctx->responses, &s);
        g.response_cache_hits = s.hits;
        g.response_cache_misses = s.misses;
        g.response_cache_bytes = s.bytes;
    }
    pthread_mutex_lock(&pool.lock);
    g.compute_in_flight = pool.in_flight;
    g.compute_limit = pool.limit;
    g.compute_rejected = pool.rejected;
    pthread_mutex_unlock(&pool.lock);
    char *text = NULL; /* owned: handed to the response */
    size_t len = 0;
    if (metrics_render(&g, &text, &len))
        return http_send_error(c, HTTP_ERR_UNAVAILABLE, "out of memory rendering metrics");
    return http_send_buffer(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                            (uint8_t *)text, len);
}

enum MHD_Result api_infer_openapi(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)ctx;
    (void)req;
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        vaed_openapi_yaml_len, (void *)vaed_openapi_yaml, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/yaml") ==
            MHD_YES &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=300") ==
            MHD_YES)
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- compute-thread helpers ---------------------------------------------- */

static int job_acquire(infer_job *j, model_handle **h)
{
    const char *model = j->model[0] ? j->model : NULL;
    const char *version = j->version[0] ? j->version : NULL;
    char why[256] = "";
    int rc = model_cache_acquire(j->ctx->cache, j->ctx->reg, model, version, h, why, sizeof why);
    switch (rc) {
    case MODEL_CACHE_OK:
        return 0;
    case MODEL_CACHE_ERR_NO_MODEL:
        if (model || version)
            job_error(j, HTTP_ERR_MODEL_NOT_FOUND, "no checkpoint matches model '%s' version '%s'",
                      model ? model : "(default)", version ? version : "latest");
        else if (registry_count_checkpoints(j->ctx->reg) == 0)
            job_error(j, HTTP_ERR_NO_MODEL,
                      "no model is loaded: the registry is empty; train one with `vaed train` or "
                      "register a checkpoint");
        else
            job_error(j, HTTP_ERR_NO_MODEL, "no model is loaded: no default model resolves (%s)",
                      why);
        break;
    case MODEL_CACHE_ERR_LOAD:
        job_error(j, HTTP_ERR_INTERNAL, "the stored checkpoint did not load: %s", why);
        break;
    case MODEL_CACHE_ERR_NOMEM:
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory loading the model");
        break;
    default:
        job_error(j, HTTP_ERR_INTERNAL, "registry error: %s", why);
    }
    return -1;
}

static void describe_shape(char *out, size_t outlen, const vae_config *cfg)
{
    snprintf(out, outlen, "%dx%d with %d channel%s", cfg->width, cfg->height, cfg->channels,
             cfg->channels == 1 ? "" : "s");
}

/* Rejects nesting deeper than API_INFER_MAX_JSON_DEPTH and more than
 * max_values values before cJSON sees the body. */
static int json_prescan(infer_job *j, size_t max_values)
{
    int depth = 0, in_string = 0;
    size_t values = 1;
    for (size_t i = 0; i < j->body_len; i++) {
        char ch = j->body[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = 0;
            continue;
        }
        if (ch == '"') {
            in_string = 1;
        } else if (ch == '[' || ch == '{') {
            if (++depth > API_INFER_MAX_JSON_DEPTH) {
                job_error(j, HTTP_ERR_BAD_REQUEST, "JSON nested deeper than %d levels",
                          API_INFER_MAX_JSON_DEPTH);
                return -1;
            }
            values++;
        } else if (ch == ']' || ch == '}') {
            depth--;
        } else if (ch == ',') {
            values++;
        }
        if (values > max_values) {
            job_error(j, HTTP_ERR_PAYLOAD_TOO_LARGE,
                      "the JSON body holds more than %zu values, more than the largest batch "
                      "needs",
                      max_values);
            return -1;
        }
    }
    return 0;
}

/* The body as a JSON object (caller owns), or NULL with the error set. */
static cJSON *job_parse_json(infer_job *j, size_t max_values)
{
    if (json_prescan(j, max_values))
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(j->body, j->body_len, &end, 0);
    if (!root) {
        size_t at = end && end >= j->body ? (size_t)(end - j->body) : 0;
        job_error(j, HTTP_ERR_BAD_REQUEST, "the request body is not valid JSON (at byte %zu)", at);
        return NULL;
    }
    while (end && end < j->body + j->body_len &&
           (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!end || end != j->body + j->body_len) {
        cJSON_Delete(root);
        job_error(j, HTTP_ERR_BAD_REQUEST, "the request body has bytes after its JSON value");
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        job_error(j, HTTP_ERR_BAD_REQUEST, "the request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A JSON array of exactly want numbers into dst; pixels also in [0, 1]. */
static int read_numbers(infer_job *j, const cJSON *arr, float *dst, int want, int pixels,
                        const char *what, const char *model_size)
{
    if (!cJSON_IsArray(arr)) {
        job_error(j, HTTP_ERR_BAD_REQUEST, "%s must be an array of numbers", what);
        return -1;
    }
    /* Types first (400), then the size (422), then the values (422). */
    int got = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsNumber(v)) {
            job_error(j, HTTP_ERR_BAD_REQUEST, "%s[%d] is not a number", what, got);
            return -1;
        }
        got++;
    }
    if (got != want) {
        job_error(j, HTTP_ERR_UNPROCESSABLE, "%s has %d values, the model takes %d (%s)", what,
                  got, want, model_size);
        return -1;
    }
    int k = 0;
    cJSON_ArrayForEach(v, arr) {
        double d = v->valuedouble;
        if (!isfinite(d) || fabs(d) > FLT_MAX) {
            job_error(j, HTTP_ERR_UNPROCESSABLE, "%s[%d] is not a finite number", what, k);
            return -1;
        }
        if (pixels && !(d >= 0.0 && d <= 1.0)) {
            job_error(j, HTTP_ERR_UNPROCESSABLE, "%s[%d] = %g is outside the pixel range 0..1",
                      what, k, d);
            return -1;
        }
        dst[k++] = (float)d;
    }
    return 0;
}

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe base64, padding optional, an optional "data:...," URL
 * prefix; *out owned by the caller. */
static int b64_decode(const char *s, uint8_t **out, size_t *out_len)
{
    if (!strncmp(s, "data:", 5)) {
        const char *comma = strchr(s, ',');
        if (!comma)
            return -1;
        s = comma + 1;
    }
    size_t len = strlen(s);
    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    uint8_t *buf = malloc(len / 4 * 3 + 3); /* owned: handed to the caller */
    if (!buf)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *out_len = n;
    return 0;
}

/* One PNG into dst (input_dim floats) in the model's channels; its size must
 * be the model's. */
static int read_png(infer_job *j, const vae_config *cfg, const uint8_t *png, size_t len,
                    float *dst, const char *what)
{
    if (cfg->channels != 1 && cfg->channels != 3) {
        job_error(j, HTTP_ERR_UNPROCESSABLE, "this model takes %d channels: PNG input needs 1 or 3",
                  cfg->channels);
        return -1;
    }
    float *pixels = NULL; /* owned: freed below */
    int h = 0, w = 0;
    char why[256] = "";
    int rc = image_decode_png(png, len, cfg->channels, &pixels, &h, &w, why, sizeof why);
    if (rc == VAE_ERR_NOMEM) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory decoding %s", what);
        return -1;
    }
    if (rc != VAE_OK) {
        job_error(j, HTTP_ERR_BAD_REQUEST, "%s is not a readable PNG image: %s", what, why);
        return -1;
    }
    if (h != cfg->height || w != cfg->width) {
        free(pixels);
        job_error(j, HTTP_ERR_UNPROCESSABLE, "%s is %dx%d pixels, the model takes %dx%d", what, w,
                  h, cfg->width, cfg->height);
        return -1;
    }
    memcpy(dst, pixels, (size_t)vae_config_input_dim(cfg) * sizeof *dst);
    free(pixels);
    return 0;
}

static int read_png_base64(infer_job *j, const vae_config *cfg, const cJSON *item, float *dst,
                           const char *what)
{
    if (!cJSON_IsString(item)) {
        job_error(j, HTTP_ERR_BAD_REQUEST, "%s must be a base64 string", what);
        return -1;
    }
    uint8_t *png = NULL; /* owned: freed below */
    size_t len = 0;
    if (b64_decode(item->valuestring, &png, &len)) {
        job_error(j, HTTP_ERR_BAD_REQUEST, "%s is not valid base64", what);
        return -1;
    }
    int rc = read_png(j, cfg, png, len, dst, what);
    free(png);
    return rc;
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

static void put_rows(FILE *f, const float *v, int rows, int cols)
{
    fputc('[', f);
    for (int r = 0; r < rows; r++) {
        fputs(r ? ",[" : "[", f);
        const float *row = v + (size_t)r * (size_t)cols;
        char buf[1024]; /* numbers gathered here, written in pieces */
        size_t used = 0;
        for (int k = 0; k < cols; k++) {
            if (used > sizeof buf - JSON_NUM_FLOAT_MAX - 1) {
                fwrite(buf, 1, used, f);
                used = 0;
            }
            if (k)
                buf[used++] = ',';
            used += json_num_float(buf + used, row[k]);
        }
        fwrite(buf, 1, used, f);
        fputc(']', f);
    }
    fputc(']', f);
}

/* Hands the memstream's text to the job as a JSON 200. */
static void job_json_done(infer_job *j, FILE *f, char **text, size_t *len)
{
    int bad = ferror(f);
    if (fclose(f) || bad || !*text) {
        free(*text);
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory writing the response");
        return;
    }
    job_body(j, MHD_HTTP_OK, "application/json", *text, *len);
}

/* The answer of an endpoint that returns images x (n, D) made from latents z
 * (n, latent): a PNG grid of cols columns, JSON {"model", "version", extra...,
 * "z", "x"}, or an npy array (n, C, H, W) of x. */
static void job_images(infer_job *j, const model_handle *h, const float *x, const float *z, int n,
                       int cols, const char *extra_json)
{
    const vae_config *cfg = &h->model.cfg;
    int D = vae_config_input_dim(cfg);
    if (!all_finite(x, (size_t)n * (size_t)D) ||
        !all_finite(z, (size_t)n * (size_t)cfg->latent)) {
        job_error(j, HTTP_ERR_INTERNAL, "the model produced non-finite values");
        return;
    }
    if (j->fmt == FMT_PNG) {
        uint8_t *png = NULL; /* owned: handed to the response */
        size_t len = 0;
        char why[256] = "";
        int rc = image_encode_grid_png(x, n, cfg->channels, cfg->height, cfg->width, cols, &png,
                                       &len, why, sizeof why);
        if (rc == VAE_ERR_ARG)
            job_error(j, HTTP_ERR_UNPROCESSABLE, "cannot draw these images as PNG: %s (ask for "
                      "format=npy or json)", why);
        else if (rc != VAE_OK)
            job_error(j, HTTP_ERR_INTERNAL, "PNG encoding failed: %s", why);
        else
            job_body(j, MHD_HTTP_OK, "image/png", png, len);
    } else if (j->fmt == FMT_NPY) {
        int shape[4] = {n, cfg->channels, cfg->height, cfg->width};
        uint8_t *npy = NULL; /* owned: handed to the response */
        size_t len = 0;
        if (npy_encode_f32(x, shape, 4, &npy, &len))
            job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory writing the array");
        else
            job_body(j, MHD_HTTP_OK, "application/x-npy", npy, len);
    } else {
        char *text = NULL; /* owned: handed to the response */
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f) {
            job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory writing the response");
            return;
        }
        fprintf(f, "{\"model\":\"%s\",\"version\":%lld,%s\"z\":", h->info.model,
                (long long)h->info.version, extra_json ? extra_json : "");
        put_rows(f, z, n, cfg->latent);
        fputs(",\"x\":", f);
        put_rows(f, x, n, D);
        fputc('}', f);
        job_json_done(j, f, &text, &len);
    }
    job_model_headers(j, &h->info);
}

/* ---- the work ------------------------------------------------------------- */

static void run_sample(infer_job *j)
{
    model_handle *h = NULL; /* released below */
    if (job_acquire(j, &h))
        return;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int n = (int)j->n;
    size_t n_latent = (size_t)n * (size_t)cfg->latent;
    float *z = malloc(n_latent * sizeof *z);                                       /* owned */
    float *x = malloc((size_t)n * (size_t)vae_config_input_dim(cfg) * sizeof *x); /* owned */
    vae_workspace *ws = vae_workspace_new(m, n);                                   /* owned */
    if (!z || !x || !ws) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory for %d samples", n);
        goto end;
    }
    rng_state rng;
    rng_seed(&rng, j->seed);
    rng_normal_fill(&rng, z, n_latent);
    if (j->temperature != 1.0)
        for (size_t i = 0; i < n_latent; i++)
            z[i] *= (float)j->temperature;
    if (vae_decode(m, ws, z, n, x) != VAE_OK) {
        job_error(j, HTTP_ERR_INTERNAL, "decoding failed");
        goto end;
    }
    char extra[96], seed_str[32];
    snprintf(extra, sizeof extra, "\"seed\":%llu,\"temperature\":%.9g,",
             (unsigned long long)j->seed, j->temperature);
    job_images(j, h, x, z, n, 0, extra);
    snprintf(seed_str, sizeof seed_str, "%llu", (unsigned long long)j->seed);
    if (j->status == MHD_HTTP_OK)
        job_header(j, "X-Seed", seed_str);
end:
    vae_workspace_free(ws);
    free(z);
    free(x);
    model_cache_release(j->ctx->cache, h);
}

static size_t max_json_values(const vae_config *cfg)
{
    return (size_t)API_INFER_MAX_N * ((size_t)vae_config_input_dim(cfg) + 2) + JSON_SLACK_VALUES;
}

/* The common /encode body, {"x": [[D pixel values], ...]} and nothing else,
 * read without building a cJSON node per number (which cost more than the
 * encoder itself). Returns 1 with *out (malloc'd, caller frees) and *n when
 * the body is exactly that with every value a JSON number in [0, 1]; 0 for
 * anything else, which then goes through cJSON and gets its precise error. */
static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* A JSON number (RFC 8259 grammar) at p; its end, or NULL. */
static const char *json_number_end(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (p < end && *p == '.') {
        const char *d = ++p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return NULL;
    }
    return p;
}

/* The value of a JSON number token [p, e), known to be well formed. Up to 18
 * significant digits are read exactly into an integer and scaled by an exact
 * power of ten (one rounding), which is as exact as a float32 pixel needs and
 * several times quicker than strtod on 17-digit decimals; a token with an
 * exponent, or whose scale is past 10^22 either way, goes through strtod. */
static double pixel_value(const char *p, const char *e)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *q = p;
    int neg = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    uint64_t m = 0;
    int digits = 0, scale = 0;
    for (; q < e && *q >= '0' && *q <= '9'; q++) {
        if (digits < 18) {
            m = m * 10 + (uint64_t)(*q - '0');
            if (m) digits++;
        } else {
            scale++; /* dropped integer digits */
        }
    }
    if (q < e && *q == '.')
        for (q++; q < e && *q >= '0' && *q <= '9'; q++)
            if (digits < 18) {
                m = m * 10 + (uint64_t)(*q - '0');
                if (m) digits++;
                scale--;
            }
    if (q < e || scale < -22 || scale > 22) { /* an exponent, or far from 0..1 */
        char tok[72];
        size_t n = (size_t)(e - p) < sizeof tok - 1 ? (size_t)(e - p) : sizeof tok - 1;
        memcpy(tok, p, n);
        tok[n] = '\0';
        return strtod(tok, NULL);
    }
    double v = (double)m;
    if (scale < 0)
        v /= pow10[-scale];
    else if (scale > 0)
        v *= pow10[scale];
    return neg ? -v : v;
}

static int fast_pixel_rows(const char *body, size_t len, int D, int max_n, float **out, int *n)
{
    const char *p = body, *end = body + len;
    static const char key[] = "\"x\"";
    *out = NULL;
    *n = 0;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    p = skip_ws(p, end);
    if ((size_t)(end - p) < sizeof key - 1 || memcmp(p, key, sizeof key - 1) != 0)
        return 0;
    p = skip_ws(p + sizeof key - 1, end);
    if (p >= end || *p++ != ':')
        return 0;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '[')
        return 0;
    size_t cap = 0;
    float *x = NULL; /* owned until handed to *out */
    int rows = 0;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p++ != '[' || rows == max_n)
            goto no;
        if ((size_t)(rows + 1) * (size_t)D > cap) {
            size_t ncap = cap ? cap * 2 : (size_t)D;
            float *grown = realloc(x, ncap * sizeof *x);
            if (!grown)
                goto no;
            x = grown;
            cap = ncap;
        }
        float *row = x + (size_t)rows * (size_t)D;
        for (int k = 0; k < D; k++) {
            p = skip_ws(p, end);
            const char *e = json_number_end(p, end);
            if (!e || e - p > 64)
                goto no;
            double v = pixel_value(p, e);
            if (!(v >= 0.0 && v <= 1.0))
                goto no;
            row[k] = (float)v;
            p = skip_ws(e, end);
            if (p >= end || *p++ != (k + 1 < D ? ',' : ']'))
                goto no;
        }
        rows++;
        p = skip_ws(p, end);
        if (p >= end)
            goto no;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != ']')
            goto no;
        break;
    }
    p = skip_ws(p, end);
    if (p >= end || *p++ != '}' || skip_ws(p, end) != end)
        goto no;
    *out = x;
    *n = rows;
    return 1;
no:
    free(x);
    return 0;
}

static void run_encode(infer_job *j)
{
    model_handle *h = NULL; /* released below */
    if (job_acquire(j, &h))
        return;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int D = vae_config_input_dim(cfg);
    char size[64];
    describe_shape(size, sizeof size, cfg);
    cJSON *root = NULL;       /* owned: deleted at end */
    float *x = NULL;          /* owned */
    float *mu = NULL;         /* owned */
    float *logvar = NULL;     /* owned */
    vae_workspace *ws = NULL; /* owned */
    int n = 1;
    if (j->body_png) {
        x = malloc((size_t)D * sizeof *x);
        if (!x) {
            job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory");
            goto end;
        }
        if (read_png(j, cfg, (const uint8_t *)j->body, j->body_len, x, "the image"))
            goto end;
    } else if (fast_pixel_rows(j->body, j->body_len, D, API_INFER_MAX_N, &x, &n)) {
        /* read: go on to encode */
    } else {
        root = job_parse_json(j, max_json_values(cfg));
        if (!root)
            goto end;
        const cJSON *xs = cJSON_GetObjectItemCaseSensitive(root, "x");
        const cJSON *pngs = cJSON_GetObjectItemCaseSensitive(root, "png_base64");
        if (!xs == !pngs) {
            job_error(j, HTTP_ERR_BAD_REQUEST,
                      "the body must hold exactly one of \"x\" (an array of images, each an "
                      "array of %d pixel values) and \"png_base64\" (an array of PNG images)",
                      D);
            goto end;
        }
        const cJSON *list = xs ? xs : pngs;
        const char *key = xs ? "x" : "png_base64";
        if (!cJSON_IsArray(list)) {
            job_error(j, HTTP_ERR_BAD_REQUEST, "\"%s\" must be an array of images", key);
            goto end;
        }
        n = cJSON_GetArraySize(list);
        if (n < 1 || n > API_INFER_MAX_N) {
            job_error(j, HTTP_ERR_UNPROCESSABLE, "\"%s\" must hold 1 to %d images (it holds %d)",
                      key, API_INFER_MAX_N, n);
            goto end;
        }
        x = malloc((size_t)n * (size_t)D * sizeof *x);
        if (!x) {
            job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory for %d images", n);
            goto end;
        }
        int i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, list) {
            char what[48];
            snprintf(what, sizeof what, "%s[%d]", key, i);
            float *dst = x + (size_t)i * (size_t)D;
            if (xs ? read_numbers(j, item, dst, D, 1, what, size)
                   : read_png_base64(j, cfg, item, dst, what))
                goto end;
            i++;
        }
    }
    mu = malloc((size_t)n * (size_t)cfg->latent * sizeof *mu);
    logvar = malloc((size_t)n * (size_t)cfg->latent * sizeof *logvar);
    ws = vae_workspace_new(m, n);
    if (!mu || !logvar || !ws) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory for %d images", n);
        goto end;
    }
    if (vae_encode(m, ws, x, n, mu, logvar) != VAE_OK) {
        job_error(j, HTTP_ERR_INTERNAL, "encoding failed");
        goto end;
    }
    size_t n_latent = (size_t)n * (size_t)cfg->latent;
    if (!all_finite(mu, n_latent) || !all_finite(logvar, n_latent)) {
        job_error(j, HTTP_ERR_INTERNAL, "the model produced non-finite values");
        goto end;
    }
    char *text = NULL; /* owned: handed to the response */
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory writing the response");
        goto end;
    }
    fprintf(f, "{\"model\":\"%s\",\"version\":%lld,\"mu\":", h->info.model,
            (long long)h->info.version);
    put_rows(f, mu, n, cfg->latent);
    fputs(",\"logvar\":", f);
    put_rows(f, logvar, n, cfg->latent);
    fputc('}', f);
    job_json_done(j, f, &text, &len);
    job_model_headers(j, &h->info);
end:
    cJSON_Delete(root);
    vae_workspace_free(ws);
    free(x);
    free(mu);
    free(logvar);
    model_cache_release(j->ctx->cache, h);
}

static void run_decode(infer_job *j)
{
    model_handle *h = NULL; /* released below */
    if (job_acquire(j, &h))
        return;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int L = cfg->latent;
    cJSON *root = NULL;       /* owned: deleted at end */
    float *z = NULL;          /* owned */
    float *x = NULL;          /* owned */
    vae_workspace *ws = NULL; /* owned */
    root = job_parse_json(j, (size_t)API_INFER_MAX_N * ((size_t)L + 2) + JSON_SLACK_VALUES);
    if (!root)
        goto end;
    const cJSON *zs = cJSON_GetObjectItemCaseSensitive(root, "z");
    if (!cJSON_IsArray(zs)) {
        job_error(j, HTTP_ERR_BAD_REQUEST,
                  "the body must hold \"z\": an array of latents, each an array of %d numbers", L);
        goto end;
    }
    int n = cJSON_GetArraySize(zs);
    if (n < 1 || n > API_INFER_MAX_N) {
        job_error(j, HTTP_ERR_UNPROCESSABLE, "\"z\" must hold 1 to %d latents (it holds %d)",
                  API_INFER_MAX_N, n);
        goto end;
    }
    z = malloc((size_t)n * (size_t)L * sizeof *z);
    x = malloc((size_t)n * (size_t)vae_config_input_dim(cfg) * sizeof *x);
    ws = vae_workspace_new(m, n);
    if (!z || !x || !ws) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory for %d latents", n);
        goto end;
    }
    char latent_size[32];
    snprintf(latent_size, sizeof latent_size, "latent size %d", L);
    int i = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, zs) {
        char what[32];
        snprintf(what, sizeof what, "z[%d]", i);
        if (read_numbers(j, row, z + (size_t)i * (size_t)L, L, 0, what, latent_size))
            goto end;
        i++;
    }
    if (vae_decode(m, ws, z, n, x) != VAE_OK) {
        job_error(j, HTTP_ERR_INTERNAL, "decoding failed");
        goto end;
    }
    job_images(j, h, x, z, n, 0, NULL);
end:
    cJSON_Delete(root);
    vae_workspace_free(ws);
    free(z);
    free(x);
    model_cache_release(j->ctx->cache, h);
}

/* z (steps, L): the line from a to b, both ends included exactly. slerp walks
 * the great circle between the directions (the norm interpolated linearly is
 * not what it does: it is the usual sin-weighted form), falling back to lerp
 * when a and b are (anti)parallel or one is zero. */
static void walk_latent(const float *a, const float *b, int L, int steps, int slerp, float *z)
{
    double na = 0, nb = 0, dot = 0;
    for (int k = 0; k < L; k++) {
        na += (double)a[k] * a[k];
        nb += (double)b[k] * b[k];
        dot += (double)a[k] * b[k];
    }
    double omega = 0, so = 0;
    if (slerp && na > 0 && nb > 0) {
        double cosw = dot / sqrt(na * nb);
        if (cosw > 1)
            cosw = 1;
        if (cosw < -1)
            cosw = -1;
        omega = acos(cosw);
        so = sin(omega);
    }
    int use_slerp = slerp && so > 1e-6;
    for (int s = 0; s < steps; s++) {
        double t = (double)s / (double)(steps - 1);
        double wa, wb;
        if (use_slerp) {
            wa = sin((1.0 - t) * omega) / so;
            wb = sin(t * omega) / so;
        } else {
            wa = 1.0 - t;
            wb = t;
        }
        for (int k = 0; k < L; k++)
            z[(size_t)s * (size_t)L + (size_t)k] = (float)(wa * a[k] + wb * b[k]);
        /* The ends are the given latents, bit for bit. */
        if (s == 0)
            memcpy(z, a, (size_t)L * sizeof *z);
        if (s == steps - 1)
            memcpy(z + (size_t)s * (size_t)L, b, (size_t)L * sizeof *z);
    }
}

/* One end of a POST /interpolate into its latent mu (L floats). */
static int read_end(infer_job *j, const vae_model *m, vae_workspace *ws, const cJSON *in,
                    const char *what, float *x_scratch, float *latent)
{
    const vae_config *cfg = &m->cfg;
    char name[48], size[64];
    describe_shape(size, sizeof size, cfg);
    if (!cJSON_IsObject(in)) {
        job_error(j, HTTP_ERR_BAD_REQUEST,
                  "\"%s\" must be an object holding one of \"x\", \"png_base64\" or \"z\"", what);
        return -1;
    }
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(in, "x");
    const cJSON *png = cJSON_GetObjectItemCaseSensitive(in, "png_base64");
    const cJSON *z = cJSON_GetObjectItemCaseSensitive(in, "z");
    if ((x != NULL) + (png != NULL) + (z != NULL) != 1) {
        job_error(j, HTTP_ERR_BAD_REQUEST,
                  "\"%s\" must hold exactly one of \"x\", \"png_base64\" or \"z\"", what);
        return -1;
    }
    if (z) {
        char latent_size[32];
        snprintf(latent_size, sizeof latent_size, "latent size %d", cfg->latent);
        snprintf(name, sizeof name, "%s.z", what);
        return read_numbers(j, z, latent, cfg->latent, 0, name, latent_size);
    }
    if (x) {
        snprintf(name, sizeof name, "%s.x", what);
        if (read_numbers(j, x, x_scratch, vae_config_input_dim(cfg), 1, name, size))
            return -1;
    } else {
        snprintf(name, sizeof name, "%s.png_base64", what);
        if (read_png_base64(j, cfg, png, x_scratch, name))
            return -1;
    }
    float logvar[1024];
    float *lv = cfg->latent <= 1024 ? logvar : malloc((size_t)cfg->latent * sizeof *lv);
    if (!lv) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory");
        return -1;
    }
    int rc = vae_encode(m, ws, x_scratch, 1, latent, lv);
    if (lv != logvar)
        free(lv);
    if (rc != VAE_OK) {
        job_error(j, HTTP_ERR_INTERNAL, "encoding failed");
        return -1;
    }
    return 0;
}

/* Decodes the walk from a to b and answers with it. */
static void interpolate_answer(infer_job *j, const model_handle *h, vae_workspace *ws,
                               const float *a, const float *b)
{
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int steps = (int)j->steps;
    float *z = malloc((size_t)steps * (size_t)cfg->latent * sizeof *z);                /* owned */
    float *x = malloc((size_t)steps * (size_t)vae_config_input_dim(cfg) * sizeof *x); /* owned */
    if (!z || !x) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory for %d steps", steps);
        goto end;
    }
    walk_latent(a, b, cfg->latent, steps, j->slerp, z);
    if (vae_decode(m, ws, z, steps, x) != VAE_OK) {
        job_error(j, HTTP_ERR_INTERNAL, "decoding failed");
        goto end;
    }
    char extra[64];
    snprintf(extra, sizeof extra, "\"mode\":\"%s\",\"steps\":%d,", j->slerp ? "slerp" : "lerp",
             steps);
    job_images(j, h, x, z, steps, steps, extra);
end:
    free(z);
    free(x);
}

static void run_interpolate_post(infer_job *j)
{
    model_handle *h = NULL; /* released below */
    if (job_acquire(j, &h))
        return;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int L = cfg->latent;
    cJSON *root = NULL;       /* owned: deleted at end */
    float *x = NULL;          /* owned: one image of scratch */
    float *ends = NULL;       /* owned: a then b, L each */
    vae_workspace *ws = NULL; /* owned */
    root = job_parse_json(j, 2 * ((size_t)vae_config_input_dim(cfg) + 2) + JSON_SLACK_VALUES);
    if (!root)
        goto end;
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(root, "mode");
    j->steps = STEPS_DEFAULT;
    if (steps) {
        double s = steps->valuedouble;
        if (!cJSON_IsNumber(steps) || s != floor(s)) {
            job_error(j, HTTP_ERR_BAD_REQUEST, "\"steps\" must be an integer");
            goto end;
        }
        if (!(s >= 2 && s <= API_INFER_MAX_STEPS)) {
            job_error(j, HTTP_ERR_UNPROCESSABLE, "\"steps\" must be from 2 to %d",
                      API_INFER_MAX_STEPS);
            goto end;
        }
        j->steps = (int64_t)s;
    }
    j->slerp = 0;
    if (mode) {
        if (!cJSON_IsString(mode) ||
            (strcmp(mode->valuestring, "lerp") && strcmp(mode->valuestring, "slerp"))) {
            job_error(j, HTTP_ERR_BAD_REQUEST, "\"mode\" must be \"lerp\" or \"slerp\"");
            goto end;
        }
        j->slerp = !strcmp(mode->valuestring, "slerp");
    }
    x = malloc((size_t)vae_config_input_dim(cfg) * sizeof *x);
    ends = malloc(2 * (size_t)L * sizeof *ends);
    ws = vae_workspace_new(m, (int)j->steps);
    if (!x || !ends || !ws) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory");
        goto end;
    }
    if (read_end(j, m, ws, cJSON_GetObjectItemCaseSensitive(root, "from"), "from", x, ends) ||
        read_end(j, m, ws, cJSON_GetObjectItemCaseSensitive(root, "to"), "to", x, ends + L))
        goto end;
    interpolate_answer(j, h, ws, ends, ends + L);
end:
    cJSON_Delete(root);
    vae_workspace_free(ws);
    free(x);
    free(ends);
    model_cache_release(j->ctx->cache, h);
}

/* Copies image ref of its data set into dst, loading the split once. */
static int data_image(infer_job *j, const char *ref_text, const vae_config *cfg, float *dst)
{
    data_ref ref;
    if (parse_data_ref(ref_text, &ref)) { /* checked on the polling thread already */
        job_error(j, HTTP_ERR_BAD_REQUEST, "bad data set reference %s", ref_text);
        return -1;
    }
    const char *split = ref.split == DATA_SETS_TEST ? "test" : "train";
    pthread_mutex_lock(&data_cache.lock);
    int s;
    for (s = 0; s < data_cache.used; s++)
        if (!strcmp(data_cache.slot[s].name, ref.name) && data_cache.slot[s].split == ref.split)
            break;
    if (s == data_cache.used) {
        if (s == DATA_CACHE_SLOTS) {
            pthread_mutex_unlock(&data_cache.lock);
            job_error(j, HTTP_ERR_UNAVAILABLE, "too many data sets in use");
            return -1;
        }
        char why[512] = "";
        if (data_sets_load(data_sets_root(), ref.name, ref.split, &data_cache.slot[s].d, why,
                           sizeof why)) {
            pthread_mutex_unlock(&data_cache.lock);
            job_error(j, HTTP_ERR_NOT_FOUND, "data set %s (%s split) is not available: %s",
                      ref.name, split, why);
            return -1;
        }
        snprintf(data_cache.slot[s].name, sizeof data_cache.slot[s].name, "%s", ref.name);
        data_cache.slot[s].split = ref.split;
        data_cache.used++;
    }
    const dataset *d = &data_cache.slot[s].d;
    int rc = 0;
    if (ref.index >= d->n) {
        job_error(j, HTTP_ERR_NOT_FOUND, "%s: the %s split of %s has %d images (0 to %d)",
                  ref_text, split, ref.name, d->n, d->n - 1);
        rc = -1;
    } else if (d->channels != cfg->channels || d->height != cfg->height ||
               d->width != cfg->width) {
        job_error(j, HTTP_ERR_UNPROCESSABLE,
                  "%s: %s images are %dx%d with %d channel(s), the model takes %dx%d with %d",
                  ref_text, ref.name, d->width, d->height, d->channels, cfg->width, cfg->height,
                  cfg->channels);
        rc = -1;
    } else {
        memcpy(dst, d->x + (size_t)ref.index * (size_t)dataset_dim(d),
               (size_t)dataset_dim(d) * sizeof *dst);
    }
    pthread_mutex_unlock(&data_cache.lock);
    return rc;
}

static void run_interpolate_get(infer_job *j)
{
    model_handle *h = NULL; /* released below */
    if (job_acquire(j, &h))
        return;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int D = vae_config_input_dim(cfg), L = cfg->latent;
    float *x = NULL;          /* owned: the two end images */
    float *ends = NULL;       /* owned: their mu, then logvar scratch */
    vae_workspace *ws = NULL; /* owned */

    char etag[40], key[CACHE_KEY_MAX];
    interp_tags(j, &h->info, etag, key);
    const char *cache_control = interp_cache_control(j);
    /* The polling thread looked this very key up and missed: one lookup, one
     * hit or miss counted, per request. */
    int checked = j->cache_checked && !strcmp(key, j->cache_key);
    if (j->ctx->responses)
        snprintf(j->cache_key, sizeof j->cache_key, "%s", key);

    if (j->if_none_match[0] && http_etag_listed(j->if_none_match, etag)) {
        if (j->resp)
            MHD_destroy_response(j->resp);
        j->resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        j->status = MHD_HTTP_NOT_MODIFIED;
        job_header(j, MHD_HTTP_HEADER_ETAG, etag);
        job_header(j, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
        goto end;
    }
    if (j->ctx->responses && !checked) {
        response_body *b = NULL; /* a reference, handed to the response */
        if (response_cache_get(j->ctx->responses, j->cache_key, &b) == RESPONSE_CACHE_OK) {
            interp_answer_cached(j, &h->info, b, etag);
            goto end;
        }
    }
    x = malloc(2 * (size_t)D * sizeof *x);
    ends = malloc(4 * (size_t)L * sizeof *ends);
    ws = vae_workspace_new(m, j->steps > 2 ? (int)j->steps : 2);
    if (!x || !ends || !ws) {
        job_error(j, HTTP_ERR_UNAVAILABLE, "out of memory");
        goto end;
    }
    if (data_image(j, j->from, cfg, x) || data_image(j, j->to, cfg, x + D))
        goto end;
    /* Both ends in one batch: mu (2, L) into ends, logvar after it. */
    if (vae_encode(m, ws, x, 2, ends, ends + 2 * L) != VAE_OK) {
        job_error(j, HTTP_ERR_INTERNAL, "encoding failed");
        goto end;
    }
    interpolate_answer(j, h, ws, ends, ends + L);
    if (j->status == MHD_HTTP_OK) {
        job_header(j, MHD_HTTP_HEADER_ETAG, etag);
        job_header(j, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
    }
    /* Only a whole 200 is kept; a body over the cache's size limit (or no
     * memory for the entry) is simply not kept. */
    if (j->ctx->responses && j->status == MHD_HTTP_OK && j->resp && j->fresh)
        (void)response_cache_put(j->ctx->responses, j->cache_key, j->fresh);
end:
    vae_workspace_free(ws);
    free(x);
    free(ends);
    model_cache_release(j->ctx->cache, h);
}

static void job_run(infer_job *j)
{
    switch (j->kind) {
    case JOB_SAMPLE:
        run_sample(j);
        break;
    case JOB_ENCODE:
        run_encode(j);
        break;
    case JOB_DECODE:
        run_decode(j);
        break;
    case JOB_INTERP_POST:
        run_interpolate_post(j);
        break;
    case JOB_INTERP_GET:
        run_interpolate_get(j);
        break;
    }
    if (!j->resp && !j->status)
        job_error(j, HTTP_ERR_INTERNAL, "no response was built");
}
