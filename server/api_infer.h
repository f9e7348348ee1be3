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

/* ---- what the other endpoints that run a model share (api_explore.c, api_data.c) ---- */

/* ?model= and ?version= (each at most API_INFER_NAME_MAX bytes; "" when
 * absent) into model and version (API_INFER_NAME_MAX + 1 bytes each): 400
 * for a name that is not a model name. On the polling thread. */
#define API_INFER_NAME_MAX 64
http_error api_infer_model_params(struct MHD_Connection *c, char *model, char *version,
                                  char *msg, size_t msglen);

/* A data-set image as users write it: DATASET:SPLIT:INDEX (mnist:test:3),
 * DATASET a built-in name. api_infer_parse_data_ref: 0, or -1 when s is not
 * one (the index is not range-checked: the split is not loaded). */
typedef struct {
    char name[32];
    data_sets_split split;
    int64_t index;
} api_infer_data_ref;
int api_infer_parse_data_ref(const char *s, api_infer_data_ref *out);

/* model_cache_acquire with the message a client reads for each status;
 * model and version may be NULL or "" (the default, latest). May block for
 * a load: not on a polling thread. On HTTP_ERR_NONE release *h. */
http_error api_infer_acquire(http_ctx *ctx, const char *model, const char *version,
                             model_handle **h, registry_checkpoint_info *info, char *msg,
                             size_t msglen);
/* A split of a built-in data set from the data cache (loading it on first
 * use: not on a polling thread), and, when cfg is not NULL, 422 unless its
 * images are the model's size. *out is borrowed from the cache. */
http_error api_infer_data_set(http_ctx *ctx, const char *name, data_sets_split split,
                              const vae_config *cfg, const dataset **out, char *msg,
                              size_t msglen);
/* 422 naming --request-mem-mb when need bytes exceed what one request may
 * use on a model of cfg (counted in /metrics). */
http_error api_infer_check_memory(http_ctx *ctx, const vae_config *cfg, size_t need, char *msg,
                                  size_t msglen);
/* At most what api_infer_encode_images allocates for n images of D values
 * (and latents of L) in fmt at scale. */
size_t api_infer_answer_bytes(http_format fmt, size_t n, size_t D, size_t L, int scale);
/* Images x (n, D) made from latents z (n, latent; NULL: none, and no "z"
 * in JSON) as an answer body: a PNG
 * grid of cols columns (0: ceil(sqrt(n))) at scale, JSON {"model",
 * "version", extra_json (members with a trailing comma, or NULL), "z",
 * "x"}, or npy (n, C, H, W) of x. *out (malloc'd) and *len are the caller's,
 * *content_type a literal. 500 for non-finite values, 422 for a grid too
 * large to draw, 503 out of memory. */
http_error api_infer_encode_images(http_format fmt, const vae_config *cfg, const float *x,
                                   const float *z, int n, int cols, int scale,
                                   const registry_checkpoint_info *info, const char *extra_json,
                                   void **out, size_t *len, const char **content_type, char *msg,
                                   size_t msglen);
/* The Cache-Control of a GET image answer: immutable when model and a
 * numeric version are named (that checkpoint never changes), else
 * revalidate ("latest" or the default model may move). */
const char *api_infer_cache_control(const char *model, const char *version);

#endif
