/* Black-box tests of hostile input: each test builds an attack itself, runs
 * it against a real vaed on 127.0.0.1 and checks what it cost (time, and
 * the daemon's peak memory read from /proc/PID/status after resetting it
 * through /proc/PID/clear_refs), what it was answered, and that the daemon
 * is alive and serving afterwards. Every attack is bounded in count and
 * time. Attack connections come from 127.0.0.2 (another loopback address),
 * so the per-address limit treats them as another client than the checks
 * from 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <zlib.h>

#include "engine/image.h"
#include "tests/lib/harness.h"

typedef struct {
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    int port;
} fixture;

static fixture fx;

static int teardown(void **state);

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof fx);
    if (harness_tmpdir(fx.dir, sizeof fx.dir))
        goto fail;
    if (harness_put_model(fx.dir, "digits", NULL, 7, NULL, err, sizeof err)) {
        fprintf(stderr, "put model: %s\n", err);
        goto fail;
    }
    fx.port = harness_daemon_start(&fx.d, fx.dir, NULL);
    if (fx.port < 0)
        goto fail;
    *state = &fx;
    return 0;
fail:
    teardown(state);
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    if (fx.d.pid) {
        int rc = harness_daemon_stop(&fx.d);
        if (rc != 0)
            fprintf(stderr, "vaed exited with %d\n", rc);
    }
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    return 0;
}

/* ---- measuring -------------------------------------------------------------- */

/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM"); -1 when unreadable. */
static long status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Resets the daemon's peak RSS (VmHWM) to its current RSS and returns that. */
static long peak_reset(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("5", f);
    fclose(f);
    return status_kb(pid, "VmRSS");
}

/* How far the peak rose above base (kB), printed with what. */
static long peak_growth_kb(pid_t pid, long base, const char *what)
{
    long hwm = status_kb(pid, "VmHWM");
    assert_true(hwm > 0);
    print_message("%s: peak RSS %ld kB above the %ld kB before\n", what, hwm - base, base);
    return hwm - base;
}

/* A memory bound for the tests: kb, or three times it under the
 * sanitizers (ASan keeps freed memory in quarantine and adds shadow). */
static long mem_budget_kb(long kb)
{
    return kb * harness_slowdown();
}

static void expect_healthy(void)
{
    harness_response r;
    assert_int_equal(harness_request(fx.port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    /* and still computing */
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=2&seed=1", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
}


/* ---- attack connections ---------------------------------------------------- */

/* A TCP connection to 127.0.0.1:port from source address src ("127.0.0.2"):
 * the fd, or -1. */
static int connect_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &a.sin_addr);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || connect(fd, (struct sockaddr *)&to, sizeof to)) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t len)
{
    const char *b = p;
    while (len) {
        ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

/* What came back on fd within ms milliseconds (NUL-terminated, at most
 * cap - 1 bytes): its length, 0 when the server closed without a word, -1
 * when nothing came (still open). */
static ssize_t read_within(int fd, char *buf, size_t cap, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return -1;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    if (n < 0)
        n = 0; /* reset: closed */
    buf[n] = '\0';
    return n;
}

/* GET path from 127.0.0.1, which must answer 200: the seconds it took. */
static double timed_get(int port, const char *path)
{
    double t0 = harness_now_s();
    harness_response r;
    assert_int_equal(harness_request(port, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    return harness_now_s() - t0;
}

/* GET /healthz n times, one after another: each must be a 200; returns the
 * 99th percentile of their times (seconds). */
static double healthz_p99(int port, int n)
{
    double *t = calloc((size_t)n, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < n; i++)
        t[i] = timed_get(port, "/healthz");
    for (int i = 1; i < n; i++) /* insertion sort: n is small */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    double p99 = t[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
    free(t);
    return p99;
}

/* A daemon of its own, with a model, started with args. */
static int start_own(harness_daemon *d, char *dir, size_t dirlen, const char *const *args)
{
    char err[256];
    assert_int_equal(harness_tmpdir(dir, dirlen), 0);
    assert_int_equal(harness_put_model(dir, "digits", NULL, 7, NULL, err, sizeof err), 0);
    int port = harness_daemon_start(d, dir, args);
    assert_true(port > 0);
    return port;
}

static void stop_own(harness_daemon *d, const char *dir)
{
    assert_int_equal(harness_daemon_stop(d), 0);
    harness_rm_rf(dir);
}

/* The value of the /metrics line that starts with key and a space; -1 when
 * there is none. */
static long metric(int port, const char *key)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    char line[128];
    snprintf(line, sizeof line, "\n%s ", key);
    const char *at = strstr((const char *)r.body, line);
    long v = at ? strtol(at + strlen(line), NULL, 10) : -1;
    harness_response_free(&r);
    return v;
}

/* A counter of /metrics: vaed_limit_refusals_total{limit="name"}. */
static long refusals(int port, const char *name)
{
    char key[96];
    snprintf(key, sizeof key, "vaed_limit_refusals_total{limit=\"%s\"}", name);
    return metric(port, key);
}


/* ---- a tokenless daemon on a desktop ------------------------------------------ */

/* Sends method path with the given extra header lines ("Name: v\r\n"...) and
 * body to port; returns the status (the response in *r, caller frees). */
static int raw_status(int port, const char *method, const char *path, const char *headers,
                      const char *body, harness_response *r)
{
    char req[2048];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             method, path, headers, body ? strlen(body) : 0, body ? body : "");
    harness_send_whole(port, req, strlen(req), r); /* complete: Content-Length, close */
    return r->status;
}

static void expect_status(int port, const char *method, const char *path, const char *headers,
                          const char *body, int status, const char *code)
{
    harness_response r;
    int got = raw_status(port, method, path, headers, body, &r);
    if (code ? !harness_expect_error(&r, status, code) : got != status)
        fail_msg("%s %s with %s-> %d %.300s", method, path, headers, got,
                 r.body ? (const char *)r.body : "");
    harness_response_free(&r);
}

/* A page that rebinds its name to 127.0.0.1 sends that name as Host; a page
 * of another site that posts here sends its Origin; a body posted with no
 * Content-Type is what a page can send without asking. None gets through a
 * server without a token; this machine's own names do. */
static void test_tokenless_rebinding_and_origin(void **state)
{
    (void)state;
    const char job[] = "{\"model\": \"m\", \"data\": \"mnist\", \"epochs\": 1, \"limit\": 64}";
    long hosts = refusals(fx.port, "host"), origins = refusals(fx.port, "origin");
    /* rebinding: every route, reads included */
    expect_status(fx.port, "GET", "/models", "Host: attacker.example\r\n", NULL, 403, "forbidden");
    expect_status(fx.port, "GET", "/models/digits/versions/1/file",
                  "Host: attacker.example:8080\r\n", NULL, 403, "forbidden");
    expect_status(fx.port, "DELETE", "/models/digits/versions/1", "Host: attacker.example\r\n",
                  NULL, 403, "forbidden");
    expect_status(fx.port, "POST", "/jobs",
                  "Host: attacker.example\r\nContent-Type: application/json\r\n", job, 403,
                  "forbidden");
    assert_int_equal(refusals(fx.port, "host"), hosts + 4);
    /* a foreign Origin on anything that is not a read */
    const char *foreign = "Host: 127.0.0.1\r\nOrigin: http://attacker.example\r\n";
    expect_status(fx.port, "DELETE", "/models/digits/versions/1", foreign, NULL, 403, "forbidden");
    expect_status(fx.port, "POST", "/jobs/1/cancel", foreign, NULL, 403, "forbidden");
    expect_status(fx.port, "POST", "/sample?n=1", "Host: 127.0.0.1\r\nOrigin: null\r\n", NULL,
                  403, "forbidden");
    char headers[256];
    snprintf(headers, sizeof headers, "%sContent-Type: application/json\r\n", foreign);
    expect_status(fx.port, "PUT", "/models/digits/aliases/prod", headers, "{\"version\": 1}", 403,
                  "forbidden");
    assert_int_equal(refusals(fx.port, "origin"), origins + 4);
    /* no Content-Type, or a form's: 415 before the body is looked at */
    expect_status(fx.port, "POST", "/jobs", "Host: 127.0.0.1\r\n", job, 415,
                  "unsupported_media_type");
    expect_status(fx.port, "PUT", "/models/digits/aliases/prod",
                  "Host: 127.0.0.1\r\nContent-Type: text/plain\r\n", "{\"version\": 1}", 415,
                  "unsupported_media_type");
    expect_status(fx.port, "POST", "/jobs",
                  "Host: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n", job,
                  415, "unsupported_media_type");
    expect_status(fx.port, "POST", "/models/digits/checkpoints",
                  "Host: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n",
                  "not a checkpoint", 415, "unsupported_media_type");
    /* nothing changed */
    expect_status(fx.port, "GET", "/models/digits/versions/1", "Host: 127.0.0.1\r\n", NULL, 200,
                  NULL);
    expect_status(fx.port, "GET", "/models/digits/versions/prod", "Host: 127.0.0.1\r\n", NULL,
                  404, "model_not_found");
    harness_response r;
    assert_int_equal(harness_request(fx.port, "GET", "/jobs", NULL, NULL, 0, &r), 0);
    cJSON *root = harness_json(&r);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "jobs")), 0);
    cJSON_Delete(root);
    harness_response_free(&r);
    /* this machine's own names, and reads from any page (the browser keeps
     * their answers from it: no CORS headers) */
    snprintf(headers, sizeof headers, "Host: localhost:%d\r\n", fx.port);
    expect_status(fx.port, "GET", "/healthz", headers, NULL, 200, NULL);
    expect_status(fx.port, "GET", "/healthz", "Host: 127.0.0.1\r\nOrigin: http://attacker.example\r\n",
                  NULL, 200, NULL);
    snprintf(headers, sizeof headers,
             "Host: localhost:%d\r\nOrigin: http://localhost:%d\r\n"
             "Content-Type: application/json\r\n",
             fx.port, fx.port);
    expect_status(fx.port, "PUT", "/models/digits/aliases/prod", headers, "{\"version\": 1}", 200,
                  NULL);
    expect_healthy();
}

/* With a token the daemon may be reached by any name: curl and a CI job
 * (no Origin, any Host, a body sent with no Content-Type or curl's default
 * one) keep working, and the token is what guards. A body in a type that
 * wraps it (multipart) is still 415. */
static void test_token_any_host(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    char token_path[HARNESS_PATH_MAX + 16];
    snprintf(token_path, sizeof token_path, "%s/token", dir);
    FILE *f = fopen(token_path, "w");
    assert_non_null(f);
    fputs("0123456789abcdef0123\n", f);
    fclose(f);
    assert_int_equal(chmod(token_path, 0600), 0);
    assert_int_equal(harness_put_model(dir, "digits", NULL, 7, NULL, err, sizeof err), 0);
    harness_daemon d;
    const char *const args[] = {"--token-file", token_path, "--workers", "0", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);
    expect_status(port, "GET", "/models", "Host: vaed.example.com\r\n", NULL, 200, NULL);
    const char *auth = "Authorization: Bearer 0123456789abcdef0123";
    const char job[] = "{\"model\": \"m\", \"data\": \"mnist\", \"epochs\": 1}";
    const char *curl_d[] = {auth, "Content-Type: application/x-www-form-urlencoded", NULL};
    const char *untyped[] = {auth, NULL};
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/jobs", curl_d, job, strlen(job), &r), 0);
    assert_int_equal(r.status, 202);
    harness_response_free(&r);
    assert_int_equal(harness_request(port, "POST", "/jobs", untyped, job, strlen(job), &r), 0);
    assert_int_equal(r.status, 202);
    harness_response_free(&r);
    uint8_t *ckpt = NULL;
    size_t ckpt_len = 0;
    assert_int_equal(harness_model_bytes(NULL, 5, &ckpt, &ckpt_len, err, sizeof err), 0);
    assert_int_equal(harness_request(port, "POST", "/models/ci/checkpoints", curl_d, ckpt,
                                     ckpt_len, &r),
                     0);
    assert_int_equal(r.status, 201);
    harness_response_free(&r);
    const char *multipart[] = {auth, "Content-Type: multipart/form-data; boundary=x", NULL};
    assert_int_equal(harness_request(port, "POST", "/models/ci/checkpoints", multipart, ckpt,
                                     ckpt_len, &r),
                     0);
    assert_true(harness_expect_error(&r, 415, "unsupported_media_type"));
    harness_response_free(&r);
    assert_int_equal(harness_request(port, "PUT", "/models/ci/aliases/prod", untyped,
                                     "{\"version\": 1}", 14, &r),
                     0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    free(ckpt);
    expect_status(port, "PUT", "/models/digits/aliases/prod",
                  "Host: vaed.example.com:8080\r\nContent-Type: application/json\r\n",
                  "{\"version\": 1}", 401, "unauthorized");
    expect_status(port, "PUT", "/models/digits/aliases/prod",
                  "Host: vaed.example.com:8080\r\nContent-Type: application/json\r\n"
                  "Authorization: Bearer 0123456789abcdef0123\r\n",
                  "{\"version\": 1}", 200, NULL);
    stop_own(&d, dir);
}


/* ---- event streams ------------------------------------------------------------- */

/* POST /jobs of a small job; its id. */
static long submit_job(int port)
{
    const char job[] = "{\"model\": \"m\", \"data\": \"mnist\", \"epochs\": 1, \"limit\": 64}";
    const char *headers[] = {"Content-Type: application/json", NULL};
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/jobs", headers, job, strlen(job), &r), 0);
    assert_int_equal(r.status, 202);
    cJSON *root = harness_json(&r);
    long id = (long)cJSON_GetObjectItemCaseSensitive(root, "id")->valuedouble;
    cJSON_Delete(root);
    harness_response_free(&r);
    return id;
}

/* 256 connections asking for the event stream of a job that never starts
 * (no workers), with the default limits: --max-streams are kept, the rest
 * are told 503 at once, /healthz answers throughout, and the streams kept
 * end at --stream-max-s with a retry line; a client resuming with
 * Last-Event-ID gets only what it has not seen. */
static void test_stream_flood(void **state)
{
    (void)state;
    enum { N = 256 };
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--workers", "0", "--stream-max-s", "3", "--max-per-ip", "0", NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    long id = submit_job(port);
    double idle = healthz_p99(port, 100);
    char req[256];
    int req_len = snprintf(req, sizeof req,
                           "GET /jobs/%ld/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", id);
    int fds[N], streams = 0, busy = 0;
    double t0 = harness_now_s();
    for (int i = 0; i < N; i++) {
        fds[i] = connect_from("127.0.0.2", port);
        assert_true(fds[i] >= 0);
        assert_int_equal(send_all(fds[i], req, (size_t)req_len), 0);
    }
    for (int i = 0; i < N; i++) {
        char buf[2048];
        ssize_t n = read_within(fds[i], buf, sizeof buf, 2000 * harness_slowdown());
        assert_true(n > 0);
        if (strstr(buf, "HTTP/1.1 200")) {
            assert_non_null(strstr(buf, "text/event-stream"));
            streams++;
        } else {
            if (!strstr(buf, "HTTP/1.1 503") || !strcasestr(buf, "\r\nRetry-After: 5\r\n"))
                fail_msg("stream %d: %s", i, buf);
            busy++;
            close(fds[i]);
            fds[i] = -1;
        }
    }
    print_message("stream flood: %d streams, %d refused\n", streams, busy);
    assert_int_equal(streams, 32);
    double attacked = healthz_p99(port, 100);
    print_message("stream flood: /healthz p99 %.2f ms idle, %.2f ms with %d streams open\n",
                  idle * 1e3, attacked * 1e3, streams);
    assert_true(attacked < 0.5 * harness_slowdown());
    assert_true(refusals(port, "event_streams") >= busy);
    /* The streams kept end at their age, between events, with a retry line. */
    for (int i = 0; i < N; i++) {
        if (fds[i] < 0)
            continue;
        char all[8192] = "";
        size_t got = 0;
        for (;;) {
            char buf[2048];
            ssize_t n = read_within(fds[i], buf, sizeof buf, 6000 * harness_slowdown());
            assert_true(n >= 0); /* something came, or the end */
            if (n == 0)
                break;
            if (got + (size_t)n < sizeof all) {
                memcpy(all + got, buf, (size_t)n);
                got += (size_t)n;
                all[got] = '\0';
            }
        }
        assert_non_null(strstr(all, "retry: "));
        close(fds[i]);
    }
    double lasted = harness_now_s() - t0;
    print_message("stream flood: the streams ended after %.1f s\n", lasted);
    assert_true(lasted >= 2.5 && lasted < 3.0 + 4.0 * harness_slowdown());
    assert_true(refusals(port, "stream_age") >= streams);
    /* Resuming after event 1: only the keep-alive until the end. */
    int fd = connect_from("127.0.0.1", port);
    snprintf(req, sizeof req,
             "GET /jobs/%ld/events HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: 1\r\n\r\n", id);
    assert_int_equal(send_all(fd, req, strlen(req)), 0);
    char buf[2048];
    assert_true(read_within(fd, buf, sizeof buf, 2000 * harness_slowdown()) > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_null(strstr(buf, "id: 1\n"));
    close(fd);
    stop_own(&d, dir);
}


/* ---- PNGs ------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends one chunk to buf (at *len; the caller made room). */
static void put_chunk(uint8_t *buf, size_t *len, const char type[4], const uint8_t *data,
                      size_t n)
{
    uint8_t *c = buf + *len;
    put_be32(c, (uint32_t)n);
    memcpy(c + 4, type, 4);
    if (n)
        memcpy(c + 8, data, n);
    put_be32(c + 8 + n, (uint32_t)crc32(crc32(0L, Z_NULL, 0), c + 4, (uInt)(4 + n)));
    *len += 12 + n;
}

/* A grey 8-bit PNG of w x h whose IDAT inflates to all its (zero) rows, with
 * n_text zTXt chunks of text_bytes zeros each before it; malloc'd. */
static uint8_t *hostile_png(uint32_t w, uint32_t h, int n_text, size_t text_bytes, size_t *len)
{
    size_t raw = (size_t)h * (1 + (size_t)w);
    uint8_t *zeros = calloc(raw > text_bytes ? raw : text_bytes, 1);
    assert_non_null(zeros);
    uLongf idat_len = compressBound((uLong)raw), text_len = compressBound((uLong)text_bytes);
    uint8_t *idat = malloc(idat_len), *text = malloc(6 + text_len);
    assert_non_null(idat);
    assert_non_null(text);
    assert_int_equal(compress2(idat, &idat_len, zeros, (uLong)raw, 9), Z_OK);
    memcpy(text, "bomb", 5); /* keyword, NUL, compression method 0 */
    text[5] = 0;
    if (n_text)
        assert_int_equal(compress2(text + 6, &text_len, zeros, (uLong)text_bytes, 9), Z_OK);
    free(zeros);
    size_t cap = 8 + 25 + (size_t)n_text * (12 + 6 + text_len) + 12 + idat_len + 12;
    uint8_t *png = malloc(cap);
    assert_non_null(png);
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    *len = 8;
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8; /* depth; colour type 0 (grey), no interlace */
    put_chunk(png, len, "IHDR", ihdr, 13);
    for (int i = 0; i < n_text; i++)
        put_chunk(png, len, "zTXt", text, 6 + text_len);
    put_chunk(png, len, "IDAT", idat, idat_len);
    put_chunk(png, len, "IEND", NULL, 0);
    free(idat);
    free(text);
    return png;
}

/* A thousand compressed text chunks of 8 MiB of zeros each (a 7.7 MiB body
 * that libpng's defaults inflate to GBs): skipped unread, so the 28x28 image
 * behind them is encoded at once. */
static void test_png_text_bomb(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *png = hostile_png(28, 28, 1000, (size_t)8 << 20, &len);
    print_message("text bomb: %zu bytes\n", len);
    assert_true(len > ((size_t)7 << 20) && len < ((size_t)16 << 20));
    const char *headers[] = {"Content-Type: image/png", NULL};
    long base = peak_reset(fx.d.pid);
    double t0 = harness_now_s();
    harness_response r;
    assert_int_equal(harness_request(fx.port, "POST", "/encode", headers, png, len, &r), 0);
    double took = harness_now_s() - t0;
    print_message("text bomb: %d in %.3f s\n", r.status, took);
    assert_int_equal(r.status, 200);
    cJSON *root = harness_json(&r);
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "mu")));
    cJSON_Delete(root);
    harness_response_free(&r);
    assert_true(took < 1.0 * harness_slowdown());
    /* The body itself is buffered (8 MiB); nothing is inflated. */
    assert_true(peak_growth_kb(fx.d.pid, base, "text bomb") < mem_budget_kb(64 * 1024));
    free(png);
    expect_healthy();
}

/* A PNG of about 16 KiB that declares 4096x4096 and inflates to all of it:
 * refused from its IHDR, before any decoding, and fast. */
static void test_png_size_bomb(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *png = hostile_png(4096, 4096, 0, 0, &len);
    print_message("size bomb: %zu bytes\n", len);
    const char *headers[] = {"Content-Type: image/png", NULL};
    long base = peak_reset(fx.d.pid);
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        double t0 = harness_now_s();
        harness_response r;
        assert_int_equal(harness_request(fx.port, "POST", "/encode", headers, png, len, &r), 0);
        double took = harness_now_s() - t0;
        worst = took > worst ? took : worst;
        assert_true(harness_expect_error(&r, 422, "unprocessable"));
        cJSON *root = harness_json(&r);
        const char *m = cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(root, "error"), "message")
                            ->valuestring;
        assert_non_null(strstr(m, "4096x4096"));
        cJSON_Delete(root);
        harness_response_free(&r);
    }
    print_message("size bomb: slowest of 10 refusals %.1f ms\n", worst * 1e3);
    /* A full decode of 16 M pixels takes ~170 ms here; the refusal ~1. */
    assert_true(worst < 0.05 * harness_slowdown());
    assert_true(peak_growth_kb(fx.d.pid, base, "size bomb") < mem_budget_kb(16 * 1024));
    free(png);
    expect_healthy();
}


/* ---- bodies ------------------------------------------------------------------ */

/* 250 connections each declaring a 16 MiB body and sending all of it but
 * the last byte: only as many as the body budget holds are read (each
 * reserves its whole declared length when its headers are in), the rest
 * are answered 503 at once; /healthz answers meanwhile, and the budget is
 * whole again once the clients go. */
static void test_held_bodies_budget(void **state)
{
    (void)state;
    enum { N = 250 };
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--max-bodies-mb", "64", "--max-upload", "16", "--max-per-ip", "0", "--timeout", "60",
                                NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    double idle = healthz_p99(port, 100);
    size_t body = (size_t)16 << 20;
    char head[256];
    int head_len = snprintf(head, sizeof head,
                            "POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                            body);
    char *filler = malloc(body);
    assert_non_null(filler);
    memset(filler, ' ', body);
    long base = peak_reset(d.pid);
    int fds[N], refused = 0, held = 0;
    for (int i = 0; i < N; i++) {
        fds[i] = connect_from("127.0.0.2", port);
        assert_true(fds[i] >= 0);
        assert_int_equal(send_all(fds[i], head, (size_t)head_len), 0);
    }
    for (int i = 0; i < N; i++) {
        char buf[1024];
        ssize_t n = read_within(fds[i], buf, sizeof buf, 100 * harness_slowdown());
        if (n > 0) {
            assert_non_null(strstr(buf, "HTTP/1.1 503"));
            assert_non_null(strcasestr(buf, "\r\nRetry-After: 1\r\n"));
            assert_non_null(strstr(buf, "max-bodies-mb"));
            refused++;
            close(fds[i]);
            fds[i] = -1;
        } else {
            /* read: all but the last byte */
            assert_int_equal(send_all(fds[i], filler, body - 1), 0);
            held++;
        }
    }
    print_message("held bodies: %d read, %d refused\n", held, refused);
    assert_true(held >= 1 && held <= 4);
    assert_int_equal(held + refused, N);
    double attacked = healthz_p99(port, 100);
    print_message("held bodies: /healthz p99 %.2f ms idle, %.2f ms while held\n", idle * 1e3,
                  attacked * 1e3);
    assert_true(attacked < 0.5 * harness_slowdown());
    assert_true(peak_growth_kb(d.pid, base, "held bodies") < mem_budget_kb(128 * 1024));
    assert_true(refusals(port, "bodies_held") >= refused);
    for (int i = 0; i < N; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(filler);
    /* The budget is whole again: a body of 16 MiB is read. */
    usleep(200 * 1000);
    const char *json[] = {"Content-Type: application/json", NULL};
    char *big = malloc(body);
    assert_non_null(big);
    memset(big, ' ', body);
    const char z[] = "{\"z\": [[0, 0, 0, 0]]}";
    memcpy(big, z, sizeof z - 1); /* then white space */
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/decode", json, big, body, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    free(big);
    stop_own(&d, dir);
}

/* A body sent to a route that takes none is refused when its headers are
 * in: not one byte of the 16 MiB it declares is read. */
static void test_body_on_bodiless_route(void **state)
{
    (void)state;
    static const char *const heads[] = {
        "POST /sample?n=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16777216\r\n\r\n",
        "POST /jobs/1/cancel HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16777216\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16777216\r\n\r\n",
        "DELETE /models/digits/versions/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Length: 16777216\r\n\r\n",
        "POST /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 16777216\r\n\r\n",
    };
    static const char *const want[] = {"HTTP/1.1 413", "HTTP/1.1 413", "HTTP/1.1 413",
                                       "HTTP/1.1 413", "HTTP/1.1 404"};
    long before = refusals(fx.port, "no_body");
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        int fd = connect_from("127.0.0.2", fx.port);
        assert_true(fd >= 0);
        assert_int_equal(send_all(fd, heads[i], strlen(heads[i])), 0);
        char buf[2048];
        ssize_t n = read_within(fd, buf, sizeof buf, 2000 * harness_slowdown());
        if (n <= 0 || strncmp(buf, want[i], strlen(want[i])))
            fail_msg("%s-> %s", heads[i], n > 0 ? buf : "nothing");
        close(fd);
    }
    assert_int_equal(refusals(fx.port, "no_body"), before + 4);
    expect_healthy();
}

/* Opens n connections from 127.0.0.2 into fds and returns how many are
 * still open a moment later (the others were closed unanswered). */
static int open_connections(int port, int *fds, int n)
{
    for (int i = 0; i < n; i++) {
        fds[i] = connect_from("127.0.0.2", port);
        assert_true(fds[i] >= 0);
    }
    usleep(300 * 1000);
    int open_n = 0;
    for (int i = 0; i < n; i++) {
        char buf[64];
        if (read_within(fds[i], buf, sizeof buf, 10) < 0)
            open_n++; /* nothing came: still open */
    }
    return open_n;
}

/* One address may hold --max-per-ip connections; past that libmicrohttpd
 * does not take them, while other addresses are served. */
static void test_per_ip_limit(void **state)
{
    (void)state;
    enum { N = 40, LIMIT = 8 };
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--max-per-ip", "8", "--threads", "2", NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    int fds[N];
    int open_n = open_connections(port, fds, N);
    print_message("per-ip: %d of %d connections kept (limit %d)\n", open_n, N, LIMIT);
    assert_true(open_n >= LIMIT && open_n <= LIMIT + 2); /* + one per other polling thread */
    assert_true(refusals(port, "per_ip_connections") >= N - open_n);
    double p99 = healthz_p99(port, 50);
    print_message("per-ip: /healthz p99 %.2f ms from another address\n", p99 * 1e3);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* The slots free up with the connections. */
    usleep(200 * 1000);
    int again = connect_from("127.0.0.2", port);
    assert_true(again >= 0);
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    assert_int_equal(send_all(again, req, sizeof req - 1), 0);
    char buf[512];
    assert_true(read_within(again, buf, sizeof buf, 2000 * harness_slowdown()) > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    close(again);
    stop_own(&d, dir);

    /* --max-connections, all addresses together: the same, counted too */
    const char *const all[] = {"--max-connections", "12", "--max-per-ip", "0", "--threads", "2",
                               NULL};
    port = start_own(&d, dir, sizeof dir, all);
    open_n = open_connections(port, fds, N);
    print_message("connections: %d of %d kept (limit 12)\n", open_n, N);
    assert_true(open_n >= 12 && open_n <= 14);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    usleep(200 * 1000); /* the slots free up with the connections */
    long refused = refusals(port, "connections");
    if (refused < N - open_n)
        fail_msg("%ld connections refused, %d expected", refused, N - open_n);
    stop_own(&d, dir);
}

/* ---- data files ---------------------------------------------------------------- */

/* A FIFO (and a symlink to one) named as a job's data would block an open
 * for ever: only regular files are read, so both are refused at once. A
 * job on a real file is shown with the path the client gave, never the
 * server's. */
static void test_fifo_data_and_server_paths(void **state)
{
    (void)state;
    char sets[HARNESS_PATH_MAX], path[HARNESS_PATH_MAX + 64], real[HARNESS_PATH_MAX];
    assert_int_equal(harness_tmpdir(sets, sizeof sets), 0);
    assert_non_null(realpath(sets, real));
    snprintf(path, sizeof path, "%s/pipe-images-idx3-ubyte", sets);
    assert_int_equal(mkfifo(path, 0600), 0);
    char link_path[HARNESS_PATH_MAX + 64];
    snprintf(link_path, sizeof link_path, "%s/link-images-idx3-ubyte", sets);
    assert_int_equal(symlink(path, link_path), 0);
    /* and a small real IDX file: 64 images of 28x28 */
    snprintf(path, sizeof path, "%s/small-images-idx3-ubyte", sets);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t head[16];
    put_be32(head, 0x803);
    put_be32(head + 4, 64);
    put_be32(head + 8, 28);
    put_be32(head + 12, 28);
    fwrite(head, 1, sizeof head, f);
    for (int i = 0; i < 64 * 784; i++)
        fputc(i % 251, f);
    fclose(f);

    setenv("VAED_DATA", sets, 1);
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--workers", "0", NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    unsetenv("VAED_DATA");
    const char *headers[] = {"Content-Type: application/json", NULL};
    static const char *const names[] = {"pipe-images-idx3-ubyte", "link-images-idx3-ubyte"};
    for (size_t i = 0; i < 2; i++) {
        char job[256];
        snprintf(job, sizeof job, "{\"model\": \"m\", \"data\": \"%s\", \"epochs\": 1}",
                 names[i]);
        double t0 = harness_now_s();
        harness_response r;
        assert_int_equal(harness_request(port, "POST", "/jobs", headers, job, strlen(job), &r), 0);
        double took = harness_now_s() - t0;
        assert_true(harness_expect_error(&r, 422, "unprocessable"));
        const char *body = (const char *)r.body;
        print_message("fifo: %.3f s: %s\n", took, body);
        assert_non_null(strstr(body, "not a regular file"));
        assert_null(strstr(body, real));
        assert_null(strstr(body, sets));
        harness_response_free(&r);
        assert_true(took < 2.0 * harness_slowdown());
    }
    const char job[] = "{\"model\": \"m\", \"data\": \"small-images-idx3-ubyte\", \"epochs\": 1}";
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/jobs", headers, job, strlen(job), &r), 0);
    assert_int_equal(r.status, 202);
    harness_response_free(&r);
    assert_int_equal(harness_request(port, "GET", "/jobs", NULL, NULL, 0, &r), 0);
    assert_null(strstr((const char *)r.body, real));
    assert_null(strstr((const char *)r.body, sets));
    cJSON *root = harness_json(&r);
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "jobs"), 0);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(first, "config"), "data");
    assert_true(cJSON_IsString(data));
    assert_string_equal(data->valuestring, "small-images-idx3-ubyte");
    cJSON_Delete(root);
    harness_response_free(&r);
    /* A built-in data set missing under this root: the answer names the
     * file inside it, not the root. */
    assert_int_equal(harness_request(port, "GET",
                                     "/interpolate?from=mnist:test:1&to=mnist:test:2&steps=4"
                                     "&format=json",
                                     NULL, NULL, 0, &r),
                     0);
    print_message("missing data set: %.300s\n", (const char *)r.body);
    assert_true(harness_expect_error(&r, 404, "not_found"));
    assert_non_null(strstr((const char *)r.body, "mnist/t10k-images-idx3-ubyte"));
    assert_null(strstr((const char *)r.body, real));
    assert_null(strstr((const char *)r.body, sets));
    harness_response_free(&r);
    expect_status(port, "GET", "/healthz", "Host: 127.0.0.1\r\n", NULL, 200, NULL);
    stop_own(&d, dir);
    harness_rm_rf(sets);
}

/* ---- shared bytes ------------------------------------------------------------------ */

/* The X-Model header and the JSON "model" of a raw response. */
static void expect_model(const char *resp, const char *name)
{
    char want[96];
    snprintf(want, sizeof want, "\r\nX-Model: %s\r\n", name);
    if (!strstr(resp, "HTTP/1.1 200") || !strcasestr(resp, want))
        fail_msg("expected model %s: %.300s", name, resp);
    snprintf(want, sizeof want, "\"model\":\"%s\"", name);
    if (!strstr(resp, want))
        fail_msg("expected JSON model %s: %.300s", name, resp);
}

/* Reads fd to its end (Connection: close) into a malloc'd string. */
static char *read_to_end(int fd)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = read_within(fd, buf + len, cap - len, 10000 * harness_slowdown());
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* The same checkpoint bytes stored as two models: requests for each, at
 * once and cold, load the bytes once and are each answered with the name
 * they asked for (X-Model, JSON, ETag, response cache). */
static void test_shared_bytes_under_two_names(void **state)
{
    (void)state;
    enum { N = 8 };
    char dir[HARNESS_PATH_MAX], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    registry_checkpoint_info a, b;
    assert_int_equal(harness_put_model(dir, "alpha", NULL, 11, &a, err, sizeof err), 0);
    assert_int_equal(harness_put_model(dir, "beta", NULL, 11, &b, err, sizeof err), 0);
    assert_string_equal(a.sha256, b.sha256);
    harness_daemon d;
    int port = harness_daemon_start(&d, dir, NULL);
    assert_true(port > 0);
    int fds[N];
    for (int i = 0; i < N; i++) {
        char req[256];
        int n = snprintf(req, sizeof req,
                         "POST /sample?n=64&seed=1&format=json&model=%s HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                         i % 2 ? "beta" : "alpha");
        fds[i] = connect_from("127.0.0.1", port);
        assert_true(fds[i] >= 0);
        assert_int_equal(send_all(fds[i], req, (size_t)n), 0);
    }
    for (int i = 0; i < N; i++) {
        char *resp = read_to_end(fds[i]);
        expect_model(resp, i % 2 ? "beta" : "alpha");
        free(resp);
        close(fds[i]);
    }
    assert_int_equal(metric(port, "vaed_model_loads_total"), 1);
    assert_int_equal(metric(port, "vaed_models_loaded"), 1);
    /* GET /interpolate, kept in the response cache under each name. */
    char etags[2][80];
    for (int round = 0; round < 2; round++)
        for (int m = 0; m < 2; m++) {
            const char *name = m ? "beta" : "alpha";
            char path[160];
            snprintf(path, sizeof path,
                     "/interpolate?from=mnist:test:1&to=mnist:test:2&steps=8&format=json&model=%s",
                     name);
            harness_response r;
            assert_int_equal(harness_request(port, "GET", path, NULL, NULL, 0, &r), 0);
            assert_int_equal(r.status, 200);
            assert_string_equal(harness_header(&r, "X-Model"), name);
            char want[64];
            snprintf(want, sizeof want, "\"model\":\"%s\"", name);
            assert_non_null(strstr((const char *)r.body, want));
            if (round == 0)
                snprintf(etags[m], sizeof etags[m], "%s", harness_header(&r, "ETag"));
            else
                assert_string_equal(harness_header(&r, "ETag"), etags[m]);
            harness_response_free(&r);
        }
    assert_string_not_equal(etags[0], etags[1]);
    assert_true(metric(port, "vaed_response_cache_hits_total") >= 2);
    assert_int_equal(metric(port, "vaed_model_loads_total"), 1);
    stop_own(&d, dir);
}

/* A model larger than the whole --model-cache-mb loads once and stays (alone)
 * while it is the one asked for, rather than load again on every request;
 * another model asked for then takes its place. */
static void test_model_over_cache_budget(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    vae_config cfg;
    harness_small_config(&cfg);
    cfg.hidden[0] = 1024; /* 784 x 1024 floats each way: about 6 MB */
    registry_checkpoint_info info;
    assert_int_equal(harness_put_model(dir, "wide", &cfg, 3, &info, err, sizeof err), 0);
    assert_true(info.size > (2 << 20));
    assert_int_equal(harness_put_model(dir, "digits", NULL, 7, NULL, err, sizeof err), 0);
    harness_daemon d;
    const char *const args[] = {"--model-cache-mb", "1", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);
    for (int i = 0; i < 8; i++) {
        harness_response r;
        assert_int_equal(harness_request(port, "POST", "/sample?n=1&seed=1&model=wide", NULL,
                                         NULL, 0, &r),
                         0);
        assert_int_equal(r.status, 200);
        harness_response_free(&r);
    }
    assert_int_equal(metric(port, "vaed_model_loads_total"), 1);
    assert_int_equal(metric(port, "vaed_models_loaded"), 1);
    /* another model: loaded in its place, then the wide one again */
    const char *const order[] = {"digits", "digits", "wide", "wide"};
    for (size_t i = 0; i < 4; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sample?n=1&seed=1&model=%s", order[i]);
        harness_response r;
        assert_int_equal(harness_request(port, "POST", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        harness_response_free(&r);
    }
    assert_int_equal(metric(port, "vaed_model_loads_total"), 3);
    assert_int_equal(metric(port, "vaed_models_loaded"), 1);
    stop_own(&d, dir);
}

/* ---- checkpoint headers ------------------------------------------------------------- */

/* A safetensors upload whose 64 MiB header is one tensor with a shape of 32
 * million dimensions: the header's JSON reader stops at its value budget, so
 * the refusal costs the body and little more. */
static void test_long_shape_header(void **state)
{
    (void)state;
    size_t dims = (size_t)32 << 20;
    const char head[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[";
    const char tail[] = "1],\"data_offsets\":[0,4]}}";
    size_t hlen = strlen(head) + 2 * (dims - 1) + strlen(tail);
    size_t len = 8 + hlen + 4;
    uint8_t *file = malloc(len);
    assert_non_null(file);
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)hlen >> (8 * i)); /* little-endian header length */
    char *h = (char *)file + 8;
    memcpy(h, head, strlen(head));
    h += strlen(head);
    for (size_t i = 0; i + 1 < dims; i++) {
        h[2 * i] = '1';
        h[2 * i + 1] = ',';
    }
    memcpy(h + 2 * (dims - 1), tail, strlen(tail));
    memset(file + 8 + hlen, 0, 4);
    const char *headers[] = {"Content-Type: application/octet-stream", NULL};
    long base = peak_reset(fx.d.pid);
    double t0 = harness_now_s();
    harness_response r;
    assert_int_equal(
        harness_request(fx.port, "POST", "/models/longshape/checkpoints", headers, file, len, &r), 0);
    double took = harness_now_s() - t0;
    free(file);
    print_message("long shape: %zu bytes refused in %.3f s: %.200s\n", len, took,
                  (const char *)r.body);
    assert_true(harness_expect_error(&r, 422, "invalid_checkpoint"));
    assert_non_null(strstr((const char *)r.body, "more than"));
    harness_response_free(&r);
    /* still a 422, but the value budget's: counted apart from format errors */
    assert_true(refusals(fx.port, "header_values") >= 1);
    /* the body itself is held once (64 MiB); 32 M nodes would be 2 GB */
    assert_true(peak_growth_kb(fx.d.pid, base, "long shape") < mem_budget_kb(160 * 1024));
    assert_true(took < 3.0 * harness_slowdown());
    expect_healthy();
}

/* ---- memory per request ------------------------------------------------------------- */

/* What a request may cost is known from n, the body's length and the model
 * before anything is allocated: over --request-mem-mb it is refused (422,
 * naming the flag) at once; under it, what it really costs stays within the
 * estimate. */
static void test_request_memory_budget(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--request-mem-mb", "8", NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    long base = peak_reset(d.pid);
    double t0 = harness_now_s();
    harness_response r;
    assert_int_equal(
        harness_request(port, "POST", "/sample?n=1024&format=json", NULL, NULL, 0, &r), 0);
    double took = harness_now_s() - t0;
    assert_true(harness_expect_error(&r, 422, "unprocessable"));
    assert_non_null(strstr((const char *)r.body, "--request-mem-mb"));
    print_message("request memory: %.200s (%.1f ms)\n", (const char *)r.body, took * 1e3);
    harness_response_free(&r);
    /* an /encode body of 1024 images (6 MiB of JSON) */
    size_t cap = (size_t)1024 * 784 * 8 + 64, len = 0;
    char *body = malloc(cap);
    assert_non_null(body);
    len += (size_t)snprintf(body, cap, "{\"x\": [");
    for (int i = 0; i < 1024; i++) {
        body[len++] = i ? ',' : '[';
        if (i)
            body[len++] = '[';
        for (int k = 0; k < 784; k++)
            len += (size_t)snprintf(body + len, cap - len, k ? ",0.5" : "0.5");
        body[len++] = ']';
    }
    len += (size_t)snprintf(body + len, cap - len, "]}");
    const char *json[] = {"Content-Type: application/json", NULL};
    assert_int_equal(harness_request(port, "POST", "/encode", json, body, len, &r), 0);
    assert_true(harness_expect_error(&r, 422, "unprocessable"));
    harness_response_free(&r);
    free(body);
    assert_true(peak_growth_kb(d.pid, base, "refused requests") < mem_budget_kb(32 * 1024));
    assert_true(refusals(port, "request_memory") >= 2);
    /* small ones pass */
    assert_int_equal(harness_request(port, "POST", "/sample?n=16&format=json", NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    stop_own(&d, dir);
}

/* A PNG answer too large to draw (a 256-step strip at scale 3 is 21,504
 * pixels wide, over 16,384) is refused before its images are decoded, and
 * counted; the same walk as npy, or a shorter strip, is answered. */
static void test_png_grid_refused_before_decode(void **state)
{
    (void)state;
    const char *json[] = {"Content-Type: application/json", NULL};
    const char *walk = "{\"from\": {\"z\": [0, 0, 0, 0]}, \"to\": {\"z\": [1, 1, 1, 1]}, "
                       "\"steps\": 256}";
    long before = refusals(fx.port, "png_grid");
    harness_response r;
    assert_int_equal(harness_request(fx.port, "POST", "/interpolate?scale=3", json, walk,
                                     strlen(walk), &r),
                     0);
    assert_true(harness_expect_error(&r, 422, "unprocessable"));
    assert_non_null(strstr((const char *)r.body, "cannot draw these images as PNG"));
    harness_response_free(&r);
    assert_int_equal(refusals(fx.port, "png_grid"), before + 1);
    assert_int_equal(harness_request(fx.port, "POST", "/interpolate?scale=3&format=npy", json,
                                     walk, strlen(walk), &r),
                     0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    const char *strip = "{\"from\": {\"z\": [0, 0, 0, 0]}, \"to\": {\"z\": [1, 1, 1, 1]}, "
                        "\"steps\": 16}";
    assert_int_equal(harness_request(fx.port, "POST", "/interpolate?scale=3", json, strip,
                                     strlen(strip), &r),
                     0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    assert_int_equal(refusals(fx.port, "png_grid"), before + 1);
}

/* A 28x28 palette PNG (two entries, black and white, in stripes), with a
 * tRNS chunk making black transparent when trns; malloc'd. */
static uint8_t *palette_png(int trns, size_t *len)
{
    uint8_t rows[28 * 29];
    for (int y = 0; y < 28; y++) {
        rows[y * 29] = 0; /* filter: none */
        for (int x = 0; x < 28; x++)
            rows[y * 29 + 1 + x] = (uint8_t)((x / 4) & 1);
    }
    uLongf idat_len = compressBound(sizeof rows);
    uint8_t *idat = malloc(idat_len), *png = malloc(8 + 25 + 18 + 13 + 12 + idat_len + 12);
    assert_non_null(idat);
    assert_non_null(png);
    assert_int_equal(compress2(idat, &idat_len, rows, sizeof rows, 9), Z_OK);
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    *len = 8;
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, 28);
    put_be32(ihdr + 4, 28);
    ihdr[8] = 8; /* depth */
    ihdr[9] = 3; /* colour type: palette */
    put_chunk(png, len, "IHDR", ihdr, 13);
    static const uint8_t plte[6] = {0, 0, 0, 255, 255, 255}, alpha[1] = {0};
    put_chunk(png, len, "PLTE", plte, sizeof plte);
    if (trns)
        put_chunk(png, len, "tRNS", alpha, sizeof alpha);
    put_chunk(png, len, "IDAT", idat, idat_len);
    put_chunk(png, len, "IEND", NULL, 0);
    free(idat);
    return png;
}

/* A palette PNG with transparency is read as its colours, alpha dropped as
 * for every other PNG: libpng's palette expansion turned tRNS into a
 * fourth channel and the image was refused ("unsupported pixel layout"). */
static void test_png_palette_transparency(void **state)
{
    (void)state;
    const char *png_type[] = {"Content-Type: image/png", NULL};
    harness_response r[2];
    for (int trns = 0; trns < 2; trns++) {
        size_t len;
        uint8_t *png = palette_png(trns, &len);
        assert_int_equal(harness_request(fx.port, "POST", "/encode", png_type, png, len, &r[trns]),
                         0);
        free(png);
        if (r[trns].status != 200)
            fail_msg("palette PNG%s: %d %.200s", trns ? " with tRNS" : "", r[trns].status,
                     (const char *)r[trns].body);
    }
    assert_int_equal(r[0].body_len, r[1].body_len);
    assert_memory_equal(r[0].body, r[1].body, r[0].body_len);
    harness_response_free(&r[0]);
    harness_response_free(&r[1]);
}

/* ---- the data directory ---------------------------------------------------------- */

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("half a file", f);
    fclose(f);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* One daemon per data directory (a second is refused, naming the first);
 * what crashes left half-written is cleared at start; what the daemon
 * creates is its own (0600); a token file others can change is refused and
 * one they can read warned about; --max-upload must fit SQLite. */
static void test_data_dir_ownership(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX], p1[HARNESS_PATH_MAX + 64], p2[HARNESS_PATH_MAX + 64],
        p3[HARNESS_PATH_MAX + 64], jobdir[HARNESS_PATH_MAX + 32];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    snprintf(jobdir, sizeof jobdir, "%s/jobs/5", dir);
    char mk[HARNESS_PATH_MAX + 64];
    snprintf(mk, sizeof mk, "%s/jobs", dir);
    assert_int_equal(mkdir(mk, 0700), 0);
    assert_int_equal(mkdir(jobdir, 0700), 0);
    snprintf(p1, sizeof p1, "%s/registry.db.tmp.0123456789ab", dir);
    snprintf(p2, sizeof p2, "%s/resume.safetensors.tmp.1.7", jobdir);
    snprintf(p3, sizeof p3, "%s/notes.tmp", dir);
    touch(p1);
    touch(p2);
    touch(p3);
    harness_daemon a, b;
    int port = harness_daemon_start(&a, dir, NULL);
    assert_true(port > 0);
    assert_false(exists(p1));
    assert_false(exists(p2));
    assert_true(exists(p3)); /* not a temporary of vaed's */
    char path[HARNESS_PATH_MAX + 64];
    static const char *const own[] = {"registry.db", "vaed.lock"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, own[i]);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if (st.st_mode & 077)
            fail_msg("%s is mode %04o", own[i], (unsigned)(st.st_mode & 07777));
    }
    /* a second daemon on the same directory */
    assert_true(harness_daemon_start(&b, dir, NULL) < 0);
    char *log = harness_daemon_log(&b);
    assert_non_null(log);
    char pid[32];
    snprintf(pid, sizeof pid, "(pid %d)", (int)a.pid);
    assert_non_null(strstr(log, "another vaed"));
    assert_non_null(strstr(log, pid));
    free(log);
    expect_status(port, "GET", "/healthz", "Host: 127.0.0.1\r\n", NULL, 200, NULL);
    assert_int_equal(harness_daemon_stop(&a), 0);
    /* Bytes an upload wrote before its version, left by a crash between
     * the two, go at the next start. */
    snprintf(path, sizeof path, "%s/registry.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO blobs (sha256, size, data) VALUES "
                                  "(printf('%064d', 7), 3, x'010203')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    /* the lock goes with the daemon */
    port = harness_daemon_start(&a, dir, NULL);
    assert_true(port > 0);
    assert_int_equal(harness_daemon_stop(&a), 0);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM blobs", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* token files */
    char token[HARNESS_PATH_MAX + 16];
    snprintf(token, sizeof token, "%s/token", dir);
    FILE *f = fopen(token, "w");
    assert_non_null(f);
    fputs("0123456789abcdef0123\n", f);
    fclose(f);
    assert_int_equal(chmod(token, 0666), 0);
    const char *const with_token[] = {"--token-file", token, NULL};
    assert_true(harness_daemon_start(&b, dir, with_token) < 0);
    log = harness_daemon_log(&b);
    assert_non_null(strstr(log, "can be changed by other users"));
    free(log);
    assert_int_equal(chmod(token, 0644), 0);
    assert_true(harness_daemon_start(&a, dir, with_token) > 0);
    log = harness_daemon_log(&a);
    assert_non_null(strstr(log, "warning: --token-file"));
    free(log);
    assert_int_equal(harness_daemon_stop(&a), 0);
    /* an upload limit SQLite cannot store */
    const char *const big[] = {"--max-upload", "2000", "--max-bodies-mb", "4096", NULL};
    assert_true(harness_daemon_start(&b, dir, big) < 0);
    log = harness_daemon_log(&b);
    assert_non_null(strstr(log, "SQLite"));
    free(log);
    harness_rm_rf(dir);
}

/* ---- the jobs table ---------------------------------------------------------------- */

/* The queue holds --max-queued-jobs (then 429 with Retry-After) and GET /jobs
 * answers a page at a time, with the id to ask after for the next. */
static void test_job_queue_cap_and_pages(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--workers", "0", "--max-queued-jobs", "3", "--job-mem-mb", "512",
                                NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    const char *headers[] = {"Content-Type: application/json", NULL};
    harness_response r;
    const char wide[] = "{\"model\": \"m\", \"data\": \"mnist\", \"hidden\": [8192, 8192]}";
    assert_int_equal(harness_request(port, "POST", "/jobs", headers, wide, strlen(wide), &r), 0);
    assert_true(harness_expect_error(&r, 422, "unprocessable"));
    assert_non_null(strstr((const char *)r.body, "--job-mem-mb"));
    harness_response_free(&r);
    assert_int_equal(refusals(port, "job_memory"), 1);
    for (int i = 0; i < 3; i++)
        submit_job(port);
    const char job[] = "{\"model\": \"m\", \"data\": \"mnist\", \"epochs\": 1}";
    assert_int_equal(harness_request(port, "POST", "/jobs", headers, job, strlen(job), &r), 0);
    assert_true(harness_expect_error(&r, 429, "too_many_requests"));
    assert_non_null(harness_header(&r, "Retry-After"));
    harness_response_free(&r);
    assert_int_equal(refusals(port, "queued_jobs"), 1);
    /* /metrics counts them from the state index */
    assert_int_equal(metric(port, "vaed_jobs{state=\"queued\"}"), 3);
    int64_t after = 0;
    int pages = 0, seen = 0;
    for (;;) {
        char path[64];
        snprintf(path, sizeof path, "/jobs?limit=2&after=%lld", (long long)after);
        assert_int_equal(harness_request(port, "GET", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        cJSON *root = harness_json(&r);
        const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(root, "jobs");
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(root, "next");
        seen += cJSON_GetArraySize(jobs);
        pages++;
        int more = cJSON_IsNumber(next);
        if (more)
            after = (int64_t)next->valuedouble;
        else
            assert_true(cJSON_IsNull(next));
        cJSON_Delete(root);
        harness_response_free(&r);
        if (!more)
            break;
    }
    assert_int_equal(pages, 2);
    assert_int_equal(seen, 3);
    /* a spec is a few fields: a large body is refused before it is read */
    int fd = connect_from("127.0.0.2", port);
    const char big[] = "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       "Content-Length: 1048576\r\n\r\n";
    assert_int_equal(send_all(fd, big, sizeof big - 1), 0);
    char buf[1024];
    assert_true(read_within(fd, buf, sizeof buf, 2000 * harness_slowdown()) > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 413"));
    close(fd);
    expect_status(port, "GET", "/jobs?limit=0", "Host: 127.0.0.1\r\n", NULL, 400, "bad_request");
    expect_status(port, "GET", "/jobs?limit=1001", "Host: 127.0.0.1\r\n", NULL, 400,
                  "bad_request");
    stop_own(&d, dir);
}

/* ---- uploads -------------------------------------------------------------------------- */

/* The bytes of a checkpoint with one hidden layer of width hidden
 * (malloc'd). */
static uint8_t *wide_model_bytes(int hidden, size_t *len)
{
    vae_config cfg;
    harness_small_config(&cfg);
    cfg.hidden[0] = hidden;
    uint8_t *bytes = NULL;
    char err[256];
    assert_int_equal(harness_model_bytes(&cfg, 9, &bytes, len, err, sizeof err), 0);
    return bytes;
}

typedef struct {
    int port;
    const uint8_t *bytes;
    size_t len;
    int status;
    int done; /* atomic: 1 once answered */
} upload_job;

static void *upload_thread(void *arg)
{
    upload_job *u = arg;
    const char *headers[] = {"Content-Type: application/octet-stream", NULL};
    harness_response r;
    u->status = harness_request(u->port, "POST", "/models/big/checkpoints", headers, u->bytes,
                                u->len, &r)
                    ? -1
                    : r.status;
    harness_response_free(&r);
    __atomic_store_n(&u->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* A 50 MB upload's bytes are written and fsync'd before the registry's lock
 * is taken, so reads of the registry (GET /models, answered on a polling
 * thread) go on while it commits instead of waiting for the whole write. */
static void test_upload_commit_holds_no_reads(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--threads", "1", NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    upload_job u = {.port = port};
    uint8_t *bytes = wide_model_bytes(8192, &u.len); /* 784 x 8192 floats each way: 50 MB */
    u.bytes = bytes;
    size_t len = u.len;
    pthread_t t;
    double t0 = harness_now_s(), worst = 0;
    int reads = 0;
    assert_int_equal(pthread_create(&t, NULL, upload_thread, &u), 0);
    while (!__atomic_load_n(&u.done, __ATOMIC_ACQUIRE)) {
        double took = timed_get(port, "/models");
        worst = took > worst ? took : worst;
        reads++;
        usleep(2000);
    }
    pthread_join(t, NULL);
    double total = harness_now_s() - t0;
    print_message("upload: %zu bytes stored in %.2f s; %d GET /models meanwhile, the slowest "
                  "%.1f ms\n",
                  len, total, reads, worst * 1e3);
    assert_int_equal(u.status, 201);
    /* Written under the lock, the bytes held reads for over half of it. */
    assert_true(worst < 0.15 * total);
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/models/big/versions/1", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    free(bytes);
    stop_own(&d, dir);
}

/* ---- downloads ----------------------------------------------------------------------- */

/* Twenty clients start downloading a 26 MB checkpoint and stop reading: each
 * is streamed a piece at a time from the registry, so the daemon holds
 * kilobytes per client, not the file, and writes and /healthz go on. The
 * one download read to its end is the checkpoint, byte for byte. */
static void test_stalled_downloads(void **state)
{
    (void)state;
    enum { N = 20 };
    char dir[HARNESS_PATH_MAX], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    vae_config cfg;
    harness_small_config(&cfg);
    cfg.hidden[0] = 4096;
    registry_checkpoint_info info;
    assert_int_equal(harness_put_model(dir, "wide", &cfg, 3, &info, err, sizeof err), 0);
    print_message("downloads: a checkpoint of %lld bytes\n", (long long)info.size);
    harness_daemon d;
    const char *const args[] = {"--max-per-ip", "0", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);
    long base = peak_reset(d.pid);
    const char req[] = "GET /models/wide/versions/1/file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Connection: close\r\n\r\n";
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_from("127.0.0.2", port);
        assert_true(fds[i] >= 0);
        int small = 4096; /* and a small window: the server's writes stall soon */
        if (i)
            setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        assert_int_equal(send_all(fds[i], req, sizeof req - 1), 0);
    }
    usleep(500 * 1000);
    double t0 = harness_now_s();
    /* Not expect_status: its client half-closes after the body, and a
     * write now waits on a worker with the connection suspended, where
     * libmicrohttpd may read the client's FIN first and close. */
    const char *json[] = {"Content-Type: application/json", NULL};
    harness_response put;
    assert_int_equal(harness_request(port, "PUT", "/models/wide/aliases/prod", json,
                                     "{\"version\": 1}", 14, &put),
                     0);
    assert_int_equal(put.status, 200);
    harness_response_free(&put);
    double write_s = harness_now_s() - t0;
    double p99 = healthz_p99(port, 50);
    long growth = peak_growth_kb(d.pid, base, "stalled downloads");
    print_message("downloads: alias set in %.1f ms, /healthz p99 %.2f ms, with %d stalled\n",
                  write_s * 1e3, p99 * 1e3, N);
    assert_true(growth < mem_budget_kb(32 * 1024)); /* the whole file per client: 500 MB */
    assert_true(write_s < 1.0 * harness_slowdown());
    for (int i = 1; i < N; i++)
        close(fds[i]);
    char *all = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            cap = cap ? 2 * cap : (size_t)32 << 20;
            all = realloc(all, cap);
            assert_non_null(all);
        }
        ssize_t n = read_within(fds[0], all + len, cap - len, 10000 * harness_slowdown());
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fds[0]);
    char *body = strstr(all, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    size_t body_len = len - (size_t)(body - all);
    assert_int_equal(body_len, (size_t)info.size);
    char hex[65];
    harness_sha256_hex(body, body_len, hex);
    assert_string_equal(hex, info.sha256);
    free(all);
    stop_own(&d, dir);
}

/* ---- the format bounds as flags ------------------------------------------------------ */

/* status and error code of method path (body with Content-Type type, or
 * none), and that the refusal counter limit went up by one. */
static void expect_counted(int port, const char *method, const char *path, const char *type,
                           const void *body, size_t len, int status, const char *code,
                           const char *limit)
{
    long before = refusals(port, limit);
    char header[96];
    snprintf(header, sizeof header, "Content-Type: %s", type ? type : "application/json");
    const char *headers[] = {header, NULL};
    harness_response r;
    assert_int_equal(harness_request(port, method, path, body ? headers : NULL, body, len, &r), 0);
    if (!harness_expect_error(&r, status, code))
        fail_msg("%s %s: %d %.300s", method, path, r.status, r.body ? (const char *)r.body : "");
    harness_response_free(&r);
    long after = refusals(port, limit);
    if (after != before + 1)
        fail_msg("%s %s: vaed_limit_refusals_total{limit=\"%s\"} went from %ld to %ld", method,
                 path, limit, before, after);
}

static void expect_ok(int port, const char *method, const char *path, const char *body)
{
    const char *json[] = {"Content-Type: application/json", NULL};
    harness_response r;
    assert_int_equal(harness_request(port, method, path, body ? json : NULL, body,
                                     body ? strlen(body) : 0, &r),
                     0);
    if (r.status != 200)
        fail_msg("%s %s: %d %.300s", method, path, r.status, r.body ? (const char *)r.body : "");
    harness_response_free(&r);
}

/* A safetensors file of one F32 tensor "w" of one value whose header is
 * padded with spaces to header_len bytes (*len: the whole file's). */
static uint8_t *padded_header_file(size_t header_len, size_t *len)
{
    const char json[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    assert_true(header_len >= strlen(json));
    *len = 8 + header_len + 4;
    uint8_t *file = malloc(*len);
    assert_non_null(file);
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    memcpy(file + 8, json, strlen(json));
    memset(file + 8 + strlen(json), ' ', header_len - strlen(json));
    memset(file + 8 + header_len, 0, 4);
    return file;
}

/* Each format bound set low on its flag refuses what the default takes, is
 * counted under its own reason, and leaves what fits under it answered. */
static void test_format_bound_flags(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--max-n",           "4", "--max-steps",         "5",
                                "--max-json-depth",  "3", "--max-small-body-kb", "1",
                                "--max-header-mb",   "1", "--max-header-values", "16",
                                NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    /* --max-n: a query's n, labels, and the latents of a body */
    expect_counted(port, "POST", "/sample?n=5&format=json", NULL, NULL, 0, 400, "bad_request",
                   "max_n");
    expect_ok(port, "POST", "/sample?n=4&format=json", NULL);
    const char *five = "{\"z\": [[0,0,0,0],[0,0,0,0],[0,0,0,0],[0,0,0,0],[0,0,0,0]]}";
    expect_counted(port, "POST", "/decode?format=json", NULL, five, strlen(five), 422,
                   "unprocessable", "max_n");
    expect_ok(port, "POST", "/decode?format=json", "{\"z\": [[0,0,0,0],[0,0,0,0]]}");
    /* --max-steps */
    const char *steps = "{\"steps\": 6, \"z\": [[0,0,0,0],[1,1,1,1]]}";
    expect_counted(port, "POST", "/interpolate?format=json", NULL, steps, strlen(steps), 422,
                   "unprocessable", "max_steps");
    /* --max-json-depth: 4 levels over 3 */
    const char *deep = "{\"z\": [[[0]]]}";
    expect_counted(port, "POST", "/decode?format=json", NULL, deep, strlen(deep), 400,
                   "bad_request", "json_depth");
    const char *deep_spec = "{\"data\": \"mnist\", \"arch\": {\"x\": [[1]]}}";
    expect_counted(port, "POST", "/jobs", NULL, deep_spec, strlen(deep_spec), 400,
                   "bad_request", "json_depth");
    const char *deep_alias = "{\"version\": [[[1]]]}";
    expect_counted(port, "PUT", "/models/digits/aliases/prod", NULL, deep_alias,
                   strlen(deep_alias), 400, "bad_request", "json_depth");
    /* --max-small-body-kb: a 2 KiB job spec */
    char spec[2048 + 64];
    int n = snprintf(spec, sizeof spec, "{\"data\": \"mnist\", \"pad\": \"");
    memset(spec + n, 'x', 2048);
    snprintf(spec + n + 2048, sizeof spec - (size_t)n - 2048, "\"}");
    expect_counted(port, "POST", "/jobs", NULL, spec, strlen(spec), 413, "payload_too_large",
                   "small_body");
    /* --max-header-mb: a 2 MiB header (spaces) */
    size_t len;
    uint8_t *file = padded_header_file((size_t)2 << 20, &len);
    expect_counted(port, "POST", "/models/padded/checkpoints", "application/octet-stream", file,
                   len, 422, "invalid_checkpoint", "header_size");
    free(file);
    /* --max-header-values: a real checkpoint's header holds more than 16 */
    char err[256];
    uint8_t *model;
    assert_int_equal(harness_model_bytes(NULL, 3, &model, &len, err, sizeof err), 0);
    expect_counted(port, "POST", "/models/many/checkpoints", "application/octet-stream", model,
                   len, 422, "invalid_checkpoint", "header_values");
    /* the default daemon takes the same checkpoint, and five latents */
    const char *octet[] = {"Content-Type: application/octet-stream", NULL};
    harness_response r;
    assert_int_equal(
        harness_request(fx.port, "POST", "/models/many/checkpoints", octet, model, len, &r), 0);
    assert_int_equal(r.status, 201);
    harness_response_free(&r);
    free(model);
    expect_ok(fx.port, "POST", "/decode?format=json", five);
    stop_own(&d, dir);
}

/* vaed serve with a bound out of its range exits at once, non-zero, naming
 * the flag; --help lists every bound. */
static void test_bad_bound_flags(void **state)
{
    (void)state;
    char bin[HARNESS_PATH_MAX], dir[HARNESS_PATH_MAX], cmd[5 * HARNESS_PATH_MAX + 256];
    const char *vaed = harness_vaed_bin(bin, sizeof bin); /* $VAED_BIN, else bin */
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    static const char *const bad[] = {
        "--max-n 0",           "--max-n 1025",         "--max-steps 1",
        "--max-steps 257",     "--max-json-depth 0",   "--max-json-depth 65",
        "--max-small-body-kb 0", "--max-header-mb 0",  "--max-header-values 15",
        "--max-n x",           "--max-query-kb 0",     "--max-query-kb 17",
        "--max-query-params 0", "--max-query-params 1001",
        "--max-answers-mb x",  "--max-answers-mb 1048577",
        "--min-body-rate-kb x", "--min-body-rate-kb 1048577",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char flag[32];
        snprintf(flag, sizeof flag, "%s", bad[i]);
        flag[strcspn(flag, " ")] = '\0';
        /* timeout: a daemon that took the value would serve, not exit */
        snprintf(cmd, sizeof cmd,
                 "timeout 20 %s serve --listen 127.0.0.1:0 --data-dir %s %s 2>%s/err; "
                 "echo $? >%s/rc",
                 vaed, dir, bad[i], dir, dir);
        assert_int_equal(system(cmd), 0);
        char path[HARNESS_PATH_MAX + 8], text[512] = "";
        snprintf(path, sizeof path, "%s/rc", dir);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        int rc = -1;
        assert_int_equal(fscanf(f, "%d", &rc), 1);
        fclose(f);
        snprintf(path, sizeof path, "%s/err", dir);
        f = fopen(path, "r");
        assert_non_null(f);
        size_t got = fread(text, 1, sizeof text - 1, f);
        text[got] = '\0';
        fclose(f);
        if (rc != 2 || !strstr(text, flag))
            fail_msg("vaed serve %s: exit %d, %s", bad[i], rc, text);
    }
    snprintf(cmd, sizeof cmd, "%s serve --help >%s/help 2>&1", vaed, dir);
    assert_int_equal(system(cmd), 0);
    char path[HARNESS_PATH_MAX + 8], help[16384] = "";
    snprintf(path, sizeof path, "%s/help", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    help[fread(help, 1, sizeof help - 1, f)] = '\0';
    fclose(f);
    static const char *const flags[] = {"--max-n",           "--max-steps",
                                        "--max-json-depth",  "--max-small-body-kb",
                                        "--max-header-mb",   "--max-header-values",
                                        "--max-query-kb",    "--max-query-params",
                                        "--max-answers-mb",  "--min-body-rate-kb"};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        if (!strstr(help, flags[i]))
            fail_msg("vaed serve --help does not list %s", flags[i]);
    harness_rm_rf(dir);
}

/* ---- the query's size -------------------------------------------------------------------- */

/* GET /healthz?p0=1&...: the status of a query of n parameters sent raw,
 * with the read bounded so that a hang fails rather than waits --timeout. */
static int query_status(int port, int n, size_t value_len, harness_response *r)
{
    size_t cap = (size_t)n * (16 + value_len) + 128;
    char *req = malloc(cap); /* owned here */
    assert_non_null(req);
    size_t len = (size_t)snprintf(req, cap, "GET /healthz?");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(req + len, cap - len, "%sp%d=", i ? "&" : "", i);
        memset(req + len, 'v', value_len);
        len += value_len;
    }
    len += (size_t)snprintf(req + len, cap - len,
                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    harness_set_timeout_ms(5000 * harness_slowdown());
    int rc = harness_send_whole(port, req, len, r);
    harness_set_timeout_ms(-1);
    free(req);
    if (rc)
        fail_msg("a query of %d parameters: no whole answer in 5 s (status %d)", n, r->status);
    return r->status;
}

/* Every query gets its answer at once: up to the bounds served, past them a
 * counted 414 with the JSON error, never libmicrohttpd's silent 431 (about
 * 2,000 to 10,000 parameters used to hang until --timeout); past its own
 * buffer libmicrohttpd answers 414 itself. The flags lower the bounds. */
static void test_query_bounds(void **state)
{
    (void)state;
    static const int counts[] = {500, 1000, 1001, 2000, 2500, 10000, 100000};
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        long before = refusals(fx.port, "query");
        harness_response r;
        int status = query_status(fx.port, counts[i], 0, &r);
        long after = refusals(fx.port, "query");
        if (counts[i] <= 1000) {
            if (status != 200)
                fail_msg("%d parameters: %d", counts[i], status);
        } else if (counts[i] < 100000) {
            if (!harness_expect_error(&r, 414, "uri_too_long") || after != before + 1)
                fail_msg("%d parameters: %d (%ld -> %ld refusals) %.200s", counts[i], status,
                         before, after, r.body ? (const char *)r.body : "");
        } else if (status != 414) {
            fail_msg("%d parameters: %d", counts[i], status);
        }
        harness_response_free(&r);
    }
    /* 900 parameters of 20 bytes: under the count, over 16 KiB */
    harness_response r;
    query_status(fx.port, 900, 20, &r);
    assert_true(harness_expect_error(&r, 414, "uri_too_long"));
    harness_response_free(&r);
    expect_healthy();

    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    const char *const args[] = {"--max-query-params", "3", "--max-query-kb", "1", NULL};
    int port = start_own(&d, dir, sizeof dir, args);
    expect_ok(port, "POST", "/sample?n=1&format=json&seed=1", NULL);
    expect_counted(port, "POST", "/sample?n=1&format=json&seed=1&precision=3", NULL, NULL, 0, 414,
                   "uri_too_long", "query");
    query_status(port, 2, 600, &r); /* 2 parameters, 1.2 kB */
    assert_true(harness_expect_error(&r, 414, "uri_too_long"));
    harness_response_free(&r);
    stop_own(&d, dir);
}

/* ---- repeated query parameters ----------------------------------------------------------- */

/* A parameter given twice is refused on every route, GET or POST, before
 * the handler (not read as its first value), naming it; given once, each
 * still works. A thousand repeats or distinct names cost nothing. */
static void test_duplicate_parameters(void **state)
{
    (void)state;
    static const struct {
        const char *method, *path, *name;
    } twice[] = {
        {"POST", "/sample?n=1&n=2", "'n'"},
        {"POST", "/sample?format=json&seed=1&precision=3&seed=1", "'seed'"},
        {"GET", "/interpolate?from=mnist:test:0&to=mnist:test:1&steps=4&steps=4", "'steps'"},
        {"GET", "/jobs?limit=1&limit=2", "'limit'"},
        {"GET", "/models?model=digits&model=digits", "'model'"},
        {"POST", "/decode?precision=3&precision=3", "'precision'"},
        {"GET", "/healthz?a&a", "'a'"},
    };
    for (size_t i = 0; i < sizeof twice / sizeof *twice; i++) {
        harness_response r;
        assert_int_equal(
            harness_request(fx.port, twice[i].method, twice[i].path, NULL, NULL, 0, &r), 0);
        if (!harness_expect_error(&r, 400, "duplicate_parameter") ||
            !strstr((const char *)r.body, twice[i].name))
            fail_msg("%s %s: %d %.300s", twice[i].method, twice[i].path, r.status,
                     r.body ? (const char *)r.body : "");
        harness_response_free(&r);
    }
    expect_ok(fx.port, "POST", "/sample?n=2&format=json&seed=1&precision=3", NULL);
    expect_ok(fx.port, "GET", "/jobs?limit=1", NULL);
    expect_ok(fx.port, "GET", "/models", NULL);
    expect_ok(fx.port, "POST", "/decode?precision=3&format=json", "{\"z\": [[0,0,0,0]]}");
    /* 1000 repeats of one name, then 1000 distinct names: answered at once
     * (near 2000, libmicrohttpd's 128 KiB per connection runs out first) */
    size_t cap = 1000 * 12 + 128;
    char *req = malloc(cap); /* past harness_request's line buffer: sent raw */
    assert_non_null(req);
    for (int pass = 0; pass < 2; pass++) {
        size_t len = (size_t)snprintf(req, cap, "GET /healthz?");
        for (int i = 0; i < 1000; i++)
            len += (size_t)snprintf(req + len, cap - len, pass ? "%sp%d=" : "%sp=",
                                    i ? "&" : "", i);
        len += (size_t)snprintf(req + len, cap - len,
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        double t0 = harness_now_s();
        harness_response r;
        assert_int_equal(harness_send_raw(fx.port, req, len, &r), 0);
        double took = harness_now_s() - t0;
        print_message("%s: %d in %.1f ms\n", pass ? "1000 names" : "1000 repeats", r.status,
                      took * 1e3);
        if (pass)
            assert_int_equal(r.status, 200);
        else
            assert_true(harness_expect_error(&r, 400, "duplicate_parameter"));
        harness_response_free(&r);
    }
    free(req);
    expect_healthy();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_text_bomb),
        cmocka_unit_test(test_png_size_bomb),
        cmocka_unit_test(test_held_bodies_budget),
        cmocka_unit_test(test_body_on_bodiless_route),
        cmocka_unit_test(test_per_ip_limit),
        cmocka_unit_test(test_tokenless_rebinding_and_origin),
        cmocka_unit_test(test_token_any_host),
        cmocka_unit_test(test_stream_flood),
        cmocka_unit_test(test_fifo_data_and_server_paths),
        cmocka_unit_test(test_shared_bytes_under_two_names),
        cmocka_unit_test(test_model_over_cache_budget),
        cmocka_unit_test(test_long_shape_header),
        cmocka_unit_test(test_request_memory_budget),
        cmocka_unit_test(test_png_grid_refused_before_decode),
        cmocka_unit_test(test_png_palette_transparency),
        cmocka_unit_test(test_data_dir_ownership),
        cmocka_unit_test(test_job_queue_cap_and_pages),
        cmocka_unit_test(test_upload_commit_holds_no_reads),
        cmocka_unit_test(test_stalled_downloads),
        cmocka_unit_test(test_format_bound_flags),
        cmocka_unit_test(test_bad_bound_flags),
        cmocka_unit_test(test_duplicate_parameters),
        cmocka_unit_test(test_query_bounds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
