/* The convolutional VAE: the network of vae_conv.h on the kernels of conv.h;
 * vae.c reaches it through vae_conv_ops (vae_arch.h).
 *
 * Inside, activations are channel-major (C, N, H, W) so that every conv layer
 * is one im2col + gemm over the whole batch; images cross into and out of
 * the (N, C, H, W) world three times: the input (padded), the flatten before
 * the heads and its inverse after decoder_input, and the output (cropped).
 * The decoder sees N = B * mc_samples rows, row b*L + l being sample l of
 * image b, as in the MLP. A conditional model's input carries K more
 * channels, the one-hot label planes, and decoder_input takes z with the
 * one-hot after it (vae_conv.h).
 */
#include "engine/vae_conv.h"

#include <stdio.h>
#include <string.h>

#include "engine/conv.h"
#include "engine/linear.h"
#include "engine/vae_arch.h"
#include "engine/vae_kernels.h"
#include "engine/vae_loss.h"

/* The im2col matrix is processed in chunks of images that fit this many
 * floats (16 MB); a whole batch in one chunk gains little over that and
 * would cost hundreds of MB at 64x64. */
#define COL_BUDGET_FLOATS ((size_t)1 << 22)

/* ---------- geometry ---------- */

typedef struct {
    int n;                     /* conv layers */
    int C, Cout, S, P, off;    /* image channels, output channels, side, padded side, crop offset */
    int K;                     /* classes of a conditional model (label planes), else 0 */
    int Z, flat, F;            /* latent, flattened encoder output, its side */
    conv_shape enc[VAE_MAX_HIDDEN], dec[VAE_MAX_HIDDEN];
    int t_enc, t_heads, t_dec_in, t_dec; /* first tensor index of each part */
    size_t max_act;            /* floats per image of the largest activation */
} geometry;

int vae_conv_padded_size(const vae_config *cfg) { return cfg->height == 28 ? 32 : cfg->height; }

static void geometry_of(geometry *g, const vae_config *c)
{
    memset(g, 0, sizeof *g);
    g->n = c->n_conv;
    g->C = c->channels;
    g->Cout = c->likelihood == VAE_LIK_GAUSSIAN_LEARNED ? 2 * c->channels : c->channels;
    g->S = c->height;
    g->P = vae_conv_padded_size(c);
    g->off = (g->P - g->S) / 2;
    g->Z = c->latent;
    g->K = c->n_classes;
    int side = g->P, in = g->C + g->K;
    size_t act = (size_t)(g->Cout > in ? g->Cout : in) * g->P * g->P;
    for (int i = 0; i < g->n; i++) {
        g->enc[i] = conv2d_shape(in, c->conv_channels[i], side, side, 3, 2, 1);
        side = g->enc[i].oh;
        in = c->conv_channels[i];
        size_t a = (size_t)in * side * side;
        if (a > act) act = a;
    }
    g->F = side;
    g->flat = in * side * side;
    for (int i = 0; i < g->n; i++) {
        int out = i < g->n - 1 ? c->conv_channels[g->n - 2 - i] : g->Cout;
        g->dec[i] = conv_transpose2d_shape(c->conv_channels[g->n - 1 - i], out, side, side, 3, 2, 1, 1);
        side = g->dec[i].oh;
    }
    if ((size_t)2 * g->Z > act) act = (size_t)2 * g->Z; /* the heads share a buffer too */
    if ((size_t)(g->Z + g->K) > act) act = (size_t)(g->Z + g->K); /* and z with its label */
    g->max_act = act;
    g->t_enc = 0;
    g->t_heads = 2 * g->n;
    g->t_dec_in = g->t_heads + 4;
    g->t_dec = g->t_dec_in + 2;
}

/* Scratch for im2col: every layer at least one image, at most the batch,
 * and otherwise the budget. */
static size_t col_floats_for(const geometry *g, int N)
{
    size_t best = 0;
    for (int i = 0; i < g->n; i++) {
        const conv_shape *ss[2] = {&g->enc[i], &g->dec[i]};
        for (int k = 0; k < 2; k++) {
            size_t per = conv_col_floats(ss[k], 1), want = per * (size_t)N;
            if (want > COL_BUDGET_FLOATS) want = per > COL_BUDGET_FLOATS ? per : COL_BUDGET_FLOATS / per * per;
            if (want > best) best = want;
        }
    }
    return best;
}

/* After vae_config_validate_common, which checked the channels. */
static vae_status conv_validate(const vae_config *c, char *err, size_t errlen)
{
#define BAD(...)                                  \
    do {                                          \
        snprintf(err, errlen, __VA_ARGS__);       \
        return VAE_ERR_ARG;                       \
    } while (0)
    if (c->height != c->width) BAD("arch conv needs square images, not %dx%d", c->height, c->width);
    int s = c->height;
    if (s != 16 && s != 32 && s != 64 && s != 28)
        BAD("arch conv takes images of side 16, 32, 64 or 28 (padded to 32), not %d", s);
    if (c->n_conv < 1 || c->n_conv > 6) BAD("arch conv needs 1 to 6 conv layers, not %d", c->n_conv);
    for (int i = 0; i < c->n_conv; i++)
        if (c->conv_channels[i] < 1 || c->conv_channels[i] > 1024)
            BAD("conv layer %d has %d channels (1..1024)", i + 1, c->conv_channels[i]);
    int p = vae_conv_padded_size(c);
    if ((p >> c->n_conv) < 1)
        BAD("%d stride-2 conv layers take a %dx%d input below 1x1", c->n_conv, p, p);
#undef BAD
    return VAE_OK;
}

/* ---------- tensor table ---------- */

/* In the order of geometry_of's part indices. */
static vae_status conv_build_tensors(vae_model *m)
{
    geometry g;
    geometry_of(&g, &m->cfg);
    char name[VAE_TENSOR_NAME_MAX];
    int bad = 0;
    for (int i = 0; i < g.n; i++) {
        const conv_shape *s = &g.enc[i];
        snprintf(name, sizeof name, "encoder.%d.weight", i);
        bad |= vae_config_add_tensor(m, name, 4, s->cout, s->cin, 3, 3) != VAE_OK;
        snprintf(name, sizeof name, "encoder.%d.bias", i);
        bad |= vae_config_add_tensor(m, name, 1, s->cout, 0, 0, 0) != VAE_OK;
    }
    /* the two head weights adjacent, then their biases: one product for both */
    bad |= vae_config_add_tensor(m, "fc_mu.weight", 2, g.Z, g.flat, 0, 0) != VAE_OK;
    bad |= vae_config_add_tensor(m, "fc_logvar.weight", 2, g.Z, g.flat, 0, 0) != VAE_OK;
    bad |= vae_config_add_tensor(m, "fc_mu.bias", 1, g.Z, 0, 0, 0) != VAE_OK;
    bad |= vae_config_add_tensor(m, "fc_logvar.bias", 1, g.Z, 0, 0, 0) != VAE_OK;
    bad |= vae_config_add_linear(m, "decoder_input", g.Z + g.K, g.flat) != VAE_OK;
    for (int i = 0; i < g.n; i++) {
        const conv_shape *s = &g.dec[i];
        snprintf(name, sizeof name, "decoder.%d.weight", i);
        bad |= vae_config_add_tensor(m, name, 4, s->cin, s->cout, 3, 3) != VAE_OK;
        snprintf(name, sizeof name, "decoder.%d.bias", i);
        bad |= vae_config_add_tensor(m, name, 1, s->cout, 0, 0, 0) != VAE_OK;
    }
    return bad ? VAE_ERR_ARG : VAE_OK;
}


/* ---------- layout moves ---------- */

/* src (N, C, S, S) -> dst (C, N, P, P), the image at (off, off), zero border. */
static void to_channel_major(float *dst, const float *src, int N, int C, int S, int P, int off)
{
    size_t pp = (size_t)P * P;
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) {
            float *d = dst + ((size_t)c * N + n) * pp;
            const float *s = src + ((size_t)n * C + c) * S * S;
            if (P != S) memset(d, 0, sizeof(float) * pp);
            for (int y = 0; y < S; y++)
                memcpy(d + (size_t)(y + off) * P + off, s + (size_t)y * S, sizeof(float) * S);
        }
}

/* src (C, N, P, P) -> dst (N, C, S, S), the window at (off, off). */
static void from_channel_major(float *dst, const float *src, int N, int C, int S, int P, int off)
{
    size_t pp = (size_t)P * P;
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) {
            const float *s = src + ((size_t)c * N + n) * pp;
            float *d = dst + ((size_t)n * C + c) * S * S;
            for (int y = 0; y < S; y++)
                memcpy(d + (size_t)y * S, s + (size_t)(y + off) * P + off, sizeof(float) * S);
        }
}

/* The K label planes of a conditional model's input after its C image
 * channels in dst (C + K, N, P, P): plane C + k of image n is y[n][k] (1 for
 * its label, 0 for the others) over the whole padded side. */
static void label_planes(float *dst, const float *y, int N, int C, int K, int P)
{
    size_t pp = (size_t)P * P;
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++) {
            float *d = dst + ((size_t)(C + k) * N + n) * pp, v = y[(size_t)n * K + k];
            for (size_t i = 0; i < pp; i++) d[i] = v;
        }
}

static void leaky_forward(float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : VAE_CONV_LEAKY_SLOPE * y[i];
}

/* dy *= leaky'(.) read from the activation's output y (same sign as its input). */
static void leaky_backward(float *dy, const float *y, size_t n)
{
    vae_kernels_relu_backward(dy, y, n, VAE_CONV_LEAKY_SLOPE);
}

/* ---------- layers ---------- */

/* Which conv kernels a pass runs, and their im2col scratch. */
typedef struct {
    int naive;       /* the direct loops of conv.h's *_naive, no col */
    float *col;      /* borrowed scratch */
    size_t col_floats;
} conv_kernels;

/* Conv layer s, its weight tensor ti and its bias ti + 1: y = layer(x). */
static void conv_layer_forward(const vae_model *m, const conv_kernels *k, int ti, float *y,
                               const float *x, int N, const conv_shape *s)
{
    const float *w = vae_arch_param(m, ti), *b = vae_arch_param(m, ti + 1);
    if (k->naive)
        (s->transposed ? conv_transpose2d_forward_naive : conv2d_forward_naive)(y, x, w, b, N, s);
    else
        (s->transposed ? conv_transpose2d_forward : conv2d_forward)(y, x, w, b, N, s, k->col,
                                                                    k->col_floats);
}

/* Its dw and db added into grads from dy and its input x; dx when not NULL. */
static void conv_layer_backward(const vae_model *m, const conv_kernels *k, int ti, float *grads,
                                float *dx, const float *dy, const float *x, int N,
                                const conv_shape *s)
{
    const float *w = vae_arch_param(m, ti);
    float *dw = vae_arch_grad(m, grads, ti), *db = vae_arch_grad(m, grads, ti + 1);
    if (k->naive)
        (s->transposed ? conv_transpose2d_backward_naive : conv2d_backward_naive)(dx, dw, db, dy,
                                                                                  x, w, N, s);
    else
        (s->transposed ? conv_transpose2d_backward : conv2d_backward)(dx, dw, db, dy, x, w, N, s,
                                                                      k->col, k->col_floats);
}

/* A Linear layer, weight tensor wi and bias bi: its dw and db added into
 * grads from dy (N, out) and its input x (N, in); dx (N, in). */
static void linear_layer_backward(const vae_model *m, int wi, int bi, float *grads, float *dx,
                                  const float *dy, const float *x, int N, int in, int out)
{
    linear_backward(dx, vae_arch_grad(m, grads, wi), vae_arch_grad(m, grads, bi), dy, x,
                    vae_arch_param(m, wi), N, in, out);
}

static size_t act_floats(const conv_shape *s, int N) { return (size_t)s->cout * N * s->oh * s->ow; }

/* Encoder: x (B, D) and y (B, K; conditional only) -> heads (B, 2Z).
 * acts[i] receives layer i's output (channel-major); xin the padded input
 * with its label planes; flat the flattened last layer. */
static void encode_into(const vae_model *m, const geometry *g, const conv_kernels *k,
                        const float *x, const float *y, int B, float *xin, float *const *acts,
                        float *flat, float *heads)
{
    to_channel_major(xin, x, B, g->C, g->S, g->P, g->off);
    if (g->K) label_planes(xin, y, B, g->C, g->K, g->P);
    const float *in = xin;
    for (int i = 0; i < g->n; i++) {
        conv_layer_forward(m, k, g->t_enc + 2 * i, acts[i], in, B, &g->enc[i]);
        leaky_forward(acts[i], act_floats(&g->enc[i], B));
        in = acts[i];
    }
    from_channel_major(flat, in, B, g->enc[g->n - 1].cout, g->F, g->F, 0);
    /* both heads in one product: their weights adjacent, then their biases */
    linear_forward(heads, flat, vae_arch_param(m, g->t_heads), vae_arch_param(m, g->t_heads + 2),
                   B, g->flat, 2 * g->Z);
}

/* Decoder: z (N, Z, or Z + K with the one-hot label after it) -> logits
 * (N, Dout). lin is (N, flat) scratch, dec_in the reshaped decoder input,
 * acts[i] layer i's output (the last: logits, channel-major, padded side). */
static void decode_into(const vae_model *m, const geometry *g, const conv_kernels *k,
                        const float *z, int N, float *lin, float *dec_in, float *const *acts,
                        float *logits)
{
    linear_forward(lin, z, vae_arch_param(m, g->t_dec_in), vae_arch_param(m, g->t_dec_in + 1), N,
                   g->Z + g->K, g->flat);
    to_channel_major(dec_in, lin, N, g->dec[0].cin, g->F, g->F, 0);
    const float *in = dec_in;
    for (int i = 0; i < g->n; i++) {
        conv_layer_forward(m, k, g->t_dec + 2 * i, acts[i], in, N, &g->dec[i]);
        if (i < g->n - 1) leaky_forward(acts[i], act_floats(&g->dec[i], N));
        in = acts[i];
    }
    from_channel_major(logits, in, N, g->Cout, g->S, g->P, g->off);
}

/* ---------- inference ---------- */

/* scratch: [a | b | c] of B * max_act floats each, then col. */
static size_t conv_workspace_floats(const vae_config *cfg, int max_batch)
{
    geometry g;
    geometry_of(&g, cfg);
    return 3 * (size_t)max_batch * g.max_act + col_floats_for(&g, max_batch);
}

static const float *conv_encode(const vae_model *m, float *scratch, const float *x,
                                const float *y, int B)
{
    geometry g;
    geometry_of(&g, &m->cfg);
    size_t A = (size_t)B * g.max_act;
    float *a = scratch, *b = a + A, *c = b + A;
    conv_kernels k = {0, c + A, col_floats_for(&g, B)};
    /* layers alternate between a and b; the input and the flat copy use c */
    float *acts[VAE_MAX_HIDDEN];
    for (int i = 0; i < g.n; i++) acts[i] = (i & 1) ? b : a;
    float *flat = (g.n & 1) ? b : a; /* the buffer the last layer did not write */
    float *heads = c;                /* the input is dead once layer 0 ran */
    encode_into(m, &g, &k, x, y, B, c, acts, flat, heads);
    return heads;
}

static float *conv_decode_logits(const vae_model *m, float *scratch, const float *z,
                                 const float *y, int B)
{
    geometry g;
    geometry_of(&g, &m->cfg);
    size_t A = (size_t)B * g.max_act;
    float *a = scratch, *b = a + A, *c = b + A;
    conv_kernels k = {0, c + A, col_floats_for(&g, B)};
    float *acts[VAE_MAX_HIDDEN];
    for (int i = 0; i < g.n; i++) acts[i] = (i & 1) ? a : b; /* dec_in lives in a */
    float *logits = c;                                       /* lin is dead by then */
    if (g.K) { /* z with its label in b, read by decoder_input before layer 0 writes b */
        vae_arch_concat_labels(b, z, B, g.Z, y, 1, g.K);
        z = b;
    }
    decode_into(m, &g, &k, z, B, c, a, acts, logits);
    return logits;
}

/* ---------- training ---------- */

typedef struct {
    int naive;
    geometry g;
    float *xin;                  /* (C + K, B, P, P) padded input and label planes */
    float *enc[VAE_MAX_HIDDEN];  /* encoder layer outputs, after LeakyReLU */
    float *flat;                 /* (B, flat) */
    float *heads, *dheads;       /* (B, 2Z) mu | logvar and its gradient */
    float *z, *dz;               /* (BL, Z) */
    double *kl_dim;              /* (Z) batch KL per dimension */
    float *zcat, *dzcat;         /* conditional: (BL, Z + K) z with its label, and its gradient */
    float *dec_in;               /* (ch[n-1], BL, F, F) decoder_input's output */
    float *dec[VAE_MAX_HIDDEN];  /* decoder layer outputs (the last: logits) */
    float *dlogits;              /* (BL, Dout) logits, then their gradient */
    float *grad_a, *grad_b;      /* (BL * max_act) gradient ping-pong */
    float *col;                  /* im2col scratch */
    size_t col_floats;
    const float *eps;            /* borrowed from the last forward */
    int B;
} conv_train;

static void conv_use_naive(void *st, int on) { ((conv_train *)st)->naive = on; }
static double *conv_batch_kl(void *st) { return ((conv_train *)st)->kl_dim; }

static void *conv_train_layout(const vae_config *c, int max_batch, vae_layout *l)
{
    conv_train sizing, *t = vae_layout_take(l, 1, sizeof *t);
    conv_train *s = t ? t : &sizing; /* while sizing the pointers go nowhere */
    geometry *g = &s->g;
    geometry_of(g, c);
    size_t B = (size_t)max_batch, BL = B * (size_t)c->mc_samples, Z = (size_t)g->Z;
    VAE_LAYOUT_TAKE(l, s->xin, (size_t)(g->C + g->K) * B * g->P * g->P);
    for (int i = 0; i < g->n; i++) {
        VAE_LAYOUT_TAKE(l, s->enc[i], act_floats(&g->enc[i], max_batch));
        VAE_LAYOUT_TAKE(l, s->dec[i], act_floats(&g->dec[i], (int)BL));
    }
    VAE_LAYOUT_TAKE(l, s->flat, B * g->flat);
    VAE_LAYOUT_TAKE(l, s->heads, B * 2 * Z);
    VAE_LAYOUT_TAKE(l, s->dheads, B * 2 * Z);
    VAE_LAYOUT_TAKE(l, s->z, BL * Z);
    VAE_LAYOUT_TAKE(l, s->dz, BL * Z);
    VAE_LAYOUT_TAKE(l, s->kl_dim, Z);
    if (g->K) {
        VAE_LAYOUT_TAKE(l, s->zcat, BL * (Z + (size_t)g->K));
        VAE_LAYOUT_TAKE(l, s->dzcat, BL * (Z + (size_t)g->K));
    }
    VAE_LAYOUT_TAKE(l, s->dec_in, BL * g->flat);
    VAE_LAYOUT_TAKE(l, s->dlogits, BL * vae_config_output_dim(c));
    VAE_LAYOUT_TAKE(l, s->grad_a, BL * g->max_act);
    VAE_LAYOUT_TAKE(l, s->grad_b, BL * g->max_act);
    s->col_floats = col_floats_for(g, (int)BL);
    VAE_LAYOUT_TAKE(l, s->col, s->col_floats);
    return t;
}

static void conv_forward(const vae_model *m, void *st, const float *x, const float *y,
                         const float *eps, int B, vae_loss_terms *terms)
{
    conv_train *s = st;
    const vae_config *c = &m->cfg;
    const geometry *g = &s->g;
    conv_kernels k = {s->naive, s->col, s->col_floats};
    s->eps = eps;
    s->B = B;
    int L = c->mc_samples;
    encode_into(m, g, &k, x, y, B, s->xin, s->enc, s->flat, s->heads);
    terms->kl = vae_loss_latent_forward(c, s->heads, eps, B, s->z, s->kl_dim, &terms->kl_opt);
    if (g->K) vae_arch_concat_labels(s->zcat, s->z, B * L, g->Z, y, L, g->K);
    /* decoder_input's (BL, flat) output goes through grad_a, dead until backward */
    decode_into(m, g, &k, g->K ? s->zcat : s->z, B * L, s->grad_a, s->dec_in, s->dec, s->dlogits);
    terms->recon = vae_loss_output_nll(c, s->dlogits, x, B, c->mc_samples);
}

static void conv_backward(const vae_model *m, void *st, double beta, float *grads)
{
    conv_train *s = st;
    const vae_config *c = &m->cfg;
    const geometry *g = &s->g;
    int B = s->B, BL = B * c->mc_samples, n = g->n;
    conv_kernels k = {s->naive, s->col, s->col_floats};

    /* decoder: dlogits (BL, Dout) -> channel-major, zero where the crop cut */
    float *dy = s->grad_a, *dx = s->grad_b;
    to_channel_major(dy, s->dlogits, BL, g->Cout, g->S, g->P, g->off);
    for (int i = n - 1; i >= 0; i--) {
        const float *xin = i > 0 ? s->dec[i - 1] : s->dec_in;
        conv_layer_backward(m, &k, g->t_dec + 2 * i, grads, dx, dy, xin, BL, &g->dec[i]);
        if (i > 0) leaky_backward(dx, s->dec[i - 1], act_floats(&g->dec[i - 1], BL));
        float *t = dy;
        dy = dx;
        dx = t;
    }
    /* dy: (ch[n-1], BL, F, F) -> rows (BL, flat) for decoder_input */
    from_channel_major(dx, dy, BL, g->dec[0].cin, g->F, g->F, 0);
    if (g->K) {
        linear_layer_backward(m, g->t_dec_in, g->t_dec_in + 1, grads, s->dzcat, dx, s->zcat, BL,
                              g->Z + g->K, g->flat);
        vae_arch_drop_onehot(s->dz, s->dzcat, BL, g->Z, g->K);
    } else {
        linear_layer_backward(m, g->t_dec_in, g->t_dec_in + 1, grads, s->dz, dx, s->z, BL, g->Z,
                              g->flat);
    }

    vae_loss_latent_backward(c, s->heads, s->eps, s->dz, s->kl_dim, B, beta, s->dheads);

    /* heads (one product for both: the weights adjacent, then the biases) and encoder */
    float *dflat = s->grad_a, *dact = s->grad_b;
    linear_layer_backward(m, g->t_heads, g->t_heads + 2, grads, dflat, s->dheads, s->flat, B,
                          g->flat, 2 * g->Z);
    to_channel_major(dact, dflat, B, g->enc[n - 1].cout, g->F, g->F, 0);
    leaky_backward(dact, s->enc[n - 1], act_floats(&g->enc[n - 1], B));
    dy = dact;
    dx = dflat;
    for (int i = n - 1; i >= 0; i--) {
        const float *xin = i > 0 ? s->enc[i - 1] : s->xin;
        conv_layer_backward(m, &k, g->t_enc + 2 * i, grads, i > 0 ? dx : NULL, dy, xin, B,
                            &g->enc[i]);
        if (i > 0) leaky_backward(dx, s->enc[i - 1], act_floats(&g->enc[i - 1], B));
        float *t = dy;
        dy = dx;
        dx = t;
    }
}

const vae_arch_ops vae_conv_ops = {
    .validate = conv_validate,
    .build_tensors = conv_build_tensors,
    .workspace_floats = conv_workspace_floats,
    .encode = conv_encode,
    .decode_logits = conv_decode_logits,
    .train_layout = conv_train_layout,
    .forward = conv_forward,
    .backward = conv_backward,
    .use_naive = conv_use_naive,
    .batch_kl = conv_batch_kl,
};
