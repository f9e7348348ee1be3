/* api_explore: what a person looks at to see what a VAE learned — rows of
 * the route table (routes.c).
 *
 *     GET  /reconstruct?from=mnist:test:0-15  api_explore_reconstruct_get   originals above their
 *     POST /reconstruct  (JSON {"x"} or PNG)  api_explore_reconstruct_post  reconstructions
 *     GET  /traverse?from=mnist:test:3&dims=0-9&range=3&steps=9
 *                                             api_explore_traverse          one row per latent
 *                                             dimension swept around mu, the others fixed
 *     GET  /latent-map?data=mnist:test&limit=2000
 *                                             api_explore_latent_map        mu of the first limit
 *                                             images in 2-D (PCA, or the latent itself when it
 *                                             has 2 dimensions), with labels, as JSON
 *
 * Each takes ?model= and ?version= like the inference endpoints; the image
 * answers ?format=png|json|npy (or Accept) and ?scale=K. A reconstruction is
 * the decoded mu (the likelihood's mean), so the same request gives the
 * same bytes; GET answers carry an ETag (a hash of the checkpoint's sha256,
 * the model's name and version and the parameters) and Cache-Control like
 * GET /interpolate, and If-None-Match answers 304 without computing. The
 * latent map of a checkpoint, data set and limit is computed once and kept
 * in the response cache (--response-cache-mb).
 *
 * A conditional model's images are encoded and decoded with their data-set
 * labels (a POSTed image has none: 422). The work runs on the compute pool
 * (compute_request.h) within --request-mem-mb, checked before any of it is
 * allocated.
 */
#ifndef API_EXPLORE_H
#define API_EXPLORE_H

#include <microhttpd.h>

#include "server/http_request.h"

/* A reconstruction takes at most --max-n images (a range or a body), a
 * traversal row at most --max-steps steps and dims x steps at most --max-n
 * images: the same bounds as /sample and /interpolate, with the same
 * --request-mem-mb check of what they cost. Its largest range: */
#define API_EXPLORE_MAX_TRAVERSE_RANGE 10.0
/* Most points of a latent map, and its default. */
#define API_EXPLORE_MAX_MAP_POINTS 10000
#define API_EXPLORE_DEFAULT_MAP_POINTS 2000

enum MHD_Result api_explore_reconstruct_get(http_ctx *ctx, struct MHD_Connection *c,
                                            http_request *req);
enum MHD_Result api_explore_reconstruct_post(http_ctx *ctx, struct MHD_Connection *c,
                                             http_request *req);
enum MHD_Result api_explore_traverse(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_explore_latent_map(http_ctx *ctx, struct MHD_Connection *c,
                                       http_request *req);

#endif
