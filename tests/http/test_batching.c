/* test_batching: dynamic batching through HTTP. Every inference endpoint in
 * every format it offers (/encode's bodies as JSON, npy and PNG; /decode,
 * /sample and both /interpolate in PNG, JSON and npy), of 1, 3 and 16 rows,
 * on two models (one plain, one conditional) and a conv model (which runs
 * unbatched), is first asked alone of a daemon started with --max-batch 1;
 * then the same requests are fired from several threads at once, twice
 * over, at a daemon that batches (--max-queue-delay-us 2000, so that
 * requests wait for each other and batches of more than one surely form),
 * while other clients send a request and go away before the answer. Each
 * answer must be byte for byte the one given alone, /metrics must show
 * engine calls that served several requests, and the daemon must stop
 * cleanly (under ASan: nothing leaked by the abandoned requests). Bad
 * values of the two flags are refused at start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/harness.h"

#define SEED 5
#define MAX_REQ 160
#define THREADS 8
#define D 784

typedef struct {
    const char *method;
    char path[256];
    const char *ctype;       /* NULL: no body */
    uint8_t *body;           /* owned */
    size_t body_len;
    int status;              /* the answer alone */
    uint8_t *want;           /* owned: its body */
    size_t want_len;
} spec;

static struct {
    char dir[HARNESS_PATH_MAX];
    int have_mnist;
    spec req[MAX_REQ];
    int n_req;
    uint8_t *png;            /* one 28x28 PNG, an /encode body */
    size_t png_len;
} fx;

static atomic_int mismatches;
static int port;

static void add(const char *method, const char *ctype, const void *body, size_t len,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void add(const char *method, const char *ctype, const void *body, size_t len,
                const char *fmt, ...)
{
    assert_true(fx.n_req < MAX_REQ);
    spec *s = &fx.req[fx.n_req++];
    memset(s, 0, sizeof *s);
    s->method = method;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->path, sizeof s->path, fmt, ap);
    va_end(ap);
    s->ctype = ctype;
    if (body) {
        s->body = malloc(len + 1);
        assert_non_null(s->body);
        memcpy(s->body, body, len);
        s->body_len = len;
    }
}

static float *rows(int n, int cols, float lo, float hi, unsigned seed)
{
    float *v = malloc(sizeof(float) * (size_t)n * cols);
    assert_non_null(v);
    for (int i = 0; i < n * cols; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = lo + (hi - lo) * (float)((seed >> 8) & 0xffff) / 65535.0f;
    }
    return v;
}

/* A float32 .npy of shape (n, cols). */
static uint8_t *npy(const float *v, int n, int cols, size_t *len)
{
    char dict[128];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }",
                      n, cols);
    size_t header = 10 + (size_t)dl + 1;
    size_t pad = (64 - header % 64) % 64;
    size_t hlen = (size_t)dl + pad + 1;
    *len = 10 + hlen + sizeof(float) * (size_t)n * cols;
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)(hlen & 0xff);
    b[9] = (uint8_t)(hlen >> 8);
    memcpy(b + 10, dict, (size_t)dl);
    memset(b + 10 + dl, ' ', pad);
    b[10 + dl + pad] = '\n';
    memcpy(b + 10 + hlen, v, sizeof(float) * (size_t)n * cols);
    return b;
}

static void add_json(const char *path_fmt, const char *model, const char *fmt, const char *body)
{
    char path[200];
    snprintf(path, sizeof path, path_fmt, model);
    add("POST", "application/json", body, strlen(body), "%s%sformat=%s", path,
        strchr(path, '?') ? "&" : "?", fmt);
}

/* Every request of the test, for model (latent L; conditional: labels). */
static void add_model(const char *model, int L, int cond, unsigned seed)
{
    static const int sizes[] = {1, 3, 16};
    static const char *const formats[] = {"png", "json", "npy"};
    char *text = malloc(200000);
    assert_non_null(text);
    for (int si = 0; si < 3; si++) {
        int n = sizes[si];
        char labels[128] = "", labels_json[128] = "";
        for (int i = 0; cond && i < n; i++) {
            size_t a = strlen(labels), b = strlen(labels_json);
            snprintf(labels + a, sizeof labels - a, "%s%d", i ? "," : "", (i * 3) % 10);
            snprintf(labels_json + b, sizeof labels_json - b, "%s%d", i ? "," : "", (i * 7) % 10);
        }
        /* /encode: JSON and npy bodies of n images */
        float *x = rows(n, D, 0, 1, seed + (unsigned)n);
        char *xr = harness_json_rows(x, n, D);
        assert_non_null(xr);
        snprintf(text, 200000, "{\"x\": %s}", xr);
        char q[200];
        snprintf(q, sizeof q, "/encode?model=%s%s%s", model, cond ? "&labels=" : "", labels);
        add("POST", "application/json", text, strlen(text), "%s", q);
        size_t nlen;
        uint8_t *nb = npy(x, n, D, &nlen);
        add("POST", "application/x-npy", nb, nlen, "%s", q);
        free(nb);
        free(xr);
        free(x);
        /* /decode, /sample, POST /interpolate in every format */
        float *z = rows(n, L, -2, 2, seed + 100 + (unsigned)n);
        char *zr = harness_json_rows(z, n, L);
        assert_non_null(zr);
        if (cond)
            snprintf(text, 200000, "{\"z\": %s, \"labels\": [%s]}", zr, labels_json);
        else
            snprintf(text, 200000, "{\"z\": %s}", zr);
        char *a = harness_json_rows(z, 1, L), *b = harness_json_rows(z + (size_t)(n - 1) * L, 1, L);
        char interp[1024];
        snprintf(interp, sizeof interp,
                 "{\"from\": {\"z\": %.*s%s}, \"to\": {\"z\": %.*s%s}, \"steps\": %d, \"mode\": \"%s\"}",
                 (int)strlen(a) - 2, a + 1, cond ? ", \"label\": 2" : "", (int)strlen(b) - 2, b + 1,
                 cond ? ", \"label\": 7" : "", n < 2 ? 2 : n, n == 3 ? "slerp" : "lerp");
        for (int f = 0; f < 3; f++) {
            char p[200];
            snprintf(p, sizeof p, "/decode?model=%s&format=%s", model, formats[f]);
            add("POST", "application/json", text, strlen(text), "%s", p);
            add("POST", NULL, NULL, 0, "/sample?model=%s&n=%d&seed=%u&format=%s", model, n,
                seed + (unsigned)(n * 10 + f), formats[f]);
            add_json("/interpolate?model=%s", model, formats[f], interp);
            if (fx.have_mnist)
                add("GET", NULL, NULL, 0,
                    "/interpolate?model=%s&from=mnist:test:%d&to=mnist:test:%d&steps=%d&format=%s",
                    model, n + f, 40 + n * 3 + f + (int)seed, n < 2 ? 2 : n, formats[f]);
        }
        free(a);
        free(b);
        free(zr);
        free(z);
    }
    free(text);
}

/* One request of s; returns 1 when its answer is the one it had alone (or
 * when asked alone, records it). */
static int ask(const spec *s, int *status, uint8_t **body, size_t *len)
{
    char ct[96];
    const char *headers[] = {ct, NULL};
    snprintf(ct, sizeof ct, "Content-Type: %s", s->ctype ? s->ctype : "");
    harness_response r;
    int rc = harness_request(port, s->method, s->path, s->ctype ? headers : NULL, s->body,
                             s->body_len, &r);
    *status = r.status;
    *body = r.body;
    *len = r.body_len;
    r.body = NULL;
    harness_response_free(&r);
    return rc;
}

static void *fire(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int round = 0; round < 2; round++)
        for (int i = t; i < fx.n_req; i += THREADS) {
            const spec *s = &fx.req[(i + round * 7) % fx.n_req];
            int status;
            uint8_t *body;
            size_t len;
            int rc = ask(s, &status, &body, &len);
            if (rc || status != s->status || len != s->want_len || memcmp(body, s->want, len)) {
                atomic_fetch_add(&mismatches, 1);
                fprintf(stderr, "%s %s: rc %d status %d (alone %d), %zu bytes (alone %zu)\n",
                        s->method, s->path, rc, status, s->status, len, s->want_len);
            }
            free(body);
        }
    return NULL;
}

/* Clients that send a whole request (a /sample of 16 that waits for its
 * batch) and close the connection before the answer. */
static void *walk_away(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
            atomic_fetch_add(&mismatches, 1);
            if (fd >= 0)
                close(fd);
            continue;
        }
        char req[256];
        int n = snprintf(req, sizeof req,
                         "POST /sample?model=digits&n=16&seed=%d&format=json HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\nContent-Length: 0\r\n\r\n",
                         i);
        if (write(fd, req, (size_t)n) != n)
            atomic_fetch_add(&mismatches, 1);
        close(fd);
        harness_sleep_ms(2);
    }
    return NULL;
}

static double metric(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, nl) && p[nl] == ' ')
            return atof(p + nl + 1);
    return -1;
}

static void test_batched_answers_equal_answers_alone(void **state)
{
    (void)state;
    char err[256];
    vae_config cond, conv;
    harness_small_config(&cond);
    cond.n_classes = 10;
    vae_config_default(&conv);
    conv.arch = VAE_ARCH_CONV;
    conv.latent = 4;
    if ((fx.have_mnist = harness_use_repo_data()) < 0)
        fail_msg("VAED_DATA");
    assert_int_equal(harness_tmpdir(fx.dir, sizeof fx.dir), 0);
    if (harness_put_model(fx.dir, "digits", NULL, SEED, NULL, err, sizeof err) ||
        harness_put_model(fx.dir, "cdigits", &cond, SEED + 1, NULL, err, sizeof err) ||
        harness_put_model(fx.dir, "cnn", &conv, SEED + 2, NULL, err, sizeof err))
        fail_msg("model: %s", err);
    add_model("digits", 4, 0, 1);
    add_model("cdigits", 4, 1, 2);
    add_model("cnn", 4, 0, 3);

    /* ---- alone: every request, one at a time, no batching ---- */
    harness_daemon d;
    const char *alone_args[] = {"--max-batch", "1", NULL};
    port = harness_daemon_start(&d, fx.dir, alone_args);
    assert_true(port > 0);
    /* a PNG of one image, as an /encode body */
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/sample?model=digits&n=1&seed=9&format=png",
                                     NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    add("POST", "image/png", r.body, r.body_len, "/encode?model=digits");
    add("POST", "image/png", r.body, r.body_len, "/encode?model=cdigits&label=4");
    add("POST", "image/png", r.body, r.body_len, "/encode?model=cnn");
    harness_response_free(&r);
    int ok = 0;
    for (int i = 0; i < fx.n_req; i++) {
        spec *s = &fx.req[i];
        assert_int_equal(ask(s, &s->status, &s->want, &s->want_len), 0);
        if (s->status != 200)
            fprintf(stderr, "alone: %s %s: %d %.200s\n", s->method, s->path, s->status,
                    s->want ? (const char *)s->want : "");
        ok += s->status == 200;
    }
    assert_int_equal(ok, fx.n_req); /* every request is one that computes */
    assert_int_equal(harness_daemon_stop(&d), 0);

    /* ---- together: threads at once, and clients that go away ---- */
    const char *batch_args[] = {"--max-batch", "64", "--max-queue-delay-us", "2000", NULL};
    port = harness_daemon_start(&d, fx.dir, batch_args);
    assert_true(port > 0);
    pthread_t th[THREADS + 1];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, fire, (void *)(intptr_t)t), 0);
    assert_int_equal(pthread_create(&th[THREADS], NULL, walk_away, NULL), 0);
    for (int t = 0; t <= THREADS; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(atomic_load(&mismatches), 0);

    assert_int_equal(harness_request(port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    double shared = metric((const char *)r.body, "vaed_infer_batches_shared_total");
    double calls = metric((const char *)r.body, "vaed_infer_batch_requests_count");
    double served = metric((const char *)r.body, "vaed_infer_batch_requests_sum");
    fprintf(stderr, "engine calls %g for %g requests, %g of them shared\n", calls, served, shared);
    assert_true(shared > 0);
    assert_true(served > calls);
    harness_response_free(&r);
    assert_int_equal(harness_daemon_stop(&d), 0);
}

/* Bad values of the two flags stop `vaed serve` at once with a message. */
static void test_bad_flags_refused(void **state)
{
    (void)state;
    static const char *const bad[][2] = {{"--max-batch", "0"},        {"--max-batch", "257"},
                                         {"--max-batch", "many"},     {"--max-queue-delay-us", "-1"},
                                         {"--max-queue-delay-us", "1000001"},
                                         {"--max-queue-delay-us", "1e3"}};
    char dir[HARNESS_PATH_MAX];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        harness_daemon d;
        const char *args[] = {bad[i][0], bad[i][1], NULL};
        assert_true(harness_daemon_start(&d, dir, args) < 0);
        assert_int_equal(d.exit_status, 2);
        char *log = harness_daemon_log(&d), want[96];
        assert_non_null(log);
        /* the log grows with each start: this start's line names flag and value */
        snprintf(want, sizeof want, "%s wants an integer in", bad[i][0]);
        char value[32];
        snprintf(value, sizeof value, "not \"%s\"", bad[i][1]);
        if (!strstr(log, want) || !strstr(log, value))
            fail_msg("%s %s: no message naming the flag and value: %s", bad[i][0], bad[i][1], log);
        free(log);
    }
    harness_rm_rf(dir);
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < fx.n_req; i++) {
        free(fx.req[i].body);
        free(fx.req[i].want);
    }
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_flags_refused),
        cmocka_unit_test_teardown(test_batched_answers_equal_answers_alone, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
