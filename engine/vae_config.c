/* The configuration's names, defaults and common checks, and the tensor
 * table's builders and initialiser that every architecture uses. */
#include "engine/vae_config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/rng.h"

/* ---------- names ---------- */

static const char *const act_names[] = {"relu", "leaky_relu", "tanh", "elu"};
static const char *const lik_names[] = {"bernoulli", "cbernoulli", "gaussian", "gaussian-learned"};
static const char *const bin_names[] = {"none", "static", "dynamic"};
static const char *const arch_names[] = {"mlp", "conv"};

#define NAME_OF(tbl, v) (((int)(v) >= 0 && (size_t)(v) < sizeof tbl / sizeof tbl[0]) ? tbl[v] : "?")
const char *vae_activation_name(vae_activation a) { return NAME_OF(act_names, a); }
const char *vae_likelihood_name(vae_likelihood l) { return NAME_OF(lik_names, l); }
const char *vae_binarize_name(vae_binarize b) { return NAME_OF(bin_names, b); }
const char *vae_arch_name(vae_arch a) { return NAME_OF(arch_names, a); }

static int parse_name(const char *s, const char *const *tbl, int n)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, tbl[i]) == 0) return i;
    return -1;
}
#define PARSE_INTO(tbl, s, out, type)                                      \
    do {                                                                   \
        int i_ = parse_name(s, tbl, (int)(sizeof tbl / sizeof tbl[0]));    \
        if (i_ < 0) return VAE_ERR_ARG;                                    \
        *(out) = (type)i_;                                                 \
        return VAE_OK;                                                     \
    } while (0)
vae_status vae_activation_parse(const char *s, vae_activation *out) { PARSE_INTO(act_names, s, out, vae_activation); }
vae_status vae_likelihood_parse(const char *s, vae_likelihood *out) { PARSE_INTO(lik_names, s, out, vae_likelihood); }
vae_status vae_binarize_parse(const char *s, vae_binarize *out) { PARSE_INTO(bin_names, s, out, vae_binarize); }
vae_status vae_arch_parse(const char *s, vae_arch *out) { PARSE_INTO(arch_names, s, out, vae_arch); }

/* ---------- defaults, dimensions, checks ---------- */

void vae_config_default(vae_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = VAE_ARCH_MLP;
    cfg->channels = 1;
    cfg->height = 28;
    cfg->width = 28;
    cfg->n_hidden = 1;
    cfg->hidden[0] = 400;
    cfg->n_conv = 4;
    cfg->conv_channels[0] = 32;
    cfg->conv_channels[1] = 64;
    cfg->conv_channels[2] = 128;
    cfg->conv_channels[3] = 256;
    cfg->latent = 20;
    cfg->activation = VAE_ACT_RELU;
    cfg->likelihood = VAE_LIK_BERNOULLI;
    cfg->sigma = 1.0f;
    cfg->binarize = VAE_BIN_NONE;
    cfg->beta = 1.0f;
    cfg->mc_samples = 1;
    cfg->lr = 1e-3f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->batch = 128;
    cfg->epochs = 10;
    cfg->seed = 1;
}

int vae_config_output_dim(const vae_config *cfg)
{
    int d = vae_config_input_dim(cfg);
    return cfg->likelihood == VAE_LIK_GAUSSIAN_LEARNED ? 2 * d : d;
}

/* The hidden widths are checked whatever the architecture: every checkpoint
 * stores them in its config. */
vae_status vae_config_validate_common(const vae_config *cfg, char *err, size_t errlen)
{
#define BAD(...)                                  \
    do {                                          \
        snprintf(err, errlen, __VA_ARGS__);       \
        return VAE_ERR_ARG;                       \
    } while (0)
    if (cfg->arch != VAE_ARCH_MLP && cfg->arch != VAE_ARCH_CONV) BAD("unknown arch");
    if (cfg->channels != 1 && cfg->channels != 3) BAD("channels must be 1 or 3, not %d", cfg->channels);
    if (cfg->height < 1 || cfg->height > 1024 || cfg->width < 1 || cfg->width > 1024)
        BAD("image size %dx%d is out of range (1..1024)", cfg->height, cfg->width);
    if ((long)cfg->channels * cfg->height * cfg->width > 4L * 1024 * 1024)
        BAD("input of %d values is too large", cfg->channels * cfg->height * cfg->width);
    if (cfg->n_hidden < 0 || cfg->n_hidden > VAE_MAX_HIDDEN)
        BAD("between 0 and %d hidden layers, not %d", VAE_MAX_HIDDEN, cfg->n_hidden);
    for (int i = 0; i < cfg->n_hidden; i++)
        if (cfg->hidden[i] < 1 || cfg->hidden[i] > 16384)
            BAD("hidden layer %d has width %d (1..16384)", i + 1, cfg->hidden[i]);
    if (cfg->latent < 1 || cfg->latent > 4096) BAD("latent size %d is out of range (1..4096)", cfg->latent);
    if (cfg->n_classes < 0 || cfg->n_classes > VAE_MAX_CLASSES)
        BAD("a conditional model has 1 to %d classes, not %d", VAE_MAX_CLASSES, cfg->n_classes);
    if ((unsigned)cfg->activation > VAE_ACT_ELU) BAD("unknown activation");
    if ((unsigned)cfg->likelihood > VAE_LIK_GAUSSIAN_LEARNED) BAD("unknown likelihood");
    if ((unsigned)cfg->binarize > VAE_BIN_DYNAMIC) BAD("unknown binarize mode");
    if (!(cfg->sigma > 0.0f) || !isfinite(cfg->sigma)) BAD("sigma must be a positive number");
    if (!(cfg->beta >= 0.0f) || !isfinite(cfg->beta)) BAD("beta must be >= 0");
    if (cfg->kl_warmup < 0) BAD("kl-warmup must be >= 0");
    if (!(cfg->free_bits >= 0.0f) || !isfinite(cfg->free_bits)) BAD("free-bits must be >= 0");
    if (cfg->mc_samples < 1 || cfg->mc_samples > 64) BAD("mc-samples must be in 1..64");
    if (!(cfg->lr > 0.0f) || !isfinite(cfg->lr)) BAD("lr must be a positive number");
    if (!(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f)) BAD("beta1 must be in [0, 1)");
    if (!(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f)) BAD("beta2 must be in [0, 1)");
    if (!(cfg->eps > 0.0f) || !isfinite(cfg->eps)) BAD("eps must be a positive number");
    if (!(cfg->weight_decay >= 0.0f) || !isfinite(cfg->weight_decay)) BAD("weight-decay must be >= 0");
    if (!(cfg->clip_grad >= 0.0f) || !isfinite(cfg->clip_grad)) BAD("clip-grad must be >= 0");
    if (cfg->batch < 1 || cfg->batch > 65536) BAD("batch must be in 1..65536");
    if (cfg->epochs < 0 || cfg->epochs > 100000) BAD("epochs must be in 0..100000");
#undef BAD
    return VAE_OK;
}

/* ---------- the tensor table ---------- */

vae_status vae_config_add_tensor(vae_model *m, const char *name, int ndim, int d0, int d1, int d2,
                                 int d3)
{
    if (m->n_tensors >= VAE_MAX_TENSORS) return VAE_ERR_ARG;
    vae_tensor *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    int d[4] = {d0, d1, d2, d3};
    t->ndim = ndim;
    t->size = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = d[i];
        t->size *= (size_t)d[i];
    }
    t->offset = m->n_params;
    m->n_params += t->size;
    return VAE_OK;
}

vae_status vae_config_add_linear(vae_model *m, const char *prefix, int in, int out)
{
    char name[VAE_TENSOR_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    if (vae_config_add_tensor(m, name, 2, out, in, 0, 0)) return VAE_ERR_ARG;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return vae_config_add_tensor(m, name, 1, out, 0, 0, 0);
}

void vae_config_init_params(vae_model *m, uint64_t seed)
{
    rng_state r;
    rng_seed(&r, seed);
    size_t fan_in = 1;
    for (int i = 0; i < m->n_tensors; i++) {
        const vae_tensor *t = &m->tensors[i];
        if (t->ndim >= 2) { /* a weight: its biases follow it */
            fan_in = 1;
            for (int d = 1; d < t->ndim; d++) fan_in *= (size_t)t->shape[d];
        }
        float bound = 1.0f / sqrtf((float)fan_in);
        float *p = m->params + t->offset;
        for (size_t k = 0; k < t->size; k++) p[k] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
    }
}
