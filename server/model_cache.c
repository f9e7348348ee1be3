/* model_cache: loaded models shared by request threads, keyed by sha256.
 *
 * Loading (reading the blob, parsing and validating the checkpoint) happens
 * outside the lock, so one slow load does not stall requests for models
 * already in memory. The first thread to need a checkpoint puts a loading
 * entry in the array and loads into it; threads that want the same bytes
 * meanwhile wait on c->loaded, then share what it loaded (or, when the load
 * failed and the entry is gone, try themselves).
 *
 * Entries live in one array. An evicted entry leaves the lookup (evicted = 1)
 * but stays in the array until its last holder releases it; bytes counts only
 * entries that are loaded and not evicted. A budget of 0 means no limit. A
 * holder sees the model_handle at the start of its entry; the bookkeeping
 * after it is this file's, under the cache's lock.
 */
#include "server/model_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"

/* What (model, version) resolved to, valid while the registry's generation
 * stays the same: most requests then never touch the registry's lock, which
 * a training job's progress commits (fsync'd) may hold for milliseconds. */
#define RESOLVED_SLOTS 16
typedef struct {
    char model[128], version[64]; /* "" for NULL */
    uint64_t generation;
    registry_checkpoint_info info;
    int used;
} resolved_slot;

typedef struct {
    model_handle handle; /* first: a model_handle * is its entry's address */
    int refs;            /* holders */
    uint64_t last_used;  /* the cache's clock at the last acquire, for LRU */
    int evicted;         /* out of the lookup; freed on the last release */
    int loading;         /* its loader is filling handle.model, outside the lock */
} cache_entry;

static cache_entry *entry_of(const model_handle *h)
{
    return (cache_entry *)h;
}

struct model_cache {
    pthread_mutex_t mu;
    pthread_cond_t loaded;    /* an entry stopped loading */
    uint64_t loads;
    resolved_slot resolved[RESOLVED_SLOTS];
    unsigned next_slot;
    size_t budget;            /* bytes; 0 = unlimited */
    size_t bytes;             /* of entries not evicted */
    uint64_t clock;           /* ticks on every acquire, for LRU */
    cache_entry **entries;    /* owned, with every entry in it */
    int n, cap;
};

size_t model_cache_entry_bytes(const vae_model *m)
{
    return m->n_params * sizeof(float) + sizeof(cache_entry);
}

model_cache *model_cache_new(size_t budget_bytes)
{
    model_cache *c = calloc(1, sizeof *c); /* owned by the caller; model_cache_free */
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->loaded, NULL);
    c->budget = budget_bytes;
    return c;
}

static void entry_free(cache_entry *e)
{
    vae_free(&e->handle.model);
    free(e);
}

/* Handles still held at this point are freed too: release them first. */
void model_cache_free(model_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        entry_free(c->entries[i]);
    free(c->entries);
    pthread_cond_destroy(&c->loaded);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static cache_entry *find_locked(model_cache *c, const char *sha256)
{
    for (int i = 0; i < c->n; i++)
        if (!c->entries[i]->evicted && strcmp(c->entries[i]->handle.sha256, sha256) == 0)
            return c->entries[i];
    return NULL;
}

static void remove_locked(model_cache *c, int i)
{
    c->entries[i] = c->entries[--c->n];
}

/* Evicts least recently used entries until within budget: first those nobody
 * holds (freed now: vae_free is only a free()), then held ones (freed on their
 * last release). Never keep, the entry just acquired: a model larger than the
 * budget then stays, alone, rather than leave at once and load again on the
 * next request. Entries still loading count nothing and stay. */
static void evict_locked(model_cache *c, const cache_entry *keep)
{
    while (c->budget && c->bytes > c->budget) {
        int victim = -1;
        for (int pass = 0; pass < 2 && victim < 0; pass++)
            for (int i = 0; i < c->n; i++) {
                cache_entry *e = c->entries[i];
                if (e->evicted || e->loading || e == keep || (pass == 0 && e->refs > 0))
                    continue;
                if (victim < 0 || e->last_used < c->entries[victim]->last_used)
                    victim = i;
            }
        if (victim < 0)
            break;
        cache_entry *e = c->entries[victim];
        e->evicted = 1;
        c->bytes -= e->handle.bytes;
        if (e->refs == 0) {
            remove_locked(c, victim);
            entry_free(e);
        }
    }
}

void model_cache_forget(model_cache *c, const char *sha256)
{
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++) {
        cache_entry *e = c->entries[i];
        if (e->evicted || strcmp(e->handle.sha256, sha256) != 0)
            continue;
        e->evicted = 1; /* a loading one: its loader keeps it, out of the lookup */
        if (e->loading)
            break;
        c->bytes -= e->handle.bytes;
        if (e->refs == 0) {
            remove_locked(c, i);
            entry_free(e);
        }
        break;
    }
    pthread_mutex_unlock(&c->mu);
}

/* named: a model or version was asked for (so "not there" is NOT_FOUND,
 * not NO_MODEL). */
static model_cache_status map_registry_status(int status, int named)
{
    switch (status) {
    case REGISTRY_ERR_NOT_FOUND:
    case REGISTRY_ERR_ARG:
        return named ? MODEL_CACHE_ERR_NOT_FOUND : MODEL_CACHE_ERR_NO_MODEL;
    case REGISTRY_ERR_NOMEM:
        return MODEL_CACHE_ERR_NOMEM;
    default:
        return MODEL_CACHE_ERR_DB;
    }
}

/* Reads and parses the checkpoint named by info into e, without the cache
 * lock. */
static model_cache_status load(registry *r, const registry_checkpoint_info *info, int named,
                               cache_entry *e, char *err, size_t errlen)
{
    uint8_t *blob = NULL; /* owned here */
    size_t len = 0;
    int status = registry_get_blob(r, info->sha256, &blob, &len, err, errlen);
    if (status)
        return map_registry_status(status, named);
    char why[200] = "";
    status = ckpt_load_mem(&e->handle.model, blob, len, NULL, why, sizeof why);
    free(blob);
    if (status) {
        vae_free(&e->handle.model); /* in case a failed load left anything behind */
        snprintf(err, errlen, "checkpoint %s v%lld does not load: %s", info->model,
                 (long long)info->version, why);
        return status == VAE_ERR_NOMEM ? MODEL_CACHE_ERR_NOMEM : MODEL_CACHE_ERR_LOAD;
    }
    e->handle.bytes = model_cache_entry_bytes(&e->handle.model);
    return MODEL_CACHE_OK;
}

static int key_fits(const char *s, size_t cap) { return !s || strlen(s) < cap; }

/* any_generation: a resolution from before the registry last changed will
 * do (its database cannot be asked now). */
static int find_resolved(model_cache *c, const char *model, const char *version, uint64_t gen,
                         int any_generation, registry_checkpoint_info *out)
{
    int hit = 0;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < RESOLVED_SLOTS && !hit; i++) {
        resolved_slot *s = &c->resolved[i];
        if (s->used && (any_generation || s->generation == gen) &&
            strcmp(s->model, model ? model : "") == 0 &&
            strcmp(s->version, version ? version : "") == 0) {
            *out = s->info;
            hit = 1;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

static int resolve_cached(model_cache *c, registry *r, const char *model, const char *version,
                          registry_checkpoint_info *out)
{
    return find_resolved(c, model, version, registry_generation(r), 0, out);
}

int model_cache_peek_resolved(model_cache *c, registry *r, const char *model,
                              const char *version_or_alias, registry_checkpoint_info *out)
{
    return resolve_cached(c, r, model, version_or_alias, out);
}

static void remember_resolved(model_cache *c, const char *model, const char *version,
                              uint64_t gen, const registry_checkpoint_info *info)
{
    if (!key_fits(model, sizeof c->resolved[0].model) ||
        !key_fits(version, sizeof c->resolved[0].version))
        return;
    pthread_mutex_lock(&c->mu);
    resolved_slot *s = &c->resolved[c->next_slot++ % RESOLVED_SLOTS];
    snprintf(s->model, sizeof s->model, "%s", model ? model : "");
    snprintf(s->version, sizeof s->version, "%s", version ? version : "");
    s->generation = gen;
    s->info = *info;
    s->used = 1;
    pthread_mutex_unlock(&c->mu);
}

/* Takes a reference on e for an acquire. */
static void hold_locked(model_cache *c, cache_entry *e)
{
    e->refs++;
    e->last_used = ++c->clock;
}

/* Room for one more entry in the array: 0, or -1 when out of memory. */
static int reserve_locked(model_cache *c)
{
    if (c->n < c->cap)
        return 0;
    int ncap = c->cap ? c->cap * 2 : 8;
    cache_entry **grown = realloc(c->entries, (size_t)ncap * sizeof *grown);
    if (!grown)
        return -1;
    c->entries = grown;
    c->cap = ncap;
    return 0;
}

static void remove_entry_locked(model_cache *c, const cache_entry *e)
{
    for (int i = 0; i < c->n; i++)
        if (c->entries[i] == e) {
            remove_locked(c, i);
            return;
        }
}

model_cache_status model_cache_acquire(model_cache *c, registry *r, const char *model,
                                       const char *version_or_alias, model_handle **out,
                                       registry_checkpoint_info *resolved, char *err,
                                       size_t errlen)
{
    *out = NULL;
    registry_checkpoint_info info;
    int named = model || version_or_alias;
    int status;
    if (!resolve_cached(c, r, model, version_or_alias, &info)) {
        uint64_t gen = registry_generation(r); /* read before: a write after it only wastes the slot */
        status = registry_resolve(r, model, version_or_alias, &info, err, errlen);
        /* A shared registry's database away: the models loaded go on
         * serving what they last resolved to (a change made meanwhile is
         * seen once it is back). */
        if (status == REGISTRY_ERR_UNAVAILABLE &&
            find_resolved(c, model, version_or_alias, gen, 1, &info))
            status = REGISTRY_OK;
        else if (status)
            return map_registry_status(status, named);
        else
            remember_resolved(c, model, version_or_alias, gen, &info);
    }
    if (resolved)
        *resolved = info;

    pthread_mutex_lock(&c->mu);
    cache_entry *e;
    while ((e = find_locked(c, info.sha256)) && e->loading)
        pthread_cond_wait(&c->loaded, &c->mu); /* one load of these bytes at a time */
    if (e) {
        hold_locked(c, e);
        pthread_mutex_unlock(&c->mu);
        *out = &e->handle;
        return MODEL_CACHE_OK;
    }
    /* This thread loads: a loading entry tells the others to wait. */
    e = reserve_locked(c) ? NULL : calloc(1, sizeof *e); /* owned by the cache once in entries */
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        snprintf(err, errlen, "out of memory caching a model");
        return MODEL_CACHE_ERR_NOMEM;
    }
    snprintf(e->handle.sha256, sizeof e->handle.sha256, "%s", info.sha256);
    e->loading = 1;
    c->entries[c->n++] = e;
    pthread_mutex_unlock(&c->mu);

    model_cache_status rc = load(r, &info, named, e, err, errlen);

    pthread_mutex_lock(&c->mu);
    e->loading = 0;
    c->loads++;
    if (rc != MODEL_CACHE_OK) {
        remove_entry_locked(c, e);
    } else {
        if (!e->evicted) /* else forgotten while loading: served to this caller only */
            c->bytes += e->handle.bytes;
        hold_locked(c, e);
        evict_locked(c, e);
    }
    pthread_cond_broadcast(&c->loaded);
    pthread_mutex_unlock(&c->mu);
    if (rc != MODEL_CACHE_OK) {
        entry_free(e);
        return rc;
    }
    *out = &e->handle;
    return MODEL_CACHE_OK;
}

int model_cache_acquire_loaded(model_cache *c, registry *r, const char *model,
                               const char *version_or_alias, model_handle **out,
                               registry_checkpoint_info *info)
{
    *out = NULL;
    if (!resolve_cached(c, r, model, version_or_alias, info))
        return 0;
    pthread_mutex_lock(&c->mu);
    cache_entry *e = find_locked(c, info->sha256);
    if (e && !e->loading)
        hold_locked(c, e);
    else
        e = NULL;
    pthread_mutex_unlock(&c->mu);
    if (e)
        *out = &e->handle;
    return e != NULL;
}

uint64_t model_cache_loads(model_cache *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->loads;
    pthread_mutex_unlock(&c->mu);
    return n;
}

void model_cache_release(model_cache *c, model_handle *h)
{
    if (!h)
        return;
    cache_entry *e = entry_of(h), *freed = NULL;
    pthread_mutex_lock(&c->mu);
    e->refs--;
    if (e->refs == 0 && e->evicted) {
        for (int i = 0; i < c->n; i++)
            if (c->entries[i] == e) {
                remove_locked(c, i);
                break;
            }
        freed = e;
    }
    pthread_mutex_unlock(&c->mu);
    if (freed)
        entry_free(freed);
}

int model_cache_handle_refs(model_cache *c, const model_handle *h)
{
    pthread_mutex_lock(&c->mu);
    int refs = entry_of(h)->refs;
    pthread_mutex_unlock(&c->mu);
    return refs;
}

int model_cache_handle_evicted(model_cache *c, const model_handle *h)
{
    pthread_mutex_lock(&c->mu);
    int evicted = entry_of(h)->evicted;
    pthread_mutex_unlock(&c->mu);
    return evicted;
}

size_t model_cache_bytes(model_cache *c)
{
    pthread_mutex_lock(&c->mu);
    size_t bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
    return bytes;
}

int model_cache_count(model_cache *c)
{
    pthread_mutex_lock(&c->mu);
    int n = 0;
    for (int i = 0; i < c->n; i++)
        n += !c->entries[i]->evicted && !c->entries[i]->loading;
    pthread_mutex_unlock(&c->mu);
    return n;
}
