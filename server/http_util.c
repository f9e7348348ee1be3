#include "server/http_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

enum MHD_Result http_send_error(struct MHD_Connection *c, http_error e, const char *fmt, ...)
{
    char message[HTTP_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    return queue_and_destroy(c, http_error_status(e), http_error_response(e, message));
}

enum MHD_Result http_send_error_with_header(struct MHD_Connection *c, http_error e,
                                            const char *header, const char *value,
                                            const char *fmt, ...)
{
    char message[HTTP_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    struct MHD_Response *resp = http_error_response(e, message);
    if (resp && MHD_add_response_header(resp, header, value) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    return queue_and_destroy(c, http_error_status(e), resp);
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
