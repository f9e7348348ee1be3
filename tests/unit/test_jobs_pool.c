/* Unit tests for server/jobs_pool.c: a real SQLite registry and a small IDX
 * data set (300 images of 8x8) in a mkdtemp() directory, so jobs finish in
 * well under a second. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cblas.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/safetensors.h"
#include "server/jobs_pool.h"
#include "server/registry.h"
#include "tests/lib/harness.h"

typedef struct {
    char dir[64];
    char images[128];
    char db[128];
    registry *reg;
} fixture;

static void put_be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

/* 300 8x8 images: blobs whose position depends on the label, plus noise. */
static int write_data(const fixture *f)
{
    char labels[160];
    snprintf(labels, sizeof labels, "%s/d-labels-idx1-ubyte", f->dir);
    FILE *im = fopen(f->images, "wb"), *lb = fopen(labels, "wb");
    if (!im || !lb) return -1;
    put_be32(im, 0x803);
    put_be32(im, 300);
    put_be32(im, 8);
    put_be32(im, 8);
    put_be32(lb, 0x801);
    put_be32(lb, 300);
    uint32_t x = 12345;
    for (int i = 0; i < 300; i++) {
        int k = i % 10;
        fputc(k, lb);
        for (int p = 0; p < 64; p++) {
            x = x * 1103515245u + 12345u;
            int r = p / 8, c = p % 8, on = (r - k % 6) * (r - k % 6) + (c - k / 2) * (c - k / 2) < 5;
            fputc(on ? 200 + (int)(x >> 28) : (int)(x >> 27), im);
        }
    }
    fclose(im);
    fclose(lb);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (harness_tmpdir(f->dir, sizeof f->dir) != 0) return -1;
    snprintf(f->images, sizeof f->images, "%s/d-images-idx3-ubyte", f->dir);
    snprintf(f->db, sizeof f->db, "%s/registry.db", f->dir);
    char err[256];
    if (write_data(f) || registry_open(f->db, &f->reg, err, sizeof err)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    registry_close(f->reg);
    harness_rm_rf(f->dir);
    free(f);
    return 0;
}

/* What the observer saw. */
typedef struct {
    pthread_mutex_t mu;
    jobs_pool *pool;
    int64_t running[16];    /* jobs in the order they started */
    int n_running;
    int64_t cancel_job;     /* cancel this job at its first progress event */
    int progress_after_cancel;
    int cancelled_at_step;
    int abandon_after_epoch; /* stop as a crash at this epoch event */
    int stop_at_epoch, stop_at_step; /* SIGTERM at this progress event */
    int stopped;             /* the observer stopped the pool */
    int cancel_rc;           /* what jobs_pool_cancel returned (asserted on the main thread) */
    int cancel_at_last_epoch; /* cancel cancel_job from a thread, late_delay_us after */
    int late_delay_us;        /* its last epoch event (after its last step) */
    pthread_t late;
    int late_started;
} observer;

/* The cancel of test_cancel_while_finishing, late_delay_us after the last
 * epoch event, from a thread of its own (the worker goes on meanwhile). */
static void *cancel_late(void *arg)
{
    observer *o = arg;
    pthread_mutex_lock(&o->mu);
    int delay = o->late_delay_us;
    jobs_pool *p = o->pool;
    int64_t id = o->cancel_job;
    pthread_mutex_unlock(&o->mu);
    usleep((useconds_t)delay);
    int rc = jobs_pool_cancel(p, id, NULL, 0);
    pthread_mutex_lock(&o->mu);
    o->cancel_rc = rc;
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

static void on_event(void *ctx, const jobs_event *e)
{
    observer *o = ctx;
    int64_t id = e->job_id;
    pthread_mutex_lock(&o->mu);
    if (e->type == JOBS_EVENT_STATE && e->state == JOBS_STATE_RUNNING && o->n_running < 16)
        o->running[o->n_running++] = id;
    int cancel = 0, abandon = 0, stop = 0;
    if (e->type == JOBS_EVENT_PROGRESS) {
        if (o->cancelled_at_step) o->progress_after_cancel++;
        if (o->cancel_job == id && !o->cancelled_at_step) {
            o->cancelled_at_step = (int)e->step;
            cancel = 1;
        }
        if (o->stop_at_epoch && e->epoch == o->stop_at_epoch && e->step == o->stop_at_step)
            stop = 1;
    }
    if (e->type == JOBS_EVENT_EPOCH && o->cancel_at_last_epoch && o->cancel_job == id &&
        e->epoch == e->epochs) {
        if (!o->late_started)
            o->late_started = pthread_create(&o->late, NULL, cancel_late, o) == 0;
    }
    if (e->type == JOBS_EVENT_EPOCH && o->abandon_after_epoch &&
        e->epoch == o->abandon_after_epoch)
        abandon = 1;
    jobs_pool *p = o->pool;
    pthread_mutex_unlock(&o->mu);
    if (cancel) {
        int rc = jobs_pool_cancel(p, id, NULL, 0);
        pthread_mutex_lock(&o->mu);
        o->cancel_rc = rc;
        pthread_mutex_unlock(&o->mu);
    }
    if (abandon) jobs_pool_stop(p, JOBS_POOL_STOP_ABANDON);
    if (stop) jobs_pool_stop(p, JOBS_POOL_STOP_CHECKPOINT);
    if (abandon || stop) { /* after the stop: the test then sees a stopping pool */
        pthread_mutex_lock(&o->mu);
        o->stopped = 1;
        pthread_mutex_unlock(&o->mu);
    }
}

static int observer_stopped(observer *o)
{
    pthread_mutex_lock(&o->mu);
    int s = o->stopped;
    pthread_mutex_unlock(&o->mu);
    return s;
}

static jobs_pool *new_pool(fixture *f, int workers, observer *o)
{
    jobs_pool_options opt;
    jobs_pool_options_default(&opt);
    opt.data_dir = f->dir;
    opt.workers = workers;
    opt.progress_interval_s = 0; /* every step, for the tests */
    if (o) {
        opt.on_event = on_event;
        opt.on_event_ctx = o;
    }
    jobs_pool *p = NULL;
    char err[256] = "";
    if (jobs_pool_new(f->reg, &opt, &p, err, sizeof err)) fail_msg("jobs_pool_new: %s", err);
    if (o) {
        pthread_mutex_lock(&o->mu);
        o->pool = p;
        pthread_mutex_unlock(&o->mu);
    }
    return p;
}

static int64_t submit(jobs_pool *p, const fixture *f, const char *model, int epochs,
                      const char *extra)
{
    char body[1024], err[512] = "";
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"data\":\"%s\",\"hidden\":[16],\"latent\":2,\"batch\":32,"
             "\"epochs\":%d%s}",
             model, f->images, epochs, extra ? extra : "");
    int64_t id = 0;
    int rc = jobs_pool_submit(p, body, strlen(body), &id, err, sizeof err);
    if (rc) fail_msg("submit: %d %s", rc, err);
    return id;
}

/* Waits (at most 60 s) for a final state; returns its name in state (16 bytes). */
static void wait_final(fixture *f, int64_t id, char *state)
{
    for (int i = 0; i < 12000; i++) {
        registry_job j;
        assert_int_equal(registry_get_job(f->reg, id, &j, NULL, 0), REGISTRY_OK);
        snprintf(state, 16, "%s", jobs_state_name(j.state));
        registry_free_job(&j);
        if (jobs_state_is_final(j.state)) return;
        usleep(5000);
    }
    fail_msg("job %lld did not finish", (long long)id);
}

static void job_state(fixture *f, int64_t id, char *state)
{
    registry_job j;
    assert_int_equal(registry_get_job(f->reg, id, &j, NULL, 0), REGISTRY_OK);
    snprintf(state, 16, "%s", jobs_state_name(j.state));
    registry_free_job(&j);
}

static int resume_exists(const fixture *f, int64_t id)
{
    char path[256];
    snprintf(path, sizeof path, "%s/jobs/%lld/resume.safetensors", f->dir, (long long)id);
    return access(path, F_OK) == 0;
}

static void test_success_registers_a_version(void **state)
{
    fixture *f = *state;
    jobs_pool *p = new_pool(f, 1, NULL);
    int64_t id = submit(p, f, "digits", 3, NULL);
    char st[16];
    wait_final(f, id, st);
    assert_string_equal(st, "succeeded");

    registry_job job;
    assert_int_equal(jobs_pool_get_job(p, id, &job, NULL, 0), JOBS_POOL_OK);
    assert_int_equal(job.state, JOBS_STATE_SUCCEEDED);
    assert_string_equal(job.result_model, "digits");
    assert_int_equal(job.result_version, 1);
    cJSON *metrics = cJSON_Parse(job.metrics_json);
    assert_int_equal(cJSON_GetArraySize(metrics), 3);
    for (int e = 0; e < 3; e++) {
        cJSON *m = cJSON_GetArrayItem(metrics, e);
        assert_int_equal(cJSON_GetObjectItem(m, "epoch")->valueint, e + 1);
        assert_true(cJSON_GetObjectItem(m, "train_loss")->valuedouble > 0);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(m, "test_loss"))); /* no test split */
    }
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(metrics, 2), "train_loss")->valuedouble <
                cJSON_GetObjectItem(cJSON_GetArrayItem(metrics, 0), "train_loss")->valuedouble);
    cJSON_Delete(metrics);
    cJSON *progress = cJSON_Parse(job.progress_json);
    assert_int_equal(cJSON_GetObjectItem(progress, "epoch")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(progress, "steps")->valueint, 10); /* 300 / 32 */
    cJSON_Delete(progress);
    cJSON *config = cJSON_Parse(job.config_json);
    assert_int_equal(cJSON_GetObjectItem(config, "epochs")->valueint, 3);
    cJSON_Delete(config);
    assert_null(job.error);
    assert_true(job.finished_at[0] != '\0');
    registry_free_job(&job);

    /* the registry: version 1 from job 1, with metrics, and 'latest' */
    registry_checkpoint_info info;
    assert_int_equal(registry_resolve(f->reg, "digits", NULL, &info, NULL, 0), 0);
    assert_int_equal(info.version, 1);
    assert_string_equal(info.source, "job:1");
    registry_checkpoint c;
    assert_int_equal(registry_get_checkpoint(f->reg, "digits", 1, &c, NULL, 0), 0);
    assert_non_null(c.metrics_json);
    assert_non_null(strstr(c.metrics_json, "\"per_epoch\""));
    assert_non_null(strstr(c.metrics_json, "\"epochs\":3"));
    /* the evaluation `vaed train` writes too: no test split, so the training
     * images' first 256 */
    assert_non_null(strstr(c.metrics_json, "\"iwae_k\":64,\"iwae_images\":256"));
    assert_non_null(strstr(c.metrics_json, "\"test_iwae_nll\":"));
    assert_null(strstr(c.metrics_json, "\"test_iwae_nll\":null"));
    assert_null(strstr(c.metrics_json, "seconds")); /* no timings in the bytes */
    assert_non_null(c.config_json);
    registry_free_checkpoint(&c);

    /* events: queued, running, 3 epochs (progress between), succeeded */
    registry_job_event *ev;
    size_t n;
    assert_int_equal(jobs_pool_events_after(p, id, 0, 1000, &ev, &n, NULL, 0), 0);
    assert_true(n >= 5);
    assert_int_equal(ev[0].type, JOBS_EVENT_STATE);
    assert_string_equal(ev[0].data_json, "{\"state\":\"queued\"}");
    assert_string_equal(ev[1].data_json, "{\"state\":\"running\"}");
    int epochs = 0, n_progress = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ev[i].seq, (int64_t)i + 1);
        epochs += ev[i].type == JOBS_EVENT_EPOCH;
        n_progress += ev[i].type == JOBS_EVENT_PROGRESS;
    }
    assert_int_equal(epochs, 3);
    assert_int_equal(n_progress, 30); /* every step, with progress_interval_s 0 */
    assert_int_equal(ev[n - 1].type, JOBS_EVENT_STATE);
    assert_int_equal(ev[n - 1].state, JOBS_STATE_SUCCEEDED);
    assert_non_null(strstr(ev[n - 1].data_json, "\"succeeded\""));
    assert_non_null(strstr(ev[n - 1].data_json, "\"version\":1"));
    registry_free_job_events(ev, n);

    /* a second job: version 2, and 'latest' moves */
    id = submit(p, f, "digits", 1, ",\"seed\":8");
    wait_final(f, id, st);
    assert_string_equal(st, "succeeded");
    assert_int_equal(registry_resolve(f->reg, "digits", NULL, &info, NULL, 0), 0);
    assert_int_equal(info.version, 2);
    jobs_pool_free(p);
    /* the resume files go once the job is done (after its state commits) */
    assert_false(resume_exists(f, 1));
    assert_false(resume_exists(f, 2));
}

static void test_jobs_start_in_submission_order(void **state)
{
    fixture *f = *state;
    jobs_pool *p = new_pool(f, 0, NULL); /* queue only */
    int64_t ids[3];
    for (int i = 0; i < 3; i++) ids[i] = submit(p, f, "m", 1, NULL);
    registry_job *list;
    size_t n;
    jobs_state only = JOBS_STATE_QUEUED;
    assert_int_equal(jobs_pool_list_jobs(p, &only, 0, 0, &list, &n, NULL, 0), JOBS_POOL_OK);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) assert_int_equal(list[i].id, ids[i]);
    registry_free_jobs(list, n);
    only = JOBS_STATE_RUNNING;
    assert_int_equal(jobs_pool_list_jobs(p, &only, 0, 0, &list, &n, NULL, 0), JOBS_POOL_OK);
    assert_int_equal(n, 0);
    registry_free_jobs(list, n);
    assert_int_equal(jobs_state_parse("sleeping", &only), -1);
    only = (jobs_state)JOBS_STATE_COUNT; /* not a state */
    assert_int_equal(jobs_pool_list_jobs(p, &only, 0, 0, &list, &n, NULL, 0), JOBS_POOL_ERR_INVALID);
    int64_t counts[JOBS_STATE_COUNT];
    assert_int_equal(jobs_pool_count_jobs(p, counts, NULL, 0), JOBS_POOL_OK);
    assert_int_equal(counts[JOBS_STATE_QUEUED], 3);
    for (int s = 1; s < JOBS_STATE_COUNT; s++) assert_int_equal(counts[s], 0);
    jobs_pool_free(p);

    observer ob = {.mu = PTHREAD_MUTEX_INITIALIZER};
    p = new_pool(f, 1, &ob);
    char st[16];
    for (int i = 0; i < 3; i++) {
        wait_final(f, ids[i], st);
        assert_string_equal(st, "succeeded");
    }
    jobs_pool_free(p);
    assert_int_equal(ob.n_running, 3);
    for (int i = 0; i < 3; i++) assert_int_equal(ob.running[i], ids[i]);
    registry_checkpoint_info info;
    assert_int_equal(registry_resolve(f->reg, "m", NULL, &info, NULL, 0), 0);
    assert_int_equal(info.version, 1); /* the same spec and seed: the same bytes */
}

static void test_cancel_queued_never_starts(void **state)
{
    fixture *f = *state;
    jobs_pool *p = new_pool(f, 0, NULL);
    int64_t a = submit(p, f, "a", 1, NULL), b = submit(p, f, "b", 1, NULL);
    char err[256] = "";
    assert_int_equal(jobs_pool_cancel(p, a, err, sizeof err), JOBS_POOL_OK);
    assert_int_equal(jobs_pool_cancel(p, a, err, sizeof err), JOBS_POOL_ERR_CONFLICT);
    assert_non_null(strstr(err, "cancelled"));
    assert_int_equal(jobs_pool_cancel(p, 999, err, sizeof err), JOBS_POOL_ERR_NOT_FOUND);
    jobs_pool_free(p);

    observer ob = {.mu = PTHREAD_MUTEX_INITIALIZER};
    p = new_pool(f, 1, &ob);
    char st[16];
    wait_final(f, b, st);
    assert_string_equal(st, "succeeded");
    jobs_pool_free(p);
    job_state(f, a, st);
    assert_string_equal(st, "cancelled");
    assert_int_equal(ob.n_running, 1);
    assert_int_equal(ob.running[0], b);
    registry_checkpoint_info info;
    assert_int_equal(registry_resolve(f->reg, "a", NULL, &info, NULL, 0), REGISTRY_ERR_NOT_FOUND);
}

/* Cancels racing the workers' claims (two workers, two cancelling
 * threads, short jobs): the pool holds no lock across registry I/O, so a
 * cancel and a claim exclude each other by counts. Whatever the order,
 * a cancel that was accepted ends its job cancelled with nothing
 * registered, and one refused (409) leaves it succeeded. */
enum { RACE_JOBS = 12 };
typedef struct {
    jobs_pool *p;
    const int64_t *ids;
    int first;            /* this thread cancels ids[first], ids[first + 2], ... */
    int rc[RACE_JOBS];
} race_cancels;

static void *cancel_every_other(void *arg)
{
    race_cancels *c = arg;
    for (int i = c->first; i < RACE_JOBS; i += 2)
        c->rc[i] = jobs_pool_cancel(c->p, c->ids[i], NULL, 0);
    return NULL;
}

static void test_cancels_race_claims(void **state)
{
    fixture *f = *state;
    jobs_pool *p = new_pool(f, 2, NULL);
    int64_t ids[RACE_JOBS];
    for (int i = 0; i < RACE_JOBS; i++) {
        char model[16];
        snprintf(model, sizeof model, "race%d", i);
        ids[i] = submit(p, f, model, 1, NULL);
    }
    race_cancels c[2] = {{.p = p, .ids = ids, .first = 0}, {.p = p, .ids = ids, .first = 1}};
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&t[k], NULL, cancel_every_other, &c[k]), 0);
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    int accepted = 0;
    for (int i = 0; i < RACE_JOBS; i++) {
        int rc = c[i % 2].rc[i];
        char st[16], model[16];
        wait_final(f, ids[i], st);
        snprintf(model, sizeof model, "race%d", i);
        registry_checkpoint_info info;
        int registered = registry_resolve(f->reg, model, NULL, &info, NULL, 0) == REGISTRY_OK;
        if (rc == JOBS_POOL_OK) {
            accepted++;
            assert_string_equal(st, "cancelled");
            assert_false(registered);
        } else {
            assert_int_equal(rc, JOBS_POOL_ERR_CONFLICT);
            assert_string_equal(st, "succeeded");
            assert_true(registered);
        }
    }
    jobs_pool_free(p);
    print_message("racing cancels: %d of %d accepted\n", accepted, RACE_JOBS);
    assert_true(accepted > 0); /* the queued ones at least */
}

static void test_cancel_running_stops_within_a_step(void **state)
{
    fixture *f = *state;
    observer ob = {.mu = PTHREAD_MUTEX_INITIALIZER, .cancel_rc = -1};
    jobs_pool *p = new_pool(f, 1, &ob);
    pthread_mutex_lock(&ob.mu);
    ob.cancel_job = 1; /* the first job's id */
    pthread_mutex_unlock(&ob.mu);
    int64_t id = submit(p, f, "c", 500, NULL);
    assert_int_equal(id, 1);
    char st[16];
    wait_final(f, id, st);
    assert_string_equal(st, "cancelled");
    jobs_pool_free(p);
    assert_int_equal(ob.cancelled_at_step, 1);
    assert_int_equal(ob.cancel_rc, JOBS_POOL_OK);
    assert_int_equal(ob.progress_after_cancel, 0); /* no step after the cancel */
    registry_job j;
    assert_int_equal(registry_get_job(f->reg, id, &j, NULL, 0), 0);
    assert_non_null(strstr(j.progress_json, "\"step\":1,"));
    assert_true(j.finished_at[0] != '\0');
    assert_int_equal(j.result_version, 0);
    registry_free_job(&j);
    assert_int_equal(registry_count_checkpoints(f->reg), 0);
    assert_false(resume_exists(f, id));
}


/* Cancels at moments from the last step to past the registration: whatever
 * the moment, a cancel that was accepted (202) ends the job cancelled with
 * nothing registered, and one refused (409) leaves it succeeded. */
static void test_cancel_while_finishing(void **state)
{
    fixture *f = *state;
    static const int delays_us[] = {200, 1000, 3000, 10000, 30000, 100000};
    for (size_t k = 0; k < sizeof delays_us / sizeof delays_us[0]; k++) {
        observer ob = {.mu = PTHREAD_MUTEX_INITIALIZER, .cancel_rc = -1};
        jobs_pool *p = new_pool(f, 1, &ob);
        int64_t before = registry_count_checkpoints(f->reg);
        pthread_mutex_lock(&ob.mu);
        ob.cancel_at_last_epoch = 1;
        ob.cancelled_at_step = -1;
        ob.late_delay_us = delays_us[k];
        pthread_mutex_unlock(&ob.mu);
        char name[32];
        snprintf(name, sizeof name, "late%zu", k);
        int64_t id = submit(p, f, name, 1, NULL);
        pthread_mutex_lock(&ob.mu);
        ob.cancel_job = id;
        pthread_mutex_unlock(&ob.mu);
        char st[16];
        wait_final(f, id, st);
        assert_true(ob.late_started);
        pthread_join(ob.late, NULL);
        jobs_pool_free(p);
        int64_t added = registry_count_checkpoints(f->reg) - before;
        print_message("cancel %d us after the last step: %s, job %s\n", delays_us[k],
                      ob.cancel_rc == JOBS_POOL_OK ? "accepted" : "refused", st);
        if (ob.cancel_rc == JOBS_POOL_OK) {
            assert_string_equal(st, "cancelled");
            assert_int_equal(added, 0);
        } else {
            assert_int_equal(ob.cancel_rc, JOBS_POOL_ERR_CONFLICT);
            assert_string_equal(st, "succeeded");
            assert_int_equal(added, 1);
        }
    }
}

static void test_nonfinite_loss_fails_and_registers_nothing(void **state)
{
    fixture *f = *state;
    jobs_pool *p = new_pool(f, 1, NULL);
    /* Adam moves every weight by about lr at the first step: 1e30 overflows
     * the next forward pass */
    int64_t id = submit(p, f, "nan", 3, ",\"lr\":1e30");
    char st[16];
    wait_final(f, id, st);
    assert_string_equal(st, "failed");
    registry_job j;
    assert_int_equal(registry_get_job(f->reg, id, &j, NULL, 0), 0);
    assert_non_null(j.error);
    assert_non_null(strstr(j.error, "not finite"));
    assert_non_null(strstr(j.error, "step"));
    assert_int_equal(j.result_version, 0);
    registry_free_job(&j);
    assert_int_equal(registry_count_checkpoints(f->reg), 0);
    registry_checkpoint_info info;
    assert_int_equal(registry_resolve(f->reg, "nan", NULL, &info, NULL, 0), REGISTRY_ERR_NOT_FOUND);
    registry_job_event *ev;
    size_t n;
    assert_int_equal(jobs_pool_events_after(p, id, 0, 1000, &ev, &n, NULL, 0), 0);
    assert_non_null(strstr(ev[n - 1].data_json, "\"failed\""));
    assert_non_null(strstr(ev[n - 1].data_json, "not finite"));
    registry_free_job_events(ev, n);
    jobs_pool_free(p);
    assert_false(resume_exists(f, id));
}

/* The sha256 of the checkpoint a job registered. */
static void result_sha(fixture *f, const char *model, char sha[65])
{
    registry_checkpoint_info info;
    assert_int_equal(registry_resolve(f->reg, model, NULL, &info, NULL, 0), 0);
    memcpy(sha, info.sha256, 65);
}

static void test_resume_after_a_crash_is_exact(void **state)
{
    fixture *f = *state;
    observer ob = {.mu = PTHREAD_MUTEX_INITIALIZER, .abandon_after_epoch = 2};
    jobs_pool *p = new_pool(f, 1, &ob);
    int64_t id = submit(p, f, "crash", 4, NULL);
    /* the observer stops the pool as a crash would after epoch 2 */
    for (int i = 0; i < 6000 && !observer_stopped(&ob); i++) usleep(5000);
    assert_true(observer_stopped(&ob));
    jobs_pool_free(p); /* joins; the first stop (abandon) wins */
    char st[16];
    job_state(f, id, st);
    assert_string_equal(st, "running"); /* as the crash left it */
    assert_true(resume_exists(f, id));
    char path[256];
    snprintf(path, sizeof path, "%s/jobs/%lld/resume.safetensors", f->dir, (long long)id);
    st_file sf;
    assert_int_equal(st_read_file(path, &sf, NULL, 0), 0);
    assert_string_equal(st_meta_get(&sf, "epochs_done"), "2");
    assert_string_equal(st_meta_get(&sf, "next_step"), "0");
    st_free(&sf);

    /* the daemon starts again */
    observer ob2 = {.mu = PTHREAD_MUTEX_INITIALIZER};
    p = new_pool(f, 1, &ob2);
    wait_final(f, id, st);
    assert_string_equal(st, "succeeded");
    registry_job j;
    assert_int_equal(registry_get_job(f->reg, id, &j, NULL, 0), 0);
    cJSON *m = cJSON_Parse(j.metrics_json);
    assert_int_equal(cJSON_GetArraySize(m), 4);
    for (int e = 0; e < 4; e++)
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, e), "epoch")->valueint, e + 1);
    cJSON_Delete(m);
    registry_free_job(&j);
    registry_job_event *ev;
    size_t n;
    assert_int_equal(jobs_pool_events_after(p, id, 0, 1000, &ev, &n, NULL, 0), 0);
    int restarted = 0, epochs = 0;
    for (size_t i = 0; i < n; i++) {
        restarted += ev[i].data_json && strstr(ev[i].data_json, "\"reason\":\"restarted\"") != NULL;
        epochs += ev[i].type == JOBS_EVENT_EPOCH;
    }
    assert_int_equal(restarted, 1);
    assert_int_equal(epochs, 4);
    registry_free_job_events(ev, n);

    /* the same job never interrupted: the same bytes */
    int64_t ref = submit(p, f, "reference", 4, NULL);
    wait_final(f, ref, st);
    assert_string_equal(st, "succeeded");
    jobs_pool_free(p);
    char a[65], b[65];
    assert_false(resume_exists(f, id));
    result_sha(f, "crash", a);
    result_sha(f, "reference", b);
    assert_string_equal(a, b);
}

static void test_shutdown_checkpoints_mid_epoch_and_resumes_exactly(void **state)
{
    fixture *f = *state;
    observer ob = {.mu = PTHREAD_MUTEX_INITIALIZER, .stop_at_epoch = 2, .stop_at_step = 3};
    jobs_pool *p = new_pool(f, 1, &ob);
    int64_t id = submit(p, f, "term", 4, NULL);
    for (int i = 0; i < 6000 && !observer_stopped(&ob); i++) usleep(5000);
    assert_true(observer_stopped(&ob));
    int64_t other = 0;
    assert_int_equal(jobs_pool_submit(p, "{}", 2, &other, NULL, 0), JOBS_POOL_ERR_STOPPING);
    jobs_pool_free(p);
    char st[16];
    job_state(f, id, st);
    assert_string_equal(st, "queued"); /* interrupted, to resume */
    char path[256];
    snprintf(path, sizeof path, "%s/jobs/%lld/resume.safetensors", f->dir, (long long)id);
    st_file sf;
    assert_int_equal(st_read_file(path, &sf, NULL, 0), 0);
    assert_string_equal(st_meta_get(&sf, "epochs_done"), "1");
    assert_string_equal(st_meta_get(&sf, "next_step"), "3");
    st_free(&sf);

    p = new_pool(f, 1, NULL);
    wait_final(f, id, st);
    assert_string_equal(st, "succeeded");
    int64_t ref = submit(p, f, "reference", 4, NULL);
    wait_final(f, ref, st);
    assert_string_equal(st, "succeeded");
    registry_job j;
    assert_int_equal(registry_get_job(f->reg, id, &j, NULL, 0), 0);
    cJSON *m = cJSON_Parse(j.metrics_json);
    assert_int_equal(cJSON_GetArraySize(m), 4);
    cJSON_Delete(m);
    registry_free_job(&j);
    jobs_pool_free(p);
    char a[65], b[65];
    result_sha(f, "term", a);
    result_sha(f, "reference", b);
    assert_string_equal(a, b);
}

static void test_submit_refusals(void **state)
{
    fixture *f = *state;
    jobs_pool_options opt;
    jobs_pool_options_default(&opt);
    opt.data_dir = f->dir;
    opt.workers = 0;
    opt.job_mem_limit = 100 * 1024; /* 100 KiB: too small for anything */
    jobs_pool *p = NULL;
    char err[512] = "";
    assert_int_equal(jobs_pool_new(f->reg, &opt, &p, err, sizeof err), 0);
    int64_t id = 5;
    const char *bad = "{\"model\":\"m\",\"colour\":\"red\"}";
    assert_int_equal(jobs_pool_submit(p, bad, strlen(bad), &id, err, sizeof err),
                     JOBS_POOL_ERR_INVALID);
    assert_int_equal(id, 0);
    assert_non_null(strstr(err, "colour"));
    char body[512];
    snprintf(body, sizeof body, "{\"model\":\"m\",\"data\":\"%s\",\"hidden\":[512]}", f->images);
    assert_int_equal(jobs_pool_submit(p, body, strlen(body), &id, err, sizeof err),
                     JOBS_POOL_ERR_INVALID);
    assert_non_null(strstr(err, "--job-mem-mb"));
    registry_job job;
    assert_int_equal(jobs_pool_get_job(p, 42, &job, err, sizeof err), JOBS_POOL_ERR_NOT_FOUND);
    registry_job *list;
    size_t n;
    assert_int_equal(jobs_pool_list_jobs(p, NULL, 0, 0, &list, &n, NULL, 0), JOBS_POOL_OK);
    assert_int_equal(n, 0); /* nothing was queued */
    registry_free_jobs(list, n);
    jobs_pool_free(p);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    jobs_pool *p;
    int64_t id;
    double cancelled_at; /* now_s() once the cancel returned */
} cancel_later;

static void *cancel_thread(void *arg)
{
    cancel_later *c = arg;
    usleep(100 * 1000);
    jobs_pool_cancel(c->p, c->id, NULL, 0);
    c->cancelled_at = now_s();
    return NULL;
}

static void test_wait_events(void **state)
{
    fixture *f = *state;
    jobs_pool *p = new_pool(f, 0, NULL);
    int64_t id = submit(p, f, "w", 1, NULL);
    assert_int_equal(jobs_pool_wait_events(p, id, 0, 10), 1); /* "queued" is event 1 */
    double t0 = now_s();
    assert_int_equal(jobs_pool_wait_events(p, id, 1, 50), 0);
    assert_true(now_s() - t0 >= 0.045);
    assert_int_equal(jobs_pool_wait_events(p, 999, 0, 10), -1);
    /* woken by the new event, not by the timeout (the event's commit waits
     * for fsync, which a busy disk can make slow: timed from its return) */
    cancel_later c = {p, id, 0};
    pthread_t th;
    pthread_create(&th, NULL, cancel_thread, &c);
    t0 = now_s();
    assert_int_equal(jobs_pool_wait_events(p, id, 1, 60000), 1);
    double woke = now_s();
    pthread_join(th, NULL);
    assert_true(woke - t0 < 59.0);
    assert_true(woke - c.cancelled_at < 2.0);
    registry_job_event *ev;
    size_t n;
    assert_int_equal(jobs_pool_events_after(p, id, 1, 10, &ev, &n, NULL, 0), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].seq, 2);
    assert_string_equal(ev[0].data_json, "{\"state\":\"cancelled\"}");
    registry_free_job_events(ev, n);
    assert_int_equal(jobs_pool_events_after(p, 999, 0, 10, &ev, &n, NULL, 0),
                     JOBS_POOL_ERR_NOT_FOUND);
    /* a stopping pool releases its waiters */
    jobs_pool_stop(p, JOBS_POOL_STOP_CHECKPOINT);
    t0 = now_s();
    assert_int_equal(jobs_pool_wait_events(p, id, 2, 10000), 0);
    assert_true(now_s() - t0 < 1.0);
    jobs_pool_free(p);
}

/* The registry's side: allowed transitions only, each with its event. */
static void test_registry_job_transitions(void **state)
{
    fixture *f = *state;
    registry *r = f->reg;
    char err[256];
    int64_t id, other;
    assert_int_equal(registry_insert_job(r, "{\"model\":\"x\"}", &id, err, sizeof err), 0);
    assert_int_equal(registry_insert_job(r, "not json", &other, err, sizeof err), REGISTRY_ERR_ARG);
    assert_int_equal(registry_insert_job(r, "{}", &other, err, sizeof err), 0);
    assert_int_equal(registry_set_job_state(r, id, JOBS_STATE_SUCCEEDED, NULL, err, sizeof err),
                     REGISTRY_ERR_CONFLICT);
    assert_non_null(strstr(err, "queued"));
    assert_int_equal(registry_set_job_state(r, id, (jobs_state)JOBS_STATE_COUNT, NULL, err,
                                            sizeof err),
                     REGISTRY_ERR_ARG);
    assert_int_equal(registry_set_job_state(r, 77, JOBS_STATE_RUNNING, NULL, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_int_equal(registry_set_job_progress(r, id, "{}", NULL, JOBS_EVENT_PROGRESS, NULL, NULL,
                                               err, sizeof err),
                     REGISTRY_ERR_CONFLICT); /* not running */

    int64_t claimed;
    char *config;
    assert_int_equal(registry_claim_next_job(r, &claimed, &config, err, sizeof err), 0);
    assert_int_equal(claimed, id); /* the oldest first */
    assert_string_equal(config, "{\"model\":\"x\"}");
    free(config);
    int64_t seq = 0;
    assert_int_equal(registry_set_job_progress(r, id, "{\"step\":1}", "[]", JOBS_EVENT_PROGRESS,
                                               "{\"step\":1}", &seq, err, sizeof err), 0);
    assert_int_equal(seq, 3); /* queued, running, progress */
    assert_int_equal(registry_append_job_event(r, id, JOBS_EVENT_PROGRESS, "{bad", &seq, err,
                                               sizeof err),
                     REGISTRY_ERR_ARG);
    assert_int_equal(registry_append_job_event(r, id, (jobs_event_type)JOBS_EVENT_TYPE_COUNT, "{}",
                                               &seq, err, sizeof err),
                     REGISTRY_ERR_ARG);
    assert_int_equal(registry_set_job_state(r, id, JOBS_STATE_QUEUED, "interrupted", err,
                                            sizeof err), 0);
    assert_int_equal(registry_claim_next_job(r, &claimed, &config, err, sizeof err), 0);
    assert_int_equal(claimed, id);
    free(config);
    assert_int_equal(registry_set_job_state(r, id, JOBS_STATE_FAILED, "boom", err, sizeof err), 0);
    assert_int_equal(registry_set_job_state(r, id, JOBS_STATE_RUNNING, NULL, err, sizeof err),
                     REGISTRY_ERR_CONFLICT);
    assert_int_equal(registry_set_job_state(r, id, JOBS_STATE_CANCELLED, NULL, err, sizeof err),
                     REGISTRY_ERR_CONFLICT);

    registry_job j;
    assert_int_equal(registry_get_job(r, id, &j, err, sizeof err), 0);
    assert_int_equal(j.state, JOBS_STATE_FAILED);
    assert_string_equal(j.error, "boom");
    assert_string_equal(j.progress_json, "{\"step\":1}");
    assert_string_equal(j.metrics_json, "[]");
    assert_true(j.started_at[0] && j.finished_at[0]);
    registry_free_job(&j);

    registry_job_event *ev;
    size_t n;
    assert_int_equal(registry_list_job_events(r, id, 0, 100, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 6);
    const char *want[] = {"{\"state\":\"queued\"}", "{\"state\":\"running\"}", "{\"step\":1}",
                          "{\"state\":\"queued\",\"reason\":\"interrupted\"}",
                          "{\"state\":\"running\"}", "{\"state\":\"failed\",\"error\":\"boom\"}"};
    const jobs_state want_state[] = {JOBS_STATE_QUEUED, JOBS_STATE_RUNNING, JOBS_STATE_RUNNING,
                                     JOBS_STATE_QUEUED, JOBS_STATE_RUNNING, JOBS_STATE_FAILED};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ev[i].seq, (int64_t)i + 1);
        assert_string_equal(ev[i].data_json, want[i]);
        assert_int_equal(ev[i].type, i == 2 ? JOBS_EVENT_PROGRESS : JOBS_EVENT_STATE);
        assert_int_equal(ev[i].state, want_state[i]);
    }
    registry_free_job_events(ev, n);
    assert_int_equal(registry_list_job_events(r, id, 4, 1, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].seq, 5);
    registry_free_job_events(ev, n);
    int64_t last;
    jobs_state st;
    assert_int_equal(registry_get_job_last_seq(r, id, &last, &st, err, sizeof err), 0);
    assert_int_equal(last, 6);
    assert_int_equal(st, JOBS_STATE_FAILED);

    /* a crash leaves the other job running: requeued, then claimed again */
    assert_int_equal(registry_claim_next_job(r, &claimed, &config, err, sizeof err), 0);
    assert_int_equal(claimed, other);
    free(config);
    int count = 0;
    assert_int_equal(registry_requeue_running_jobs(r, &count, err, sizeof err), 0);
    assert_int_equal(count, 1);
    registry_job *list;
    jobs_state queued = JOBS_STATE_QUEUED;
    assert_int_equal(registry_list_jobs(r, &queued, 0, 0, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, other);
    registry_free_jobs(list, n);
    assert_int_equal(registry_claim_next_job(r, &claimed, &config, err, sizeof err), 0);
    free(config);
    assert_int_equal(registry_claim_next_job(r, &claimed, &config, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_null(config);
}

/* Jobs a page at a time; finished ones pruned by age, events and all; a
 * full queue refuses a submit. */
static void test_pages_prune_and_queue_cap(void **state)
{
    fixture *f = *state;
    registry *r = f->reg;
    char err[256];
    int64_t ids[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(registry_insert_job(r, "{}", &ids[i], err, sizeof err), 0);
    registry_job *list = NULL;
    size_t n = 0;
    assert_int_equal(registry_list_jobs(r, NULL, ids[1], 3, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].id, ids[2]);
    assert_int_equal(list[2].id, ids[4]);
    registry_free_jobs(list, n);
    assert_int_equal(registry_list_jobs(r, NULL, ids[5], 3, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    /* two finish; pruning before a date in the past takes none, after now both */
    for (int i = 0; i < 2; i++)
        assert_int_equal(registry_set_job_state(r, ids[i], JOBS_STATE_CANCELLED, NULL, err,
                                                sizeof err),
                         0);
    int64_t deleted = -1;
    assert_int_equal(registry_prune_jobs(r, "2000-01-01T00:00:00Z", &deleted, err, sizeof err), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(registry_prune_jobs(r, "9999-01-01T00:00:00Z", &deleted, err, sizeof err), 0);
    assert_int_equal(deleted, 2);
    int64_t seq;
    assert_int_equal(registry_get_job_last_seq(r, ids[0], &seq, NULL, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_int_equal(registry_list_jobs(r, NULL, 0, 0, &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 4); /* the queued ones stay, whatever their age */
    registry_free_jobs(list, n);

    /* four queued: a pool that keeps at most four refuses a fifth */
    jobs_pool_options opt;
    jobs_pool_options_default(&opt);
    opt.data_dir = f->dir;
    opt.workers = 0;
    opt.max_queued = 4;
    jobs_pool *p = NULL;
    assert_int_equal(jobs_pool_new(r, &opt, &p, err, sizeof err), JOBS_POOL_OK);
    char body[512];
    snprintf(body, sizeof body, "{\"model\":\"q\",\"data\":\"%s\",\"hidden\":[16],\"latent\":2}",
             f->images);
    int64_t id = 0;
    assert_int_equal(jobs_pool_submit(p, body, strlen(body), &id, err, sizeof err),
                     JOBS_POOL_ERR_FULL);
    assert_non_null(strstr(err, "--max-queued-jobs"));
    assert_int_equal(jobs_pool_prune(p, 0, &deleted, err, sizeof err), JOBS_POOL_OK);
    assert_int_equal(deleted, 0);
    jobs_pool_free(p);
}

int main(void)
{
    openblas_set_num_threads(1); /* exact resume needs one BLAS thread, as in vaed serve */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success_registers_a_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs_start_in_submission_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_queued_never_starts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancels_race_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_running_stops_within_a_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_while_finishing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonfinite_loss_fails_and_registers_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_a_crash_is_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_checkpoints_mid_epoch_and_resumes_exactly,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_job_transitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pages_prune_and_queue_cap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
