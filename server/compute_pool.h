/* compute_pool: threads that run a request's long work off libmicrohttpd's
 * polling threads, with a bounded queue in front of them.
 *
 *     typedef struct { compute_task task; ... } my_work;   // task first, or container_of
 *     static void my_run(compute_task *t) { my_work *w = (my_work *)t; ... build w's response ... }
 *
 *     // in the handler, first call:
 *     w->task.run = my_run;
 *     w->task.conn = c;
 *     return compute_pool_admit(ctx->compute, &w->task);  // suspended, or 429 / 503 queued
 *     // second call (after the resume): queue the response my_run built
 *
 * compute_pool_admit admits a task when fewer than limit tasks are queued or
 * running, suspends its connection and queues it; a compute thread takes it,
 * calls run, and resumes the connection, after which libmicrohttpd calls the
 * handler again. Past the limit the request is answered at once with 429
 * too_many_requests and Retry-After: 1, so a burst costs bounded memory and
 * what was admitted waits a bounded time; once the pool is stopping, with 503
 * unavailable. Whether a request is cheap enough to run where it arrived
 * (handing it over costs two context switches) is the caller's decision.
 *
 * Dynamic batching (Triton's semantics): a task with run_batch set and a
 * non-zero batch_key may be run together with other queued tasks of the same
 * run_batch and key. Once compute_pool_set_batching allows batches of more
 * than one, the compute thread that takes such a task also takes the
 * compatible tasks queued behind it, up to max_batch in all and no more
 * than its share (1 / threads) of what is queued, and calls
 * run_batch once on them (in their order of admission) instead of run on
 * each; with max_queue_delay_us it first waits, at most that long after the
 * oldest was admitted, for more to arrive. By default nothing waits: a batch
 * is what is already queued. A key only says "may share": run_batch decides
 * what it can really compute together. A connection resumes as soon as
 * run_batch marks its task done (compute_batch_done), the others when
 * run_batch returns.
 *
 * The task belongs to the caller (usually http_request.work) and must live
 * until the connection's request completes; the pool only borrows it between
 * admission and the resume. Stopping finishes every admitted task and
 * resumes its connection, which libmicrohttpd needs before MHD_stop_daemon.
 * All functions are thread-safe.
 */
#ifndef COMPUTE_POOL_H
#define COMPUTE_POOL_H

#include <stdint.h>

#include <microhttpd.h>

#include "server/http_request.h"

/* The inference pool's limit per thread. 32, not 4: 64 keep-alive clients on
 * 2 cores must not see 429 in normal use, and a cheap request (one /encode)
 * costs ~0.1 ms, so 32 queued ones are ~3 ms; 32 of the largest requests
 * (/sample, n = 1024) take about 0.3 s on one core. */
#define COMPUTE_POOL_QUEUE_PER_THREAD 32

typedef enum {
    COMPUTE_POOL_OK = 0,
    COMPUTE_POOL_ERR_ARG,    /* a limit below 1 */
    COMPUTE_POOL_ERR_NOMEM,
    COMPUTE_POOL_ERR_THREAD  /* a thread did not start */
} compute_pool_status;

/* Most tasks one batch takes; --max-batch is at most this. */
#define COMPUTE_POOL_MAX_BATCH 256
/* Longest wait for a batch to fill; --max-queue-delay-us is at most this. */
#define COMPUTE_POOL_MAX_DELAY_US 1000000

typedef struct compute_batch compute_batch; /* one run_batch call: the pool's */

typedef struct compute_task {
    void (*run)(struct compute_task *t); /* on a compute thread; builds the answer */
    struct MHD_Connection *conn;         /* suspended from admission until run returns;
                                          * NULL: none (compute_pool_continue only) */
    /* Batching (both set, or the task runs alone): tasks with the same
     * run_batch and batch_key may be given to one run_batch call. */
    void (*run_batch)(struct compute_task **tasks, int n, compute_batch *b);
    uint64_t batch_key;
    struct compute_task *next;           /* the pool's, while queued */
    double admitted;                     /* the pool's: CLOCK_MONOTONIC seconds */
} compute_task;

typedef struct {
    int in_flight;     /* admitted tasks, queued or running */
    int limit;
    uint64_t rejected; /* 429s */
} compute_pool_stats;

/* Starts threads threads (0: one per core) admitting at most limit tasks;
 * what names them in the 429 message ("inference requests"; a literal, kept).
 * COMPUTE_POOL_OK with *out (the caller's: compute_pool_stop, then
 * compute_pool_free), or a status with err. */
compute_pool_status compute_pool_new(unsigned threads, int limit, const char *what,
                                     compute_pool **out, char *err, size_t errlen);
/* Refuses new tasks (503), runs what was admitted, resumes its connections
 * and joins the threads. Idempotent; NULL is a no-op. */
void compute_pool_stop(compute_pool *p);
/* Stops if needed, then frees; NULL is a no-op. */
void compute_pool_free(compute_pool *p);
/* Admits t (t->run and t->conn set) and returns MHD_YES with the connection
 * suspended, or queues 429 / 503 on t->conn and returns what queueing did. */
enum MHD_Result compute_pool_admit(compute_pool *p, compute_task *t);
/* The next step of work admitted before, queued like compute_pool_admit
 * but past the limit too and with nothing queued on the connection: for a
 * response already under way (a download's next piece, from a content
 * reader that then returns 0), which a 429 cannot answer. 0 with the
 * connection suspended, or -1 once the pool is stopping (nothing
 * suspended: the caller ends the response). Each admitted request has at
 * most one such step queued at a time, so what waits stays bounded by the
 * connections. t->conn NULL: a step the connection does not wait for (a
 * prefetch): nothing is suspended or resumed; run does what it needs. */
int compute_pool_continue(compute_pool *p, compute_task *t);
void compute_pool_get_stats(compute_pool *p, compute_pool_stats *out);

/* From run_batch: tasks[i]'s answer is built; its connection is resumed
 * now rather than once the whole batch is done (whose other answers may
 * take a while to write), and tasks[i] must not be touched after. The pool
 * resumes the tasks run_batch did not mark done when it returns. Once per
 * task; b NULL (a task run alone, not by the pool): nothing. */
void compute_batch_done(compute_batch *b, int i);
int compute_batch_is_done(const compute_batch *b, int i);

/* Batches of at most max_batch tasks (1, the default: every task alone),
 * waiting at most max_queue_delay_us (default 0) for one to fill.
 * COMPUTE_POOL_ERR_ARG outside 1..COMPUTE_POOL_MAX_BATCH and
 * 0..COMPUTE_POOL_MAX_DELAY_US. Set before tasks are admitted. */
compute_pool_status compute_pool_set_batching(compute_pool *p, int max_batch,
                                              int max_queue_delay_us);
/* A cheap batchable task may run on the thread where it arrived only while
 * nothing else is queued, running or running inline: alone, a hand-over
 * would only add latency; among others it should join their batch.
 * compute_pool_inline_begin returns 1 (and counts the caller as running
 * inline until compute_pool_inline_end) when batching is off or the pool is
 * idle, else 0 and the caller admits the task. */
int compute_pool_inline_begin(compute_pool *p);
void compute_pool_inline_end(compute_pool *p);

#endif
