/* http_util: what every vaed endpoint shares — error bodies, the one table
 * from each layer's status to HTTP, content negotiation, typed responses and
 * strict query-parameter parsing.
 *
 *     int64_t n;
 *     char msg[HTTP_MESSAGE_MAX];
 *     if (http_query_int(c, "n", 1, 256, 16, &n, msg, sizeof msg))
 *         return http_send_error(c, HTTP_ERR_BAD_REQUEST, "%s", msg);
 *     http_error e = http_error_from_registry(registry_resolve(reg, ..., msg, sizeof msg));
 *     if (e != HTTP_ERR_NONE)
 *         return http_send_error(c, e, "%s", msg);
 *     ...
 *     return http_send_buffer(c, MHD_HTTP_OK, "image/png", png, png_len); // takes png
 *
 * Every error leaves the daemon as {"error":{"code":"...","message":"..."}}
 * with Content-Type application/json. Two tables in http_util.c decide what
 * a client sees: http_error -> HTTP status and code string, and each
 * service's status -> http_error (http_error_from_*). A new error kind is one
 * new row in the first and one new enum value here; a new service status is
 * one new case in the second (the build fails until it has one: the
 * switches have no default). A check that passes returns HTTP_ERR_NONE.
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

#include "engine/vae_status.h"
#include "server/data_cache.h"
#include "server/jobs_pool.h"
#include "server/metrics.h"
#include "server/model_cache.h"
#include "server/registry.h"

typedef enum {
    HTTP_ERR_BAD_REQUEST = 0,    /* 400 bad_request */
    HTTP_ERR_NOT_FOUND,          /* 404 not_found */
    HTTP_ERR_MODEL_NOT_FOUND,    /* 404 model_not_found */
    HTTP_ERR_METHOD_NOT_ALLOWED, /* 405 method_not_allowed */
    HTTP_ERR_PAYLOAD_TOO_LARGE,  /* 413 payload_too_large */
    HTTP_ERR_INTERNAL,           /* 500 internal */
    HTTP_ERR_NO_MODEL,           /* 503 no_model */
    HTTP_ERR_UNAVAILABLE,        /* 503 unavailable */
    HTTP_ERR_UNAUTHORIZED,       /* 401 unauthorized */
    HTTP_ERR_CONFLICT,           /* 409 conflict */
    HTTP_ERR_UNSUPPORTED_MEDIA,  /* 415 unsupported_media_type */
    HTTP_ERR_INVALID_CHECKPOINT, /* 422 invalid_checkpoint */
    HTTP_ERR_NOT_ACCEPTABLE,     /* 406 not_acceptable: Accept excludes every format offered */
    HTTP_ERR_LENGTH_REQUIRED,    /* 411 length_required */
    HTTP_ERR_UNPROCESSABLE,      /* 422 unprocessable: well-formed, but wrong sizes or values */
    HTTP_ERR_TOO_MANY_REQUESTS,  /* 429 too_many_requests: the compute queue is full */
    HTTP_ERR_FORBIDDEN,          /* 403 forbidden: a Host or Origin not of this machine */
    HTTP_ERR_INSUFFICIENT_STORAGE, /* 507 insufficient_storage: the disk is full */
    HTTP_ERR_DUPLICATE_PARAMETER, /* 400 duplicate_parameter: a query parameter given twice */
    HTTP_ERR_URI_TOO_LONG,       /* 414 uri_too_long: a query over --max-query-kb or --max-query-params */
    HTTP_ERR_ANSWERS_HELD,       /* 503 answers_held: answers held for slow clients fill --max-answers-mb */
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

/* What each service's status means to a client; HTTP_ERR_NONE for its OK.
 * registry: a missing model, version or alias is 404 model_not_found. */
http_error http_error_from_registry(registry_status s);
/* model_cache: MODEL_CACHE_ERR_NOT_FOUND (a model or version was named) is
 * 404 model_not_found, MODEL_CACHE_ERR_NO_MODEL (none was) 503 no_model. */
http_error http_error_from_model_cache(model_cache_status s);
/* vae (the engine): it sees a client's bytes in one place, an uploaded
 * checkpoint, so every refusal is 422 invalid_checkpoint; out of memory is
 * 503; a failed write or a cancellation, which reading bytes in memory
 * cannot give, are 500 and 503. */
http_error http_error_from_vae(vae_status s);
/* jobs_pool: invalid spec 422 unprocessable, 404, 409, the queue full 429,
 * stopping or out of memory 503, the rest 500. */
http_error http_error_from_jobs(jobs_pool_status s);
/* data_cache: every slot taken 503, a data set that does not load 404. */
http_error http_error_from_data_cache(data_cache_status s);

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
/* A request refused by a bound: counted by limit in /metrics
 * (metrics_count_refusal) and answered as http_send_error does, with
 * Retry-After: retry_after when that is not NULL. Every bound that answers
 * where it refuses goes through here, so none is answered uncounted. */
enum MHD_Result http_send_refusal(struct MHD_Connection *c, metrics_limit limit, http_error e,
                                  const char *retry_after, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Queues root printed compactly as application/json; takes root (freed here
 * in every case). */
enum MHD_Result http_send_json(struct MHD_Connection *c, unsigned int status, cJSON *root);

/* Queues buf as the body with content_type; takes buf (malloc'd; freed by MHD
 * when the response is done, or here on failure). */
enum MHD_Result http_send_buffer(struct MHD_Connection *c, unsigned int status,
                                 const char *content_type, uint8_t *buf, size_t len);

/* A budget of bytes shared by every connection: the answers built and not
 * yet sent (--max-answers-mb), held for as long as a client takes to read
 * them. A request reserves its answer's estimate before it computes it
 * (http_budget_reserve) and hands that reservation to the response that
 * sends it (http_budget_response), whose free callback gives it back when
 * libmicrohttpd is done with the response, also when the client went away.
 * All functions are thread-safe (atomics). */
typedef struct http_budget {
    size_t max;  /* bytes; 0 = no budget */
    size_t held; /* atomic: bytes reserved now */
} http_budget;
/* Reserves n bytes: 0, or -1 (nothing reserved) when they would take the
 * budget past max. A budget holding nothing takes any one reservation, so a
 * single answer larger than the whole budget is still served (one request's
 * size has its own bound, --request-mem-mb). b NULL: always 0. */
int http_budget_reserve(http_budget *b, size_t n);
void http_budget_release(http_budget *b, size_t n);
/* Bytes held now (0 for NULL). */
size_t http_budget_held(const http_budget *b);
/* A response sending buf (len bytes, malloc'd; taken: freed with the
 * response, or here on failure) that holds len bytes of b until it is
 * freed; reserved is what the caller reserved for it, replaced by len
 * (which may go past max: the bytes exist already). NULL when out of
 * memory, with reserved given back. */
struct MHD_Response *http_budget_response(http_budget *b, size_t reserved, void *buf, size_t len);

/* The formats vaed answers in, and content negotiation between them. */
typedef enum {
    HTTP_FORMAT_PNG = 0, /* image/png */
    HTTP_FORMAT_JSON,    /* application/json */
    HTTP_FORMAT_NPY,     /* application/x-npy */
    HTTP_FORMAT_COUNT
} http_format;
/* Sets of formats an endpoint offers: bits (1u << format). */
#define HTTP_OFFER_IMAGES ((1u << HTTP_FORMAT_PNG) | (1u << HTTP_FORMAT_JSON) | (1u << HTTP_FORMAT_NPY))
#define HTTP_OFFER_JSON (1u << HTTP_FORMAT_JSON)

/* "png", "json", "npy" (as ?format= takes them), and the media types. */
const char *http_format_name(http_format f);
const char *http_format_mime(http_format f);
/* The q an Accept header value gives mime: that of its most specific
 * matching range (type/subtype over type/ * over * / *), 1 when the range
 * has no q, 0 when no range matches or the q does not read as 0..1. */
double http_accept_q(const char *accept, const char *mime);
/* The format of a response: format (the ?format= value; NULL when absent)
 * wins and must be one offered (else 400); otherwise the offered format
 * accept (NULL or "": anything) gives the highest q, ties going to the lower
 * http_format (PNG before JSON before NPY); 406 when it excludes them all. */
http_error http_format_choose(const char *format, const char *accept, unsigned offered,
                              http_format *out, char *msg, size_t msglen);
/* http_format_choose on this request's ?format= and Accept header. */
http_error http_negotiate(struct MHD_Connection *c, unsigned offered, http_format *out,
                          char *msg, size_t msglen);

/* Strict parsers: decimal digits only (no sign, no spaces, no trailing
 * characters), at least one digit, no overflow. Return 0 on success, -1
 * otherwise (*out untouched). */
int http_parse_i64(const char *s, int64_t *out);
int http_parse_u64(const char *s, uint64_t *out);

/* Query parameters. Each returns 0 and sets *out (the default when the
 * parameter is absent), or -1 with a message naming the parameter in msg. */
int http_query_int(struct MHD_Connection *c, const char *name, int64_t lo, int64_t hi,
                   int64_t def, int64_t *out, char *msg, size_t msglen);
/* http_query_int for a value bounded by a server limit (a flag): a value
 * that reads as an integer above hi is also counted in /metrics under limit,
 * so the refusals of the bound show apart from typing mistakes. */
int http_query_limited(struct MHD_Connection *c, const char *name, int64_t lo, int64_t hi,
                       metrics_limit limit, int64_t def, int64_t *out, char *msg, size_t msglen);
/* *present says whether the parameter was given. */
int http_query_u64(struct MHD_Connection *c, const char *name, int *present, uint64_t *out,
                   char *msg, size_t msglen);
/* A non-empty string of at most max_len bytes, or NULL when absent; the
 * string belongs to MHD and lives as long as the request. */
int http_query_str(struct MHD_Connection *c, const char *name, size_t max_len,
                   const char **out, char *msg, size_t msglen);

/* The one rule on repeated query parameters, for every route: 0 when no
 * name is given twice in the query; else -1 with msg naming it, or -2 when
 * out of memory (503), with msg saying so (the
 * transport answers 400 duplicate_parameter before the handler runs, so
 * handlers may read each parameter's first value and know it is the only
 * one). Sorts the names: a query of k parameters costs O(k log k), however
 * many of them a hostile URL packs. */
int http_query_repeated(struct MHD_Connection *c, char *msg, size_t msglen);

/* The framing a request's headers must have before anything reads them
 * (RFC 9112 sections 5 and 6): 0 when every name is a token and every value
 * free of control bytes but tab; when Host, Content-Length and
 * Transfer-Encoding are each given at most once; when Transfer-Encoding, if
 * any, is "chunked" alone; and when not both length headers are given. Else
 * -1 with msg naming the first fault. libmicrohttpd 0.9.75 keeps a name with
 * a space before its colon ("Host : x") as another name, reads the first of
 * two Hosts, ends the header block at a line that starts with ':' (what
 * follows becomes the body or a next request), and waits for a body it
 * cannot frame under any other transfer coding, answering nothing. */
int http_headers_malformed(struct MHD_Connection *c, char *msg, size_t msglen);

/* 1 when the request's Content-Type is the media type type (case aside),
 * with or without parameters ("application/json; charset=utf-8"); 0 when it
 * is another or absent. */
int http_content_type_is(struct MHD_Connection *c, const char *type);
/* 1 when a mutation's body may be read as type: its Content-Type is type;
 * or, on a daemon with a token (token_set), it has none or curl's default
 * (application/x-www-form-urlencoded). Without a token the type is what
 * keeps other sites' pages out (they can post those two unasked, not
 * application/json); with one the bearer token does, so `curl -d` and a CI
 * job that never sets a type keep working. */
int http_body_type_accepted(struct MHD_Connection *c, const char *type, int token_set);

/* Requests a tokenless daemon serves: 1 when a Host header value (host
 * with an optional :port) names this machine by a loopback name —
 * "localhost", an address in 127.0.0.0/8, "[::1]" — or is listen_host (may
 * be NULL or ""), compared without case; 0 otherwise (a DNS-rebinding page
 * sends its own name). */
int http_host_is_local(const char *host, const char *listen_host);
/* 1 when an Origin header value is "http://" or "https://" followed by a
 * host http_host_is_local accepts (and nothing else: no path); 0 for any
 * other, "null" included. */
int http_origin_is_local(const char *origin, const char *listen_host);

/* 1 when an If-None-Match header lists etag (a quoted entity tag as sent in
 * ETag) or is "*"; weak tags compare by their opaque part (RFC 9110 weak
 * comparison, which GET's 304 uses). */
int http_etag_listed(const char *if_none_match, const char *etag);

#endif
