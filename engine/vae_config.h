/* vae_config: what defines a VAE, the bottom of the engine's VAE files
 * (vae_config <- vae_loss <- vae_mlp, vae_conv <- vae, the facade).
 *
 *     vae_config cfg;
 *     vae_config_default(&cfg);                          // 784-400-20, Bernoulli
 *     if (vae_likelihood_parse("gaussian-learned", &cfg.likelihood)) ...  // VAE_ERR_ARG
 *     cfg.hidden[0] = 512;
 *     if (vae_config_validate(&cfg, err, sizeof err)) ...  // vae.h: these checks
 *                                                         // and the architecture's
 *     int D = vae_config_input_dim(&cfg), Dout = vae_config_output_dim(&cfg);
 *
 * The types every engine file shares: the configuration, the tensor table
 * of a model and the loss figures of a batch. Each architecture builds its
 * table with vae_config_add_tensor / vae_config_add_linear, and every
 * architecture's parameters start from vae_config_init_params.
 *
 * Nothing here allocates: a vae_model's params belong to the model, from
 * vae_alloc / vae_init to vae_free (vae.h).
 */
#ifndef VAE_CONFIG_H
#define VAE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae_status.h"

#define VAE_MAX_HIDDEN 8
#define VAE_MAX_TENSORS 64
#define VAE_TENSOR_NAME_MAX 48
#define VAE_MAX_CLASSES 256 /* a PNG folder's sub-folders, the most labels a data set has */

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
    /* A conditional VAE (Sohn et al. 2015) when > 0: every image has a label
     * in 0..n_classes-1, one-hot into the encoder's input and the decoder's
     * (vae_mlp.c, vae_conv.h say where); 0 = unconditional. */
    int n_classes;
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

/* Parameters are one flat float array with a table of named tensors
 * (PyTorch names and layouts: Linear weight is [out, in]), so the optimiser
 * is one loop and a checkpoint is one write. */
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

void vae_config_default(vae_config *cfg);
/* The checks every architecture shares: sizes, options, optimiser. On
 * failure VAE_ERR_ARG and why in err. vae_config_validate (vae.h) runs these,
 * then the architecture's own. */
vae_status vae_config_validate_common(const vae_config *cfg, char *err, size_t errlen);
static inline int vae_config_input_dim(const vae_config *cfg)
{
    return cfg->channels * cfg->height * cfg->width;
}
static inline int vae_config_is_conditional(const vae_config *cfg) { return cfg->n_classes > 0; }
/* Number of floats the decoder outputs per image (2x input for gaussian-learned). */
int vae_config_output_dim(const vae_config *cfg);

/* Names for options, as used by the CLI and the checkpoint config; parsing
 * an unknown name gives VAE_ERR_ARG and leaves *out alone. */
const char *vae_activation_name(vae_activation a);
const char *vae_likelihood_name(vae_likelihood l);
const char *vae_binarize_name(vae_binarize b);
const char *vae_arch_name(vae_arch a);
vae_status vae_activation_parse(const char *s, vae_activation *out);
vae_status vae_likelihood_parse(const char *s, vae_likelihood *out);
vae_status vae_binarize_parse(const char *s, vae_binarize *out);
vae_status vae_arch_parse(const char *s, vae_arch *out);

/* ---- building a tensor table (for the architectures) ---- */

/* Appends a tensor of ndim dims (d0.. d3, the unused ones ignored) at the
 * end of m's parameters; VAE_ERR_ARG when the table is full. */
vae_status vae_config_add_tensor(vae_model *m, const char *name, int ndim, int d0, int d1, int d2,
                                 int d3);
/* nn.Linear(in, out) named prefix: prefix.weight [out, in], prefix.bias [out]. */
vae_status vae_config_add_linear(vae_model *m, const char *prefix, int in, int out);
/* Fills m->params like PyTorch's defaults for Linear, Conv2d and
 * ConvTranspose2d, from a generator seeded with seed, tensor by tensor in
 * table order: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in
 * the product of the weight's dims after the first (for ConvTranspose2d that
 * is out * k * k, as torch computes it); a bias takes the fan_in of the
 * weight last before it in the table. */
void vae_config_init_params(vae_model *m, uint64_t seed);

#endif
