/* End to end: two vaed replicas sharing one PostgreSQL registry behind
 * HAProxy, all started here on 127.0.0.1 (PostgreSQL by tests/lib/pg_server,
 * HAProxy from Debian with the /readyz health checks of docker/haproxy.cfg).
 *
 * What must hold: an upload, an alias move and a version delete through one
 * replica are served by the other within 1 s (its caches drop what they
 * resolved); jobs submitted through HAProxy each run once, on both
 * replicas' workers; kill -9 of the replica running a job lets the other
 * finish it (after the lease) with the same bytes as an uninterrupted run;
 * PostgreSQL stopped under the replicas: /readyz 503, uploads 503 with the
 * error body, inference on loaded models goes on, and when it is back
 * everything reconnects and nothing acknowledged is lost. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/pg_server.h"

#define TOKEN "replicas-test-token-0123456789"
#define LEASE_S "3"
/* In the replicas' URL (the test server trusts loopback, so any password
 * works): it must never show in a log, an error body or /metrics. */
#define PASSWORD "pw-Never-Shown-51"

typedef struct {
    char dir[HARNESS_PATH_MAX];
    char url[256];
    pg_server pg;
    harness_daemon a, b;
    char a_dir[HARNESS_PATH_MAX + 8], b_dir[HARNESS_PATH_MAX + 8];
    pid_t haproxy;
    int front;
} fixture;

static fixture fx;

static const char *const auth_headers[] = {"Authorization: Bearer " TOKEN, NULL};
static const char *const auth_json[] = {"Content-Type: application/json",
                                        "Authorization: Bearer " TOKEN, NULL};

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int bad = fputs(text, f) < 0;
    return fclose(f) || bad ? -1 : 0;
}

/* A replica; started again, on the port it had (HAProxy's configuration
 * names it). */
static int start_replica(harness_daemon *d, const char *dir)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", d->port);
    const char *args[] = {"--registry", fx.url, "--job-lease", LEASE_S, "--workers", "1",
                          d->port ? "--listen" : NULL, listen, NULL};
    return harness_daemon_start(d, dir, args);
}

static int status_of(int port, const char *method, const char *path)
{
    harness_response r;
    harness_request(port, method, path, NULL, NULL, 0, &r);
    int s = r.status;
    harness_response_free(&r);
    return s;
}

/* HAProxy in the foreground (-db) with the two replicas, checked on /readyz. */
static int start_haproxy(void)
{
    fx.front = free_port();
    char cfg[4096], path[HARNESS_PATH_MAX + 32], log[HARNESS_PATH_MAX + 32];
    snprintf(cfg, sizeof cfg,
             "global\n  maxconn 512\n"
             "defaults\n  mode http\n  timeout connect 2s\n  timeout client 120s\n"
             "  timeout server 120s\n  retries 2\n  option redispatch\n"
             "frontend vaed\n  bind 127.0.0.1:%d\n  default_backend replicas\n"
             "backend replicas\n  balance roundrobin\n  option httpchk GET /readyz\n"
             "  http-check expect status 200\n"
             "  server a 127.0.0.1:%d check inter 300ms fall 2 rise 1\n"
             "  server b 127.0.0.1:%d check inter 300ms fall 2 rise 1\n",
             fx.front, fx.a.port, fx.b.port);
    snprintf(path, sizeof path, "%s/haproxy.cfg", fx.dir);
    snprintf(log, sizeof log, "%s/haproxy.log", fx.dir);
    if (write_text(path, cfg))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        FILE *l = freopen(log, "w", stdout);
        (void)l;
        dup2(1, 2);
        execlp("haproxy", "haproxy", "-f", path, "-db", (char *)NULL);
        _exit(127);
    }
    fx.haproxy = pid;
    if (pid < 0)
        return -1;
    /* Listening: anything but no answer at all (503 until a replica is up). */
    for (int i = 0; i < 200 * harness_slowdown(); i++) {
        harness_set_timeout_ms(2000);
        int up = status_of(fx.front, "GET", "/healthz") != 0;
        harness_set_timeout_ms(30000);
        if (up)
            return 0;
        harness_sleep_ms(50);
    }
    return -1;
}

/* Polls until GET path on port answers want (at most secs); 1 when it did. */
static int wait_status(int port, const char *path, int want, double secs)
{
    double t0 = harness_now_s();
    while (harness_now_s() - t0 < secs * harness_slowdown()) {
        if (status_of(port, "GET", path) == want)
            return 1;
        harness_sleep_ms(50);
    }
    return 0;
}

static int64_t upload(int port, const char *model, uint64_t seed, int want)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    char err[256], path[128];
    assert_int_equal(harness_model_bytes(NULL, seed, &bytes, &len, err, sizeof err), 0);
    snprintf(path, sizeof path, "/models/%s/checkpoints", model);
    const char *h[] = {"Content-Type: application/octet-stream", "Authorization: Bearer " TOKEN,
                       NULL};
    harness_response r;
    assert_int_equal(harness_request(port, "POST", path, h, bytes, len, &r), 0);
    free(bytes);
    int64_t version = -1;
    if (r.status != want)
        fail_msg("upload %s: %d %.300s", model, r.status, r.body ? (char *)r.body : "");
    if (want == 503) {
        assert_true(harness_expect_error(&r, 503, "unavailable"));
        assert_null(strstr((const char *)r.body, PASSWORD));
    }
    cJSON *j = harness_json(&r);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (cJSON_IsNumber(v))
        version = (int64_t)v->valuedouble;
    cJSON_Delete(j);
    harness_response_free(&r);
    return version;
}

/* The version POST /sample?model=m (default alias) answers with, or -1. */
static int64_t served_version(int port, const char *model)
{
    char path[128];
    snprintf(path, sizeof path, "/sample?n=1&seed=1&model=%s", model);
    harness_response r;
    harness_request(port, "POST", path, NULL, NULL, 0, &r);
    const char *v = r.status == 200 ? harness_header(&r, "x-model-version") : NULL;
    int64_t version = v ? strtoll(v, NULL, 10) : -1;
    harness_response_free(&r);
    return version;
}

/* Seconds until port serves version of model (fails after 5 s). */
static double seconds_until_served(int port, const char *model, int64_t version)
{
    double t0 = harness_now_s();
    while (served_version(port, model) != version) {
        if (harness_now_s() - t0 > 5.0 * harness_slowdown())
            fail_msg("%s version %" PRId64 " not served after 5 s", model, version);
        harness_sleep_ms(20);
    }
    return harness_now_s() - t0;
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    if (harness_tmpdir(fx.dir, sizeof fx.dir))
        return -1;
    if (pg_server_start(&fx.pg, err, sizeof err) ||
        pg_server_create_db(&fx.pg, "vaed", fx.url, sizeof fx.url, err, sizeof err)) {
        fprintf(stderr, "test_replicas: %s\n", err);
        return -1;
    }
    snprintf(fx.url, sizeof fx.url, "postgresql://vaed:" PASSWORD "@127.0.0.1:%d/vaed?sslmode=disable",
             fx.pg.port);
    char sets[HARNESS_PATH_MAX + 8];
    snprintf(sets, sizeof sets, "%s/sets", fx.dir);
    snprintf(fx.a_dir, sizeof fx.a_dir, "%s/a", fx.dir);
    snprintf(fx.b_dir, sizeof fx.b_dir, "%s/b", fx.dir);
    if (mkdir(sets, 0700) || harness_write_tiny_images(sets))
        return -1;
    setenv("VAED_DATA", sets, 1);
    setenv("VAED_TOKEN", TOKEN, 1);
    if (start_replica(&fx.a, fx.a_dir) < 0 || start_replica(&fx.b, fx.b_dir) < 0)
        return -1;
    return start_haproxy();
}

static int teardown(void **state)
{
    (void)state;
    if (fx.haproxy > 0) {
        kill(fx.haproxy, SIGTERM);
        waitpid(fx.haproxy, NULL, 0);
    }
    harness_daemon_stop(&fx.a);
    harness_daemon_stop(&fx.b);
    pg_server_free(&fx.pg);
    harness_rm_rf(fx.dir);
    return 0;
}

/* ---- models ---- */

static void test_models_on_every_replica(void **state)
{
    (void)state;
    assert_int_equal(upload(fx.a.port, "digits", 1, 201), 1);
    /* Both replicas are ready now (a default model resolves): HAProxy
     * answers through them. */
    assert_true(wait_status(fx.a.port, "/readyz", 200, 5));
    assert_true(wait_status(fx.b.port, "/readyz", 200, 5));
    assert_true(wait_status(fx.front, "/readyz", 200, 10));
    assert_int_equal(served_version(fx.b.port, "digits"), 1); /* loaded and cached on b */

    assert_int_equal(upload(fx.a.port, "digits", 2, 201), 2);
    double upload_s = seconds_until_served(fx.b.port, "digits", 2);
    assert_true(upload_s < 1.0 * harness_slowdown());

    harness_response r;
    assert_int_equal(harness_request(fx.a.port, "PUT", "/models/digits/aliases/latest", auth_json,
                                     "{\"version\": 1}", 14, &r),
                     0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    double alias_s = seconds_until_served(fx.b.port, "digits", 1);
    assert_true(alias_s < 1.0 * harness_slowdown());

    /* 'latest' follows again (2), then version 2 goes: back to 1. */
    assert_int_equal(harness_request(fx.a.port, "DELETE", "/models/digits/aliases/latest",
                                     auth_headers, NULL, 0, &r),
                     0);
    assert_true(r.status == 200 || r.status == 204);
    harness_response_free(&r);
    assert_true(seconds_until_served(fx.b.port, "digits", 2) < 1.0 * harness_slowdown());
    assert_int_equal(harness_request(fx.a.port, "DELETE", "/models/digits/versions/2",
                                     auth_headers, NULL, 0, &r),
                     0);
    assert_true(r.status == 200 || r.status == 204);
    harness_response_free(&r);
    double delete_s = seconds_until_served(fx.b.port, "digits", 1);
    assert_true(delete_s < 1.0 * harness_slowdown());
    fprintf(stderr, "replicas: seen by the other replica after %.3f s (upload), %.3f s (alias), "
                    "%.3f s (delete)\n",
            upload_s, alias_s, delete_s);
}

/* ---- one queue ---- */

static cJSON *get_json(int port, const char *path)
{
    harness_response r;
    if (harness_request(port, "GET", path, NULL, NULL, 0, &r) || r.status != 200)
        fail_msg("GET %s: %d", path, r.status);
    cJSON *j = harness_json(&r);
    harness_response_free(&r);
    assert_non_null(j);
    return j;
}

static int64_t submit(int port, const char *body)
{
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/jobs", auth_json, body, strlen(body), &r), 0);
    if (r.status != 202)
        fail_msg("POST /jobs: %d %.300s", r.status, r.body ? (char *)r.body : "");
    cJSON *j = harness_json(&r);
    int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(j, "id")->valuedouble;
    cJSON_Delete(j);
    harness_response_free(&r);
    return id;
}

static const char *job_state(int port, int64_t id, char *out, size_t len, int64_t *epoch)
{
    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    cJSON *j = get_json(port, path);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "state");
    snprintf(out, len, "%s", cJSON_IsString(s) ? s->valuestring : "");
    if (epoch) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "progress");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(p, "epoch");
        *epoch = cJSON_IsNumber(e) ? (int64_t)e->valuedouble : 0;
    }
    cJSON_Delete(j);
    return out;
}

static void wait_succeeded(int port, int64_t id, double secs)
{
    char st[32];
    double t0 = harness_now_s();
    while (strcmp(job_state(port, id, st, sizeof st, NULL), "succeeded") != 0) {
        if (!strcmp(st, "failed") || !strcmp(st, "cancelled"))
            fail_msg("job %" PRId64 " %s", id, st);
        if (harness_now_s() - t0 > secs * harness_slowdown())
            fail_msg("job %" PRId64 " still %s after %.0f s", id, st, secs);
        harness_sleep_ms(100);
    }
}

/* How many "job N runs on this replica" lines the replica logged for id. */
static int runs_logged(const harness_daemon *d, int64_t id)
{
    char *log = harness_daemon_log(d);
    char needle[64];
    snprintf(needle, sizeof needle, "vaed: job %" PRId64 " runs on this replica\n", id);
    int n = 0;
    for (const char *p = log; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(log);
    return n;
}

static void spec(char *out, size_t len, const char *model, int epochs, int hidden)
{
    snprintf(out, len,
             "{\"model\":\"%s\",\"data\":\"tiny-images-idx3-ubyte\",\"hidden\":[%d],"
             "\"latent\":4,\"batch\":32,\"epochs\":%d,\"seed\":7}",
             model, hidden, epochs);
}

static void test_one_queue_through_haproxy(void **state)
{
    (void)state;
    enum { JOBS = 6 };
    int64_t ids[JOBS];
    char body[512];
    for (int i = 0; i < JOBS; i++) {
        char model[32];
        snprintf(model, sizeof model, "q%d", i);
        spec(body, sizeof body, model, 6, 256);
        ids[i] = submit(fx.front, body);
    }
    int on_a = 0, on_b = 0;
    for (int i = 0; i < JOBS; i++) {
        wait_succeeded(fx.front, ids[i], 60);
        int a = runs_logged(&fx.a, ids[i]), b = runs_logged(&fx.b, ids[i]);
        assert_int_equal(a + b, 1); /* ran exactly once */
        on_a += a;
        on_b += b;
    }
    fprintf(stderr, "replicas: %d jobs ran on a, %d on b\n", on_a, on_b);
    assert_true(on_a >= 1);
    assert_true(on_b >= 1);

    /* Events live from the replica that does not run the job: the stream,
     * opened while the job runs elsewhere, carries its epochs and ends with
     * its end. */
    spec(body, sizeof body, "streamed", 8, 256);
    int64_t id = submit(fx.a.port, body);
    const harness_daemon *runner = NULL;
    double t0 = harness_now_s();
    while (!runner && harness_now_s() - t0 < 30.0 * harness_slowdown()) {
        if (runs_logged(&fx.a, id))
            runner = &fx.a;
        else if (runs_logged(&fx.b, id))
            runner = &fx.b;
        else
            harness_sleep_ms(20);
    }
    assert_non_null(runner);
    const harness_daemon *other = runner == &fx.a ? &fx.b : &fx.a;
    char path[64], st[32];
    snprintf(path, sizeof path, "/jobs/%" PRId64 "/events", id);
    harness_response r;
    assert_int_equal(harness_request(other->port, "GET", path, NULL, NULL, 0, &r), 0);
    double ended = harness_now_s();
    assert_int_equal(r.status, 200);
    const char *text = (const char *)r.body;
    assert_non_null(strstr(text, "event: epoch"));
    assert_non_null(strstr(text, "\"state\":\"succeeded\""));
    harness_response_free(&r);
    assert_string_equal(job_state(other->port, id, st, sizeof st, NULL), "succeeded");
    fprintf(stderr, "replicas: job %" PRId64 "'s events streamed live from the other replica "
                    "(%.1f s)\n",
            id, ended - t0);
}

static void result_sha(int port, int64_t id, char sha[65])
{
    char path[128];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    cJSON *j = get_json(port, path);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(res, "model");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(res, "version");
    assert_true(cJSON_IsString(m) && cJSON_IsNumber(v));
    snprintf(path, sizeof path, "/models/%s/versions/%d", m->valuestring, (int)v->valuedouble);
    cJSON_Delete(j);
    j = get_json(port, path);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "sha256");
    assert_true(cJSON_IsString(s));
    snprintf(sha, 65, "%s", s->valuestring);
    cJSON_Delete(j);
}

static void test_kill9_replica_mid_job(void **state)
{
    (void)state;
    /* Only a runs workers now, so the job is its. */
    assert_int_equal(harness_daemon_stop(&fx.b), 0);
    char body[512], st[32];
    spec(body, sizeof body, "survivor", 12, 512);
    int64_t id = submit(fx.a.port, body), epoch = 0;
    double t0 = harness_now_s();
    while (strcmp(job_state(fx.a.port, id, st, sizeof st, &epoch), "running") != 0 || epoch < 3) {
        if (harness_now_s() - t0 > 60.0 * harness_slowdown())
            fail_msg("job %" PRId64 " %s at epoch %" PRId64 " after 60 s", id, st, epoch);
        harness_sleep_ms(20);
    }
    assert_true(epoch < 12);
    harness_daemon_kill9(&fx.a);
    double killed = harness_now_s();
    assert_true(start_replica(&fx.b, fx.b_dir) > 0);
    wait_succeeded(fx.b.port, id, 90);
    fprintf(stderr, "replicas: job %" PRId64 " killed at epoch %" PRId64
                    ", finished by b %.1f s later (lease " LEASE_S " s)\n",
            id, epoch, harness_now_s() - killed);
    assert_int_equal(runs_logged(&fx.b, id), 1);
    /* b went on from the resume state a shared, not from epoch 1: a had
     * finished at least 2 epochs, of which at most the last is done again
     * (killed between its event and sharing its state). */
    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64 "/events", id);
    harness_response r;
    assert_int_equal(harness_request(fx.b.port, "GET", path, NULL, NULL, 0, &r), 0);
    int epochs = 0;
    for (const char *q = (const char *)r.body; q && (q = strstr(q, "event: epoch")); q++)
        epochs++;
    harness_response_free(&r);
    fprintf(stderr, "replicas: %d epoch events for the 12 epochs of job %" PRId64 "\n", epochs,
            id);
    assert_true(epochs >= 12);
    assert_true(epochs <= 13);
    /* The same spec, uninterrupted, on b: the same bytes. */
    spec(body, sizeof body, "reference", 12, 512);
    int64_t ref = submit(fx.b.port, body);
    wait_succeeded(fx.b.port, ref, 90);
    char sha_killed[65], sha_ref[65];
    result_sha(fx.b.port, id, sha_killed);
    result_sha(fx.b.port, ref, sha_ref);
    assert_string_equal(sha_killed, sha_ref);
    assert_true(start_replica(&fx.a, fx.a_dir) > 0);
}

/* ---- outage ---- */

static void test_postgres_outage(void **state)
{
    (void)state;
    assert_true(wait_status(fx.a.port, "/readyz", 200, 10));
    assert_int_equal(served_version(fx.a.port, "digits"), 1); /* loaded on a */
    int64_t before = upload(fx.front, "outage", 31, 201);
    assert_int_equal(before, 1);
    pg_server_stop(&fx.pg);
    assert_true(wait_status(fx.a.port, "/readyz", 503, 5));
    assert_true(wait_status(fx.b.port, "/readyz", 503, 5));
    upload(fx.a.port, "outage", 32, 503);
    harness_response r;
    char body[512];
    spec(body, sizeof body, "never", 1, 32);
    assert_int_equal(harness_request(fx.a.port, "POST", "/jobs", auth_json, body, strlen(body),
                                     &r),
                     0);
    if (!harness_expect_error(&r, 503, "unavailable"))
        fail_msg("POST /jobs in an outage: %d %.300s", r.status, r.body ? (char *)r.body : "");
    harness_response_free(&r);
    /* Inference on the loaded model goes on. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(served_version(fx.a.port, "digits"), 1);
    char err[256];
    assert_int_equal(pg_server_start_again(&fx.pg, err, sizeof err), 0);
    assert_true(wait_status(fx.a.port, "/readyz", 200, 15));
    assert_true(wait_status(fx.b.port, "/readyz", 200, 15));
    assert_true(wait_status(fx.front, "/readyz", 200, 15));
    assert_int_equal(upload(fx.front, "outage", 32, 201), 2);
    /* Everything acknowledged before is there. */
    cJSON *j = get_json(fx.b.port, "/models/outage");
    char *text = cJSON_PrintUnformatted(j);
    assert_non_null(strstr(text, "\"latest_version\":2"));
    free(text);
    cJSON_Delete(j);
    cJSON *jobs = get_json(fx.front, "/jobs?state=succeeded");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(jobs, "jobs");
    assert_true(cJSON_GetArraySize(list) >= 8);
    cJSON_Delete(jobs);
    /* The password went nowhere it could be read. */
    const harness_daemon *ds[] = {&fx.a, &fx.b};
    for (int i = 0; i < 2; i++) {
        char *log = harness_daemon_log(ds[i]);
        assert_non_null(log);
        assert_non_null(strstr(log, "unreachable")); /* the outage was logged ... */
        assert_null(strstr(log, PASSWORD));            /* ... without it */
        free(log);
        harness_response m;
        assert_int_equal(harness_request(ds[i]->port, "GET", "/metrics", NULL, NULL, 0, &m), 0);
        assert_int_equal(m.status, 200);
        assert_null(strstr((const char *)m.body, PASSWORD));
        harness_response_free(&m);
    }
}

int main(void)
{
    if (!pg_server_available()) {
        fprintf(stderr, "test_replicas: PostgreSQL is not installed (make deps)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models_on_every_replica),
        cmocka_unit_test(test_one_queue_through_haproxy),
        cmocka_unit_test(test_kill9_replica_mid_job),
        cmocka_unit_test(test_postgres_outage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
