/* Black-box tests of training jobs over HTTP: submit (202, Location), GET
 * with progress and per-epoch metrics, the event stream (order, ids,
 * Last-Event-ID, end after the final state, clients that go away), cancel
 * (queued, running, finished, unknown), invalid specs and data paths outside
 * the data root (422), the --job-mem-mb limit, the bearer token, the result
 * as a registry version with latest moved, serving while training, and
 * resuming after kill -9 and after SIGTERM with exactly the requested epochs.
 *
 * The data set is 300 random 8x8 images in IDX files the test writes under
 * its own VAED_DATA directory. A "short" job trains a small MLP for a few
 * epochs (milliseconds); a "long" one a 1024-1024 MLP for 40 epochs (about
 * 60 ms an epoch here, a few seconds in all), or for 8 when it is
 * interrupted and resumed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/harness.h"

#define TOKEN "jobs-test-token-0123456789"
#define LONG_EPOCHS 40
/* The jobs interrupted after their second epoch and resumed: enough
 * epochs that the interruption falls mid-job, and few enough that each of
 * the four runs stays short. */
#define RESUME_EPOCHS 8

typedef struct {
    char dir[HARNESS_PATH_MAX];
    char sets[HARNESS_PATH_MAX + 16];  /* VAED_DATA */
    char data[HARNESS_PATH_MAX + 16];  /* the shared daemon's data dir */
    char token_path[HARNESS_PATH_MAX + 16];
    harness_daemon daemon;
    int port;
} fixture;

static fixture fx;

static int teardown(void **state);

/* ---- helpers ---- */

static const char *const auth_json_headers[] = {"Content-Type: application/json",
                                                "Authorization: Bearer " TOKEN, NULL};
static const char *const auth_headers[] = {"Authorization: Bearer " TOKEN, NULL};

static int64_t json_int(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        fail_msg("no number \"%s\"", key);
    return (int64_t)v->valuedouble;
}

static const char *json_str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *get_json(int port, const char *path, int status)
{
    harness_response r;
    int rc = harness_request(port, "GET", path, NULL, NULL, 0, &r);
    if (rc || r.status != status)
        fail_msg("GET %s: rc %d status %d (want %d): %.300s", path, rc, r.status, status,
                 r.body ? (const char *)r.body : "");
    cJSON *j = harness_json(&r);
    harness_response_free(&r);
    if (!j)
        fail_msg("GET %s: not JSON", path);
    return j;
}

/* A job spec body for the test data set. */
static void spec(char *out, size_t len, const char *model, int epochs, int long_job, int seed)
{
    snprintf(out, len,
             "{\"model\":\"%s\",\"data\":\"tiny-images-idx3-ubyte\",\"hidden\":%s,"
             "\"latent\":%d,\"batch\":32,\"epochs\":%d,\"seed\":%d}",
             model, long_job ? "[1024,1024]" : "[32]", long_job ? 8 : 2, epochs, seed);
}

/* POST /jobs expecting 202; returns the id, checks Location. */
static int64_t submit(int port, const char *body)
{
    harness_response r;
    int rc = harness_request(port, "POST", "/jobs", auth_json_headers, body, strlen(body), &r);
    if (rc || r.status != 202)
        fail_msg("POST /jobs: rc %d status %d: %.400s", rc, r.status,
                 r.body ? (const char *)r.body : "");
    cJSON *j = harness_json(&r);
    assert_non_null(j);
    int64_t id = json_int(j, "id");
    assert_true(id > 0);
    const char *state = json_str(j, "state");
    assert_non_null(state);
    assert_true(!strcmp(state, "queued") || !strcmp(state, "running"));
    char want[64];
    snprintf(want, sizeof want, "/jobs/%" PRId64, id);
    const char *loc = harness_header(&r, "location");
    assert_non_null(loc);
    assert_string_equal(loc, want);
    assert_non_null(strstr(harness_header(&r, "content-type"), "application/json"));
    cJSON_Delete(j);
    harness_response_free(&r);
    return id;
}

/* POST /jobs expecting status with error code; the message must contain
 * needle (when not NULL). */
static void submit_rejected(int port, const char *body, int status, const char *code,
                            const char *needle)
{
    harness_response r;
    assert_int_equal(
        harness_request(port, "POST", "/jobs", auth_json_headers, body, strlen(body), &r), 0);
    if (!harness_expect_error(&r, status, code))
        fail_msg("POST /jobs %s: want %d %s", body, status, code);
    if (needle && !strstr((const char *)r.body, needle))
        fail_msg("POST /jobs %s: message lacks \"%s\": %s", body, needle, (const char *)r.body);
    harness_response_free(&r);
}

/* Polls GET /jobs/ID until its state is final (at most 90 s); returns the job. */
static cJSON *wait_final(int port, int64_t id)
{
    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    int64_t deadline = harness_now_ms() + 90000 * harness_slowdown();
    for (;;) {
        cJSON *j = get_json(port, path, 200);
        const char *s = json_str(j, "state");
        if (s && (!strcmp(s, "succeeded") || !strcmp(s, "failed") || !strcmp(s, "cancelled")))
            return j;
        cJSON_Delete(j);
        if (harness_now_ms() > deadline)
            fail_msg("job %" PRId64 " did not finish", id);
        harness_sleep_ms(50);
    }
}

/* ---- server-sent events ---- */

typedef struct {
    int64_t id;
    char type[16];
    cJSON *data; /* owned */
} sse_event;

/* Parses a whole event stream; returns the number of events (at most max). */
static int parse_sse(const char *text, sse_event *ev, int max)
{
    int n = 0;
    sse_event cur = {0};
    int have = 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, "\n");
        if (len == 0) {
            if (have && n < max)
                ev[n++] = cur;
            else
                cJSON_Delete(cur.data);
            memset(&cur, 0, sizeof cur);
            have = 0;
        } else if (!strncmp(p, "id: ", 4)) {
            cur.id = strtoll(p + 4, NULL, 10);
            have = 1;
        } else if (!strncmp(p, "event: ", 7)) {
            snprintf(cur.type, sizeof cur.type, "%.*s", (int)(len - 7), p + 7);
            have = 1;
        } else if (!strncmp(p, "data: ", 6)) {
            cJSON_Delete(cur.data);
            cur.data = cJSON_ParseWithLength(p + 6, len - 6);
            have = 1;
        } else if (p[0] != ':') {
            fail_msg("unexpected stream line: %.*s", (int)len, p);
        }
        p += len;
        if (*p == '\n')
            p++;
    }
    cJSON_Delete(cur.data);
    return n;
}

static void free_events(sse_event *ev, int n)
{
    for (int i = 0; i < n; i++)
        cJSON_Delete(ev[i].data);
}

/* GET /jobs/ID/events to its end (Last-Event-ID when last >= 0). */
static int read_events(int port, int64_t id, int64_t last, sse_event *ev, int max)
{
    char path[64], header[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64 "/events", id);
    snprintf(header, sizeof header, "Last-Event-ID: %" PRId64, last);
    const char *headers[] = {header, NULL};
    harness_response r;
    int rc = harness_request(port, "GET", path, last >= 0 ? headers : NULL, NULL, 0, &r);
    if (rc || r.status != 200)
        fail_msg("GET %s: rc %d status %d", path, rc, r.status);
    assert_non_null(strstr(harness_header(&r, "content-type"), "text/event-stream"));
    int n = parse_sse(r.body ? (const char *)r.body : "", ev, max);
    harness_response_free(&r);
    return n;
}

static int is_state(const sse_event *e, const char *state)
{
    const char *s = json_str(e->data, "state");
    return !strcmp(e->type, "state") && s && !strcmp(s, state);
}

/* A live stream on a plain socket. HTTP/1.0, so the body is not chunked and
 * what arrives can be searched as it is. */
typedef struct {
    int fd;
    char buf[1 << 16];
    size_t len;
} live_stream;

static void live_open(live_stream *s, int port, int64_t id)
{
    s->len = 0;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[128];
    int n = snprintf(req, sizeof req, "GET /jobs/%" PRId64 "/events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                     id);
    assert_int_equal(send(s->fd, req, (size_t)n, MSG_NOSIGNAL), n);
}

static int count_in(const char *hay, size_t len, const char *needle)
{
    int n = 0;
    size_t nl = strlen(needle);
    for (const char *p = hay; (p = memmem(p, len - (size_t)(p - hay), needle, nl)); p += nl)
        n++;
    return n;
}

/* Reads until the stream holds count copies of needle; 0, or -1 when the
 * stream ended or timeout_ms passed first. */
static int live_wait(live_stream *s, const char *needle, int count, int timeout_ms)
{
    int64_t deadline = harness_now_ms() + (int64_t)timeout_ms * harness_slowdown();
    while (count_in(s->buf, s->len, needle) < count) {
        int64_t left = deadline - harness_now_ms();
        if (left <= 0 || s->len + 1 >= sizeof s->buf)
            return -1;
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            return -1;
        ssize_t got = recv(s->fd, s->buf + s->len, sizeof s->buf - s->len - 1, 0);
        if (got <= 0)
            return -1;
        s->len += (size_t)got;
        s->buf[s->len] = '\0';
    }
    return 0;
}

static void live_close(live_stream *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* ---- fixture ---- */

static int setup(void **state)
{
    memset(&fx, 0, sizeof fx);
    unsetenv("VAED_TOKEN");
    if (harness_tmpdir(fx.dir, sizeof fx.dir))
        goto fail;
    snprintf(fx.sets, sizeof fx.sets, "%s/sets", fx.dir);
    snprintf(fx.data, sizeof fx.data, "%s/data", fx.dir);
    snprintf(fx.token_path, sizeof fx.token_path, "%s/token", fx.dir);
    if (mkdir(fx.sets, 0755) || harness_write_tiny_images(fx.sets) ||
        harness_write_file(fx.token_path, TOKEN "\n", strlen(TOKEN) + 1))
        goto fail;
    /* The daemons inherit it: their data root. */
    setenv("VAED_DATA", fx.sets, 1);
    char err[256];
    if (harness_put_model(fx.data, "digits", NULL, 1, NULL, err, sizeof err)) {
        fprintf(stderr, "put model: %s\n", err);
        goto fail;
    }
    const char *const args[] = {"--token-file", fx.token_path, "--job-mem-mb", "64", NULL};
    fx.port = harness_daemon_start(&fx.daemon, fx.data, args);
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
    int rc = 0;
    if (fx.daemon.pid > 0) /* a clean exit: no leak or sanitizer report in the daemon */
        rc = harness_daemon_stop(&fx.daemon);
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    return rc ? -1 : 0;
}

/* ---- tests ---- */

/* Submit, the stream in order to its end, the job's metrics, the result as
 * the model's latest version. */
static void test_submit_stream_result(void **state)
{
    (void)state;
    char body[512];
    spec(body, sizeof body, "short", 4, 0, 7);
    int64_t id = submit(fx.port, body);

    sse_event ev[64];
    int n = read_events(fx.port, id, -1, ev, 64);
    assert_true(n >= 7); /* queued, running, 4 epochs, succeeded (+ progress) */
    assert_true(is_state(&ev[0], "queued"));
    int epochs = 0, running = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(ev[i].id, i + 1); /* numbered 1, 2, 3 ... */
        assert_non_null(ev[i].data);
        if (is_state(&ev[i], "running"))
            running++;
        if (!strcmp(ev[i].type, "epoch")) {
            assert_int_equal(running, 1);
            assert_int_equal(json_int(ev[i].data, "epoch"), ++epochs);
            assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(ev[i].data, "train_loss")));
        }
        if (!strcmp(ev[i].type, "progress"))
            assert_true(json_int(ev[i].data, "epochs") == 4);
    }
    assert_int_equal(epochs, 4);
    assert_true(is_state(&ev[n - 1], "succeeded")); /* the stream ends after it */
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(ev[n - 1].data, "result");
    assert_string_equal(json_str(result, "model"), "short");
    int64_t version = json_int(result, "version");
    free_events(ev, n);

    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    cJSON *job = get_json(fx.port, path, 200);
    assert_string_equal(json_str(job, "state"), "succeeded");
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(job, "metrics");
    assert_int_equal(cJSON_GetArraySize(metrics), 4);
    for (int i = 0; i < 4; i++) {
        const cJSON *m = cJSON_GetArrayItem(metrics, i);
        assert_int_equal(json_int(m, "epoch"), i + 1);
        assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "train_loss")));
        assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m, "images_per_s")));
    }
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(job, "config");
    assert_int_equal(json_int(cfg, "epochs"), 4);
    assert_non_null(json_str(job, "finished_at"));
    cJSON_Delete(job);

    cJSON *model = get_json(fx.port, "/models/short", 200);
    assert_int_equal(json_int(model, "latest_version"), version);
    cJSON_Delete(model);

    /* A second job for the same model: a new version, and latest follows. */
    spec(body, sizeof body, "short", 2, 0, 8);
    int64_t id2 = submit(fx.port, body);
    job = wait_final(fx.port, id2);
    assert_string_equal(json_str(job, "state"), "succeeded");
    result = cJSON_GetObjectItemCaseSensitive(job, "result");
    int64_t v2 = json_int(result, "version");
    assert_true(v2 > version);
    cJSON_Delete(job);
    model = get_json(fx.port, "/models/short", 200);
    assert_int_equal(json_int(model, "latest_version"), v2);
    const cJSON *aliases = cJSON_GetObjectItemCaseSensitive(model, "aliases");
    assert_int_equal(json_int(aliases, "latest"), v2);
    cJSON_Delete(model);
    /* and it serves */
    harness_response r;
    assert_int_equal(harness_request(fx.port, "POST", "/sample?model=short&n=2", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
}

/* Last-Event-ID resumes after the event it names; after the final event the
 * stream is empty and ends; a bad one is 400; an unknown job 404. */
static void test_last_event_id(void **state)
{
    (void)state;
    char body[512];
    spec(body, sizeof body, "resume-ids", 3, 0, 3);
    int64_t id = submit(fx.port, body);
    cJSON_Delete(wait_final(fx.port, id));
    sse_event all[64], tail[64];
    int n = read_events(fx.port, id, -1, all, 64);
    assert_true(n >= 6);
    int m = read_events(fx.port, id, 3, tail, 64);
    assert_int_equal(m, n - 3);
    for (int i = 0; i < m; i++) {
        assert_int_equal(tail[i].id, all[i + 3].id);
        assert_string_equal(tail[i].type, all[i + 3].type);
    }
    free_events(tail, m);
    assert_int_equal(read_events(fx.port, id, all[n - 1].id, tail, 64), 0);
    free_events(all, n);

    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64 "/events", id);
    const char *bad[] = {"Last-Event-ID: x1", NULL};
    harness_response r;
    assert_int_equal(harness_request(fx.port, "GET", path, bad, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);
    assert_int_equal(harness_request(fx.port, "GET", "/jobs/999999/events", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 404, "not_found"));
    harness_response_free(&r);
    assert_int_equal(harness_request(fx.port, "GET", "/jobs/abc", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 404, "not_found"));
    harness_response_free(&r);
}

/* One worker: a long job runs, the next waits. Cancelling the queued one
 * means it never starts; the running one stops within a step. */
static void test_cancel(void **state)
{
    (void)state;
    char body[512];
    spec(body, sizeof body, "cancel-a", 1000, 1, 1);
    int64_t a = submit(fx.port, body);
    spec(body, sizeof body, "cancel-b", 3, 0, 1);
    int64_t b = submit(fx.port, body);

    live_stream s;
    live_open(&s, fx.port, a);
    assert_int_equal(live_wait(&s, "event: epoch", 1, 30000), 0);

    /* the queued one */
    char path[64];
    harness_response r;
    snprintf(path, sizeof path, "/jobs/%" PRId64 "/cancel", b);
    assert_int_equal(harness_request(fx.port, "POST", path, auth_headers, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = harness_json(&r);
    assert_string_equal(json_str(j, "state"), "cancelled");
    cJSON_Delete(j);
    harness_response_free(&r);
    sse_event ev[16];
    int n = read_events(fx.port, b, -1, ev, 16);
    assert_int_equal(n, 2);
    assert_true(is_state(&ev[0], "queued"));
    assert_true(is_state(&ev[1], "cancelled"));
    free_events(ev, n);
    assert_int_equal(harness_request(fx.port, "POST", path, auth_headers, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 409, "conflict"));
    harness_response_free(&r);

    /* the running one: its stream ends with "cancelled" */
    snprintf(path, sizeof path, "/jobs/%" PRId64 "/cancel", a);
    int64_t t0 = harness_now_ms();
    assert_int_equal(harness_request(fx.port, "POST", path, auth_headers, NULL, 0, &r), 0);
    assert_true(r.status == 202 || r.status == 200);
    harness_response_free(&r);
    assert_int_equal(live_wait(&s, "{\"state\":\"cancelled\"}", 1, 10000), 0);
    assert_true(harness_now_ms() - t0 < 2000 * harness_slowdown()); /* one step is milliseconds */
    live_close(&s);
    j = wait_final(fx.port, a);
    assert_string_equal(json_str(j, "state"), "cancelled");
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "metrics")) < 1000);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "result")));
    cJSON_Delete(j);
    cJSON *model = get_json(fx.port, "/models/cancel-a", 404);
    cJSON_Delete(model);

    assert_int_equal(harness_request(fx.port, "POST", "/jobs/424242/cancel", auth_headers, NULL,
                                     0, &r),
                     0);
    assert_true(harness_expect_error(&r, 404, "not_found"));
    harness_response_free(&r);
}

static void test_invalid_specs(void **state)
{
    (void)state;
    submit_rejected(fx.port, "{\"model\":\"x\",\"data\":\"tiny-images-idx3-ubyte\",\"bogus\":1}",
                    422, "unprocessable", "bogus");
    submit_rejected(fx.port, "{\"data\":\"tiny-images-idx3-ubyte\"}", 422, "unprocessable",
                    "model");
    submit_rejected(fx.port,
                    "{\"model\":\"x\",\"data\":\"tiny-images-idx3-ubyte\",\"epochs\":0}", 422,
                    "unprocessable", "epochs");
    submit_rejected(fx.port, "{\"model\":\"x\",\"data\":\"tiny-images-idx3-ubyte\",\"lr\":\"a\"}",
                    422, "unprocessable", "lr");
    submit_rejected(fx.port, "{\"model\":\"x\",", 400, "bad_request", NULL);
    submit_rejected(fx.port, "[1,2]", 400, "bad_request", NULL);
    /* over --job-mem-mb 64 */
    submit_rejected(fx.port,
                    "{\"model\":\"x\",\"data\":\"tiny-images-idx3-ubyte\",\"hidden\":[4096,4096]}",
                    422, "unprocessable", "--job-mem-mb");
    /* files outside the data root, however named */
    submit_rejected(fx.port, "{\"model\":\"x\",\"data\":\"/etc/passwd\"}", 422, "unprocessable",
                    "data");
    submit_rejected(fx.port, "{\"model\":\"x\",\"data\":\"../data/registry.db\"}", 422,
                    "unprocessable", "data");
    char link[HARNESS_PATH_MAX + 64], target[HARNESS_PATH_MAX + 64];
    snprintf(link, sizeof link, "%s/escape-images-idx3-ubyte", fx.sets);
    snprintf(target, sizeof target, "%s/outside-images-idx3-ubyte", fx.dir);
    char src[HARNESS_PATH_MAX + 64];
    snprintf(src, sizeof src, "%s/tiny-images-idx3-ubyte", fx.sets);
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    uint8_t buf[20000];
    size_t len = fread(buf, 1, sizeof buf, in);
    fclose(in);
    assert_int_equal(harness_write_file(target, buf, len), 0);
    assert_int_equal(symlink(target, link), 0);
    submit_rejected(fx.port, "{\"model\":\"x\",\"data\":\"escape-images-idx3-ubyte\"}", 422,
                    "unprocessable", "data");
    /* the same file by its absolute path inside the root is fine */
    char body[HARNESS_PATH_MAX + 128];
    snprintf(body, sizeof body, "{\"model\":\"abs\",\"data\":\"%s\",\"hidden\":[8],\"epochs\":1}",
             src);
    cJSON_Delete(wait_final(fx.port, submit(fx.port, body)));
    /* a conditional job: the labels beside the images, 10 classes in the model */
    submit_rejected(fx.port,
                    "{\"model\":\"x\",\"data\":\"tiny-images-idx3-ubyte\",\"conditional\":\"yes\"}",
                    422, "unprocessable", "conditional");
    cJSON *job = wait_final(
        fx.port, submit(fx.port, "{\"model\":\"cond\",\"data\":\"tiny-images-idx3-ubyte\","
                                 "\"hidden\":[8],\"epochs\":1,\"conditional\":true}"));
    assert_string_equal(json_str(job, "state"), "succeeded");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(job, "config"), "conditional")));
    cJSON_Delete(job);
    cJSON *version = get_json(fx.port, "/models/cond/versions/1", 200);
    const cJSON *vcfg = cJSON_GetObjectItemCaseSensitive(version, "config");
    assert_int_equal(json_int(vcfg, "n_classes"), 10);
    cJSON_Delete(version);

    harness_response r;
    const char *form[] = {"Content-Type: text/plain", "Authorization: Bearer " TOKEN, NULL};
    assert_int_equal(harness_request(fx.port, "POST", "/jobs", form, "{}", 2, &r), 0);
    assert_true(harness_expect_error(&r, 415, "unsupported_media_type"));
    harness_response_free(&r);
    assert_int_equal(harness_request(fx.port, "GET", "/jobs?state=nope", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);
}

static void test_auth_and_list(void **state)
{
    (void)state;
    char body[512];
    spec(body, sizeof body, "auth", 1, 0, 1);
    const char *no_token[] = {"Content-Type: application/json", NULL};
    const char *wrong[] = {"Content-Type: application/json",
                           "Authorization: Bearer not-the-token-at-all", NULL};
    harness_response r;
    assert_int_equal(harness_request(fx.port, "POST", "/jobs", no_token, body, strlen(body), &r), 0);
    assert_true(harness_expect_error(&r, 401, "unauthorized"));
    harness_response_free(&r);
    assert_int_equal(harness_request(fx.port, "POST", "/jobs", wrong, body, strlen(body), &r), 0);
    assert_true(harness_expect_error(&r, 401, "unauthorized"));
    harness_response_free(&r);
    int64_t id = submit(fx.port, body);
    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64 "/cancel", id);
    assert_int_equal(harness_request(fx.port, "POST", path, NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 401, "unauthorized"));
    harness_response_free(&r);
    cJSON_Delete(wait_final(fx.port, id));

    /* reads need no token; ?state= filters */
    cJSON *all = get_json(fx.port, "/jobs", 200);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(all, "jobs");
    assert_true(cJSON_GetArraySize(list) >= 1);
    int64_t prev = 0;
    int found = 0;
    const cJSON *j;
    cJSON_ArrayForEach(j, list)
    {
        assert_true(json_int(j, "id") > prev); /* submission order */
        prev = json_int(j, "id");
        found |= prev == id;
    }
    assert_true(found);
    cJSON_Delete(all);
    cJSON *ok = get_json(fx.port, "/jobs?state=succeeded", 200);
    cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(ok, "jobs"))
        assert_string_equal(json_str(j, "state"), "succeeded");
    cJSON_Delete(ok);
    cJSON *queued = get_json(fx.port, "/jobs?state=queued", 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(queued, "jobs")), 0);
    cJSON_Delete(queued);

    /* /metrics counts jobs by state */
    assert_int_equal(harness_request(fx.port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    const char *line = strstr((const char *)r.body, "vaed_jobs{state=\"succeeded\"} ");
    assert_non_null(line);
    assert_true(atoi(line + strlen("vaed_jobs{state=\"succeeded\"} ")) >= 1);
    harness_response_free(&r);
}

/* While a job trains: progress at least every second, /healthz and /sample
 * keep answering quickly, and clients that drop their streams cost nothing. */
static void test_serving_while_training(void **state)
{
    (void)state;
    char body[512];
    spec(body, sizeof body, "busy", LONG_EPOCHS, 1, 5);
    int64_t id = submit(fx.port, body);
    live_stream s;
    live_open(&s, fx.port, id);
    assert_int_equal(live_wait(&s, "event: epoch", 1, 30000), 0);

    /* GET shows progress while it runs (one epoch of LONG_EPOCHS is done) */
    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    cJSON *job = get_json(fx.port, path, 200);
    assert_string_equal(json_str(job, "state"), "running");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(job, "progress");
    assert_true(cJSON_IsObject(p));
    assert_int_equal(json_int(p, "epochs"), LONG_EPOCHS);
    assert_true(json_int(p, "epoch") >= 1);
    cJSON_Delete(job);

    /* streams that go away mid-way (their state is freed; ASan checks at exit) */
    for (int i = 0; i < 4; i++) {
        live_stream gone;
        live_open(&gone, fx.port, id);
        if (i % 2)
            live_wait(&gone, "event:", 1, 5000);
        live_close(&gone);
    }

    int64_t worst = 0;
    for (int i = 0; i < 20; i++) {
        harness_response r;
        int64_t t0 = harness_now_ms();
        assert_int_equal(harness_request(fx.port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        harness_response_free(&r);
        assert_int_equal(
            harness_request(fx.port, "POST", "/sample?model=digits&n=4", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        harness_response_free(&r);
        int64_t dt = harness_now_ms() - t0;
        if (dt > worst)
            worst = dt;
        harness_sleep_ms(20);
    }
    assert_true(worst < 500 * harness_slowdown());
    live_close(&s);

    cJSON_Delete(wait_final(fx.port, id));
    sse_event ev[256];
    int n = read_events(fx.port, id, -1, ev, 256);
    assert_true(is_state(&ev[n - 1], "succeeded"));
    /* a job of a few seconds reports progress between its epochs */
    int progress = 0;
    for (int i = 0; i < n; i++)
        progress += !strcmp(ev[i].type, "progress");
    assert_true(progress >= 1);
    free_events(ev, n);
}

/* A daemon of its own on dir, with the data set root of the fixture. */
static int start_own(harness_daemon *d, const char *dir)
{
    return harness_daemon_start(d, dir, NULL);
}

/* Checks a finished resumed job: succeeded with exactly RESUME_EPOCHS epochs. */
static void check_resumed(int port, int64_t id, const char *model, char sha[65])
{
    cJSON *job = wait_final(port, id);
    assert_string_equal(json_str(job, "state"), "succeeded");
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(job, "metrics");
    assert_int_equal(cJSON_GetArraySize(metrics), RESUME_EPOCHS);
    for (int i = 0; i < RESUME_EPOCHS; i++)
        assert_int_equal(json_int(cJSON_GetArrayItem(metrics, i), "epoch"), i + 1);
    cJSON_Delete(job);
    char path[128];
    snprintf(path, sizeof path, "/models/%s/versions/latest", model);
    cJSON *v = get_json(port, path, 200);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(v, "metrics");
    assert_int_equal(json_int(m, "epochs"), RESUME_EPOCHS);
    snprintf(sha, 65, "%s", json_str(v, "sha256"));
    cJSON_Delete(v);
}

/* kill -9 after the second epoch; the restarted daemon finishes the job with
 * exactly the requested epochs, and the bytes an uninterrupted run gives. */
static void test_kill9_resumes(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX + 16], body[512];
    snprintf(dir, sizeof dir, "%s/kill9", fx.dir);
    harness_daemon d;
    int port = start_own(&d, dir);
    assert_true(port > 0);
    spec(body, sizeof body, "crash", RESUME_EPOCHS, 1, 11);
    int64_t id = submit(port, body);
    live_stream s;
    live_open(&s, port, id);
    assert_int_equal(live_wait(&s, "event: epoch", 2, 60000), 0);
    assert_int_equal(harness_daemon_kill9(&d), 128 + 9);
    live_close(&s);

    port = start_own(&d, dir);
    assert_true(port > 0);
    char sha[65];
    check_resumed(port, id, "crash", sha);
    sse_event ev[512];
    int n = read_events(port, id, -1, ev, 512);
    int restarted = 0;
    for (int i = 0; i < n; i++)
        if (is_state(&ev[i], "queued") && json_str(ev[i].data, "reason") &&
            !strcmp(json_str(ev[i].data, "reason"), "restarted"))
            restarted++;
    assert_int_equal(restarted, 1);
    free_events(ev, n);
    assert_int_equal(harness_daemon_stop(&d), 0);

    /* the same spec without interruption, on the fixture's daemon */
    int64_t ref = submit(fx.port, body);
    char ref_sha[65];
    check_resumed(fx.port, ref, "crash", ref_sha);
    assert_string_equal(sha, ref_sha);
}

/* SIGTERM mid-job: a clean exit within seconds, and the job resumes from the
 * mid-epoch position it saved, to the bytes an uninterrupted run gives. */
static void test_sigterm_resumes(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX + 16], body[512];
    snprintf(dir, sizeof dir, "%s/sigterm", fx.dir);
    harness_daemon d;
    int port = start_own(&d, dir);
    assert_true(port > 0);
    spec(body, sizeof body, "term", RESUME_EPOCHS, 1, 12);
    int64_t id = submit(port, body);
    live_stream s;
    live_open(&s, port, id);
    assert_int_equal(live_wait(&s, "event: epoch", 2, 60000), 0);
    int64_t t0 = harness_now_ms();
    assert_int_equal(harness_daemon_stop(&d), 0);
    int64_t took = harness_now_ms() - t0;
    assert_true(took < 5000 * harness_slowdown());
    /* the open stream got the interruption, then ended */
    assert_int_equal(live_wait(&s, "\"reason\":\"interrupted\"", 1, 1000), 0);
    live_close(&s);

    port = start_own(&d, dir);
    assert_true(port > 0);
    char sha[65];
    check_resumed(port, id, "term", sha);
    assert_int_equal(harness_daemon_stop(&d), 0);

    /* the same spec without interruption, on the fixture's daemon */
    int64_t ref = submit(fx.port, body);
    char ref_sha[65];
    check_resumed(fx.port, ref, "term", ref_sha);
    assert_string_equal(sha, ref_sha);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_stream_result),
        cmocka_unit_test(test_last_event_id),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_invalid_specs),
        cmocka_unit_test(test_auth_and_list),
        cmocka_unit_test(test_serving_while_training),
        cmocka_unit_test(test_kill9_resumes),
        cmocka_unit_test(test_sigterm_resumes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
