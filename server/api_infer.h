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

#include "server/http_request.h"

/* Largest batch of /sample, /encode and /decode, and of /interpolate steps. */
#define API_INFER_MAX_N 1024
#define API_INFER_MAX_STEPS 256
/* Requests this small run on the polling thread itself (see api_infer.c,
 * infer_is_cheap): /sample and GET /interpolate of at most this many images,
 * /encode and /decode bodies of at most this many bytes. */
#define API_INFER_INLINE_IMAGES 4
#define API_INFER_INLINE_BODY (32 * 1024)

enum MHD_Result api_infer_sample(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_encode(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_decode(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_infer_interpolate_post(http_ctx *ctx, struct MHD_Connection *c,
                                           http_request *req);
enum MHD_Result api_infer_interpolate_get(http_ctx *ctx, struct MHD_Connection *c,
                                          http_request *req);

#endif
