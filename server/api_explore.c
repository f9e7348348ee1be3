/* api_explore: each request is an explore_request (compute_request.h); its
 * handler checks the query on the polling thread and hands it to the compute
 * pool, where explore_work acquires the model and runs the run_* of its
 * kind. */
#include "server/api_explore.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/pca.h"
#include "engine/vae.h"
#include "server/api_infer.h"
#include "server/compute_request.h"
#include "server/http_server.h"
#include "server/http_util.h"
#include "server/infer_body.h"
#include "server/json_num.h"
#include "server/model_cache.h"
#include "server/response_cache.h"

#define TRAVERSE_MAX_DIMS 256
#define TRAVERSE_DEFAULT_DIMS 10
#define TRAVERSE_DEFAULT_STEPS 9
#define TRAVERSE_DEFAULT_RANGE 3.0
#define RECONSTRUCT_DEFAULT 8
#define MAP_BATCH 256
/* One point of the map in its JSON: [x,y,label,index], each number at most this. */
#define MAP_POINT_BYTES (2 * JSON_NUM_FLOAT_MAX + 24)
#define JSON_SLACK_VALUES 4096

typedef enum { EXPLORE_RECONSTRUCT_GET, EXPLORE_RECONSTRUCT_POST, EXPLORE_TRAVERSE, EXPLORE_MAP } explore_kind;

typedef struct {
    compute_request base;      /* first */
    explore_kind kind;
    char model[API_INFER_NAME_MAX + 1], version[API_INFER_NAME_MAX + 1];
    http_format fmt;
    int64_t scale;
    int precision;             /* ?precision=: JSON floats' significant digits (0: shortest) */
    api_infer_data_ref ref;    /* the first image (a map: its data set; index 0) */
    char ref_text[96];         /* the parameter as given, for the ETag */
    int64_t count;             /* images of a reconstruction, points of a map */
    int dims[TRAVERSE_MAX_DIMS];
    int n_dims;                /* 0: the first TRAVERSE_DEFAULT_DIMS the model has */
    double range;
    int64_t steps;
    const char *body;          /* POST: borrowed from http_request, alive until completion */
    size_t body_len;
    int body_png;
    registry_checkpoint_info info;
} explore_request;

static const char *split_name(data_sets_split s)
{
    return s == DATA_SETS_TEST ? "test" : "train";
}

/* ---- the work, on a compute thread ---------------------------------------- */

/* count images of the data set from r->ref into x (count, D) and, for a
 * conditional model, their labels (else *labels_used NULL). */
static http_error data_images(explore_request *r, const vae_config *cfg, int count, float *x,
                              int *labels, const int **labels_used, char *msg, size_t msglen)
{
    const dataset *d = NULL; /* borrowed from the data cache */
    http_error e = api_infer_data_set(r->base.ctx, r->ref.name, r->ref.split, cfg, &d, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    if (r->ref.index + count > d->n) {
        snprintf(msg, msglen, "%s: the %s split of %s has %d images (0 to %d)", r->ref_text,
                 split_name(r->ref.split), r->ref.name, d->n, d->n - 1);
        return HTTP_ERR_NOT_FOUND;
    }
    size_t D = (size_t)dataset_dim(d);
    memcpy(x, d->x + (size_t)r->ref.index * D, (size_t)count * D * sizeof *x);
    *labels_used = NULL;
    if (!vae_config_is_conditional(cfg))
        return HTTP_ERR_NONE;
    if (!d->labels) {
        snprintf(msg, msglen, "the model is conditional and %s has no labels", r->ref.name);
        return HTTP_ERR_UNPROCESSABLE;
    }
    for (int i = 0; i < count; i++)
        labels[i] = d->labels[r->ref.index + i];
    *labels_used = labels;
    return HTTP_ERR_NONE;
}

/* The ETag of a GET answer: everything that decides its bytes. 1 when the
 * client's copy is current (a 304 is built). */
static int explore_not_modified(explore_request *r, char *etag)
{
    char dims[TRAVERSE_MAX_DIMS * 5 + 1] = "";
    for (int i = 0, used = 0; i < r->n_dims; i++)
        used += snprintf(dims + used, sizeof dims - (size_t)used, "%d,", r->dims[i]);
    compute_request_etag(etag, "%d|%s|%s|%lld|%s|%lld|%s|%.17g|%lld|%s|%lld|%d", (int)r->kind,
                         r->info.sha256, r->info.model, (long long)r->info.version, r->ref_text,
                         (long long)r->count, dims, r->range, (long long)r->steps,
                         http_format_name(r->fmt), (long long)r->scale, r->precision);
    return compute_request_not_modified(&r->base, etag,
                                        api_infer_cache_control(r->model, r->version));
}

/* The 200 of an image answer (api_infer_encode_images), with its headers. */
static http_error answer_images(explore_request *r, const vae_config *cfg, const float *x,
                                const float *z, int n, int cols, const char *extra,
                                const char *etag, char *msg, size_t msglen)
{
    void *body = NULL; /* owned: handed to the response */
    size_t len = 0;
    const char *content_type = NULL;
    http_error e = api_infer_encode_images(r->fmt, cfg, x, z, n, cols, (int)r->scale,
                                           r->precision, &r->info, extra, &body, &len,
                                           &content_type, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    compute_request_set_body(&r->base, MHD_HTTP_OK, content_type, body, len);
    compute_request_model_headers(&r->base, r->info.model, (long long)r->info.version);
    if (etag)
        compute_request_cache_headers(&r->base, etag,
                                      api_infer_cache_control(r->model, r->version));
    return HTTP_ERR_NONE;
}

/* The most images one /reconstruct takes: --max-n, as /sample's n (what
 * that many cost is --request-mem-mb's to refuse, before it is spent). */
static int reconstruct_max(const explore_request *r)
{
    return r->base.ctx->opts->max_n;
}

/* The most images a POST /reconstruct body can hold: one PNG, or as many
 * JSON images of D values as its bytes can spell (each value at least a
 * digit and a comma), at most --max-n. Its memory is checked for these. */
static size_t body_images_most(const explore_request *r, size_t D)
{
    size_t most = r->body_png ? 1 : r->body_len / (2 * D) + 1;
    size_t max_n = (size_t)reconstruct_max(r);
    return most < max_n ? most : max_n;
}

/* The images of a POST /reconstruct body into *x (malloc'd, the caller's). */
static http_error body_images(explore_request *r, const vae_config *cfg, float **x, int *n,
                              char *msg, size_t msglen)
{
    if (vae_config_is_conditional(cfg)) {
        snprintf(msg, msglen,
                 "the model is conditional: a posted image has no label; reconstruct data-set "
                 "images with GET /reconstruct?from=DATASET:SPLIT:INDEX");
        return HTTP_ERR_UNPROCESSABLE;
    }
    *n = 1;
    if (!r->body_png)
        return infer_body_read_images(
            cfg, r->body, r->body_len, r->base.ctx->opts->max_json_depth, reconstruct_max(r),
            (size_t)reconstruct_max(r) * ((size_t)vae_config_input_dim(cfg) + 2) +
                JSON_SLACK_VALUES,
            x, n, msg, msglen);
    *x = malloc((size_t)vae_config_input_dim(cfg) * sizeof **x);
    if (!*x) {
        snprintf(msg, msglen, "out of memory");
        return HTTP_ERR_UNAVAILABLE;
    }
    return infer_body_read_png(cfg, (const uint8_t *)r->body, r->body_len, *x, "the image", msg,
                               msglen);
}

static http_error run_reconstruct(explore_request *r, const vae_model *m, char *msg,
                                  size_t msglen)
{
    const vae_config *cfg = &m->cfg;
    size_t D = (size_t)vae_config_input_dim(cfg), L = (size_t)cfg->latent;
    int post = r->kind == EXPLORE_RECONSTRUCT_POST;
    char etag[COMPUTE_REQUEST_ETAG_MAX];
    if (!post && explore_not_modified(r, etag))
        return HTTP_ERR_NONE;
    size_t most = post ? body_images_most(r, D) : (size_t)r->count;
    size_t need = vae_config_workspace_bytes(cfg, (int)most) + most * (3 * D + 2 * L) * sizeof(float) +
                  api_infer_answer_bytes(r->fmt, 2 * most, D, L, (int)r->scale) +
                  (post && !r->body_png ? (r->body_len / 2 + 1) * sizeof(cJSON) : 0);
    http_error e = api_infer_check_memory(r->base.ctx, cfg, need, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    float *x = NULL, *grid = NULL, *mu = NULL, *logvar = NULL; /* owned */
    int *labels = NULL; /* owned: a conditional model's labels of the data images */
    const int *y = NULL;
    vae_workspace *ws = NULL; /* owned */
    int n = (int)r->count;
    if (post) {
        e = body_images(r, cfg, &x, &n, msg, msglen);
    } else if (!(x = malloc((size_t)n * D * sizeof *x)) ||
               !(labels = malloc((size_t)n * sizeof *labels))) {
        snprintf(msg, msglen, "out of memory for %d images", n);
        e = HTTP_ERR_UNAVAILABLE;
    } else {
        e = data_images(r, cfg, n, x, labels, &y, msg, msglen);
    }
    if (e == HTTP_ERR_NONE) /* PNG: originals above reconstructions, n to a row */
        e = api_infer_check_grid(r->fmt, cfg, 2 * n, n, (int)r->scale, msg, msglen);
    if (e != HTTP_ERR_NONE)
        goto end;
    grid = malloc(2 * (size_t)n * D * sizeof *grid);
    mu = malloc((size_t)n * L * sizeof *mu);
    logvar = malloc((size_t)n * L * sizeof *logvar);
    ws = vae_workspace_new(m, n);
    if (!grid || !mu || !logvar || !ws) {
        snprintf(msg, msglen, "out of memory for %d images", n);
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    memcpy(grid, x, (size_t)n * D * sizeof *grid);
    if (vae_encode_cond(m, ws, x, y, n, mu, logvar) != VAE_OK ||
        vae_decode_cond(m, ws, mu, y, n, grid + (size_t)n * D) != VAE_OK) {
        snprintf(msg, msglen, "a label of %s is not one of the model's %d classes", r->ref.name,
                 cfg->n_classes);
        e = HTTP_ERR_UNPROCESSABLE;
        goto end;
    }
    /* PNG: the originals above their reconstructions; JSON and npy: the
     * reconstructions (and, in JSON, mu as "z"). */
    if (r->fmt == HTTP_FORMAT_PNG)
        e = answer_images(r, cfg, grid, NULL, 2 * n, n, NULL, post ? NULL : etag, msg, msglen);
    else
        e = answer_images(r, cfg, grid + (size_t)n * D, mu, n, 0, NULL, post ? NULL : etag, msg,
                          msglen);
end:
    vae_workspace_free(ws);
    free(x);
    free(labels);
    free(grid);
    free(mu);
    free(logvar);
    return e;
}

static http_error run_traverse(explore_request *r, const vae_model *m, char *msg, size_t msglen)
{
    const vae_config *cfg = &m->cfg;
    int L = cfg->latent;
    size_t D = (size_t)vae_config_input_dim(cfg);
    if (!r->n_dims)
        for (; r->n_dims < L && r->n_dims < TRAVERSE_DEFAULT_DIMS; r->n_dims++)
            r->dims[r->n_dims] = r->n_dims;
    for (int i = 0; i < r->n_dims; i++)
        if (r->dims[i] >= L) {
            snprintf(msg, msglen, "dimension %d is not one of the model's (0 to %d)", r->dims[i],
                     L - 1);
            return HTTP_ERR_UNPROCESSABLE;
        }
    int steps = (int)r->steps, n = r->n_dims * steps, max_n = r->base.ctx->opts->max_n;
    if (n > max_n) {
        metrics_count_refusal(METRICS_LIMIT_MAX_N);
        snprintf(msg, msglen, "%d dimensions of %d steps are %d images, more than --max-n %d",
                 r->n_dims, steps, n, max_n);
        return HTTP_ERR_UNPROCESSABLE;
    }
    http_error e = api_infer_check_grid(r->fmt, cfg, n, steps, (int)r->scale, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    char etag[COMPUTE_REQUEST_ETAG_MAX];
    if (explore_not_modified(r, etag))
        return HTTP_ERR_NONE;
    size_t need = vae_config_workspace_bytes(cfg, n) + (size_t)n * (D + (size_t)L) * sizeof(float) +
                  api_infer_answer_bytes(r->fmt, (size_t)n, D, (size_t)L, (int)r->scale);
    e = api_infer_check_memory(r->base.ctx, cfg, need, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    float *x = malloc(D * sizeof *x);                       /* owned: the image */
    float *mu = malloc(2 * (size_t)L * sizeof *mu);         /* owned: mu, logvar */
    float *z = malloc((size_t)n * (size_t)L * sizeof *z);   /* owned */
    float *out = malloc((size_t)n * D * sizeof *out);       /* owned */
    int *labels = malloc((size_t)n * sizeof *labels);       /* owned */
    vae_workspace *ws = vae_workspace_new(m, n);            /* owned */
    const int *y = NULL;
    if (!x || !mu || !z || !out || !labels || !ws) {
        snprintf(msg, msglen, "out of memory for %d images", n);
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    if ((e = data_images(r, cfg, 1, x, labels, &y, msg, msglen)) != HTTP_ERR_NONE)
        goto end;
    if (vae_encode_cond(m, ws, x, y, 1, mu, mu + L) != VAE_OK) {
        snprintf(msg, msglen, "the image's label is not one of the model's %d classes",
                 cfg->n_classes);
        e = HTTP_ERR_UNPROCESSABLE;
        goto end;
    }
    /* row i: dimension dims[i] from mu - range to mu + range, the rest at mu */
    for (int i = 0; i < r->n_dims; i++)
        for (int s = 0; s < steps; s++) {
            float *row = z + ((size_t)i * (size_t)steps + (size_t)s) * (size_t)L;
            memcpy(row, mu, (size_t)L * sizeof *row);
            row[r->dims[i]] += (float)(r->range * (2.0 * s / (steps - 1) - 1.0));
        }
    for (int i = 0; y && i < n; i++)
        labels[i] = y[0];
    if (vae_decode_cond(m, ws, z, y ? labels : NULL, n, out) != VAE_OK) {
        snprintf(msg, msglen, "decoding failed");
        e = HTTP_ERR_INTERNAL;
        goto end;
    }
    char extra[TRAVERSE_MAX_DIMS * 5 + 96];
    int used = snprintf(extra, sizeof extra, "\"range\":%.9g,\"steps\":%d,\"dims\":[", r->range,
                        steps);
    for (int i = 0; i < r->n_dims; i++)
        used += snprintf(extra + used, sizeof extra - (size_t)used, "%s%d", i ? "," : "",
                         r->dims[i]);
    snprintf(extra + used, sizeof extra - (size_t)used, "],");
    e = answer_images(r, cfg, out, z, n, steps, extra, etag, msg, msglen);
end:
    vae_workspace_free(ws);
    free(x);
    free(mu);
    free(z);
    free(out);
    free(labels);
    return e;
}

static void put_floats(FILE *f, const float *v, int n)
{
    char num[JSON_NUM_FLOAT_MAX];
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        fwrite(num, 1, json_num_float(num, v[i]), f);
    }
    fputc(']', f);
}

/* The map's JSON (malloc'd text, the caller's; NULL when out of memory). */
static char *map_json(const explore_request *r, const dataset *d, int n, int L, const float *xy,
                      const float *mean, const float *axes, const float *variance, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    int pca = L != 2;
    fprintf(f,
            "{\"model\":\"%s\",\"version\":%lld,\"data\":\"%s:%s\",\"count\":%d,\"latent\":%d,"
            "\"projection\":{\"kind\":\"%s\",\"mean\":",
            r->info.model, (long long)r->info.version, r->ref.name, split_name(r->ref.split), n, L,
            pca ? "pca" : "latent");
    put_floats(f, mean, L);
    fputs(",\"axes\":[", f);
    put_floats(f, axes, L);
    fputc(',', f);
    put_floats(f, axes + L, L);
    fputs("],\"variance\":", f);
    put_floats(f, variance, 2);
    fputs("},\"columns\":[\"x\",\"y\",\"label\",\"index\"],\"points\":[", f);
    char a[JSON_NUM_FLOAT_MAX], b[JSON_NUM_FLOAT_MAX];
    for (int i = 0; i < n; i++) {
        json_num_float(a, xy[2 * (size_t)i]);
        json_num_float(b, xy[2 * (size_t)i + 1]);
        if (d->labels)
            fprintf(f, "%s[%s,%s,%d,%d]", i ? "," : "", a, b, d->labels[i], i);
        else
            fprintf(f, "%s[%s,%s,null,%d]", i ? "," : "", a, b, i);
    }
    fputs("]}", f);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        free(text);
        return NULL;
    }
    return text;
}

/* The 200 of a map whose bytes are b (takes the reference), with its headers. */
static void map_answer(explore_request *r, response_body *b, const char *etag)
{
    compute_request_set_shared(&r->base, MHD_HTTP_OK, b);
    compute_request_model_headers(&r->base, r->info.model, (long long)r->info.version);
    compute_request_cache_headers(&r->base, etag, api_infer_cache_control(r->model, r->version));
}

static http_error run_map(explore_request *r, const vae_model *m, char *msg, size_t msglen)
{
    const vae_config *cfg = &m->cfg;
    int L = cfg->latent;
    size_t D = (size_t)vae_config_input_dim(cfg);
    char etag[COMPUTE_REQUEST_ETAG_MAX], key[256];
    if (explore_not_modified(r, etag))
        return HTTP_ERR_NONE;
    response_cache *cache = r->base.ctx->responses;
    snprintf(key, sizeof key, "map|%s|%s|%lld", etag, r->info.model, (long long)r->info.version);
    response_body *kept = NULL; /* a reference, handed to the answer */
    if (cache && response_cache_get(cache, key, &kept) == RESPONSE_CACHE_OK) {
        map_answer(r, kept, etag);
        return HTTP_ERR_NONE;
    }
    if (L > PCA_MAX_DIM) {
        snprintf(msg, msglen, "a latent map takes latents of at most %d dimensions (this has %d)",
                 PCA_MAX_DIM, L);
        return HTTP_ERR_UNPROCESSABLE;
    }
    const dataset *d = NULL; /* borrowed from the data cache */
    http_error e = api_infer_data_set(r->base.ctx, r->ref.name, r->ref.split, cfg, &d, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    if (vae_config_is_conditional(cfg) && !d->labels) {
        snprintf(msg, msglen, "the model is conditional and %s has no labels", r->ref.name);
        return HTTP_ERR_UNPROCESSABLE;
    }
    int n = r->count < d->n ? (int)r->count : d->n;
    size_t need = vae_config_workspace_bytes(cfg, MAP_BATCH) +
                  ((size_t)n * (size_t)(L + 2) + (size_t)MAP_BATCH * (size_t)L) * sizeof(float) +
                  (size_t)L * (size_t)L * sizeof(double) + 2 * (size_t)n * MAP_POINT_BYTES;
    if ((e = api_infer_check_memory(r->base.ctx, cfg, need, msg, msglen)) != HTTP_ERR_NONE)
        return e;
    float *mu = malloc((size_t)n * (size_t)L * sizeof *mu);         /* owned */
    float *logvar = malloc((size_t)MAP_BATCH * (size_t)L * sizeof *logvar); /* owned */
    float *xy = malloc(2 * (size_t)n * sizeof *xy);                  /* owned */
    float *proj = malloc((3 * (size_t)L + 2) * sizeof *proj);        /* owned: mean, axes, var */
    vae_workspace *ws = vae_workspace_new(m, MAP_BATCH);             /* owned */
    char *text = NULL;                                                /* owned */
    if (!mu || !logvar || !xy || !proj || !ws) {
        snprintf(msg, msglen, "out of memory for a map of %d points", n);
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    for (int i = 0; i < n; i += MAP_BATCH) {
        int b = n - i < MAP_BATCH ? n - i : MAP_BATCH, labels[MAP_BATCH];
        for (int k = 0; d->labels && k < b; k++)
            labels[k] = d->labels[i + k];
        if (vae_encode_cond(m, ws, d->x + (size_t)i * D, vae_config_is_conditional(cfg) ? labels : NULL,
                            b, mu + (size_t)i * (size_t)L, logvar) != VAE_OK) {
            snprintf(msg, msglen, "a label of %s is not one of the model's %d classes",
                     r->ref.name, cfg->n_classes);
            e = HTTP_ERR_UNPROCESSABLE;
            goto end;
        }
    }
    float *mean = proj, *axes = proj + L, *variance = proj + 3 * (size_t)L;
    char why[128] = "";
    if (L == 2) {
        /* the latent itself: identity axes through the origin, and the
         * points' variance along each */
        memcpy(xy, mu, 2 * (size_t)n * sizeof *xy);
        static const float identity[4] = {1, 0, 0, 1};
        memcpy(axes, identity, sizeof identity);
        for (int a = 0; a < 2; a++) {
            double sum = 0, sq = 0;
            for (int i = 0; i < n; i++) {
                sum += mu[2 * (size_t)i + (size_t)a];
                sq += (double)mu[2 * (size_t)i + (size_t)a] * mu[2 * (size_t)i + (size_t)a];
            }
            mean[a] = 0;
            variance[a] = (float)(sq / n - (sum / n) * (sum / n));
        }
    } else {
        if (L == 1 || pca_fit(mu, n, L, 2, mean, axes, variance, why, sizeof why) != VAE_OK) {
            snprintf(msg, msglen, "a latent of %d dimension(s) has no 2-D map%s%s", L,
                     why[0] ? ": " : "", why);
            e = HTTP_ERR_UNPROCESSABLE;
            goto end;
        }
        pca_project(mu, n, L, 2, mean, axes, xy);
    }
    size_t len = 0;
    if (!(text = map_json(r, d, n, L, xy, mean, axes, variance, &len))) {
        snprintf(msg, msglen, "out of memory writing the map");
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    /* one body, sent and kept: no copy of the bytes */
    response_body *b = response_body_new(text, len, "application/json");
    text = NULL; /* the body's now, also when it is NULL */
    if (!b) {
        snprintf(msg, msglen, "out of memory writing the map");
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    map_answer(r, b, etag);
    if (cache && r->base.resp)
        (void)response_cache_put(cache, key, b); /* too large or no memory: not kept */
end:
    vae_workspace_free(ws);
    free(mu);
    free(logvar);
    free(xy);
    free(proj);
    free(text);
    return e;
}

static void explore_work(compute_request *cr)
{
    explore_request *r = (explore_request *)cr;
    char msg[HTTP_MESSAGE_MAX] = "";
    model_handle *h = NULL; /* released below */
    http_error e = api_infer_acquire(cr->ctx, r->model, r->version, &h, &r->info, msg, sizeof msg);
    if (e == HTTP_ERR_NONE) {
        switch (r->kind) {
        case EXPLORE_RECONSTRUCT_GET:
        case EXPLORE_RECONSTRUCT_POST:
            e = run_reconstruct(r, &h->model, msg, sizeof msg);
            break;
        case EXPLORE_TRAVERSE:
            e = run_traverse(r, &h->model, msg, sizeof msg);
            break;
        case EXPLORE_MAP:
            e = run_map(r, &h->model, msg, sizeof msg);
            break;
        }
        model_cache_release(cr->ctx->cache, h);
    }
    if (e != HTTP_ERR_NONE)
        compute_request_fail(cr, e, "%s", msg);
}

/* ---- the handlers: checks on the polling thread ---------------------------- */

static explore_request *explore_new(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                                    explore_kind kind)
{
    explore_request *r = compute_request_new(ctx, c, req, sizeof *r, explore_work);
    if (!r)
        return NULL;
    r->kind = kind;
    r->scale = 1;
    r->body = req->body;
    r->body_len = req->body_len;
    return r;
}

/* ?model=, ?version=, and for image answers ?scale=, ?precision= and the
 * format. */
static http_error common_params(explore_request *r, int images, char *msg, size_t msglen)
{
    struct MHD_Connection *c = r->base.task.conn;
    http_error e = api_infer_model_params(c, r->model, r->version, msg, msglen);
    if (e != HTTP_ERR_NONE || !images)
        return e;
    if (http_query_int(c, "scale", 1, API_INFER_MAX_SCALE, 1, &r->scale, msg, msglen) ||
        api_infer_precision_param(c, &r->precision, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    return http_negotiate(c, HTTP_OFFER_IMAGES, &r->fmt, msg, msglen);
}

/* from=DATASET:SPLIT:INDEX, and with range_ok also DATASET:SPLIT:FIRST-LAST
 * (r->count images). */
static http_error from_param(explore_request *r, int range_ok, char *msg, size_t msglen)
{
    const char *from = NULL;
    if (http_query_str(r->base.task.conn, "from", sizeof r->ref_text - 1, &from, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    char one[sizeof r->ref_text];
    snprintf(one, sizeof one, "%s", from ? from : "");
    char *dash = range_ok ? strchr(one, '-') : NULL;
    int64_t last = -1;
    if (dash) {
        *dash = '\0';
        if (http_parse_i64(dash + 1, &last))
            last = -2;
    }
    if (!from || api_infer_parse_data_ref(one, &r->ref) || last == -2 ||
        (dash && last < r->ref.index)) {
        snprintf(msg, msglen,
                 "parameter 'from' must be a data set reference DATASET:SPLIT:INDEX%s such as "
                 "mnist:test:3%s (DATASET mnist or fashion, SPLIT train or test)",
                 range_ok ? "[-LAST]" : "", range_ok ? " or mnist:test:0-15" : "");
        return HTTP_ERR_BAD_REQUEST;
    }
    snprintf(r->ref_text, sizeof r->ref_text, "%s", from);
    r->count = dash ? last - r->ref.index + 1 : 1;
    if (r->count > reconstruct_max(r)) {
        metrics_count_refusal(METRICS_LIMIT_MAX_N);
        snprintf(msg, msglen, "at most %d images at once, --max-n (%s is %lld)",
                 reconstruct_max(r), from, (long long)r->count);
        return HTTP_ERR_UNPROCESSABLE;
    }
    return HTTP_ERR_NONE;
}

enum MHD_Result api_explore_reconstruct_get(http_ctx *ctx, struct MHD_Connection *c,
                                            http_request *req)
{
    if (req->work)
        return compute_request_queue(req->work);
    explore_request *r = explore_new(ctx, c, req, EXPLORE_RECONSTRUCT_GET);
    if (!r)
        return MHD_NO;
    char msg[HTTP_MESSAGE_MAX];
    http_error e = common_params(r, 1, msg, sizeof msg);
    if (e == HTTP_ERR_NONE)
        e = from_param(r, 1, msg, sizeof msg);
    return e == HTTP_ERR_NONE ? compute_request_submit(&r->base, 0)
                              : http_send_error(c, e, "%s", msg);
}

enum MHD_Result api_explore_reconstruct_post(http_ctx *ctx, struct MHD_Connection *c,
                                             http_request *req)
{
    if (req->work)
        return compute_request_queue(req->work);
    explore_request *r = explore_new(ctx, c, req, EXPLORE_RECONSTRUCT_POST);
    if (!r)
        return MHD_NO;
    char msg[HTTP_MESSAGE_MAX];
    http_error e = common_params(r, 1, msg, sizeof msg);
    r->body_png = http_content_type_is(c, "image/png");
    if (e == HTTP_ERR_NONE && !req->body_len) {
        snprintf(msg, sizeof msg, "a request body is required: JSON {\"x\": [images]} or a PNG");
        e = HTTP_ERR_BAD_REQUEST;
    } else if (e == HTTP_ERR_NONE && !r->body_png && !http_content_type_is(c, "application/json")) {
        snprintf(msg, sizeof msg, "Content-Type must be application/json or image/png");
        e = HTTP_ERR_UNSUPPORTED_MEDIA;
    }
    return e == HTTP_ERR_NONE ? compute_request_submit(&r->base, 0)
                              : http_send_error(c, e, "%s", msg);
}

/* dims=A-B, dims=A,B,C or dims=A into r (each 0..1023, at most
 * TRAVERSE_MAX_DIMS; whether the model has them is checked with it). */
static http_error dims_param(explore_request *r, char *msg, size_t msglen)
{
    const char *dims = NULL;
    if (http_query_str(r->base.task.conn, "dims", 2048, &dims, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    if (!dims)
        return HTTP_ERR_NONE;
    char text[2049];
    snprintf(text, sizeof text, "%s", dims);
    char *dash = strchr(text, '-');
    int64_t a, b;
    if (dash) {
        *dash = '\0';
        if (!http_parse_i64(text, &a) && !http_parse_i64(dash + 1, &b) && a <= b && b < 1024 &&
            b - a < TRAVERSE_MAX_DIMS) {
            for (int64_t d = a; d <= b; d++)
                r->dims[r->n_dims++] = (int)d;
            return HTTP_ERR_NONE;
        }
    } else {
        char *save = NULL;
        for (char *tok = strtok_r(text, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (http_parse_i64(tok, &a) || a >= 1024 || r->n_dims >= TRAVERSE_MAX_DIMS)
                goto bad;
            r->dims[r->n_dims++] = (int)a;
        }
        if (r->n_dims)
            return HTTP_ERR_NONE;
    }
bad:
    snprintf(msg, msglen,
             "parameter 'dims' must be latent dimensions FIRST-LAST (0-9) or a list (0,3,5), at "
             "most %d of them, each below 1024",
             TRAVERSE_MAX_DIMS);
    return HTTP_ERR_BAD_REQUEST;
}

enum MHD_Result api_explore_traverse(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    if (req->work)
        return compute_request_queue(req->work);
    explore_request *r = explore_new(ctx, c, req, EXPLORE_TRAVERSE);
    if (!r)
        return MHD_NO;
    char msg[HTTP_MESSAGE_MAX];
    http_error e = common_params(r, 1, msg, sizeof msg);
    if (e == HTTP_ERR_NONE)
        e = from_param(r, 0, msg, sizeof msg);
    if (e == HTTP_ERR_NONE)
        e = dims_param(r, msg, sizeof msg);
    /* --max-steps, as /interpolate's; dims x steps images are --max-n's
     * and their memory --request-mem-mb's (run_traverse). */
    int max_steps = ctx->opts->max_steps;
    if (e == HTTP_ERR_NONE &&
        http_query_limited(c, "steps", 2, max_steps, METRICS_LIMIT_MAX_STEPS,
                           TRAVERSE_DEFAULT_STEPS, &r->steps, msg, sizeof msg)) {
        snprintf(msg, sizeof msg, "parameter 'steps' must be an integer from 2 to %d, --max-steps",
                 max_steps);
        e = HTTP_ERR_BAD_REQUEST;
    }
    r->range = TRAVERSE_DEFAULT_RANGE;
    const char *range = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "range");
    if (e == HTTP_ERR_NONE && range) {
        char *end = NULL;
        double v = (range[0] >= '0' && range[0] <= '9') || range[0] == '.' ? strtod(range, &end)
                                                                            : NAN;
        if (!end || *end || !(v > 0 && v <= API_EXPLORE_MAX_TRAVERSE_RANGE)) {
            snprintf(msg, sizeof msg, "parameter 'range' must be a number greater than 0 and at "
                                      "most %g",
                     API_EXPLORE_MAX_TRAVERSE_RANGE);
            e = HTTP_ERR_BAD_REQUEST;
        } else {
            r->range = v;
        }
    }
    return e == HTTP_ERR_NONE ? compute_request_submit(&r->base, 0)
                              : http_send_error(c, e, "%s", msg);
}

enum MHD_Result api_explore_latent_map(http_ctx *ctx, struct MHD_Connection *c,
                                       http_request *req)
{
    if (req->work)
        return compute_request_queue(req->work);
    explore_request *r = explore_new(ctx, c, req, EXPLORE_MAP);
    if (!r)
        return MHD_NO;
    char msg[HTTP_MESSAGE_MAX];
    http_error e = common_params(r, 0, msg, sizeof msg);
    /* The map is JSON only: ?format=png or an Accept without JSON is
     * refused, as /score refuses them, not answered with JSON. */
    if (e == HTTP_ERR_NONE)
        e = http_negotiate(c, HTTP_OFFER_JSON, &r->fmt, msg, sizeof msg);
    const char *data = NULL;
    if (e == HTTP_ERR_NONE &&
        (http_query_str(c, "data", 40, &data, msg, sizeof msg) ||
         http_query_int(c, "limit", 1, API_EXPLORE_MAX_MAP_POINTS, API_EXPLORE_DEFAULT_MAP_POINTS,
                        &r->count, msg, sizeof msg)))
        e = HTTP_ERR_BAD_REQUEST;
    if (e == HTTP_ERR_NONE) {
        char ref[64];
        snprintf(ref, sizeof ref, "%s:0", data ? data : "mnist:test");
        if (api_infer_parse_data_ref(ref, &r->ref)) {
            snprintf(msg, sizeof msg,
                     "parameter 'data' must be DATASET:SPLIT such as mnist:test (DATASET mnist "
                     "or fashion, SPLIT train or test)");
            e = HTTP_ERR_BAD_REQUEST;
        }
        snprintf(r->ref_text, sizeof r->ref_text, "%s", ref);
    }
    r->fmt = HTTP_FORMAT_JSON;
    return e == HTTP_ERR_NONE ? compute_request_submit(&r->base, 0)
                              : http_send_error(c, e, "%s", msg);
}
