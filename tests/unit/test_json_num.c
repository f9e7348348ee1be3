/* json_num_float against glibc's printf("%.9g"): byte for byte on the edges
 * (zeros, subnormals, the extremes, powers of ten where %g switches between
 * fixed and exponent notation, values that round up to a tenth digit) and on
 * two million floats drawn as random bit patterns and as typical latent
 * values; and every output parses back to the same float. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/json_num.h"

static int check(float v)
{
    char ours[JSON_NUM_FLOAT_MAX], want[64];
    size_t n = json_num_float(ours, v);
    snprintf(want, sizeof want, "%.9g", (double)v);
    if (strcmp(ours, want) != 0 || n != strlen(ours)) {
        uint32_t b;
        memcpy(&b, &v, sizeof b);
        print_error("bits %08x: json_num_float \"%s\", printf \"%s\"\n", b, ours, want);
        return 1;
    }
    if (isfinite(v) && strtof(ours, NULL) != v) {
        print_error("\"%s\" does not parse back to the float\n", ours);
        return 1;
    }
    return 0;
}

static void test_edges(void **state)
{
    (void)state;
    static const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.1f, 0.5f, 1e-5f, 1e-4f, 9.9999e-5f,
                                  0.0001f, 0.00099999999f, 1e8f, 1e9f, 999999999.0f, 999999940.0f,
                                  123456789.0f, 1e10f, 3.4028235e38f, -3.4028235e38f,
                                  1.17549435e-38f, 1.4e-45f, 2.8e-45f, 1e-40f, 16777216.0f,
                                  16777217.0f, 0.3f, 2.5f, 7.0e-10f, 0.99999999f, 9.99999999f};
    int bad = 0;
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) bad += check(edges[i]);
    for (int p = -45; p <= 38; p++) {
        float v = (float)pow(10.0, p);
        bad += check(v) + check(nextafterf(v, 0.0f)) + check(nextafterf(v, INFINITY));
    }
    char buf[JSON_NUM_FLOAT_MAX];
    json_num_float(buf, NAN);
    assert_true(strstr(buf, "nan") != NULL);
    json_num_float(buf, -INFINITY);
    assert_string_equal(buf, "-inf");
    assert_int_equal(bad, 0);
}

static void test_random_floats(void **state)
{
    (void)state;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    int bad = 0;
    for (long i = 0; i < 1000000 && bad < 10; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        uint32_t b = (uint32_t)(s >> 11);
        float v;
        memcpy(&v, &b, sizeof v);
        bad += check(v);
        /* the values responses hold: mu, logvar, pixel means */
        bad += check((float)((double)(int32_t)b * 1e-9));
    }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_random_floats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
