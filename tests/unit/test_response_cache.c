/* Unit tests for server/response_cache.c: LRU order, the byte budget,
 * oversized bodies, reference counts, and get/put from several threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/response_cache.h"

/* A body of len bytes, each (seed + i) & 0xff (caller's reference). */
static response_body *make_body(size_t len, unsigned seed)
{
    uint8_t *bytes = malloc(len ? len : 1);
    assert_non_null(bytes);
    for (size_t i = 0; i < len; i++)
        bytes[i] = (uint8_t)(seed + i);
    response_body *b = response_body_new(bytes, len, "image/png");
    assert_non_null(b);
    return b;
}

static int body_is(const response_body *b, size_t len, unsigned seed)
{
    if (b->len != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (b->bytes[i] != (uint8_t)(seed + i))
            return 0;
    return 1;
}

static size_t cost(const char *key, size_t len)
{
    return len + strlen(key) + RESPONSE_CACHE_ENTRY_OVERHEAD;
}

/* Puts a body of len bytes (seed) under key and drops the caller's reference. */
static int put(response_cache *c, const char *key, size_t len, unsigned seed)
{
    response_body *b = make_body(len, seed);
    int rc = response_cache_put(c, key, b);
    response_body_release(b);
    return rc;
}

static int present(response_cache *c, const char *key)
{
    response_body *b = NULL;
    int rc = response_cache_get(c, key, &b);
    assert_true(rc == RESPONSE_CACHE_OK ? b != NULL : b == NULL);
    response_body_release(b);
    return rc == RESPONSE_CACHE_OK;
}

static response_cache_stats stats(response_cache *c)
{
    response_cache_stats s;
    response_cache_get_stats(c, &s);
    return s;
}

static void test_get_put(void **state)
{
    (void)state;
    response_cache *c = response_cache_new(1 << 20);
    assert_non_null(c);
    response_body *b = NULL;
    assert_int_equal(response_cache_get(c, "a", &b), RESPONSE_CACHE_MISS);
    assert_null(b);
    response_body *mine = make_body(1000, 3);
    assert_int_equal(response_cache_put(c, "a", mine), RESPONSE_CACHE_OK);
    response_body_release(mine); /* the cache keeps its own reference */
    assert_int_equal(response_cache_get(c, "a", &b), RESPONSE_CACHE_OK);
    assert_true(body_is(b, 1000, 3));
    assert_string_equal(b->content_type, "image/png");
    response_body_release(b);
    assert_int_equal(response_cache_get(c, "b", &b), RESPONSE_CACHE_MISS);
    assert_int_equal(response_cache_get(c, "", &b), RESPONSE_CACHE_MISS);
    response_cache_stats s = stats(c);
    assert_int_equal(s.hits, 1);
    assert_int_equal(s.misses, 3);
    assert_int_equal(s.entries, 1);
    assert_int_equal(s.bytes, cost("a", 1000));

    /* A key names one answer: a second put keeps the first body. */
    assert_int_equal(put(c, "a", 10, 9), RESPONSE_CACHE_OK);
    assert_int_equal(response_cache_get(c, "a", &b), RESPONSE_CACHE_OK);
    assert_true(body_is(b, 1000, 3));
    response_body_release(b);
    assert_int_equal(stats(c).bytes, cost("a", 1000));
    assert_int_equal(stats(c).entries, 1);

    /* Keys differing in one byte, or a prefix, are other keys. */
    assert_int_equal(put(c, "ab", 5, 1), RESPONSE_CACHE_OK);
    assert_int_equal(put(c, "ac", 6, 2), RESPONSE_CACHE_OK);
    assert_int_equal(response_cache_get(c, "ab", &b), RESPONSE_CACHE_OK);
    assert_true(body_is(b, 5, 1));
    response_body_release(b);
    assert_int_equal(response_cache_get(c, "ac", &b), RESPONSE_CACHE_OK);
    assert_true(body_is(b, 6, 2));
    response_body_release(b);
    response_cache_free(c);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    response_cache *c = response_cache_new(1 << 20);
    assert_non_null(c);
    response_body *b = make_body(10, 0);
    assert_int_equal(response_cache_put(c, "", b), RESPONSE_CACHE_ERR_ARG);
    assert_int_equal(response_cache_put(c, NULL, b), RESPONSE_CACHE_ERR_ARG);
    assert_int_equal(response_cache_put(c, "k", NULL), RESPONSE_CACHE_ERR_ARG);
    assert_int_equal(stats(c).entries, 0);
    response_body_release(b); /* the last reference: a leak under ASan otherwise */
    char long_type[RESPONSE_CACHE_CONTENT_TYPE_MAX + 1];
    memset(long_type, 'x', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = '\0';
    /* Refused, and the bytes are freed all the same (ASan checks). */
    assert_null(response_body_new(malloc(4), 4, long_type));
    assert_null(response_body_new(malloc(4), 4, NULL));
    response_body_release(NULL);
    response_cache_free(NULL);
    response_cache_free(c);
}

/* Sixteen entries of equal cost fill a budget of sixteen times that cost
 * (keys of one length, so that every entry costs the same). */
static void test_lru_order(void **state)
{
    (void)state;
    enum { LEN = 100, N = 16 };
    const size_t one = cost("key00", LEN);
    response_cache *c = response_cache_new(N * one);
    assert_non_null(c);
    char key[16];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key%02d", i);
        assert_int_equal(put(c, key, LEN, (unsigned)i), RESPONSE_CACHE_OK);
    }
    assert_int_equal(stats(c).entries, N);
    assert_int_equal(stats(c).bytes, N * one);
    assert_int_equal(stats(c).evictions, 0);
    /* A get makes key00 the newest; a put of a present key makes key01 newer still. */
    assert_true(present(c, "key00"));
    assert_int_equal(put(c, "key01", LEN, 1), RESPONSE_CACHE_OK);
    /* Oldest first: key02 ... key15 key00 key01; two more evict key02 and key03. */
    assert_int_equal(put(c, "key16", LEN, 16), RESPONSE_CACHE_OK);
    assert_int_equal(stats(c).evictions, 1);
    assert_int_equal(put(c, "key17", LEN, 17), RESPONSE_CACHE_OK);
    assert_int_equal(stats(c).evictions, 2);
    assert_int_equal(stats(c).entries, N);
    assert_int_equal(stats(c).bytes, N * one);
    assert_false(present(c, "key02"));
    assert_false(present(c, "key03"));
    /* Checked oldest first, so that the gets keep the order they check. */
    const char *kept[N] = {"key04", "key05", "key06", "key07", "key08", "key09",
                           "key10", "key11", "key12", "key13", "key14", "key15",
                           "key00", "key01", "key16", "key17"};
    for (int i = 0; i < N; i++)
        if (!present(c, kept[i]))
            fail_msg("%s was evicted", kept[i]);
    assert_int_equal(put(c, "key18", LEN, 18), RESPONSE_CACHE_OK);
    assert_false(present(c, "key04"));
    assert_true(present(c, "key05")); /* now the newest */
    /* A body twice the size (the largest allowed) evicts the two oldest. */
    assert_int_equal(put(c, "keyBB", 2 * one - cost("keyBB", 0), 99), RESPONSE_CACHE_OK);
    assert_int_equal(stats(c).evictions, 5);
    assert_int_equal(stats(c).entries, N - 1);
    assert_int_equal(stats(c).bytes, N * one);
    assert_false(present(c, "key06"));
    assert_false(present(c, "key07"));
    assert_true(present(c, "key08"));
    assert_true(present(c, "key05"));
    response_body *b = NULL;
    assert_int_equal(response_cache_get(c, "keyBB", &b), RESPONSE_CACHE_OK);
    assert_true(body_is(b, 2 * one - cost("keyBB", 0), 99));
    response_body_release(b);
    response_cache_free(c);
}

/* Whatever goes in, the entries' cost stays within the budget and adds up. */
static void test_byte_budget(void **state)
{
    (void)state;
    const size_t budget = 64 * 1024;
    response_cache *c = response_cache_new(budget);
    assert_non_null(c);
    uint64_t lcg = 12345;
    size_t largest_put = 0;
    for (int i = 0; i < 2000; i++) {
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        size_t len = (size_t)(lcg >> 33) % (budget / 8);
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        int rc = put(c, key, len, (unsigned)i);
        if (cost(key, len) <= budget / 8) {
            assert_int_equal(rc, RESPONSE_CACHE_OK);
            assert_true(present(c, key)); /* the newest is always kept */
            if (len > largest_put)
                largest_put = len;
        } else {
            assert_int_equal(rc, RESPONSE_CACHE_ERR_TOO_LARGE);
        }
        response_cache_stats s = stats(c);
        if (s.bytes > budget)
            fail_msg("put %d: %zu bytes held, budget %zu", i, s.bytes, budget);
    }
    assert_true(largest_put > budget / 16);
    /* bytes is exactly the cost of the entries still there. */
    size_t sum = 0, n = 0;
    for (int i = 0; i < 2000; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        response_body *b = NULL;
        if (response_cache_get(c, key, &b) == RESPONSE_CACHE_OK) {
            assert_true(body_is(b, b->len, (unsigned)i));
            sum += cost(key, b->len);
            n++;
            response_body_release(b);
        }
    }
    response_cache_stats s = stats(c);
    assert_int_equal(s.bytes, sum);
    assert_int_equal(s.entries, n);
    assert_true(n > 8);
    /* Full after 2000 puts: less free room than the largest body kept. */
    assert_true(budget - s.bytes < budget / 8);
    response_cache_free(c);
}

static void test_oversized_refused(void **state)
{
    (void)state;
    const size_t budget = 8000; /* bodies may cost up to 1000 */
    response_cache *c = response_cache_new(budget);
    assert_non_null(c);
    size_t fits = budget / 8 - strlen("k") - RESPONSE_CACHE_ENTRY_OVERHEAD;
    assert_int_equal(put(c, "k", fits, 1), RESPONSE_CACHE_OK);
    assert_int_equal(stats(c).bytes, budget / 8);
    response_body *b = make_body(fits + 1, 2);
    assert_int_equal(response_cache_put(c, "j", b), RESPONSE_CACHE_ERR_TOO_LARGE);
    assert_int_equal(response_body_refs(b), 1); /* no reference taken */
    response_body_release(b);
    assert_false(present(c, "j"));
    assert_true(present(c, "k")); /* and nothing was evicted for it */
    assert_int_equal(stats(c).bytes, budget / 8);
    /* A key too long counts too. */
    char long_key[1100];
    memset(long_key, 'q', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    assert_int_equal(put(c, long_key, 1, 0), RESPONSE_CACHE_ERR_TOO_LARGE);
    response_cache_free(c);

    /* A budget of 0 keeps nothing. */
    c = response_cache_new(0);
    assert_non_null(c);
    assert_int_equal(put(c, "k", 1, 0), RESPONSE_CACHE_ERR_TOO_LARGE);
    assert_false(present(c, "k"));
    assert_int_equal(stats(c).entries, 0);
    assert_int_equal(stats(c).bytes, 0);
    response_cache_free(c);
}

/* A body handed out stays whole after its entry is evicted and after the
 * cache is freed (ASan would see a use after free). */
static void test_body_outlives_entry(void **state)
{
    (void)state;
    const size_t one = cost("k0", 50);
    response_cache *c = response_cache_new(8 * one);
    assert_non_null(c);
    assert_int_equal(put(c, "k0", 50, 42), RESPONSE_CACHE_OK);
    response_body *held = NULL;
    assert_int_equal(response_cache_get(c, "k0", &held), RESPONSE_CACHE_OK);
    assert_int_equal(response_body_refs(held), 2);
    char key[16];
    for (int i = 1; i <= 8; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(put(c, key, 50, (unsigned)i), RESPONSE_CACHE_OK);
    }
    assert_false(present(c, "k0"));
    assert_int_equal(response_body_refs(held), 1);
    assert_true(body_is(held, 50, 42));
    response_body *other = NULL;
    assert_int_equal(response_cache_get(c, "k8", &other), RESPONSE_CACHE_OK);
    response_cache_free(c);
    assert_true(body_is(other, 50, 8));
    assert_int_equal(response_body_refs(other), 1);
    response_body_release(other);
    response_body_release(held);
}

/* Many keys: the table grows and every key stays reachable. */
static void test_many_keys(void **state)
{
    (void)state;
    response_cache *c = response_cache_new(64u << 20);
    assert_non_null(c);
    enum { N = 5000 };
    char key[96];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "%064x|digits|%d", i * 2654435761u, i);
        assert_int_equal(put(c, key, 16, (unsigned)i), RESPONSE_CACHE_OK);
    }
    assert_int_equal(stats(c).entries, N);
    assert_int_equal(stats(c).evictions, 0);
    for (int i = N - 1; i >= 0; i--) {
        snprintf(key, sizeof key, "%064x|digits|%d", i * 2654435761u, i);
        response_body *b = NULL;
        if (response_cache_get(c, key, &b) != RESPONSE_CACHE_OK)
            fail_msg("key %d lost", i);
        assert_true(body_is(b, 16, (unsigned)i));
        response_body_release(b);
    }
    assert_int_equal(stats(c).hits, N);
    response_cache_free(c);
}

/* ---- threads ---- */

enum { THREADS = 4, ROUNDS = 20000, KEYS = 300 };

typedef struct {
    response_cache *c;
    unsigned seed;
    uint64_t gets, hits, puts;
    int bad;       /* a body that did not match its key */
} worker;

static size_t body_len_of(int k) { return 16 + (size_t)(k % 7) * 40; }

static void *work(void *arg)
{
    worker *w = arg;
    uint64_t lcg = w->seed;
    for (int i = 0; i < ROUNDS; i++) {
        lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((lcg >> 33) % KEYS);
        char key[32];
        snprintf(key, sizeof key, "key-%d", k);
        response_body *b = NULL;
        w->gets++;
        if (response_cache_get(w->c, key, &b) == RESPONSE_CACHE_OK) {
            w->hits++;
            if (!body_is(b, body_len_of(k), (unsigned)k) || strcmp(b->content_type, "image/png"))
                w->bad++;
            response_body_release(b);
            continue;
        }
        /* A miss: "compute" the answer and keep it, as a request would. */
        uint8_t *bytes = malloc(body_len_of(k));
        if (!bytes) {
            w->bad++;
            continue;
        }
        for (size_t j = 0; j < body_len_of(k); j++)
            bytes[j] = (uint8_t)(k + j);
        b = response_body_new(bytes, body_len_of(k), "image/png");
        if (!b || response_cache_put(w->c, key, b) != RESPONSE_CACHE_OK)
            w->bad++;
        else
            w->puts++;
        response_body_release(b);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    /* Room for about a third of the keys: evictions all the time. */
    const size_t budget = 100 * (body_len_of(3) + 8 + RESPONSE_CACHE_ENTRY_OVERHEAD);
    response_cache *c = response_cache_new(budget);
    assert_non_null(c);
    pthread_t threads[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.c = c, .seed = 1000u + (unsigned)i};
        assert_int_equal(pthread_create(&threads[i], NULL, work, &w[i]), 0);
    }
    uint64_t gets = 0, hits = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(w[i].bad, 0);
        gets += w[i].gets;
        hits += w[i].hits;
    }
    response_cache_stats s = stats(c);
    assert_int_equal(s.hits, hits);
    assert_int_equal(s.hits + s.misses, gets);
    assert_true(hits > 0 && s.misses > 0);
    assert_true(s.evictions > 0);
    assert_true(s.bytes <= budget);
    /* What is left still matches its key, and adds up. */
    size_t sum = 0, n = 0;
    for (int k = 0; k < KEYS; k++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", k);
        response_body *b = NULL;
        if (response_cache_get(c, key, &b) == RESPONSE_CACHE_OK) {
            assert_true(body_is(b, body_len_of(k), (unsigned)k));
            sum += cost(key, b->len);
            n++;
            response_body_release(b);
        }
    }
    assert_int_equal(stats(c).bytes, sum);
    assert_int_equal(stats(c).entries, n);
    response_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_put),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_byte_budget),
        cmocka_unit_test(test_oversized_refused),
        cmocka_unit_test(test_body_outlives_entry),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
