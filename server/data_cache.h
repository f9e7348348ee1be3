/* data_cache: data sets loaded on first use and kept, for the requests that
 * name an image by DATASET:SPLIT:INDEX (GET /interpolate).
 *
 *     data_cache *dc = data_cache_new(data_sets_root());   // owned: data_cache_free
 *     const dataset *d;
 *     if (data_cache_get(dc, "mnist", DATA_SETS_TEST, &d, err, sizeof err) == DATA_CACHE_OK)
 *         ... d->x + i * dataset_dim(d) is image i ...        // valid until data_cache_free
 *
 * At most DATA_CACHE_SLOTS splits are kept; nothing is ever evicted, so a
 * returned data set stays valid, unlocked, until the cache is freed. A split
 * loads once: the first request to need it loads it outside the cache's lock
 * (requests for the same split wait for it rather than load it again; those
 * for splits already loaded never wait). Thread-safe.
 */
#ifndef DATA_CACHE_H
#define DATA_CACHE_H

#include <stddef.h>

#include "engine/dataset.h"
#include "server/data_sets.h"

#define DATA_CACHE_SLOTS 8

typedef enum {
    DATA_CACHE_OK = 0,
    DATA_CACHE_ERR_FULL, /* DATA_CACHE_SLOTS other splits are already kept */
    DATA_CACHE_ERR_LOAD  /* the data set is not there or does not read; err says why */
} data_cache_status;

typedef struct data_cache data_cache;

/* root: where data_sets_load looks (copied). NULL when out of memory. */
data_cache *data_cache_new(const char *root);
/* Frees every data set handed out. NULL is a no-op. */
void data_cache_free(data_cache *dc);
/* 1 when the split is loaded already (data_cache_get then neither loads
 * nor waits): cheap enough for a polling thread. */
int data_cache_peek(data_cache *dc, const char *name, data_sets_split split);
/* The split of the built-in data set name, loading it on first use (or
 * waiting for the request loading it); *out is borrowed from the cache.
 * err names files from inside root ("mnist/t10k-images-idx3-ubyte"), never
 * root itself: it may be sent to a client. */
data_cache_status data_cache_get(data_cache *dc, const char *name, data_sets_split split,
                                 const dataset **out, char *err, size_t errlen);

#endif
