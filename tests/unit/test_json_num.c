/* json_num against strtof and glibc's correctly rounded printf: every output
 * is a JSON number that reads back as the same float32 (bit for bit, -0
 * too); no decimal with a digit fewer does (the two around the float at that
 * many digits, taken from "%.*e", both fail to read back); of the shortest it
 * is the nearest to the float's exact value ("%.*e" at its digit count, or
 * that one's neighbour when it does not read back); and with a precision p
 * it is the shortest when that has p digits or fewer, else "%.*e" at p
 * digits. On every biased exponent (the mantissa's edges, powers of two,
 * subnormals, both signs), powers of ten and their neighbours, and a few
 * million random bit patterns and typical latent and pixel values. */
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

static float from_bits(uint32_t b)
{
    float v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static uint32_t to_bits(float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* JSON's number grammar, and ours within it: no trailing zeros after a
 * point, none in an exponent form's digits, no leading zeros in an exponent,
 * no '+'. */
static int json_number_ok(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9') p++;
    else
        return 0;
    if (*p == '.') {
        p++;
        const char *start = p;
        while (*p >= '0' && *p <= '9') p++;
        if (p == start || p[-1] == '0')
            return 0;
    }
    if (*p == 'e') {
        p++;
        if (*p == '-')
            p++;
        if (*p < '1' || *p > '9')
            return 0;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == '\0';
}

/* A decimal's significant digits as n * 10^e (no leading or trailing zeros
 * in n; n = 0 for zero), and their count. */
typedef struct {
    uint64_t n;
    int e, digits;
} decimal;

static decimal parse_decimal(const char *s)
{
    decimal d = {0, 0, 0};
    int point = 0, seen = 0;
    const char *p = s;
    if (*p == '-')
        p++;
    for (; *p && *p != 'e' && *p != 'E'; p++) {
        if (*p == '.') {
            point = 1;
            continue;
        }
        int digit = *p - '0';
        if (digit || seen) {
            d.n = d.n * 10 + (uint64_t)digit;
            seen = 1;
        }
        if (point)
            d.e--;
    }
    if (*p)
        d.e += atoi(p + 1);
    if (!d.n)
        return d;
    while (d.n % 10 == 0) {
        d.n /= 10;
        d.e++;
    }
    for (uint64_t t = d.n; t; t /= 10) d.digits++;
    return d;
}

static int reads_back(uint64_t n, int e, float v)
{
    char s[48];
    snprintf(s, sizeof s, "%s%llue%d", signbit(v) ? "-" : "", (unsigned long long)n, e);
    return to_bits(strtof(s, NULL)) == to_bits(v);
}

/* v correctly rounded to d significant digits by glibc. */
static decimal rounded(float v, int d)
{
    char s[64];
    snprintf(s, sizeof s, "%.*e", d - 1, (double)v);
    return parse_decimal(s);
}

static int wrong(float v, const char *got, const char *why)
{
    print_error("bits %08x (%.9g): \"%s\" %s\n", to_bits(v), (double)v, got, why);
    return 1;
}

/* 0 when json_num_float(v) is right (see the file's comment), else 1. */
static int check_shortest(float v)
{
    char ours[JSON_NUM_FLOAT_MAX + 8];
    size_t len = json_num_float(ours, v);
    if (len != strlen(ours) || len >= JSON_NUM_FLOAT_MAX)
        return wrong(v, ours, "has the wrong length");
    if (!json_number_ok(ours))
        return wrong(v, ours, "is not a JSON number as json_num.h says");
    if (to_bits(strtof(ours, NULL)) != to_bits(v))
        return wrong(v, ours, "does not read back");
    decimal d = parse_decimal(ours);
    if (!d.n)
        return v == 0.0f ? 0 : wrong(v, ours, "is zero");
    if (d.digits > JSON_NUM_DIGITS_MAX)
        return wrong(v, ours, "has more than nine digits");
    if (d.digits > 1) {
        /* the decimals of one digit fewer around v: glibc's rounding and its
         * neighbours (below 10^k, the largest of one exponent down) */
        decimal r = rounded(v, d.digits - 1);
        uint64_t ten = 1;
        for (int i = 1; i < d.digits - 1; i++) ten *= 10;
        uint64_t rn = r.n;
        int re = r.e;
        while (rn < ten) { /* back to d.digits - 1 digits */
            rn *= 10;
            re--;
        }
        if (reads_back(rn, re, v) || reads_back(rn + 1, re, v) ||
            (rn > ten && reads_back(rn - 1, re, v)) ||
            (rn == ten && reads_back(10 * ten - 1, re - 1, v)))
            return wrong(v, ours, "is not the shortest");
    }
    decimal r = rounded(v, d.digits);
    int nearest = r.n == d.n && r.e == d.e;
    if (!nearest && reads_back(r.n, r.e, v))
        return wrong(v, ours, "is not the nearest of the shortest");
    if (!nearest) {
        /* the nearest does not read back: ours must be its neighbour */
        char a[48], b[48];
        snprintf(a, sizeof a, "%llue%d", (unsigned long long)d.n, d.e);
        snprintf(b, sizeof b, "%llue%d", (unsigned long long)r.n, r.e);
        double gap = fabs(strtod(a, NULL) - strtod(b, NULL));
        double step = pow(10.0, d.e) * 1.5;
        if (gap > step)
            return wrong(v, ours, "is not next to the nearest");
    }
    return 0;
}

/* 0 when json_num_float_digits(v, p) is right, else 1. */
static int check_digits(float v, int p)
{
    char ours[JSON_NUM_FLOAT_MAX + 8], shortest[JSON_NUM_FLOAT_MAX];
    size_t len = json_num_float_digits(ours, v, p);
    json_num_float(shortest, v);
    if (len != strlen(ours) || len >= JSON_NUM_FLOAT_MAX || !json_number_ok(ours))
        return wrong(v, ours, "is not a JSON number of the right length");
    decimal s = parse_decimal(shortest), d = parse_decimal(ours);
    if (s.digits <= p) {
        if (strcmp(ours, shortest))
            return wrong(v, ours, "differs from the shortest, which has few enough digits");
        return 0;
    }
    decimal r = rounded(v, p);
    if (d.n != r.n || d.e != r.e || d.digits > p)
        return wrong(v, ours, "is not the value rounded to p digits");
    if (signbit(strtof(ours, NULL)) != signbit(v))
        return wrong(v, ours, "lost the sign");
    return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 17);
}

static void test_every_exponent(void **state)
{
    (void)state;
    int bad = 0;
    for (uint32_t e = 0; e < 255; e++) {
        uint32_t mantissas[12] = {0,        1,        2,        3,       0x7FFFFF, 0x7FFFFE,
                                  0x400000, 0x400001, 0x3FFFFF, 0x100000, 0, 0};
        mantissas[10] = next_u32() & 0x7FFFFF;
        mantissas[11] = next_u32() & 0x7FFFFF;
        for (int i = 0; i < 12; i++)
            for (uint32_t sign = 0; sign < 2; sign++) {
                float v = from_bits(sign << 31 | e << 23 | mantissas[i]);
                bad += check_shortest(v);
                for (int p = 1; p <= JSON_NUM_DIGITS_MAX; p++) bad += check_digits(v, p);
            }
    }
    static const float edges[] = {FLT_MAX, -FLT_MAX, FLT_MIN, FLT_TRUE_MIN, -FLT_TRUE_MIN,
                                  0.0f,    -0.0f,    1.0f,    0.1f,         0.3f,
                                  2.5f,    1e-5f,    0.001f,  16777216.0f,  16777217.0f};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) bad += check_shortest(edges[i]);
    for (int p = -45; p <= 38; p++) {
        float v = (float)pow(10.0, p);
        bad += check_shortest(v) + check_shortest(nextafterf(v, 0.0f)) +
               check_shortest(nextafterf(v, INFINITY));
    }
    assert_int_equal(bad, 0);
}

static void test_exact_strings(void **state)
{
    (void)state;
    static const struct {
        float v;
        const char *text;
    } cases[] = {{0.0f, "0"},       {-0.0f, "-0"},           {1.0f, "1"},
                 {0.1f, "0.1"},     {-0.5f, "-0.5"},         {1500.0f, "1500"},
                 {1e4f, "1e4"},     {0.001f, "1e-3"},        {0.0123f, "0.0123"},
                 {1.5e-7f, "1.5e-7"}, {3.4028235e38f, "3.4028235e38"}, {1e-45f, "1e-45"},
                 {16777216.0f, "16777216"}, {123456.79f, "123456.79"}, {0.33333334f, "0.33333334"}};
    char buf[JSON_NUM_FLOAT_MAX];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_num_float(buf, cases[i].v);
        assert_string_equal(buf, cases[i].text);
    }
    json_num_float_digits(buf, 0.123456f, 3);
    assert_string_equal(buf, "0.123");
    json_num_float_digits(buf, 0.9996f, 3);
    assert_string_equal(buf, "1");
    json_num_float_digits(buf, 0.1f, 9); /* the shortest: nine digits are "0.100000001" */
    assert_string_equal(buf, "0.1");
    /* JSON has no infinity or NaN: null, which callers never reach */
    assert_int_equal(json_num_float(buf, NAN), 4);
    assert_string_equal(buf, "null");
    json_num_float(buf, -INFINITY);
    assert_string_equal(buf, "null");
}

/* A round trip on every one of a few million random bit patterns, and every
 * check on one value in sixteen, and on typical latents and pixels. */
static void test_random_floats(void **state)
{
    (void)state;
    int bad = 0;
    for (long i = 0; i < 4000000 && bad < 10; i++) {
        uint32_t b = next_u32();
        float v = from_bits(b);
        if (!isfinite(v))
            continue;
        if (i % 32) {
            char text[JSON_NUM_FLOAT_MAX];
            json_num_float(text, v);
            if (to_bits(strtof(text, NULL)) != b)
                bad += wrong(v, text, "does not read back");
            continue;
        }
        bad += check_shortest(v);
        bad += check_digits(v, 1 + (int)(b % JSON_NUM_DIGITS_MAX));
        /* the values responses hold: latents and logvars, and pixels */
        bad += check_shortest((float)((double)(int32_t)b * 1e-9));
        bad += check_shortest((float)(b >> 8) / 16777216.0f);
    }
    assert_int_equal(bad, 0);
}

static void test_many_floats(void **state)
{
    (void)state;
    float v[257];
    for (int i = 0; i < 257; i++) v[i] = from_bits(next_u32() & 0xBF7FFFFF); /* finite */
    char *joined = malloc(257 * JSON_NUM_FLOAT_MAX), *want = malloc(257 * JSON_NUM_FLOAT_MAX);
    assert_non_null(joined);
    assert_non_null(want);
    for (int p = 0; p <= JSON_NUM_DIGITS_MAX; p += 3) {
        size_t len = json_num_floats(joined, v, 257, p), used = 0;
        for (int i = 0; i < 257; i++) {
            if (i)
                want[used++] = ',';
            used += json_num_float_digits(want + used, v[i], p);
        }
        assert_int_equal(len, used);
        assert_memory_equal(joined, want, len);
    }
    assert_int_equal(json_num_floats(joined, v, 0, 0), 0);
    free(joined);
    free(want);
}

/* json_num_floats(v) against json_num_float of each float joined by commas,
 * with each writer the CPU has: the eight-at-a-time writer takes the floats
 * of images and latents its own way, and must write the same text. Every
 * exponent with random mantissas and both signs, then arrays of pixels
 * (uniform and near 0 and 1), latents, and any bits, mixed in one array so
 * that the writer's blocks hold floats it writes in different forms. */
static int joined_differ(const float *v, size_t n, char *joined, char *want)
{
    size_t len = json_num_floats(joined, v, n, 0), used = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            want[used++] = ',';
        used += json_num_float(want + used, v[i]);
    }
    if (len == used && memcmp(joined, want, len) == 0)
        return 0;
    size_t at = 0;
    while (at < len && at < used && joined[at] == want[at]) at++;
    fprintf(stderr, "json_num_floats (%s) differs at byte %zu: \"%.40s\" for \"%.40s\"\n",
            json_num_floats_kernel(), at, joined + (at > 20 ? at - 20 : 0),
            want + (at > 20 ? at - 20 : 0));
    return 1;
}

static void test_floats_writers(void **state)
{
    (void)state;
    enum { N = 4099 };
    static float v[N];
    char *joined = malloc(N * JSON_NUM_FLOAT_MAX), *want = malloc(N * JSON_NUM_FLOAT_MAX);
    assert_non_null(joined);
    assert_non_null(want);
    const char *best = json_num_floats_kernel();
    static const char *const writers[] = {"avx512", "scalar"};
    int bad = 0, ran = 0;
    for (size_t w = 0; w < sizeof writers / sizeof *writers; w++) {
        if (!json_num_floats_use(writers[w])) {
            fprintf(stderr, "test_floats_writers: this CPU has no %s writer\n", writers[w]);
            continue;
        }
        ran++;
        for (uint32_t e = 0; e < 255 && !bad; e++) {
            for (int i = 0; i < N; i++)
                v[i] = from_bits((next_u32() & 0x807FFFFF) | e << 23);
            bad += joined_differ(v, N, joined, want);
        }
        for (int round = 0; round < 400 && !bad; round++) {
            for (int i = 0; i < N; i++) {
                uint32_t b = next_u32();
                switch ((b >> 29) & 7) {
                case 0: /* a pixel */
                case 1:
                case 2:
                    v[i] = (float)(next_u32() >> 8) / 16777216.0f;
                    break;
                case 3: /* a pixel near 0 or 1, as a sigmoid's */
                    v[i] = 1.0f / (1.0f + expf((float)((int32_t)next_u32()) * 1e-8f));
                    break;
                case 4: /* a latent or a logvar */
                case 5:
                    v[i] = (float)((double)(int32_t)next_u32() * 1e-9);
                    break;
                default: /* anything finite */
                    v[i] = from_bits(next_u32() & 0xBF7FFFFF);
                }
            }
            bad += joined_differ(v, N, joined, want);
        }
    }
    assert_true(json_num_floats_use(best));
    assert_true(ran >= 1);
    assert_false(json_num_floats_use("no such writer"));
    free(joined);
    free(want);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_strings),
        cmocka_unit_test(test_every_exponent),
        cmocka_unit_test(test_random_floats),
        cmocka_unit_test(test_many_floats),
        cmocka_unit_test(test_floats_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
