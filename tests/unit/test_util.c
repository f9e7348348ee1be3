/* Unit tests for engine/util.h: the message setter with no buffer, a
 * zero-length one and truncation; big-endian reads and writes against
 * spelled-out bytes; the monotonic clock does not go back. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "engine/util.h"

static void test_set_err(void **state)
{
    (void)state;
    char err[8];
    util_set_err(NULL, 0, "ignored %d", 1);
    util_set_err(NULL, 100, "ignored %d", 2);
    memset(err, 'x', sizeof err);
    util_set_err(err, 0, "not written");
    assert_int_equal(err[0], 'x');
    util_set_err(err, sizeof err, "%s=%d", "k", 42);
    assert_string_equal(err, "k=42");
    util_set_err(err, sizeof err, "%s", "longer than eight");
    assert_string_equal(err, "longer "); /* errlen - 1 bytes and the NUL */
}

static void test_be32(void **state)
{
    (void)state;
    const uint8_t idx_magic[4] = {0x00, 0x00, 0x08, 0x03};
    assert_int_equal(util_be32(idx_magic), 0x803u);
    const uint8_t high[4] = {0xfe, 0xdc, 0xba, 0x98};
    assert_true(util_be32(high) == 0xfedcba98u);
    uint8_t out[9] = {0};
    uint8_t *end = util_put_be32(util_put_be32(out, 0x01020304u), 0xfedcba98u);
    assert_ptr_equal(end, out + 8);
    const uint8_t want[9] = {1, 2, 3, 4, 0xfe, 0xdc, 0xba, 0x98, 0};
    assert_memory_equal(out, want, sizeof want);
    assert_true(util_be32(out + 4) == 0xfedcba98u);
}

static void test_mono_s(void **state)
{
    (void)state;
    double a = util_mono_s();
    assert_true(a > 0.0);
    for (int i = 0; i < 1000; i++) {
        double b = util_mono_s();
        assert_true(b >= a);
        a = b;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_err),
        cmocka_unit_test(test_be32),
        cmocka_unit_test(test_mono_s),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
