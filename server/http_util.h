/* http_util: what every vaed endpoint shares — error bodies, typed responses
 * and strict query-parameter parsing.
 *
 *     long long n;
 *     char msg[160];
 *     if (http_query_int(c, "n", 1, 256, 16, &n, msg, sizeof msg))
 *         return http_send_error(c, HTTP_ERR_BAD_REQUEST, "%s", msg);
 *     ...
 *     return http_send_buffer(c, MHD_HTTP_OK, "image/png", png, png_len); // takes png
 *
 * Every error leaves the daemon as {"error":{"code":"...","message":"..."}}
 * with Content-Type application/json; the one table in http_util.c maps each
 * http_error to its HTTP status and code string, so a new error kind is one
 * new row there and one new enum value here.
 *
 * The send functions queue a response and return what MHD_queue_response
 * returned; on allocation failure they return MHD_NO, which makes MHD drop
 * the connection (the only honest answer when we cannot build one).
 */
#ifndef HTTP_UTIL_H
#define HTTP_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <microhttpd.h>

typedef enum {
    HTTP_ERR_BAD_REQUEST = 0,    /* 400 bad_request */
    HTTP_ERR_NOT_FOUND,          /* 404 not_found */
    HTTP_ERR_MODEL_NOT_FOUND,    /* 404 model_not_found */
    HTTP_ERR_METHOD_NOT_ALLOWED, /* 405 method_not_allowed */
    HTTP_ERR_PAYLOAD_TOO_LARGE,  /* 413 payload_too_large */
    HTTP_ERR_INTERNAL,           /* 500 internal */
    HTTP_ERR_NO_MODEL,           /* 503 no_model */
    HTTP_ERR_UNAVAILABLE,        /* 503 unavailable */
    /* Added with the registry issue (api_models.c, auth in http_server.c). */
    HTTP_ERR_UNAUTHORIZED,       /* 401 unauthorized */
    HTTP_ERR_CONFLICT,           /* 409 conflict */
    HTTP_ERR_UNSUPPORTED_MEDIA,  /* 415 unsupported_media_type */
    HTTP_ERR_INVALID_CHECKPOINT, /* 422 invalid_checkpoint */
    /* Added with the inference issue (api_infer.c). */
    HTTP_ERR_NOT_ACCEPTABLE,     /* 406 not_acceptable: Accept excludes every format offered */
    HTTP_ERR_LENGTH_REQUIRED,    /* 411 length_required */
    HTTP_ERR_UNPROCESSABLE,      /* 422 unprocessable: well-formed, but wrong sizes or values */
    HTTP_ERR_TOO_MANY_REQUESTS,  /* 429 too_many_requests: the compute queue is full */
    HTTP_ERR_COUNT,
    /* Not an error: what a check returns when the request may go on. Outside
     * the table (http_error_status gives 500 for it, as for any value there). */
    HTTP_ERR_NONE = -1
} http_error;

/* The longest error message sent, with its NUL; the size of the message
 * buffers that checks fill. */
#define HTTP_MESSAGE_MAX 512

/* The HTTP status and the machine-readable code of an error kind. */
unsigned int http_error_status(http_error e);
const char *http_error_code(http_error e);

/* Builds (does not queue) the JSON error response for e with message; the
 * caller owns the response (MHD_destroy_response after queueing), and may add
 * headers such as Allow first. NULL when out of memory. */
struct MHD_Response *http_error_response(http_error e, const char *message);

/* Queues the error response for e with a printf-style message (at most
 * HTTP_MESSAGE_MAX - 1 bytes of it). */
enum MHD_Result http_send_error(struct MHD_Connection *c, http_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with one more header, such as Allow on a 405, WWW-Authenticate on
 * a 401 or Retry-After on a 429. */
enum MHD_Result http_send_error_with_header(struct MHD_Connection *c, http_error e,
                                            const char *header, const char *value,
                                            const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Queues root printed compactly as application/json; takes root (freed here
 * in every case). */
enum MHD_Result http_send_json(struct MHD_Connection *c, unsigned int status, cJSON *root);

/* Queues buf as the body with content_type; takes buf (malloc'd; freed by MHD
 * when the response is done, or here on failure). */
enum MHD_Result http_send_buffer(struct MHD_Connection *c, unsigned int status,
                                 const char *content_type, uint8_t *buf, size_t len);

/* Strict parsers: decimal digits only (no sign, no spaces, no trailing
 * characters), at least one digit, no overflow. Return 0 on success, -1
 * otherwise (*out untouched). */
int http_parse_i64(const char *s, int64_t *out);
int http_parse_u64(const char *s, uint64_t *out);

/* Query parameters. Each returns 0 and sets *out (the default when the
 * parameter is absent), or -1 with a message naming the parameter in msg. */
int http_query_int(struct MHD_Connection *c, const char *name, int64_t lo, int64_t hi,
                   int64_t def, int64_t *out, char *msg, size_t msglen);
/* *present says whether the parameter was given. */
int http_query_u64(struct MHD_Connection *c, const char *name, int *present, uint64_t *out,
                   char *msg, size_t msglen);
/* A non-empty string of at most max_len bytes, or NULL when absent; the
 * string belongs to MHD and lives as long as the request. */
int http_query_str(struct MHD_Connection *c, const char *name, size_t max_len,
                   const char **out, char *msg, size_t msglen);

/* 1 when an If-None-Match header lists etag (a quoted entity tag as sent in
 * ETag) or is "*"; weak tags compare by their opaque part (RFC 9110 weak
 * comparison, which GET's 304 uses). */
int http_etag_listed(const char *if_none_match, const char *etag);

#endif
