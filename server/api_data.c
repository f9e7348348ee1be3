/* api_data: one data-set request is a data_request (compute_request.h);
 * data_work draws it wherever it runs. */
#include "server/api_data.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image.h"
#include "server/api_infer.h"
#include "server/compute_request.h"
#include "server/data_cache.h"
#include "server/http_server.h"
#include "server/http_util.h"
#include "server/npy.h"

#define SHEET_DEFAULT_COUNT 16

typedef struct {
    compute_request base; /* first */
    char name[32];
    data_sets_split split;
    int64_t start, count, cols, scale;
    http_format fmt;
} data_request;

static const char *split_name(data_sets_split s)
{
    return s == DATA_SETS_TEST ? "test" : "train";
}

/* The labels and sizes of a sheet, as JSON text (malloc'd, the caller's). */
static char *sheet_json(const data_request *r, const dataset *d, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        return NULL;
    fprintf(f,
            "{\"data\":\"%s\",\"split\":\"%s\",\"size\":%d,\"start\":%lld,\"count\":%lld,"
            "\"channels\":%d,\"height\":%d,\"width\":%d,\"labels\":",
            r->name, split_name(r->split), d->n, (long long)r->start, (long long)r->count,
            d->channels, d->height, d->width);
    if (!d->labels) {
        fputs("null", f);
    } else {
        fputc('[', f);
        for (int64_t i = 0; i < r->count; i++)
            fprintf(f, "%s%d", i ? "," : "", d->labels[r->start + i]);
        fputc(']', f);
    }
    fputc('}', f);
    int bad = ferror(f);
    if (fclose(f) || bad) {
        free(text);
        return NULL;
    }
    return text;
}

static void data_work(compute_request *cr)
{
    data_request *r = (data_request *)cr;
    char msg[HTTP_MESSAGE_MAX];
    const dataset *d = NULL; /* borrowed from the data cache */
    http_error e = api_infer_data_set(cr->ctx, r->name, r->split, NULL, &d, msg, sizeof msg);
    if (e != HTTP_ERR_NONE) {
        compute_request_fail(cr, e, "%s", msg);
        return;
    }
    if (r->start >= d->n) {
        compute_request_fail(cr, HTTP_ERR_NOT_FOUND, "the %s split of %s has %d images (0 to %d)",
                             split_name(r->split), r->name, d->n, d->n - 1);
        return;
    }
    if (r->count > d->n - r->start)
        r->count = d->n - r->start; /* the last page of a browser is shorter */
    size_t D = (size_t)dataset_dim(d), n = (size_t)r->count, k = (size_t)r->scale;
    size_t need = r->fmt == HTTP_FORMAT_PNG ? 2 * n * D * k * k : n * D * sizeof(float);
    size_t limit = cr->ctx->opts->request_mem_mb << 20;
    if (limit && need > limit) {
        compute_request_fail(cr, HTTP_ERR_UNPROCESSABLE,
                             "this sheet could need %zu MiB, more than the %zu MiB one request "
                             "may use (--request-mem-mb): ask for fewer images or a smaller scale",
                             (need + (1u << 20) - 1) >> 20, limit >> 20);
        return;
    }
    const float *x = d->x + (size_t)r->start * D;
    void *body = NULL; /* owned: handed to the response */
    size_t len = 0;
    if (r->fmt == HTTP_FORMAT_PNG) {
        uint8_t *png = NULL;
        char why[256] = "";
        vae_status rc = image_encode_grid_png_scaled(x, (int)n, d->channels, d->height, d->width,
                                                     (int)r->cols, (int)r->scale, &png, &len, why,
                                                     sizeof why);
        if (rc != VAE_OK) {
            compute_request_fail(cr, rc == VAE_ERR_ARG ? HTTP_ERR_UNPROCESSABLE : HTTP_ERR_UNAVAILABLE,
                                 "cannot draw this sheet: %s", why);
            return;
        }
        body = png;
    } else if (r->fmt == HTTP_FORMAT_NPY) {
        int shape[4] = {(int)n, d->channels, d->height, d->width};
        uint8_t *npy = NULL;
        if (npy_encode_f32(x, shape, 4, &npy, &len)) {
            compute_request_fail(cr, HTTP_ERR_UNAVAILABLE, "out of memory writing the array");
            return;
        }
        body = npy;
    } else {
        body = sheet_json(r, d, &len);
        if (!body) {
            compute_request_fail(cr, HTTP_ERR_UNAVAILABLE, "out of memory writing the response");
            return;
        }
    }
    /* The data files may change between two daemons: the tag is the bytes'. */
    char etag[COMPUTE_REQUEST_ETAG_MAX];
    compute_request_etag_bytes(etag, body, len);
    if (compute_request_not_modified(cr, etag, "public, no-cache")) {
        free(body);
        return;
    }
    compute_request_set_body(cr, MHD_HTTP_OK, http_format_mime(r->fmt), body, len);
    compute_request_cache_headers(cr, etag, "public, no-cache");
}

/* The path's DATASET and SPLIT, and the query both routes take. */
static http_error data_params(data_request *r, struct MHD_Connection *c, const http_request *req,
                              char *msg, size_t msglen)
{
    const char *name = req->params[0], *split = req->params[1];
    if (!data_sets_is_builtin(name) || strlen(name) >= sizeof r->name) {
        snprintf(msg, msglen, "no data set '%.64s' here: the data sets are mnist and fashion",
                 name);
        return HTTP_ERR_NOT_FOUND;
    }
    if (strcmp(split, "train") && strcmp(split, "test")) {
        snprintf(msg, msglen, "no split '%.64s': the splits are train and test", split);
        return HTTP_ERR_NOT_FOUND;
    }
    memcpy(r->name, name, strlen(name) + 1); /* shorter than r->name: checked above */
    r->split = strcmp(split, "test") ? DATA_SETS_TRAIN : DATA_SETS_TEST;
    if (http_query_int(c, "scale", 1, API_INFER_MAX_SCALE, 1, &r->scale, msg, msglen))
        return HTTP_ERR_BAD_REQUEST;
    return http_negotiate(c, HTTP_OFFER_IMAGES, &r->fmt, msg, msglen);
}

/* Both routes: one image (sheet 0: /data/D/S/INDEX) or a sheet. */
static enum MHD_Result data_handle(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                                   int sheet)
{
    if (req->work)
        return compute_request_queue(req->work);
    data_request *r = compute_request_new(ctx, c, req, sizeof *r, data_work);
    if (!r)
        return MHD_NO;
    char msg[HTTP_MESSAGE_MAX];
    http_error e = data_params(r, c, req, msg, sizeof msg);
    r->count = r->cols = 1;
    if (e == HTTP_ERR_NONE && !sheet && http_parse_i64(req->params[2], &r->start)) {
        snprintf(msg, sizeof msg, "the image index must be a number from 0 (got '%.64s')",
                 req->params[2]);
        e = HTTP_ERR_BAD_REQUEST;
    }
    if (e == HTTP_ERR_NONE && sheet &&
        (http_query_int(c, "start", 0, INT32_MAX, 0, &r->start, msg, sizeof msg) ||
         http_query_int(c, "count", 1, API_DATA_MAX_SHEET, SHEET_DEFAULT_COUNT, &r->count, msg,
                        sizeof msg) ||
         http_query_int(c, "cols", 0, API_DATA_MAX_SHEET, 0, &r->cols, msg, sizeof msg)))
        e = HTTP_ERR_BAD_REQUEST;
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    int64_t k = r->scale;
    int cheap = data_cache_peek(ctx->data, r->name, r->split) &&
                r->count * 28 * 28 * k * k <= API_DATA_INLINE_PIXELS;
    return compute_request_submit(&r->base, cheap);
}

enum MHD_Result api_data_image(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return data_handle(ctx, c, req, 0);
}

enum MHD_Result api_data_sheet(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return data_handle(ctx, c, req, 1);
}
