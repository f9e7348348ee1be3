/* vae_arch: private to the engine's VAE files, what the facade (vae.c) and
 * the architectures share. Nothing outside engine/vae*.c includes it.
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

/* Every buffer starts on a cache line, as separately malloc'd ones would. */
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

#endif
