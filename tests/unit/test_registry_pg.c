/* Unit tests of what only the PostgreSQL registry does: many processes (here
 * several registry handles, each with its own connections, as replicas have)
 * sharing one database. A throwaway server started here (tests/lib/pg_server.h),
 * a fresh database per test. The calls every backend shares are tested on
 * both in test_registry.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/registry.h"
#include "tests/lib/harness.h"
#include "tests/lib/pg_server.h"

extern const size_t vaed_pg_schema_migration_count;

static pg_server pg;

typedef struct {
    char url[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256];
    if (!f || pg_server_new_db(&pg, f->url, sizeof f->url, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static registry *open_ok(const char *url)
{
    registry *r = NULL;
    char err[256] = "";
    int rc = registry_open(url, &r, err, sizeof err);
    if (rc)
        print_error("registry_open: %s\n", err);
    assert_int_equal(rc, REGISTRY_OK);
    assert_true(registry_is_shared(r));
    return r;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(int ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* ---- migrations ---- */

typedef struct {
    const char *url;
    int rc;
} open_job;

static void *open_thread(void *arg)
{
    open_job *j = arg;
    registry *r = NULL;
    char err[256];
    j->rc = registry_open(j->url, &r, err, sizeof err);
    if (j->rc)
        fprintf(stderr, "open: %s\n", err);
    registry_close(r);
    return NULL;
}

/* Replicas starting together: each opens, one migrates, none fails. */
static void test_migrate_once_together(void **state)
{
    fixture *f = *state;
    enum { N = 6 };
    pthread_t t[N];
    open_job jobs[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (open_job){.url = f->url};
        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].rc, REGISTRY_OK);
    }
    registry *r = open_ok(f->url);
    assert_int_equal(registry_schema_version(r), (int)vaed_pg_schema_migration_count);
    assert_int_equal(registry_count_checkpoints(r), 0);
    registry_close(r);
}

/* ---- passwords and libpq parameters ---- */

static void test_redact_url(void **state)
{
    (void)state;
    char out[256];
    registry_redact_url("postgresql://vaed:s3cret@db:5432/vaed?sslmode=require", out, sizeof out);
    assert_string_equal(out, "postgresql://vaed:***@db:5432/vaed?sslmode=require");
    registry_redact_url("postgresql://db/vaed?user=u&password=s3cret&sslmode=verify-full", out,
                        sizeof out);
    assert_string_equal(out, "postgresql://db/vaed?user=u&password=***&sslmode=verify-full");
    registry_redact_url("postgresql://vaed@db/vaed", out, sizeof out);
    assert_string_equal(out, "postgresql://vaed@db/vaed");
    /* a password holding '@' and ':' (percent-encoding is optional to libpq) */
    registry_redact_url("postgres://u:a:b@c@db/x", out, sizeof out);
    assert_null(strstr(out, "a:b"));
    assert_null(strstr(out, "b@c"));
}

static void test_password_never_in_errors(void **state)
{
    (void)state;
    char url[256], err[512] = "";
    registry *r = NULL;
    /* A port nobody listens on: the connection fails, and says so. */
    snprintf(url, sizeof url, "postgresql://vaed:pw-Zq81x@127.0.0.1:1/x?connect_timeout=2");
    assert_int_equal(registry_open(url, &r, err, sizeof err), REGISTRY_ERR_UNAVAILABLE);
    assert_null(r);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "pw-Zq81x"));
    snprintf(url, sizeof url, "postgresql://127.0.0.1:1/x?user=vaed&password=pw-Zq81x");
    assert_int_not_equal(registry_open(url, &r, err, sizeof err), REGISTRY_OK);
    assert_null(strstr(err, "pw-Zq81x"));
    assert_non_null(strstr(err, "password=***"));
}

/* sslmode reaches libpq: this server has no SSL, so "require" must fail and
 * "disable" must work (trust accepts any password, which stays unshown). */
static void test_libpq_parameters_pass(void **state)
{
    fixture *f = *state;
    char url[300], err[512] = "";
    registry *r = NULL;
    snprintf(url, sizeof url, "%s?sslmode=require", f->url);
    assert_int_not_equal(registry_open(url, &r, err, sizeof err), REGISTRY_OK);
    assert_non_null(strstr(err, "SSL"));
    snprintf(url, sizeof url, "%s?sslmode=disable&application_name=replica1", f->url);
    r = open_ok(url);
    registry_close(r);
}

/* ---- models seen by every replica ---- */

static void test_change_reaches_other_replica(void **state)
{
    fixture *f = *state;
    registry *a = open_ok(f->url), *b = open_ok(f->url);
    char err[256];
    for (int round = 0; round < 3; round++) {
        uint64_t before = registry_generation(b);
        char payload[32];
        snprintf(payload, sizeof payload, "bytes %d", round);
        registry_checkpoint_info info;
        int created = 0;
        if (round < 2)
            assert_int_equal(registry_put_checkpoint(a, "m", (const uint8_t *)payload,
                                                     strlen(payload), NULL, NULL, NULL, NULL,
                                                     &info, &created, err, sizeof err),
                             REGISTRY_OK);
        else
            assert_int_equal(registry_set_alias(a, "m", "prod", 1, err, sizeof err), REGISTRY_OK);
        double t0 = now_s();
        while (registry_generation(b) == before && now_s() - t0 < 1.0 * harness_slowdown())
            pause_ms(10);
        assert_int_not_equal(registry_generation(b), before);
    }
    registry_checkpoint_info got;
    assert_int_equal(registry_resolve(b, "m", "prod", &got, err, sizeof err), REGISTRY_OK);
    assert_int_equal(got.version, 1);
    assert_int_equal(registry_resolve(b, "m", NULL, &got, err, sizeof err), REGISTRY_OK);
    assert_int_equal(got.version, 2);
    registry_close(a);
    registry_close(b);
}

/* ---- one queue ---- */

typedef struct {
    registry *r;
    int64_t claimed[64];
    int n;
} claim_job;

static void *claim_thread(void *arg)
{
    claim_job *j = arg;
    char err[256];
    for (;;) {
        int64_t id;
        char *config = NULL;
        int rc = registry_claim_next_job(j->r, &id, &config, err, sizeof err);
        free(config);
        if (rc)
            break;
        j->claimed[j->n++] = id;
    }
    return NULL;
}

static void test_claims_are_exclusive(void **state)
{
    fixture *f = *state;
    enum { JOBS = 40 };
    registry *a = open_ok(f->url), *b = open_ok(f->url);
    char err[256];
    /* A job queued on one replica is announced to the other's idle workers. */
    uint64_t before = registry_jobs_generation(b);
    int64_t first;
    assert_int_equal(registry_insert_job(a, "{\"epochs\":1}", &first, err, sizeof err),
                     REGISTRY_OK);
    double t0 = now_s();
    while (registry_jobs_generation(b) == before && now_s() - t0 < 1.0 * harness_slowdown())
        pause_ms(10);
    assert_int_not_equal(registry_jobs_generation(b), before);
    for (int i = 1; i < JOBS; i++) {
        int64_t id;
        assert_int_equal(registry_insert_job(i % 2 ? a : b, "{\"epochs\":1}", &id, err,
                                             sizeof err),
                         REGISTRY_OK);
    }
    claim_job ja = {.r = a}, jb = {.r = b};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, claim_thread, &ja), 0);
    assert_int_equal(pthread_create(&tb, NULL, claim_thread, &jb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(ja.n + jb.n, JOBS);
    int seen[JOBS + 1] = {0};
    for (int i = 0; i < ja.n; i++)
        seen[ja.claimed[i]]++;
    for (int i = 0; i < jb.n; i++)
        seen[jb.claimed[i]]++;
    for (int i = 1; i <= JOBS; i++)
        assert_int_equal(seen[i], 1);
    int64_t counts[JOBS_STATE_COUNT];
    assert_int_equal(registry_count_jobs(a, counts, err, sizeof err), REGISTRY_OK);
    assert_int_equal(counts[JOBS_STATE_RUNNING], JOBS);
    /* Only the holder may report progress or finish. */
    int64_t mine = ja.n ? ja.claimed[0] : jb.claimed[0];
    registry *holder = ja.n ? a : b, *other = ja.n ? b : a;
    assert_int_equal(registry_set_job_progress(holder, mine, "{\"step\":1}", NULL,
                                               JOBS_EVENT_PROGRESS, "{\"step\":1}", NULL, err,
                                               sizeof err),
                     REGISTRY_OK);
    assert_int_equal(registry_set_job_progress(other, mine, "{\"step\":2}", NULL,
                                               JOBS_EVENT_PROGRESS, "{\"step\":2}", NULL, err,
                                               sizeof err),
                     REGISTRY_ERR_CONFLICT);
    assert_non_null(strstr(err, "another replica"));
    /* Anyone may cancel. */
    assert_int_equal(registry_set_job_state(other, mine, JOBS_STATE_CANCELLED, NULL, err,
                                            sizeof err),
                     REGISTRY_OK);
    registry_close(a);
    registry_close(b);
}

/* A replica that dies stops renewing: after its lease another claims the
 * job; while it lives, its lease is renewed and nobody else can. */
static void test_lease_renewed_then_taken_over(void **state)
{
    fixture *f = *state;
    registry *a = open_ok(f->url), *b = open_ok(f->url);
    registry_set_job_lease(a, 3);
    registry_set_job_lease(b, 3);
    char err[256], *config = NULL;
    int64_t id = 0, claimed = 0;
    assert_int_equal(registry_insert_job(b, "{\"epochs\":2}", &id, err, sizeof err), REGISTRY_OK);
    assert_int_equal(registry_claim_next_job(a, &claimed, &config, err, sizeof err), REGISTRY_OK);
    free(config);
    config = NULL;
    assert_int_equal(claimed, id);
    pause_ms(4500); /* past the first lease: renewed meanwhile */
    assert_int_equal(registry_claim_next_job(b, &claimed, &config, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    registry_close(a); /* dies: no more renewals */
    double t0 = now_s();
    int rc;
    while ((rc = registry_claim_next_job(b, &claimed, &config, err, sizeof err)) ==
               REGISTRY_ERR_NOT_FOUND &&
           now_s() - t0 < 10.0 * harness_slowdown())
        pause_ms(100);
    assert_int_equal(rc, REGISTRY_OK);
    assert_int_equal(claimed, id);
    assert_string_equal(config, "{\"epochs\":2}");
    free(config);
    registry_job_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(registry_list_job_events(b, id, 0, 100, &ev, &n, err, sizeof err),
                     REGISTRY_OK);
    /* queued, running, queued (lease expired), running */
    assert_int_equal(n, 4);
    assert_int_equal(ev[2].state, JOBS_STATE_QUEUED);
    assert_non_null(strstr(ev[2].data_json, "lease expired"));
    assert_int_equal(ev[3].state, JOBS_STATE_RUNNING);
    registry_free_job_events(ev, n);
    uint8_t blob[] = "the result";
    registry_checkpoint_info info;
    assert_int_equal(registry_succeed_job(b, id, "m", blob, sizeof blob, NULL, NULL, NULL, &info,
                                          err, sizeof err),
                     REGISTRY_OK);
    assert_int_equal(info.version, 1);
    registry_close(b);
}

static void test_job_resume_state(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f->url);
    char err[256];
    int64_t id;
    assert_int_equal(registry_insert_job(r, "{}", &id, err, sizeof err), REGISTRY_OK);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(registry_get_job_resume(r, id, &data, &len, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    uint8_t bytes[3000];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7);
    for (int round = 0; round < 2; round++) {
        bytes[0] = (uint8_t)round;
        assert_int_equal(registry_put_job_resume(r, id, bytes, sizeof bytes, err, sizeof err),
                         REGISTRY_OK);
        assert_int_equal(registry_get_job_resume(r, id, &data, &len, err, sizeof err),
                         REGISTRY_OK);
        assert_int_equal(len, sizeof bytes);
        assert_memory_equal(data, bytes, len);
        free(data);
    }
    registry_close(r);
}

/* ---- outages ---- */

static void test_outage_and_reconnect(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f->url);
    char err[256];
    registry_checkpoint_info info;
    int created;
    assert_int_equal(registry_put_checkpoint(r, "m", (const uint8_t *)"v1", 2, NULL, NULL, NULL,
                                             NULL, &info, &created, err, sizeof err),
                     REGISTRY_OK);
    assert_true(registry_reachable(r));
    pg_server_stop(&pg);
    int rc = registry_put_checkpoint(r, "m", (const uint8_t *)"v2", 2, NULL, NULL, NULL, NULL,
                                     &info, &created, err, sizeof err);
    assert_int_equal(rc, REGISTRY_ERR_UNAVAILABLE);
    assert_int_equal(created, 0);
    double t0 = now_s();
    while (registry_reachable(r) && now_s() - t0 < 5.0 * harness_slowdown())
        pause_ms(50);
    assert_false(registry_reachable(r));
    assert_int_equal(registry_resolve(r, "m", NULL, &info, err, sizeof err),
                     REGISTRY_ERR_UNAVAILABLE);
    assert_int_equal(pg_server_start_again(&pg, err, sizeof err), 0);
    /* The next call reconnects by itself; what was committed is there. */
    assert_int_equal(registry_resolve(r, "m", NULL, &info, err, sizeof err), REGISTRY_OK);
    assert_int_equal(info.version, 1);
    t0 = now_s();
    while (!registry_reachable(r) && now_s() - t0 < 10.0 * harness_slowdown())
        pause_ms(50);
    assert_true(registry_reachable(r));
    assert_int_equal(registry_put_checkpoint(r, "m", (const uint8_t *)"v2", 2, NULL, NULL, NULL,
                                             NULL, &info, &created, err, sizeof err),
                     REGISTRY_OK);
    assert_int_equal(info.version, 2);
    registry_close(r);
}


/* ---- registry copy ---- */

static void put_ok(registry *r, const char *model, const char *bytes, const char *metrics)
{
    char err[256];
    registry_checkpoint_info info;
    int created;
    assert_int_equal(registry_put_checkpoint(r, model, (const uint8_t *)bytes, strlen(bytes), NULL,
                                             "{\"latent\":2}", metrics, "upload", &info, &created,
                                             err, sizeof err),
                     REGISTRY_OK);
}

/* A registry with what a copy must keep: a gap in the numbers, an alias set
 * by hand, shared bytes, metrics, jobs in every state with events. */
static void fill(registry *r)
{
    char err[256];
    put_ok(r, "digits", "one", "{\"loss\":1.5}");
    put_ok(r, "digits", "two", NULL);
    put_ok(r, "digits", "three", NULL);
    put_ok(r, "faces", "two", "[1,2]");
    assert_int_equal(registry_set_alias(r, "digits", "prod", 1, err, sizeof err), REGISTRY_OK);
    assert_int_equal(registry_delete_version(r, "digits", 2, err, sizeof err), REGISTRY_OK);
    assert_int_equal(registry_set_alias(r, "faces", "latest", 1, err, sizeof err), REGISTRY_OK);
    int64_t id, claimed;
    char *config = NULL;
    for (int i = 0; i < 3; i++)
        assert_int_equal(registry_insert_job(r, "{\"epochs\":3}", &id, err, sizeof err), 0);
    assert_int_equal(registry_claim_next_job(r, &claimed, &config, err, sizeof err), 0);
    free(config);
    assert_int_equal(registry_set_job_progress(r, claimed, "{\"step\":4}", "[{\"epoch\":1}]",
                                               JOBS_EVENT_EPOCH, "{\"epoch\":1}", NULL, err,
                                               sizeof err),
                     0);
    uint8_t blob[] = "job bytes";
    assert_int_equal(registry_succeed_job(r, claimed, "digits", blob, sizeof blob, NULL, NULL,
                                          NULL, NULL, err, sizeof err),
                     0);
    assert_int_equal(registry_set_job_state(r, id, JOBS_STATE_CANCELLED, NULL, err, sizeof err),
                     0);
}

/* Everything a client can see of a and b is the same. */
static void assert_same(registry *a, registry *b)
{
    char err[256];
    registry_model_info *ma = NULL, *mb = NULL;
    size_t na = 0, nb = 0;
    assert_int_equal(registry_list_models(a, &ma, &na, err, sizeof err), 0);
    assert_int_equal(registry_list_models(b, &mb, &nb, err, sizeof err), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(ma, mb, na * sizeof *ma);
    for (size_t m = 0; m < na; m++) {
        registry_checkpoint *ca = NULL, *cb = NULL;
        size_t ka = 0, kb = 0;
        assert_int_equal(registry_list_checkpoints(a, ma[m].name, &ca, &ka, err, sizeof err), 0);
        assert_int_equal(registry_list_checkpoints(b, ma[m].name, &cb, &kb, err, sizeof err), 0);
        assert_int_equal(ka, kb);
        for (size_t i = 0; i < ka; i++) {
            assert_memory_equal(&ca[i].info, &cb[i].info, sizeof ca[i].info);
            assert_true((!ca[i].metrics_json && !cb[i].metrics_json) ||
                        !strcmp(ca[i].metrics_json, cb[i].metrics_json));
            uint8_t *ba = NULL, *bb = NULL;
            size_t la = 0, lb = 0;
            assert_int_equal(registry_get_blob(a, ca[i].info.sha256, &ba, &la, err, sizeof err), 0);
            assert_int_equal(registry_get_blob(b, cb[i].info.sha256, &bb, &lb, err, sizeof err), 0);
            assert_int_equal(la, lb);
            assert_memory_equal(ba, bb, la);
            free(ba);
            free(bb);
        }
        registry_free_checkpoints(ca, ka);
        registry_free_checkpoints(cb, kb);
        registry_alias_info *aa = NULL, *ab = NULL;
        assert_int_equal(registry_list_aliases(a, ma[m].name, &aa, &ka, err, sizeof err), 0);
        assert_int_equal(registry_list_aliases(b, ma[m].name, &ab, &kb, err, sizeof err), 0);
        assert_int_equal(ka, kb);
        assert_memory_equal(aa, ab, ka * sizeof *aa);
        free(aa);
        free(ab);
    }
    registry_free_models(ma);
    registry_free_models(mb);
    registry_job *ja = NULL, *jb = NULL;
    assert_int_equal(registry_list_jobs(a, NULL, 0, 0, &ja, &na, err, sizeof err), 0);
    assert_int_equal(registry_list_jobs(b, NULL, 0, 0, &jb, &nb, err, sizeof err), 0);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(ja[i].id, jb[i].id);
        assert_int_equal(ja[i].state, jb[i].state);
        assert_string_equal(ja[i].config_json, jb[i].config_json);
        assert_string_equal(ja[i].created_at, jb[i].created_at);
        assert_string_equal(ja[i].finished_at, jb[i].finished_at);
        assert_int_equal(ja[i].result_version, jb[i].result_version);
        registry_job_event *ea = NULL, *eb = NULL;
        size_t ka = 0, kb = 0;
        assert_int_equal(registry_list_job_events(a, ja[i].id, 0, 1000, &ea, &ka, err, sizeof err),
                         0);
        assert_int_equal(registry_list_job_events(b, jb[i].id, 0, 1000, &eb, &kb, err, sizeof err),
                         0);
        assert_int_equal(ka, kb);
        for (size_t e = 0; e < ka; e++) {
            assert_int_equal(ea[e].seq, eb[e].seq);
            assert_int_equal(ea[e].state, eb[e].state);
            assert_string_equal(ea[e].created_at, eb[e].created_at);
        }
        registry_free_job_events(ea, ka);
        registry_free_job_events(eb, kb);
    }
    registry_free_jobs(ja, na);
    registry_free_jobs(jb, nb);
}

static void test_copy_file_to_pg_and_back(void **state)
{
    fixture *f = *state;
    char dir[HARNESS_PATH_MAX], file[HARNESS_PATH_MAX + 16], back[HARNESS_PATH_MAX + 16];
    char err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    snprintf(file, sizeof file, "%s/a.db", dir);
    snprintf(back, sizeof back, "%s/b.db", dir);
    registry *src = NULL, *pgr = open_ok(f->url), *dst = NULL;
    assert_int_equal(registry_open(file, &src, err, sizeof err), 0);
    fill(src);
    registry_copy_counts c;
    assert_int_equal(registry_copy_all(src, pgr, &c, err, sizeof err), REGISTRY_OK);
    assert_int_equal(c.models, 2);
    assert_int_equal(c.checkpoints, 4);
    assert_int_equal(c.jobs, 3);
    assert_same(src, pgr);
    /* Into a registry that holds something: refused, nothing changes. */
    assert_int_equal(registry_copy_all(src, pgr, &c, err, sizeof err), REGISTRY_ERR_CONFLICT);
    assert_non_null(strstr(err, "not empty"));
    assert_same(src, pgr);
    /* And back into a new file. */
    assert_int_equal(registry_open(back, &dst, err, sizeof err), 0);
    assert_int_equal(registry_copy_all(pgr, dst, &c, err, sizeof err), REGISTRY_OK);
    assert_same(pgr, dst);
    /* Numbers go on where they were, on both: 2 is never handed out again. */
    put_ok(pgr, "digits", "four", NULL);
    put_ok(dst, "digits", "four", NULL);
    registry_checkpoint_info i1, i2;
    assert_int_equal(registry_resolve(pgr, "digits", "4", &i1, err, sizeof err), 0);
    assert_int_equal(registry_resolve(dst, "digits", "4", &i2, err, sizeof err), 0);
    int64_t id;
    assert_int_equal(registry_insert_job(pgr, "{}", &id, err, sizeof err), 0);
    assert_int_equal(id, 4);
    registry_close(src);
    registry_close(pgr);
    registry_close(dst);
    harness_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redact_url),
        cmocka_unit_test(test_password_never_in_errors),
        cmocka_unit_test_setup_teardown(test_migrate_once_together, setup, teardown),
        cmocka_unit_test_setup_teardown(test_libpq_parameters_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_reaches_other_replica, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claims_are_exclusive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_renewed_then_taken_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_resume_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_file_to_pg_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outage_and_reconnect, setup, teardown),
    };
    char err[256];
    if (pg_server_start(&pg, err, sizeof err)) {
        fprintf(stderr, "test_registry_pg: %s\n", err);
        return 1;
    }
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    pg_server_free(&pg);
    return failed;
}
