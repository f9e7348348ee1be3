/* response_cache: finished response bodies kept in memory, by key, so that a
 * request whose answer is already known is served without computing it again
 * (GET /interpolate: dashboards reload the same strips over and over).
 *
 *     response_cache *rc = response_cache_new(16 << 20);     // owned: response_cache_free
 *     response_body *b;
 *     if (response_cache_get(rc, key, &b) == RESPONSE_CACHE_OK) {
 *         ... send b->bytes, b->len, b->content_type ...    // immutable while held
 *         response_body_release(b);                          // one release per get
 *     } else {
 *         b = response_body_new(buf, len, "image/png");      // takes buf (malloc'd)
 *         response_cache_put(rc, key, b);                    // the cache takes its own reference
 *         ... send b ..., then response_body_release(b);
 *     }
 *
 * A body is reference-counted and immutable: the cache holds one reference,
 * every get hands out one more, and the bytes are freed with the last
 * release, so eviction never pulls bytes from under a response being sent
 * and a body may outlive the cache. The cache is a least recently used map
 * bounded in bytes: each entry costs its body's length, its key's length
 * and RESPONSE_CACHE_ENTRY_OVERHEAD; a put that would exceed the budget
 * evicts the least recently used entries first (a get counts as a use). A
 * body costing more than an eighth of the budget is refused, so one large
 * answer never flushes the many small ones. Values are never replaced: a
 * key names one answer, so a put of a key already present only marks it
 * used. A budget of 0 stores nothing.
 * All functions are thread-safe (one mutex; the bytes are never copied
 * under it).
 */
#ifndef RESPONSE_CACHE_H
#define RESPONSE_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RESPONSE_CACHE_OK = 0,
    RESPONSE_CACHE_MISS,          /* get: no entry under this key */
    RESPONSE_CACHE_ERR_TOO_LARGE, /* put: the body costs more than budget / 8 */
    RESPONSE_CACHE_ERR_NOMEM,
    RESPONSE_CACHE_ERR_ARG        /* put: an empty key, or no body */
} response_cache_status;

/* Bookkeeping per entry (the entry, the hash slot, the body header), counted
 * against the budget with the key and the bytes. */
#define RESPONSE_CACHE_ENTRY_OVERHEAD 128
/* Largest body a cache of budget bytes keeps is budget / this, less the key
 * and the overhead. */
#define RESPONSE_CACHE_MAX_FRACTION 8
#define RESPONSE_CACHE_CONTENT_TYPE_MAX 64

/* What a holder reads; the reference count lives beside it, inside
 * response_cache.c (bodies come only from response_body_new). */
typedef struct response_body {
    const uint8_t *bytes;     /* owned by the body; len bytes */
    size_t len;
    char content_type[RESPONSE_CACHE_CONTENT_TYPE_MAX];
} response_body;

typedef struct response_cache response_cache;

typedef struct {
    uint64_t hits, misses;    /* gets that found an entry, gets that did not */
    size_t bytes;             /* what the entries cost now (see above) */
    size_t entries;
    uint64_t evictions;
} response_cache_stats;

/* A body of one reference (the caller's) holding bytes (malloc'd: after the
 * call they belong to the body, also when it returns NULL). content_type is
 * copied (at most RESPONSE_CACHE_CONTENT_TYPE_MAX - 1 bytes). NULL when out
 * of memory or content_type is too long. */
response_body *response_body_new(void *bytes, size_t len, const char *content_type);
/* One more reference to b; returns b. */
response_body *response_body_ref(response_body *b);
/* Drops one reference; the last frees the bytes and b. NULL is a no-op. */
void response_body_release(response_body *b);
/* The same, in the shape of libmicrohttpd's free callback (cls is the body). */
void response_body_release_cb(void *cls);
/* The references b has now (tests and diagnostics). */
int response_body_refs(const response_body *b);

/* Owned by the caller: response_cache_free. NULL when out of memory. */
response_cache *response_cache_new(size_t max_bytes);
/* Drops the cache's references; bodies still held elsewhere live on. */
void response_cache_free(response_cache *c);
/* RESPONSE_CACHE_OK with *out a new reference (release it), or
 * RESPONSE_CACHE_MISS with *out NULL. Counts a hit or a miss. */
response_cache_status response_cache_get(response_cache *c, const char *key, response_body **out);
/* Stores body under key (copied); on RESPONSE_CACHE_OK the cache holds its
 * own reference and the caller keeps its own. Never stores anything on
 * error. */
response_cache_status response_cache_put(response_cache *c, const char *key, response_body *body);
void response_cache_get_stats(response_cache *c, response_cache_stats *out);

#endif
