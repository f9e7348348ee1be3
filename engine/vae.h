/* vae: a variational autoencoder in plain C; its matrix products are
 * engine/gemm's (OpenBLAS where the CPU lacks AVX-512).
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
#include "engine/vae_status.h"

#define VAE_MAX_HIDDEN 8
#define VAE_MAX_TENSORS 64
#define VAE_TENSOR_NAME_MAX 48


typedef enum { VAE_ARCH_MLP = 0, VAE_ARCH_CONV } vae_arch;
typedef enum { VAE_ACT_RELU = 0, VAE_ACT_LEAKY_RELU, VAE_ACT_TANH, VAE_ACT_ELU } vae_activation;
typedef enum {
    VAE_LIK_BERNOULLI = 0,   /* BCE from logits */
    VAE_LIK_CBERNOULLI,      /* continuous Bernoulli, with its normaliser */
    VAE_LIK_GAUSSIAN,        /* fixed sigma */
    VAE_LIK_GAUSSIAN_LEARNED /* decoder also outputs per-pixel logvar */
} vae_likelihood;
typedef enum { VAE_BIN_NONE = 0, VAE_BIN_STATIC, VAE_BIN_DYNAMIC } vae_binarize;

/* Everything that defines a model and how it was trained; all of it is stored
 * in the checkpoint's metadata. */
typedef struct {
    vae_arch arch;
    int channels, height, width;     /* input image shape */
    int n_hidden;                    /* MLP: hidden layer widths, encoder order */
    int hidden[VAE_MAX_HIDDEN];
    int n_conv;                      /* conv: channel widths */
    int conv_channels[VAE_MAX_HIDDEN];
    int latent;
    vae_activation activation;
    vae_likelihood likelihood;
    float sigma;                     /* gaussian likelihood's fixed std */
    vae_binarize binarize;
    float beta;
    int64_t kl_warmup;               /* steps over which beta rises from 0 */
    float free_bits;                 /* nats per latent dimension, 0 = off */
    int mc_samples;
    /* optimiser */
    float lr, beta1, beta2, eps, weight_decay, clip_grad;
    int batch, epochs;
    uint64_t seed;
} vae_config;

typedef struct {
    char name[VAE_TENSOR_NAME_MAX];
    size_t offset;   /* into params / grads, in floats */
    size_t size;     /* number of floats */
    int ndim;
    int shape[4];
} vae_tensor;

typedef struct {
    vae_config cfg;
    int n_tensors;
    vae_tensor tensors[VAE_MAX_TENSORS];
    size_t n_params;
    float *params;   /* owned; n_params floats */
} vae_model;

/* Per-batch loss figures, summed over the batch (divide by batch for per image). */
typedef struct {
    double loss;     /* recon + beta_eff * kl (as optimised) */
    double recon;    /* negative log-likelihood, nats */
    double kl;       /* KL(q(z|x) || N(0, I)), nats */
    double beta_eff; /* beta after warm-up */
    int batch;
} vae_stats;

typedef struct vae_workspace vae_workspace;     /* inference scratch */
typedef struct vae_train_state vae_train_state; /* grads, Adam, scratch */

void vae_config_default(vae_config *cfg);
/* Checks sizes and options; on failure writes why into err. */
int vae_config_validate(const vae_config *cfg, char *err, size_t errlen);
static inline int vae_config_input_dim(const vae_config *cfg)
{
    return cfg->channels * cfg->height * cfg->width;
}
/* Number of floats the decoder outputs per image (2x input for gaussian-learned). */
int vae_config_output_dim(const vae_config *cfg);

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
 * defaults from a generator seeded with seed. */
int vae_init(vae_model *m, const vae_config *cfg, uint64_t seed, char *err, size_t errlen);
/* Like vae_init but leaves parameters zeroed (to be filled by a loader). */
int vae_alloc(vae_model *m, const vae_config *cfg, char *err, size_t errlen);
void vae_free(vae_model *m);
const vae_tensor *vae_find_tensor(const vae_model *m, const char *name);

/* Inference. The workspace is sized for max_batch; calls with more fail. */
vae_workspace *vae_workspace_new(const vae_model *m, int max_batch);
void vae_workspace_free(vae_workspace *ws);
/* x: (B, D) -> mu, logvar: (B, latent) */
int vae_encode(const vae_model *m, vae_workspace *ws, const float *x, int B, float *mu,
               float *logvar);
/* z: (B, latent) -> x_mean: (B, D), the likelihood's mean clamped to [0, 1] */
int vae_decode(const vae_model *m, vae_workspace *ws, const float *z, int B, float *x_mean);

/* log p(x | z_k) for one image x (D) and K latents z (K, latent), into ll (K). */
int vae_log_likelihood(const vae_model *m, vae_workspace *ws, const float *x, const float *z,
                       int K, double *ll);
/* The clamp applied to logvar before exp() (see vae.c). */
float vae_clamp_logvar(float logvar);

/* Training. */
vae_train_state *vae_train_state_new(const vae_model *m, int max_batch, char *err,
                                     size_t errlen);
void vae_train_state_free(vae_train_state *ts);
/* threads >= 2: vae_train_step splits each batch with a helper thread the
 * state owns (data parallel; use one BLAS thread then). Numerically the same
 * loss, with gradients summed in another order; repeatable run to run. */
int vae_train_state_set_threads(vae_train_state *ts, const vae_model *m, int threads, char *err,
                                size_t errlen);
/* One step: forward with eps drawn from rng, loss, backward, Adam. Returns
 * VAE_ERR_NONFINITE (parameters untouched) when the loss is not finite. */
int vae_train_step(vae_model *m, vae_train_state *ts, const float *x, int B, rng_state *rng,
                   vae_stats *stats);
/* Lower-level pieces, for tests and evaluation: eps (B*mc, latent) given.
 * Forward computes the loss; backward sets ts's gradients (zeroed first). */
int vae_forward_loss(const vae_model *m, vae_train_state *ts, const float *x, const float *eps,
                     int B, vae_stats *stats);
int vae_backward(const vae_model *m, vae_train_state *ts);
/* The gradient array, parallel to m->params (owned by ts). */
float *vae_train_grads(vae_train_state *ts);
/* Adam moments and step count, for checkpoints that resume. */
float *vae_train_adam_m(vae_train_state *ts);
float *vae_train_adam_v(vae_train_state *ts);
int64_t *vae_train_adam_step(vae_train_state *ts);
/* Applies one Adam update from the current gradients. */
void vae_adam_update(vae_model *m, vae_train_state *ts);

/* Names for options, as used by the CLI and the checkpoint config. */
const char *vae_activation_name(vae_activation a);
const char *vae_likelihood_name(vae_likelihood l);
const char *vae_binarize_name(vae_binarize b);
const char *vae_arch_name(vae_arch a);
int vae_activation_parse(const char *s, vae_activation *out);
int vae_likelihood_parse(const char *s, vae_likelihood *out);
int vae_binarize_parse(const char *s, vae_binarize *out);
int vae_arch_parse(const char *s, vae_arch *out);

#endif
