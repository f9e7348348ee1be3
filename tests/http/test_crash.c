/* test_crash: a crash at any moment loses nothing. The daemon is killed with
 * SIGKILL at CRASH_POINTS random moments while clients upload checkpoints,
 * move an alias and a training job runs, and started again each time. After
 * each restart:
 *   - the registry is whole (registry_check: integrity_check ok, foreign
 *     keys, every blob hashes to its name and loads as a checkpoint);
 *   - every upload the daemon acknowledged (201) is there, as the version it
 *     answered, with the bytes that were sent;
 *   - no version holds bytes nobody sent, and a version not acknowledged is
 *     one whose upload was still waiting for its answer when the daemon
 *     died (it may have committed just before);
 *   - the alias points at a version that exists;
 *   - the job is queued, running or done, never failed.
 * At the end the job, resumed from its last epoch's resume file again and
 * again, must end with the same checkpoint bytes as the same job run
 * without interruption in a daemon of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/rng.h"
#include "tests/lib/harness.h"
#include "tests/lib/registry_check.h"

#define CRASH_POINTS 50
#define MAX_UPLOADS 4096

static const char *const json_headers[] = {"Content-Type: application/json", NULL};
static const char *const octet_headers[] = {"Content-Type: application/octet-stream", NULL};
static const char *const daemon_args[] = {"--workers", "1", NULL};

/* Long enough (in epochs of a few milliseconds) to run through many crashes. */
static const char job_spec[] = "{\"model\":\"job\",\"data\":\"mnist\",\"hidden\":[32],\"latent\":4,"
                               "\"epochs\":1200,\"batch\":32,\"seed\":11}";

/* ---- what the clients sent and what they were told ---- */

typedef struct {
    char sha[65];
    int64_t version; /* as acknowledged; 0 while in flight or unanswered */
    int state;       /* 0 unused, 1 sent (in flight or died with the daemon), 2 acknowledged */
} upload_record;

static upload_record uploads[MAX_UPLOADS];
static atomic_int n_uploads;
static atomic_int clients_stop;
static int daemon_port;
static uint64_t upload_seed = 1;

static void *uploader(void *arg)
{
    (void)arg;
    while (!atomic_load(&clients_stop)) {
        int i = atomic_load(&n_uploads);
        if (i >= MAX_UPLOADS)
            break;
        uint8_t *b; /* owned: freed below */
        size_t len;
        char err[256];
        if (harness_model_bytes(NULL, upload_seed++, &b, &len, err, sizeof err))
            break;
        harness_sha256_hex(b, len, uploads[i].sha);
        uploads[i].state = 1;
        atomic_store(&n_uploads, i + 1);
        harness_response r;
        int rc = harness_request(daemon_port, "POST", "/models/up/checkpoints", octet_headers, b,
                                 len, &r);
        if (!rc && r.status == 201) {
            cJSON *j = harness_json(&r);
            uploads[i].version =
                (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "version"));
            cJSON_Delete(j);
            uploads[i].state = 2;
        }
        harness_response_free(&r);
        free(b);
    }
    return NULL;
}

/* Moves "prod" to acknowledged versions, and sometimes deletes it. */
static void *alias_mover(void *arg)
{
    rng_state *rng = arg;
    while (!atomic_load(&clients_stop)) {
        int n = atomic_load(&n_uploads);
        int64_t v = 0;
        for (int i = n - 1; i >= 0 && !v; i--)
            if (uploads[i].state == 2)
                v = uploads[i].version;
        harness_response r;
        if (v && rng_below(rng, 5)) {
            char body[64];
            snprintf(body, sizeof body, "{\"version\": %" PRId64 "}", v);
            harness_request(daemon_port, "PUT", "/models/up/aliases/prod", json_headers, body,
                            strlen(body), &r);
        } else {
            harness_request(daemon_port, "DELETE", "/models/up/aliases/prod", NULL, NULL, 0, &r);
        }
        harness_response_free(&r);
        harness_sleep_ms(2);
    }
    return NULL;
}

/* ---- checks after a restart ---- */

static void check_after_crash(const char *db, int point)
{
    registry_check_report rep;
    char err[512];
    if (registry_check_file(db, &rep, err, sizeof err))
        fail_msg("after crash %d: the registry is not whole: %s", point, err);
    int n = atomic_load(&n_uploads);
    for (int i = 0; i < n; i++) {
        if (uploads[i].state != 2)
            continue;
        int64_t v = registry_check_find(&rep, "up", uploads[i].sha);
        if (v != uploads[i].version)
            fail_msg("after crash %d: acknowledged upload %d (version %" PRId64 ") is %s", point,
                     i, uploads[i].version, v ? "another version" : "gone");
    }
    for (int k = 0; k < rep.n_versions; k++) {
        const registry_check_version *rv = &rep.versions[k];
        if (strcmp(rv->model, "up"))
            continue;
        int known = 0;
        for (int i = 0; i < n && !known; i++)
            known = uploads[i].state && !strcmp(uploads[i].sha, rv->sha256) &&
                    (uploads[i].state == 1 || uploads[i].version == rv->version);
        if (!known)
            fail_msg("after crash %d: version %" PRId64 " holds bytes no client sent as it",
                     point, rv->version);
    }
    /* Unanswered uploads were either committed or not: from now on they are
     * known by what the registry holds. */
    for (int i = 0; i < n; i++)
        if (uploads[i].state == 1) {
            int64_t v = registry_check_find(&rep, "up", uploads[i].sha);
            uploads[i].state = v ? 2 : 0;
            uploads[i].version = v;
        }
    registry_check_free(&rep);
}

static cJSON *get_json(int port, const char *path)
{
    harness_response r;
    int rc = harness_request(port, "GET", path, NULL, NULL, 0, &r);
    if (rc || r.status != 200)
        fail_msg("GET %s: rc %d status %d", path, rc, r.status);
    cJSON *j = harness_json(&r);
    harness_response_free(&r);
    assert_non_null(j);
    return j;
}

static const char *job_state(int port, cJSON **holder)
{
    *holder = get_json(port, "/jobs/1");
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(*holder, "state"));
}

/* Waits (bounded) until the job trains again after a start, so that the
 * random moment of the kill falls in its training rather than in the
 * daemon's start and the job's requeue, which a fast or a sanitized build
 * would otherwise make the common case. Returns when the job runs or has
 * ended, or after the bound. */
static void wait_job_running(int port)
{
    for (int waited = 0; waited < 10000 * harness_slowdown(); waited += 20) {
        cJSON *j;
        const char *s = job_state(port, &j);
        int wait = s && !strcmp(s, "queued");
        cJSON_Delete(j);
        if (!wait)
            return;
        harness_sleep_ms(20);
    }
}

static void check_alias(int port, int point)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/models/up", NULL, NULL, 0, &r), 0);
    int status = r.status;
    harness_response_free(&r);
    if (status == 404)
        return; /* no upload committed yet */
    cJSON *m = get_json(port, "/models/up");
    const cJSON *aliases = cJSON_GetObjectItemCaseSensitive(m, "aliases");
    const cJSON *prod = cJSON_GetObjectItemCaseSensitive(aliases, "prod");
    if (prod && !cJSON_IsNumber(prod) && !cJSON_IsNull(prod))
        fail_msg("after crash %d: alias prod is not a version", point);
    if (cJSON_IsNumber(prod)) {
        char path[96];
        snprintf(path, sizeof path, "/models/up/versions/%lld", (long long)prod->valuedouble);
        cJSON_Delete(get_json(port, path));
    }
    cJSON_Delete(m);
}

/* Submits the job and waits for it; the sha256 of its checkpoint. */
static void run_job_to_end(int port, char sha[65])
{
    cJSON *j = NULL;
    const char *state = NULL;
    for (int tries = 0; tries < 6000 * harness_slowdown(); tries++) {
        cJSON_Delete(j);
        state = job_state(port, &j);
        if (state && (!strcmp(state, "succeeded") || !strcmp(state, "failed") ||
                      !strcmp(state, "cancelled")))
            break;
        harness_sleep_ms(20);
    }
    if (!state || strcmp(state, "succeeded"))
        fail_msg("the job ended %s", state ? state : "(no state)");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(j, "result");
    int64_t version =
        (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(result, "version"));
    cJSON_Delete(j);
    char path[96];
    snprintf(path, sizeof path, "/models/job/versions/%" PRId64, version);
    cJSON *v = get_json(port, path);
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "sha256"));
    assert_non_null(s);
    snprintf(sha, 65, "%s", s);
    cJSON_Delete(v);
}

static void submit_job(int port)
{
    harness_response r;
    const char *spec = job_spec;
    assert_int_equal(
        harness_request(port, "POST", "/jobs", json_headers, spec, strlen(spec), &r), 0);
    if (r.status != 202)
        fail_msg("POST /jobs: %d %s", r.status, r.body ? (const char *)r.body : "");
    harness_response_free(&r);
}

static void prepare_dir(char *dir, size_t len)
{
    assert_int_equal(harness_tmpdir(dir, len), 0);
    char data[HARNESS_PATH_MAX + 16];
    snprintf(data, sizeof data, "%s/data/mnist", dir);
    assert_int_equal(harness_write_idx_set(data, 256, 64), 0);
}

static void test_crash_loses_nothing(void **state)
{
    (void)state;
    char ref_dir[HARNESS_PATH_MAX], dir[HARNESS_PATH_MAX], data[HARNESS_PATH_MAX + 16];
    char db[HARNESS_PATH_MAX + 16];
    harness_daemon d;

    /* The same job without interruption. */
    prepare_dir(ref_dir, sizeof ref_dir);
    snprintf(data, sizeof data, "%s/data", ref_dir);
    setenv("VAED_DATA", data, 1);
    int port = harness_daemon_start(&d, ref_dir, daemon_args);
    assert_true(port > 0);
    submit_job(port);
    char want[65];
    run_job_to_end(port, want);
    assert_int_equal(harness_daemon_stop(&d), 0);

    prepare_dir(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(db, sizeof db, "%s/registry.db", dir);
    setenv("VAED_DATA", data, 1);
    rng_state rng, mover_rng; /* one each: the mover has a thread of its own */
    uint64_t seed = (uint64_t)time(NULL);
    printf("crash points from seed %" PRIu64 "\n", seed);
    rng_seed(&rng, seed);
    rng_seed(&mover_rng, seed + 1);
    int job_running_at_kill = 0;
    for (int point = 0; point < CRASH_POINTS; point++) {
        daemon_port = harness_daemon_start(&d, dir, daemon_args);
        assert_true(daemon_port > 0);
        if (point > 0) {
            check_after_crash(db, point);
            check_alias(daemon_port, point);
            cJSON *j;
            const char *s = job_state(daemon_port, &j);
            if (!s || !strcmp(s, "failed") || !strcmp(s, "cancelled"))
                fail_msg("after crash %d: the job is %s", point, s ? s : "(no state)");
            cJSON_Delete(j);
        } else {
            submit_job(daemon_port);
        }
        atomic_store(&clients_stop, 0);
        pthread_t up, mover;
        pthread_create(&up, NULL, uploader, NULL);
        pthread_create(&mover, NULL, alias_mover, &mover_rng);
        wait_job_running(daemon_port);
        harness_sleep_ms(20 + (int)rng_below(&rng, 300) * harness_slowdown());
        cJSON *j;
        const char *s = job_state(daemon_port, &j);
        job_running_at_kill += s && !strcmp(s, "running");
        cJSON_Delete(j);
        harness_daemon_kill9(&d);
        atomic_store(&clients_stop, 1);
        pthread_join(up, NULL);
        pthread_join(mover, NULL);
    }
    daemon_port = harness_daemon_start(&d, dir, daemon_args);
    assert_true(daemon_port > 0);
    check_after_crash(db, CRASH_POINTS);
    char got[65];
    run_job_to_end(daemon_port, got);
    assert_int_equal(harness_daemon_stop(&d), 0);
    int acked = 0;
    for (int i = 0; i < atomic_load(&n_uploads); i++)
        acked += uploads[i].state == 2;
    printf("%d crashes: %d uploads sent, %d stored; the job was running at %d of them\n",
           CRASH_POINTS, atomic_load(&n_uploads), acked, job_running_at_kill);
    if (strcmp(got, want))
        fail_msg("the job resumed through %d crashes ended as %s, uninterrupted as %s",
                 CRASH_POINTS, got, want);
    if (job_running_at_kill < CRASH_POINTS / 4)
        fail_msg("the job was running at only %d of %d crashes: the test proves little",
                 job_running_at_kill, CRASH_POINTS);
    harness_rm_rf(ref_dir);
    harness_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_loses_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
