/* deflate_literals: every output inflates (zlib's own inflate, which checks
 * the codes' completeness and the Adler-32) back to the input, within the
 * bound, for the shapes of input that exercise each path: empty, one byte,
 * one repeated value, skewed grey levels, doubling frequencies (a Huffman
 * tree 20 deep, so lengths must be limited to 15), incompressible
 * bytes (stored blocks, several of them past 64 KiB). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "engine/deflate.h"
#include "engine/rng.h"

enum { STORED = 0, DYNAMIC = 2 };

/* Compresses, checks the bound, inflates and compares; returns the size and,
 * in *btype, the first block's BTYPE (0 stored, 2 dynamic Huffman). */
static size_t round_trip_typed(const uint8_t *in, size_t n, int *btype)
{
    size_t cap = deflate_literals_bound(n);
    uint8_t *z = malloc(cap);
    uint8_t *back = malloc(n ? n : 1);
    assert_non_null(z);
    assert_non_null(back);
    size_t zlen = deflate_literals(in, n, z);
    assert_true(zlen <= cap);
    assert_true(zlen >= 2 + 1 + 4);
    *btype = (z[2] >> 1) & 3; /* after the 2-byte zlib header: BFINAL, then BTYPE */
    uLongf got = (uLongf)n;
    int rc = uncompress(back, &got, z, (uLong)zlen);
    if (rc != Z_OK)
        fail_msg("inflate failed (%d) on %zu bytes", rc, n);
    assert_int_equal(got, n);
    if (n)
        assert_memory_equal(back, in, n);
    free(z);
    free(back);
    return zlen;
}

static size_t round_trip(const uint8_t *in, size_t n)
{
    int btype;
    return round_trip_typed(in, n, &btype);
}

static void test_tiny_inputs(void **state)
{
    (void)state;
    uint8_t b[3] = {0, 255, 7};
    round_trip(b, 0);
    round_trip(b, 1);
    round_trip(b + 1, 1);
    round_trip(b, 3);
}

static void test_one_value_compresses(void **state)
{
    (void)state;
    size_t n = 100000;
    uint8_t *v = malloc(n);
    assert_non_null(v);
    memset(v, 0, n);
    /* one bit per byte, plus the header */
    int btype;
    assert_true(round_trip_typed(v, n, &btype) < n / 8 + 200);
    assert_int_equal(btype, DYNAMIC);
    memset(v, 200, n);
    assert_true(round_trip_typed(v, n, &btype) < n / 8 + 200);
    assert_int_equal(btype, DYNAMIC);
    free(v);
}

static void test_skewed_grey_levels(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 3);
    size_t n = 12656; /* a 4 x 4 grid of 28 x 28 digits, filtered */
    uint8_t *v = malloc(n);
    assert_non_null(v);
    float *g = malloc(n * sizeof *g);
    assert_non_null(g);
    rng_normal_fill(&r, g, n);
    for (size_t i = 0; i < n; i++) v[i] = (uint8_t)(int)(g[i] * 6.0f); /* small, both signs */
    free(g);
    size_t z = round_trip(v, n);
    assert_true(z < n * 6 / 10);
    free(v);
}

static void test_deep_tree_is_limited(void **state)
{
    (void)state;
    /* Frequencies 1, 1, 2, 4, ... 2^18 over 20 symbols (and the end code's
     * 1): each merge of the Huffman construction takes the tree so far and
     * the next symbol, so an unlimited tree is 20 deep. */
    size_t f[20], n = 0;
    f[0] = 1;
    for (int i = 1; i < 20; i++) f[i] = (size_t)1 << (i - 1);
    for (int i = 0; i < 20; i++) n += f[i];
    uint8_t *v = malloc(n);
    assert_non_null(v);
    size_t p = 0;
    for (int i = 0; i < 20; i++)
        for (size_t k = 0; k < f[i]; k++) v[p++] = (uint8_t)(i * 9);
    /* Huffman-coded (a stored fallback would not test the limit), and about
     * two bits a byte */
    int btype;
    assert_true(round_trip_typed(v, n, &btype) < n / 2);
    assert_int_equal(btype, DYNAMIC);
    free(v);
}

static void test_incompressible_is_stored(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 5);
    size_t sizes[] = {1000, 65535, 65536, 200000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        uint8_t *v = malloc(n);
        assert_non_null(v);
        for (size_t i = 0; i < n; i++) v[i] = (uint8_t)(rng_next_u64(&r) >> 56);
        int btype;
        size_t z = round_trip_typed(v, n, &btype);
        /* stored blocks of at most 65535 bytes, 5 bytes of framing each,
         * between the zlib header and the Adler-32 */
        assert_int_equal(btype, STORED);
        assert_int_equal(z, 2 + n + 5 * ((n + 65534) / 65535) + 4);
        free(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_inputs),
        cmocka_unit_test(test_one_value_compresses),
        cmocka_unit_test(test_skewed_grey_levels),
        cmocka_unit_test(test_deep_tree_is_limited),
        cmocka_unit_test(test_incompressible_is_stored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
