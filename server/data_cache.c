#include "server/data_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A slot is EMPTY, LOADING (its name set, the loader working outside the
 * lock) or READY (its data set never changes again). */
enum { SLOT_EMPTY = 0, SLOT_LOADING, SLOT_READY };

struct data_cache {
    pthread_mutex_t lock;
    pthread_cond_t loaded;  /* a slot left LOADING */
    char *root; /* owned */
    struct {
        int state;
        char name[32];
        data_sets_split split;
        dataset d; /* owned once READY */
    } slot[DATA_CACHE_SLOTS];
};

data_cache *data_cache_new(const char *root)
{
    data_cache *dc = calloc(1, sizeof *dc); /* owned by the caller: data_cache_free */
    if (!dc)
        return NULL;
    dc->root = strdup(root);
    if (!dc->root) {
        free(dc);
        return NULL;
    }
    pthread_mutex_init(&dc->lock, NULL);
    pthread_cond_init(&dc->loaded, NULL);
    return dc;
}

void data_cache_free(data_cache *dc)
{
    if (!dc)
        return;
    for (int i = 0; i < DATA_CACHE_SLOTS; i++)
        if (dc->slot[i].state == SLOT_READY)
            dataset_free(&dc->slot[i].d);
    pthread_cond_destroy(&dc->loaded);
    pthread_mutex_destroy(&dc->lock);
    free(dc->root);
    free(dc);
}

/* The slot of (name, split), whatever its state; -1 when none. */
static int find_locked(const data_cache *dc, const char *name, data_sets_split split)
{
    for (int s = 0; s < DATA_CACHE_SLOTS; s++)
        if (dc->slot[s].state != SLOT_EMPTY && !strcmp(dc->slot[s].name, name) &&
            dc->slot[s].split == split)
            return s;
    return -1;
}

int data_cache_peek(data_cache *dc, const char *name, data_sets_split split)
{
    pthread_mutex_lock(&dc->lock);
    int s = find_locked(dc, name, split);
    int ready = s >= 0 && dc->slot[s].state == SLOT_READY;
    pthread_mutex_unlock(&dc->lock);
    return ready;
}

data_cache_status data_cache_get(data_cache *dc, const char *name, data_sets_split split,
                                 const dataset **out, char *err, size_t errlen)
{
    *out = NULL;
    if (strlen(name) >= sizeof dc->slot[0].name) {
        snprintf(err, errlen, "data set name too long");
        return DATA_CACHE_ERR_LOAD;
    }
    pthread_mutex_lock(&dc->lock);
    int s;
    /* Another request loading this split: wait for it rather than load it
     * twice. Requests for splits already READY never wait. */
    while ((s = find_locked(dc, name, split)) >= 0 && dc->slot[s].state == SLOT_LOADING)
        pthread_cond_wait(&dc->loaded, &dc->lock);
    if (s >= 0) {
        *out = &dc->slot[s].d;
        pthread_mutex_unlock(&dc->lock);
        return DATA_CACHE_OK;
    }
    for (s = 0; s < DATA_CACHE_SLOTS && dc->slot[s].state != SLOT_EMPTY; s++)
        ;
    if (s == DATA_CACHE_SLOTS) {
        pthread_mutex_unlock(&dc->lock);
        snprintf(err, errlen, "too many data sets in use");
        return DATA_CACHE_ERR_FULL;
    }
    dc->slot[s].state = SLOT_LOADING;
    snprintf(dc->slot[s].name, sizeof dc->slot[s].name, "%s", name);
    dc->slot[s].split = split;
    pthread_mutex_unlock(&dc->lock);

    /* The load (tens of MB read and converted) runs without the lock. */
    dataset d; /* owned: handed to the slot */
    data_cache_status rc =
        data_sets_load(dc->root, name, split, &d, err, errlen) ? DATA_CACHE_ERR_LOAD
                                                               : DATA_CACHE_OK;
    pthread_mutex_lock(&dc->lock);
    if (rc == DATA_CACHE_OK) {
        dc->slot[s].d = d;
        dc->slot[s].state = SLOT_READY;
        *out = &dc->slot[s].d;
    } else {
        dc->slot[s].state = SLOT_EMPTY; /* a later request tries again */
    }
    if (rc != DATA_CACHE_OK)
        data_sets_strip_dir(err, dc->root); /* the client learns the file, not where it is */
    pthread_cond_broadcast(&dc->loaded);
    pthread_mutex_unlock(&dc->lock);
    return rc;
}
