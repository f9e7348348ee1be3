/* /reconstruct and /traverse are bounded by the flags /sample and
 * /interpolate are (issue #12, "every limit is a vaed serve flag"): images
 * by --max-n, steps by --max-steps, their memory by --request-mem-mb, each
 * refusal a 4xx JSON error naming the flag and counted in /metrics. The
 * daemon runs with --max-n 100 and --max-steps 40, above the fixed 64
 * images and 32 steps these routes had, so a request at the bound shows
 * the flag, not a constant, decides.
 *
 * The data set is a small "mnist" of stripes (harness_write_idx_set) under
 * the test's own VAED_DATA; the model the harness's small MLP.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/lib/harness.h"

typedef struct {
    char dir[HARNESS_PATH_MAX];
    char data[HARNESS_PATH_MAX + 16];
} fixture;

static fixture fx;

static int setup(void **state)
{
    (void)state;
    char sets[HARNESS_PATH_MAX + 16], mnist[HARNESS_PATH_MAX + 32], err[256];
    if (harness_tmpdir(fx.dir, sizeof fx.dir))
        return -1;
    snprintf(sets, sizeof sets, "%s/sets", fx.dir);
    snprintf(mnist, sizeof mnist, "%s/mnist", sets);
    snprintf(fx.data, sizeof fx.data, "%s/data", fx.dir);
    if (mkdir(sets, 0700) || harness_write_idx_set(mnist, 10, 128) ||
        harness_put_model(fx.data, "digits", NULL, 5, NULL, err, sizeof err)) {
        fprintf(stderr, "test_explore_bounds: setup: %s\n", err);
        return -1;
    }
    setenv("VAED_DATA", sets, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    harness_rm_rf(fx.dir);
    return 0;
}

/* GET path: status, and for an error its code and a message holding
 * names (NULL: not checked). */
static void expect_get(int port, const char *path, int status, const char *code,
                       const char *names)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status != status)
        print_message("GET %s: %d %.300s\n", path, r.status, r.body ? (char *)r.body : "");
    assert_int_equal(r.status, status);
    if (code) {
        assert_true(harness_expect_error(&r, status, code));
        if (names && !strstr((const char *)r.body, names))
            fail_msg("GET %s: the message does not name %s: %s", path, names, (char *)r.body);
    }
    harness_response_free(&r);
}

/* The "x" array of a JSON answer has n entries. */
static void expect_images(int port, const char *path, int n)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = harness_json(&r);
    assert_non_null(j);
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "x");
    assert_true(cJSON_IsArray(x));
    assert_int_equal(cJSON_GetArraySize(x), n);
    cJSON_Delete(j);
    harness_response_free(&r);
}

/* vaed_limit_refusals_total{limit="name"} in /metrics. */
static long long refusals(int port, const char *name)
{
    char sample[96];
    snprintf(sample, sizeof sample, "vaed_limit_refusals_total{limit=\"%s\"}", name);
    return (long long)harness_metric(port, sample);
}

static void test_flags_bound_reconstruct_and_traverse(void **state)
{
    (void)state;
    harness_daemon d;
    const char *const args[] = {"--max-n", "100", "--max-steps", "40", NULL};
    int port = harness_daemon_start(&d, fx.data, args);
    assert_true(port > 0);

    /* At the bounds: 100 images (past the old 64), 40 steps (past 32). */
    expect_images(port, "/reconstruct?from=mnist:test:0-99&format=json", 100);
    expect_images(port, "/traverse?from=mnist:test:3&dims=0-1&steps=40&format=json", 80);
    expect_get(port, "/reconstruct?from=mnist:test:0-99&format=png", 200, NULL, NULL);

    /* One past each: refused before any work, naming the flag, counted. */
    expect_get(port, "/reconstruct?from=mnist:test:0-100", 422, "unprocessable", "--max-n");
    expect_get(port, "/traverse?from=mnist:test:3&dims=0-1&steps=41", 400, "bad_request",
               "--max-steps");
    expect_get(port, "/traverse?from=mnist:test:3&dims=0-3&steps=40", 422, "unprocessable",
               "--max-n");
    assert_int_equal(refusals(port, "max_n"), 2);
    assert_int_equal(refusals(port, "max_steps"), 1);

    /* A body of 101 images: past --max-n, and the daemon serves on. */
    size_t cap = 101 * (784 * 2 + 2) + 64, len = 0;
    char *body = malloc(cap); /* owned: freed below */
    assert_non_null(body);
    len += (size_t)snprintf(body + len, cap - len, "{\"x\":[");
    for (int i = 0; i < 101; i++) {
        body[len++] = i ? ',' : '[';
        if (i)
            body[len++] = '[';
        for (int k = 0; k < 784; k++) {
            body[len++] = '0';
            body[len++] = k < 783 ? ',' : ']';
        }
    }
    len += (size_t)snprintf(body + len, cap - len, "]}");
    const char *headers[] = {"Content-Type: application/json", NULL};
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/reconstruct?format=json", headers, body, len,
                                     &r),
                     0);
    assert_true(r.status == 413 || r.status == 422);
    print_message("POST /reconstruct of 101 images: %d %.200s\n", r.status, (char *)r.body);
    if (r.status == 422) /* the count: the flag that bounds it is named */
        assert_non_null(strstr((const char *)r.body, "--max-n"));
    harness_response_free(&r);
    /* 100 of them (the last image dropped) are within the bound. */
    char *cut = strrchr(body, '[');
    assert_non_null(cut);
    cut[-1] = ']';
    cut[0] = '}';
    len = (size_t)(cut - body) + 1;
    assert_int_equal(harness_request(port, "POST", "/reconstruct?format=json", headers, body, len,
                                     &r),
                     0);
    if (r.status != 200)
        print_message("POST /reconstruct of 100 images: %d %.200s\n", r.status, (char *)r.body);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    free(body);
    expect_get(port, "/healthz", 200, NULL, NULL);
    assert_int_equal(harness_daemon_stop(&d), 0);
}

/* What the images cost is --request-mem-mb's to refuse, as for /sample. */
static void test_request_memory_bounds_reconstruct(void **state)
{
    (void)state;
    harness_daemon d;
    const char *const args[] = {"--request-mem-mb", "1", NULL};
    int port = harness_daemon_start(&d, fx.data, args);
    assert_true(port > 0);
    expect_get(port, "/reconstruct?from=mnist:test:0-127&format=json", 422, "unprocessable",
               "--request-mem-mb");
    expect_get(port, "/reconstruct?from=mnist:test:0-1&format=json", 200, NULL, NULL);
    assert_int_equal(refusals(port, "request_memory"), 1);
    assert_int_equal(harness_daemon_stop(&d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags_bound_reconstruct_and_traverse),
        cmocka_unit_test(test_request_memory_bounds_reconstruct),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
