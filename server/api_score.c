/* api_score: POST /score and GET /score. See api_score.h.
 *
 * A score_request is a compute_request (compute_request.h): the handler
 * checks the query on the polling thread and admits it into the compute
 * pool, whose thread parses the body, scores it and builds the answer; the
 * handler's second call queues it. Scores are never computed on a polling
 * thread: even one image costs K decodes, and the likelihood regret many
 * steps. */
#include "server/api_score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eval.h"
#include "engine/util.h"
#include "server/api_infer.h"
#include "server/compute_request.h"
#include "server/http_util.h"
#include "server/infer_labels.h"
#include "server/json_num.h"
#include "server/model_cache.h"

#define REF_MAX 64
/* the most bytes one input's scores take in the answer: nine keys and
 * numbers */
#define SCORE_JSON_MAX (9 * (24 + JSON_NUM_FLOAT_MAX))

typedef struct {
    compute_request base;        /* first */
    const char *body;            /* borrowed from http_request, alive until completion */
    size_t body_len;
    api_infer_body kind;
    char from[REF_MAX + 1];      /* GET: the data-set reference; "" for POST */
    char model[API_INFER_NAME_MAX + 1], version[API_INFER_NAME_MAX + 1];
    int64_t k, regret;
    uint64_t seed;
    infer_labels labels;
    registry_checkpoint_info info; /* what the names resolved to: what the answer reports */
} score_request;

static void score_run(compute_request *cr);

/* The query both methods share into r. */
static http_error score_params(score_request *r, char *msg, size_t msglen)
{
    struct MHD_Connection *c = r->base.task.conn;
    http_format fmt;
    int have_seed;
    http_error e = api_infer_model_params(c, r->model, r->version, msg, msglen);
    if (e == HTTP_ERR_NONE)
        e = http_negotiate(c, HTTP_OFFER_JSON, &fmt, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    if (http_query_int(c, "k", 1, API_SCORE_MAX_K, API_SCORE_DEFAULT_K, &r->k, msg, msglen) ||
        http_query_int(c, "regret", 0, API_SCORE_MAX_REGRET_STEPS, 0, &r->regret, msg, msglen) ||
        http_query_u64(c, "seed", &have_seed, &r->seed, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    if (!have_seed)
        r->seed = 1; /* the same input, the same scores */
    return infer_labels_from_query(c, &r->labels, msg, msglen);
}

static enum MHD_Result score_start(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                                   int get)
{
    if (req->work)
        return compute_request_queue(req->work);
    score_request *r = compute_request_new(ctx, c, req, sizeof *r, score_run);
    if (!r)
        return MHD_NO;
    r->body = req->body;
    r->body_len = req->body_len;
    char msg[HTTP_MESSAGE_MAX];
    http_error e = score_params(r, msg, sizeof msg);
    if (e == HTTP_ERR_NONE && get) {
        const char *from = NULL;
        if (http_query_str(c, "from", REF_MAX, &from, msg, sizeof msg))
            e = HTTP_ERR_BAD_REQUEST;
        else if (!from || !api_infer_is_data_ref(from)) {
            snprintf(msg, sizeof msg,
                     "parameter 'from' must be a data set reference DATASET:SPLIT:INDEX such as "
                     "mnist:test:3 (DATASET mnist or fashion, SPLIT train or test)");
            e = HTTP_ERR_BAD_REQUEST;
        } else {
            snprintf(r->from, sizeof r->from, "%s", from);
        }
    } else if (e == HTTP_ERR_NONE) {
        e = api_infer_require_body(c, req,
                                   API_INFER_BODY_JSON | API_INFER_BODY_PNG | API_INFER_BODY_NPY,
                                   &r->kind, msg, sizeof msg);
    }
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    return compute_request_submit(&r->base, 0);
}

enum MHD_Result api_score_post(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return score_start(ctx, c, req, 0);
}

enum MHD_Result api_score_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return score_start(ctx, c, req, 1);
}

/* ---- on a compute thread ------------------------------------------------- */

/* v as JSON: %.9g, or null when not finite (a regret not asked for). */
static void put_number(FILE *f, const char *key, double v, int last)
{
    if (isfinite(v))
        fprintf(f, "\"%s\":%.9g%s", key, v, last ? "" : ",");
    else
        fprintf(f, "\"%s\":null%s", key, last ? "" : ",");
}

/* The 200 of n scores in r (or a 503 when it cannot be written). */
static void score_answer(score_request *r, const eval_score *s, int n)
{
    char *text = NULL; /* owned: handed to the response */
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f) {
        fprintf(f,
                "{\"model\":\"%s\",\"version\":%lld,\"k\":%lld,\"regret_steps\":%lld,"
                "\"complexity\":\"png-literal-deflate\",\"scores\":[",
                r->info.model, (long long)r->info.version, (long long)r->k,
                (long long)r->regret);
        for (int i = 0; i < n; i++) {
            fputs(i ? ",{" : "{", f);
            put_number(f, "neg_elbo", s[i].neg_elbo, 0);
            put_number(f, "recon", s[i].recon, 0);
            put_number(f, "kl", s[i].kl, 0);
            put_number(f, "iwae_nll", s[i].iwae_nll, 0);
            put_number(f, "complexity_bits", s[i].complexity_bits, 0);
            put_number(f, "corrected_bits", s[i].corrected_bits, 0);
            put_number(f, "likelihood_regret", s[i].regret, 0);
            put_number(f, "recon_floor", s[i].recon_floor, 0);
            put_number(f, "ood_score", s[i].ood_score, 1);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    int bad = !f || ferror(f);
    if (f && fclose(f))
        bad = 1;
    if (bad || !text) {
        free(text);
        compute_request_fail(&r->base, HTTP_ERR_UNAVAILABLE, "out of memory writing the response");
        return;
    }
    compute_request_set_body(&r->base, MHD_HTTP_OK, "application/json", text, len);
    compute_request_model_headers(&r->base, r->info.model, (long long)r->info.version);
}

/* The inputs of r into *x (malloc'd, the caller's), *n and labels (for a
 * conditional model: the query's, else a data-set image's own). */
static http_error score_inputs(score_request *r, const vae_config *cfg, float **x, int *n,
                               int *labels, char *msg, size_t msglen)
{
    if (!r->from[0]) {
        http_error e = api_infer_read_images(r->base.ctx, cfg, r->body, r->body_len, r->kind, x,
                                             n, msg, msglen);
        return e != HTTP_ERR_NONE ? e
                                  : infer_labels_resolve(&r->labels, cfg, *n, 0, labels, msg,
                                                         msglen);
    }
    *n = 1;
    if (!(*x = malloc((size_t)vae_config_input_dim(cfg) * sizeof **x))) {
        snprintf(msg, msglen, "out of memory");
        return HTTP_ERR_UNAVAILABLE;
    }
    int own;
    http_error e = api_infer_data_image(r->base.ctx, r->from, cfg, *x, &own, msg, msglen);
    if (e != HTTP_ERR_NONE || !vae_config_is_conditional(cfg) || r->labels.given)
        return e != HTTP_ERR_NONE ? e
                                  : infer_labels_resolve(&r->labels, cfg, 1, 0, labels, msg,
                                                         msglen);
    labels[0] = own;
    return api_infer_data_label(cfg, r->from, own, msg, msglen);
}

/* At most what r can make the daemon allocate on model cfg, known before
 * the body is parsed: its images (as many as its length can hold) as
 * floats, a cJSON node a value of a JSON body, the scores and their JSON,
 * and what the engine scores them in (eval_score_bytes: one chunk of the k
 * draws, the regret's copy of the model). */
static size_t score_memory_bytes(const score_request *r, const vae_config *cfg,
                                 const eval_score_options *o)
{
    size_t values = 0, n = r->from[0] ? 1 : api_infer_body_images(cfg, r->kind, r->body_len, &values);
    size_t D = (size_t)vae_config_input_dim(cfg);
    return n * D * sizeof(float) + values * sizeof(cJSON) + D * (sizeof(float) + 2) +
           n * (sizeof(eval_score) + SCORE_JSON_MAX) + eval_score_bytes(cfg, o);
}

static http_error score_work(score_request *r, const model_handle *h, char *msg, size_t msglen)
{
    const vae_model *m = &h->model;
    const vae_config *cfg = &m->cfg;
    float *x = NULL;        /* owned */
    eval_score *s = NULL;   /* owned */
    int n = 0, labels[API_INFER_MAX_N];
    eval_score_options o;
    eval_score_options_default(&o);
    o.iwae_k = (int)r->k;
    o.regret_steps = (int)r->regret;
    o.seed = r->seed;
    http_error e = api_infer_check_memory(r->base.ctx, cfg, score_memory_bytes(r, cfg, &o), msg, msglen);
    if (e == HTTP_ERR_NONE)
        e = score_inputs(r, cfg, &x, &n, labels, msg, msglen);
    if (e != HTTP_ERR_NONE)
        goto end;
    if ((int64_t)n * r->k > API_SCORE_MAX_DRAWS) {
        snprintf(msg, msglen, "%d inputs at k=%lld are %lld draws; at most %d per request", n,
                 (long long)r->k, (long long)n * r->k, API_SCORE_MAX_DRAWS);
        e = HTTP_ERR_UNPROCESSABLE;
        goto end;
    }
    if ((int64_t)n * r->regret > API_SCORE_MAX_REGRET_WORK) {
        snprintf(msg, msglen,
                 "likelihood regret for %d inputs at %lld steps is %lld steps; at most %d per "
                 "request",
                 n, (long long)r->regret, (long long)n * r->regret, API_SCORE_MAX_REGRET_WORK);
        e = HTTP_ERR_UNPROCESSABLE;
        goto end;
    }
    if (!(s = calloc((size_t)n, sizeof *s))) {
        snprintf(msg, msglen, "out of memory for %d scores", n);
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    o.deadline = util_mono_s() + API_SCORE_BUDGET_S;
    char why[256] = "";
    vae_status rc = eval_score_inputs(m, x, vae_config_is_conditional(cfg) ? labels : NULL, n, &o,
                                      s, why, sizeof why);
    if (rc == VAE_ERR_TOO_LARGE) {
        snprintf(msg, msglen, "%s (%.0f s per request): ask for fewer inputs, draws or steps",
                 why, API_SCORE_BUDGET_S);
        e = HTTP_ERR_UNPROCESSABLE;
    } else if (rc != VAE_OK) {
        snprintf(msg, msglen, "scoring failed: %s", why);
        e = rc == VAE_ERR_NOMEM ? HTTP_ERR_UNAVAILABLE : HTTP_ERR_INTERNAL;
    } else {
        score_answer(r, s, n);
    }
end:
    free(x);
    free(s);
    return e;
}

static void score_run(compute_request *cr)
{
    score_request *r = (score_request *)cr;
    char msg[HTTP_MESSAGE_MAX] = "";
    model_handle *h = NULL; /* released below */
    http_error e = api_infer_acquire(cr->ctx, r->model, r->version, &h, &r->info, msg, sizeof msg);
    if (e == HTTP_ERR_NONE)
        e = score_work(r, h, msg, sizeof msg);
    model_cache_release(cr->ctx->cache, h);
    if (e != HTTP_ERR_NONE)
        compute_request_fail(cr, e, "%s", msg);
}
