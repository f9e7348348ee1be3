/* compute_request: a request whose answer is built by a function that may run
 * on a compute thread — the life of one, shared by the handlers of
 * api_infer.c, api_score.c, api_explore.c and api_data.c.
 *
 *     typedef struct { compute_request base; int n; ... } my_request;  // base first
 *     static void my_work(compute_request *cr) { my_request *r = (my_request *)cr;
 *         ... compute_request_set_body(cr, 200, "image/png", png, len); or
 *             compute_request_fail(cr, HTTP_ERR_..., "why %d", n); }
 *
 *     // handler, first call (req->work NULL):
 *     my_request *r = compute_request_new(ctx, c, req, sizeof *r, my_work);
 *     ... checks on the polling thread, else return http_send_error(c, ...) ...
 *     return compute_request_submit(&r->base, cheap);  // cheap: run here, queue at once
 *     // second call, after the pool resumed the connection:
 *     if (req->work) return compute_request_queue(req->work);
 *
 * The request struct is calloc'd, hangs off http_request.work and is freed by
 * http_request.work_free when libmicrohttpd completes the request (also when
 * the client went away while it was computed); the response it holds is
 * destroyed then when it was never queued, and its shared body released.
 * Whether the work is cheap enough for a polling thread is the caller's call
 * (it must not load a model or a data set there, nor wait for the registry).
 *
 * A request whose work can be shared with others of its kind (one model
 * call for several requests: compute_pool's batching) also names the
 * function that builds n answers at once and which requests may share it:
 *
 *     compute_request_set_batch(&r->base, my_work_batch, key);  // before submit
 *     static void my_work_batch(compute_request **rs, int n, compute_batch *b) {
 *         ... an answer in rs[i], then compute_request_batch_done(rs[i], b, i) ... }
 *
 * The pool then calls my_work_batch with rs[0] == r and the compatible
 * requests queued behind it, or work alone. Whether a cheap batchable
 * request runs where it arrived is still the caller's call; it should be
 * only while the pool is idle (compute_pool_inline_begin).
 *
 * A large answer is held for as long as its client takes to read it: the
 * work reserves its estimate first (compute_request_reserve_answer), and
 * the body set with compute_request_set_body holds its bytes of the
 * server's answer budget until libmicrohttpd frees it. A work that reserved
 * nothing has its body reserved when it is set, and refused (503
 * answers_held, its bytes freed) when they do not fit.
 *
 * GET images are deterministic bytes with an ETag: compute_request_etag
 * hashes a description of everything that decides the bytes, and
 * compute_request_not_modified answers 304 when the If-None-Match the
 * handler copied (if_none_match, on the polling thread) lists it.
 */
#ifndef COMPUTE_REQUEST_H
#define COMPUTE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "server/compute_pool.h"
#include "server/http_request.h"
#include "server/http_util.h"
#include "server/response_cache.h"

/* A quoted tag of 32 hex digits, with its NUL. */
#define COMPUTE_REQUEST_ETAG_MAX 40

typedef struct compute_request {
    compute_task task;                     /* first: the pool's view */
    http_ctx *ctx;                         /* borrowed */
    void (*work)(struct compute_request *r);
    void (*work_batch)(struct compute_request **rs, int n, compute_batch *b); /* NULL: never */
    char if_none_match[512];               /* copied on the polling thread; "" when absent */
    struct MHD_Response *resp;             /* owned until queued */
    unsigned status;
    /* The body of an answer built with compute_request_set_shared: a
     * reference, released with r (or when another answer replaces it), for
     * the caller to keep in the response cache. NULL for any other answer. */
    response_body *shared;
    size_t answer_reserved; /* bytes of ctx->answers reserved for the answer to come */
} compute_request;

/* A zeroed request of size bytes (>= sizeof(compute_request), the caller's
 * struct with a compute_request first) owned by req; NULL when out of
 * memory. Copies the request's If-None-Match. */
void *compute_request_new(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                          size_t size, void (*work)(compute_request *r));
/* Runs the work here and queues its answer when cheap, else admits it into
 * ctx->compute (suspending the connection, or answering 429 / 503). */
enum MHD_Result compute_request_submit(compute_request *r, int cheap);
/* Lets r be batched (see above) with requests of the same work_batch and
 * key (non-zero). */
void compute_request_set_batch(compute_request *r,
                               void (*work_batch)(compute_request **rs, int n, compute_batch *b),
                               uint64_t key);
/* From work_batch: r (rs[i]) has its answer (else a 500 is built), and its
 * connection resumes now (compute_batch_done): r must not be touched after.
 * b NULL (run alone): nothing. */
void compute_request_batch_done(compute_request *r, compute_batch *b, int i);
/* Before the work allocates: reserves bytes (the answer's estimate) of the
 * answers held for clients (--max-answers-mb), which the body set later
 * takes over. HTTP_ERR_NONE, or HTTP_ERR_ANSWERS_HELD with msg filled and
 * the refusal counted: the caller answers it (compute_request_fail) and a
 * Retry-After is added to that answer. */
http_error compute_request_reserve_answer(compute_request *r, size_t bytes, char *msg,
                                          size_t msglen);
/* Queues the answer built (MHD_NO when none could be: drops the connection). */
enum MHD_Result compute_request_queue(compute_request *r);

/* The answer: an error body, a body (takes buf, malloc'd; becomes a 503
 * answers_held when nothing was reserved and len does not fit the
 * answers held), a header more. */
void compute_request_fail(compute_request *r, http_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void compute_request_set_body(compute_request *r, unsigned status, const char *content_type,
                              void *buf, size_t len);
void compute_request_add_header(compute_request *r, const char *name, const char *value);
/* An answer of status sending b's bytes as b's content type, without a copy
 * (a body kept in, or to put into, the response cache): takes the reference
 * b, which r->shared holds until r is freed. */
void compute_request_set_shared(compute_request *r, unsigned status, response_body *b);
/* X-Model and X-Model-Version of the checkpoint an answer came from. */
void compute_request_model_headers(compute_request *r, const char *model, long long version);

/* etag (COMPUTE_REQUEST_ETAG_MAX bytes): a hash of the printf-style text. */
void compute_request_etag(char *etag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same tag of len bytes (an answer whose bytes are their own tag). */
void compute_request_etag_bytes(char *etag, const void *bytes, size_t len);
/* 1 with a 304 built (ETag and cache_control set) when the request's
 * If-None-Match lists etag; else 0. */
int compute_request_not_modified(compute_request *r, const char *etag, const char *cache_control);
/* ETag and Cache-Control on a 200 just built (nothing on an error). */
void compute_request_cache_headers(compute_request *r, const char *etag,
                                   const char *cache_control);

#endif
