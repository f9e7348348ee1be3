/* test_concurrency: the daemon's shared parts used at once, through HTTP —
 * two training workers running jobs while their event streams are read,
 * one job cancelled mid-way, inference on the compute pool and the model
 * cache while new versions of the same model are uploaded (each moves
 * "latest", so the response cache sees new keys), GET /interpolate asked
 * again and again (response-cache hits and misses), and /metrics read
 * throughout. Every answer must be one its request may get, every event
 * stream must end with its job's final state, and the daemon must stop
 * cleanly. Small and bounded, so that make tsan runs it (with the daemon
 * built with ThreadSanitizer, whose report makes that stop fail) as well as
 * make test and make asan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/lib/harness.h"

static const char *const json_headers[] = {"Content-Type: application/json", NULL};
static const char *const octet_headers[] = {"Content-Type: application/octet-stream", NULL};
static int port;
static atomic_int bad_answers;

/* One request; counts an answer outside ok_a/ok_b (429 is load shedding). */
static void expect(const char *method, const char *path, const char *const *headers,
                   const void *body, size_t len, int ok_a, int ok_b)
{
    harness_response r;
    int rc = harness_request(port, method, path, headers, body, len, &r);
    if (rc || (r.status != ok_a && r.status != ok_b && r.status != 429)) {
        atomic_fetch_add(&bad_answers, 1);
        fprintf(stderr, "%s %s: rc %d status %d: %.300s\n", method, path, rc, r.status,
                r.body ? (const char *)r.body : "");
    }
    harness_response_free(&r);
}

static void *inference(void *arg)
{
    int seed = (int)(intptr_t)arg;
    char path[160];
    for (int i = 0; i < 30; i++) {
        snprintf(path, sizeof path, "/sample?model=digits&n=4&seed=%d&format=%s", seed * 100 + i,
                 i % 2 ? "json" : "png");
        expect("POST", path, NULL, NULL, 0, 200, 200);
        snprintf(path, sizeof path, "/interpolate?model=digits&from=mnist:test:%d&to=mnist:test:%d",
                 i % 4, (i + seed) % 4);
        expect("GET", path, NULL, NULL, 0, 200, 200);
        const char *z = "{\"z\": [[0.5, -1, 0, 2]]}";
        expect("POST", "/decode?model=digits&format=json", json_headers, z, strlen(z), 200, 200);
    }
    return NULL;
}

static void *uploads(void *arg)
{
    (void)arg;
    for (uint64_t seed = 2; seed < 10; seed++) {
        uint8_t *b;
        size_t len;
        char err[256];
        if (harness_model_bytes(NULL, seed, &b, &len, err, sizeof err)) {
            atomic_fetch_add(&bad_answers, 1);
            break;
        }
        expect("POST", "/models/digits/checkpoints", octet_headers, b, len, 201, 200);
        free(b);
        expect("GET", "/metrics", NULL, NULL, 0, 200, 200);
        harness_sleep_ms(20);
    }
    return NULL;
}

typedef struct {
    int64_t job;
    char final[16]; /* the state the stream ended with */
} stream_arg;

static void *stream_reader(void *arg)
{
    stream_arg *s = arg;
    char path[64];
    snprintf(path, sizeof path, "/jobs/%lld/events", (long long)s->job);
    harness_response r;
    int rc = harness_request(port, "GET", path, NULL, NULL, 0, &r);
    if (rc || r.status != 200 || !r.body) {
        atomic_fetch_add(&bad_answers, 1);
    } else {
        /* The last state event names the final state. */
        const char *states[] = {"succeeded", "cancelled", "failed"};
        const char *last = strstr((const char *)r.body, "event: state");
        for (const char *p = last; p; p = strstr(p + 1, "event: state"))
            last = p;
        for (int i = 0; last && i < 3; i++)
            if (strstr(last, states[i]))
                snprintf(s->final, sizeof s->final, "%s", states[i]);
    }
    harness_response_free(&r);
    return NULL;
}

static void test_everything_at_once(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX], data[HARNESS_PATH_MAX + 16], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    snprintf(data, sizeof data, "%s/data/mnist", dir);
    assert_int_equal(harness_write_idx_set(data, 256, 16), 0);
    snprintf(data, sizeof data, "%s/data", dir);
    setenv("VAED_DATA", data, 1);
    if (harness_put_model(dir, "digits", NULL, 1, NULL, err, sizeof err))
        fail_msg("%s", err);
    harness_daemon d;
    const char *const args[] = {"--workers", "2", "--response-cache-mb", "4", NULL};
    port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);

    const int epochs[3] = {4, 3, 200};
    for (int i = 0; i < 3; i++) {
        char spec[200];
        snprintf(spec, sizeof spec,
                 "{\"model\": \"job%d\", \"data\": \"mnist\", \"hidden\": [16], \"latent\": 2, "
                 "\"epochs\": %d, \"batch\": 32, \"seed\": %d}",
                 i, epochs[i], i);
        expect("POST", "/jobs", json_headers, spec, strlen(spec), 202, 202);
    }
    stream_arg streams[3] = {{.job = 1}, {.job = 2}, {.job = 3}};
    pthread_t t[8];
    int n = 0;
    for (int i = 0; i < 3; i++)
        pthread_create(&t[n++], NULL, stream_reader, &streams[i]);
    pthread_create(&t[n++], NULL, uploads, NULL);
    for (int i = 0; i < 3; i++)
        pthread_create(&t[n++], NULL, inference, (void *)(intptr_t)i);
    harness_sleep_ms(300);
    expect("POST", "/jobs/3/cancel", NULL, NULL, 0, 200, 202);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);

    assert_int_equal(atomic_load(&bad_answers), 0);
    assert_string_equal(streams[0].final, "succeeded");
    assert_string_equal(streams[1].final, "succeeded");
    if (strcmp(streams[2].final, "cancelled") && strcmp(streams[2].final, "succeeded"))
        fail_msg("job 3's stream ended with \"%s\"", streams[2].final);
    int rc = harness_daemon_stop(&d);
    if (rc != 0) {
        char *log = harness_daemon_log(&d);
        fail_msg("vaed exited %d; log:\n%s", rc, log ? log : "");
    }
    harness_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_everything_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
