/* The facade of vae.h: the model, the inference workspace, the training
 * state with its gradients and Adam moments, the step and the data-parallel
 * helper thread. What differs between architectures is reached through one
 * table, ops_of(&m->cfg) (vae_arch.h), filled by vae_mlp.c and
 * vae_conv.c.
 */
#include "engine/vae.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/vae_arch.h"
#include "engine/vae_kernels.h"
#include "engine/vae_loss.h"
#include "engine/util.h"

/* The table of cfg->arch, which must be valid (vae_config_validate_common). */
static const vae_arch_ops *ops_of(const vae_config *cfg)
{
    static const vae_arch_ops *const table[] = {[VAE_ARCH_MLP] = &vae_mlp_ops,
                                                [VAE_ARCH_CONV] = &vae_conv_ops};
    return table[cfg->arch];
}

/* ---------- the model ---------- */

vae_status vae_config_validate(const vae_config *cfg, char *err, size_t errlen)
{
    vae_status rc = vae_config_validate_common(cfg, err, errlen);
    if (rc) return rc;
    const vae_arch_ops *ops = ops_of(cfg);
    return ops->validate ? ops->validate(cfg, err, errlen) : VAE_OK;
}

/* The tensor table of cfg in m (no parameters allocated): what vae_alloc
 * builds and vae_config_param_count counts. */
static vae_status build_tensors(vae_model *m, const vae_config *cfg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (vae_config_validate(cfg, err, errlen)) return VAE_ERR_ARG;
    m->cfg = *cfg;
    if (ops_of(cfg)->build_tensors(m)) {
        snprintf(err, errlen, "too many layers for the tensor table");
        return VAE_ERR_ARG;
    }
    return VAE_OK;
}

vae_status vae_alloc(vae_model *m, const vae_config *cfg, char *err, size_t errlen)
{
    vae_status rc = build_tensors(m, cfg, err, errlen);
    if (rc) return rc;
    m->params = calloc(m->n_params, sizeof(float)); /* owned by m until vae_free */
    if (!m->params) {
        snprintf(err, errlen, "out of memory for %zu parameters", m->n_params);
        return VAE_ERR_NOMEM;
    }
    return VAE_OK;
}

vae_status vae_init(vae_model *m, const vae_config *cfg, uint64_t seed, char *err, size_t errlen)
{
    vae_status rc = vae_alloc(m, cfg, err, errlen);
    if (rc) return rc;
    vae_config_init_params(m, seed);
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

size_t vae_encoder_param_count(const vae_model *m)
{
    const vae_tensor *last = vae_find_tensor(m, "fc_logvar.bias"); /* every table has it */
    return last ? last->offset + last->size : 0;
}

size_t vae_config_param_count(const vae_config *cfg)
{
    char err[256];
    vae_model m; /* the table only: no parameters */
    return build_tensors(&m, cfg, err, sizeof err) == VAE_OK ? m.n_params : 0;
}

static int config_is_valid(const vae_config *cfg)
{
    char err[256];
    return vae_config_validate(cfg, err, sizeof err) == VAE_OK;
}

/* ---------- inference ---------- */

/* The workspace and its scratch are one block. */
struct vae_workspace {
    int max_batch;
    int rowwise;    /* vae_workspace_set_rows_independent */
    float *scratch; /* the architecture's, workspace_floats(max_batch) */
    float *y;       /* conditional: (max_batch, n_classes) the label rows of a call */
};

/* Lays a workspace out in l (vae_arch.h); NULL while sizing. */
static vae_workspace *workspace_layout(const vae_config *c, int max_batch, vae_layout *l)
{
    vae_workspace sizing, *ws = vae_layout_take(l, 1, sizeof *ws);
    vae_workspace *s = ws ? ws : &sizing;
    s->max_batch = max_batch;
    s->rowwise = 0;
    VAE_LAYOUT_TAKE(l, s->scratch, ops_of(c)->workspace_floats(c, max_batch));
    s->y = NULL;
    if (vae_config_is_conditional(c))
        VAE_LAYOUT_TAKE(l, s->y, (size_t)max_batch * (size_t)c->n_classes);
    return ws;
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
    unsigned char *block = malloc(l.used); /* the workspace itself: scratch needs no zeroing */
    if (!block) return NULL;
    l = (vae_layout){block, 0};
    return workspace_layout(&m->cfg, max_batch, &l);
}

void vae_workspace_free(vae_workspace *ws) { free(ws); }

int vae_rows_independent(const vae_model *m)
{
    const vae_arch_ops *ops = ops_of(&m->cfg);
    return ops->encode_rowwise && ops->decode_logits_rowwise;
}

vae_status vae_workspace_set_rows_independent(const vae_model *m, vae_workspace *ws, int on)
{
    if (on && !vae_rows_independent(m)) return VAE_ERR_ARG;
    ws->rowwise = on;
    return VAE_OK;
}

/* The architecture's encode and decode for ws: rowwise when it is set so. */
static const float *arch_encode(const vae_model *m, vae_workspace *ws, const float *x,
                                const float *y, int B)
{
    const vae_arch_ops *ops = ops_of(&m->cfg);
    return (ws->rowwise ? ops->encode_rowwise : ops->encode)(m, ws->scratch, x, y, B);
}

static const float *arch_decode_logits(const vae_model *m, vae_workspace *ws, const float *z,
                                       const float *y, int B)
{
    const vae_arch_ops *ops = ops_of(&m->cfg);
    return (ws->rowwise ? ops->decode_logits_rowwise : ops->decode_logits)(m, ws->scratch, z, y,
                                                                           B);
}

/* labels (n) are what m takes: one in 0..n_classes-1 per image for a
 * conditional model, none (NULL) for another. */
static int labels_fit(const vae_model *m, const int *labels, int n)
{
    int K = m->cfg.n_classes;
    if (!K || !labels) return !K && !labels;
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= K) return 0;
    return 1;
}

/* y (n, K): the one-hot rows of labels (NULL, and y untouched, when none);
 * returns y or NULL. labels[i / repeat] goes into row i. */
static const float *onehot_rows(float *y, const int *labels, int n, int repeat, int K)
{
    if (!labels) return NULL;
    memset(y, 0, sizeof(float) * (size_t)n * (size_t)K);
    for (int i = 0; i < n; i++) y[(size_t)i * K + labels[i / repeat]] = 1.0f;
    return y;
}

vae_status vae_encode(const vae_model *m, vae_workspace *ws, const float *x, int B, float *mu,
                      float *logvar)
{
    return vae_encode_cond(m, ws, x, NULL, B, mu, logvar);
}

vae_status vae_encode_cond(const vae_model *m, vae_workspace *ws, const float *x,
                           const int *labels, int B, float *mu, float *logvar)
{
    if (B < 1 || B > ws->max_batch || !labels_fit(m, labels, B)) return VAE_ERR_ARG;
    int Z = m->cfg.latent;
    const float *y = onehot_rows(ws->y, labels, B, 1, m->cfg.n_classes);
    const float *heads = arch_encode(m, ws, x, y, B);
    for (int r = 0; r < B; r++) {
        memcpy(mu + (size_t)r * Z, heads + (size_t)r * 2 * Z, sizeof(float) * Z);
        memcpy(logvar + (size_t)r * Z, heads + (size_t)r * 2 * Z + Z, sizeof(float) * Z);
    }
    return VAE_OK;
}

vae_status vae_decode(const vae_model *m, vae_workspace *ws, const float *z, int B, float *x_mean)
{
    return vae_decode_cond(m, ws, z, NULL, B, x_mean);
}

vae_status vae_decode_cond(const vae_model *m, vae_workspace *ws, const float *z,
                           const int *labels, int B, float *x_mean)
{
    if (B < 1 || B > ws->max_batch || !labels_fit(m, labels, B)) return VAE_ERR_ARG;
    const float *y = onehot_rows(ws->y, labels, B, 1, m->cfg.n_classes);
    const float *logits = arch_decode_logits(m, ws, z, y, B);
    vae_loss_output_mean(&m->cfg, logits, B, x_mean);
    return VAE_OK;
}

vae_status vae_decode_mixed(const vae_model *m, vae_workspace *ws, const float *z,
                            const float *label_weights, int B, float *x_mean)
{
    int K = m->cfg.n_classes;
    if (B < 1 || B > ws->max_batch || !K || !label_weights) return VAE_ERR_ARG;
    for (size_t i = 0; i < (size_t)B * (size_t)K; i++)
        if (!isfinite(label_weights[i])) return VAE_ERR_ARG;
    const float *logits = arch_decode_logits(m, ws, z, label_weights, B);
    vae_loss_output_mean(&m->cfg, logits, B, x_mean);
    return VAE_OK;
}

vae_status vae_log_likelihood(const vae_model *m, vae_workspace *ws, const float *x,
                              const float *z, int K, double *ll)
{
    return vae_log_likelihood_cond(m, ws, x, -1, z, K, ll);
}

vae_status vae_log_likelihood_cond(const vae_model *m, vae_workspace *ws, const float *x,
                                   int label, const float *z, int K, double *ll)
{
    const vae_config *c = &m->cfg;
    if (K < 1 || K > ws->max_batch) return VAE_ERR_ARG;
    if ((label >= 0) != vae_config_is_conditional(c) || label >= c->n_classes) return VAE_ERR_ARG;
    /* every latent with the image's one label */
    const float *y = label >= 0 ? onehot_rows(ws->y, &label, K, K, c->n_classes) : NULL;
    int Dout = vae_config_output_dim(c);
    const float *logits = arch_decode_logits(m, ws, z, y, K);
    for (int k = 0; k < K; k++)
        ll[k] = vae_loss_output_log_likelihood(c, logits + (size_t)k * Dout, x);
    return VAE_OK;
}

/* ---------- training ---------- */

/* The state and every buffer it points to are one block, laid out by
 * train_state_layout; only the helper (peer) is allocated apart. */
struct vae_train_state {
    const vae_arch_ops *ops;
    int max_batch;
    size_t n_params;
    float *grads;     /* n_params */
    float *adam_m;    /* n_params */
    float *adam_v;    /* n_params */
    int64_t step;     /* Adam steps taken */
    float *eps;       /* (max_batch * mc_samples, latent) */
    float *xbin;      /* (max_batch, D) binarised input */
    double beta;      /* the last forward's KL weight, for backward */
    float *y;         /* conditional: (max_batch, n_classes) the forward's label rows */
    void *arch;       /* the architecture's activations and scratch */
    struct vae_peer *peer; /* owned; the data-parallel helper, NULL when single */
};

/* Data-parallel training: a helper thread runs the second part of each batch
 * on its own train state (single-threaded products each). Two
 * single-threaded streams keep both cores busier than one two-threaded
 * product on these small matrices, and the element-wise passes run on both
 * cores too. Where the architecture splits its backward pass (the MLP),
 * both threads first run theirs down to every layer's output gradient, meet,
 * and then each writes half the rows of every parameter gradient over the
 * whole batch and takes the Adam step on them (PEER_SPLIT_STEP): each
 * thread's gradient stays in its own cache. Otherwise (the conv) each thread
 * writes the whole gradient of its part of the batch, and each sums the two
 * over half of the parameters as it steps them (PEER_FORWARD_BACKWARD, then
 * PEER_ADAM), reading the other's gradient from the other core. */
enum { PEER_IDLE = 0, PEER_FORWARD_BACKWARD, PEER_ADAM, PEER_SPLIT_STEP, PEER_QUIT };
struct vae_peer {
    vae_train_state *ts;   /* owned; the helper's activations and gradients */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int job;               /* PEER_*; set by the caller, reset to IDLE when done; written
                            * under mu, read atomically (the spin in peer_await) */
    /* the job */
    vae_model *m;
    const float *x, *eps;
    const int *labels;
    int B;
    vae_stats stats;
    vae_status rc;
    size_t lo, hi;         /* parameter range of PEER_ADAM */
    float step_size, inv_sqrt_bc2;
    /* PEER_SPLIT_STEP: ready[0] (the caller) and ready[1] (the helper) are
     * set to gen once that thread's output gradients (or its failure, in
     * rc and caller_rc) are there; written under mu, read atomically */
    int gen, ready[2];
    vae_status caller_rc;
};

float *vae_train_grads(vae_train_state *ts) { return ts->grads; }
float *vae_train_adam_m(vae_train_state *ts) { return ts->adam_m; }
float *vae_train_adam_v(vae_train_state *ts) { return ts->adam_v; }
int64_t *vae_train_adam_step(vae_train_state *ts) { return &ts->step; }

/* Everything a training state holds, in one block; NULL while sizing. */
static vae_train_state *train_state_layout(const vae_config *c, size_t n_params, int max_batch,
                                           vae_layout *l)
{
    vae_train_state sizing, *ts = vae_layout_take(l, 1, sizeof *ts);
    vae_train_state *s = ts ? ts : &sizing;
    memset(s, 0, sizeof *s);
    s->ops = ops_of(c);
    s->max_batch = max_batch;
    s->n_params = n_params;
    VAE_LAYOUT_TAKE(l, s->grads, n_params);
    VAE_LAYOUT_TAKE(l, s->adam_m, n_params);
    VAE_LAYOUT_TAKE(l, s->adam_v, n_params);
    VAE_LAYOUT_TAKE(l, s->eps, (size_t)max_batch * c->mc_samples * c->latent);
    VAE_LAYOUT_TAKE(l, s->xbin, (size_t)max_batch * vae_config_input_dim(c));
    if (vae_config_is_conditional(c))
        VAE_LAYOUT_TAKE(l, s->y, (size_t)max_batch * (size_t)c->n_classes);
    s->arch = s->ops->train_layout(c, max_batch, l);
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
    return train_state_layout(&m->cfg, m->n_params, max_batch, &l); /* it is the block */
}

static void peer_free(struct vae_peer *p);

void vae_train_state_free(vae_train_state *ts)
{
    if (!ts) return;
    peer_free(ts->peer);
    free(ts); /* the block */
}

vae_status vae_train_state_use_naive(vae_train_state *ts, int on)
{
    if (!ts->ops->use_naive) return VAE_ERR_ARG;
    ts->ops->use_naive(ts->arch, on);
    if (ts->peer) ts->ops->use_naive(ts->peer->ts->arch, on);
    return VAE_OK;
}

vae_status vae_forward_loss(const vae_model *m, vae_train_state *ts, const float *x,
                            const float *eps, int B, vae_stats *stats)
{
    return vae_forward_loss_cond(m, ts, x, NULL, eps, B, stats);
}

vae_status vae_forward_loss_cond(const vae_model *m, vae_train_state *ts, const float *x,
                                 const int *labels, const float *eps, int B, vae_stats *stats)
{
    if (B < 1 || B > ts->max_batch || !labels_fit(m, labels, B)) return VAE_ERR_ARG;
    const vae_config *c = &m->cfg;
    if (eps != ts->eps) memcpy(ts->eps, eps, sizeof(float) * (size_t)B * c->mc_samples * c->latent);
    ts->beta = vae_loss_beta(c, ts->step);
    vae_loss_terms terms;
    const float *y = onehot_rows(ts->y, labels, B, 1, c->n_classes);
    ts->ops->forward(m, ts->arch, x, y, ts->eps, B, &terms);
    return vae_loss_stats(stats, &terms, ts->beta, B);
}

vae_status vae_backward(const vae_model *m, vae_train_state *ts)
{
    ts->ops->backward(m, ts->arch, ts->beta, ts->grads);
    return VAE_OK;
}

void vae_zero_grad(vae_train_state *ts) { memset(ts->grads, 0, sizeof(float) * ts->n_params); }

/* A step's gradient from nothing: written by the architecture where it
 * can, else zeroed and added into. */
static void step_backward(const vae_model *m, vae_train_state *ts)
{
    if (ts->ops->backward_params) {
        ts->ops->backward_inputs(m, ts->arch, ts->beta);
        ts->ops->backward_params(m, &ts->arch, 1, 0, 1, ts->grads, 0);
        return;
    }
    vae_zero_grad(ts);
    vae_backward(m, ts);
}

double *vae_train_batch_kl(vae_train_state *ts) { return ts->ops->batch_kl(ts->arch); }

/* Adam's bias corrections after step steps, as the kernel takes them. */
static void adam_corrections(const vae_config *c, int64_t step, float *step_size,
                             float *inv_sqrt_bc2)
{
    double bc1 = 1.0 - pow(c->beta1, (double)step), bc2 = 1.0 - pow(c->beta2, (double)step);
    *step_size = (float)(c->lr / bc1);
    *inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
}

void vae_adam_update(vae_model *m, vae_train_state *ts)
{
    const vae_config *c = &m->cfg;
    float *g = ts->grads;
    size_t n = m->n_params;
    if (c->clip_grad > 0.0f) {
        /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1 */
        double sq = 0.0;
        for (size_t i = 0; i < n; i++) sq += (double)g[i] * g[i];
        double norm = sqrt(sq), coef = c->clip_grad / (norm + 1e-6);
        if (coef < 1.0)
            for (size_t i = 0; i < n; i++) g[i] *= (float)coef;
    }
    float step_size, inv_sqrt_bc2;
    adam_corrections(c, ++ts->step, &step_size, &inv_sqrt_bc2);
    /* PyTorch Adam: L2 weight decay added to the gradient (not AdamW). */
    vae_kernels_adam(m->params, g, NULL, ts->adam_m, ts->adam_v, n, c->beta1, c->beta2, c->eps,
                     c->weight_decay, step_size, inv_sqrt_bc2);
}

/* Adam on parameters [lo, hi) with the gradient summed over both halves of
 * the batch (ts's and the peer's), in one pass. */
static void adam_slice(vae_model *m, vae_train_state *ts, const float *peer_grads, size_t lo,
                       size_t hi, float step_size, float inv_sqrt_bc2)
{
    const vae_config *c = &m->cfg;
    vae_kernels_adam(m->params + lo, ts->grads + lo, peer_grads + lo, ts->adam_m + lo,
                     ts->adam_v + lo, hi - lo, c->beta1, c->beta2, c->eps, c->weight_decay,
                     step_size, inv_sqrt_bc2);
}

/* How long a thread spins on one of p's flags (job, ready) before it sleeps
 * on the condition variable. The two halves of a step end within
 * microseconds of each other, and the helper's next job comes after the
 * caller's share of Adam and the next batch's copy (tens of microseconds): a
 * sleep and its wake-up there cost more than the wait itself, several times
 * a step. */
#define PEER_SPIN_S 100e-6

static int flag_of(const int *flag) { return __atomic_load_n(flag, __ATOMIC_ACQUIRE); }

/* Until (*flag == value) == equal; returns the flag's value then. */
static int peer_await(struct vae_peer *p, const int *flag, int value, int equal)
{
    int v = flag_of(flag);
    if ((v == value) == equal) return v;
    for (double until = util_mono_s() + PEER_SPIN_S; util_mono_s() < until;) {
        for (int i = 0; i < 32; i++) {
#if defined(__x86_64__)
            __builtin_ia32_pause();
#endif
            if (((v = flag_of(flag)) == value) == equal) return v;
        }
    }
    pthread_mutex_lock(&p->mu);
    while (((v = *flag) == value) != equal) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return v;
}

static void peer_set(struct vae_peer *p, int *flag, int value)
{
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(flag, value, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Adam on part `part` of `parts` of every tensor's rows (vae_arch_part_rows,
 * as backward_params wrote them into grads). */
static void adam_part(vae_model *m, vae_train_state *ts, const float *grads, int part, int parts,
                      float step_size, float inv_sqrt_bc2)
{
    const vae_config *c = &m->cfg;
    for (int t = 0; t < m->n_tensors; t++) {
        const vae_tensor *T = &m->tensors[t];
        int r0, r1;
        vae_arch_part_rows(T->shape[0], part, parts, &r0, &r1);
        size_t cols = T->size / (size_t)T->shape[0];
        size_t lo = T->offset + (size_t)r0 * cols, n = (size_t)(r1 - r0) * cols;
        vae_kernels_adam(m->params + lo, grads + lo, NULL, ts->adam_m + lo, ts->adam_v + lo, n,
                         c->beta1, c->beta2, c->eps, c->weight_decay, step_size, inv_sqrt_bc2);
    }
}

/* The helper's side of PEER_SPLIT_STEP (train_step_split). */
static void peer_split_step(vae_train_state *owner, struct vae_peer *p)
{
    vae_train_state *ts = p->ts;
    p->rc = vae_forward_loss_cond(p->m, ts, p->x, p->labels, p->eps, p->B, &p->stats);
    if (p->rc == VAE_OK) ts->ops->backward_inputs(p->m, ts->arch, ts->beta);
    peer_set(p, &p->ready[1], p->gen);
    peer_await(p, &p->ready[0], p->gen, 1);
    if (p->rc != VAE_OK || p->caller_rc != VAE_OK) return;
    void *sts[2] = {owner->arch, ts->arch};
    ts->ops->backward_params(p->m, sts, 2, 1, 2, ts->grads, 0);
    adam_part(p->m, owner, ts->grads, 1, 2, p->step_size, p->inv_sqrt_bc2);
}

static void *peer_main(void *arg)
{
    vae_train_state *owner = arg;
    struct vae_peer *p = owner->peer;
    for (;;) {
        int job = peer_await(p, &p->job, PEER_IDLE, 0);
        if (job == PEER_QUIT) return NULL;
        p->ts->step = owner->step; /* the same KL warm-up point */
        if (job == PEER_SPLIT_STEP) {
            peer_split_step(owner, p);
        } else if (job == PEER_FORWARD_BACKWARD) {
            p->rc = vae_forward_loss_cond(p->m, p->ts, p->x, p->labels, p->eps, p->B, &p->stats);
            if (p->rc == VAE_OK) step_backward(p->m, p->ts);
        } else {
            adam_slice(p->m, owner, p->ts->grads, p->lo, p->hi, p->step_size, p->inv_sqrt_bc2);
        }
        peer_set(p, &p->job, PEER_IDLE);
    }
}

static void peer_post(struct vae_peer *p, int job) { peer_set(p, &p->job, job); }

static void peer_wait(struct vae_peer *p) { peer_await(p, &p->job, PEER_IDLE, 1); }

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

vae_status vae_train_state_set_threads(vae_train_state *ts, const vae_model *m, int threads,
                                       char *err, size_t errlen)
{
    if (threads <= 1) {
        peer_free(ts->peer);
        ts->peer = NULL;
        return VAE_OK;
    }
    if (ts->peer) return VAE_OK;
    struct vae_peer *p = calloc(1, sizeof *p); /* owned by ts from here on */
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

/* The caller's side of PEER_SPLIT_STEP: forward and backward_inputs on
 * both halves of the batch, then each thread its half of the rows of every
 * gradient and of Adam. */
static vae_status train_step_split(vae_model *m, vae_train_state *ts, const float *x,
                                   const int *labels, int B0, vae_stats *stats)
{
    struct vae_peer *p = ts->peer;
    float step_size, inv_sqrt_bc2;
    adam_corrections(&m->cfg, ts->step + 1, &step_size, &inv_sqrt_bc2);
    p->step_size = step_size;
    p->inv_sqrt_bc2 = inv_sqrt_bc2;
    p->gen++;
    peer_post(p, PEER_SPLIT_STEP);
    vae_status rc = vae_forward_loss_cond(m, ts, x, labels, ts->eps, B0, stats);
    if (rc == VAE_OK) ts->ops->backward_inputs(m, ts->arch, ts->beta);
    p->caller_rc = rc;
    peer_set(p, &p->ready[0], p->gen);
    peer_await(p, &p->ready[1], p->gen, 1);
    if (rc == VAE_OK && p->rc == VAE_OK) {
        void *sts[2] = {ts->arch, p->ts->arch};
        ts->ops->backward_params(m, sts, 2, 0, 2, ts->grads, 0);
        adam_part(m, ts, ts->grads, 0, 2, step_size, inv_sqrt_bc2);
    }
    peer_wait(p);
    if (rc == VAE_OK && p->rc == VAE_OK) ts->step++;
    return rc;
}

/* Forward, backward and Adam with the batch split between this thread and
 * the peer. Free bits couple the whole batch through its per-dimension KL,
 * and clipping needs the whole gradient's norm: those stay single-threaded. */
static vae_status train_step_parallel(vae_model *m, vae_train_state *ts, const float *x,
                                      const int *labels, int B, vae_stats *stats)
{
    const vae_config *c = &m->cfg;
    struct vae_peer *p = ts->peer;
    int D = vae_config_input_dim(c), LZ = c->mc_samples * c->latent;
    int B0 = B / 2, B1 = B - B0;
    p->m = m;
    p->x = x + (size_t)B0 * D;
    p->eps = ts->eps + (size_t)B0 * LZ;
    p->labels = labels ? labels + B0 : NULL;
    p->B = B1;
    vae_status rc;
    if (ts->ops->backward_params) {
        rc = train_step_split(m, ts, x, labels, B0, stats);
    } else {
        peer_post(p, PEER_FORWARD_BACKWARD);
        rc = vae_forward_loss_cond(m, ts, x, labels, ts->eps, B0, stats);
        if (rc == VAE_OK) step_backward(m, ts);
        peer_wait(p);
    }
    if (rc) return rc;
    if (p->rc) {
        *stats = p->stats;
        return p->rc;
    }
    stats->loss += p->stats.loss;
    stats->recon += p->stats.recon;
    stats->kl += p->stats.kl;
    stats->batch = B;
    if (ts->ops->backward_params) return VAE_OK; /* Adam ran in train_step_split */

    float step_size, inv_sqrt_bc2;
    adam_corrections(c, ++ts->step, &step_size, &inv_sqrt_bc2);
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

vae_status vae_train_step(vae_model *m, vae_train_state *ts, const float *x, int B, rng_state *rng,
                          vae_stats *stats)
{
    return vae_train_step_cond(m, ts, x, NULL, B, rng, stats);
}

vae_status vae_train_step_cond(vae_model *m, vae_train_state *ts, const float *x,
                               const int *labels, int B, rng_state *rng, vae_stats *stats)
{
    const vae_config *c = &m->cfg;
    if (B < 1 || B > ts->max_batch || !labels_fit(m, labels, B)) return VAE_ERR_ARG;
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
        return train_step_parallel(m, ts, xin, labels, B, stats);
    vae_status rc = vae_forward_loss_cond(m, ts, xin, labels, ts->eps, B, stats);
    if (rc) return rc;
    step_backward(m, ts);
    vae_adam_update(m, ts);
    return VAE_OK;
}
