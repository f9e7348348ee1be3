/* test_faults: the N-th allocation, write, fsync or rename fails
 * (tests/lib/fault.h, the daemon BUILD/tests/vaed_fault), swept over N, for:
 * a checkpoint upload, a model load, a training job (its start, its resume
 * saves each epoch, its registration), and daemon start. After every N:
 *   - the answer was a success, an error status of 5xx with the JSON error
 *     body (507 for an upload on a full disk), or (when the fault hit the
 *     building of the answer itself) a dropped connection — never another
 *     status;
 *   - a success left its version, an error left none, and every version in
 *     the registry is whole (registry_check: integrity_check ok, every blob
 *     hashes to its name and loads as a checkpoint);
 *   - the daemon goes on serving (GET /healthz), and the same operation
 *     without the fault succeeds;
 * and at the end the daemon exits 0 on SIGTERM, which under make asan also
 * means it leaked nothing. A sweep ends at the first N past the calls the
 * operation makes (the fault did not fire); up to N = 32 every N is tried,
 * past it every N/8-th (VAED_FAULT_EVERY_N=1: every one).
 *
 * Each operation runs against a data set of 64 small images (VAED_DATA) and
 * small models, so a sweep of hundreds of N stays within seconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/fault.h"
#include "tests/lib/harness.h"
#include "tests/lib/registry_check.h"

static char fault_bin[HARNESS_PATH_MAX + 16];

typedef struct {
    char dir[HARNESS_PATH_MAX];
    char data[HARNESS_PATH_MAX + 8];
    char ctl_path[HARNESS_PATH_MAX + 8];
    char db[HARNESS_PATH_MAX + 16];
    harness_daemon d;
    fault_ctl ctl;
    int port;
} env;

static const char *const json_headers[] = {"Content-Type: application/json", NULL};
static const char *const octet_headers[] = {"Content-Type: application/octet-stream", NULL};

static int64_t next_n(int64_t n)
{
    const char *every = getenv("VAED_FAULT_EVERY_N");
    if ((every && !strcmp(every, "1")) || n < 32)
        return n + 1;
    return n + n / 8;
}

static void env_prepare(env *e)
{
    memset(e, 0, sizeof *e);
    assert_int_equal(harness_tmpdir(e->dir, sizeof e->dir), 0);
    snprintf(e->data, sizeof e->data, "%s/data", e->dir);
    snprintf(e->ctl_path, sizeof e->ctl_path, "%s/fault", e->dir);
    snprintf(e->db, sizeof e->db, "%s/registry.db", e->dir);
    char mnist[HARNESS_PATH_MAX + 16];
    snprintf(mnist, sizeof mnist, "%s/mnist", e->data);
    assert_int_equal(harness_write_idx_set(mnist, 64, 16), 0);
    char err[256];
    if (harness_put_model(e->dir, "digits", NULL, 1, NULL, err, sizeof err))
        fail_msg("put model: %s", err);
    setenv("VAED_DATA", e->data, 1);
    setenv("VAED_FAULT_CTL", e->ctl_path, 1);
    setenv("VAED_BIN", fault_bin, 1);
}

static const char *const daemon_args[] = {"--workers", "1", "--timeout", "60", NULL};

static void env_start(env *e)
{
    env_prepare(e);
    e->port = harness_daemon_start(&e->d, e->dir, daemon_args);
    assert_true(e->port > 0);
    fault_ctl_init(&e->ctl, e->ctl_path, e->d.pid);
}

static void check_registry(const env *e, registry_check_report *rep)
{
    char err[512];
    if (registry_check_file(e->db, rep, err, sizeof err))
        fail_msg("the registry is not whole: %s", err);
}

static void expect_alive(const env *e)
{
    harness_response r;
    int rc = harness_request(e->port, "GET", "/healthz", NULL, NULL, 0, &r);
    if (rc || r.status != 200)
        fail_msg("the daemon stopped serving: GET /healthz: rc %d status %d", rc, r.status);
    harness_response_free(&r);
}

static void env_finish(env *e)
{
    expect_alive(e);
    registry_check_report rep;
    check_registry(e, &rep);
    registry_check_free(&rep);
    int rc = harness_daemon_stop(&e->d);
    if (rc != 0) {
        char *log = harness_daemon_log(&e->d);
        fail_msg("vaed exited %d (leak or sanitizer report?); log:\n%s", rc, log ? log : "");
    }
    harness_rm_rf(e->dir);
    unsetenv("VAED_FAULT_CTL");
}

typedef enum { ANSWER_DROPPED, ANSWER_ERROR, ANSWER_OK } answer;

/* What an answer under a fault was; fails the test when it is none of
 * the three allowed (ok_status, a 5xx with the error body, no answer). */
static answer classify(int rc, const harness_response *r, int ok_a, int ok_b, const char *what,
                       int64_t n, fault_kind kind)
{
    if (rc || r->status == 0)
        return ANSWER_DROPPED;
    if (r->status == ok_a || r->status == ok_b)
        return ANSWER_OK;
    /* cJSON answers NULL both for bad syntax and for no memory, so a JSON
     * body it could not parse for want of memory is refused as bad. */
    int cjson_body = kind == FAULT_ALLOC && !strcmp(what, "job submission") &&
                     (r->status == 400 || r->status == 422);
    if (r->status >= 500 || cjson_body) {
        cJSON *j = harness_json(r);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
        int good = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "code")) &&
                   cJSON_IsString(cJSON_GetObjectItemCaseSensitive(err, "message"));
        cJSON_Delete(j);
        if (good)
            return ANSWER_ERROR;
    }
    fail_msg("%s with %s fault %" PRId64 ": status %d: %.400s", what, fault_kind_name(kind), n,
             r->status, r->body ? (const char *)r->body : "");
    return ANSWER_DROPPED;
}

/* Runs the operation under the armed fault, disarms (counts: what the
 * arming saw), then checks what it left. */
typedef void (*fault_op)(env *e, fault_kind kind, int64_t n, fault_counts *counts);

static void disarm(env *e, fault_counts *counts)
{
    assert_int_equal(fault_ctl_disarm(&e->ctl, counts), 0);
}

/* Arms kind at n, runs op, checks; until the fault no longer fires. */
static void sweep(env *e, fault_kind kind, fault_op op, const char *what, int64_t max_n)
{
    int64_t n = 1, tried = 0, fired = 0;
    for (; n <= max_n; n = next_n(n)) {
        assert_int_equal(fault_ctl_arm(&e->ctl, kind, n), 0);
        fault_counts c;
        op(e, kind, n, &c);
        expect_alive(e);
        tried++;
        fired += c.fired;
        if (c.fired == 0 && c.calls < n)
            break;
    }
    if (n > max_n)
        fail_msg("%s: still %s calls past %" PRId64, what, fault_kind_name(kind), max_n);
    printf("%s: %s faults at %" PRId64 " points, %" PRId64 " injected, the operation makes %" PRId64
           " such calls\n",
           what, fault_kind_name(kind), tried, fired, n - 1);
}

/* ---- an upload ---- */

static void upload_bytes(uint64_t seed, uint8_t **b, size_t *len)
{
    char err[256];
    if (harness_model_bytes(NULL, seed, b, len, err, sizeof err))
        fail_msg("model bytes: %s", err);
}

static void op_upload(env *e, fault_kind kind, int64_t n, fault_counts *counts)
{
    uint8_t *b; /* owned: freed below */
    size_t len;
    upload_bytes(1000 + (uint64_t)n * 8 + (uint64_t)kind, &b, &len);
    char sha[65];
    harness_sha256_hex(b, len, sha);
    harness_response r;
    int rc = harness_request(e->port, "POST", "/models/up/checkpoints", octet_headers, b, len, &r);
    disarm(e, counts);
    answer a = classify(rc, &r, 201, 200, "upload", n, kind);
    int status = r.status;
    char said[300];
    snprintf(said, sizeof said, "%.280s", r.body ? (const char *)r.body : "");
    harness_response_free(&r);
    registry_check_report rep;
    check_registry(e, &rep);
    int64_t version = registry_check_find(&rep, "up", sha);
    registry_check_free(&rep);
    /* An upload writes only through SQLite: a full disk is 507. */
    if (a == ANSWER_ERROR && kind == FAULT_WRITE && !version && status != 507)
        fail_msg("upload on a full disk (write fault %" PRId64 ") answered %d: %s", n, status,
                 said);
    if (a == ANSWER_OK && version == 0)
        fail_msg("upload with %s fault %" PRId64 ": acknowledged but not stored",
                 fault_kind_name(kind), n);
    /* The same bytes again, without the fault: stored, or already there —
     * which an error answer allows only when the fault came after the
     * commit, so that the retry a client makes finds the version. */
    rc = harness_request(e->port, "POST", "/models/up/checkpoints", octet_headers, b, len, &r);
    if (rc || (r.status != 201 && r.status != 200))
        fail_msg("upload after %s fault %" PRId64 ": status %d", fault_kind_name(kind), n,
                 r.status);
    if (version && r.status != 200)
        fail_msg("upload with %s fault %" PRId64 ": version %" PRId64 " is there but the retry "
                 "stored the bytes again",
                 fault_kind_name(kind), n, version);
    if (a == ANSWER_ERROR && version)
        printf("upload with %s fault %" PRId64 ": stored as version %" PRId64
               ", then answered %s; the retry answers 200 with it\n",
               fault_kind_name(kind), n, version, said);
    harness_response_free(&r);
    free(b);
}

static void test_upload(void **state)
{
    (void)state;
    env e;
    env_start(&e);
    const fault_kind kinds[] = {FAULT_ALLOC, FAULT_WRITE, FAULT_FSYNC};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        sweep(&e, kinds[k], op_upload, "upload", 100000);
    uint8_t *b;
    size_t len;
    upload_bytes(7, &b, &len);
    harness_response r;
    assert_int_equal(
        harness_request(e.port, "POST", "/models/up/checkpoints", octet_headers, b, len, &r), 0);
    assert_int_equal(r.status, 201);
    harness_response_free(&r);
    free(b);
    env_finish(&e);
}

/* ---- a model load ---- */

static int64_t put_version(env *e, uint64_t seed)
{
    uint8_t *b;
    size_t len;
    upload_bytes(seed, &b, &len);
    harness_response r;
    assert_int_equal(
        harness_request(e->port, "POST", "/models/load/checkpoints", octet_headers, b, len, &r),
        0);
    if (r.status != 201)
        fail_msg("upload: %d %s", r.status, r.body ? (const char *)r.body : "");
    cJSON *j = harness_json(&r);
    int64_t v = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "version"));
    cJSON_Delete(j);
    harness_response_free(&r);
    free(b);
    return v;
}

static int64_t load_version;

static void op_load(env *e, fault_kind kind, int64_t n, fault_counts *counts)
{
    char path[128];
    snprintf(path, sizeof path, "/sample?model=load&version=%" PRId64 "&n=2&format=json",
             load_version);
    harness_response r;
    int rc = harness_request(e->port, "POST", path, NULL, NULL, 0, &r);
    disarm(e, counts);
    classify(rc, &r, 200, 200, "model load", n, kind);
    harness_response_free(&r);
    /* A failed load must not stay in the cache as a failure, nor a half model. */
    rc = harness_request(e->port, "POST", path, NULL, NULL, 0, &r);
    if (rc || r.status != 200)
        fail_msg("model load after %s fault %" PRId64 ": status %d", fault_kind_name(kind), n,
                 r.status);
    harness_response_free(&r);
    /* The next N loads a version not in the cache yet. */
    load_version = put_version(e, 5000 + (uint64_t)n);
}

static void test_model_load(void **state)
{
    (void)state;
    env e;
    env_start(&e);
    load_version = put_version(&e, 4999);
    sweep(&e, FAULT_ALLOC, op_load, "model load", 100000);
    env_finish(&e);
}

/* ---- a training job: start, resume saves, registration ---- */

/* Each N its own seed, so that each success is a new version. */
static const char job_spec[] = "{\"model\":\"job\",\"data\":\"mnist\",\"hidden\":[8],"
                               "\"latent\":2,\"epochs\":3,\"batch\":16,\"seed\":%" PRId64 "}";

static cJSON *get_job(env *e, int64_t id)
{
    char path[64];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    for (int tries = 0; tries < 20; tries++) {
        harness_response r;
        int rc = harness_request(e->port, "GET", path, NULL, NULL, 0, &r);
        cJSON *j = !rc && r.status == 200 ? harness_json(&r) : NULL;
        harness_response_free(&r);
        if (j)
            return j;
        harness_sleep_ms(20); /* a poll that hit the fault itself */
    }
    fail_msg("GET %s keeps failing", path);
    return NULL;
}

static int64_t count_versions(env *e, const char *model)
{
    registry_check_report rep;
    check_registry(e, &rep);
    int64_t n = 0;
    for (int i = 0; i < rep.n_versions; i++)
        n += !strcmp(rep.versions[i].model, model);
    registry_check_free(&rep);
    return n;
}

/* Until no job is queued or running. */
static void wait_idle(env *e)
{
    for (int tries = 0; tries < 6000 * harness_slowdown(); tries++) {
        int busy = 0;
        const char *states[] = {"/jobs?state=queued", "/jobs?state=running"};
        for (int s = 0; s < 2; s++) {
            harness_response r;
            assert_int_equal(harness_request(e->port, "GET", states[s], NULL, NULL, 0, &r), 0);
            cJSON *j = harness_json(&r);
            const cJSON *list = cJSON_IsArray(j) ? j : cJSON_GetObjectItemCaseSensitive(j, "jobs");
            busy += cJSON_GetArraySize(list);
            cJSON_Delete(j);
            harness_response_free(&r);
        }
        if (!busy)
            return;
        harness_sleep_ms(10);
    }
    fail_msg("jobs are still queued or running");
}

static void op_job(env *e, fault_kind kind, int64_t n, fault_counts *counts)
{
    int64_t before = count_versions(e, "job");
    char spec[sizeof job_spec + 32];
    snprintf(spec, sizeof spec, job_spec, n * 8 + kind);
    harness_response r;
    int rc = harness_request(e->port, "POST", "/jobs", json_headers, spec, strlen(spec), &r);
    answer a = classify(rc, &r, 202, 202, "job submission", n, kind);
    int64_t id = 0;
    if (a == ANSWER_OK) {
        cJSON *j = harness_json(&r);
        id = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "id"));
        cJSON_Delete(j);
    }
    harness_response_free(&r);
    if (!id) {
        /* A job stored before its answer failed runs all the same: let it
         * end before the next N counts versions. */
        disarm(e, counts);
        wait_idle(e);
        return;
    }
    const char *state = NULL;
    cJSON *job = NULL;
    for (int tries = 0; tries < 3000 * harness_slowdown(); tries++) {
        cJSON_Delete(job);
        job = get_job(e, id);
        state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "state"));
        if (state && (!strcmp(state, "succeeded") || !strcmp(state, "failed")))
            break;
        harness_sleep_ms(10);
    }
    disarm(e, counts);
    assert_non_null(state);
    int64_t after = count_versions(e, "job");
    if (!strcmp(state, "succeeded")) {
        if (after != before + 1)
            fail_msg("job with %s fault %" PRId64 " succeeded with %" PRId64 " new versions",
                     fault_kind_name(kind), n, after - before);
    } else if (!strcmp(state, "failed")) {
        const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(job, "error"));
        if (!why || !*why)
            fail_msg("job with %s fault %" PRId64 " failed without a message",
                     fault_kind_name(kind), n);
        if (after != before)
            fail_msg("job with %s fault %" PRId64 " failed (%s) but left a version",
                     fault_kind_name(kind), n, why);
    } else {
        fail_msg("job with %s fault %" PRId64 " still %s", fault_kind_name(kind), n, state);
    }
    cJSON_Delete(job);
    /* Nothing half-written beside the resume file. */
    char cmd[HARNESS_PATH_MAX + 96];
    snprintf(cmd, sizeof cmd, "test -z \"$(find '%s/jobs' -name '*.tmp.*' 2>/dev/null)\"",
             e->dir);
    if (system(cmd) != 0)
        fail_msg("job with %s fault %" PRId64 " left a temporary file in %s/jobs",
                 fault_kind_name(kind), n, e->dir);
}

static void test_job(void **state)
{
    (void)state;
    env e;
    env_start(&e);
    const fault_kind kinds[] = {FAULT_WRITE, FAULT_FSYNC, FAULT_RENAME, FAULT_ALLOC};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        sweep(&e, kinds[k], op_job, "training job", 1000000);
    env_finish(&e);
}

/* ---- daemon start ---- */

static void test_daemon_start(void **state)
{
    (void)state;
    env e;
    env_prepare(&e);
    const fault_kind kinds[] = {FAULT_WRITE, FAULT_FSYNC, FAULT_RENAME, FAULT_ALLOC};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        int64_t n = 1, tried = 0, refused = 0;
        for (; n <= 1000000; n = next_n(n)) {
            char spec[64];
            snprintf(spec, sizeof spec, "%s %" PRId64, fault_kind_name(kinds[k]), n);
            setenv("VAED_FAULT", spec, 1);
            harness_daemon d;
            int port = harness_daemon_start(&d, e.dir, daemon_args);
            unsetenv("VAED_FAULT");
            tried++;
            char *log = harness_daemon_log(&d); /* owned: freed below */
            if (port < 0) {
                /* A refusal: exit 1 with a message, nothing else. */
                if (d.exit_status != 1 || !log || !strstr(log, "vaed") ||
                    strstr(log, "Sanitizer") || strstr(log, "runtime error"))
                    fail_msg("start with %s: exit %d; log:\n%s", spec, d.exit_status,
                             log ? log : "");
                refused++;
                free(log);
                unlink(d.log_path); /* each start's log alone */
                registry_check_report rep;
                check_registry(&e, &rep);
                registry_check_free(&rep);
                continue;
            }
            free(log);
            e.d = d;
            e.port = port;
            fault_ctl_init(&e.ctl, e.ctl_path, d.pid);
            fault_counts c;
            harness_response r;
            memset(&r, 0, sizeof r);
            int up = !fault_ctl_disarm(&e.ctl, &c) &&
                     !harness_request(port, "GET", "/healthz", NULL, NULL, 0, &r) &&
                     r.status == 200;
            harness_response_free(&r);
            if (!up) {
                /* It failed after the port file (the fsync of its directory): it
                 * must have exited with a message. */
                int rc = harness_daemon_stop(&d);
                log = harness_daemon_log(&d);
                if (rc != 1 || !log || !strstr(log, "vaed") || strstr(log, "Sanitizer"))
                    fail_msg("start with %s: not serving, exit %d; log:\n%s", spec, rc,
                             log ? log : "");
                free(log);
                refused++;
                unlink(d.log_path);
                continue;
            }
            int rc = harness_daemon_stop(&d);
            if (rc != 0) {
                log = harness_daemon_log(&d);
                fail_msg("start with %s, then SIGTERM: exit %d; log:\n%s", spec, rc,
                         log ? log : "");
            }
            unlink(d.log_path);
            if (c.fired == 0 && c.calls < n)
                break;
        }
        printf("daemon start: %s faults at %" PRId64 " points, %" PRId64
               " refused to start with a message, %" PRId64 " such calls in a start\n",
               fault_kind_name(kinds[k]), tried, refused, n - 1);
    }
    /* And a plain start on what the faulty ones left. */
    int port = harness_daemon_start(&e.d, e.dir, daemon_args);
    assert_true(port > 0);
    e.port = port;
    env_finish(&e);
}

int main(void)
{
    char self[HARNESS_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(fault_bin, sizeof fault_bin, "%s/vaed_fault", self);
    if (access(fault_bin, X_OK)) {
        fprintf(stderr, "test_faults: no %s (make all builds it)\n", fault_bin);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upload),
        cmocka_unit_test(test_model_load),
        cmocka_unit_test(test_job),
        cmocka_unit_test(test_daemon_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
