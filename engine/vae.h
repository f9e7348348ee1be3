/* vae: a variational autoencoder in plain C, the engine's one entry point
 * for models; its matrix products are engine/gemm's (OpenBLAS where the CPU
 * lacks AVX-512).
 *
 * Usage:
 *     vae_config cfg; vae_config_default(&cfg);          // 784-400-20, Bernoulli
 *     vae_model m;    vae_init(&m, &cfg, seed, err, sizeof err);
 *     vae_train_state *ts = vae_train_state_new(&m, batch, err, sizeof err);
 *     for each batch x (B, D) in [0,1]:
 *         vae_train_step(&m, ts, x, B, &rng, &stats);      // forward, backward, Adam
 *     vae_workspace *ws = vae_workspace_new(&m, max_batch);
 *     vae_encode(&m, ws, x, B, mu, logvar);               // inference, thread-safe per ws
 *     vae_decode(&m, ws, z, B, x_mean);
 *     vae_workspace_free(ws); vae_train_state_free(ts); vae_free(&m);
 *
 * The types and the options' names are vae_config.h's, the likelihoods and
 * the latent layer vae_loss.h's; both come with this header. This file (the
 * facade, vae.c) owns what a caller holds: the model's parameters (until
 * vae_free), a workspace and a training state (each one allocation, until its
 * _free). It runs the architecture cfg.arch names (vae_mlp.c, vae_conv.c)
 * through one private table (vae_arch.h).
 *
 * Parameters, gradients and Adam moments are parallel flat float arrays with a
 * table of named tensors (PyTorch names and layouts: Linear weight is
 * [out, in]), so the optimiser is one loop and a checkpoint is one write.
 * Images are flat (C, H, W) float vectors with values in [0, 1].
 *
 * A model used only for inference is read-only: many threads may call
 * vae_encode / vae_decode on one model, each with its own workspace.
 */
#ifndef VAE_H
#define VAE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/rng.h"
#include "engine/vae_config.h"
#include "engine/vae_loss.h"
#include "engine/vae_status.h"

typedef struct vae_workspace vae_workspace;     /* inference scratch */
typedef struct vae_train_state vae_train_state; /* grads, Adam, scratch */

/* The common checks of vae_config_validate_common, then the architecture's
 * own; on failure VAE_ERR_ARG and why in err. */
vae_status vae_config_validate(const vae_config *cfg, char *err, size_t errlen);

/* What a configuration costs, known before anything is built; 0 when cfg
 * does not validate or max_batch < 1. They come from the code that builds
 * and allocates (one tensor table, one layout per state), so they are exact:
 *   param_count        m.n_params of the model vae_alloc(&m, cfg) builds
 *   train_state_bytes  what vae_train_state_new(m, max_batch) and then
 *                      vae_train_state_set_threads(threads) allocate:
 *                      gradients, Adam m and v, activations and scratch, and
 *                      with threads >= 2 the helper's own state (not the
 *                      parameters, nor the helper thread's stack)
 *   workspace_bytes    what vae_workspace_new(m, max_batch) allocates */
size_t vae_config_param_count(const vae_config *cfg);
size_t vae_config_train_state_bytes(const vae_config *cfg, int max_batch, int threads);
size_t vae_config_workspace_bytes(const vae_config *cfg, int max_batch);

/* Builds the tensor table and allocates parameters, initialised like PyTorch's
 * defaults from a generator seeded with seed. m's parameters are its own
 * until vae_free(m). */
vae_status vae_init(vae_model *m, const vae_config *cfg, uint64_t seed, char *err, size_t errlen);
/* Like vae_init but leaves parameters zeroed (to be filled by a loader). */
vae_status vae_alloc(vae_model *m, const vae_config *cfg, char *err, size_t errlen);
void vae_free(vae_model *m);
const vae_tensor *vae_find_tensor(const vae_model *m, const char *name);

/* Inference. The workspace is sized for max_batch; calls with more fail. */
vae_workspace *vae_workspace_new(const vae_model *m, int max_batch);
void vae_workspace_free(vae_workspace *ws);
/* Calls on ws whose every output row has the bits of its own input row
 * alone, whatever B and wherever the row sits (products on
 * engine/gemm.h's gemm_nt_rowwise instead of OpenBLAS's, about as fast
 * from a few rows up): what lets a server stack several requests' rows into
 * one call and split the answers (server/infer_batch). Off by default (the
 * fastest products for evaluation and scores). VAE_ERR_ARG when m's
 * architecture has no such products: vae_rows_independent is 0 (the conv). */
int vae_rows_independent(const vae_model *m);
vae_status vae_workspace_set_rows_independent(const vae_model *m, vae_workspace *ws, int on);
/* x: (B, D) -> mu, logvar: (B, latent) */
vae_status vae_encode(const vae_model *m, vae_workspace *ws, const float *x, int B, float *mu,
                      float *logvar);
/* z: (B, latent) -> x_mean: (B, D), the likelihood's mean clamped to [0, 1] */
vae_status vae_decode(const vae_model *m, vae_workspace *ws, const float *z, int B, float *x_mean);

/* log p(x | z_k) for one image x (D) and K latents z (K, latent), into ll (K). */
vae_status vae_log_likelihood(const vae_model *m, vae_workspace *ws, const float *x,
                              const float *z, int K, double *ll);

/* A conditional model (cfg.n_classes > 0) takes each image's label, in
 * 0..n_classes-1, into its encoder and its decoder: these are the calls
 * above and below with the labels (B, one per image or latent; for the log
 * likelihood the one image's label). The calls without them are these with
 * none; a conditional model refuses to run without labels, an unconditional
 * one with them, and a label out of range is refused: VAE_ERR_ARG. */
vae_status vae_encode_cond(const vae_model *m, vae_workspace *ws, const float *x,
                           const int *labels, int B, float *mu, float *logvar);
vae_status vae_decode_cond(const vae_model *m, vae_workspace *ws, const float *z,
                           const int *labels, int B, float *x_mean);
/* label -1: none */
vae_status vae_log_likelihood_cond(const vae_model *m, vae_workspace *ws, const float *x,
                                   int label, const float *z, int K, double *ll);
/* Decoding with label_weights (B, n_classes) in place of one-hot labels: a
 * row (1 - t) one_hot(a) + t one_hot(b) is the point t of the walk from
 * label a to label b (the label enters the decoder's first layer, linearly).
 * Conditional models only; non-finite weights are refused (VAE_ERR_ARG). */
vae_status vae_decode_mixed(const vae_model *m, vae_workspace *ws, const float *z,
                            const float *label_weights, int B, float *x_mean);

/* Training. The state borrows nothing: it may outlive the batches it saw. */
vae_train_state *vae_train_state_new(const vae_model *m, int max_batch, char *err,
                                     size_t errlen);
void vae_train_state_free(vae_train_state *ts);
/* threads >= 2: vae_train_step splits each batch with a helper thread the
 * state owns (data parallel; use one BLAS thread then). Numerically the same
 * loss, with gradients summed in another order; repeatable run to run. */
vae_status vae_train_state_set_threads(vae_train_state *ts, const vae_model *m, int threads,
                                       char *err, size_t errlen);
/* One step: forward with eps drawn from rng, loss, backward, Adam. Returns
 * VAE_ERR_NONFINITE (parameters untouched) when the loss is not finite. */
vae_status vae_train_step(vae_model *m, vae_train_state *ts, const float *x, int B,
                          rng_state *rng, vae_stats *stats);
/* Lower-level pieces, for tests and evaluation: eps (B*mc, latent) given
 * (copied), x borrowed until vae_backward. Forward computes the loss (the KL
 * weighted as at the state's Adam step); backward adds its gradient into
 * ts's gradients, which vae_zero_grad zeroes (a new state starts at zero;
 * vae_train_step zeroes them once per step):
 *     vae_zero_grad(ts); vae_forward_loss(...); vae_backward(m, ts); vae_adam_update(m, ts); */
vae_status vae_forward_loss(const vae_model *m, vae_train_state *ts, const float *x,
                            const float *eps, int B, vae_stats *stats);
vae_status vae_backward(const vae_model *m, vae_train_state *ts);
/* The same with the images' labels (B), read during the call only. */
vae_status vae_train_step_cond(vae_model *m, vae_train_state *ts, const float *x,
                               const int *labels, int B, rng_state *rng, vae_stats *stats);
vae_status vae_forward_loss_cond(const vae_model *m, vae_train_state *ts, const float *x,
                                 const int *labels, const float *eps, int B, vae_stats *stats);
void vae_zero_grad(vae_train_state *ts);
/* The last forward's KL per latent dimension, summed over its B images
 * (cfg.latent doubles, owned by ts). With free bits the backward weighs a
 * dimension by its batch mean (these / B); a caller whose batch is a part of
 * a larger one (data parallel over processes) puts the whole batch's means
 * times B here between vae_forward_loss and vae_backward. */
double *vae_train_batch_kl(vae_train_state *ts);
/* The gradient array, parallel to m->params (owned by ts): what the
 * lower-level pieces left there; after a two-thread vae_train_step it holds
 * this thread's rows of it only. */
float *vae_train_grads(vae_train_state *ts);
/* Adam moments and step count, for checkpoints that resume (owned by ts). */
float *vae_train_adam_m(vae_train_state *ts);
float *vae_train_adam_v(vae_train_state *ts);
int64_t *vae_train_adam_step(vae_train_state *ts);
/* Applies one Adam update from the current gradients. */
void vae_adam_update(vae_model *m, vae_train_state *ts);
/* The encoder's parameters are the first this many of m->params: every
 * architecture puts its encoder and the fc_mu / fc_logvar heads before its
 * decoder in the tensor table. */
size_t vae_encoder_param_count(const vae_model *m);
/* Tests: run the architecture's naive reference kernels instead of the fast
 * ones (conv: direct loops instead of im2col + gemm). VAE_ERR_ARG for an
 * architecture with one set of kernels (the MLP). */
vae_status vae_train_state_use_naive(vae_train_state *ts, int on);

#endif
