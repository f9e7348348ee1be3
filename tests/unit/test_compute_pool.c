/* compute_pool behind a real libmicrohttpd daemon on 127.0.0.1: tasks run on
 * the pool's threads (not the polling thread) and their connections resume
 * with the answer; past the limit a request gets 429 with Retry-After: 1
 * and the pool's own wording, counted in the stats; stopping runs what was
 * admitted, resumes its connections, and refuses later tasks with 503.
 * Batching: tasks of one key queued behind each other run as one run_batch
 * call of at most max_batch, others of another key apart, in order; the
 * connections a batch did not mark done are resumed by the pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "server/compute_pool.h"
#include "server/http_util.h"
#include "tests/lib/harness.h"

typedef struct {
    compute_task task; /* first: the pool's view */
    pthread_t ran_on;
    int ran;
    int batch;         /* the size of the run_batch call it ran in (0: run) */
    int batch_seq;     /* which run_batch call, counted from 1 */
} work;

static struct {
    compute_pool *pool;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_open; /* tasks wait for it */
    int started;   /* tasks that began running */
    pthread_t polling_thread;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void work_run(compute_task *t)
{
    work *w = (work *)t;
    w->ran_on = pthread_self();
    pthread_mutex_lock(&T.mu);
    T.started++;
    pthread_cond_broadcast(&T.cv);
    while (!T.gate_open)
        pthread_cond_wait(&T.cv, &T.mu);
    pthread_mutex_unlock(&T.mu);
    w->ran = 1;
}

static int batch_calls;

/* The first call waits at the gate like work_run; every call marks the
 * tasks at even places done itself and leaves the others to the pool. */
static void work_run_batch(compute_task **tasks, int n, compute_batch *b)
{
    int seq = ++batch_calls; /* one compute thread in these tests */
    work_run(tasks[0]);
    for (int i = 0; i < n; i++) {
        work *w = (work *)tasks[i];
        w->ran = 1;
        w->ran_on = pthread_self();
        w->batch = n;
        w->batch_seq = seq;
    }
    for (int i = 0; i < n; i += 2)
        compute_batch_done(b, i);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)cls, (void)url, (void)method, (void)version, (void)upload_data, (void)upload_data_size;
    work *w = *con_cls;
    if (!w) {
        w = calloc(1, sizeof *w); /* freed in on_completed */
        if (!w)
            return MHD_NO;
        *con_cls = w;
        return MHD_YES;
    }
    if (w->task.conn) { /* the second call, after the resume */
        char text[64];
        int len = snprintf(text, sizeof text, "ran=%d elsewhere=%d", w->ran,
                           !pthread_equal(w->ran_on, T.polling_thread));
        if (w->task.run_batch)
            snprintf(text + len, sizeof text - (size_t)len, " batch=%d seq=%d", w->batch,
                     w->batch_seq);
        return http_send_buffer(c, MHD_HTTP_OK, "text/plain", (uint8_t *)strdup(text),
                                strlen(text));
    }
    T.polling_thread = pthread_self();
    w->task.run = work_run;
    w->task.conn = c;
    const char *key = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "k");
    if (key) {
        w->task.run_batch = work_run_batch;
        w->task.batch_key = (uint64_t)atoi(key);
    }
    return compute_pool_admit(T.pool, &w->task);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static struct MHD_Daemon *start(int *port)
{
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
        on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    *port = info->port;
    return d;
}

static void gate(int open)
{
    pthread_mutex_lock(&T.mu);
    T.gate_open = open;
    pthread_cond_broadcast(&T.cv);
    pthread_mutex_unlock(&T.mu);
}

/* Waits until n tasks have started running. */
static void wait_started(int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10 * harness_slowdown();
    pthread_mutex_lock(&T.mu);
    while (T.started < n)
        if (pthread_cond_timedwait(&T.cv, &T.mu, &until))
            break;
    int started = T.started;
    pthread_mutex_unlock(&T.mu);
    if (started < n)
        fail_msg("%d of %d tasks started", started, n);
}

typedef struct {
    int port;
    harness_response r;
    pthread_t thread;
} client;

static void *client_main(void *arg)
{
    client *cl = arg;
    harness_request(cl->port, "GET", "/", NULL, NULL, 0, &cl->r);
    return NULL;
}

static void start_client(client *cl, int port)
{
    memset(cl, 0, sizeof *cl);
    cl->port = port;
    assert_int_equal(pthread_create(&cl->thread, NULL, client_main, cl), 0);
}

/* Waits until the pool holds n admitted tasks. */
static void wait_in_flight(int n)
{
    for (int i = 0; i < 1000 * harness_slowdown(); i++) {
        compute_pool_stats s;
        compute_pool_get_stats(T.pool, &s);
        if (s.in_flight == n)
            return;
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    fail_msg("the pool never held %d tasks", n);
}

/* Two clients whose tasks fill the pool: a's runs (waiting at the gate), b's
 * is queued behind it. */
static void fill_pool(int port, client *a, client *b)
{
    start_client(a, port);
    wait_started(1);
    start_client(b, port);
    wait_in_flight(2);
}

static int setup(void **state)
{
    (void)state;
    T.gate_open = 0;
    T.started = 0;
    char err[256];
    if (compute_pool_new(1, 2, "test tasks", &T.pool, err, sizeof err) != COMPUTE_POOL_OK) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gate(1);
    compute_pool_free(T.pool);
    T.pool = NULL;
    return 0;
}

static void test_runs_off_the_polling_thread(void **state)
{
    (void)state;
    int port;
    struct MHD_Daemon *d = start(&port);
    gate(1);
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal((const char *)r.body, "ran=1 elsewhere=1");
    harness_response_free(&r);
    compute_pool_stats s;
    compute_pool_get_stats(T.pool, &s);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.limit, 2);
    assert_int_equal(s.rejected, 0);
    compute_pool_stop(T.pool);
    MHD_stop_daemon(d);
}

static void test_full_pool_answers_429(void **state)
{
    (void)state;
    int port;
    struct MHD_Daemon *d = start(&port);
    client a, b;
    fill_pool(port, &a, &b);

    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 429, "too_many_requests"));
    const char *retry = harness_header(&r, "retry-after");
    assert_non_null(retry);
    assert_string_equal(retry, "1");
    cJSON *root = harness_json(&r);
    const cJSON *msg = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "error"), "message");
    assert_string_equal(msg->valuestring, "2 test tasks are already queued or running; retry shortly");
    cJSON_Delete(root);
    harness_response_free(&r);
    compute_pool_stats s;
    compute_pool_get_stats(T.pool, &s);
    assert_int_equal(s.in_flight, 2);
    assert_int_equal(s.rejected, 1);

    gate(1);
    pthread_join(a.thread, NULL);
    pthread_join(b.thread, NULL);
    assert_int_equal(a.r.status, 200);
    assert_int_equal(b.r.status, 200);
    assert_string_equal((const char *)b.r.body, "ran=1 elsewhere=1");
    harness_response_free(&a.r);
    harness_response_free(&b.r);
    compute_pool_stop(T.pool);
    MHD_stop_daemon(d);
}

typedef struct {
    int delay_ms;
} opener;

static void *open_later(void *arg)
{
    opener *o = arg;
    struct timespec pause = {0, (long)o->delay_ms * 1000 * 1000};
    nanosleep(&pause, NULL);
    gate(1);
    return NULL;
}

static void test_stop_finishes_admitted_work(void **state)
{
    (void)state;
    int port;
    struct MHD_Daemon *d = start(&port);
    client a, b;
    fill_pool(port, &a, &b);
    /* The stop waits for both (the gate opens meanwhile), and resumes them:
     * MHD_stop_daemon after it finds no connection suspended. */
    opener o = {.delay_ms = 100};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, open_later, &o), 0);
    compute_pool_stop(T.pool);
    pthread_join(t, NULL);
    compute_pool_stats s;
    compute_pool_get_stats(T.pool, &s);
    assert_int_equal(s.in_flight, 0);
    pthread_join(a.thread, NULL);
    pthread_join(b.thread, NULL);
    assert_int_equal(a.r.status, 200);
    assert_int_equal(b.r.status, 200);
    harness_response_free(&a.r);
    harness_response_free(&b.r);

    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 503, "unavailable"));
    harness_response_free(&r);
    compute_pool_stop(T.pool); /* twice is fine */
    MHD_stop_daemon(d);
}

typedef struct {
    int port;
    const char *path;
    harness_response r;
    pthread_t thread;
} keyed_client;

static void *keyed_main(void *arg)
{
    keyed_client *cl = arg;
    harness_request(cl->port, "GET", cl->path, NULL, NULL, 0, &cl->r);
    return NULL;
}

static void test_batches_take_queued_tasks_of_one_key(void **state)
{
    (void)state;
    char err[256];
    compute_pool_free(T.pool);
    assert_int_equal(compute_pool_new(1, 8, "test tasks", &T.pool, err, sizeof err),
                     COMPUTE_POOL_OK);
    assert_int_equal(compute_pool_set_batching(T.pool, 4, 0), COMPUTE_POOL_OK);
    batch_calls = 0;
    int port;
    struct MHD_Daemon *d = start(&port);
    /* the first runs alone (nothing queued yet) and holds the thread at the
     * gate while the rest queue up, in this order */
    static const char *const paths[] = {"/?k=1", "/?k=1", "/?k=2", "/?k=1",
                                        "/?k=1", "/?k=1", "/?k=1"};
    enum { N = sizeof paths / sizeof paths[0] };
    keyed_client cl[N];
    for (int i = 0; i < N; i++) {
        memset(&cl[i], 0, sizeof cl[i]);
        cl[i].port = port;
        cl[i].path = paths[i];
        assert_int_equal(pthread_create(&cl[i].thread, NULL, keyed_main, &cl[i]), 0);
        if (i == 0)
            wait_started(1);
        wait_in_flight(i + 1);
    }
    gate(1);
    for (int i = 0; i < N; i++)
        pthread_join(cl[i].thread, NULL);
    /* then the four k=1 at the head of the queue (max_batch 4), the k=2
     * one, and the last k=1 */
    static const char *const want[] = {
        "ran=1 elsewhere=1 batch=1 seq=1", "ran=1 elsewhere=1 batch=4 seq=2",
        "ran=1 elsewhere=1 batch=1 seq=3", "ran=1 elsewhere=1 batch=4 seq=2",
        "ran=1 elsewhere=1 batch=4 seq=2", "ran=1 elsewhere=1 batch=4 seq=2",
        "ran=1 elsewhere=1 batch=1 seq=4"};
    for (int i = 0; i < N; i++) {
        assert_int_equal(cl[i].r.status, 200);
        assert_string_equal((const char *)cl[i].r.body, want[i]);
        harness_response_free(&cl[i].r);
    }
    compute_pool_stats s;
    compute_pool_get_stats(T.pool, &s);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(compute_pool_set_batching(T.pool, 0, 0), COMPUTE_POOL_ERR_ARG);
    assert_int_equal(compute_pool_set_batching(T.pool, COMPUTE_POOL_MAX_BATCH + 1, 0),
                     COMPUTE_POOL_ERR_ARG);
    assert_int_equal(compute_pool_set_batching(T.pool, 2, -1), COMPUTE_POOL_ERR_ARG);
    assert_int_equal(compute_pool_set_batching(T.pool, 2, COMPUTE_POOL_MAX_DELAY_US + 1),
                     COMPUTE_POOL_ERR_ARG);
    compute_pool_stop(T.pool);
    MHD_stop_daemon(d);
}

static void test_bad_limit(void **state)
{
    (void)state;
    compute_pool *p = (compute_pool *)&p;
    char err[256];
    assert_int_equal(compute_pool_new(1, 0, "x", &p, err, sizeof err), COMPUTE_POOL_ERR_ARG);
    assert_null(p);
    compute_pool_free(NULL);
    compute_pool_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runs_off_the_polling_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_pool_answers_429, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_finishes_admitted_work, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_take_queued_tasks_of_one_key, setup,
                                        teardown),
        cmocka_unit_test(test_bad_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
