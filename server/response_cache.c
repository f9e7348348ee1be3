/* response_cache: a byte-bounded LRU map from keys to immutable bodies.
 *
 * Entries hang in a chained hash table (FNV-1a of the key; the table doubles
 * when it holds as many entries as buckets) and in one doubly linked list
 * from newest to oldest use. Allocation and the last release of evicted
 * bodies happen outside the mutex; under it only pointers move.
 */
#include "server/response_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_BUCKETS 64

typedef struct entry {
    struct entry *hash_next;      /* the next entry of its bucket */
    struct entry *newer, *older;  /* the LRU list */
    response_body *body;          /* the cache's reference */
    size_t cost;                  /* len + key length + RESPONSE_CACHE_ENTRY_OVERHEAD */
    uint64_t hash;
    char key[];                   /* NUL-terminated */
} entry;

struct response_cache {
    pthread_mutex_t mu;
    size_t budget;                /* bytes; 0 = store nothing */
    size_t bytes;                 /* sum of the entries' cost */
    entry **buckets;              /* owned: n_buckets chain heads */
    size_t n_buckets, n_entries;
    entry *newest, *oldest;       /* every entry is owned through this list */
    uint64_t hits, misses, evictions;
};

/* ---- bodies -------------------------------------------------------------- */

/* A body and its reference count, which only this file sees; the public
 * part comes first, so a response_body * is the box's address. */
typedef struct {
    response_body body;
    int refs; /* atomic */
} body_box;

static body_box *box_of(response_body *b)
{
    return (body_box *)b;
}

response_body *response_body_new(void *bytes, size_t len, const char *content_type)
{
    if (!content_type || strlen(content_type) >= RESPONSE_CACHE_CONTENT_TYPE_MAX) {
        free(bytes);
        return NULL;
    }
    body_box *box = malloc(sizeof *box); /* owned by its references: the last release frees it */
    if (!box) {
        free(bytes);
        return NULL;
    }
    box->body.bytes = bytes;
    box->body.len = len;
    strcpy(box->body.content_type, content_type);
    box->refs = 1;
    return &box->body;
}

response_body *response_body_ref(response_body *b)
{
    __atomic_add_fetch(&box_of(b)->refs, 1, __ATOMIC_RELAXED);
    return b;
}

void response_body_release(response_body *b)
{
    if (!b || __atomic_sub_fetch(&box_of(b)->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free((void *)b->bytes);
    free(box_of(b));
}

int response_body_refs(const response_body *b)
{
    return __atomic_load_n(&box_of((response_body *)b)->refs, __ATOMIC_ACQUIRE);
}

void response_body_release_cb(void *cls) { response_body_release(cls); }

/* ---- the map ------------------------------------------------------------- */

static uint64_t key_hash(const char *key)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a, 64 bits */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}

response_cache *response_cache_new(size_t max_bytes)
{
    response_cache *c = calloc(1, sizeof *c); /* owned by the caller: response_cache_free */
    if (!c)
        return NULL;
    c->buckets = calloc(INITIAL_BUCKETS, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->n_buckets = INITIAL_BUCKETS;
    c->budget = max_bytes;
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void response_cache_free(response_cache *c)
{
    if (!c)
        return;
    for (entry *e = c->newest, *next; e; e = next) {
        next = e->older;
        response_body_release(e->body);
        free(e);
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static entry *find_locked(response_cache *c, const char *key, uint64_t hash)
{
    for (entry *e = c->buckets[hash % c->n_buckets]; e; e = e->hash_next)
        if (e->hash == hash && !strcmp(e->key, key))
            return e;
    return NULL;
}

static void unlink_lru_locked(response_cache *c, entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        c->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        c->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void push_newest_locked(response_cache *c, entry *e)
{
    e->newer = NULL;
    e->older = c->newest;
    if (c->newest)
        c->newest->newer = e;
    else
        c->oldest = e;
    c->newest = e;
}

static void unlink_hash_locked(response_cache *c, entry *e)
{
    entry **p = &c->buckets[e->hash % c->n_buckets];
    while (*p != e)
        p = &(*p)->hash_next;
    *p = e->hash_next;
}

/* Doubles the table; on allocation failure the chains just grow longer. */
static void grow_locked(response_cache *c)
{
    size_t n = c->n_buckets * 2;
    entry **grown = calloc(n, sizeof *grown); /* owned by c once swapped in */
    if (!grown)
        return;
    for (size_t i = 0; i < c->n_buckets; i++)
        for (entry *e = c->buckets[i], *next; e; e = next) {
            next = e->hash_next;
            e->hash_next = grown[e->hash % n];
            grown[e->hash % n] = e;
        }
    free(c->buckets);
    c->buckets = grown;
    c->n_buckets = n;
}

response_cache_status response_cache_get(response_cache *c, const char *key, response_body **out)
{
    *out = NULL;
    uint64_t hash = key_hash(key);
    pthread_mutex_lock(&c->mu);
    entry *e = find_locked(c, key, hash);
    if (e) {
        unlink_lru_locked(c, e);
        push_newest_locked(c, e);
        *out = response_body_ref(e->body);
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return e ? RESPONSE_CACHE_OK : RESPONSE_CACHE_MISS;
}

response_cache_status response_cache_put(response_cache *c, const char *key, response_body *body)
{
    if (!key || !*key || !body)
        return RESPONSE_CACHE_ERR_ARG;
    size_t key_len = strlen(key);
    /* Each term is checked, so the sum cannot wrap. */
    size_t limit = c->budget / RESPONSE_CACHE_MAX_FRACTION;
    if (body->len > limit || key_len > limit ||
        body->len + key_len + RESPONSE_CACHE_ENTRY_OVERHEAD > limit)
        return RESPONSE_CACHE_ERR_TOO_LARGE;
    entry *fresh = malloc(sizeof *fresh + key_len + 1); /* owned by c once linked, else freed */
    if (!fresh)
        return RESPONSE_CACHE_ERR_NOMEM;
    memcpy(fresh->key, key, key_len + 1);
    fresh->hash = key_hash(key);
    fresh->cost = body->len + key_len + RESPONSE_CACHE_ENTRY_OVERHEAD;
    fresh->body = NULL;

    entry *evicted = NULL; /* unlinked under the lock, freed after it */
    pthread_mutex_lock(&c->mu);
    entry *e = find_locked(c, key, fresh->hash);
    if (e) {
        unlink_lru_locked(c, e);
        push_newest_locked(c, e);
    } else {
        while (c->oldest && c->bytes + fresh->cost > c->budget) {
            entry *victim = c->oldest;
            unlink_lru_locked(c, victim);
            unlink_hash_locked(c, victim);
            c->bytes -= victim->cost;
            c->n_entries--;
            c->evictions++;
            victim->older = evicted;
            evicted = victim;
        }
        if (c->n_entries + 1 > c->n_buckets)
            grow_locked(c);
        fresh->body = response_body_ref(body);
        fresh->hash_next = c->buckets[fresh->hash % c->n_buckets];
        c->buckets[fresh->hash % c->n_buckets] = fresh;
        push_newest_locked(c, fresh);
        c->bytes += fresh->cost;
        c->n_entries++;
        fresh = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    free(fresh); /* the key was already there */
    while (evicted) {
        entry *next = evicted->older;
        response_body_release(evicted->body);
        free(evicted);
        evicted = next;
    }
    return RESPONSE_CACHE_OK;
}

void response_cache_get_stats(response_cache *c, response_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->bytes = c->bytes;
    out->entries = c->n_entries;
    out->evictions = c->evictions;
    pthread_mutex_unlock(&c->mu);
}
