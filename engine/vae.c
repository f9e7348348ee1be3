/* The MLP VAE: forward, loss, backward and Adam on engine/gemm.
 *
 * Layout of a batch: row-major (B, features). With mc_samples L > 1 the
 * decoder sees B*L rows, row b*L + l being sample l of image b.
 *
 * Tensor order in the flat parameter array is chosen so that fc_mu and
 * fc_logvar weights are adjacent, then their biases: the two heads then run
 * as one (2*latent, hidden) product.
 */
#include "engine/vae.h"
#include "engine/vae_conv.h"
#include "engine/linear.h"
#include "engine/vae_kernels.h"
#include "engine/vae_loss.h"
#include "engine/vae_arch.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEAKY_SLOPE 0.01f /* PyTorch's nn.LeakyReLU default */

/* ---------- options ---------- */

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
int vae_activation_parse(const char *s, vae_activation *out) { PARSE_INTO(act_names, s, out, vae_activation); }
int vae_likelihood_parse(const char *s, vae_likelihood *out) { PARSE_INTO(lik_names, s, out, vae_likelihood); }
int vae_binarize_parse(const char *s, vae_binarize *out) { PARSE_INTO(bin_names, s, out, vae_binarize); }
int vae_arch_parse(const char *s, vae_arch *out) { PARSE_INTO(arch_names, s, out, vae_arch); }

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

int vae_config_validate(const vae_config *cfg, char *err, size_t errlen)
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
    if (cfg->arch == VAE_ARCH_CONV) return vae_conv_config_validate(cfg, err, errlen);
    return VAE_OK;
}

/* ---------- tensor table ---------- */

static void add_tensor(vae_model *m, const char *name, int ndim, int d0, int d1)
{
    vae_tensor *t = &m->tensors[m->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim > 1 ? d1 : 0;
    t->size = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    t->offset = m->n_params;
    m->n_params += t->size;
}

static void add_linear(vae_model *m, const char *prefix, int in, int out)
{
    char name[VAE_TENSOR_NAME_MAX];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_tensor(m, name, 2, out, in);
    snprintf(name, sizeof name, "%s.bias", prefix);
    add_tensor(m, name, 1, out, 0);
}

static void mlp_build_tensors(vae_model *m)
{
    const vae_config *cfg = &m->cfg;
    int D = vae_config_input_dim(cfg), Z = cfg->latent, H = cfg->n_hidden;
    char prefix[32];
    int in = D;
    for (int i = 0; i < H; i++) {
        snprintf(prefix, sizeof prefix, "encoder.%d", i);
        add_linear(m, prefix, in, cfg->hidden[i]);
        in = cfg->hidden[i];
    }
    add_tensor(m, "fc_mu.weight", 2, Z, in);
    add_tensor(m, "fc_logvar.weight", 2, Z, in);
    add_tensor(m, "fc_mu.bias", 1, Z, 0);
    add_tensor(m, "fc_logvar.bias", 1, Z, 0);
    in = Z;
    for (int i = 0; i < H; i++) {
        snprintf(prefix, sizeof prefix, "decoder.%d", i);
        int out = cfg->hidden[H - 1 - i];
        add_linear(m, prefix, in, out);
        in = out;
    }
    add_linear(m, "out", in, vae_config_output_dim(cfg));
}

/* The tensor table of cfg in m (no parameters allocated): what vae_alloc
 * builds and vae_config_param_count counts. */
static int build_tensors(vae_model *m, const vae_config *cfg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (vae_config_validate(cfg, err, errlen)) return VAE_ERR_ARG;
    m->cfg = *cfg;
    if (cfg->arch == VAE_ARCH_CONV) {
        if (vae_conv_build_tensors(m)) {
            snprintf(err, errlen, "too many conv layers for the tensor table");
            return VAE_ERR_ARG;
        }
    } else {
        mlp_build_tensors(m);
    }
    return VAE_OK;
}

int vae_alloc(vae_model *m, const vae_config *cfg, char *err, size_t errlen)
{
    int rc = build_tensors(m, cfg, err, errlen);
    if (rc) return rc;
    m->params = calloc(m->n_params, sizeof(float));
    if (!m->params) {
        snprintf(err, errlen, "out of memory for %zu parameters", m->n_params);
        return VAE_ERR_NOMEM;
    }
    return VAE_OK;
}

size_t vae_config_param_count(const vae_config *cfg)
{
    char err[256];
    vae_model m; /* the table only: no parameters */
    return build_tensors(&m, cfg, err, sizeof err) == VAE_OK ? m.n_params : 0;
}

int vae_init(vae_model *m, const vae_config *cfg, uint64_t seed, char *err, size_t errlen)
{
    int rc = vae_alloc(m, cfg, err, errlen);
    if (rc) return rc;
    if (cfg->arch == VAE_ARCH_CONV) {
        vae_conv_init_params(m, seed);
        return VAE_OK;
    }
    /* PyTorch's nn.Linear default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)). */
    rng_state r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        vae_tensor *t = &m->tensors[i];
        int fan_in;
        if (t->ndim == 2) {
            fan_in = t->shape[1];
        } else {
            const vae_tensor *w = &m->tensors[i - 1];
            /* fc_*.bias follow both head weights */
            if (w->ndim != 2) w = &m->tensors[i - 2];
            if (w->ndim != 2) w = &m->tensors[i - 3];
            fan_in = w->shape[1];
        }
        float bound = 1.0f / sqrtf((float)fan_in);
        float *p = m->params + t->offset;
        for (size_t k = 0; k < t->size; k++) p[k] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
    }
    return VAE_OK;
}

void vae_free(vae_model *m)
{
    if (!m) return;
    free(m->params);
    m->params = NULL;
    m->n_params = 0;
    m->n_tensors = 0;
}

const vae_tensor *vae_find_tensor(const vae_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* Index of layers in the tensor table: encoder i -> 2i, heads -> 2H..2H+3,
 * decoder i -> 2H+4+2i, out -> 4H+4. */
static inline const float *P(const vae_model *m, int ti) { return m->params + m->tensors[ti].offset; }

/* ---------- kernels ---------- */

/* y: (B, out) = x: (B, in) . w^T (w: (out, in)) + b */
static void activation_forward(float *y, size_t n, vae_activation a);

/* linear_forward then the activation, fused into one pass where it can be. */
static void linear_act_forward(float *y, const float *x, const float *w, const float *b, int B,
                               int in, int out, vae_activation a)
{
    linear_matmul_wt(y, x, w, B, in, out);
    if (a == VAE_ACT_RELU || a == VAE_ACT_LEAKY_RELU) {
        vk_bias_relu(y, b, B, out, a == VAE_ACT_LEAKY_RELU);
        return;
    }
    vk_bias(y, b, B, out);
    activation_forward(y, (size_t)B * out, a);
}

static void activation_forward(float *y, size_t n, vae_activation a)
{
    switch (a) {
    case VAE_ACT_RELU:
        for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case VAE_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : LEAKY_SLOPE * y[i];
        break;
    case VAE_ACT_TANH:
        for (size_t i = 0; i < n; i++) y[i] = tanhf(y[i]);
        break;
    case VAE_ACT_ELU:
        for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : expm1f(y[i]);
        break;
    }
}

/* dy *= act'(.) expressed through the activation's output y. */
static void activation_backward(float *dy, const float *y, size_t n, vae_activation a)
{
    switch (a) {
    case VAE_ACT_RELU:
        vk_relu_backward(dy, y, n, 0.0f);
        break;
    case VAE_ACT_LEAKY_RELU:
        vk_relu_backward(dy, y, n, LEAKY_SLOPE);
        break;
    case VAE_ACT_TANH:
        for (size_t i = 0; i < n; i++) dy[i] *= 1.0f - y[i] * y[i];
        break;
    case VAE_ACT_ELU:
        for (size_t i = 0; i < n; i++) dy[i] = y[i] > 0.0f ? dy[i] : dy[i] * (y[i] + 1.0f);
        break;
    }
}

/* ---------- workspace (inference) ---------- */

struct vae_workspace {
    int max_batch;
    float *a, *b; /* in the workspace's block: ping-pong activations, max_batch *
                   * widest layer (conv: a is vae_conv's scratch, b is NULL) */
};

static int widest(const vae_config *cfg)
{
    int w = vae_config_output_dim(cfg);
    if (2 * cfg->latent > w) w = 2 * cfg->latent;
    for (int i = 0; i < cfg->n_hidden; i++)
        if (cfg->hidden[i] > w) w = cfg->hidden[i];
    return w;
}

/* The workspace and its buffers in one block (vae_arch.h); NULL while sizing. */
static vae_workspace *workspace_layout(const vae_config *c, int max_batch, vae_layout *l)
{
    vae_workspace sizing, *ws = vae_layout_take(l, 1, sizeof *ws);
    vae_workspace *s = ws ? ws : &sizing;
    s->max_batch = max_batch;
    s->b = NULL;
    if (c->arch == VAE_ARCH_CONV) {
        VAE_LAYOUT_TAKE(l, s->a, vae_conv_workspace_floats(c, max_batch));
    } else {
        size_t n = (size_t)max_batch * (size_t)widest(c);
        VAE_LAYOUT_TAKE(l, s->a, n);
        VAE_LAYOUT_TAKE(l, s->b, n);
    }
    return ws;
}

static int config_is_valid(const vae_config *cfg)
{
    char err[256];
    return vae_config_validate(cfg, err, sizeof err) == VAE_OK;
}

size_t vae_config_workspace_bytes(const vae_config *cfg, int max_batch)
{
    if (max_batch < 1 || !config_is_valid(cfg)) return 0;
    vae_layout l = {NULL, 0};
    workspace_layout(cfg, max_batch, &l);
    return l.used;
}

vae_workspace *vae_workspace_new(const vae_model *m, int max_batch)
{
    if (max_batch < 1) return NULL;
    vae_layout l = {NULL, 0};
    workspace_layout(&m->cfg, max_batch, &l);
    unsigned char *block = malloc(l.used); /* owned by the workspace: scratch needs no zeroing */
    if (!block) return NULL;
    l = (vae_layout){block, 0};
    return workspace_layout(&m->cfg, max_batch, &l);
}

void vae_workspace_free(vae_workspace *ws) { free(ws); }

int vae_encode(const vae_model *m, vae_workspace *ws, const float *x, int B, float *mu,
               float *logvar)
{
    if (B < 1 || B > ws->max_batch) return VAE_ERR_ARG;
    const vae_config *c = &m->cfg;
    if (c->arch == VAE_ARCH_CONV) return vae_conv_encode(m, ws->a, x, B, mu, logvar);
    int H = c->n_hidden, Z = c->latent;
    const float *in = x;
    int in_dim = vae_config_input_dim(c);
    float *bufs[2] = {ws->a, ws->b};
    for (int i = 0; i < H; i++) {
        float *y = bufs[i & 1];
        linear_act_forward(y, in, P(m, 2 * i), P(m, 2 * i + 1), B, in_dim, c->hidden[i],
                           c->activation);
        in = y;
        in_dim = c->hidden[i];
    }
    float *heads = bufs[H & 1];
    linear_forward(heads, in, P(m, 2 * H), P(m, 2 * H + 2), B, in_dim, 2 * Z);
    for (int r = 0; r < B; r++) {
        memcpy(mu + (size_t)r * Z, heads + (size_t)r * 2 * Z, sizeof(float) * Z);
        memcpy(logvar + (size_t)r * Z, heads + (size_t)r * 2 * Z + Z, sizeof(float) * Z);
    }
    return VAE_OK;
}

/* Decoder up to the output logits; returns the buffer holding them. */
static float *decode_logits(const vae_model *m, float *a, float *b, const float *z, int B)
{
    const vae_config *c = &m->cfg;
    if (c->arch == VAE_ARCH_CONV) return vae_conv_decode_logits(m, a, z, B);
    int H = c->n_hidden;
    int base = 2 * H + 4;
    const float *in = z;
    int in_dim = c->latent;
    float *bufs[2] = {a, b};
    for (int i = 0; i < H; i++) {
        float *y = bufs[i & 1];
        int out = c->hidden[H - 1 - i];
        linear_act_forward(y, in, P(m, base + 2 * i), P(m, base + 2 * i + 1), B, in_dim, out,
                           c->activation);
        in = y;
        in_dim = out;
    }
    float *logits = bufs[H & 1];
    linear_forward(logits, in, P(m, base + 2 * H), P(m, base + 2 * H + 1), B, in_dim,
                   vae_config_output_dim(c));
    return logits;
}

int vae_decode(const vae_model *m, vae_workspace *ws, const float *z, int B, float *x_mean)
{
    if (B < 1 || B > ws->max_batch) return VAE_ERR_ARG;
    const vae_config *c = &m->cfg;
    vae_output_mean(c, decode_logits(m, ws->a, ws->b, z, B), B, x_mean);
    return VAE_OK;
}

int vae_log_likelihood(const vae_model *m, vae_workspace *ws, const float *x, const float *z,
                       int K, double *ll)
{
    if (K < 1 || K > ws->max_batch) return VAE_ERR_ARG;
    const vae_config *c = &m->cfg;
    int Dout = vae_config_output_dim(c);
    const float *logits = decode_logits(m, ws->a, ws->b, z, K);
    for (int k = 0; k < K; k++) ll[k] = vae_output_log_likelihood(c, logits + (size_t)k * Dout, x);
    return VAE_OK;
}

/* ---------- training ---------- */

/* The state and every buffer it points to are one block (vae_arch.h),
 * laid out by train_state_layout; only the peer is allocated apart. */
struct vae_train_state {
    int max_batch;
    float *grads;     /* n_params */
    float *adam_m;    /* n_params */
    float *adam_v;    /* n_params */
    int64_t step;     /* Adam steps taken */
    float *enc[VAE_MAX_HIDDEN]; /* (B, hidden[i]) encoder activations */
    float *heads;     /* (B, 2Z): mu | logvar */
    float *eps;       /* (BL, Z) */
    float *z;         /* (BL, Z) */
    float *dec[VAE_MAX_HIDDEN]; /* (BL, hidden[H-1-i]) decoder activations */
    float *dlogits;   /* (BL, Dout) */
    float *scratch[2];/* (BL, widest) */
    float *dz;        /* (BL, Z) */
    float *dheads;    /* (B, 2Z) */
    float *xbin;      /* (B, D) binarised input */
    double *kl_dim;   /* (Z) batch KL per dimension */
    const float *x;   /* borrowed from the last forward, for backward */
    int B;
    double beta_eff;
    struct vae_peer *peer; /* owned; the data-parallel helper, NULL when single */
    vae_conv_train *conv;  /* the conv model's activations, NULL for the MLP */
};

/* Data-parallel training: a helper thread runs the second part of each batch
 * on its own train state (single-threaded products each), then each thread
 * sums and updates half of the parameters. Two single-threaded streams keep
 * both cores busier than one two-threaded product on these small matrices,
 * and the element-wise passes run on both cores too. */
enum { PEER_IDLE = 0, PEER_FORWARD_BACKWARD, PEER_ADAM, PEER_QUIT };
struct vae_peer {
    vae_train_state *ts;   /* owned; the helper's activations and gradients */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int job;               /* PEER_*; set by the caller, reset to IDLE when done */
    /* the job */
    vae_model *m;
    const float *x, *eps;
    int B;
    vae_stats stats;
    int rc;
    size_t lo, hi;         /* parameter range of PEER_ADAM */
    float step_size, inv_sqrt_bc2;
};

float *vae_train_grads(vae_train_state *ts) { return ts->grads; }
float *vae_train_adam_m(vae_train_state *ts) { return ts->adam_m; }
float *vae_train_adam_v(vae_train_state *ts) { return ts->adam_v; }
int64_t *vae_train_adam_step(vae_train_state *ts) { return &ts->step; }

static void peer_free(struct vae_peer *p);

void vae_train_state_free(vae_train_state *ts)
{
    if (!ts) return;
    peer_free(ts->peer);
    free(ts); /* the block */
}

/* Everything a training state holds, in one block; NULL while sizing. */
static vae_train_state *train_state_layout(const vae_config *c, size_t n_params, int max_batch,
                                           vae_layout *l)
{
    vae_train_state sizing, *ts = vae_layout_take(l, 1, sizeof *ts);
    vae_train_state *s = ts ? ts : &sizing;
    memset(s, 0, sizeof *s);
    size_t B = (size_t)max_batch, BL = B * (size_t)c->mc_samples, Z = (size_t)c->latent;
    int H = c->n_hidden;
    s->max_batch = max_batch;
    VAE_LAYOUT_TAKE(l, s->grads, n_params);
    VAE_LAYOUT_TAKE(l, s->adam_m, n_params);
    VAE_LAYOUT_TAKE(l, s->adam_v, n_params);
    VAE_LAYOUT_TAKE(l, s->eps, BL * Z);
    VAE_LAYOUT_TAKE(l, s->xbin, B * vae_config_input_dim(c));
    if (c->arch == VAE_ARCH_CONV) { /* vae_conv has the rest */
        s->conv = vae_conv_train_layout(c, max_batch, l);
        return ts;
    }
    for (int i = 0; i < H; i++) {
        VAE_LAYOUT_TAKE(l, s->enc[i], B * c->hidden[i]);
        VAE_LAYOUT_TAKE(l, s->dec[i], BL * c->hidden[H - 1 - i]);
    }
    size_t wide = (size_t)widest(c);
    VAE_LAYOUT_TAKE(l, s->heads, B * 2 * Z);
    VAE_LAYOUT_TAKE(l, s->dheads, B * 2 * Z);
    VAE_LAYOUT_TAKE(l, s->z, BL * Z);
    VAE_LAYOUT_TAKE(l, s->dz, BL * Z);
    VAE_LAYOUT_TAKE(l, s->dlogits, BL * vae_config_output_dim(c));
    VAE_LAYOUT_TAKE(l, s->scratch[0], BL * wide);
    VAE_LAYOUT_TAKE(l, s->scratch[1], BL * wide);
    VAE_LAYOUT_TAKE(l, s->kl_dim, Z);
    return ts;
}

static size_t train_state_bytes(const vae_config *c, size_t n_params, int max_batch)
{
    vae_layout l = {NULL, 0};
    train_state_layout(c, n_params, max_batch, &l);
    return l.used;
}

/* The helper thread's share of a batch: B - B/2 of at most max_batch. */
static int peer_batch(int max_batch) { return max_batch / 2 + 1; }

size_t vae_config_train_state_bytes(const vae_config *cfg, int max_batch, int threads)
{
    size_t n_params = vae_config_param_count(cfg);
    if (max_batch < 1 || n_params == 0) return 0;
    size_t bytes = train_state_bytes(cfg, n_params, max_batch);
    if (threads >= 2)
        bytes += sizeof(struct vae_peer) + train_state_bytes(cfg, n_params, peer_batch(max_batch));
    return bytes;
}

vae_train_state *vae_train_state_new(const vae_model *m, int max_batch, char *err, size_t errlen)
{
    if (max_batch < 1) {
        snprintf(err, errlen, "batch must be >= 1");
        return NULL;
    }
    /* zeroed: the gradients and Adam moments start at 0 */
    unsigned char *block = calloc(1, train_state_bytes(&m->cfg, m->n_params, max_batch));
    if (!block) {
        snprintf(err, errlen, "out of memory for the training state (batch %d)", max_batch);
        return NULL;
    }
    vae_layout l = {block, 0};
    return train_state_layout(&m->cfg, m->n_params, max_batch, &l); /* owns block: it is block */
}

int vae_forward_loss(const vae_model *m, vae_train_state *ts, const float *x, const float *eps,
                     int B, vae_stats *stats)
{
    if (B < 1 || B > ts->max_batch) return VAE_ERR_ARG;
    const vae_config *c = &m->cfg;
    int H = c->n_hidden, Z = c->latent, L = c->mc_samples;
    int D = vae_config_input_dim(c), Dout = vae_config_output_dim(c);
    int BL = B * L;
    ts->x = x;
    ts->B = B;
    if (c->arch == VAE_ARCH_CONV) return vae_conv_forward_loss(m, ts->conv, x, eps, B, ts->step, stats);

    /* encoder */
    const float *in = x;
    int in_dim = D;
    for (int i = 0; i < H; i++) {
        linear_act_forward(ts->enc[i], in, P(m, 2 * i), P(m, 2 * i + 1), B, in_dim, c->hidden[i],
                           c->activation);
        in = ts->enc[i];
        in_dim = c->hidden[i];
    }
    linear_forward(ts->heads, in, P(m, 2 * H), P(m, 2 * H + 2), B, in_dim, 2 * Z);

    /* reparameterisation and KL */
    if (eps != ts->eps) memcpy(ts->eps, eps, sizeof(float) * (size_t)BL * Z);
    double kl_opt;
    double kl = vae_latent_forward(c, ts->heads, ts->eps, B, ts->z, ts->kl_dim, &kl_opt);
    double beta = c->beta;
    if (c->kl_warmup > 0 && ts->step < c->kl_warmup) beta *= (double)ts->step / (double)c->kl_warmup;
    ts->beta_eff = beta;

    /* decoder */
    const float *dz_in = ts->z;
    in_dim = Z;
    int base = 2 * H + 4;
    for (int i = 0; i < H; i++) {
        int out = c->hidden[H - 1 - i];
        linear_act_forward(ts->dec[i], dz_in, P(m, base + 2 * i), P(m, base + 2 * i + 1), BL,
                           in_dim, out, c->activation);
        dz_in = ts->dec[i];
        in_dim = out;
    }
    float *logits = ts->dlogits; /* overwritten in place by dL/dlogits below */
    linear_forward(logits, dz_in, P(m, base + 2 * H), P(m, base + 2 * H + 1), BL, in_dim, Dout);

    /* -log p(x|z), averaged over the L samples; the gradient replaces the
     * logits in place (fused, one pass). */
    double recon = vae_output_loss(c, logits, x, B, L);

    stats->recon = recon;
    stats->kl = kl;
    stats->beta_eff = beta;
    stats->loss = recon + beta * kl_opt;
    stats->batch = B;
    if (!isfinite(stats->loss)) return VAE_ERR_NONFINITE;
    return VAE_OK;
}

int vae_backward(const vae_model *m, vae_train_state *ts)
{
    const vae_config *c = &m->cfg;
    if (c->arch == VAE_ARCH_CONV) return vae_conv_backward(m, ts->conv, ts->grads);
    int H = c->n_hidden, Z = c->latent, L = c->mc_samples, B = ts->B, BL = B * L;
    int D = vae_config_input_dim(c), Dout = vae_config_output_dim(c);
    int base = 2 * H + 4;
    float *g = ts->grads;
#define G(ti) (g + m->tensors[ti].offset)

    /* decoder, from the output layer down to dz */
    const float *dy = ts->dlogits;
    int out_dim = Dout;
    for (int i = H; i >= 0; i--) {
        const float *xin = i > 0 ? ts->dec[i - 1] : ts->z;
        int in_dim = i > 0 ? c->hidden[H - i] : Z;
        float *dx = i > 0 ? ts->scratch[i & 1] : ts->dz;
        linear_backward(dx, G(base + 2 * i), G(base + 2 * i + 1), dy, xin, P(m, base + 2 * i), BL,
                        in_dim, out_dim);
        if (i > 0) activation_backward(dx, ts->dec[i - 1], (size_t)BL * in_dim, c->activation);
        dy = dx;
        out_dim = in_dim;
    }

    /* through the reparameterisation and the KL to mu and logvar */
    vae_latent_backward(c, ts->heads, ts->eps, ts->dz, ts->kl_dim, B, ts->beta_eff, ts->dheads);

    /* heads (one product for both) and encoder */
    const float *hin = H > 0 ? ts->enc[H - 1] : ts->x;
    int hdim = H > 0 ? c->hidden[H - 1] : D;
    float *dh = H > 0 ? ts->scratch[0] : NULL;
    linear_backward(dh, G(2 * H), G(2 * H + 2), ts->dheads, hin, P(m, 2 * H), B, hdim, 2 * Z);
    for (int i = H - 1; i >= 0; i--) {
        activation_backward(dh, ts->enc[i], (size_t)B * c->hidden[i], c->activation);
        const float *xin = i > 0 ? ts->enc[i - 1] : ts->x;
        int in_dim = i > 0 ? c->hidden[i - 1] : D;
        float *dx = i > 0 ? ts->scratch[(H - i) & 1] : NULL;
        linear_backward(dx, G(2 * i), G(2 * i + 1), dh, xin, P(m, 2 * i), B, in_dim, c->hidden[i]);
        dh = dx;
    }
#undef G
    return VAE_OK;
}

void vae_adam_update(vae_model *m, vae_train_state *ts)
{
    const vae_config *c = &m->cfg;
    float *p = m->params, *g = ts->grads, *mm = ts->adam_m, *vv = ts->adam_v;
    size_t n = m->n_params;
    if (c->clip_grad > 0.0f) {
        /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1 */
        double sq = 0.0;
        for (size_t i = 0; i < n; i++) sq += (double)g[i] * g[i];
        double norm = sqrt(sq), coef = c->clip_grad / (norm + 1e-6);
        if (coef < 1.0)
            for (size_t i = 0; i < n; i++) g[i] *= (float)coef;
    }
    ts->step++;
    float b1 = c->beta1, b2 = c->beta2, wd = c->weight_decay;
    double bc1 = 1.0 - pow(b1, (double)ts->step), bc2 = 1.0 - pow(b2, (double)ts->step);
    float step_size = (float)(c->lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    float eps = c->eps;
    /* PyTorch Adam: L2 weight decay added to the gradient (not AdamW). */
    vk_adam(p, g, NULL, mm, vv, n, b1, b2, eps, wd, step_size, inv_sqrt_bc2);
}

/* Adam on parameters [lo, hi) with the gradient summed over both halves of
 * the batch (ts's and the peer's), in one pass. */
static void adam_slice(vae_model *m, vae_train_state *ts, const float *peer_grads, size_t lo,
                       size_t hi, float step_size, float inv_sqrt_bc2)
{
    const vae_config *c = &m->cfg;
    vk_adam(m->params + lo, ts->grads + lo, peer_grads + lo, ts->adam_m + lo, ts->adam_v + lo,
            hi - lo, c->beta1, c->beta2, c->eps, c->weight_decay, step_size, inv_sqrt_bc2);
}

static void *peer_main(void *arg)
{
    vae_train_state *owner = arg;
    struct vae_peer *p = owner->peer;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->job == PEER_IDLE) pthread_cond_wait(&p->cv, &p->mu);
        int job = p->job;
        pthread_mutex_unlock(&p->mu);
        if (job == PEER_QUIT) return NULL;
        if (job == PEER_FORWARD_BACKWARD) {
            p->ts->step = owner->step; /* the same KL warm-up point */
            p->rc = vae_forward_loss(p->m, p->ts, p->x, p->eps, p->B, &p->stats);
            if (p->rc == VAE_OK) vae_backward(p->m, p->ts);
        } else {
            adam_slice(p->m, owner, p->ts->grads, p->lo, p->hi, p->step_size, p->inv_sqrt_bc2);
        }
        pthread_mutex_lock(&p->mu);
        p->job = PEER_IDLE;
        pthread_cond_broadcast(&p->cv);
    }
}

static void peer_post(struct vae_peer *p, int job)
{
    pthread_mutex_lock(&p->mu);
    p->job = job;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void peer_wait(struct vae_peer *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->job != PEER_IDLE) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void peer_free(struct vae_peer *p)
{
    if (!p) return;
    peer_post(p, PEER_QUIT);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    vae_train_state_free(p->ts);
    free(p);
}

int vae_train_state_set_threads(vae_train_state *ts, const vae_model *m, int threads, char *err,
                                size_t errlen)
{
    if (threads <= 1) {
        peer_free(ts->peer);
        ts->peer = NULL;
        return VAE_OK;
    }
    if (ts->peer) return VAE_OK;
    struct vae_peer *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory for the training thread");
        return VAE_ERR_NOMEM;
    }
    if (!(p->ts = vae_train_state_new(m, peer_batch(ts->max_batch), err, errlen))) {
        free(p);
        return VAE_ERR_NOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    ts->peer = p;
    if (pthread_create(&p->thread, NULL, peer_main, ts) != 0) {
        ts->peer = NULL;
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        vae_train_state_free(p->ts);
        free(p);
        snprintf(err, errlen, "cannot start the training thread");
        return VAE_ERR_NOMEM;
    }
    return VAE_OK;
}

/* Forward, backward and Adam with the batch split between this thread and
 * the peer. Free bits couple the whole batch through its per-dimension KL,
 * and clipping needs the whole gradient's norm: those stay single-threaded. */
static int train_step_parallel(vae_model *m, vae_train_state *ts, const float *x, int B,
                               vae_stats *stats)
{
    const vae_config *c = &m->cfg;
    struct vae_peer *p = ts->peer;
    int D = vae_config_input_dim(c), LZ = c->mc_samples * c->latent;
    int B0 = B / 2, B1 = B - B0;
    p->m = m;
    p->x = x + (size_t)B0 * D;
    p->eps = ts->eps + (size_t)B0 * LZ;
    p->B = B1;
    peer_post(p, PEER_FORWARD_BACKWARD);
    int rc = vae_forward_loss(m, ts, x, ts->eps, B0, stats);
    if (rc == VAE_OK) vae_backward(m, ts);
    peer_wait(p);
    if (rc) return rc;
    if (p->rc) {
        *stats = p->stats;
        return p->rc;
    }
    stats->loss += p->stats.loss;
    stats->recon += p->stats.recon;
    stats->kl += p->stats.kl;
    stats->batch = B;

    ts->step++;
    double bc1 = 1.0 - pow(c->beta1, (double)ts->step), bc2 = 1.0 - pow(c->beta2, (double)ts->step);
    float step_size = (float)(c->lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    size_t half = m->n_params / 2;
    p->lo = half;
    p->hi = m->n_params;
    p->step_size = step_size;
    p->inv_sqrt_bc2 = inv_sqrt_bc2;
    peer_post(p, PEER_ADAM);
    adam_slice(m, ts, p->ts->grads, 0, half, step_size, inv_sqrt_bc2);
    peer_wait(p);
    return VAE_OK;
}

int vae_train_step(vae_model *m, vae_train_state *ts, const float *x, int B, rng_state *rng,
                   vae_stats *stats)
{
    const vae_config *c = &m->cfg;
    if (B < 1 || B > ts->max_batch) return VAE_ERR_ARG;
    int D = vae_config_input_dim(c);
    const float *xin = x;
    if (c->binarize == VAE_BIN_DYNAMIC) {
        for (size_t i = 0; i < (size_t)B * D; i++) ts->xbin[i] = rng_uniform(rng) < x[i] ? 1.0f : 0.0f;
        xin = ts->xbin;
    } else if (c->binarize == VAE_BIN_STATIC) {
        for (size_t i = 0; i < (size_t)B * D; i++) ts->xbin[i] = x[i] > 0.5f ? 1.0f : 0.0f;
        xin = ts->xbin;
    }
    rng_normal_fill(rng, ts->eps, (size_t)B * c->mc_samples * c->latent);
    if (ts->peer && B >= 16 && c->free_bits == 0.0f && c->clip_grad == 0.0f)
        return train_step_parallel(m, ts, xin, B, stats);
    int rc = vae_forward_loss(m, ts, xin, ts->eps, B, stats);
    if (rc) return rc;
    vae_backward(m, ts);
    vae_adam_update(m, ts);
    return VAE_OK;
}

