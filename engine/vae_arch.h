/* vae_arch: private to the engine's VAE files, what the facade (vae.c) and
 * the architectures (vae_mlp.c, vae_conv.c) share. Nothing outside
 * engine/vae*.c includes it.
 *
 * Each architecture fills one vae_arch_ops table; the facade owns the model,
 * the workspace, the training state with its gradients and Adam moments, and
 * the helper thread, and reaches the architecture only through the table:
 *
 *     const vae_arch_ops *ops = ops_of(&m->cfg);              // vae.c's lookup
 *     const float *heads = ops->encode(m, scratch, x, B);   // (B, 2 latent)
 *
 * The architecture owns nothing: its scratch and its training activations
 * are carved from blocks the facade allocates (below) and frees.
 *
 * A state that lives in one allocation is described once, by a layout
 * function that takes its buffers from a vae_layout in order:
 *
 *     vae_layout l = {NULL, 0};
 *     state_layout(cfg, max_batch, &l);           // sizing: l.used is the bytes
 *     unsigned char *block = calloc(1, l.used);   // owned by the caller
 *     vae_layout at = {block, 0};
 *     my_state *s = state_layout(cfg, max_batch, &at);
 *
 * The same function answers "how much memory" (vae_config_train_state_bytes)
 * and lays the memory out, so the estimate cannot drift from the allocation
 * (llm.c's malloc_and_point_activations, with the size table and the
 * pointing in one pass).
 */
#ifndef VAE_ARCH_H
#define VAE_ARCH_H

#include <stddef.h>
#include <string.h>

#include "engine/vae_config.h"
#include "engine/vae_loss.h"

/* Each buffer's offset in its block is a multiple of 64 bytes, so every
 * buffer is as aligned as the block itself (malloc's 16 bytes) and a layout
 * change cannot shift one buffer's alignment against another's. */
#define VAE_LAYOUT_ALIGN 64

typedef struct {
    unsigned char *base; /* borrowed; NULL while sizing */
    size_t used;         /* bytes taken so far */
} vae_layout;

/* The next n items of size bytes each: a pointer into base, or NULL while
 * sizing. */
static inline void *vae_layout_take(vae_layout *l, size_t n, size_t size)
{
    size_t at = (l->used + VAE_LAYOUT_ALIGN - 1) & ~(size_t)(VAE_LAYOUT_ALIGN - 1);
    l->used = at + n * size;
    return l->base ? l->base + at : NULL;
}

/* ptr = the next n elements of *ptr's type. */
#define VAE_LAYOUT_TAKE(l, ptr, n) ((ptr) = vae_layout_take((l), (n), sizeof *(ptr)))

/* ---------- the architectures' table ---------- */

typedef struct {
    /* The architecture's own checks, once vae_config_validate_common passed;
     * NULL when there are none. */
    vae_status (*validate)(const vae_config *c, char *err, size_t errlen);
    /* Appends the tensors to m's table (m->cfg set, the table empty); no
     * allocation. VAE_ERR_ARG when the table would overflow. */
    vae_status (*build_tensors)(vae_model *m);

    /* Inference scratch, in floats, for batches up to max_batch. */
    size_t (*workspace_floats)(const vae_config *c, int max_batch);
    /* x: (B, D) -> the heads (B, 2 latent), mu then logvar per row,
     * somewhere in scratch; B is within the scratch's batch. y (B, K) is a
     * conditional model's label input, a row of K weights per image (the
     * one-hot of its label, or a mix of two for a walk between labels),
     * NULL for another; likewise below. */
    const float *(*encode)(const vae_model *m, float *scratch, const float *x, const float *y,
                           int B);
    /* z: (B, latent) -> the output logits (B, Dout), somewhere in scratch;
     * y: a row per row of z. */
    float *(*decode_logits)(const vae_model *m, float *scratch, const float *z, const float *y,
                            int B);
    /* The same two with every row's bits its own whatever B (products on
     * gemm_nt_rowwise), for a workspace set so
     * (vae_workspace_set_rows_independent); NULL when the architecture has
     * none (the conv). */
    const float *(*encode_rowwise)(const vae_model *m, float *scratch, const float *x,
                                   const float *y, int B);
    float *(*decode_logits_rowwise)(const vae_model *m, float *scratch, const float *z,
                                    const float *y, int B);

    /* The training activations and scratch for batches up to max_batch, laid
     * out in l; returns the state (NULL while sizing). */
    void *(*train_layout)(const vae_config *c, int max_batch, vae_layout *l);
    /* Forward pass and loss terms of x: (B, D) with eps: (B*mc, latent) and
     * y (B, K: a row per image, which its mc samples share); x and eps are
     * borrowed until the backward pass, y only here. */
    void (*forward)(const vae_model *m, void *st, const float *x, const float *y,
                    const float *eps, int B, vae_loss_terms *terms);
    /* The gradient of the last forward's recon + beta * kl_opt, added into
     * grads (n_params floats, parallel to m->params). */
    void (*backward)(const vae_model *m, void *st, double beta, float *grads);
    /* The backward pass in two halves, for a step whose batch is split
     * between threads; NULL when the architecture has them not (the conv).
     * backward_inputs: every layer's output gradient of st's rows, kept in
     * st, no parameter gradient. backward_params, after backward_inputs on
     * every one of sts[0 .. n): part `part` of `parts` of every parameter
     * gradient (rows vae_arch_part_rows of each tensor) over the rows of all
     * n states, written into grads (added with accumulate 1). With the rows
     * split, each thread writes and then Adam-steps its own rows of every
     * tensor, and no thread reads another's gradient. */
    void (*backward_inputs)(const vae_model *m, void *st, double beta);
    void (*backward_params)(const vae_model *m, void *const *sts, int n, int part, int parts,
                            float *grads, int accumulate);
    /* Tests: the naive reference kernels instead of the fast ones; NULL when
     * the architecture has one set of kernels. */
    void (*use_naive)(void *st, int on);
    /* The last forward's KL per latent dimension summed over its batch
     * (latent doubles, in st), which the backward reads for free bits. */
    double *(*batch_kl)(void *st);
} vae_arch_ops;

/* The tables; only vae.c picks one (the architectures do not know each
 * other). */
extern const vae_arch_ops vae_mlp_ops;  /* vae_mlp.c */
extern const vae_arch_ops vae_conv_ops; /* vae_conv.c */

/* Part `part` of `parts` of a tensor's rows (its first dimension):
 * [*r0, *r1). */
static inline void vae_arch_part_rows(int rows, int part, int parts, int *r0, int *r1)
{
    *r0 = (int)((long)rows * part / parts);
    *r1 = (int)((long)rows * (part + 1) / parts);
}

/* Tensor ti's parameters, and its slice of a gradient array. */
static inline const float *vae_arch_param(const vae_model *m, int ti)
{
    return m->params + m->tensors[ti].offset;
}
static inline float *vae_arch_grad(const vae_model *m, float *grads, int ti)
{
    return grads + m->tensors[ti].offset;
}

/* dst (rows, width + K): row r of src (rows, width) followed by row
 * r / repeat of y (., K), the input a conditional model's first Linear
 * layer takes (torch.cat([x, F.one_hot(y, K)], 1) for one-hot rows). */
static inline void vae_arch_concat_labels(float *dst, const float *src, int rows, int width,
                                          const float *y, int repeat, int K)
{
    for (int r = 0; r < rows; r++) {
        float *d = dst + (size_t)r * (width + K);
        memcpy(d, src + (size_t)r * width, sizeof(float) * (size_t)width);
        memcpy(d + width, y + (size_t)(r / repeat) * K, sizeof(float) * (size_t)K);
    }
}

/* The first width columns of src (rows, width + K) into dst (rows, width):
 * the gradient of a concatenated input without its one-hot part. */
static inline void vae_arch_drop_onehot(float *dst, const float *src, int rows, int width, int K)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * width, src + (size_t)r * (width + K), sizeof(float) * (size_t)width);
}

#endif
