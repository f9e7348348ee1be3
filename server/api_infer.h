/* api_infer: the inference endpoints — rows of the route table (routes.c).
 *
 *     POST /sample?n=&seed=&temperature=   api_infer_sample            images from N(0, I)
 *     POST /encode                         api_infer_encode            images in, mu and logvar out
 *     POST /decode                         api_infer_decode            latents in, images out
 *     POST /interpolate                    api_infer_interpolate_post  a strip between two ends
 *     GET  /interpolate?from=&to=          api_infer_interpolate_get   the same between data-set
 *                                                                      images, cached (ETag, 304)
 *
 * Each accepts ?model= and ?version= (else the default model) and, where it
 * returns images, ?format=png|json|npy or an Accept header.
 *
 * Model math never stalls a libmicrohttpd polling thread for long: requests
 * of at most API_INFER_INLINE_* size (well under a millisecond) run where
 * they arrive, since handing them over would cost more than they do; the
 * rest go to the compute pool (compute_pool.h, http_ctx.compute). For those,
 * a handler checks what is cheap to check (query parameters, Content-Type,
 * Accept), then admits the request into the pool, which suspends the
 * connection (or answers 429 too_many_requests with Retry-After when it is
 * full); a compute thread parses the body (infer_body.h), runs the model,
 * builds the response and resumes the connection; libmicrohttpd calls the
 * handler again, which queues the finished response.
 *
 * A request's state (the answer being built included) hangs off
 * http_request.work and is freed by http_request.work_free from the
 * NOTIFY_COMPLETED callback, also when the client went away meanwhile.
 */
#ifndef API_INFER_H
#define API_INFER_H

#include <microhttpd.h>

#include "engine/dataset.h"
#include "engine/image.h"
#include "engine/vae.h"
#include "server/data_sets.h"
#include "server/http_request.h"
#include "server/http_util.h"
#include "server/model_cache.h"

/* Largest batch of /sample, /encode and /decode, and of /interpolate steps. */
#define API_INFER_MAX_N 1024
#define API_INFER_MAX_STEPS 256
/* Requests this small run on the polling thread itself (see api_infer.c,
 * infer_is_cheap): /sample and GET /interpolate of at most this many images,
 * /encode and /decode bodies of at most this many bytes. */
#define API_INFER_INLINE_IMAGES 4
#define API_INFER_INLINE_BODY (32 * 1024)

/* ?scale=K on every image answer: 1 to this (see image_encode_grid_png_scaled). */
#define API_INFER_MAX_SCALE IMAGE_MAX_SCALE

enum MHD_Result api_infer_sample(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_encode(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_decode(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_interpolate_post(http_ctx *ctx, struct MHD_Connection *c,
                                           http_request *req);
enum MHD_Result api_infer_interpolate_get(http_ctx *ctx, struct MHD_Connection *c,
                                          http_request *req);

/* ---- what the other model endpoints (api_score.c, api_explore.c, api_data.c) do the same way ---- */

#define API_INFER_NAME_MAX 64

/* The kinds of body an endpoint takes (bits of a set). */
typedef enum {
    API_INFER_BODY_JSON = 1, /* application/json */
    API_INFER_BODY_PNG = 2,  /* image/png: one image */
    API_INFER_BODY_NPY = 4   /* application/x-npy: float32 (n, C, H, W), (n, D) or (C, H, W) */
} api_infer_body;

/* ?model= and ?version= into model and version (API_INFER_NAME_MAX + 1
 * bytes each; "" when absent): 400 for a bad one. */
http_error api_infer_model_params(struct MHD_Connection *c, char *model, char *version,
                                  char *msg, size_t msglen);
/* A body is required: 411 without any length, 400 empty, 415 for a
 * Content-Type not in accepted (API_INFER_BODY_* bits); *kind says which. */
http_error api_infer_require_body(struct MHD_Connection *c, const http_request *req,
                                  unsigned accepted, api_infer_body *kind, char *msg,
                                  size_t msglen);
/* The model (model and version "" for the defaults) from the cache: *h to
 * release with model_cache_release, *info the checkpoint the names resolved
 * to (what the answer reports); the error (404, 503) with its message. */
http_error api_infer_acquire(http_ctx *ctx, const char *model, const char *version,
                             model_handle **h, registry_checkpoint_info *info, char *msg,
                             size_t msglen);
/* A body of kind into images for cfg: *x (malloc'd, the caller's) of *n (1
 * to --max-n, ctx->opts->max_n) images, as /encode reads them: JSON {"x": ...} or
 * {"png_base64": [...]}, one PNG, or a .npy of pixel values in [0, 1]. */
http_error api_infer_read_images(const http_ctx *ctx, const vae_config *cfg, const char *body,
                                 size_t len, api_infer_body kind, float **x, int *n, char *msg,
                                 size_t msglen);
/* The most images a body of kind and len bytes can hold for cfg (1 to
 * API_INFER_MAX_N), and in *json_values the most JSON values (cJSON nodes)
 * parsing it can make: for a request's memory budget, before it is read. */
size_t api_infer_body_images(const vae_config *cfg, api_infer_body kind, size_t len,
                             size_t *json_values);
/* 422 naming --request-mem-mb (counted in /metrics) when a request that
 * could allocate need bytes on model cfg is over the budget. */
http_error api_infer_check_memory(http_ctx *ctx, const vae_config *cfg, size_t need, char *msg,
                                  size_t msglen);
/* 422 (counted in /metrics) when fmt is PNG and n of cfg's images, cols to
 * a row (0: a square grid), at scale, would not fit one PNG
 * (image_grid_fits): checked before the images are computed, so a grid that
 * cannot be drawn costs no decode. */
http_error api_infer_check_grid(http_format fmt, const vae_config *cfg, int n, int cols, int scale,
                                char *msg, size_t msglen);
/* 1 when s is a data set reference DATASET:SPLIT:INDEX (mnist or fashion,
 * train or test). */
int api_infer_is_data_ref(const char *s);
/* Image ref (a data set reference) of the daemon's data sets into dst, its
 * label (-1 when the set has none) into *label: 404 past the end or not
 * available, 422 of another shape than cfg's. */
http_error api_infer_data_image(http_ctx *ctx, const char *ref, const vae_config *cfg,
                                float *dst, int *label, char *msg, size_t msglen);
/* A data-set image's own label (api_infer_data_image's *label, -1 when its
 * set has none) as the class of a conditional cfg: 422 naming ref when
 * there is none, or when it is not one of cfg's classes. */
http_error api_infer_data_label(const vae_config *cfg, const char *ref, int label, char *msg,
                                size_t msglen);
/* A data-set image reference DATASET:SPLIT:INDEX (not label:K) parsed:
 * 0, or -1 when s is not one (the index is not range-checked: the split is
 * not loaded). */
typedef struct {
    char name[32];
    data_sets_split split;
    int64_t index;
} api_infer_data_ref;
int api_infer_parse_data_ref(const char *s, api_infer_data_ref *out);
/* A split of a built-in data set from the data cache (loading it on first
 * use: not on a polling thread), and, when cfg is not NULL, 422 unless its
 * images are the model's size. *out is borrowed from the cache. */
http_error api_infer_data_set(http_ctx *ctx, const char *name, data_sets_split split,
                              const vae_config *cfg, const dataset **out, char *msg,
                              size_t msglen);
/* At most what api_infer_encode_images allocates for n images of D values
 * (and latents of L) in fmt at scale. */
size_t api_infer_answer_bytes(http_format fmt, size_t n, size_t D, size_t L, int scale);
/* Images x (n, D) made from latents z (n, latent; NULL: none, and no "z"
 * in JSON) as an answer body: a PNG grid of cols columns (0: ceil(sqrt(n)))
 * at scale, JSON {"model", "version", extra_json (members with a trailing
 * comma, or NULL), "z", "x"} with floats of precision significant digits
 * (json_num_float_digits; 0: shortest round trip), or npy (n, C, H, W) of x. *out (malloc'd) and
 * *len are the caller's, *content_type a literal. 500 for non-finite values,
 * 422 for a grid too large to draw, 503 out of memory. */
http_error api_infer_encode_images(http_format fmt, const vae_config *cfg, const float *x,
                                   const float *z, int n, int cols, int scale, int precision,
                                   const registry_checkpoint_info *info, const char *extra_json,
                                   void **out, size_t *len, const char **content_type, char *msg,
                                   size_t msglen);
/* ?precision=N (1..9) into *precision, 0 when absent: the significant
 * digits of the floats of a JSON answer. -1 with msg (a 400) when not an
 * integer in range (given twice, the transport has refused it already). */
int api_infer_precision_param(struct MHD_Connection *c, int *precision, char *msg, size_t msglen);
/* The Cache-Control of a GET image answer: immutable when model and a
 * numeric version are named (that checkpoint never changes), else
 * revalidate ("latest" or the default model may move). */
const char *api_infer_cache_control(const char *model, const char *version);

#endif
