/* Black-box tests of the floats in JSON answers: by default each is the
 * shortest text that reads back (strtof) as the float32 the npy answer of
 * the same request holds, bit for bit (and /sample's latents as the engine's
 * random stream makes them); ?precision=N gives at most N significant digits
 * of the same values; bad precision values are refused before any work. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rng.h"
#include "tests/lib/harness.h"

#define D 784
#define L 4 /* harness_small_config's latent */
#define N 5

typedef struct {
    char dir[HARNESS_PATH_MAX];
    harness_daemon daemon;
    int port;
} fixture;

static fixture fx;

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof fx);
    if (harness_tmpdir(fx.dir, sizeof fx.dir) ||
        harness_put_model(fx.dir, "digits", NULL, 11, NULL, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        return -1;
    }
    fx.port = harness_daemon_start(&fx.daemon, fx.dir, NULL);
    if (fx.port < 0)
        return -1;
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    harness_daemon_kill9(&fx.daemon);
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    return 0;
}

static void post(const char *path, const char *json_body, int want_status, harness_response *r)
{
    const char *headers[] = {"Content-Type: application/json", NULL};
    assert_int_equal(harness_request(fx.port, "POST", path, json_body ? headers : NULL, json_body,
                                     json_body ? strlen(json_body) : 0, r),
                     0);
    if (r->status != want_status)
        fail_msg("POST %s: %d %.300s", path, r->status, (const char *)r->body);
}

/* The significant digits of the number text [p, end): leading and trailing
 * zeros not counted. */
static int significant_digits(const char *p, const char *end)
{
    int sig = 0, seen = 0, zeros = 0;
    for (const char *q = p; q < end && *q != 'e'; q++) {
        if (*q < '0' || *q > '9')
            continue;
        if (*q != '0' || seen) {
            seen = 1;
            zeros = *q == '0' ? zeros + 1 : 0;
            sig++;
        }
    }
    return sig - zeros;
}

/* The numbers of the JSON array that follows "key": in body, as text: each
 * read with strtof into out (up to max), its significant digits (leading and
 * trailing zeros not counted) into digits when not NULL. Returns the count. */
static int numbers(const harness_response *r, const char *key, float *out, int *digits, int max)
{
    char want[32];
    snprintf(want, sizeof want, "\"%s\":", key);
    const char *p = strstr((const char *)r->body, want);
    assert_non_null(p);
    p += strlen(want);
    int n = 0, depth = 0;
    do {
        if (*p == '[') {
            depth++;
            p++;
        } else if (*p == ']') {
            depth--;
            p++;
        } else if (*p == ',') {
            p++;
        } else {
            char *end;
            float v = strtof(p, &end);
            if (end == p)
                fail_msg("not a number at \"%.20s\"", p);
            assert_true(n < max);
            if (digits)
                digits[n] = significant_digits(p, end);
            out[n++] = v;
            p = end;
        }
    } while (depth > 0 && *p);
    return n;
}

/* The float32 values of a (n, 1, 28, 28) npy answer. */
static const float *npy_floats(const harness_response *r, size_t count)
{
    assert_true(r->body_len > 10);
    size_t hlen = r->body[8] | ((size_t)r->body[9] << 8);
    assert_int_equal(r->body_len, 10 + hlen + count * sizeof(float));
    return (const float *)(r->body + 10 + hlen); /* x86: little-endian already */
}

static void assert_same_bits(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)))
            fail_msg("value %zu: the JSON text reads back as %.9g, the float is %.9g", i,
                     (double)a[i], (double)b[i]);
}

static void test_shortest_reads_back(void **state)
{
    (void)state;
    static float x[N * D], z[N * L], want_z[N * L];
    static int digits[N * D];
    harness_response js, npy;
    post("/sample?n=5&seed=3&format=json", NULL, 200, &js);
    post("/sample?n=5&seed=3&format=npy", NULL, 200, &npy);
    assert_int_equal(numbers(&js, "x", x, digits, N * D), N * D);
    assert_same_bits(x, npy_floats(&npy, N * D), N * D);
    /* fewer digits than "%.9g" where nine are not needed */
    long total = 0, nine = 0;
    for (int i = 0; i < N * D; i++) {
        assert_true(digits[i] <= 9);
        total += digits[i];
        char text[32];
        int len = snprintf(text, sizeof text, "%.9g", (double)x[i]);
        nine += significant_digits(text, text + len);
    }
    assert_true(total < nine);
    assert_int_equal(numbers(&js, "z", z, NULL, N * L), N * L);
    rng_state rng;
    rng_seed(&rng, 3);
    rng_normal_fill(&rng, want_z, N * L);
    assert_same_bits(z, want_z, N * L);
    harness_response_free(&npy);

    /* /decode of those latents, as text, gives the same images */
    char *rows = harness_json_rows(want_z, N, L), body[4096];
    snprintf(body, sizeof body, "{\"z\": %s}", rows);
    free(rows);
    harness_response dj, dn;
    post("/decode?format=json", body, 200, &dj);
    post("/decode?format=npy", body, 200, &dn);
    assert_int_equal(numbers(&dj, "x", x, NULL, N * D), N * D);
    assert_same_bits(x, npy_floats(&dn, N * D), N * D);
    harness_response_free(&dj);
    harness_response_free(&dn);

    /* precision=9 is the shortest too: the same bytes */
    harness_response nine_digits;
    post("/sample?n=5&seed=3&format=json&precision=9", NULL, 200, &nine_digits);
    assert_int_equal(nine_digits.body_len, js.body_len);
    assert_memory_equal(nine_digits.body, js.body, js.body_len);
    harness_response_free(&nine_digits);
    harness_response_free(&js);
}

static void test_precision(void **state)
{
    (void)state;
    static float x[N * D], full[N * D];
    static int digits[N * D];
    harness_response a, b;
    post("/sample?n=5&seed=4&format=json", NULL, 200, &a);
    post("/sample?n=5&seed=4&format=json&precision=3", NULL, 200, &b);
    assert_int_equal(numbers(&a, "x", full, NULL, N * D), N * D);
    assert_int_equal(numbers(&b, "x", x, digits, N * D), N * D);
    int fewer = 0;
    for (int i = 0; i < N * D; i++) {
        assert_true(digits[i] >= 1 && digits[i] <= 3);
        /* rounded to three digits: within half a unit of the third */
        if (fabs((double)x[i] - (double)full[i]) > 0.005 * fabs((double)full[i]) * 1.0001)
            fail_msg("value %d: %.9g at precision 3, %.9g in full", i, (double)x[i],
                     (double)full[i]);
        fewer += x[i] != full[i];
    }
    assert_true(fewer > 0);
    assert_true(b.body_len < a.body_len);
    harness_response_free(&a);
    harness_response_free(&b);

    /* /encode's latents too */
    char *rows = harness_json_rows(full, 1, D), *body = malloc(strlen(rows) + 16);
    assert_non_null(body);
    sprintf(body, "{\"x\": %s}", rows);
    free(rows);
    harness_response e;
    float mu[L];
    post("/encode?precision=1", body, 200, &e);
    assert_int_equal(numbers(&e, "mu", mu, digits, L), L);
    for (int i = 0; i < L; i++) assert_true(digits[i] <= 1);
    harness_response_free(&e);
    free(body);
}

static void test_bad_precision(void **state)
{
    (void)state;
    static const char *const bad[] = {"0", "10", "-1", "abc", "99999999999999999999", "",
                                      "3&precision=3", "1.5", "3x", "%2B3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        static const char *const paths[] = {"/sample?format=json&precision=", "/decode?precision=",
                                            "/encode?precision="};
        /* given twice: the one rule of every route (test_hostile) */
        const char *code = strchr(bad[i], '&') ? "duplicate_parameter" : "bad_request";
        for (size_t j = 0; j < sizeof paths / sizeof *paths; j++) {
            char path[160];
            snprintf(path, sizeof path, "%s%s", paths[j], bad[i]);
            harness_response r;
            post(path, j ? "{\"x\": [[0.5]], \"z\": [[0, 0, 0, 0]]}" : NULL, 400, &r);
            if (!harness_expect_error(&r, 400, code))
                fail_msg("POST %s: no 400 %s error body", path, code);
            if (!strstr((const char *)r.body, "precision"))
                fail_msg("POST %s: the message does not name the parameter: %s", path,
                         (const char *)r.body);
            harness_response_free(&r);
        }
        char path[160];
        snprintf(path, sizeof path, "/reconstruct?from=mnist:test:1&precision=%s", bad[i]);
        harness_response r;
        assert_int_equal(harness_request(fx.port, "GET", path, NULL, NULL, 0, &r), 0);
        if (!harness_expect_error(&r, 400, code))
            fail_msg("GET %s: %d", path, r.status);
        harness_response_free(&r);
    }
    harness_response ok;
    assert_int_equal(harness_request(fx.port, "GET", "/healthz", NULL, NULL, 0, &ok), 0);
    assert_int_equal(ok.status, 200);
    harness_response_free(&ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shortest_reads_back),
        cmocka_unit_test(test_precision),
        cmocka_unit_test(test_bad_precision),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
