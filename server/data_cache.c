#include "server/data_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct data_cache {
    pthread_mutex_t lock;
    char *root; /* owned */
    int used;
    struct {
        char name[32];
        data_sets_split split;
        dataset d; /* owned */
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
    return dc;
}

void data_cache_free(data_cache *dc)
{
    if (!dc)
        return;
    for (int i = 0; i < dc->used; i++)
        dataset_free(&dc->slot[i].d);
    pthread_mutex_destroy(&dc->lock);
    free(dc->root);
    free(dc);
}

data_cache_status data_cache_get(data_cache *dc, const char *name, data_sets_split split,
                                 const dataset **out, char *err, size_t errlen)
{
    data_cache_status rc = DATA_CACHE_OK;
    *out = NULL;
    if (strlen(name) >= sizeof dc->slot[0].name) {
        snprintf(err, errlen, "data set name too long");
        return DATA_CACHE_ERR_LOAD;
    }
    pthread_mutex_lock(&dc->lock);
    int s;
    for (s = 0; s < dc->used; s++)
        if (!strcmp(dc->slot[s].name, name) && dc->slot[s].split == split)
            break;
    if (s == dc->used) {
        if (s == DATA_CACHE_SLOTS) {
            snprintf(err, errlen, "too many data sets in use");
            rc = DATA_CACHE_ERR_FULL;
            goto end;
        }
        if (data_sets_load(dc->root, name, split, &dc->slot[s].d, err, errlen)) {
            rc = DATA_CACHE_ERR_LOAD;
            goto end;
        }
        snprintf(dc->slot[s].name, sizeof dc->slot[s].name, "%s", name);
        dc->slot[s].split = split;
        dc->used++;
    }
    *out = &dc->slot[s].d;
end:
    pthread_mutex_unlock(&dc->lock);
    return rc;
}
