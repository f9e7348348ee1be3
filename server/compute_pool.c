#include "server/compute_pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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
};

static void *pool_main(void *arg)
{
    compute_pool *p = arg;
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
        pthread_mutex_unlock(&p->lock);

        struct MHD_Connection *conn = t->conn;
        t->run(t);

        pthread_mutex_lock(&p->lock);
        p->in_flight--;
        pthread_mutex_unlock(&p->lock);
        /* After this the connection's thread may queue the answer and free t. */
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
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
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
    p->in_flight++;
    /* Suspended before a compute thread can see t, so the resume always
     * follows the suspend. */
    MHD_suspend_connection(t->conn);
    t->next = NULL;
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return MHD_YES;
}

void compute_pool_get_stats(compute_pool *p, compute_pool_stats *out)
{
    pthread_mutex_lock(&p->lock);
    out->in_flight = p->in_flight;
    out->limit = p->limit;
    out->rejected = p->rejected;
    pthread_mutex_unlock(&p->lock);
}
