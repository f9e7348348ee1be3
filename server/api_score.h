/* api_score: anomaly scores over HTTP — rows of the route table (routes.c).
 *
 *     POST /score?k=64&regret=100      api_score_post   images in (PNG, JSON or npy, as
 *                                                       /encode takes them), scores out
 *     GET  /score?from=mnist:test:3    api_score_get    the same for one data-set image
 *
 * Each answers JSON {"model", "version", "k", "regret_steps", "complexity",
 * "scores": [{neg_elbo, recon, kl, iwae_nll, complexity_bits,
 * corrected_bits, likelihood_regret, recon_floor, ood_score}, ...]}, one object per
 * input, from eval_score_inputs (engine/eval.h): nats, bits where named;
 * ood_score is the one to threshold (higher = more anomalous);
 * likelihood_regret is null unless ?regret=STEPS asked for it. A conditional
 * model needs each input's class (?label= or ?labels=, as /encode; a data-set
 * image brings its own).
 *
 * Bounds, checked before any work: k in 1..API_SCORE_MAX_K, regret steps in
 * 0..API_SCORE_MAX_REGRET_STEPS, inputs times k at most API_SCORE_MAX_DRAWS
 * and inputs times regret steps at most API_SCORE_MAX_REGRET_WORK (422 past
 * them); a request still scoring after API_SCORE_BUDGET_S (between two
 * inputs, or two regret steps) is stopped and answered 422. Every request runs on the compute pool, never on a
 * polling thread (the pool's 429 when it is full), and takes ?model= and
 * ?version= as the inference endpoints do.
 */
#ifndef API_SCORE_H
#define API_SCORE_H

#include <microhttpd.h>

#include "server/http_request.h"

#define API_SCORE_DEFAULT_K 64
#define API_SCORE_MAX_K 5000
#define API_SCORE_MAX_REGRET_STEPS 1000
/* decodes of the IWAE bound per request: 1024 images at K = 256 */
#define API_SCORE_MAX_DRAWS (1024 * 256)
/* encoder steps of the likelihood regret per request: 100 images at 100 steps */
#define API_SCORE_MAX_REGRET_WORK 10000
#define API_SCORE_BUDGET_S 20.0

enum MHD_Result api_score_post(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_score_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req);

#endif
