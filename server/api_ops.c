#include "server/api_ops.h"

#include <stdint.h>
#include <stdlib.h>

#include <cJSON.h>

#include "server/compute_pool.h"
#include "server/http_util.h"
#include "server/metrics.h"
#include "server/model_cache.h"
#include "server/response_cache.h"

#ifndef VAED_VERSION
#define VAED_VERSION "0.0.0"
#endif

/* schema/openapi.yaml, compiled in by the Makefile (scripts/embed-file.sh). */
extern const unsigned char vaed_openapi_yaml[];
extern const size_t vaed_openapi_yaml_len;

enum MHD_Result api_ops_healthz(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
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

/* A readiness probe between its admission and its answer: the default
 * model acquired (loaded when cold) on a compute thread. */
typedef struct {
    compute_task task; /* first: the pool's view */
    http_ctx *ctx;
    model_cache_status rc;
    registry_checkpoint_info info;
    char why[256];
} ready_work;

static void ready_run(compute_task *t)
{
    ready_work *w = (ready_work *)t;
    model_handle *h = NULL; /* released at once: the load was the point */
    w->rc = model_cache_acquire(w->ctx->cache, w->ctx->reg, NULL, NULL, &h, &w->info, w->why,
                                sizeof w->why);
    model_cache_release(w->ctx->cache, h);
}

static enum MHD_Result ready_answer(struct MHD_Connection *c, model_cache_status rc,
                                    const registry_checkpoint_info *info, const char *why)
{
    /* A probe is told "not ready" (503), whatever the reason: a load
     * balancer reads the status, not the code. */
    if (rc == MODEL_CACHE_ERR_NO_MODEL)
        return http_send_error(c, http_error_from_model_cache(rc),
                               "not ready: no default model resolves (%s)", why);
    if (rc != MODEL_CACHE_OK)
        return http_send_error(c, HTTP_ERR_UNAVAILABLE,
                               "not ready: the default model does not load (%s)", why);
    cJSON *root = cJSON_CreateObject(); /* owned: handed to http_send_json */
    if (root && (!cJSON_AddStringToObject(root, "status", "ready") ||
                 !cJSON_AddStringToObject(root, "model", info->model) ||
                 !cJSON_AddNumberToObject(root, "version", (double)info->version))) {
        cJSON_Delete(root);
        root = NULL;
    }
    return http_send_json(c, MHD_HTTP_OK, root);
}

/* Answered here when the default model is loaded already; else its load
 * (and the registry's resolution) runs on a compute thread, never here. */
enum MHD_Result api_ops_readyz(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    ready_work *w = req->work;
    if (w)
        return ready_answer(c, w->rc, &w->info, w->why);
    if (!ctx->reg || !ctx->cache || !ctx->compute)
        return http_send_error(c, HTTP_ERR_UNAVAILABLE, "the registry is not open");
    /* A load balancer sends nothing here while the shared registry's
     * database is away (this replica could not take a write). */
    if (!registry_reachable(ctx->reg))
        return http_send_error(c, HTTP_ERR_UNAVAILABLE,
                               "not ready: the registry database cannot be reached");
    model_handle *h = NULL; /* released at once */
    registry_checkpoint_info info;
    if (model_cache_acquire_loaded(ctx->cache, ctx->reg, NULL, NULL, &h, &info)) {
        model_cache_release(ctx->cache, h);
        return ready_answer(c, MODEL_CACHE_OK, &info, "");
    }
    w = calloc(1, sizeof *w); /* owned by req: freed by work_free */
    if (!w)
        return MHD_NO;
    w->task.run = ready_run;
    w->task.conn = c;
    w->ctx = ctx;
    req->work = w;
    req->work_free = free;
    return compute_pool_admit(ctx->compute, &w->task);
}

enum MHD_Result api_ops_metrics(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)req;
    metrics_gauges g = {0};
    if (ctx->cache) {
        g.models_loaded = model_cache_count(ctx->cache);
        g.cache_bytes = model_cache_bytes(ctx->cache);
        g.model_loads = model_cache_loads(ctx->cache);
    }
    if (ctx->responses) {
        response_cache_stats s;
        response_cache_get_stats(ctx->responses, &s);
        g.response_cache_hits = s.hits;
        g.response_cache_misses = s.misses;
        g.response_cache_bytes = s.bytes;
    }
    g.answers_held_bytes = http_budget_held(ctx->answers);
    if (ctx->compute) {
        compute_pool_stats s;
        compute_pool_get_stats(ctx->compute, &s);
        g.compute_in_flight = s.in_flight;
        g.compute_limit = s.limit;
        g.compute_rejected = s.rejected;
    }
    char *text = NULL; /* owned: handed to the response */
    size_t len = 0;
    if (metrics_render(&g, &text, &len))
        return http_send_error(c, HTTP_ERR_UNAVAILABLE, "out of memory rendering metrics");
    return http_send_buffer(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                            (uint8_t *)text, len);
}

enum MHD_Result api_ops_openapi(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
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
