/* Black-box tests of hostile input at the HTTP edge that test_hostile.c
 * does not cover: framing (header names and values, repeated Host and
 * length headers, transfer codings), each sent as raw bytes to a real vaed
 * on 127.0.0.1 and expected to get a JSON 4xx within a few seconds, with
 * the daemon serving afterwards. Bounded in count and time. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/harness.h"

static char dir[HARNESS_PATH_MAX];
static harness_daemon daemon_;
static int port;

static int teardown(void **state)
{
    (void)state;
    if (daemon_.pid && harness_daemon_stop(&daemon_) != 0)
        fprintf(stderr, "vaed did not exit cleanly\n");
    if (dir[0])
        harness_rm_rf(dir);
    return 0;
}

static int setup(void **state)
{
    char err[256];
    if (harness_tmpdir(dir, sizeof dir) ||
        harness_put_model(dir, "digits", NULL, 7, NULL, err, sizeof err) ||
        (port = harness_daemon_start(&daemon_, dir, NULL)) < 0) {
        teardown(state);
        return -1;
    }
    /* Every probe here is answered at once or not at all: a hang shows as
     * a failure within seconds rather than at the daemon's --timeout. */
    harness_set_timeout_ms(5000 * harness_slowdown());
    return 0;
}

static void expect_healthy(void)
{
    assert_int_equal(harness_healthz_within(port, 5000 * harness_slowdown()), 200);
}

/* Sends "METHOD PATH HTTP/1.1", Host: 127.0.0.1, the header lines given
 * (each ending \r\n) and body, and returns the status, r filled. */
static int send_framed(const char *method, const char *path, const char *headers,
                       const char *body, harness_response *r)
{
    char req[4096];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n%s",
                     method, path, headers, body);
    assert_true(n > 0 && (size_t)n < sizeof req);
    harness_send_whole(port, req, (size_t)n, r);
    return r->status;
}

/* A JSON body /encode accepts: one image of the test model (28x28 grey). */
static char *encode_body(void)
{
    size_t cap = 16 + 784 * 4;
    char *b = malloc(cap);
    assert_non_null(b);
    size_t k = (size_t)snprintf(b, cap, "{\"x\":[[");
    for (int i = 0; i < 784; i++)
        k += (size_t)snprintf(b + k, cap - k, "%s0.5", i ? "," : "");
    snprintf(b + k, cap - k, "]]}");
    return b;
}

/* libmicrohttpd 0.9.75 keeps "Host : x" as a header named "Host " (so the
 * tokenless Host check saw none), serves the first of two Hosts, and with
 * a Transfer-Encoding other than chunked waits for a body it cannot frame,
 * answering nothing until --timeout. Each is now a 400 naming the fault,
 * before the route or the Host check runs; the framings that are right
 * still work. */
static void test_header_framing(void **state)
{
    (void)state;
    char *json = encode_body();
    size_t len = strlen(json);
    char cl[64], chunked[4096];
    snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", len);
    snprintf(chunked, sizeof chunked, "%zx\r\n%s\r\n0\r\n\r\n", len, json);
    static const char *const ct = "Content-Type: application/json\r\n";
    char h[512];
    const struct {
        const char *what, *method, *path, *headers, *body;
    } bad[] = {
        {"space before the colon", "GET", "/healthz", "Host : attacker.example\r\n", ""},
        {"space before the colon, a mutation", "POST", "/jobs",
         "Host : attacker.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\n", "{}"},
        {"a space in a name", "GET", "/healthz", "X Y: 1\r\n", ""},
        {"bytes over 0x7f in a name", "GET", "/healthz", "X-\xc3\xa9: 1\r\n", ""},
        {"a control byte in a value", "GET", "/healthz", "X-A: 1\x01" "2\r\n", ""},
        {"a bare CR in a value", "GET", "/healthz", "X-A: 1\rX-B: 2\r\n", ""},
        {"a second, foreign Host", "GET", "/healthz", "Host: attacker.example\r\n", ""},
        {"Transfer-Encoding gzip, chunked", "POST", "/encode",
         "Content-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n", chunked},
        {"Transfer-Encoding xchunked", "POST", "/encode",
         "Content-Type: application/json\r\nTransfer-Encoding: xchunked\r\n", json},
        {"Transfer-Encoding twice", "POST", "/encode",
         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: chunked\r\n", chunked},
        {"Content-Length and Transfer-Encoding", "POST", "/encode",
         "Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n",
         chunked},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        harness_response r;
        int64_t t0 = harness_now_ms();
        int status = send_framed(bad[i].method, bad[i].path, bad[i].headers, bad[i].body, &r);
        if (!harness_expect_error(&r, 400, "bad_request"))
            fail_msg("%s: %d after %lld ms: %.200s", bad[i].what, status,
                     (long long)(harness_now_ms() - t0), r.body ? (const char *)r.body : "");
        harness_response_free(&r);
    }
    /* HTTP/1.1 without a Host (HTTP/1.0 may omit it) */
    static const char no_host[] = "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    harness_response r;
    harness_send_whole(port, no_host, sizeof no_host - 1, &r);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);
    static const char old_no_host[] = "GET /healthz HTTP/1.0\r\n\r\n";
    harness_send_whole(port, old_no_host, sizeof old_no_host - 1, &r);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);

    /* Content-Length twice, with the same value */
    snprintf(h, sizeof h, "%s%s%s", ct, cl, cl);
    send_framed("POST", "/encode", h, json, &r);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);

    /* The right framings: a length, chunked (any case), a tab in a value */
    snprintf(h, sizeof h, "%s%sX-Tab: a\tb\r\n", ct, cl);
    assert_int_equal(send_framed("POST", "/encode", h, json, &r), 200);
    harness_response_free(&r);
    snprintf(h, sizeof h, "%sTransfer-Encoding: Chunked\r\n", ct);
    assert_int_equal(send_framed("POST", "/encode", h, chunked, &r), 200);
    harness_response_free(&r);
    free(json);
    expect_healthy();
}

/* cJSON reads the first value of a body and a string up to a NUL: a job
 * spec {"model":"a\u0000b"} queued a job for the model "a", and one
 * followed by any bytes (a second object, "]]][[[", which also hid its
 * nesting from the depth count) was queued as its first object. Each is a
 * 400 now, on the job, alias and inference routes alike, and no job is
 * queued. */
static void test_json_text_as_sent(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "{\"model\":\"a\\u0000b\",\"data\":\"mnist\",\"epochs\":1,\"limit\":10}",
        "{\"model\":\"j\",\"data\":\"mnist\\u0000x\",\"epochs\":1,\"limit\":10}",
        "{\"model\":\"j\",\"data\":\"mnist\",\"epochs\":1,\"limit\":10} xyz",
        "{\"model\":\"j\",\"data\":\"mnist\",\"epochs\":1,\"limit\":10}{\"model\":\"k\"}",
        "{\"model\":\"j\",\"data\":\"mnist\",\"epochs\":1,\"limit\":10}]]]]]]]]]][[[[[[[[[[",
    };
    static const char *const paths[] = {"/jobs", "/models/digits/aliases/x", "/encode"};
    static const char *const methods[] = {"POST", "PUT", "POST"};
    const char *const json[] = {"Content-Type: application/json", NULL};
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
            harness_response r;
            harness_request(port, methods[p], paths[p], json, bodies[i], strlen(bodies[i]), &r);
            if (!harness_expect_error(&r, 400, "bad_request"))
                fail_msg("%s %s %s: %d %.200s", methods[p], paths[p], bodies[i], r.status,
                         r.body ? (const char *)r.body : "");
            harness_response_free(&r);
        }
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/jobs", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    if (strstr((const char *)r.body, "\"id\""))
        fail_msg("a job was queued: %.300s", (const char *)r.body);
    harness_response_free(&r);
    expect_healthy();
}

/* libmicrohttpd decodes %00 into the path, which then ends there:
 * GET /models/digits%00x was GET /models/digits. A 400 now. */
static void test_path_nul(void **state)
{
    (void)state;
    static const char *const paths[] = {"/models/digits%00x", "/models/digits/versions/1%00",
                                        "/healthz%00"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        harness_response r;
        harness_request(port, "GET", paths[i], NULL, NULL, 0, &r);
        if (!harness_expect_error(&r, 400, "bad_request"))
            fail_msg("%s: %d %.200s", paths[i], r.status, r.body ? (const char *)r.body : "");
        harness_response_free(&r);
    }
    harness_response r; /* %00 in the query is the handlers' to refuse; %2500 is "%00" */
    assert_int_equal(harness_request(port, "GET", "/models/digits?x=%2500", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    expect_healthy();
}

/* Sends start to a vaed on port p, then one byte every 250 ms, 60 at most
 * (15 s): 1 when the daemon closed the connection first. */
static int trickle(int p, const char *start, const char *what)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(send(fd, start, strlen(start), MSG_NOSIGNAL), (ssize_t)strlen(start));
    int64_t t0 = harness_now_ms();
    int sent = 0, closed = 0;
    for (; sent < 60 && !closed; sent++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 250) > 0) {
            char buf[256];
            closed = recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0;
        }
        if (!closed)
            closed = send(fd, "a", 1, MSG_NOSIGNAL) != 1;
    }
    close(fd);
    print_message("%s: %s after %d bytes, %lld ms\n", what, closed ? "closed" : "open", sent,
                  (long long)(harness_now_ms() - t0));
    return closed;
}

/* Against a vaed of its own with --timeout 2, trickle(start) is closed by
 * the daemon, counted as limit (NULL: not counted), and the daemon serves
 * on. */
static void expect_slow_client_closed(const char *start, const char *what, const char *limit)
{
    char own[HARNESS_PATH_MAX], sample[128];
    harness_daemon d;
    const char *const args[] = {"--timeout", "2", NULL};
    assert_int_equal(harness_tmpdir(own, sizeof own), 0);
    int p = harness_daemon_start(&d, own, args);
    assert_true(p > 0);
    assert_true(trickle(p, start, what));
    snprintf(sample, sizeof sample, "vaed_limit_refusals_total{limit=\"%s\"}", limit ? limit : "");
    if (limit && harness_metric(p, sample) < 1)
        fail_msg("%s: not counted as %s", what, limit);
    assert_int_equal(harness_healthz_within(p, 5000 * harness_slowdown()), 200);
    assert_int_equal(harness_daemon_stop(&d), 0);
    harness_rm_rf(own);
}

/* libmicrohttpd's --timeout restarts at every byte, so a client sending a
 * byte of its headers now and then held its connection for as long as it
 * liked (and --max-per-ip of them from each of two addresses locked
 * everyone out). Now the headers must be in within --timeout: a client
 * trickling a header byte every 250 ms is closed long before its 60 bytes
 * (15 s) are sent. */
static void test_slow_headers(void **state)
{
    (void)state;
    expect_slow_client_closed("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
                              "trickling headers", NULL);
}

/* The same for a body: a declared length holds its share of
 * --max-bodies-mb while it is read, so 32 clients each sending a byte of
 * a 16 MiB body now and then kept every other body out for as long as they
 * liked. Now a body gets --timeout and a second more per
 * --min-body-rate-kb (64 KiB) that arrived: a body trickled a byte every
 * 250 ms is closed long before 15 s, and counted as body_rate. */
static void test_slow_body(void **state)
{
    (void)state;
    expect_slow_client_closed("POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                              "application/json\r\nContent-Length: 1048576\r\n\r\n",
                              "trickling body", "body_rate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_framing),
        cmocka_unit_test(test_json_text_as_sent),
        cmocka_unit_test(test_path_nul),
        cmocka_unit_test(test_slow_headers),
        cmocka_unit_test(test_slow_body),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
