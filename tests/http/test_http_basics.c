/* Black-box tests of the HTTP skeleton: /healthz, /sample, routing errors,
 * the error body shape, and a clean exit on SIGTERM. Two daemons: one with a
 * small random model registered, one with an empty registry. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image.h"
#include "tests/lib/harness.h"

typedef struct {
    char model_dir[HARNESS_PATH_MAX];
    char empty_dir[HARNESS_PATH_MAX];
    harness_daemon model_daemon;
    harness_daemon empty_daemon;
    int port;       /* the daemon with a model */
    int empty_port; /* the daemon with an empty registry */
} fixture;

static fixture fx;

static int teardown(void **state);

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof fx);
    if (harness_tmpdir(fx.model_dir, sizeof fx.model_dir) ||
        harness_tmpdir(fx.empty_dir, sizeof fx.empty_dir))
        goto fail;
    if (harness_put_model(fx.model_dir, "digits", NULL, 7, NULL, err, sizeof err)) {
        fprintf(stderr, "put model: %s\n", err);
        goto fail;
    }
    fx.port = harness_daemon_start(&fx.model_daemon, fx.model_dir, NULL);
    fx.empty_port = harness_daemon_start(&fx.empty_daemon, fx.empty_dir, NULL);
    if (fx.port < 0 || fx.empty_port < 0)
        goto fail;
    *state = &fx;
    return 0;
fail:
    /* cmocka skips the group teardown when setup fails. */
    teardown(state);
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    harness_daemon_kill9(&fx.model_daemon); /* no-ops after the SIGTERM test */
    harness_daemon_kill9(&fx.empty_daemon);
    if (fx.model_dir[0])
        harness_rm_rf(fx.model_dir);
    if (fx.empty_dir[0])
        harness_rm_rf(fx.empty_dir);
    return 0;
}

static void expect_healthy(int port)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    const char *ctype = harness_header(&r, "Content-Type");
    assert_non_null(ctype);
    assert_string_equal(ctype, "application/json");
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(root, "status");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    assert_true(cJSON_IsString(status));
    assert_string_equal(status->valuestring, "ok");
    assert_true(cJSON_IsString(version));
    assert_true(strlen(version->valuestring) > 0);
    cJSON_Delete(root);
    harness_response_free(&r);
}

static void test_healthz(void **state)
{
    (void)state;
    expect_healthy(fx.port);
    expect_healthy(fx.empty_port);
}

/* Requests path and checks a 200 PNG grid of height x width grey pixels;
 * returns the response for more checks (caller frees). */
static void sample_png(const char *path, int height, int width, harness_response *r)
{
    assert_int_equal(harness_request(fx.port, "POST", path, NULL, NULL, 0, r), 0);
    assert_int_equal(r->status, 200);
    const char *ctype = harness_header(r, "content-type");
    assert_non_null(ctype);
    assert_string_equal(ctype, "image/png");
    float *pixels = NULL;
    int h = 0, w = 0;
    char err[256];
    assert_int_equal(image_decode_png(r->body, r->body_len, 1, &pixels, &h, &w, err, sizeof err),
                     VAE_OK);
    assert_int_equal(h, height);
    assert_int_equal(w, width);
    for (int i = 0; i < h * w; i++)
        assert_true(pixels[i] >= 0.0f && pixels[i] <= 1.0f);
    free(pixels);
}

static void test_sample_png(void **state)
{
    (void)state;
    harness_response r;
    sample_png("/sample?n=4&seed=42", 56, 56, &r); /* 2x2 grid of 28x28 */
    assert_non_null(harness_header(&r, "X-Seed"));
    assert_string_equal(harness_header(&r, "X-Seed"), "42");
    harness_response_free(&r);
    sample_png("/sample?seed=1", 112, 112, &r); /* default n = 16: 4x4 */
    harness_response_free(&r);
    sample_png("/sample?n=1", 28, 28, &r); /* seed drawn by the server, and told */
    const char *seed = harness_header(&r, "X-Seed");
    assert_non_null(seed);
    assert_true(seed[0] && strspn(seed, "0123456789") == strlen(seed));
    harness_response_free(&r);
    sample_png("/sample?n=4&model=digits&version=1", 56, 56, &r);
    assert_string_equal(harness_header(&r, "X-Model"), "digits");
    harness_response_free(&r);
}

static void test_sample_same_seed_same_bytes(void **state)
{
    (void)state;
    harness_response a, b, c;
    sample_png("/sample?n=4&seed=12345", 56, 56, &a);
    sample_png("/sample?n=4&seed=12345", 56, 56, &b);
    sample_png("/sample?n=4&seed=12346", 56, 56, &c);
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len);
    assert_false(a.body_len == c.body_len && !memcmp(a.body, c.body, a.body_len));
    harness_response_free(&a);
    harness_response_free(&b);
    harness_response_free(&c);
}

/* /sample takes no body: one sent to it is refused before it is read. */
static void test_sample_refuses_a_body(void **state)
{
    (void)state;
    harness_response r;
    const char body[] = "{\"ignored\": true}";
    assert_int_equal(
        harness_request(fx.port, "POST", "/sample?n=2&seed=3", NULL, body, sizeof body - 1, &r),
        0);
    assert_true(harness_expect_error(&r, 413, "payload_too_large"));
    assert_non_null(strstr((const char *)r.body, "takes no request body"));
    harness_response_free(&r);
    /* Chunked bodies too, once they come. */
    const char *const chunked[] = {"Transfer-Encoding: chunked", NULL};
    const char chunks[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=2&seed=3", chunked, chunks,
                                     sizeof chunks - 1, &r),
                     0);
    assert_true(harness_expect_error(&r, 413, "payload_too_large"));
    harness_response_free(&r);
    /* An empty body is no body. */
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=2&seed=3", NULL, "", 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
}

static void expect_bad_request(const char *path, const char *param)
{
    harness_response r;
    assert_int_equal(harness_request(fx.port, "POST", path, NULL, NULL, 0, &r), 0);
    if (!harness_expect_error(&r, 400, "bad_request"))
        fail_msg("POST %s", path);
    cJSON *root = harness_json(&r);
    const cJSON *message =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "error"),
                                         "message");
    char quoted[64];
    snprintf(quoted, sizeof quoted, "'%s'", param);
    if (!strstr(message->valuestring, quoted))
        fail_msg("POST %s: message \"%s\" does not name %s", path, message->valuestring, quoted);
    cJSON_Delete(root);
    harness_response_free(&r);
}

static void test_sample_bad_parameters(void **state)
{
    (void)state;
    expect_bad_request("/sample?n=0", "n");
    expect_bad_request("/sample?n=1025", "n"); /* n <= 1024 since the inference API */
    expect_bad_request("/sample?n=abc", "n");
    expect_bad_request("/sample?n=4x", "n");
    expect_bad_request("/sample?n=-1", "n");
    expect_bad_request("/sample?n=+4", "n");
    expect_bad_request("/sample?n=", "n");
    expect_bad_request("/sample?n", "n");
    expect_bad_request("/sample?n=%204", "n");
    expect_bad_request("/sample?n=99999999999999999999999", "n");
    expect_bad_request("/sample?n=4&seed=x1", "seed");
    expect_bad_request("/sample?n=4&seed=18446744073709551616", "seed"); /* 2^64 */
    expect_bad_request("/sample?n=4&seed=-5", "seed");
    expect_bad_request("/sample?n=4&model=", "model");
    expect_bad_request("/sample?n=4&model=..%2Fetc", "model");
}

static void test_sample_unknown_model(void **state)
{
    (void)state;
    harness_response r;
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=1&model=nope", NULL, NULL, 0, &r),
                     0);
    assert_true(harness_expect_error(&r, 404, "model_not_found"));
    harness_response_free(&r);
    assert_int_equal(
        harness_request(fx.port, "POST", "/sample?n=1&model=digits&version=99", NULL, NULL, 0, &r),
        0);
    assert_true(harness_expect_error(&r, 404, "model_not_found"));
    harness_response_free(&r);
}

static void test_routing_errors(void **state)
{
    (void)state;
    harness_response r;
    assert_int_equal(harness_request(fx.port, "GET", "/no/such/thing", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 404, "not_found"));
    harness_response_free(&r);

    assert_int_equal(harness_request(fx.port, "GET", "/sample", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 405, "method_not_allowed"));
    assert_non_null(harness_header(&r, "allow"));
    assert_non_null(strstr(harness_header(&r, "allow"), "POST"));
    harness_response_free(&r);

    assert_int_equal(harness_request(fx.port, "DELETE", "/healthz", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 405, "method_not_allowed"));
    assert_non_null(strstr(harness_header(&r, "Allow"), "GET"));
    harness_response_free(&r);

    /* HEAD follows GET routes, without a body. */
    assert_int_equal(harness_request(fx.port, "HEAD", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    harness_response_free(&r);
}

static void test_payload_too_large(void **state)
{
    (void)state;
    harness_response r;
    /* Declared over the 16 MiB default: refused before the body is read. */
    const char *const big[] = {"Content-Length: 100000000", NULL};
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=1", big, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 413, "payload_too_large"));
    harness_response_free(&r);
}

/* A chunked body declares no length: it is read up to the cap, then refused. */
static void test_body_cap_with_extra_args(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    harness_daemon d;
    const char *const args[] = {"--max-body-mb", "1", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);

    size_t big_len = (size_t)3 << 19; /* 1.5 MiB */
    char *body = malloc(big_len);
    assert_non_null(body);
    memset(body, 'x', big_len);
    /* Framed by hand: a chunk header, the bytes, the last chunk. */
    char *framed = malloc(big_len + 64);
    assert_non_null(framed);
    int head = snprintf(framed, 64, "%zx\r\n", big_len);
    memcpy(framed + head, body, big_len);
    memcpy(framed + head + big_len, "\r\n0\r\n\r\n", 7);
    harness_response r;
    const char *const json_chunked[] = {"Transfer-Encoding: chunked",
                                        "Content-Type: application/json", NULL};
    assert_int_equal(harness_request(port, "POST", "/decode", json_chunked, framed,
                                     (size_t)head + big_len + 7, &r),
                     0);
    assert_true(harness_expect_error(&r, 413, "payload_too_large"));
    harness_response_free(&r);

    /* Under the cap the body is read and the request goes on (to 503 here:
     * this registry is empty). */
    const char *const json[] = {"Content-Type: application/json", NULL};
    assert_int_equal(harness_request(port, "POST", "/decode", json, body, big_len / 2, &r), 0);
    assert_true(harness_expect_error(&r, 503, "no_model"));
    harness_response_free(&r);
    free(framed);
    free(body);
    assert_int_equal(harness_daemon_stop(&d), 0);
    assert_int_equal(harness_rm_rf(dir), 0);
}

static void test_malformed_requests(void **state)
{
    (void)state;
    harness_response r;
    static const char *const garbage[] = {
        "NOT HTTP AT ALL\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nBroken header line\r\n\r\n",
        "POST /sample HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: zz\r\n\r\n",
        "\r\n\r\n\r\n",
    };
    /* libmicrohttpd may keep a connection it cannot parse open until its idle
     * timeout instead of answering: do not wait for that. */
    harness_set_timeout_ms(1000);
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        /* Any 4xx, or a closed connection, is acceptable; a crash is not. */
        harness_send_raw(fx.port, garbage[i], strlen(garbage[i]), &r);
        if (r.status)
            assert_true(r.status >= 400 && r.status < 500);
        harness_response_free(&r);
    }
    /* Half a request, then the client goes away. */
    const char half[] = "POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc";
    harness_send_raw(fx.port, half, sizeof half - 1, &r);
    harness_set_timeout_ms(-1);
    harness_response_free(&r);
    expect_healthy(fx.port); /* none of it took the daemon down */
}

static void test_empty_registry_no_model(void **state)
{
    (void)state;
    harness_response r;
    assert_int_equal(harness_request(fx.empty_port, "POST", "/sample?n=4", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 503, "no_model"));
    cJSON *root = harness_json(&r);
    const cJSON *message =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "error"),
                                         "message");
    assert_non_null(strstr(message->valuestring, "vaed train"));
    cJSON_Delete(root);
    harness_response_free(&r);
}

static void test_still_healthy_after_bad_requests(void **state)
{
    (void)state;
    expect_healthy(fx.port);
    expect_healthy(fx.empty_port);
    harness_response r;
    sample_png("/sample?n=4&seed=42", 56, 56, &r);
    harness_response_free(&r);
}

static void test_sigterm_exits_zero(void **state)
{
    (void)state;
    assert_int_equal(harness_daemon_stop(&fx.model_daemon), 0);
    assert_int_equal(harness_daemon_stop(&fx.empty_daemon), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_sample_png),
        cmocka_unit_test(test_sample_same_seed_same_bytes),
        cmocka_unit_test(test_sample_refuses_a_body),
        cmocka_unit_test(test_sample_bad_parameters),
        cmocka_unit_test(test_sample_unknown_model),
        cmocka_unit_test(test_routing_errors),
        cmocka_unit_test(test_payload_too_large),
        cmocka_unit_test(test_body_cap_with_extra_args),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_empty_registry_no_model),
        cmocka_unit_test(test_still_healthy_after_bad_requests),
        cmocka_unit_test(test_sigterm_exits_zero),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
