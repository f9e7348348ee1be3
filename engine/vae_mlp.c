/* The MLP VAE, the model behind cfg.arch == VAE_ARCH_MLP, on engine/linear;
 * vae.c reaches it through vae_mlp_ops (vae_arch.h).
 *
 * The network (H = n_hidden, act = cfg.activation after every hidden layer):
 *   encoder.i   Linear(in -> hidden[i]), act            for i < H (in: D, then hidden[i-1])
 *   fc_mu, fc_logvar  Linear(hidden[H-1] (D when H = 0) -> latent)
 *   decoder.i   Linear(in -> hidden[H-1-i]), act        (in: latent, then the previous)
 *   out         Linear(-> Dout): the logits (Dout = 2D for gaussian-learned:
 *               D means, then D logvars)
 *
 * Tensors in the flat parameter array, in this order: encoder.i.weight
 * [hidden[i], in], encoder.i.bias; fc_mu.weight, fc_logvar.weight, then
 * fc_mu.bias, fc_logvar.bias (the two heads' weights adjacent and then their
 * biases, so that the heads run as one (2 latent, in) layer); decoder.i.weight,
 * decoder.i.bias; out.weight, out.bias.
 *
 * A batch is row-major (B, features). With mc_samples L > 1 the decoder sees
 * B*L rows, row b*L + l being sample l of image b.
 *
 * A conditional model (K = n_classes > 0) concatenates the one-hot label to
 * the encoder's input and to z: the first encoder layer (fc_mu and fc_logvar
 * when H = 0) takes D + K inputs, the first decoder layer (out when H = 0)
 * latent + K, the one-hot in the last K columns of the weight, as
 * nn.Linear(D + K, ...) on torch.cat([x, F.one_hot(y, K)], 1) has it.
 */
#include "engine/vae_arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/linear.h"
#include "engine/vae_kernels.h"
#include "engine/vae_loss.h"

#define LEAKY_SLOPE 0.01f /* PyTorch's nn.LeakyReLU default */

/* ---------- layout: the network's parts in the tensor table ---------- */

/* One Linear layer: the tensor indices of its weight and its bias. */
typedef struct {
    int w, b;
    int in, out;
} mlp_linear;

typedef struct {
    int H;                          /* hidden layers */
    mlp_linear enc[VAE_MAX_HIDDEN]; /* encoder.i */
    mlp_linear heads;               /* fc_mu and fc_logvar as one (2Z, in) layer */
    mlp_linear dec[VAE_MAX_HIDDEN]; /* decoder.i */
    mlp_linear out;
    int widest;                     /* the widest activation of a row */
    int K;                          /* classes of a conditional model, else 0 */
    int cat;                        /* conditional: the wider concatenated input, D or latent, + K */
} mlp_layout;

static void layout_of(mlp_layout *L, const vae_config *c)
{
    int D = vae_config_input_dim(c), Z = c->latent, H = c->n_hidden, K = c->n_classes;
    int t = 0, in = D + K;
    memset(L, 0, sizeof *L);
    L->H = H;
    L->K = K;
    L->cat = K ? (D > Z ? D : Z) + K : 0;
    for (int i = 0; i < H; i++) {
        L->enc[i] = (mlp_linear){t, t + 1, in, c->hidden[i]};
        t += 2;
        in = c->hidden[i];
    }
    L->heads = (mlp_linear){t, t + 2, in, 2 * Z}; /* both weights, then both biases */
    t += 4;
    in = Z + K;
    for (int i = 0; i < H; i++) {
        L->dec[i] = (mlp_linear){t, t + 1, in, c->hidden[H - 1 - i]};
        t += 2;
        in = c->hidden[H - 1 - i];
    }
    L->out = (mlp_linear){t, t + 1, in, vae_config_output_dim(c)};
    L->widest = L->out.out > 2 * Z ? L->out.out : 2 * Z;
    for (int i = 0; i < H; i++)
        if (c->hidden[i] > L->widest) L->widest = c->hidden[i];
}

/* In the order of layout_of. */
static vae_status mlp_build_tensors(vae_model *m)
{
    mlp_layout L;
    layout_of(&L, &m->cfg);
    int Z = m->cfg.latent, bad = 0;
    char prefix[32];
    for (int i = 0; i < L.H; i++) {
        snprintf(prefix, sizeof prefix, "encoder.%d", i);
        bad |= vae_config_add_linear(m, prefix, L.enc[i].in, L.enc[i].out) != VAE_OK;
    }
    bad |= vae_config_add_tensor(m, "fc_mu.weight", 2, Z, L.heads.in, 0, 0) != VAE_OK;
    bad |= vae_config_add_tensor(m, "fc_logvar.weight", 2, Z, L.heads.in, 0, 0) != VAE_OK;
    bad |= vae_config_add_tensor(m, "fc_mu.bias", 1, Z, 0, 0, 0) != VAE_OK;
    bad |= vae_config_add_tensor(m, "fc_logvar.bias", 1, Z, 0, 0, 0) != VAE_OK;
    for (int i = 0; i < L.H; i++) {
        snprintf(prefix, sizeof prefix, "decoder.%d", i);
        bad |= vae_config_add_linear(m, prefix, L.dec[i].in, L.dec[i].out) != VAE_OK;
    }
    bad |= vae_config_add_linear(m, "out", L.out.in, L.out.out) != VAE_OK;
    return bad ? VAE_ERR_ARG : VAE_OK;
}

/* ---------- layers ---------- */

/* y = act(y) in place, y: n values. */
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
        vae_kernels_relu_backward(dy, y, n, 0.0f);
        break;
    case VAE_ACT_LEAKY_RELU:
        vae_kernels_relu_backward(dy, y, n, LEAKY_SLOPE);
        break;
    case VAE_ACT_TANH:
        for (size_t i = 0; i < n; i++) dy[i] *= 1.0f - y[i] * y[i];
        break;
    case VAE_ACT_ELU:
        for (size_t i = 0; i < n; i++) dy[i] = y[i] > 0.0f ? dy[i] : dy[i] * (y[i] + 1.0f);
        break;
    }
}

static const float *weight(const vae_model *m, const mlp_linear *l)
{
    return vae_arch_param(m, l->w);
}
static const float *bias(const vae_model *m, const mlp_linear *l)
{
    return vae_arch_param(m, l->b);
}

/* y: (B, out) = act(x: (B, in) . w^T + b), the activation fused into the
 * bias pass where it can be. rowwise (inference): each row's bits its own
 * whatever B (linear_matmul_wt_rowwise), training keeps OpenBLAS's sgemm. */
static void hidden_forward(const vae_model *m, const mlp_linear *l, float *y, const float *x, int B,
                           int rowwise)
{
    vae_activation a = m->cfg.activation;
    (rowwise ? linear_matmul_wt_rowwise : linear_matmul_wt)(y, x, weight(m, l), B, l->in, l->out);
    if (a == VAE_ACT_RELU || a == VAE_ACT_LEAKY_RELU) {
        float slope = a == VAE_ACT_LEAKY_RELU ? LEAKY_SLOPE : 0.0f;
        vae_kernels_bias_relu(y, bias(m, l), B, l->out, slope);
        return;
    }
    vae_kernels_bias(y, bias(m, l), B, l->out);
    activation_forward(y, (size_t)B * l->out, a);
}

/* y: (B, out) = x: (B, in) . w^T + b */
static void output_forward(const vae_model *m, const mlp_linear *l, float *y, const float *x, int B,
                           int rowwise)
{
    (rowwise ? linear_forward_rowwise : linear_forward)(y, x, weight(m, l), bias(m, l), B, l->in, l->out);
}

/* Encoder: x (B, D, or D + K concatenated with the label) -> heads (B, 2Z);
 * acts[i] receives hidden layer i's output. */
static void encode_into(const vae_model *m, const mlp_layout *L, const float *x, int B,
                        float *const *acts, float *heads, int rowwise)
{
    const float *in = x;
    for (int i = 0; i < L->H; i++) {
        hidden_forward(m, &L->enc[i], acts[i], in, B, rowwise);
        in = acts[i];
    }
    output_forward(m, &L->heads, heads, in, B, rowwise);
}

/* Decoder: z (N, Z, or Z + K with the label) -> logits (N, Dout); acts[i]
 * receives hidden layer i's output. */
static void decode_into(const vae_model *m, const mlp_layout *L, const float *z, int N,
                        float *const *acts, float *logits, int rowwise)
{
    const float *in = z;
    for (int i = 0; i < L->H; i++) {
        hidden_forward(m, &L->dec[i], acts[i], in, N, rowwise);
        in = acts[i];
    }
    output_forward(m, &L->out, logits, in, N, rowwise);
}

/* ---------- inference ---------- */

/* scratch: two ping-pong buffers of max_batch rows of the widest layer, the
 * second on a 16-float boundary, then for a conditional model the
 * concatenated input (max_batch, cat). */
static size_t half_floats(const mlp_layout *L, int max_batch)
{
    return ((size_t)max_batch * (size_t)L->widest + 15) & ~(size_t)15;
}

static size_t mlp_workspace_floats(const vae_config *c, int max_batch)
{
    mlp_layout L;
    layout_of(&L, c);
    return 2 * half_floats(&L, max_batch) + (size_t)max_batch * (size_t)L.cat;
}

/* The buffers of layer i of a ping-pong pass: a, b, a, ... */
static void ping_pong(const mlp_layout *L, float *scratch, int B, float **acts, float **last)
{
    float *bufs[2] = {scratch, scratch + half_floats(L, B)};
    for (int i = 0; i < L->H; i++) acts[i] = bufs[i & 1];
    *last = bufs[L->H & 1];
}

/* in (B, width) with the one-hot labels after it when conditional, in the
 * scratch after the ping-pong buffers of a B-row pass (which fit within
 * max_batch rows). */
static const float *with_labels(const mlp_layout *L, float *scratch, const float *in, int width,
                                const float *y, int B)
{
    if (!L->K) return in;
    float *cat = scratch + 2 * half_floats(L, B);
    vae_arch_concat_labels(cat, in, B, width, y, 1, L->K);
    return cat;
}

static const float *mlp_encode_with(const vae_model *m, float *scratch, const float *x,
                                    const float *y, int B, int rowwise)
{
    mlp_layout L;
    layout_of(&L, &m->cfg);
    float *acts[VAE_MAX_HIDDEN], *heads;
    ping_pong(&L, scratch, B, acts, &heads);
    const float *in = with_labels(&L, scratch, x, vae_config_input_dim(&m->cfg), y, B);
    encode_into(m, &L, in, B, acts, heads, rowwise);
    return heads;
}

static float *mlp_decode_logits_with(const vae_model *m, float *scratch, const float *z,
                                     const float *y, int B, int rowwise)
{
    mlp_layout L;
    layout_of(&L, &m->cfg);
    float *acts[VAE_MAX_HIDDEN], *logits;
    ping_pong(&L, scratch, B, acts, &logits);
    decode_into(m, &L, with_labels(&L, scratch, z, m->cfg.latent, y, B), B, acts, logits,
                rowwise);
    return logits;
}

static const float *mlp_encode(const vae_model *m, float *scratch, const float *x, const float *y,
                               int B)
{
    return mlp_encode_with(m, scratch, x, y, B, 0);
}

static float *mlp_decode_logits(const vae_model *m, float *scratch, const float *z,
                                const float *y, int B)
{
    return mlp_decode_logits_with(m, scratch, z, y, B, 0);
}

static const float *mlp_encode_rowwise(const vae_model *m, float *scratch, const float *x,
                                       const float *y, int B)
{
    return mlp_encode_with(m, scratch, x, y, B, 1);
}

static float *mlp_decode_logits_rowwise(const vae_model *m, float *scratch, const float *z,
                                        const float *y, int B)
{
    return mlp_decode_logits_with(m, scratch, z, y, B, 1);
}

/* ---------- training ---------- */

typedef struct {
    mlp_layout L;
    float *enc[VAE_MAX_HIDDEN]; /* (B, hidden[i]) encoder activations */
    float *heads, *dheads;      /* (B, 2Z): mu | logvar, and its gradient */
    float *z, *dz;              /* (BL, Z) */
    float *dec[VAE_MAX_HIDDEN]; /* (BL, hidden[H-1-i]) decoder activations */
    float *dlogits;             /* (BL, Dout): the logits, then their gradient */
    float *denc[VAE_MAX_HIDDEN]; /* (B, hidden[i]): gradient at enc[i] (before the activation) */
    float *ddec[VAE_MAX_HIDDEN]; /* (BL, hidden[H-1-i]): the same at dec[i] */
    double *kl_dim;             /* (Z) batch KL per dimension */
    /* conditional only: x and z with the one-hot labels, and the gradient
     * of the latter (the first decoder layer's dx) */
    float *xcat;                /* (B, D + K) */
    float *zcat, *dzcat;        /* (BL, Z + K) */
    const float *x, *eps;       /* borrowed from the last forward; x is xcat when conditional */
    int B;
} mlp_train;

static double *mlp_batch_kl(void *st) { return ((mlp_train *)st)->kl_dim; }

static void *mlp_train_layout(const vae_config *c, int max_batch, vae_layout *l)
{
    mlp_train sizing, *t = vae_layout_take(l, 1, sizeof *t);
    mlp_train *s = t ? t : &sizing; /* while sizing the pointers go nowhere */
    layout_of(&s->L, c);
    size_t B = (size_t)max_batch, BL = B * (size_t)c->mc_samples, Z = (size_t)c->latent;
    int H = c->n_hidden;
    for (int i = 0; i < H; i++) {
        VAE_LAYOUT_TAKE(l, s->enc[i], B * c->hidden[i]);
        VAE_LAYOUT_TAKE(l, s->dec[i], BL * c->hidden[H - 1 - i]);
        VAE_LAYOUT_TAKE(l, s->denc[i], B * c->hidden[i]);
        VAE_LAYOUT_TAKE(l, s->ddec[i], BL * c->hidden[H - 1 - i]);
    }
    VAE_LAYOUT_TAKE(l, s->heads, B * 2 * Z);
    VAE_LAYOUT_TAKE(l, s->dheads, B * 2 * Z);
    VAE_LAYOUT_TAKE(l, s->z, BL * Z);
    VAE_LAYOUT_TAKE(l, s->dz, BL * Z);
    VAE_LAYOUT_TAKE(l, s->dlogits, BL * (size_t)vae_config_output_dim(c));
    VAE_LAYOUT_TAKE(l, s->kl_dim, Z);
    if (s->L.K) {
        size_t K = (size_t)s->L.K;
        VAE_LAYOUT_TAKE(l, s->xcat, B * ((size_t)vae_config_input_dim(c) + K));
        VAE_LAYOUT_TAKE(l, s->zcat, BL * (Z + K));
        VAE_LAYOUT_TAKE(l, s->dzcat, BL * (Z + K));
    }
    return t;
}

static void mlp_forward(const vae_model *m, void *st, const float *x, const float *y,
                        const float *eps, int B, vae_loss_terms *terms)
{
    mlp_train *s = st;
    const vae_config *c = &m->cfg;
    int K = s->L.K, L = c->mc_samples;
    s->x = x;
    if (K) {
        vae_arch_concat_labels(s->xcat, x, B, vae_config_input_dim(c), y, 1, K);
        s->x = s->xcat;
    }
    s->eps = eps;
    s->B = B;
    encode_into(m, &s->L, s->x, B, s->enc, s->heads, 0);
    terms->kl = vae_loss_latent_forward(c, s->heads, eps, B, s->z, s->kl_dim, &terms->kl_opt);
    if (K) vae_arch_concat_labels(s->zcat, s->z, B * L, c->latent, y, L, K);
    /* the logits are overwritten in place by their gradient */
    decode_into(m, &s->L, K ? s->zcat : s->z, B * L, s->dec, s->dlogits, 0);
    terms->recon = vae_loss_output_nll(c, s->dlogits, x, B, L);
}

/* Every layer's output gradient of st's rows, from the output layer down to
 * dz (through z's concatenation with the labels when conditional), through
 * the reparameterisation and the KL to the heads, and up the encoder. */
static void mlp_backward_inputs(const vae_model *m, void *st, double beta)
{
    mlp_train *s = st;
    const vae_config *c = &m->cfg;
    const mlp_layout *L = &s->L;
    int H = L->H, B = s->B, BL = B * c->mc_samples;

    const float *dy = s->dlogits;
    for (int i = H; i >= 0; i--) {
        const mlp_linear *l = i == H ? &L->out : &L->dec[i];
        float *dx = i > 0 ? s->ddec[i - 1] : L->K ? s->dzcat : s->dz;
        linear_backward_input(dx, dy, weight(m, l), BL, l->in, l->out);
        if (i > 0) activation_backward(dx, s->dec[i - 1], (size_t)BL * l->in, c->activation);
        dy = dx;
    }
    if (L->K) vae_arch_drop_onehot(s->dz, s->dzcat, BL, c->latent, L->K);

    vae_loss_latent_backward(c, s->heads, s->eps, s->dz, s->kl_dim, B, beta, s->dheads);

    if (H > 0) linear_backward_input(s->denc[H - 1], s->dheads, weight(m, &L->heads), B, L->heads.in,
                                     L->heads.out);
    for (int i = H - 1; i >= 0; i--) {
        activation_backward(s->denc[i], s->enc[i], (size_t)B * L->enc[i].out, c->activation);
        if (i > 0) linear_backward_input(s->denc[i - 1], s->denc[i], weight(m, &L->enc[i]), B,
                                         L->enc[i].in, L->enc[i].out);
    }
}

/* Layer j of the 2H + 2 (the encoder's, the heads, the decoder's, out) with
 * its output gradient dy and its input x in state s, over *rows rows. */
static const mlp_linear *layer_at(const mlp_train *s, int mc, int j, const float **dy,
                                  const float **x, int *rows)
{
    const mlp_layout *L = &s->L;
    int H = L->H;
    const float *zin = L->K ? s->zcat : s->z;
    *rows = j <= H ? s->B : s->B * mc;
    if (j < H) {
        *dy = s->denc[j];
        *x = j > 0 ? s->enc[j - 1] : s->x;
        return &L->enc[j];
    }
    if (j == H) {
        *dy = s->dheads;
        *x = H > 0 ? s->enc[H - 1] : s->x;
        return &L->heads;
    }
    if (j < 2 * H + 1) {
        int i = j - H - 1;
        *dy = s->ddec[i];
        *x = i > 0 ? s->dec[i - 1] : zin;
        return &L->dec[i];
    }
    *dy = s->dlogits;
    *x = H > 0 ? s->dec[H - 1] : zin;
    return &L->out;
}

/* The heads are two tensors of Z rows each (fc_mu, then fc_logvar) in one
 * layer of 2Z: each of them split as vae_arch_part_rows says, the others
 * whole layers. */
static void mlp_backward_params(const vae_model *m, void *const *sts, int n, int part, int parts,
                                float *grads, int accumulate)
{
    const mlp_train *s0 = sts[0];
    const mlp_layout *L = &s0->L;
    int mc = m->cfg.mc_samples;
    for (int j = 0; j < 2 * L->H + 2; j++) {
        const float *dy, *x;
        int rows;
        const mlp_linear *l = layer_at(s0, mc, j, &dy, &x, &rows);
        int blocks = j == L->H ? 2 : 1, block_rows = l->out / blocks;
        for (int k = 0; k < blocks; k++) {
            int r0, r1;
            vae_arch_part_rows(block_rows, part, parts, &r0, &r1);
            r0 += k * block_rows;
            r1 += k * block_rows;
            for (int t = 0; t < n; t++) {
                layer_at(sts[t], mc, j, &dy, &x, &rows);
                linear_backward_params(vae_arch_grad(m, grads, l->w), vae_arch_grad(m, grads, l->b),
                                       dy, x, rows, l->in, l->out, r0, r1, t > 0 || accumulate);
            }
        }
    }
}

static void mlp_backward(const vae_model *m, void *st, double beta, float *grads)
{
    mlp_backward_inputs(m, st, beta);
    mlp_backward_params(m, &st, 1, 0, 1, grads, 1);
}

const vae_arch_ops vae_mlp_ops = {
    .validate = NULL, /* the common checks cover it */
    .build_tensors = mlp_build_tensors,
    .workspace_floats = mlp_workspace_floats,
    .encode = mlp_encode,
    .decode_logits = mlp_decode_logits,
    .encode_rowwise = mlp_encode_rowwise,
    .decode_logits_rowwise = mlp_decode_logits_rowwise,
    .train_layout = mlp_train_layout,
    .forward = mlp_forward,
    .backward = mlp_backward,
    .backward_inputs = mlp_backward_inputs,
    .backward_params = mlp_backward_params,
    .use_naive = NULL,
    .batch_kl = mlp_batch_kl,
};
