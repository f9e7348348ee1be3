/* data_cache: a split loads once and the same data set comes back for every
 * later request (from several threads at once too); a root without the data
 * is DATA_CACHE_ERR_LOAD with the reason, and not remembered. Needs
 * data/mnist (scripts/get-data.sh) for the loading half; tests run from the
 * repository root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "server/data_cache.h"

static void test_missing_root(void **state)
{
    (void)state;
    data_cache *dc = data_cache_new("/nonexistent-vaed-data");
    assert_non_null(dc);
    const dataset *d = (const dataset *)&d;
    char err[512] = "";
    assert_int_equal(data_cache_get(dc, "mnist", DATA_SETS_TEST, &d, err, sizeof err),
                     DATA_CACHE_ERR_LOAD);
    assert_null(d);
    assert_true(err[0] != '\0');
    /* A name too long for a slot is refused, not truncated into another's. */
    char name[64];
    memset(name, 'm', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    assert_int_equal(data_cache_get(dc, name, DATA_SETS_TEST, &d, err, sizeof err),
                     DATA_CACHE_ERR_LOAD);
    data_cache_free(dc);
    data_cache_free(NULL);
}

typedef struct {
    data_cache *dc;
    const dataset *got;
    data_cache_status rc;
} getter;

static void *get_main(void *arg)
{
    getter *g = arg;
    char err[512];
    g->rc = data_cache_get(g->dc, "mnist", DATA_SETS_TEST, &g->got, err, sizeof err);
    return NULL;
}

static void test_loads_once(void **state)
{
    (void)state;
    struct stat st;
    if (stat("data/mnist/t10k-images-idx3-ubyte", &st) != 0)
        skip();
    data_cache *dc = data_cache_new("data");
    assert_non_null(dc);
    assert_false(data_cache_peek(dc, "mnist", DATA_SETS_TEST));
    getter g[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        g[i] = (getter){.dc = dc};
        assert_int_equal(pthread_create(&t[i], NULL, get_main, &g[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(g[i].rc, DATA_CACHE_OK);
        assert_ptr_equal(g[i].got, g[0].got);
    }
    assert_int_equal(g[0].got->n, 10000);
    /* loaded: peeked without a load (what lets a polling thread use it) */
    assert_true(data_cache_peek(dc, "mnist", DATA_SETS_TEST));
    assert_false(data_cache_peek(dc, "mnist", DATA_SETS_TRAIN));
    assert_int_equal(dataset_dim(g[0].got), 784);
    const dataset *train = NULL;
    char err[512];
    assert_int_equal(data_cache_get(dc, "mnist", DATA_SETS_TRAIN, &train, err, sizeof err),
                     DATA_CACHE_OK);
    assert_true(train != g[0].got);
    assert_int_equal(train->n, 60000);
    data_cache_free(dc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_root),
        cmocka_unit_test(test_loads_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
