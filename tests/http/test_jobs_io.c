/* Job cancels and submissions write the registry off the polling threads
 * (issue #12, "polling threads only move bytes ... no lock is held across
 * I/O that other requests wait for"). Another process holds the SQLite
 * file's write lock (harness_lock_registry); cancels and POST /jobs, more
 * of them than the daemon's two polling threads, wait for it, and /healthz,
 * sent after them, answers before any of them does. Once the lock goes
 * each gets the answer it always got: 200 for a queued job cancelled, 409
 * for one already finished, 202 for a submission.
 *
 * Orderings, not timings: on a daemon that wrote on the polling thread
 * /healthz waited for the lock, and the test gives up on it after 3 s.
 * The daemon has no training workers (--workers 0): every job stays queued,
 * so what each cancel meets is known. A running job's cancel (202) writes
 * nothing and is tested in test_jobs_api.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/lib/harness.h"

/* One request on a thread of its own: POST path with body (a cancel when
 * body is NULL). */
typedef struct {
    int port;
    char path[64];
    const char *body;
    int status;
    char state[16]; /* the answer's "state", when it has one */
    int done;       /* atomic: 1 once answered */
} request;

static void *request_thread(void *arg)
{
    request *q = arg;
    const char *headers[] = {"Content-Type: application/json", NULL};
    harness_response r;
    int rc = harness_request(q->port, "POST", q->path, q->body ? headers : NULL, q->body,
                             q->body ? strlen(q->body) : 0, &r);
    q->status = rc ? -1 : r.status;
    cJSON *j = harness_json(&r);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "state");
    if (cJSON_IsString(s))
        snprintf(q->state, sizeof q->state, "%s", s->valuestring);
    cJSON_Delete(j);
    harness_response_free(&r);
    __atomic_store_n(&q->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void expect_job_state(int port, int64_t id, const char *state)
{
    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    harness_response r;
    assert_int_equal(harness_request(port, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *j = harness_json(&r);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "state");
    assert_true(cJSON_IsString(s));
    assert_string_equal(s->valuestring, state);
    cJSON_Delete(j);
    harness_response_free(&r);
}

static void test_cancels_and_submissions_beside_locked_file(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX], sets[HARNESS_PATH_MAX + 16], err[256];
    char db_path[HARNESS_PATH_MAX + 16];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    snprintf(sets, sizeof sets, "%s/sets", dir);
    assert_int_equal(mkdir(sets, 0700), 0);
    assert_int_equal(harness_write_tiny_images(sets), 0);
    setenv("VAED_DATA", sets, 1);
    snprintf(db_path, sizeof db_path, "%s/registry.db", dir);
    /* Two queued jobs to cancel, and one cancelled already (a 409). */
    registry *reg = NULL;
    int64_t queued[2], finished = 0;
    assert_int_equal(registry_open(db_path, &reg, err, sizeof err), REGISTRY_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(registry_insert_job(reg, "{\"epochs\": 1}", &queued[i], err, sizeof err),
                         REGISTRY_OK);
    assert_int_equal(registry_insert_job(reg, "{\"epochs\": 1}", &finished, err, sizeof err),
                     REGISTRY_OK);
    assert_int_equal(
        registry_set_job_state(reg, finished, JOBS_STATE_CANCELLED, NULL, err, sizeof err),
        REGISTRY_OK);
    registry_close(reg);

    harness_daemon d;
    const char *const args[] = {"--threads", "2", "--workers", "0", "--max-per-ip", "0", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);

    enum { N = 5 };
    const char spec[] = "{\"model\":\"m\",\"data\":\"tiny-images-idx3-ubyte\",\"hidden\":[32],"
                        "\"latent\":2,\"batch\":32,\"epochs\":1,\"seed\":1}";
    request q[N];
    for (int i = 0; i < N; i++)
        q[i] = (request){.port = port};
    snprintf(q[0].path, sizeof q[0].path, "/jobs/%" PRId64 "/cancel", queued[0]);
    snprintf(q[1].path, sizeof q[1].path, "/jobs/%" PRId64 "/cancel", queued[1]);
    snprintf(q[2].path, sizeof q[2].path, "/jobs/%" PRId64 "/cancel", finished);
    for (int i = 3; i < N; i++) {
        snprintf(q[i].path, sizeof q[i].path, "/jobs");
        q[i].body = spec;
    }
    const int want[N] = {200, 200, 409, 202, 202};

    struct sqlite3 *lock = harness_lock_registry(dir);
    assert_non_null(lock);
    pthread_t t[N];
    /* One at a time: a polling thread that waits for the file accepts no
     * new connection, so the next request goes to another one (sent
     * together, one thread may accept them all and leave the other free). */
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, request_thread, &q[i]), 0);
        harness_sleep_ms(150);
    }
    harness_sleep_ms(300); /* every request is in, waiting for the file */
    int healthz = harness_healthz_within(port, 3000);
    int answered = 0;
    for (int i = 0; i < N; i++)
        answered += __atomic_load_n(&q[i].done, __ATOMIC_ACQUIRE);
    /* Unlocked and joined before asserting: a failure must leave neither
     * the daemon stuck nor threads writing into this frame. */
    assert_int_equal(harness_unlock_registry(lock), 0);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    print_message("locked file: /healthz %d while %d of %d cancels and submissions had an "
                  "answer\n",
                  healthz, answered, N);
    for (int i = 0; i < N; i++) {
        if (q[i].status != want[i])
            print_message("POST %s: %d, expected %d\n", q[i].path, q[i].status, want[i]);
        assert_int_equal(q[i].status, want[i]);
    }
    assert_int_equal(healthz, 200);
    assert_int_equal(answered, 0);
    /* The answers say what was written. */
    assert_string_equal(q[0].state, "cancelled");
    assert_string_equal(q[1].state, "cancelled");
    assert_string_equal(q[3].state, "queued");
    assert_string_equal(q[4].state, "queued");
    expect_job_state(port, queued[0], "cancelled");
    expect_job_state(port, queued[1], "cancelled");
    expect_job_state(port, finished, "cancelled");
    expect_job_state(port, finished + 1, "queued");
    expect_job_state(port, finished + 2, "queued");
    assert_int_equal(harness_daemon_stop(&d), 0);
    harness_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancels_and_submissions_beside_locked_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
