#include "server/compute_request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/sha256.h"

/* Drops the answer r holds (before another replaces it). */
static void drop_answer(compute_request *r)
{
    if (r->resp)
        MHD_destroy_response(r->resp);
    r->resp = NULL;
    response_body_release(r->shared);
    r->shared = NULL;
}

static void compute_request_free(void *p)
{
    compute_request *r = p;
    if (!r)
        return;
    drop_answer(r);
    http_budget_release(r->ctx->answers, r->answer_reserved);
    free(r);
}

static void compute_request_run(compute_task *t)
{
    compute_request *r = (compute_request *)t;
    r->work(r);
    if (!r->resp)
        compute_request_fail(r, HTTP_ERR_INTERNAL, "no response was built");
}

static void compute_request_run_batch(compute_task **tasks, int n, compute_batch *b)
{
    /* Each task is the first member of its compute_request. */
    compute_request **rs = (compute_request **)tasks;
    rs[0]->work_batch(rs, n, b);
    for (int i = 0; i < n; i++)
        if (!compute_batch_is_done(b, i) && !rs[i]->resp)
            compute_request_fail(rs[i], HTTP_ERR_INTERNAL, "no response was built");
}

void compute_request_batch_done(compute_request *r, compute_batch *b, int i)
{
    if (!b)
        return;
    if (!r->resp)
        compute_request_fail(r, HTTP_ERR_INTERNAL, "no response was built");
    compute_batch_done(b, i);
}

void compute_request_set_batch(compute_request *r,
                               void (*work_batch)(compute_request **rs, int n, compute_batch *b),
                               uint64_t key)
{
    r->work_batch = work_batch;
    r->task.run_batch = work_batch && key ? compute_request_run_batch : NULL;
    r->task.batch_key = key;
}

void *compute_request_new(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                          size_t size, void (*work)(compute_request *r))
{
    compute_request *r = calloc(1, size); /* owned by req: freed by work_free */
    if (!r)
        return NULL;
    r->task.run = compute_request_run;
    r->task.conn = c;
    r->ctx = ctx;
    r->work = work;
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && strlen(inm) < sizeof r->if_none_match)
        snprintf(r->if_none_match, sizeof r->if_none_match, "%s", inm);
    req->work = r;
    req->work_free = compute_request_free;
    return r;
}

enum MHD_Result compute_request_queue(compute_request *r)
{
    if (!r->resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(r->task.conn, r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return ret;
}

enum MHD_Result compute_request_submit(compute_request *r, int cheap)
{
    if (cheap) {
        compute_request_run(&r->task);
        return compute_request_queue(r);
    }
    return compute_pool_admit(r->ctx->compute, &r->task);
}

void compute_request_fail(compute_request *r, http_error e, const char *fmt, ...)
{
    char message[HTTP_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    drop_answer(r);
    /* An error body is small: what was reserved for the answer goes back. */
    http_budget_release(r->ctx->answers, r->answer_reserved);
    r->answer_reserved = 0;
    r->resp = http_error_response(e, message);
    r->status = http_error_status(e);
    if (e == HTTP_ERR_ANSWERS_HELD)
        compute_request_add_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
}

http_error compute_request_reserve_answer(compute_request *r, size_t bytes, char *msg,
                                          size_t msglen)
{
    if (!http_budget_reserve(r->ctx->answers, bytes)) {
        r->answer_reserved += bytes;
        return HTTP_ERR_NONE;
    }
    metrics_count_refusal(METRICS_LIMIT_ANSWER_BUDGET);
    snprintf(msg, msglen,
             "the server holds as many answers for clients still reading them as it may "
             "(--max-answers-mb %zu; this one could take %zu MiB): retry shortly",
             r->ctx->answers->max >> 20, (bytes + (1u << 20) - 1) >> 20);
    return HTTP_ERR_ANSWERS_HELD;
}

void compute_request_set_body(compute_request *r, unsigned status, const char *content_type,
                              void *buf, size_t len)
{
    drop_answer(r);
    /* A work that reserved nothing (its answer's size is known only once
     * built: a score, a data sheet, an explore image) is held to the same
     * budget now, before its bytes are handed to a client that may not read
     * them; the bytes it built are freed at once when they do not fit. */
    if (!r->answer_reserved) {
        char msg[HTTP_MESSAGE_MAX];
        if (compute_request_reserve_answer(r, len, msg, sizeof msg) != HTTP_ERR_NONE) {
            free(buf);
            compute_request_fail(r, HTTP_ERR_ANSWERS_HELD, "%s", msg);
            return;
        }
    }
    r->status = status;
    r->resp = http_budget_response(r->ctx->answers, r->answer_reserved, buf, len);
    r->answer_reserved = 0; /* the response holds it now */
    if (!r->resp)
        return;
    compute_request_add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
}

void compute_request_add_header(compute_request *r, const char *name, const char *value)
{
    if (r->resp && MHD_add_response_header(r->resp, name, value) != MHD_YES) {
        MHD_destroy_response(r->resp);
        r->resp = NULL;
    }
}

void compute_request_set_shared(compute_request *r, unsigned status, response_body *b)
{
    drop_answer(r);
    /* A cached body is counted by the response cache, once for all. */
    http_budget_release(r->ctx->answers, r->answer_reserved);
    r->answer_reserved = 0;
    r->shared = b;
    r->status = status;
    /* the response holds a reference of its own, released when MHD is done */
    r->resp = MHD_create_response_from_buffer_with_free_callback_cls(
        b->len, (void *)b->bytes, response_body_release_cb, response_body_ref(b));
    if (!r->resp) {
        response_body_release(b); /* the response's reference */
        return;
    }
    compute_request_add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, b->content_type);
}

void compute_request_model_headers(compute_request *r, const char *model, long long version)
{
    char v[32];
    snprintf(v, sizeof v, "%lld", version);
    compute_request_add_header(r, "X-Model", model);
    compute_request_add_header(r, "X-Model-Version", v);
}

void compute_request_etag_bytes(char *etag, const void *bytes, size_t len)
{
    char hex[65];
    sha256_hex(bytes, len, hex);
    snprintf(etag, COMPUTE_REQUEST_ETAG_MAX, "\"%.32s\"", hex);
}

void compute_request_etag(char *etag, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    compute_request_etag_bytes(etag, text, strlen(text));
}

int compute_request_not_modified(compute_request *r, const char *etag, const char *cache_control)
{
    if (!r->if_none_match[0] || !http_etag_listed(r->if_none_match, etag))
        return 0;
    drop_answer(r);
    r->resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    r->status = MHD_HTTP_NOT_MODIFIED;
    compute_request_add_header(r, MHD_HTTP_HEADER_ETAG, etag);
    compute_request_add_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
    return 1;
}

void compute_request_cache_headers(compute_request *r, const char *etag, const char *cache_control)
{
    if (r->status != MHD_HTTP_OK)
        return;
    compute_request_add_header(r, MHD_HTTP_HEADER_ETAG, etag);
    compute_request_add_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
}
