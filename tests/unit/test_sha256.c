/* sha256 against the FIPS 180-4 examples, and the streaming interface
 * against the one-shot one on pieces of every size around a block. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "server/sha256.h"

static void test_known_digests(void **state)
{
    (void)state;
    char hex[65];
    sha256_hex((const uint8_t *)"abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_hex((const uint8_t *)"", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes */
    sha256_hex((const uint8_t *)two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* A million 'a': many blocks. */
    size_t n = 1000000;
    uint8_t *a = malloc(n);
    assert_non_null(a);
    memset(a, 'a', n);
    sha256_hex(a, n, hex);
    free(a);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* Every length 0..300 fed in pieces of every size 1..130 gives the one-shot digest. */
static void test_pieces_equal_whole(void **state)
{
    (void)state;
    uint8_t data[300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131u + 7u);
    for (size_t len = 0; len <= sizeof data; len += 1 + len / 8) {
        char whole[65];
        sha256_hex(data, len, whole);
        for (size_t piece = 1; piece <= 130; piece++) {
            sha256_ctx c;
            sha256_init(&c);
            for (size_t off = 0; off < len; off += piece)
                sha256_update(&c, data + off, len - off < piece ? len - off : piece);
            char streamed[65];
            sha256_final_hex(&c, streamed);
            if (strcmp(whole, streamed) != 0)
                fail_msg("length %zu in pieces of %zu: %s, whole %s", len, piece, streamed, whole);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_digests),
        cmocka_unit_test(test_pieces_equal_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
