#include "server/http_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The single mapping from an error kind to what the client sees. */
static const struct {
    unsigned int status;
    const char *code;
} http_error_table[HTTP_ERR_COUNT] = {
    [HTTP_ERR_BAD_REQUEST] = {MHD_HTTP_BAD_REQUEST, "bad_request"},
    [HTTP_ERR_NOT_FOUND] = {MHD_HTTP_NOT_FOUND, "not_found"},
    [HTTP_ERR_MODEL_NOT_FOUND] = {MHD_HTTP_NOT_FOUND, "model_not_found"},
    [HTTP_ERR_METHOD_NOT_ALLOWED] = {MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed"},
    [HTTP_ERR_PAYLOAD_TOO_LARGE] = {MHD_HTTP_CONTENT_TOO_LARGE, "payload_too_large"},
    [HTTP_ERR_INTERNAL] = {MHD_HTTP_INTERNAL_SERVER_ERROR, "internal"},
    [HTTP_ERR_NO_MODEL] = {MHD_HTTP_SERVICE_UNAVAILABLE, "no_model"},
    [HTTP_ERR_UNAVAILABLE] = {MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable"},
    [HTTP_ERR_UNAUTHORIZED] = {MHD_HTTP_UNAUTHORIZED, "unauthorized"},
    [HTTP_ERR_CONFLICT] = {MHD_HTTP_CONFLICT, "conflict"},
    [HTTP_ERR_UNSUPPORTED_MEDIA] = {MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"},
    [HTTP_ERR_INVALID_CHECKPOINT] = {MHD_HTTP_UNPROCESSABLE_CONTENT, "invalid_checkpoint"},
    [HTTP_ERR_NOT_ACCEPTABLE] = {MHD_HTTP_NOT_ACCEPTABLE, "not_acceptable"},
    [HTTP_ERR_LENGTH_REQUIRED] = {MHD_HTTP_LENGTH_REQUIRED, "length_required"},
    [HTTP_ERR_UNPROCESSABLE] = {MHD_HTTP_UNPROCESSABLE_CONTENT, "unprocessable"},
    [HTTP_ERR_TOO_MANY_REQUESTS] = {MHD_HTTP_TOO_MANY_REQUESTS, "too_many_requests"},
    [HTTP_ERR_FORBIDDEN] = {MHD_HTTP_FORBIDDEN, "forbidden"},
    [HTTP_ERR_INSUFFICIENT_STORAGE] = {MHD_HTTP_INSUFFICIENT_STORAGE, "insufficient_storage"},
    [HTTP_ERR_DUPLICATE_PARAMETER] = {MHD_HTTP_BAD_REQUEST, "duplicate_parameter"},
    [HTTP_ERR_URI_TOO_LONG] = {MHD_HTTP_URI_TOO_LONG, "uri_too_long"},
    [HTTP_ERR_ANSWERS_HELD] = {MHD_HTTP_SERVICE_UNAVAILABLE, "answers_held"},
};

unsigned int http_error_status(http_error e)
{
    if ((unsigned)e >= HTTP_ERR_COUNT)
        e = HTTP_ERR_INTERNAL;
    return http_error_table[e].status;
}

const char *http_error_code(http_error e)
{
    if ((unsigned)e >= HTTP_ERR_COUNT)
        e = HTTP_ERR_INTERNAL;
    return http_error_table[e].code;
}

/* ---- each service's status as an http_error ------------------------------
 * Switches without a default: a status value added to a service and not
 * mapped here is a compile error (-Wswitch under -Werror), not a silent 500. */

http_error http_error_from_registry(registry_status s)
{
    switch (s) {
    case REGISTRY_OK:
        return HTTP_ERR_NONE;
    case REGISTRY_ERR_NOT_FOUND:
        return HTTP_ERR_MODEL_NOT_FOUND;
    case REGISTRY_ERR_CONFLICT:
        return HTTP_ERR_CONFLICT;
    case REGISTRY_ERR_ARG:
        return HTTP_ERR_BAD_REQUEST;
    case REGISTRY_ERR_NOMEM:
        return HTTP_ERR_UNAVAILABLE;
    case REGISTRY_ERR_DB:
        return HTTP_ERR_INTERNAL;
    case REGISTRY_ERR_UNAVAILABLE:
        return HTTP_ERR_UNAVAILABLE;
    case REGISTRY_ERR_FULL:
        return HTTP_ERR_INSUFFICIENT_STORAGE;
    }
    return HTTP_ERR_INTERNAL;
}

http_error http_error_from_model_cache(model_cache_status s)
{
    switch (s) {
    case MODEL_CACHE_OK:
        return HTTP_ERR_NONE;
    case MODEL_CACHE_ERR_NOT_FOUND:
        return HTTP_ERR_MODEL_NOT_FOUND;
    case MODEL_CACHE_ERR_NO_MODEL:
        return HTTP_ERR_NO_MODEL;
    case MODEL_CACHE_ERR_NOMEM:
        return HTTP_ERR_UNAVAILABLE;
    case MODEL_CACHE_ERR_LOAD:
    case MODEL_CACHE_ERR_DB:
        return HTTP_ERR_INTERNAL;
    }
    return HTTP_ERR_INTERNAL;
}

http_error http_error_from_vae(vae_status s)
{
    switch (s) {
    case VAE_OK:
        return HTTP_ERR_NONE;
    case VAE_ERR_ARG:
    case VAE_ERR_FORMAT:
    case VAE_ERR_NONFINITE:
    case VAE_ERR_TOO_LARGE:
    case VAE_ERR_TOO_MANY:
        return HTTP_ERR_INVALID_CHECKPOINT;
    case VAE_ERR_NOMEM:
    case VAE_ERR_CANCELLED:
        return HTTP_ERR_UNAVAILABLE;
    case VAE_ERR_IO:
        return HTTP_ERR_INTERNAL;
    }
    return HTTP_ERR_INTERNAL;
}

http_error http_error_from_jobs(jobs_pool_status s)
{
    switch (s) {
    case JOBS_POOL_OK:
        return HTTP_ERR_NONE;
    case JOBS_POOL_ERR_INVALID:
        return HTTP_ERR_UNPROCESSABLE;
    case JOBS_POOL_ERR_NOT_FOUND:
        return HTTP_ERR_NOT_FOUND;
    case JOBS_POOL_ERR_CONFLICT:
        return HTTP_ERR_CONFLICT;
    case JOBS_POOL_ERR_STOPPING:
    case JOBS_POOL_ERR_NOMEM:
    case JOBS_POOL_ERR_UNAVAILABLE:
        return HTTP_ERR_UNAVAILABLE;
    case JOBS_POOL_ERR_DB:
    case JOBS_POOL_ERR_IO:
        return HTTP_ERR_INTERNAL;
    case JOBS_POOL_ERR_FULL:
        return HTTP_ERR_TOO_MANY_REQUESTS;
    }
    return HTTP_ERR_INTERNAL;
}

http_error http_error_from_data_cache(data_cache_status s)
{
    switch (s) {
    case DATA_CACHE_OK:
        return HTTP_ERR_NONE;
    case DATA_CACHE_ERR_FULL:
        return HTTP_ERR_UNAVAILABLE;
    case DATA_CACHE_ERR_LOAD:
        return HTTP_ERR_NOT_FOUND;
    }
    return HTTP_ERR_INTERNAL;
}

/* ---- responses ------------------------------------------------------------ */

static struct MHD_Response *json_response(cJSON *root)
{
    char *text = cJSON_PrintUnformatted(root); /* owned: handed to the response */
    if (!text)
        return NULL;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free);
    if (!resp) {
        free(text);
        return NULL;
    }
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") !=
        MHD_YES) {
        MHD_destroy_response(resp);
        return NULL;
    }
    return resp;
}

struct MHD_Response *http_error_response(http_error e, const char *message)
{
    struct MHD_Response *resp = NULL;
    cJSON *root = cJSON_CreateObject(); /* owned: freed at end */
    cJSON *error = cJSON_AddObjectToObject(root, "error");
    if (!error || !cJSON_AddStringToObject(error, "code", http_error_code(e)) ||
        !cJSON_AddStringToObject(error, "message", message ? message : ""))
        goto end;
    resp = json_response(root);
end:
    cJSON_Delete(root);
    return resp;
}

static enum MHD_Result queue_and_destroy(struct MHD_Connection *c, unsigned int status,
                                         struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The error answer for e with fmt's message, and one more header when
 * header is not NULL. */
static enum MHD_Result send_error_v(struct MHD_Connection *c, http_error e, const char *header,
                                    const char *value, const char *fmt, va_list ap)
{
    char message[HTTP_MESSAGE_MAX];
    vsnprintf(message, sizeof message, fmt, ap);
    struct MHD_Response *resp = http_error_response(e, message);
    if (resp && header && MHD_add_response_header(resp, header, value) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    return queue_and_destroy(c, http_error_status(e), resp);
}

enum MHD_Result http_send_error(struct MHD_Connection *c, http_error e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = send_error_v(c, e, NULL, NULL, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result http_send_error_with_header(struct MHD_Connection *c, http_error e,
                                            const char *header, const char *value,
                                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = send_error_v(c, e, header, value, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result http_send_refusal(struct MHD_Connection *c, metrics_limit limit, http_error e,
                                  const char *retry_after, const char *fmt, ...)
{
    metrics_count_refusal(limit);
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = send_error_v(c, e, retry_after ? MHD_HTTP_HEADER_RETRY_AFTER : NULL,
                                       retry_after, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result http_send_json(struct MHD_Connection *c, unsigned int status, cJSON *root)
{
    struct MHD_Response *resp = root ? json_response(root) : NULL;
    cJSON_Delete(root);
    return queue_and_destroy(c, status, resp);
}

enum MHD_Result http_send_buffer(struct MHD_Connection *c, unsigned int status,
                                 const char *content_type, uint8_t *buf, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, buf, free);
    if (!resp) {
        free(buf);
        return MHD_NO;
    }
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    return queue_and_destroy(c, status, resp);
}

/* ---- the budget of answers held ------------------------------------------- */

int http_budget_reserve(http_budget *b, size_t n)
{
    if (!b)
        return 0;
    size_t held = __atomic_add_fetch(&b->held, n, __ATOMIC_RELAXED);
    if (b->max && held > b->max && held != n) {
        __atomic_sub_fetch(&b->held, n, __ATOMIC_RELAXED);
        return -1;
    }
    return 0;
}

void http_budget_release(http_budget *b, size_t n)
{
    if (b && n)
        __atomic_sub_fetch(&b->held, n, __ATOMIC_RELAXED);
}

size_t http_budget_held(const http_budget *b)
{
    return b ? __atomic_load_n(&b->held, __ATOMIC_RELAXED) : 0;
}

/* What a budgeted response's free callback needs: the buffer and its share. */
typedef struct {
    http_budget *budget;
    void *buf;
    size_t len;
} budget_share;

static void budget_share_free(void *cls)
{
    budget_share *s = cls;
    http_budget_release(s->budget, s->len);
    free(s->buf);
    free(s);
}

struct MHD_Response *http_budget_response(http_budget *b, size_t reserved, void *buf, size_t len)
{
    budget_share *s = malloc(sizeof *s); /* owned by the response: freed in its callback */
    struct MHD_Response *resp =
        s ? MHD_create_response_from_buffer_with_free_callback_cls(len, buf, budget_share_free, s)
          : NULL;
    if (!resp) {
        http_budget_release(b, reserved);
        free(buf);
        free(s);
        return NULL;
    }
    *s = (budget_share){b, buf, len};
    /* The estimate becomes the answer's real size. */
    if (b && len > reserved)
        __atomic_add_fetch(&b->held, len - reserved, __ATOMIC_RELAXED);
    else
        http_budget_release(b, reserved - len);
    return resp;
}

/* ---- content negotiation -------------------------------------------------- */

static const char *const format_names[HTTP_FORMAT_COUNT] = {"png", "json", "npy"};
static const char *const format_mimes[HTTP_FORMAT_COUNT] = {"image/png", "application/json",
                                                            "application/x-npy"};

const char *http_format_name(http_format f)
{
    return (unsigned)f < HTTP_FORMAT_COUNT ? format_names[f] : "";
}

const char *http_format_mime(http_format f)
{
    return (unsigned)f < HTTP_FORMAT_COUNT ? format_mimes[f] : "";
}

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

double http_accept_q(const char *accept, const char *mime)
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

http_error http_format_choose(const char *format, const char *accept, unsigned offered,
                              http_format *out, char *msg, size_t msglen)
{
    if (format) {
        for (int f = 0; f < HTTP_FORMAT_COUNT; f++)
            if ((offered & (1u << f)) && !strcmp(format, format_names[f])) {
                *out = (http_format)f;
                return HTTP_ERR_NONE;
            }
        snprintf(msg, msglen, "parameter 'format' must be %s",
                 offered == HTTP_OFFER_JSON ? "json" : "png, json or npy");
        return HTTP_ERR_BAD_REQUEST;
    }
    int best = -1;
    double best_q = 0.0;
    for (int f = 0; f < HTTP_FORMAT_COUNT; f++) {
        if (!(offered & (1u << f)))
            continue;
        double q = (accept && *accept) ? http_accept_q(accept, format_mimes[f]) : 1.0;
        if (q > best_q) {
            best_q = q;
            best = f;
        }
    }
    if (best < 0) {
        char offered_list[96] = "";
        for (int f = 0; f < HTTP_FORMAT_COUNT; f++)
            if (offered & (1u << f)) {
                size_t used = strlen(offered_list);
                snprintf(offered_list + used, sizeof offered_list - used, "%s%s",
                         used ? ", " : "", format_mimes[f]);
            }
        snprintf(msg, msglen,
                 "the Accept header excludes every format this endpoint offers (%s)",
                 offered_list);
        return HTTP_ERR_NOT_ACCEPTABLE;
    }
    *out = (http_format)best;
    return HTTP_ERR_NONE;
}

http_error http_negotiate(struct MHD_Connection *c, unsigned offered, http_format *out,
                          char *msg, size_t msglen)
{
    const char *format = NULL;
    if (http_query_str(c, "format", 16, &format, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    return http_format_choose(format,
                              MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_ACCEPT),
                              offered, out, msg, msglen);
}

/* ---- strict parsers -------------------------------------------------------- */

int http_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int http_parse_i64(const char *s, int64_t *out)
{
    uint64_t v;
    if (http_parse_u64(s, &v) || v > (uint64_t)INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* 1: present with *value (maybe NULL for "?name" without '='), 0: absent. */
static int query_lookup(struct MHD_Connection *c, const char *name, const char **value)
{
    *value = NULL;
    return MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, name, strlen(name), value,
                                         NULL) == MHD_YES;
}

int http_query_int(struct MHD_Connection *c, const char *name, int64_t lo, int64_t hi,
                   int64_t def, int64_t *out, char *msg, size_t msglen)
{
    const char *value;
    int64_t v;
    if (!query_lookup(c, name, &value)) {
        *out = def;
        return 0;
    }
    if (http_parse_i64(value, &v) || v < lo || v > hi) {
        snprintf(msg, msglen, "parameter '%s' must be an integer from %lld to %lld", name,
                 (long long)lo, (long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}

int http_query_limited(struct MHD_Connection *c, const char *name, int64_t lo, int64_t hi,
                       metrics_limit limit, int64_t def, int64_t *out, char *msg, size_t msglen)
{
    if (!http_query_int(c, name, lo, hi, def, out, msg, msglen))
        return 0;
    const char *value;
    int64_t v;
    if (query_lookup(c, name, &value) && value && *value && !value[strspn(value, "0123456789")] &&
        (http_parse_i64(value, &v) || v > hi)) /* digits only: above hi, or past int64 */
        metrics_count_refusal(limit);
    return -1;
}

/* The names of a query, gathered for comparing: in a buffer on the caller's
 * stack for the few names a real request has (no allocation per request),
 * on the heap past it. */
#define QUERY_NAMES_LOCAL 32
typedef struct {
    const char **names; /* local, or owned when it is not */
    const char *local[QUERY_NAMES_LOCAL];
    size_t n, cap;
    int nomem;
} query_names;

static enum MHD_Result gather_name(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    (void)value;
    query_names *q = cls;
    if (q->n == q->cap) {
        size_t cap = 2 * q->cap;
        const char **grown = malloc(cap * sizeof *grown);
        if (!grown) {
            q->nomem = 1;
            return MHD_NO;
        }
        memcpy(grown, q->names, q->n * sizeof *grown);
        if (q->names != q->local)
            free(q->names);
        q->names = grown;
        q->cap = cap;
    }
    q->names[q->n++] = key ? key : "";
    return MHD_YES;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A name of names[0..n) that is given twice, or NULL: pairs for the few of
 * a real request, sorted past a handful (O(n log n) for a hostile URL). */
static const char *repeated_name(const char **names, size_t n)
{
    if (n <= 8) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (!strcmp(names[i], names[j]))
                    return names[i];
        return NULL;
    }
    qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(names[i - 1], names[i]))
            return names[i];
    return NULL;
}

int http_query_repeated(struct MHD_Connection *c, char *msg, size_t msglen)
{
    query_names q = {.cap = QUERY_NAMES_LOCAL};
    q.names = q.local;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, gather_name, &q);
    int rc = 0;
    const char *twice = q.nomem ? NULL : repeated_name(q.names, q.n);
    if (q.nomem) {
        snprintf(msg, msglen, "out of memory reading the query");
        rc = -2;
    } else if (twice) {
        /* the name as a message may hold it: printable ASCII, bounded */
        char shown[64];
        size_t k = 0;
        for (const char *p = twice; *p && k + 1 < sizeof shown; p++)
            shown[k++] = (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') ? *p : '?';
        shown[k] = '\0';
        snprintf(msg, msglen, "parameter '%s' is given more than once (each at most once)",
                 shown);
        rc = -1;
    }
    if (q.names != q.local)
        free(q.names);
    return rc;
}

/* RFC 9110 5.6.2 tchar */
static int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

typedef struct {
    int hosts, lengths, codings, chunked_only; /* counts of each header; TE's value is "chunked" */
    int bad;                                   /* 1: a name, 2: a value */
    char name[48];                             /* the first bad header's name, printable */
} header_scan;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    header_scan *h = cls;
    int bad = key_size == 0 ? 1 : 0;
    for (size_t i = 0; i < key_size && !bad; i++)
        bad = is_tchar((unsigned char)key[i]) ? 0 : 1;
    for (size_t i = 0; value && i < value_size && !bad; i++) {
        unsigned char ch = (unsigned char)value[i];
        bad = (ch < 0x20 && ch != '\t') || ch == 0x7f ? 2 : 0;
    }
    if (bad) {
        size_t k = 0;
        for (size_t i = 0; i < key_size && k + 1 < sizeof h->name; i++)
            h->name[k++] = is_tchar((unsigned char)key[i]) ? key[i] : '?';
        h->name[k] = '\0';
        h->bad = bad;
        return MHD_NO;
    }
    if (!strcasecmp(key, MHD_HTTP_HEADER_HOST))
        h->hosts++;
    else if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH))
        h->lengths++;
    else if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
        h->codings++;
        h->chunked_only = value && !strcasecmp(value, "chunked");
    }
    return MHD_YES;
}

int http_headers_malformed(struct MHD_Connection *c, char *msg, size_t msglen)
{
    header_scan h = {0};
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, scan_header, &h);
    if (h.bad == 1)
        snprintf(msg, msglen,
                 "header name '%s' is not a token (letters, digits, !#$%%&'*+-.^_`|~; no space "
                 "before the colon)",
                 h.name);
    else if (h.bad == 2)
        snprintf(msg, msglen, "header %s holds a control byte", h.name);
    else if (h.hosts > 1 || h.lengths > 1 || h.codings > 1)
        snprintf(msg, msglen, "%s is given more than once",
                 h.hosts > 1 ? "Host" : h.lengths > 1 ? "Content-Length" : "Transfer-Encoding");
    else if (h.codings && !h.chunked_only)
        snprintf(msg, msglen,
                 "Transfer-Encoding: only \"chunked\" is understood, alone (send the body "
                 "uncompressed)");
    else if (h.codings && h.lengths)
        snprintf(msg, msglen, "Content-Length and Transfer-Encoding are both given (send one)");
    else
        return 0;
    return -1;
}

int http_query_u64(struct MHD_Connection *c, const char *name, int *present, uint64_t *out,
                   char *msg, size_t msglen)
{
    const char *value;
    *present = query_lookup(c, name, &value);
    if (!*present)
        return 0;
    if (http_parse_u64(value, out)) {
        snprintf(msg, msglen, "parameter '%s' must be an unsigned 64-bit decimal integer", name);
        return -1;
    }
    return 0;
}

int http_query_str(struct MHD_Connection *c, const char *name, size_t max_len,
                   const char **out, char *msg, size_t msglen)
{
    const char *value;
    *out = NULL;
    if (!query_lookup(c, name, &value))
        return 0;
    if (!value || !*value || strlen(value) > max_len) {
        snprintf(msg, msglen, "parameter '%s' must be a non-empty string of at most %zu bytes",
                 name, max_len);
        return -1;
    }
    *out = value;
    return 0;
}

int http_etag_listed(const char *if_none_match, const char *etag)
{
    size_t etag_len = strlen(etag);
    const char *p = if_none_match;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t len = strcspn(p, ",");
        const char *tag = p;
        p += len;
        while (len && (tag[len - 1] == ' ' || tag[len - 1] == '\t'))
            len--;
        if (len == 1 && tag[0] == '*')
            return 1;
        if (len >= 2 && !strncmp(tag, "W/", 2)) /* weak compares as strong for GET */
            tag += 2, len -= 2;
        if (len == etag_len && !strncmp(tag, etag, etag_len))
            return 1;
    }
    return 0;
}

int http_content_type_is(struct MHD_Connection *c, const char *type)
{
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct)
        return 0;
    ct += strspn(ct, " \t");
    size_t n = strlen(type);
    if (strncasecmp(ct, type, n))
        return 0;
    const char *rest = ct + n;
    rest += strspn(rest, " \t");
    return !*rest || *rest == ';';
}

int http_body_type_accepted(struct MHD_Connection *c, const char *type, int token_set)
{
    if (http_content_type_is(c, type))
        return 1;
    return token_set &&
           (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE) ||
            http_content_type_is(c, "application/x-www-form-urlencoded"));
}

/* ---- the machine's own names ---------------------------------------------- */

/* 1 when name[0..len) is a dotted IPv4 address in 127.0.0.0/8. */
static int is_loopback_v4(const char *name, size_t len)
{
    int parts = 0;
    size_t i = 0;
    unsigned first = 0;
    while (i < len) {
        unsigned v = 0;
        size_t digits = 0;
        while (i < len && name[i] >= '0' && name[i] <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(name[i] - '0');
            i++;
            digits++;
        }
        if (!digits || v > 255)
            return 0;
        if (parts++ == 0)
            first = v;
        if (i < len && (name[i] != '.' || i + 1 == len))
            return 0;
        i += i < len;
    }
    return parts == 4 && first == 127;
}

int http_host_is_local(const char *host, const char *listen_host)
{
    if (!host)
        return 0;
    size_t len = strlen(host);
    /* The port, when given, is digits after the last ':' (after ']' for IPv6). */
    const char *colon = strrchr(host, ':');
    const char *bracket = strrchr(host, ']');
    if (colon && (!bracket || colon > bracket)) {
        if (!colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
            return 0;
        len = (size_t)(colon - host);
    }
    if (!len)
        return 0;
    if ((len == 9 && !strncasecmp(host, "localhost", 9)) || (len == 5 && !strncmp(host, "[::1]", 5)) ||
        is_loopback_v4(host, len))
        return 1;
    return listen_host && *listen_host && strlen(listen_host) == len &&
           !strncasecmp(host, listen_host, len);
}

int http_origin_is_local(const char *origin, const char *listen_host)
{
    if (!origin)
        return 0;
    const char *host = !strncasecmp(origin, "http://", 7)    ? origin + 7
                       : !strncasecmp(origin, "https://", 8) ? origin + 8
                                                             : NULL;
    if (!host || strchr(host, '/'))
        return 0;
    return http_host_is_local(host, listen_host);
}
