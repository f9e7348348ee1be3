/* model_cache: loaded checkpoints in memory, shared by request threads.
 *
 *     model_handle *h;
 *     registry_checkpoint_info info;                       // what the caller's names resolved to
 *     if (model_cache_acquire(cache, reg, model, version, &h, &info, err, sizeof err)) ...
 *     vae_decode(&h->model, ws, z, n, x);      // h stays valid until released
 *     model_cache_release(cache, h);
 *
 * Entries are keyed by sha256, reference-counted, and evicted least recently
 * used when their bytes exceed the budget; an entry is freed only when its
 * last holder releases it, so eviction never pulls a model from under a
 * request. The same bytes stored under two names are one entry: a handle
 * knows its bytes, not a name, and each caller reports the name and version
 * it asked for (info). A checkpoint loads once however many requests want it
 * at the same time (the others wait for that load), and the entry just
 * acquired is never the one evicted, so a model larger than the whole budget
 * stays loaded (alone) instead of loading again on every request.
 */
#ifndef MODEL_CACHE_H
#define MODEL_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae.h"
#include "server/registry.h"

typedef enum {
    MODEL_CACHE_OK = 0,
    MODEL_CACHE_ERR_NO_MODEL,   /* nothing was named and no default model resolves */
    MODEL_CACHE_ERR_NOT_FOUND,  /* the model or version named is not in the registry */
    MODEL_CACHE_ERR_LOAD,       /* the stored checkpoint did not load */
    MODEL_CACHE_ERR_DB,
    MODEL_CACHE_ERR_NOMEM
} model_cache_status;

typedef struct model_cache model_cache;

/* What a holder reads; the cache's bookkeeping (holders, LRU clock,
 * eviction) lives beside it inside model_cache.c. */
typedef struct {
    vae_model model;                /* read-only while held */
    char sha256[65];                /* the bytes it was loaded from */
    size_t bytes;                   /* what it counts against the budget */
} model_handle;

/* What a loaded model m counts against the budget (its parameters and the
 * cache's entry); model_handle.bytes and model_cache_bytes add these up. */
size_t model_cache_entry_bytes(const vae_model *m);

model_cache *model_cache_new(size_t budget_bytes);
void model_cache_free(model_cache *c);
/* The checkpoint (model, version_or_alias) resolves to (NULL, NULL: the
 * default model, latest), loaded on first use (or waiting for the load
 * another thread started): MODEL_CACHE_OK with *out (release it) and *info
 * (may be NULL: the model name, version and sha256 the names resolved to),
 * else a status with err and *out NULL. May block for a load: not on a
 * polling thread (see model_cache_acquire_loaded). */
model_cache_status model_cache_acquire(model_cache *c, registry *r, const char *model,
                                       const char *version_or_alias, model_handle **out,
                                       registry_checkpoint_info *info, char *err, size_t errlen);
/* The same only when it costs nothing: the resolution is known without the
 * registry (model_cache_peek_resolved) and the model is loaded. 1 with *out
 * (release it) and *info, else 0 (the caller takes the slow way). Never
 * blocks on a load or the registry: for polling threads. */
int model_cache_acquire_loaded(model_cache *c, registry *r, const char *model,
                               const char *version_or_alias, model_handle **out,
                               registry_checkpoint_info *info);
/* Checkpoints loaded since the cache was made (each load of bytes counts
 * once, however many requests waited for it). */
uint64_t model_cache_loads(model_cache *c);
void model_cache_release(model_cache *c, model_handle *h);
/* What (model, version_or_alias) resolves to, without touching the registry
 * or loading anything: 1 with *out when an acquire resolved it while the
 * registry's generation was the current one (so it is still true), else 0.
 * Cheap enough for a polling thread. */
int model_cache_peek_resolved(model_cache *c, registry *r, const char *model,
                              const char *version_or_alias, registry_checkpoint_info *out);
/* Drops the entry of these bytes (after a DELETE): freed now when nobody
 * holds it, else on its last release. A later acquire loads it again. */
void model_cache_forget(model_cache *c, const char *sha256);
size_t model_cache_bytes(model_cache *c);
int model_cache_count(model_cache *c);
/* h's holders now, and 1 when h has left the cache (evicted, or forgotten:
 * freed on its last release; a later acquire loads the checkpoint again).
 * For tests and diagnostics; h must still be held, or still cached. */
int model_cache_handle_refs(model_cache *c, const model_handle *h);
int model_cache_handle_evicted(model_cache *c, const model_handle *h);

#endif
