/* api_infer: the inference endpoints. Each request becomes one
 * infer_request: its handler checks on the polling thread what is cheap to
 * check (query parameters, Accept, Content-Type), then either runs it right
 * there (infer_is_cheap) or admits it into the compute pool; the run_*
 * function of its kind parses the body, runs the model and builds the
 * response in the infer_request, and the handler's second call queues it. */
#include "server/api_infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "engine/dataset.h"
#include "engine/image.h"
#include "engine/latent.h"
#include "engine/rng.h"
#include "engine/vae.h"
#include "server/compute_request.h"
#include "server/data_cache.h"
#include "server/data_sets.h"
#include "server/http_server.h"
#include "server/http_util.h"
#include "server/infer_batch.h"
#include "server/infer_body.h"
#include "server/infer_labels.h"
#include "server/json_num.h"
#include "server/metrics.h"
#include "server/model_cache.h"
#include "server/npy.h"
#include "server/registry.h"
#include "server/response_cache.h"
#include "server/sha256.h"

#define SAMPLE_DEFAULT_N 16
#define STEPS_DEFAULT 8
#define TEMPERATURE_MAX 10.0
#define NAME_MAX_LEN API_INFER_NAME_MAX
#define DATA_REF_MAX 64
/* A response-cache key: 64 hex digits, a model name (< 128), a version. */
#define CACHE_KEY_MAX 256
/* More JSON values than a full batch of images could need is refused before
 * cJSON builds a node (64 bytes) for each. */
#define JSON_SLACK_VALUES 4096

/* ---- one inference request ----------------------------------------------- */

typedef enum {
    INFER_SAMPLE,
    INFER_ENCODE,
    INFER_DECODE,
    INFER_INTERP_POST,
    INFER_INTERP_GET
} infer_kind;

typedef struct {
    compute_request base;        /* first: its task is the pool's view, task.conn the connection */
    infer_kind kind;
    const char *body;            /* borrowed from http_request, alive until completion */
    size_t body_len;
    api_infer_body body_kind;    /* what the Content-Type says the body is (0: none read) */
    char model[NAME_MAX_LEN + 1], version[NAME_MAX_LEN + 1];
    http_format fmt;
    int64_t n;
    uint64_t seed;
    double temperature;
    char from[DATA_REF_MAX + 1], to[DATA_REF_MAX + 1];
    int64_t steps;
    int slerp;
    int64_t scale;               /* ?scale=: each pixel a scale x scale block in a PNG */
    int precision;               /* ?precision=: JSON floats' significant digits (0: shortest) */
    infer_labels labels;         /* ?label= / ?labels= of /sample and /encode */
    /* The checkpoint the request's names resolved to: what X-Model, the JSON
     * "model" and the ETag report (the cached model may have been loaded
     * under another name holding the same bytes). */
    registry_checkpoint_info info;
    model_handle *held;          /* acquired on the polling thread for an inline run, else NULL */
    /* GET /interpolate with a response cache: the key its answer is kept
     * under ("" for every other request; its body is then built shared,
     * base.shared, to be kept once the answer is complete), and whether the
     * polling thread already looked that key up (and missed). */
    char cache_key[CACHE_KEY_MAX];
    int cache_checked;
    char etag[COMPUTE_REQUEST_ETAG_MAX]; /* GET /interpolate: its answer's tag, for the answer */
    /* Between a run_* step (parsing, checks, the inputs) and its answer:
     * the engine call it left for the batch (infer_batch; engine 1), on
     * these rows, all owned and freed with the answer built. */
    infer_batch_item eng;
    int engine;
    int rows, cols;              /* images, latents or steps; the PNG grid's columns */
    float *x, *z, *mu, *logvar;  /* (rows, D), (rows, latent) ... */
    float *weights;              /* a conditional decode's label rows (rows, n_classes) */
    int label_ids[API_INFER_MAX_N]; /* a conditional encode's labels */
    int batch_index;             /* its place in the batch the pool gave (compute_batch_done) */
} infer_request;

static void infer_run(compute_request *cr);
static void infer_run_batch(compute_request **rs, int n, compute_batch *b);

static infer_request *infer_new(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                                infer_kind kind)
{
    infer_request *r = compute_request_new(ctx, c, req, sizeof *r, infer_run);
    if (!r)
        return NULL;
    r->kind = kind;
    r->body = req->body;
    r->body_len = req->body_len;
    r->temperature = 1.0;
    r->scale = 1;
    return r;
}

/* Takes buf (malloc'd). */
static void infer_set_body(infer_request *r, unsigned status, const char *content_type, void *buf,
                           size_t len)
{
    if (!r->cache_key[0]) {
        compute_request_set_body(&r->base, status, content_type, buf, len);
        return;
    }
    /* A body the response cache can share later (run_interpolate_get). */
    response_body *b = response_body_new(buf, len, content_type);
    if (b)
        compute_request_set_shared(&r->base, status, b);
    else
        compute_request_fail(&r->base, HTTP_ERR_UNAVAILABLE, "out of memory");
}

/* Work small enough to do on the polling thread: well under a millisecond
 * (one /encode of an image is ~0.1 ms of math and as much JSON). Handing it
 * to a compute thread costs two context switches and a wake-up of the
 * polling thread, about as much as the work itself. Measured with
 * scripts/bench-http.sh on 2 cores: /encode ~7,900 req/s handed over, ~8,100
 * inline (the CPU is the limit either way: ~0.05 ms of JSON, ~0.09 ms of
 * math); /sample?n=16 (0.2 ms decode + 0.45 ms PNG) was faster handed over
 * (~2,600 vs ~1,700 req/s), so only batches of a few images stay here. */
static int infer_is_cheap(const infer_request *r)
{
    size_t most = API_INFER_INLINE_BODY;
    switch (r->kind) {
    case INFER_SAMPLE:
        return r->n <= API_INFER_INLINE_IMAGES;
    case INFER_INTERP_GET:
        return r->steps <= API_INFER_INLINE_IMAGES;
    case INFER_INTERP_POST:
        most = 2 * API_INFER_INLINE_BODY;
        break;
    case INFER_ENCODE:
    case INFER_DECODE:
        break;
    }
    /* A PNG to decode never is: its cost is the decoder's, not its length
     * (the body is searched only when it is short enough to matter). */
    return r->body_len <= most && r->body_kind != API_INFER_BODY_PNG &&
           !(r->body && memmem(r->body, r->body_len, "png_base64", 10));
}

/* 1 when the data sets a GET /interpolate reads are loaded (so reading them
 * cannot block); other kinds read none. */
static int infer_data_ready(const infer_request *r);

/* Which requests may share an engine call (compute_pool's batch key): the
 * same names of model and version and the same direction, encoding or
 * decoding (/decode, /sample and /interpolate all end in a decode). The
 * batch then groups by the model the names resolved to (infer_batch). */
static uint64_t infer_batch_key(const infer_request *r)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    const char *parts[3] = {r->model, r->version, r->kind == INFER_ENCODE ? "enc" : "dec"};
    for (int i = 0; i < 3; i++)
        for (const char *c = parts[i];; c++) {
            h = (h ^ (unsigned char)*c) * 1099511628211ull;
            if (!*c)
                break;
        }
    return h ? h : 1;
}

/* Runs r here when it is cheap, its model is loaded (a polling thread
 * never loads a model or a data set, nor waits for the registry) and the
 * compute pool is idle, else admits it into the compute pool (or answers
 * 429 / 503 at once). */
static enum MHD_Result infer_submit(infer_request *r)
{
    http_ctx *ctx = r->base.ctx;
    compute_request_set_batch(&r->base, infer_run_batch, infer_batch_key(r));
    /* Here only while the pool is idle: among other requests it would only
     * delay them, and it should rather join their batch. */
    int cheap = infer_is_cheap(r) && infer_data_ready(r) && compute_pool_inline_begin(ctx->compute);
    if (cheap &&
        !model_cache_acquire_loaded(ctx->cache, ctx->reg, r->model[0] ? r->model : NULL,
                                    r->version[0] ? r->version : NULL, &r->held, &r->info)) {
        compute_pool_inline_end(ctx->compute);
        cheap = 0;
    }
    enum MHD_Result ret = compute_request_submit(&r->base, cheap);
    if (cheap)
        compute_pool_inline_end(ctx->compute);
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

http_error api_infer_model_params(struct MHD_Connection *c, char *model_out, char *version_out,
                                  char *msg, size_t msglen)
{
    const char *model = NULL, *version = NULL;
    if (http_query_str(c, "model", NAME_MAX_LEN, &model, msg, msglen) ||
        http_query_str(c, "version", NAME_MAX_LEN, &version, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    if (model && !registry_valid_name(model)) {
        snprintf(msg, msglen, "parameter 'model' is not a valid model name");
        return HTTP_ERR_BAD_REQUEST;
    }
    snprintf(model_out, NAME_MAX_LEN + 1, "%s", model ? model : "");
    snprintf(version_out, NAME_MAX_LEN + 1, "%s", version ? version : "");
    return HTTP_ERR_NONE;
}

/* ?model= and ?version= into r. */
static http_error read_model_params(infer_request *r, char *msg, size_t msglen)
{
    return api_infer_model_params(r->base.task.conn, r->model, r->version, msg, msglen);
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

int api_infer_precision_param(struct MHD_Connection *c, int *precision, char *msg, size_t msglen)
{
    int64_t digits = 0; /* given once at most: the transport refuses a repeated parameter */
    if (http_query_int(c, "precision", 1, JSON_NUM_DIGITS_MAX, 0, &digits, msg, msglen))
        return -1;
    *precision = (int)digits;
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

http_error api_infer_require_body(struct MHD_Connection *c, const http_request *req,
                                  unsigned accepted, api_infer_body *kind, char *msg,
                                  size_t msglen)
{
    static const struct {
        api_infer_body kind;
        const char *type;
    } types[] = {{API_INFER_BODY_JSON, "application/json"},
                 {API_INFER_BODY_PNG, "image/png"},
                 {API_INFER_BODY_NPY, "application/x-npy"}};
    if (!req->body_len) {
        if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) &&
            !MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
            snprintf(msg, msglen,
                     "a request body is required: send it with Content-Length or chunked");
            return HTTP_ERR_LENGTH_REQUIRED;
        }
        snprintf(msg, msglen, "the request body is empty");
        return HTTP_ERR_BAD_REQUEST;
    }
    const char *ctype =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    char want[96] = "";
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (!(accepted & types[i].kind))
            continue;
        if (media_type_is(ctype, types[i].type)) {
            *kind = types[i].kind;
            return HTTP_ERR_NONE;
        }
        size_t used = strlen(want);
        snprintf(want + used, sizeof want - used, "%s%s", used ? " or " : "", types[i].type);
    }
    snprintf(msg, msglen, "Content-Type must be %s (got %s)", want,
             ctype ? "another type" : "none");
    return HTTP_ERR_UNSUPPORTED_MEDIA;
}

/* DATASET:SPLIT:INDEX, e.g. mnist:test:3, or label:K (a conditional
 * model's class K at z = 0, the prior's mean). */
typedef struct {
    char name[32];
    data_sets_split split;
    int64_t index;
    int is_label;                /* label:K; index is K */
} data_ref;

static int parse_data_ref(const char *s, data_ref *out)
{
    out->is_label = !strncmp(s, "label:", 6);
    if (out->is_label)
        return http_parse_i64(s + 6, &out->index);
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

int api_infer_parse_data_ref(const char *s, api_infer_data_ref *out)
{
    data_ref ref;
    if (parse_data_ref(s, &ref) || ref.is_label)
        return -1;
    memcpy(out->name, ref.name, sizeof out->name);
    out->split = ref.split;
    out->index = ref.index;
    return 0;
}

static int infer_data_ready(const infer_request *r)
{
    if (r->kind != INFER_INTERP_GET)
        return 1;
    data_ref a, b;
    return !parse_data_ref(r->from, &a) && !parse_data_ref(r->to, &b) &&
           data_cache_peek(r->base.ctx->data, a.name, a.split) &&
           data_cache_peek(r->base.ctx->data, b.name, b.split);
}

/* ---- GET /interpolate and the response cache ----------------------------- */

/* Same checkpoint and parameters, same bytes: the ETag is a hash of them,
 * and of the model name and version, which the X-Model headers and a JSON
 * body carry (the same checkpoint bytes may be stored under several). The
 * response-cache key (key, CACHE_KEY_MAX bytes) is that hash followed by the
 * name and version. */
static void interp_tags(const infer_request *r, const registry_checkpoint_info *info,
                        char etag[40], char *key)
{
    char text[640], hex[65];
    snprintf(text, sizeof text, "%s|%s|%lld|%s|%s|%lld|%s|%s|%lld|%d", info->sha256, info->model,
             (long long)info->version, r->from, r->to, (long long)r->steps,
             r->slerp ? "slerp" : "lerp", http_format_name(r->fmt), (long long)r->scale,
             r->precision);
    sha256_hex((const uint8_t *)text, strlen(text), hex);
    snprintf(etag, 40, "\"%.32s\"", hex);
    snprintf(key, CACHE_KEY_MAX, "%s|%s|%lld", hex, info->model, (long long)info->version);
}

/* A pinned version never changes; "latest" or the default model may, so
 * clients revalidate (cheaply, with the tag) before reusing. */
const char *api_infer_cache_control(const char *model, const char *version)
{
    int pinned = model && model[0] && version && version[0] &&
                 strspn(version, "0123456789") == strlen(version);
    return pinned ? "public, max-age=31536000, immutable" : "public, no-cache";
}

static const char *interp_cache_control(const infer_request *r)
{
    return api_infer_cache_control(r->model, r->version);
}

/* The 200 of GET /interpolate from a kept body (takes the reference b), with
 * the headers a computed answer has, in the same order. */
static void interp_answer_cached(infer_request *r, const registry_checkpoint_info *info,
                                 response_body *b, const char *etag)
{
    compute_request_set_shared(&r->base, MHD_HTTP_OK, b);
    compute_request_model_headers(&r->base, info->model, (long long)info->version);
    compute_request_cache_headers(&r->base, etag, interp_cache_control(r));
}

/* On the polling thread: when the model's resolution is known without the
 * registry (model_cache_peek_resolved) and the answer is kept, builds it in r
 * and returns 1; else 0, and the request computes it. A conditional request
 * whose tag matches is left to the computation, which answers 304. */
static int interp_try_cached(infer_request *r)
{
    http_ctx *ctx = r->base.ctx;
    registry_checkpoint_info info;
    if (!ctx->responses || !ctx->cache || !ctx->reg ||
        !model_cache_peek_resolved(ctx->cache, ctx->reg, r->model[0] ? r->model : NULL,
                                   r->version[0] ? r->version : NULL, &info))
        return 0;
    char etag[40];
    interp_tags(r, &info, etag, r->cache_key);
    if (r->base.if_none_match[0] && http_etag_listed(r->base.if_none_match, etag))
        return 0;
    response_body *b = NULL; /* a reference, handed to the response */
    r->cache_checked = 1;
    if (response_cache_get(ctx->responses, r->cache_key, &b) != RESPONSE_CACHE_OK)
        return 0;
    interp_answer_cached(r, &info, b, etag);
    return 1;
}

/* ---- handlers ------------------------------------------------------------ */

static http_error sample_params(infer_request *r, char *msg, size_t msglen)
{
    struct MHD_Connection *c = r->base.task.conn;
    int have_seed;
    http_error e = read_model_params(r, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    if (http_query_limited(c, "n", 1, r->base.ctx->opts->max_n, METRICS_LIMIT_MAX_N,
                           SAMPLE_DEFAULT_N, &r->n, msg, msglen) ||
        http_query_u64(c, "seed", &have_seed, &r->seed, msg, msglen) ||
        query_double(c, "temperature", 0.0, TEMPERATURE_MAX, 1.0, &r->temperature, msg, msglen) ||
        http_query_int(c, "scale", 1, API_INFER_MAX_SCALE, 1, &r->scale, msg, msglen) ||
        api_infer_precision_param(c, &r->precision, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    if ((e = infer_labels_from_query(c, &r->labels, msg, msglen)) != HTTP_ERR_NONE)
        return e;
    if (r->labels.given && !r->labels.one) { /* one sample per label */
        if (MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "n") && r->n != r->labels.n) {
            snprintf(msg, msglen, "n=%lld, but labels holds %d labels (one per sample)",
                     (long long)r->n, r->labels.n);
            return HTTP_ERR_BAD_REQUEST;
        }
        r->n = r->labels.n;
    }
    if (r->n > r->base.ctx->opts->max_n) { /* labels read to API_INFER_MAX_N, the ceiling */
        metrics_count_refusal(METRICS_LIMIT_MAX_N);
        snprintf(msg, msglen, "labels holds %lld labels, more than --max-n %d",
                 (long long)r->n, r->base.ctx->opts->max_n);
        return HTTP_ERR_BAD_REQUEST;
    }
    if ((e = http_negotiate(c, HTTP_OFFER_IMAGES, &r->fmt, msg, msglen)) != HTTP_ERR_NONE)
        return e;
    if (!have_seed)
        r->seed = random_seed();
    return HTTP_ERR_NONE;
}

enum MHD_Result api_infer_sample(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    if (req->work)
        return compute_request_queue(req->work);
    infer_request *r = infer_new(ctx, c, req, INFER_SAMPLE);
    if (!r)
        return MHD_NO;
    char msg[HTTP_MESSAGE_MAX];
    http_error e = sample_params(r, msg, sizeof msg);
    return e == HTTP_ERR_NONE ? infer_submit(r) : http_send_error(c, e, "%s", msg);
}

/* A body of one of the kinds accepted (API_INFER_BODY_* bits) in, offered
 * formats out: /encode, /decode and POST /interpolate start alike. */
static http_error body_params(infer_request *r, const http_request *req, unsigned offered,
                              unsigned accepted, char *msg, size_t msglen)
{
    struct MHD_Connection *c = r->base.task.conn;
    http_error e = read_model_params(r, msg, msglen);
    if (e == HTTP_ERR_NONE && (offered & (1u << HTTP_FORMAT_PNG)) &&
        http_query_int(c, "scale", 1, API_INFER_MAX_SCALE, 1, &r->scale, msg, msglen))
        e = HTTP_ERR_BAD_REQUEST;
    if (e == HTTP_ERR_NONE && api_infer_precision_param(c, &r->precision, msg, msglen))
        e = HTTP_ERR_BAD_REQUEST;
    if (e == HTTP_ERR_NONE)
        e = http_negotiate(c, offered, &r->fmt, msg, msglen);
    if (e == HTTP_ERR_NONE)
        e = api_infer_require_body(c, req, accepted, &r->body_kind, msg, msglen);
    return e;
}

static enum MHD_Result body_request(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                                    infer_kind kind)
{
    if (req->work)
        return compute_request_queue(req->work);
    infer_request *r = infer_new(ctx, c, req, kind);
    if (!r)
        return MHD_NO;
    char msg[HTTP_MESSAGE_MAX];
    http_error e =
        kind == INFER_ENCODE
            ? body_params(r, req, HTTP_OFFER_JSON,
                          API_INFER_BODY_JSON | API_INFER_BODY_PNG | API_INFER_BODY_NPY, msg,
                          sizeof msg)
            : body_params(r, req, HTTP_OFFER_IMAGES, API_INFER_BODY_JSON, msg, sizeof msg);
    if (e == HTTP_ERR_NONE && kind == INFER_ENCODE)
        e = infer_labels_from_query(c, &r->labels, msg, sizeof msg);
    return e == HTTP_ERR_NONE ? infer_submit(r) : http_send_error(c, e, "%s", msg);
}

enum MHD_Result api_infer_encode(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return body_request(ctx, c, req, INFER_ENCODE);
}

enum MHD_Result api_infer_decode(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return body_request(ctx, c, req, INFER_DECODE);
}

enum MHD_Result api_infer_interpolate_post(http_ctx *ctx, struct MHD_Connection *c,
                                           http_request *req)
{
    return body_request(ctx, c, req, INFER_INTERP_POST);
}

static http_error interpolate_get_params(infer_request *r, char *msg, size_t msglen)
{
    struct MHD_Connection *c = r->base.task.conn;
    http_error e = read_model_params(r, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    const char *from = NULL, *to = NULL, *mode = NULL;
    if (http_query_str(c, "from", DATA_REF_MAX, &from, msg, msglen) ||
        http_query_str(c, "to", DATA_REF_MAX, &to, msg, msglen) ||
        http_query_str(c, "mode", 16, &mode, msg, msglen) ||
        http_query_limited(c, "steps", 2, r->base.ctx->opts->max_steps, METRICS_LIMIT_MAX_STEPS,
                           STEPS_DEFAULT, &r->steps, msg, msglen) ||
        http_query_int(c, "scale", 1, API_INFER_MAX_SCALE, 1, &r->scale, msg, msglen) ||
        api_infer_precision_param(c, &r->precision, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    data_ref ref;
    if (!from || parse_data_ref(from, &ref)) {
        snprintf(msg, msglen,
                 "parameter 'from' must be a data set reference DATASET:SPLIT:INDEX such as "
                 "mnist:test:3 (DATASET mnist or fashion, SPLIT train or test), or label:K");
        return HTTP_ERR_BAD_REQUEST;
    }
    if (!to || parse_data_ref(to, &ref)) {
        snprintf(msg, msglen,
                 "parameter 'to' must be a data set reference DATASET:SPLIT:INDEX such as "
                 "mnist:test:7, or label:K");
        return HTTP_ERR_BAD_REQUEST;
    }
    if (mode && strcmp(mode, "lerp") && strcmp(mode, "slerp")) {
        snprintf(msg, msglen, "parameter 'mode' must be lerp or slerp");
        return HTTP_ERR_BAD_REQUEST;
    }
    r->slerp = mode && !strcmp(mode, "slerp");
    snprintf(r->from, sizeof r->from, "%s", from);
    snprintf(r->to, sizeof r->to, "%s", to);
    return http_negotiate(c, HTTP_OFFER_IMAGES, &r->fmt, msg, msglen);
}

enum MHD_Result api_infer_interpolate_get(http_ctx *ctx, struct MHD_Connection *c,
                                          http_request *req)
{
    if (req->work)
        return compute_request_queue(req->work);
    infer_request *r = infer_new(ctx, c, req, INFER_INTERP_GET);
    if (!r)
        return MHD_NO;
    char msg[HTTP_MESSAGE_MAX];
    http_error e = interpolate_get_params(r, msg, sizeof msg);
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    /* A kept answer costs a lookup: no trip through the compute pool. */
    if (interp_try_cached(r))
        return compute_request_queue(&r->base);
    return infer_submit(r);
}

/* ---- compute-thread helpers ---------------------------------------------- */

http_error api_infer_acquire(http_ctx *ctx, const char *model_name, const char *version_name,
                             model_handle **h, registry_checkpoint_info *info, char *msg,
                             size_t msglen)
{
    const char *model = model_name[0] ? model_name : NULL;
    const char *version = version_name[0] ? version_name : NULL;
    char why[256] = "";
    model_cache_status rc =
        model_cache_acquire(ctx->cache, ctx->reg, model, version, h, info, why, sizeof why);
    if (rc == MODEL_CACHE_ERR_NOT_FOUND)
        snprintf(msg, msglen, "no checkpoint matches model '%s' version '%s'",
                 model ? model : "(default)", version ? version : "latest");
    else if (rc == MODEL_CACHE_ERR_NO_MODEL && registry_count_checkpoints(ctx->reg) == 0)
        snprintf(msg, msglen,
                 "no model is loaded: the registry is empty; train one with `vaed train` or "
                 "register a checkpoint");
    else if (rc == MODEL_CACHE_ERR_NO_MODEL)
        snprintf(msg, msglen, "no model is loaded: no default model resolves (%s)", why);
    else if (rc == MODEL_CACHE_ERR_LOAD)
        snprintf(msg, msglen, "the stored checkpoint did not load: %s", why);
    else if (rc == MODEL_CACHE_ERR_NOMEM)
        snprintf(msg, msglen, "out of memory loading the model");
    else if (rc != MODEL_CACHE_OK)
        snprintf(msg, msglen, "registry error: %s", why);
    return http_error_from_model_cache(rc);
}

static http_error infer_acquire(infer_request *r, model_handle **h, char *msg, size_t msglen)
{
    return api_infer_acquire(r->base.ctx, r->model, r->version, h, &r->info, msg, msglen);
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* Bytes put_rows may write for rows x cols floats. */
static size_t rows_bytes(int rows, int cols)
{
    return (size_t)rows * ((size_t)cols * JSON_NUM_FLOAT_MAX + 3) + 2;
}

/* v (rows, cols) as a JSON array of arrays at p (rows_bytes of room);
 * returns the end. One pass into memory sized beforehand: no stdio, no
 * growing buffer. */
static char *put_rows(char *p, const float *v, int rows, int cols, int precision)
{
    *p++ = '[';
    for (int r = 0; r < rows; r++) {
        if (r)
            *p++ = ',';
        *p++ = '[';
        p += json_num_floats(p, v + (size_t)r * (size_t)cols, (size_t)cols, precision);
        *p++ = ']';
    }
    *p++ = ']';
    return p;
}

/* {"model":..,"version":..,extra (members with a trailing comma) and then
 * what the caller puts: the opening of a JSON answer, malloc'd with room
 * for values more bytes; NULL when out of memory. */
static char *json_answer_new(const registry_checkpoint_info *info, const char *extra,
                             size_t values, char **end)
{
    size_t head = strlen(info->model) + (extra ? strlen(extra) : 0) + 64;
    char *text = malloc(head + values);
    if (!text)
        return NULL;
    *end = text + snprintf(text, head, "{\"model\":\"%s\",\"version\":%lld,%s", info->model,
                           (long long)info->version, extra ? extra : "");
    return text;
}

/* The 422 of a PNG grid that cannot be drawn (why: image_grid_fits's). */
static http_error grid_refusal(const char *why, char *msg, size_t msglen)
{
    snprintf(msg, msglen,
             "cannot draw these images as PNG: %s (ask for format=npy or json, or a smaller "
             "scale)",
             why);
    return HTTP_ERR_UNPROCESSABLE;
}

http_error api_infer_encode_images(http_format fmt, const vae_config *cfg, const float *x,
                                   const float *z, int n, int cols, int scale, int precision,
                                   const registry_checkpoint_info *info, const char *extra_json,
                                   void **out, size_t *len, const char **content_type, char *msg,
                                   size_t msglen)
{
    int D = vae_config_input_dim(cfg);
    *out = NULL;
    *len = 0;
    if (!all_finite(x, (size_t)n * (size_t)D) ||
        (z && !all_finite(z, (size_t)n * (size_t)cfg->latent))) {
        snprintf(msg, msglen, "the model produced non-finite values");
        return HTTP_ERR_INTERNAL;
    }
    *content_type = http_format_mime(fmt);
    if (fmt == HTTP_FORMAT_PNG) {
        uint8_t *png = NULL; /* owned: handed to the caller */
        char why[256] = "";
        vae_status rc = image_encode_grid_png_scaled(x, n, cfg->channels, cfg->height, cfg->width,
                                                     cols, scale, &png, len, why, sizeof why);
        if (rc == VAE_ERR_ARG) /* every caller checked the grid first: not counted again */
            return grid_refusal(why, msg, msglen);
        if (rc != VAE_OK) {
            snprintf(msg, msglen, "PNG encoding failed: %s", why);
            return HTTP_ERR_INTERNAL;
        }
        *out = png;
        return HTTP_ERR_NONE;
    }
    if (fmt == HTTP_FORMAT_NPY) {
        int shape[4] = {n, cfg->channels, cfg->height, cfg->width};
        uint8_t *npy = NULL; /* owned: handed to the caller */
        if (npy_encode_f32(x, shape, 4, &npy, len)) {
            snprintf(msg, msglen, "out of memory writing the array");
            return HTTP_ERR_UNAVAILABLE;
        }
        *out = npy;
        return HTTP_ERR_NONE;
    }
    char *p, *text = json_answer_new(info, extra_json,
                                     rows_bytes(n, D) + (z ? rows_bytes(n, cfg->latent) : 0) + 16,
                                     &p); /* owned: handed to the caller */
    if (!text) {
        snprintf(msg, msglen, "out of memory writing the response");
        return HTTP_ERR_UNAVAILABLE;
    }
    if (z) {
        memcpy(p, "\"z\":", 4);
        p = put_rows(p + 4, z, n, cfg->latent, precision);
        *p++ = ',';
    }
    memcpy(p, "\"x\":", 4);
    p = put_rows(p + 4, x, n, D, precision);
    *p++ = '}';
    *out = text;
    *len = (size_t)(p - text);
    return HTTP_ERR_NONE;
}

/* The answer of an endpoint that returns images x (n, D) made from latents z
 * (n, latent), built in r (api_infer_encode_images). A failure to write them
 * is answered here too, and like the 200 it carries the model's X-Model
 * headers (only non-finite output does not): the caller goes on when
 * r->base.status is 200. */
static void infer_images(infer_request *r, const model_handle *h, const float *x, const float *z,
                         int n, int cols, const char *extra_json)
{
    const vae_config *cfg = &h->model.cfg;
    if (!all_finite(x, (size_t)n * (size_t)vae_config_input_dim(cfg)) ||
        !all_finite(z, (size_t)n * (size_t)cfg->latent)) {
        compute_request_fail(&r->base, HTTP_ERR_UNPROCESSABLE,
                             "the model produced non-finite values (weights too large for float "
                             "arithmetic on this input)");
        return;
    }
    char msg[HTTP_MESSAGE_MAX];
    void *body = NULL; /* owned: handed to the response */
    size_t len = 0;
    const char *content_type = NULL;
    http_error e = api_infer_encode_images(r->fmt, cfg, x, z, n, cols, (int)r->scale,
                                           r->precision, &r->info,
                                           extra_json, &body, &len, &content_type, msg,
                                           sizeof msg);
    if (e != HTTP_ERR_NONE)
        compute_request_fail(&r->base, e, "%s", msg);
    else
        infer_set_body(r, MHD_HTTP_OK, content_type, body, len);
    compute_request_model_headers(&r->base, r->info.model, (long long)r->info.version);
}

/* ---- the work ------------------------------------------------------------- */

/* Leaves in r the decode of its z (rows of them) into r->x: with one-hot
 * label rows from labels for a conditional model (labels NULL: another). */
static http_error infer_engine_decode(infer_request *r, const vae_model *m, const int *labels,
                                      char *msg, size_t msglen)
{
    int K = m->cfg.n_classes;
    if (vae_config_is_conditional(&m->cfg)) {
        r->weights = calloc((size_t)r->rows * (size_t)K, sizeof *r->weights);
        if (!r->weights) {
            snprintf(msg, msglen, "out of memory for %d latents", r->rows);
            return HTTP_ERR_UNAVAILABLE;
        }
        for (int i = 0; i < r->rows; i++)
            r->weights[(size_t)i * K + labels[i]] = 1.0f;
    }
    r->eng = (infer_batch_item){.op = INFER_BATCH_DECODE, .model = m, .n = r->rows, .in = r->z,
                                .label_weights = r->weights, .out = r->x};
    r->engine = 1;
    return HTTP_ERR_NONE;
}

static http_error run_sample(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    http_error e = HTTP_ERR_NONE;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int n = (int)r->n;
    size_t n_latent = (size_t)n * (size_t)cfg->latent;
    r->rows = n;
    r->z = malloc(n_latent * sizeof *r->z);
    r->x = malloc((size_t)n * (size_t)vae_config_input_dim(cfg) * sizeof *r->x);
    if (!r->z || !r->x) {
        snprintf(msg, msglen, "out of memory for %d samples", n);
        return HTTP_ERR_UNAVAILABLE;
    }
    /* a conditional model's samples: of the classes asked for, else a class
     * row per row of the grid (sample i of class i mod K, K columns) */
    int labels[API_INFER_MAX_N];
    r->cols = 0;
    if ((e = infer_labels_resolve(&r->labels, cfg, n, 1, labels, msg, msglen)) != HTTP_ERR_NONE)
        return e;
    if (vae_config_is_conditional(cfg) && !r->labels.given) {
        for (int i = 0; i < n; i++)
            labels[i] = i % cfg->n_classes;
        r->cols = cfg->n_classes < n ? cfg->n_classes : n;
    }
    if ((e = api_infer_check_grid(r->fmt, cfg, n, r->cols, (int)r->scale, msg, msglen)) !=
        HTTP_ERR_NONE)
        return e;
    /* Drawn here, from the request's own seed: only the decode is shared. */
    rng_state rng;
    rng_seed(&rng, r->seed);
    rng_normal_fill(&rng, r->z, n_latent);
    if (r->temperature != 1.0)
        for (size_t i = 0; i < n_latent; i++)
            r->z[i] *= (float)r->temperature;
    return infer_engine_decode(r, m, labels, msg, msglen);
}

static http_error sample_answer(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    (void)msg;
    (void)msglen;
    char extra[96], seed_str[32];
    snprintf(extra, sizeof extra, "\"seed\":%llu,\"temperature\":%.9g,",
             (unsigned long long)r->seed, r->temperature);
    infer_images(r, h, r->x, r->z, r->rows, r->cols, extra);
    snprintf(seed_str, sizeof seed_str, "%llu", (unsigned long long)r->seed);
    if (r->base.status == MHD_HTTP_OK)
        compute_request_add_header(&r->base, "X-Seed", seed_str);
    return HTTP_ERR_NONE;
}

static size_t max_json_values(const vae_config *cfg, int max_n)
{
    return (size_t)max_n * ((size_t)vae_config_input_dim(cfg) + 2) + JSON_SLACK_VALUES;
}

/* An npy body: float32 pixels (n, C, H, W), (n, D) or one image (C, H, W),
 * each in [0, 1], into *x and *n. */
static http_error npy_images(const vae_config *cfg, const char *body, size_t len, int max_n,
                             float **x, int *n, char *msg, size_t msglen)
{
    int shape[NPY_MAX_DIMS], ndim, D = vae_config_input_dim(cfg);
    char why[160];
    npy_status rc = npy_decode_f32((const uint8_t *)body, len, (size_t)max_n * D, x,
                                   shape, &ndim, why, sizeof why);
    if (rc == NPY_ERR_NOMEM) {
        snprintf(msg, msglen, "out of memory");
        return HTTP_ERR_UNAVAILABLE;
    }
    char size[64];
    infer_body_shape_text(size, sizeof size, cfg);
    if (rc == NPY_ERR_TOO_LARGE) {
        metrics_count_refusal(METRICS_LIMIT_MAX_N);
        snprintf(msg, msglen, "the array holds more than %d images of %s", max_n, size);
        return HTTP_ERR_PAYLOAD_TOO_LARGE;
    }
    if (rc != NPY_OK) {
        snprintf(msg, msglen, "the body is not a float32 .npy array: %s", why);
        return HTTP_ERR_BAD_REQUEST;
    }
    int one = ndim == 3 && shape[0] == cfg->channels && shape[1] == cfg->height &&
              shape[2] == cfg->width;
    int rows = ndim == 2 && shape[1] == D;
    int planes = ndim == 4 && shape[1] == cfg->channels && shape[2] == cfg->height &&
                 shape[3] == cfg->width;
    *n = one ? 1 : ndim >= 2 ? shape[0] : 0;
    http_error e = HTTP_ERR_NONE;
    if (!one && !rows && !planes) {
        snprintf(msg, msglen, "the array's shape is not (n, %d, %d, %d) or (n, %d): images of %s",
                 cfg->channels, cfg->height, cfg->width, D, size);
        e = HTTP_ERR_UNPROCESSABLE;
    } else if (*n < 1) {
        snprintf(msg, msglen, "the array holds no image");
        e = HTTP_ERR_UNPROCESSABLE;
    }
    for (size_t i = 0; e == HTTP_ERR_NONE && i < (size_t)*n * D; i++)
        if (!((*x)[i] >= 0.0f && (*x)[i] <= 1.0f)) {
            snprintf(msg, msglen, "value %zu of the array is %g: pixels are in [0, 1]", i,
                     (double)(*x)[i]);
            e = HTTP_ERR_UNPROCESSABLE;
        }
    if (e != HTTP_ERR_NONE) {
        free(*x);
        *x = NULL;
    }
    return e;
}

http_error api_infer_read_images(const http_ctx *ctx, const vae_config *cfg, const char *body,
                                 size_t len, api_infer_body kind, float **x, int *n, char *msg,
                                 size_t msglen)
{
    int max_n = ctx->opts->max_n;
    *n = 1;
    if (kind == API_INFER_BODY_JSON)
        return infer_body_read_images(cfg, body, len, ctx->opts->max_json_depth, max_n,
                                      max_json_values(cfg, max_n), x, n, msg, msglen);
    if (kind == API_INFER_BODY_NPY)
        return npy_images(cfg, body, len, max_n, x, n, msg, msglen);
    *x = malloc((size_t)vae_config_input_dim(cfg) * sizeof **x);
    if (!*x) {
        snprintf(msg, msglen, "out of memory");
        return HTTP_ERR_UNAVAILABLE;
    }
    return infer_body_read_png(cfg, (const uint8_t *)body, len, *x, "the image", msg, msglen);
}

/* The images of an /encode body into *x (malloc'd, the caller's) and *n. */
static http_error encode_input(infer_request *r, const vae_config *cfg, float **x, int *n,
                               char *msg, size_t msglen)
{
    return api_infer_read_images(r->base.ctx, cfg, r->body, r->body_len, r->body_kind, x, n, msg,
                                 msglen);
}

static http_error run_encode(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    http_error e = HTTP_ERR_NONE;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int n = 1;
    if ((e = encode_input(r, cfg, &r->x, &n, msg, msglen)) != HTTP_ERR_NONE)
        return e;
    r->rows = n;
    if ((e = infer_labels_resolve(&r->labels, cfg, n, 0, r->label_ids, msg, msglen)) !=
        HTTP_ERR_NONE)
        return e;
    r->mu = malloc((size_t)n * (size_t)cfg->latent * sizeof *r->mu);
    r->logvar = malloc((size_t)n * (size_t)cfg->latent * sizeof *r->logvar);
    if (!r->mu || !r->logvar) {
        snprintf(msg, msglen, "out of memory for %d images", n);
        return HTTP_ERR_UNAVAILABLE;
    }
    r->eng = (infer_batch_item){.op = INFER_BATCH_ENCODE, .model = m, .n = n, .in = r->x,
                                .labels = vae_config_is_conditional(cfg) ? r->label_ids : NULL,
                                .out = r->mu, .out2 = r->logvar};
    r->engine = 1;
    return HTTP_ERR_NONE;
}

static http_error encode_answer(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    http_error e = HTTP_ERR_NONE;
    const vae_config *cfg = &h->model.cfg;
    const float *mu = r->mu, *logvar = r->logvar;
    int n = r->rows;
    size_t n_latent = (size_t)n * (size_t)cfg->latent;
    if (!all_finite(mu, n_latent) || !all_finite(logvar, n_latent)) {
        snprintf(msg, msglen, "the model produced non-finite values (weights too large for "
                              "float arithmetic on this input)");
        e = HTTP_ERR_UNPROCESSABLE; /* the model's, not the server's: fuzz_http found it */
        goto end;
    }
    char *p, *text = json_answer_new(&r->info, NULL, 2 * rows_bytes(n, cfg->latent) + 16,
                                     &p); /* owned: handed to the response */
    if (!text) {
        snprintf(msg, msglen, "out of memory writing the response");
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    memcpy(p, "\"mu\":", 5);
    p = put_rows(p + 5, mu, n, cfg->latent, r->precision);
    memcpy(p, ",\"logvar\":", 10);
    p = put_rows(p + 10, logvar, n, cfg->latent, r->precision);
    *p++ = '}';
    infer_set_body(r, MHD_HTTP_OK, "application/json", text, (size_t)(p - text));
    compute_request_model_headers(&r->base, r->info.model, (long long)r->info.version);
end:
    return e;
}

static http_error run_decode(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    http_error e = HTTP_ERR_NONE;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int L = cfg->latent;
    cJSON *root = NULL; /* owned: deleted at end */
    int max_n = r->base.ctx->opts->max_n;
    e = infer_body_parse_object(r->body, r->body_len, r->base.ctx->opts->max_json_depth,
                                (size_t)max_n * ((size_t)L + 2) + JSON_SLACK_VALUES, &root, msg,
                                msglen);
    if (e != HTTP_ERR_NONE)
        goto end;
    const cJSON *zs = cJSON_GetObjectItemCaseSensitive(root, "z");
    if (!cJSON_IsArray(zs)) {
        snprintf(msg, msglen,
                 "the body must hold \"z\": an array of latents, each an array of %d numbers", L);
        e = HTTP_ERR_BAD_REQUEST;
        goto end;
    }
    int n = cJSON_GetArraySize(zs);
    if (n > max_n)
        metrics_count_refusal(METRICS_LIMIT_MAX_N);
    if (n < 1 || n > max_n) {
        snprintf(msg, msglen, "\"z\" must hold 1 to %d latents (it holds %d)", max_n, n);
        e = HTTP_ERR_UNPROCESSABLE;
        goto end;
    }
    if ((e = api_infer_check_grid(r->fmt, cfg, n, 0, (int)r->scale, msg, msglen)) !=
        HTTP_ERR_NONE)
        goto end;
    r->rows = n;
    float *z = r->z = malloc((size_t)n * (size_t)L * sizeof *z);
    r->x = malloc((size_t)n * (size_t)vae_config_input_dim(cfg) * sizeof *r->x);
    if (!z || !r->x) {
        snprintf(msg, msglen, "out of memory for %d latents", n);
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    char latent_size[32];
    snprintf(latent_size, sizeof latent_size, "latent size %d", L);
    int i = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, zs) {
        char what[32];
        snprintf(what, sizeof what, "z[%d]", i);
        e = infer_body_read_numbers(row, z + (size_t)i * (size_t)L, L, 0, what, latent_size, msg,
                                    msglen);
        if (e != HTTP_ERR_NONE)
            goto end;
        i++;
    }
    infer_labels labels_in;
    int labels[API_INFER_MAX_N];
    if ((e = infer_labels_from_json(root, &labels_in, msg, msglen)) != HTTP_ERR_NONE ||
        (e = infer_labels_resolve(&labels_in, cfg, n, 0, labels, msg, msglen)) != HTTP_ERR_NONE)
        goto end;
    e = infer_engine_decode(r, m, labels, msg, msglen);
end:
    cJSON_Delete(root);
    return e;
}

static http_error decode_answer(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    (void)msg;
    (void)msglen;
    infer_images(r, h, r->x, r->z, r->rows, 0, NULL);
    return HTTP_ERR_NONE;
}

/* One end of a POST /interpolate into its latent mu (L floats) and, for a
 * conditional model, its label: {"x"|"png_base64"|"z": ..., "label": K}, or
 * {"label": K} alone, whose latent is fixed_z. */
static http_error read_end(const vae_model *m, vae_workspace *ws, const cJSON *in,
                           const char *what, const float *fixed_z, float *x_scratch,
                           float *latent, int *label, char *msg, size_t msglen)
{
    const vae_config *cfg = &m->cfg;
    char name[48], size[64];
    infer_body_shape_text(size, sizeof size, cfg);
    if (!cJSON_IsObject(in)) {
        snprintf(msg, msglen,
                 "\"%s\" must be an object holding one of \"x\", \"png_base64\" or \"z\" (and a "
                 "conditional model's \"label\")",
                 what);
        return HTTP_ERR_BAD_REQUEST;
    }
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(in, "x");
    const cJSON *png = cJSON_GetObjectItemCaseSensitive(in, "png_base64");
    const cJSON *z = cJSON_GetObjectItemCaseSensitive(in, "z");
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(in, "label");
    int given = (x != NULL) + (png != NULL) + (z != NULL);
    if (given > 1 || (given == 0 && !lab)) {
        snprintf(msg, msglen,
                 "\"%s\" must hold exactly one of \"x\", \"png_base64\" or \"z\", or only a "
                 "\"label\" (at the body's \"z\")",
                 what);
        return HTTP_ERR_BAD_REQUEST;
    }
    http_error e;
    *label = -1;
    if (lab) {
        if (!cJSON_IsNumber(lab) || lab->valuedouble != floor(lab->valuedouble) ||
            fabs(lab->valuedouble) > 1e9) {
            snprintf(msg, msglen, "\"%s.label\" must be a class number (0, 1, 2 ...)", what);
            return HTTP_ERR_BAD_REQUEST;
        }
        snprintf(name, sizeof name, "\"%s.label\"", what);
        if ((e = infer_labels_check_one(cfg, (long long)lab->valuedouble, name, msg, msglen)) !=
            HTTP_ERR_NONE)
            return e;
        *label = (int)lab->valuedouble;
    } else if (vae_config_is_conditional(cfg)) {
        snprintf(msg, msglen, "the model is conditional: \"%s\" needs a \"label\", 0 to %d", what,
                 cfg->n_classes - 1);
        return HTTP_ERR_UNPROCESSABLE;
    }
    if (!given) {
        memcpy(latent, fixed_z, (size_t)cfg->latent * sizeof *latent);
        return HTTP_ERR_NONE;
    }
    if (z) {
        char latent_size[32];
        snprintf(latent_size, sizeof latent_size, "latent size %d", cfg->latent);
        snprintf(name, sizeof name, "%s.z", what);
        return infer_body_read_numbers(z, latent, cfg->latent, 0, name, latent_size, msg, msglen);
    }
    if (x) {
        snprintf(name, sizeof name, "%s.x", what);
        e = infer_body_read_numbers(x, x_scratch, vae_config_input_dim(cfg), 1, name, size, msg,
                                    msglen);
    } else {
        snprintf(name, sizeof name, "%s.png_base64", what);
        e = infer_body_read_png_base64(cfg, png, x_scratch, name, msg, msglen);
    }
    if (e != HTTP_ERR_NONE)
        return e;
    float logvar[1024];
    float *lv = cfg->latent <= 1024 ? logvar : malloc((size_t)cfg->latent * sizeof *lv);
    if (!lv) {
        snprintf(msg, msglen, "out of memory");
        return HTTP_ERR_UNAVAILABLE;
    }
    int rc = vae_encode_cond(m, ws, x_scratch, *label >= 0 ? label : NULL, 1, latent, lv);
    if (lv != logvar)
        free(lv);
    if (rc != VAE_OK) {
        snprintf(msg, msglen, "encoding failed");
        return HTTP_ERR_INTERNAL;
    }
    return HTTP_ERR_NONE;
}

/* Leaves in r the decode of the walk from a to b (r->steps latents); for a
 * conditional model the label walks too, from label_a's one-hot to
 * label_b's in equal steps. interpolate_answer answers with it. */
static http_error interpolate_walk(infer_request *r, const model_handle *h, const float *a,
                                   const float *b, int label_a, int label_b, char *msg,
                                   size_t msglen)
{
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int steps = (int)r->steps, K = cfg->n_classes;
    r->rows = steps;
    float *z = r->z = malloc((size_t)steps * (size_t)cfg->latent * sizeof *z);
    r->x = malloc((size_t)steps * (size_t)vae_config_input_dim(cfg) * sizeof *r->x);
    float *y = r->weights = K ? calloc((size_t)steps * (size_t)K, sizeof *y) : NULL;
    if (!z || !r->x || (K && !y)) {
        snprintf(msg, msglen, "out of memory for %d steps", steps);
        return HTTP_ERR_UNAVAILABLE;
    }
    http_error e = api_infer_check_grid(r->fmt, cfg, steps, steps, (int)r->scale, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    latent_walk(a, b, cfg->latent, steps, r->slerp ? LATENT_SLERP : LATENT_LERP, z);
    for (int s = 0; K && s < steps; s++) {
        float t = (float)s / (float)(steps - 1);
        y[(size_t)s * K + label_a] += 1.0f - t;
        y[(size_t)s * K + label_b] += t;
    }
    r->eng = (infer_batch_item){.op = INFER_BATCH_DECODE, .model = m, .n = steps, .in = z,
                                .label_weights = y, .out = r->x};
    r->engine = 1;
    return HTTP_ERR_NONE;
}

static http_error interpolate_answer(infer_request *r, const model_handle *h, char *msg,
                                     size_t msglen)
{
    (void)msg;
    (void)msglen;
    int steps = r->rows;
    char extra[64];
    snprintf(extra, sizeof extra, "\"mode\":\"%s\",\"steps\":%d,", r->slerp ? "slerp" : "lerp",
             steps);
    infer_images(r, h, r->x, r->z, steps, steps, extra);
    if (r->kind != INFER_INTERP_GET)
        return HTTP_ERR_NONE;
    compute_request_cache_headers(&r->base, r->etag, interp_cache_control(r));
    /* Only a whole 200 is kept; a body over the cache's size limit (or no
     * memory for the entry) is simply not kept. */
    if (r->base.ctx->responses && r->base.status == MHD_HTTP_OK && r->base.resp && r->base.shared)
        (void)response_cache_put(r->base.ctx->responses, r->cache_key, r->base.shared);
    return HTTP_ERR_NONE;
}

/* "steps" and "mode" of a POST /interpolate body into r. */
static http_error interpolate_options(infer_request *r, const cJSON *root, char *msg,
                                      size_t msglen)
{
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(root, "steps");
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(root, "mode");
    r->steps = STEPS_DEFAULT;
    if (steps) {
        double s = steps->valuedouble;
        if (!cJSON_IsNumber(steps) || s != floor(s)) {
            snprintf(msg, msglen, "\"steps\" must be an integer");
            return HTTP_ERR_BAD_REQUEST;
        }
        int max_steps = r->base.ctx->opts->max_steps;
        if (s > max_steps)
            metrics_count_refusal(METRICS_LIMIT_MAX_STEPS);
        if (!(s >= 2 && s <= max_steps)) {
            snprintf(msg, msglen, "\"steps\" must be from 2 to %d", max_steps);
            return HTTP_ERR_UNPROCESSABLE;
        }
        r->steps = (int64_t)s;
    }
    r->slerp = 0;
    if (mode) {
        if (!cJSON_IsString(mode) ||
            (strcmp(mode->valuestring, "lerp") && strcmp(mode->valuestring, "slerp"))) {
            snprintf(msg, msglen, "\"mode\" must be \"lerp\" or \"slerp\"");
            return HTTP_ERR_BAD_REQUEST;
        }
        r->slerp = !strcmp(mode->valuestring, "slerp");
    }
    return HTTP_ERR_NONE;
}

static http_error run_interpolate_post(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    http_error e = HTTP_ERR_NONE;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int L = cfg->latent;
    cJSON *root = NULL;       /* owned: deleted at end */
    float *x = NULL;          /* owned: one image of scratch */
    float *ends = NULL;       /* owned: a, b, then the fixed z of label-only ends, L each */
    vae_workspace *ws = NULL; /* owned */
    e = infer_body_parse_object(r->body, r->body_len, r->base.ctx->opts->max_json_depth,
                                2 * ((size_t)vae_config_input_dim(cfg) + 2) + L + JSON_SLACK_VALUES,
                                &root, msg, msglen);
    if (e != HTTP_ERR_NONE || (e = interpolate_options(r, root, msg, msglen)) != HTTP_ERR_NONE)
        goto end;
    x = malloc((size_t)vae_config_input_dim(cfg) * sizeof *x);
    ends = calloc(3 * (size_t)L, sizeof *ends);
    ws = vae_workspace_new(m, 1); /* the ends, one at a time */
    if (!x || !ends || !ws) {
        snprintf(msg, msglen, "out of memory");
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    /* the latent of ends that give only a label: "z", else 0 (the prior's mean) */
    const cJSON *fixed = cJSON_GetObjectItemCaseSensitive(root, "z");
    char latent_size[32];
    snprintf(latent_size, sizeof latent_size, "latent size %d", L);
    if (fixed && (e = infer_body_read_numbers(fixed, ends + 2 * L, L, 0, "z", latent_size, msg,
                                              msglen)) != HTTP_ERR_NONE)
        goto end;
    int label_a, label_b;
    if ((e = read_end(m, ws, cJSON_GetObjectItemCaseSensitive(root, "from"), "from", ends + 2 * L,
                      x, ends, &label_a, msg, msglen)) != HTTP_ERR_NONE ||
        (e = read_end(m, ws, cJSON_GetObjectItemCaseSensitive(root, "to"), "to", ends + 2 * L, x,
                      ends + L, &label_b, msg, msglen)) != HTTP_ERR_NONE)
        goto end;
    e = interpolate_walk(r, h, ends, ends + L, label_a, label_b, msg, msglen);
end:
    cJSON_Delete(root);
    vae_workspace_free(ws);
    free(x);
    free(ends);
    return e;
}

int api_infer_is_data_ref(const char *s)
{
    data_ref ref;
    return parse_data_ref(s, &ref) == 0 && !ref.is_label;
}

http_error api_infer_data_set(http_ctx *ctx, const char *name, data_sets_split split,
                              const vae_config *cfg, const dataset **out, char *msg,
                              size_t msglen)
{
    const char *split_name = split == DATA_SETS_TEST ? "test" : "train";
    const dataset *d = NULL; /* borrowed from the data-set cache */
    char why[512] = "";
    data_cache_status rc = data_cache_get(ctx->data, name, split, &d, why, sizeof why);
    if (rc == DATA_CACHE_ERR_FULL)
        snprintf(msg, msglen, "%s", why);
    else if (rc != DATA_CACHE_OK)
        snprintf(msg, msglen, "data set %s (%s split) is not available: %s", name, split_name,
                 why);
    if (rc != DATA_CACHE_OK)
        return http_error_from_data_cache(rc);
    if (cfg && (d->channels != cfg->channels || d->height != cfg->height ||
                d->width != cfg->width)) {
        snprintf(msg, msglen, "%s images are %dx%d with %d channel(s), the model takes %dx%d with %d",
                 name, d->width, d->height, d->channels, cfg->width, cfg->height, cfg->channels);
        return HTTP_ERR_UNPROCESSABLE;
    }
    *out = d;
    return HTTP_ERR_NONE;
}

http_error api_infer_data_image(http_ctx *ctx, const char *ref_text, const vae_config *cfg,
                                float *dst, int *label, char *msg, size_t msglen)
{
    api_infer_data_ref ref;
    if (api_infer_parse_data_ref(ref_text, &ref)) { /* checked on the polling thread */
        snprintf(msg, msglen, "bad data set reference %s", ref_text);
        return HTTP_ERR_BAD_REQUEST;
    }
    const dataset *d = NULL; /* borrowed from the data-set cache */
    char why[HTTP_MESSAGE_MAX];
    http_error e = api_infer_data_set(ctx, ref.name, ref.split, cfg, &d, why, sizeof why);
    if (e != HTTP_ERR_NONE) { /* the shape's message names the image, as the index's does */
        snprintf(msg, msglen, "%s%s%s", e == HTTP_ERR_UNPROCESSABLE ? ref_text : "",
                 e == HTTP_ERR_UNPROCESSABLE ? ": " : "", why);
        return e;
    }
    if (ref.index >= d->n) {
        snprintf(msg, msglen, "%s: the %s split of %s has %d images (0 to %d)", ref_text,
                 ref.split == DATA_SETS_TEST ? "test" : "train", ref.name, d->n, d->n - 1);
        return HTTP_ERR_NOT_FOUND;
    }
    memcpy(dst, d->x + (size_t)ref.index * (size_t)dataset_dim(d),
           (size_t)dataset_dim(d) * sizeof *dst);
    *label = d->labels ? d->labels[ref.index] : -1;
    return HTTP_ERR_NONE;
}

http_error api_infer_data_label(const vae_config *cfg, const char *ref, int label, char *msg,
                                size_t msglen)
{
    if (label < 0) {
        snprintf(msg, msglen, "%s has no label, which the conditional model needs", ref);
        return HTTP_ERR_UNPROCESSABLE;
    }
    return infer_labels_check_one(cfg, label, "label", msg, msglen);
}

/* One end of a GET /interpolate: a label:K reference (its latent stays 0)
 * or an image of a data set (into x) with its label; for a conditional
 * model both need a label in range, for another neither may be a label. */
static http_error get_end(infer_request *r, const char *ref_text, const vae_config *cfg,
                          float *x, int *is_image, int *label, char *msg, size_t msglen)
{
    data_ref ref;
    parse_data_ref(ref_text, &ref); /* checked on the polling thread already */
    *is_image = !ref.is_label;
    if (ref.is_label) {
        *label = (int)(ref.index < INT32_MAX ? ref.index : INT32_MAX);
        return infer_labels_check_one(cfg, (long long)ref.index, "label", msg, msglen);
    }
    http_error e = api_infer_data_image(r->base.ctx, ref_text, cfg, x, label, msg, msglen);
    if (e != HTTP_ERR_NONE || !vae_config_is_conditional(cfg))
        return e;
    return api_infer_data_label(cfg, ref_text, *label, msg, msglen);
}

static http_error run_interpolate_get(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    http_error e = HTTP_ERR_NONE;
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    int D = vae_config_input_dim(cfg), L = cfg->latent;
    float *x = NULL;          /* owned: the two end images */
    float *ends = NULL;       /* owned: their mu, then logvar scratch */
    vae_workspace *ws = NULL; /* owned */

    char *etag = r->etag, key[CACHE_KEY_MAX];
    interp_tags(r, &r->info, etag, key);
    const char *cache_control = interp_cache_control(r);
    /* The polling thread looked this very key up and missed: one lookup, one
     * hit or miss counted, per request. */
    int checked = r->cache_checked && !strcmp(key, r->cache_key);
    if (r->base.ctx->responses)
        snprintf(r->cache_key, sizeof r->cache_key, "%s", key);

    if (compute_request_not_modified(&r->base, etag, cache_control))
        goto end;
    if (r->base.ctx->responses && !checked) {
        response_body *b = NULL; /* a reference, handed to the response */
        if (response_cache_get(r->base.ctx->responses, r->cache_key, &b) == RESPONSE_CACHE_OK) {
            interp_answer_cached(r, &r->info, b, etag);
            goto end;
        }
    }
    x = malloc(2 * (size_t)D * sizeof *x);
    ends = calloc(4 * (size_t)L, sizeof *ends);
    ws = vae_workspace_new(m, 2); /* the ends */
    if (!x || !ends || !ws) {
        snprintf(msg, msglen, "out of memory");
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    int image[2], labels[2];
    if ((e = get_end(r, r->from, cfg, x, &image[0], &labels[0], msg, msglen)) != HTTP_ERR_NONE ||
        (e = get_end(r, r->to, cfg, x + D, &image[1], &labels[1], msg, msglen)) != HTTP_ERR_NONE)
        goto end;
    const int *y = vae_config_is_conditional(cfg) ? labels : NULL;
    /* Both ends in one batch: mu (2, L) into ends, logvar after it; an end
     * that is a label keeps the latent 0. */
    int rc = VAE_OK;
    if (image[0] && image[1])
        rc = vae_encode_cond(m, ws, x, y, 2, ends, ends + 2 * L);
    else
        for (int i = 0; i < 2 && rc == VAE_OK; i++)
            if (image[i])
                rc = vae_encode_cond(m, ws, x + (size_t)i * D, y ? y + i : NULL, 1,
                                     ends + (size_t)i * L, ends + 2 * L);
    if (rc != VAE_OK) {
        snprintf(msg, msglen, "encoding failed");
        e = HTTP_ERR_INTERNAL;
        goto end;
    }
    e = interpolate_walk(r, h, ends, ends + L, labels[0], labels[1], msg, msglen);
end:
    vae_workspace_free(ws);
    free(x);
    free(ends);
    return e;
}

/* At most what request r can make the daemon allocate on model cfg, known
 * before anything is parsed or allocated: its batch (for a body, the most
 * images or latents its length can hold) through the model's workspace
 * (vae_config_workspace_bytes), inputs, latents and outputs as floats, the
 * answer in its format, and for a JSON body one cJSON node a value. */
static size_t infer_memory_bytes(const infer_request *r, const vae_config *cfg, size_t *answer)
{
    size_t D = (size_t)vae_config_input_dim(cfg), L = (size_t)cfg->latent;
    size_t n, values = 0;
    switch (r->kind) {
    case INFER_SAMPLE:
        n = (size_t)r->n;
        break;
    case INFER_INTERP_GET:
        n = (size_t)r->steps + 2;
        break;
    case INFER_INTERP_POST:
        n = API_INFER_MAX_STEPS + 2;
        values = r->body_len / 2 + 1;
        break;
    case INFER_DECODE: /* each number is at least two bytes ("0,") */
        n = r->body_len / (2 * L) + 1;
        if (n > API_INFER_MAX_N)
            n = API_INFER_MAX_N;
        values = r->body_len / 2 + 1;
        break;
    default:
        n = api_infer_body_images(cfg, r->body_kind, r->body_len, &values);
        break;
    }
    *answer = api_infer_answer_bytes(r->fmt, n, D, L, (int)r->scale);
    return vae_config_workspace_bytes(cfg, (int)n) + 3 * n * (D + L) * sizeof(float) + *answer +
           values * sizeof(cJSON);
}

http_error api_infer_check_grid(http_format fmt, const vae_config *cfg, int n, int cols, int scale,
                                char *msg, size_t msglen)
{
    char why[256] = "";
    if (fmt != HTTP_FORMAT_PNG ||
        image_grid_fits(n, cfg->height, cfg->width, cols, scale, why, sizeof why) == VAE_OK)
        return HTTP_ERR_NONE;
    metrics_count_refusal(METRICS_LIMIT_PNG_GRID);
    return grid_refusal(why, msg, msglen);
}

size_t api_infer_answer_bytes(http_format fmt, size_t n, size_t D, size_t L, int scale)
{
    size_t k = (size_t)scale;
    return fmt == HTTP_FORMAT_JSON  ? n * (D + L) * (JSON_NUM_FLOAT_MAX + 1)
           : fmt == HTTP_FORMAT_NPY ? n * D * sizeof(float)
                                    : 2 * n * D * k * k; /* rows, then the deflated copy */
}

size_t api_infer_body_images(const vae_config *cfg, api_infer_body kind, size_t len,
                             size_t *json_values)
{
    size_t D = (size_t)vae_config_input_dim(cfg), n;
    *json_values = 0;
    if (kind == API_INFER_BODY_PNG)
        return 1;
    if (kind == API_INFER_BODY_NPY) { /* four bytes a float after the header */
        n = len / (4 * D) + 1;
    } else { /* each number at least two bytes ("0,") */
        n = len / (2 * D) + 1;
        *json_values = len / 2 + 1;
    }
    return n < API_INFER_MAX_N ? n : API_INFER_MAX_N;
}

http_error api_infer_check_memory(http_ctx *ctx, const vae_config *cfg, size_t need, char *msg,
                                  size_t msglen)
{
    size_t limit = ctx->opts->request_mem_mb << 20;
    if (!limit || need <= limit)
        return HTTP_ERR_NONE;
    metrics_count_refusal(METRICS_LIMIT_REQUEST_MEMORY);
    snprintf(msg, msglen,
             "this request could need %zu MiB on this model (%dx%dx%d, latent %d), more than "
             "the %zu MiB one request may use (--request-mem-mb): ask for fewer images or "
             "steps, or send a smaller body",
             (need + (1u << 20) - 1) >> 20, cfg->channels, cfg->height, cfg->width, cfg->latent,
             limit >> 20);
    return HTTP_ERR_UNPROCESSABLE;
}

/* The rows r held between its run_* step and its answer. */
static void infer_rows_free(infer_request *r)
{
    free(r->x);
    free(r->z);
    free(r->mu);
    free(r->logvar);
    free(r->weights);
    r->x = r->z = r->mu = r->logvar = r->weights = NULL;
    r->engine = 0;
}

/* r's first step: the model acquired into *h (unless held already), the
 * memory bound checked, then its kind's run_* (which leaves the engine call
 * in r->eng, or an answer, or returns the error). */
static http_error infer_prepare(infer_request *r, model_handle **h, size_t *need, char *msg,
                                size_t msglen)
{
    *h = r->held; /* released by the caller */
    r->held = NULL;
    http_error e = *h ? HTTP_ERR_NONE : infer_acquire(r, h, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    size_t answer = 0;
    *need = infer_memory_bytes(r, &(*h)->model.cfg, &answer);
    if ((e = api_infer_check_memory(r->base.ctx, &(*h)->model.cfg, *need, msg, msglen)) !=
        HTTP_ERR_NONE)
        return e;
    /* The answer may be held long after this request's work is done, by a
     * client that does not read it: it must fit the answers held now. */
    if ((e = compute_request_reserve_answer(&r->base, answer, msg, msglen)) != HTTP_ERR_NONE)
        return e;
    switch (r->kind) {
    case INFER_SAMPLE:
        return run_sample(r, *h, msg, msglen);
    case INFER_ENCODE:
        return run_encode(r, *h, msg, msglen);
    case INFER_DECODE:
        return run_decode(r, *h, msg, msglen);
    case INFER_INTERP_POST:
        return run_interpolate_post(r, *h, msg, msglen);
    case INFER_INTERP_GET:
        return run_interpolate_get(r, *h, msg, msglen);
    }
    return HTTP_ERR_INTERNAL;
}

/* r's answer once its engine call ran. */
static http_error infer_answer(infer_request *r, const model_handle *h, char *msg, size_t msglen)
{
    if (r->eng.status != VAE_OK) {
        /* The sizes and labels were checked: a failure here is ours (or
         * the memory's). */
        int enc = r->eng.op == INFER_BATCH_ENCODE;
        snprintf(msg, msglen, "%s", r->eng.status == VAE_ERR_NOMEM ? "out of memory"
                                    : enc                            ? "encoding failed"
                                                                     : "decoding failed");
        return r->eng.status == VAE_ERR_NOMEM ? HTTP_ERR_UNAVAILABLE : HTTP_ERR_INTERNAL;
    }
    switch (r->kind) {
    case INFER_SAMPLE:
        return sample_answer(r, h, msg, msglen);
    case INFER_ENCODE:
        return encode_answer(r, h, msg, msglen);
    case INFER_DECODE:
        return decode_answer(r, h, msg, msglen);
    case INFER_INTERP_POST:
    case INFER_INTERP_GET:
        return interpolate_answer(r, h, msg, msglen);
    }
    return HTTP_ERR_INTERNAL;
}

/* The engine calls that run_* left in rs[0..n) (only requests with one
 * are gathered; infer_batch stacks those of one model), then each one's
 * answer, its model handle released and its connection resumed at once (b). */
static void infer_flush(infer_request **rs, model_handle **hs, int n, compute_batch *b)
{
    infer_batch_item *items[COMPUTE_POOL_MAX_BATCH] = {0};
    for (int i = 0; i < n; i++)
        items[i] = &rs[i]->eng;
    infer_batch_run(items, n);
    for (int i = 0; i < n; i++) {
        infer_request *r = rs[i];
        char msg[HTTP_MESSAGE_MAX] = "";
        http_error e = infer_answer(r, hs[i], msg, sizeof msg);
        if (e != HTTP_ERR_NONE)
            compute_request_fail(&r->base, e, "%s", msg);
        infer_rows_free(r);
        model_cache_release(r->base.ctx->cache, hs[i]);
        compute_request_batch_done(&r->base, b, r->batch_index);
    }
}

/* The work of n requests given together (compute_pool's batching; one, on
 * a compute thread or, when cheap, the polling thread, through infer_run):
 * each parses and checks its input and draws its latents as it would alone,
 * then one engine call per model runs their rows (infer_batch), then each
 * writes its answer, error or not, into its base.resp, and its connection
 * resumes as soon as it has (b; NULL when run alone). What the members
 * hold between the steps is bounded like one request's: the batch is
 * flushed whenever the next member's memory bound would take the sum past
 * --request-mem-mb. */
static void infer_run_batch(compute_request **crs, int n, compute_batch *b)
{
    infer_request *rs[COMPUTE_POOL_MAX_BATCH];
    model_handle *hs[COMPUTE_POOL_MAX_BATCH];
    size_t limit = crs[0]->ctx->opts->request_mem_mb << 20, held = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        infer_request *r = (infer_request *)crs[i];
        r->batch_index = i;
        char msg[HTTP_MESSAGE_MAX] = "";
        model_handle *h = NULL;
        size_t need = 0;
        http_error e = infer_prepare(r, &h, &need, msg, sizeof msg);
        if (e != HTTP_ERR_NONE)
            compute_request_fail(&r->base, e, "%s", msg);
        if (e != HTTP_ERR_NONE || !r->engine) { /* answered already: an error, a 304, a kept body */
            infer_rows_free(r);
            model_cache_release(r->base.ctx->cache, h);
            compute_request_batch_done(&r->base, b, i);
            continue;
        }
        if (k && limit && held + need > limit) {
            infer_flush(rs, hs, k, b);
            k = 0;
            held = 0;
        }
        rs[k] = r;
        hs[k++] = h;
        held += need;
    }
    if (k)
        infer_flush(rs, hs, k, b);
}

static void infer_run(compute_request *cr)
{
    infer_run_batch(&cr, 1, NULL);
}
