#include "server/compute_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "engine/util.h"
#include "server/http_util.h"

struct compute_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    compute_task *head, *tail; /* borrowed: each task is owned by its request */
    pthread_t *threads;        /* owned */
    unsigned n_threads;        /* started */
    int stopping;
    int joined;
    int in_flight;
    int limit;
    uint64_t rejected;
    const char *what;
    int max_batch;          /* 1: every task alone */
    int max_delay_us;       /* 0: a batch is what is queued already */
    int inline_running;     /* cheap tasks running where they arrived (inline_begin) */
    int queued;             /* tasks in the queue (in_flight less those running) */
    pthread_cond_t arrived; /* broadcast on admission, for threads filling a batch */
};

struct compute_batch {
    compute_pool *p;
    struct MHD_Connection *conns[COMPUTE_POOL_MAX_BATCH]; /* read before run_batch */
    unsigned char done[COMPUTE_POOL_MAX_BATCH];
};

void compute_batch_done(compute_batch *b, int i)
{
    if (!b || b->done[i])
        return;
    b->done[i] = 1;
    pthread_mutex_lock(&b->p->lock);
    b->p->in_flight--;
    pthread_mutex_unlock(&b->p->lock);
    /* After this the connection's thread may queue the answer and free the task. */
    MHD_resume_connection(b->conns[i]);
}

int compute_batch_is_done(const compute_batch *b, int i)
{
    return b && b->done[i];
}

/* Unlinks from the queue the tasks that may join batch[0]'s batch, in
 * order, until the batch holds p->max_batch, or its share of what is queued:
 * a thread's batch is one model call, but each request's parsing and answer
 * (JSON, PNG) are its own work, which the other threads should share rather
 * than wait while one thread writes every answer. Under the lock. */
static void take_compatible(compute_pool *p, compute_task **batch, int *n)
{
    int share = (*n + p->queued + (int)p->n_threads - 1) / (int)p->n_threads;
    int most = share < p->max_batch ? share : p->max_batch;
    compute_task *first = batch[0], *prev = NULL;
    for (compute_task *t = p->head; t && *n < most;) {
        compute_task *next = t->next;
        if (t->run_batch == first->run_batch && t->batch_key == first->batch_key) {
            if (prev)
                prev->next = next;
            else
                p->head = next;
            if (p->tail == t)
                p->tail = prev;
            batch[(*n)++] = t;
            p->queued--;
        } else {
            prev = t;
        }
        t = next;
    }
}

/* Waits (the lock held, released while waiting) until batch[0] was admitted
 * max_delay_us ago or the batch is full, taking what arrives meanwhile. */
static void fill_batch(compute_pool *p, compute_task **batch, int *n)
{
    double deadline = batch[0]->admitted + p->max_delay_us * 1e-6;
    /* p->arrived waits on the monotonic clock, as admitted was read. */
    struct timespec until = {(time_t)deadline, (long)((deadline - (double)(time_t)deadline) * 1e9)};
    while (*n < p->max_batch && !p->stopping) {
        if (deadline - util_mono_s() <= 0)
            break;
        int rc = pthread_cond_timedwait(&p->arrived, &p->lock, &until);
        take_compatible(p, batch, n);
        if (rc == ETIMEDOUT)
            break;
    }
    /* An arrival this thread did not take may be waiting for an idle one. */
    if (p->head)
        pthread_cond_signal(&p->wake);
}

static void *pool_main(void *arg)
{
    compute_pool *p = arg;
    compute_task *batch[COMPUTE_POOL_MAX_BATCH];
    compute_batch b = {.p = p};
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        compute_task *t = p->head;
        if (!t) { /* stopping and drained */
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        batch[0] = t;
        int n = 1;
        int batched = t->run_batch && t->batch_key && p->max_batch > 1;
        if (batched) {
            take_compatible(p, batch, &n);
            if (p->max_delay_us > 0)
                fill_batch(p, batch, &n);
        }
        pthread_mutex_unlock(&p->lock);

        if (batched) {
            /* The connections first: once a task is done, nothing in it is
             * ours to read. */
            for (int i = 0; i < n; i++) {
                b.conns[i] = batch[i]->conn;
                b.done[i] = 0;
            }
            t->run_batch(batch, n, &b);
            for (int i = 0; i < n; i++)
                compute_batch_done(&b, i);
            continue;
        }
        struct MHD_Connection *conn = t->conn;
        t->run(t);
        pthread_mutex_lock(&p->lock);
        p->in_flight--;
        pthread_mutex_unlock(&p->lock);
        /* After this the connection's thread may queue the answer and free t. */
        if (conn)
            MHD_resume_connection(conn);
    }
}

compute_pool_status compute_pool_new(unsigned threads, int limit, const char *what,
                                     compute_pool **out, char *err, size_t errlen)
{
    *out = NULL;
    if (limit < 1) {
        snprintf(err, errlen, "a compute pool admits at least one task (limit %d)", limit);
        return COMPUTE_POOL_ERR_ARG;
    }
    if (!threads) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > 0 ? (unsigned)cores : 1;
    }
    compute_pool *p = calloc(1, sizeof *p); /* owned by the caller: compute_pool_free */
    if (p)
        p->threads = calloc(threads, sizeof *p->threads);
    if (!p || !p->threads) {
        free(p);
        snprintf(err, errlen, "out of memory starting %u compute threads", threads);
        return COMPUTE_POOL_ERR_NOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->arrived, &ca);
    pthread_condattr_destroy(&ca);
    p->max_batch = 1;
    p->limit = limit;
    p->what = what;
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p)) {
            snprintf(err, errlen, "cannot start compute thread %u", i);
            compute_pool_free(p);
            return COMPUTE_POOL_ERR_THREAD;
        }
        p->n_threads++;
    }
    *out = p;
    return COMPUTE_POOL_OK;
}

void compute_pool_stop(compute_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    int joined = p->joined;
    p->stopping = 1;
    p->joined = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_cond_broadcast(&p->arrived);
    pthread_mutex_unlock(&p->lock);
    if (joined)
        return;
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
}

void compute_pool_free(compute_pool *p)
{
    if (!p)
        return;
    compute_pool_stop(p);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->arrived);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

/* Suspends t's connection and queues t; under the lock, the pool not
 * stopping. */
static void enqueue_locked(compute_pool *p, compute_task *t)
{
    p->in_flight++;
    /* Suspended before a compute thread can see t, so the resume always
     * follows the suspend. */
    if (t->conn)
        MHD_suspend_connection(t->conn);
    t->next = NULL;
    p->queued++;
    t->admitted = p->max_delay_us > 0 ? util_mono_s() : 0.0;
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->wake);
    if (p->max_delay_us > 0)
        pthread_cond_broadcast(&p->arrived);
}

enum MHD_Result compute_pool_admit(compute_pool *p, compute_task *t)
{
    pthread_mutex_lock(&p->lock);
    if (p->stopping) {
        pthread_mutex_unlock(&p->lock);
        return http_send_error(t->conn, HTTP_ERR_UNAVAILABLE, "the server is shutting down");
    }
    if (p->in_flight >= p->limit) {
        p->rejected++;
        int limit = p->limit;
        pthread_mutex_unlock(&p->lock);
        return http_send_error_with_header(t->conn, HTTP_ERR_TOO_MANY_REQUESTS,
                                           MHD_HTTP_HEADER_RETRY_AFTER, "1",
                                           "%d %s are already queued or running; retry shortly",
                                           limit, p->what);
    }
    enqueue_locked(p, t);
    pthread_mutex_unlock(&p->lock);
    return MHD_YES;
}

int compute_pool_continue(compute_pool *p, compute_task *t)
{
    pthread_mutex_lock(&p->lock);
    int stopping = p->stopping;
    if (!stopping)
        enqueue_locked(p, t);
    pthread_mutex_unlock(&p->lock);
    return stopping ? -1 : 0;
}

compute_pool_status compute_pool_set_batching(compute_pool *p, int max_batch,
                                              int max_queue_delay_us)
{
    if (max_batch < 1 || max_batch > COMPUTE_POOL_MAX_BATCH || max_queue_delay_us < 0 ||
        max_queue_delay_us > COMPUTE_POOL_MAX_DELAY_US)
        return COMPUTE_POOL_ERR_ARG;
    pthread_mutex_lock(&p->lock);
    p->max_batch = max_batch;
    p->max_delay_us = max_queue_delay_us;
    pthread_mutex_unlock(&p->lock);
    return COMPUTE_POOL_OK;
}

int compute_pool_inline_begin(compute_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int ok = p->max_batch <= 1 || (p->in_flight == 0 && p->inline_running == 0);
    if (ok)
        p->inline_running++;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

void compute_pool_inline_end(compute_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->inline_running--;
    pthread_mutex_unlock(&p->lock);
}

void compute_pool_get_stats(compute_pool *p, compute_pool_stats *out)
{
    pthread_mutex_lock(&p->lock);
    out->in_flight = p->in_flight;
    out->limit = p->limit;
    out->rejected = p->rejected;
    pthread_mutex_unlock(&p->lock);
}
