/* api_jobs: the jobs endpoints and their event streams. See api_jobs.h.
 *
 * Locks: api_jobs.mu guards the instance state (the list of suspended streams, the
 * stop flag, the training rates). It is taken before the registry's lock
 * (the watcher reads each waiting job's newest event under it) and never
 * inside the pool's lock: the pool calls on_event with no lock held. MHD's
 * resume is called outside api_jobs.mu, so MHD's own locks never nest in it.
 */
#include "server/api_jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cJSON.h>

#include "engine/util.h"
#include "server/compute_pool.h"
#include "server/http_util.h"
#include "server/jobs_pool.h"
#include "server/metrics.h"

/* At most this many events are formatted per read (the rest on the next). */
#define API_JOBS_EVENTS_PER_READ 64
/* Jobs whose training rate /metrics sums: one per worker (main.c caps at 64). */
#define API_JOBS_MAX_RATES 256

typedef struct sse_stream {
    struct sse_stream *next;     /* in api_jobs.waiting while suspended */
    int waiting;                 /* 1 while in api_jobs.waiting */
    struct api_jobs *owner;      /* borrowed: outlives every stream (api_jobs_stop ends them) */
    struct MHD_Connection *conn; /* borrowed: the connection this stream answers */
    int64_t job_id;
    int64_t last_seq;            /* the newest event sent */
    double last_write;           /* CLOCK_MONOTONIC seconds of the last bytes handed to MHD */
    double ends_at;              /* CLOCK_MONOTONIC seconds: --stream-max-s after it began */
    char *out;                   /* owned: formatted text not yet handed to MHD */
    size_t out_len, out_off, out_cap;
    int ending;                  /* a final state event is in out: end once it is sent */
} sse_stream;

typedef struct {
    int64_t job_id;
    double images_per_s;
} job_rate;

struct api_jobs {
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* an event was stored, a stream started waiting, or stop */
    jobs_pool *pool;            /* owned: api_jobs_free */
    registry *reg;             /* borrowed */
    int stopping;
    int watcher_started;
    pthread_t watcher;
    sse_stream *waiting;       /* suspended streams (each owned by its MHD response) */
    int n_streams;             /* open streams, at most max_streams */
    int max_streams;
    double stream_max_s;
    job_rate rates[API_JOBS_MAX_RATES];
    int n_rates;
    double retention_s;        /* finished jobs older than this go; 0 = kept for ever */
    double next_prune;         /* CLOCK_MONOTONIC seconds */
};

/* Deletes the finished jobs past --job-retention-days, at most once an hour
 * (the watcher calls it; without api_jobs.mu, which the registry's lock must
 * not nest in for long). */
static void prune_jobs(api_jobs *J, double now)
{
    if (!J->retention_s || now < J->next_prune)
        return;
    J->next_prune = now + 3600;
    int64_t deleted = 0;
    char err[256];
    if (jobs_pool_prune(J->pool, J->retention_s, &deleted, err, sizeof err))
        fprintf(stderr, "vaed: deleting old jobs: %s\n", err);
    else if (deleted)
        fprintf(stderr, "vaed: deleted %lld job(s) finished more than %g days ago\n",
                (long long)deleted, J->retention_s / 86400);
}

/* ---- pool events and /metrics ------------------------------------------ */

static void rate_set(api_jobs *J, int64_t id, double v)
{
    for (int i = 0; i < J->n_rates; i++)
        if (J->rates[i].job_id == id) {
            J->rates[i].images_per_s = v;
            return;
        }
    if (J->n_rates < API_JOBS_MAX_RATES)
        J->rates[J->n_rates++] = (job_rate){id, v};
}

static void rate_drop(api_jobs *J, int64_t id)
{
    for (int i = 0; i < J->n_rates; i++)
        if (J->rates[i].job_id == id) {
            J->rates[i] = J->rates[--J->n_rates];
            return;
        }
}

/* After each stored event: note the training rate and wake the watcher. */
static void on_pool_event(void *ctx, const jobs_event *e)
{
    api_jobs *J = ctx;
    pthread_mutex_lock(&J->mu);
    if (e->type == JOBS_EVENT_STATE && e->state != JOBS_STATE_RUNNING)
        rate_drop(J, e->job_id);
    else if (e->type != JOBS_EVENT_STATE && isfinite(e->images_per_s))
        rate_set(J, e->job_id, e->images_per_s);
    pthread_cond_broadcast(&J->cv);
    pthread_mutex_unlock(&J->mu);
}

static void metrics_jobs(void *arg, int64_t counts[METRICS_JOB_STATES])
{
    api_jobs *J = arg;
    int64_t by_state[JOBS_STATE_COUNT];
    if (!J->pool || jobs_pool_count_jobs(J->pool, by_state, NULL, 0) != JOBS_POOL_OK)
        return;
    for (int m = 0; m < METRICS_JOB_STATES; m++) {
        jobs_state s;
        if (!jobs_state_parse(metrics_job_state_names[m], &s))
            counts[m] += by_state[s];
    }
}

static double metrics_training_rate(void *arg)
{
    api_jobs *J = arg;
    double sum = 0;
    pthread_mutex_lock(&J->mu);
    for (int i = 0; i < J->n_rates; i++)
        sum += J->rates[i].images_per_s;
    pthread_mutex_unlock(&J->mu);
    return sum;
}

/* ---- the watcher --------------------------------------------------------- */

/* 1 when stream s should be resumed now: it has events to send, or it has
 * been quiet long enough for a keep-alive. Under api_jobs.mu. */
static int stream_due(api_jobs *J, const sse_stream *s, double now)
{
    if (now - s->last_write >= API_JOBS_KEEPALIVE_S - 0.01 || now >= s->ends_at)
        return 1;
    int64_t seq = 0;
    int rc = registry_get_job_last_seq(J->reg, s->job_id, &seq, NULL, NULL, 0);
    return rc != REGISTRY_OK || seq > s->last_seq;
}

/* Resumes the streams that are due (all when stopping), then sleeps until
 * the next keep-alive is due or an event arrives. */
static void *watcher_main(void *arg)
{
    api_jobs *J = arg;
    pthread_mutex_lock(&J->mu);
    for (;;) {
        int stopping = J->stopping;
        double now = util_mono_s(), next = now + API_JOBS_KEEPALIVE_S;
        struct MHD_Connection *resume[64];
        int n = 0;
        for (sse_stream **pp = &J->waiting; *pp && n < 64;) {
            sse_stream *s = *pp;
            if (stopping || stream_due(J, s, now)) {
                *pp = s->next;
                s->next = NULL;
                s->waiting = 0;
                resume[n++] = s->conn;
            } else {
                if (s->last_write + API_JOBS_KEEPALIVE_S < next)
                    next = s->last_write + API_JOBS_KEEPALIVE_S;
                if (s->ends_at < next)
                    next = s->ends_at;
                pp = &s->next;
            }
        }
        if (n) {
            /* A stream taken off the list stays suspended, so MHD keeps its
             * connection and response (and the stream) until resumed. */
            pthread_mutex_unlock(&J->mu);
            for (int i = 0; i < n; i++)
                MHD_resume_connection(resume[i]);
            pthread_mutex_lock(&J->mu);
            continue;
        }
        if (stopping)
            break;
        pthread_mutex_unlock(&J->mu);
        prune_jobs(J, now);
        pthread_mutex_lock(&J->mu);
        struct timespec ts;
        double whole = (double)(time_t)next;
        ts.tv_sec = (time_t)next;
        ts.tv_nsec = (long)((next - whole) * 1e9);
        if (ts.tv_nsec >= 1000000000L)
            ts.tv_nsec = 999999999L;
        pthread_cond_timedwait(&J->cv, &J->mu, &ts);
    }
    pthread_mutex_unlock(&J->mu);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------ */

int api_jobs_new(const server_options *o, registry *reg, api_jobs **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    api_jobs *J = calloc(1, sizeof *J); /* owned by the caller via *out: api_jobs_free */
    if (!J) {
        snprintf(err, errlen, "out of memory starting the training jobs");
        return SERVER_ERR_NOMEM;
    }
    pthread_mutex_init(&J->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&J->cv, &ca);
    pthread_condattr_destroy(&ca);
    J->reg = reg;
    J->max_streams = o->max_streams;
    J->stream_max_s = o->stream_max_s;
    J->retention_s = o->job_retention_days * 86400.0;
    jobs_pool_options po;
    jobs_pool_options_default(&po);
    po.data_dir = o->data_dir;
    po.workers = o->workers;
    po.job_mem_limit = o->job_mem_mb << 20;
    po.on_event = on_pool_event;
    po.on_event_ctx = J;
    po.confine_data = 1;
    po.max_queued = o->max_queued_jobs;
    po.mpi_hostfile = o->mpi_hostfile;
    char why[512];
    if (jobs_pool_new(reg, &po, &J->pool, why, sizeof why)) {
        snprintf(err, errlen, "cannot start the training jobs: %s", why);
        api_jobs_free(J);
        return SERVER_ERR_DB;
    }
    if (pthread_create(&J->watcher, NULL, watcher_main, J) != 0) {
        snprintf(err, errlen, "cannot start the event stream thread");
        api_jobs_free(J);
        return SERVER_ERR_NOMEM;
    }
    J->watcher_started = 1;
    metrics_set_jobs_hook(metrics_jobs, J);
    metrics_set_training_hook(metrics_training_rate, J);
    *out = J;
    return SERVER_OK;
}

void api_jobs_stop(api_jobs *J)
{
    if (!J)
        return;
    if (J->pool) {
        /* The running jobs' state events ("queued", interrupted) are still
         * stored and sent to their streams before those end. */
        jobs_pool_shutdown(J->pool, JOBS_POOL_STOP_CHECKPOINT);
    }
    pthread_mutex_lock(&J->mu);
    J->stopping = 1;
    pthread_cond_broadcast(&J->cv);
    pthread_mutex_unlock(&J->mu);
    if (J->watcher_started) {
        pthread_join(J->watcher, NULL);
        J->watcher_started = 0;
    }
}

void api_jobs_free(api_jobs *J)
{
    if (!J)
        return;
    metrics_set_jobs_hook(NULL, NULL);
    metrics_set_training_hook(NULL, NULL);
    api_jobs_stop(J);
    jobs_pool_free(J->pool);
    pthread_cond_destroy(&J->cv);
    pthread_mutex_destroy(&J->mu);
    free(J);
}

/* ---- jobs as JSON ---------------------------------------------------------- */

/* Adds key: the stored JSON text parsed (the pool's jobs_record wrote it), or
 * null ([] for empty_array) when there is none. */
static int add_json_text(cJSON *o, const char *key, const char *text, int empty_array)
{
    cJSON *v = text ? cJSON_Parse(text) : NULL; /* o owns it once added */
    if (!v)
        v = empty_array ? cJSON_CreateArray() : cJSON_CreateNull();
    if (v && cJSON_AddItemToObject(o, key, v))
        return 1;
    cJSON_Delete(v); /* cJSON keeps no item it could not add (its key's copy failed) */
    return 0;
}

static int add_text_or_null(cJSON *o, const char *key, const char *text)
{
    return text && *text ? cJSON_AddStringToObject(o, key, text) != NULL
                         : cJSON_AddNullToObject(o, key) != NULL;
}

/* A job: {"id", "state", "config", "progress" (null or {epoch, epochs, step,
 * steps, images_per_s, eta_s, loss}), "metrics" ([] or one object per epoch:
 * epoch, train_loss, train_recon, train_kl, test_loss, test_recon, test_kl
 * (null without a test set), images_per_s, seconds), "result" (null or
 * {model, version}), "error" (null or text), "created_at", "started_at",
 * "finished_at" (null until set)}. The caller owns it; NULL when out of memory. */
static cJSON *job_json(const jobs_pool *p, const registry_job *j)
{
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddNumberToObject(o, "id", (double)j->id) &&
             cJSON_AddStringToObject(o, "state", jobs_state_name(j->state)) &&
             add_json_text(o, "config", j->config_json, 0) &&
             add_json_text(o, "progress", j->progress_json, 0) &&
             add_json_text(o, "metrics", j->metrics_json, 1);
    if (ok && j->result_model[0]) {
        cJSON *r = cJSON_AddObjectToObject(o, "result");
        ok = r && cJSON_AddStringToObject(r, "model", j->result_model) &&
             cJSON_AddNumberToObject(r, "version", (double)j->result_version);
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "result") != NULL;
    }
    /* A data set named by path is stored resolved (absolute) to be run;
     * the client sees it as it named it, from inside the data root. */
    cJSON *data = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "config"),
                                                   "data");
    if (ok && cJSON_IsString(data)) {
        char shown[PATH_MAX];
        snprintf(shown, sizeof shown, "%s", data->valuestring);
        jobs_pool_hide_paths(p, shown);
        ok = cJSON_SetValuestring(data, shown) != NULL;
    }
    ok = ok && add_text_or_null(o, "error", j->error) &&
         add_text_or_null(o, "created_at", j->created_at) &&
         add_text_or_null(o, "started_at", j->started_at) &&
         add_text_or_null(o, "finished_at", j->finished_at);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* {"jobs": [job, ...]}; the caller owns it; NULL when out of memory. */
static cJSON *jobs_list_json(const jobs_pool *p, const registry_job *list, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *a = o ? cJSON_AddArrayToObject(o, "jobs") : NULL;
    int ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *j = job_json(p, &list[i]);
        ok = j && cJSON_AddItemToArray(a, j); /* a owns j once added */
        if (!ok)
            cJSON_Delete(j);
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* ---- helpers ------------------------------------------------------------- */

/* What a handler answers, sent once at its end (answer_send): a JSON body
 * with its status (and a Location header), or an error kind with its
 * message. Each step below returns 0, or -1 once it has made the answer an
 * error, so a handler is a chain of steps and one send. */
typedef struct {
    int failed;        /* 1: error and msg are the answer */
    http_error error;
    char msg[512];
    unsigned status;   /* else: status and body */
    cJSON *body;       /* owned until answer_send */
    char location[64]; /* "" = no Location */
} answer;

static int answer_fail(answer *a, http_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int answer_fail(answer *a, http_error e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->msg, sizeof a->msg, fmt, ap);
    va_end(ap);
    a->failed = 1;
    a->error = e;
    return -1;
}

static int answer_pool_fail(answer *a, jobs_pool_status status, const char *why)
{
    return answer_fail(a, http_error_from_jobs(status), "%s", why);
}

/* Takes body (NULL: out of memory) as the answer with status. */
static int answer_json(answer *a, unsigned status, cJSON *body)
{
    if (!body)
        return answer_fail(a, HTTP_ERR_UNAVAILABLE, "out of memory");
    a->status = status;
    a->body = body;
    return 0;
}

/* Queues the answer and frees its body. */
static enum MHD_Result answer_send(struct MHD_Connection *c, answer *a)
{
    if (a->failed && a->error == HTTP_ERR_TOO_MANY_REQUESTS)
        return http_send_error_with_header(c, a->error, "Retry-After", "60", "%s", a->msg);
    if (a->failed)
        return http_send_error(c, a->error, "%s", a->msg);
    char *text = cJSON_PrintUnformatted(a->body); /* owned: handed to the response */
    cJSON_Delete(a->body);
    a->body = NULL;
    if (!text)
        return http_send_error(c, HTTP_ERR_UNAVAILABLE, "out of memory");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") ==
            MHD_YES &&
        (!a->location[0] ||
         MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, a->location) == MHD_YES))
        ret = MHD_queue_response(c, a->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The pool into *p; 503 while the server is stopping. */
static int pool_of(const http_ctx *ctx, jobs_pool **p, answer *a)
{
    *p = ctx->jobs ? ctx->jobs->pool : NULL;
    return *p ? 0 : answer_fail(a, HTTP_ERR_UNAVAILABLE, "training jobs are not available");
}

/* The job id of the route's first "*": 1 ... 2^53, else 404. */
static int job_id_of(const http_request *req, int64_t *id, answer *a)
{
    const char *s = req->n_params > 0 ? req->params[0] : "";
    if (!http_parse_i64(s, id) && *id >= 1 && *id <= ((int64_t)1 << 53))
        return 0;
    char shown[32];
    size_t i = 0;
    for (; s[i] && i + 1 < sizeof shown; i++)
        shown[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' ? s[i] : '?';
    shown[i] = '\0';
    return answer_fail(a, HTTP_ERR_NOT_FOUND, "no job %s: job ids are numbers from 1", shown);
}

/* Job id as the answer (job_json) with status; *state (may be NULL) is its
 * state. */
static int answer_job(answer *a, jobs_pool *p, int64_t id, unsigned status, jobs_state *state)
{
    char err[512];
    registry_job job;
    jobs_pool_status rc = jobs_pool_get_job(p, id, &job, err, sizeof err);
    if (rc == JOBS_POOL_ERR_NOT_FOUND)
        return answer_fail(a, HTTP_ERR_NOT_FOUND, "no job %" PRId64, id);
    if (rc)
        return answer_pool_fail(a, rc, err);
    if (state)
        *state = job.state;
    int failed = answer_json(a, status, job_json(p, &job));
    registry_free_job(&job);
    return failed;
}

/* A body the pool may read: JSON by its Content-Type (else 415: a page of
 * another site can post a body without one, or as text/plain, but not as
 * application/json without the server's consent) and a JSON object (else
 * 400; a readable spec that does not fit is the pool's 422). */
static int json_object_body(http_ctx *ctx, struct MHD_Connection *c, const http_request *req,
                            answer *a)
{
    if (!http_body_type_accepted(c, "application/json", ctx->opts->token != NULL))
        return answer_fail(a, HTTP_ERR_UNSUPPORTED_MEDIA,
                           "a job is a JSON object: send Content-Type: application/json");
    cJSON *probe = req->body ? cJSON_ParseWithLengthOpts(req->body, req->body_len, NULL, 0)
                             : NULL; /* owned: freed below */
    int is_object = cJSON_IsObject(probe);
    cJSON_Delete(probe);
    if (!is_object)
        return answer_fail(a, HTTP_ERR_BAD_REQUEST,
                           "the body must be a JSON object, e.g. {\"model\": \"digits\", "
                           "\"data\": \"mnist\", \"epochs\": 10}");
    return 0;
}

/* ?state=S into *only (*has_state 0 when absent). */
static int state_query(struct MHD_Connection *c, jobs_state *only, int *has_state, answer *a)
{
    const char *state = NULL;
    char msg[160];
    if (http_query_str(c, "state", 16, &state, msg, sizeof msg))
        return answer_fail(a, HTTP_ERR_BAD_REQUEST, "%s", msg);
    *has_state = state != NULL;
    if (state && jobs_state_parse(state, only))
        return answer_fail(a, HTTP_ERR_BAD_REQUEST,
                           "state: one of queued, running, succeeded, failed, cancelled");
    return 0;
}

/* ---- handlers ------------------------------------------------------------ */

/* A submission or a cancel between its admission and its answer: the
 * spec's checks read the data set's header, and each writes the registry
 * (an fsync'd commit, which waits as long as another holds the file's
 * write lock), so they run on the registry's I/O pool with the connection
 * suspended, not here. What the request itself gets wrong is answered on
 * the polling thread before: no pool, not JSON, a bad id. */
typedef struct {
    compute_task task; /* first: the pool's view */
    jobs_pool *pool;
    const http_request *req; /* borrowed: the body lives as long as the request */
    int64_t id;              /* a cancel's job */
    answer a;
} job_work;

static void job_work_free(void *p)
{
    job_work *w = p;
    cJSON_Delete(w->a.body); /* an answer built and never sent (the client left) */
    free(w);
}

/* Hands run to the registry's I/O pool: req owns the work from here, and
 * the handler is called again, with req->work set, after the resume. */
static enum MHD_Result job_work_admit(http_ctx *ctx, struct MHD_Connection *c,
                                      http_request *req, jobs_pool *p, int64_t id,
                                      void (*run)(compute_task *t))
{
    job_work *w = calloc(1, sizeof *w); /* owned by req: freed by work_free */
    if (!w)
        return MHD_NO;
    w->task.run = run;
    w->task.conn = c;
    w->pool = p;
    w->req = req;
    w->id = id;
    req->work = w;
    req->work_free = job_work_free;
    return compute_pool_admit(ctx->registry_io, &w->task);
}

static void submit_run(compute_task *t)
{
    job_work *w = (job_work *)t;
    int64_t id = 0;
    char err[512];
    jobs_pool_status rc = jobs_pool_submit(w->pool, w->req->body, w->req->body_len, &id, err,
                                           sizeof err);
    if (rc)
        answer_pool_fail(&w->a, rc, err);
    else if (!answer_job(&w->a, w->pool, id, MHD_HTTP_ACCEPTED, NULL))
        snprintf(w->a.location, sizeof w->a.location, "/jobs/%" PRId64, id);
}

enum MHD_Result api_jobs_submit(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    job_work *w = req->work;
    if (w)
        return answer_send(c, &w->a);
    answer a = {0};
    jobs_pool *p;
    if (pool_of(ctx, &p, &a) || json_object_body(ctx, c, req, &a))
        return answer_send(c, &a);
    return job_work_admit(ctx, c, req, p, 0, submit_run);
}

/* ?limit= (1..API_JOBS_PAGE_MAX, default API_JOBS_PAGE_DEFAULT) and ?after=
 * (a job id; default 0, from the first). */
static int page_query(struct MHD_Connection *c, int64_t *limit, int64_t *after, answer *a)
{
    char msg[160];
    if (http_query_int(c, "limit", 1, API_JOBS_PAGE_MAX, API_JOBS_PAGE_DEFAULT, limit, msg,
                       sizeof msg) ||
        http_query_int(c, "after", 0, (int64_t)1 << 53, 0, after, msg, sizeof msg))
        return answer_fail(a, HTTP_ERR_BAD_REQUEST, "%s", msg);
    return 0;
}

enum MHD_Result api_jobs_list(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)req;
    answer a = {0};
    jobs_pool *p;
    jobs_state only;
    int has_state = 0;
    int64_t limit = 0, after = 0;
    if (!pool_of(ctx, &p, &a) && !state_query(c, &only, &has_state, &a) &&
        !page_query(c, &limit, &after, &a)) {
        char err[512];
        registry_job *list = NULL; /* owned: freed below */
        size_t n = 0;
        /* One more than the page says whether there is a next one. */
        jobs_pool_status rc = jobs_pool_list_jobs(p, has_state ? &only : NULL, after,
                                                  (int)limit + 1, &list, &n, err, sizeof err);
        size_t shown = n > (size_t)limit ? (size_t)limit : n;
        cJSON *root = rc ? NULL : jobs_list_json(p, list, shown);
        if (root && !(n > shown ? cJSON_AddNumberToObject(root, "next", (double)list[shown - 1].id)
                                : cJSON_AddNullToObject(root, "next"))) {
            cJSON_Delete(root);
            root = NULL;
        }
        if (rc)
            answer_pool_fail(&a, rc, err);
        else
            answer_json(&a, MHD_HTTP_OK, root);
        registry_free_jobs(list, n);
    }
    return answer_send(c, &a);
}

enum MHD_Result api_jobs_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    answer a = {0};
    jobs_pool *p;
    int64_t id;
    if (!pool_of(ctx, &p, &a) && !job_id_of(req, &id, &a))
        answer_job(&a, p, id, MHD_HTTP_OK, NULL);
    return answer_send(c, &a);
}

static void cancel_run(compute_task *t)
{
    job_work *w = (job_work *)t;
    char err[512];
    jobs_state state;
    jobs_pool_status rc = jobs_pool_cancel(w->pool, w->id, err, sizeof err);
    if (rc == JOBS_POOL_ERR_NOT_FOUND)
        answer_fail(&w->a, HTTP_ERR_NOT_FOUND, "no job %" PRId64, w->id);
    else if (rc)
        answer_pool_fail(&w->a, rc, err);
    else if (!answer_job(&w->a, w->pool, w->id, MHD_HTTP_OK, &state) &&
             state != JOBS_STATE_CANCELLED)
        w->a.status = MHD_HTTP_ACCEPTED; /* a running job stops at its next step */
}

enum MHD_Result api_jobs_cancel(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    job_work *w = req->work;
    if (w)
        return answer_send(c, &w->a);
    answer a = {0};
    jobs_pool *p;
    int64_t id;
    if (pool_of(ctx, &p, &a) || job_id_of(req, &id, &a))
        return answer_send(c, &a);
    return job_work_admit(ctx, c, req, p, id, cancel_run);
}

/* ---- the event stream ---------------------------------------------------- */

static int out_append(sse_stream *s, const char *text, size_t len)
{
    if (s->out_len + len + 1 > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : 4096;
        while (cap < s->out_len + len + 1)
            cap *= 2;
        char *grown = realloc(s->out, cap);
        if (!grown)
            return -1;
        s->out = grown;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, text, len);
    s->out_len += len;
    s->out[s->out_len] = '\0';
    return 0;
}

static int out_str(sse_stream *s, const char *text)
{
    return out_append(s, text, strlen(text));
}

/* One event in SSE framing. A data line cannot hold a newline: each line of
 * the data gets its own "data:" (stored JSON is printed unformatted, so there
 * is one). */
static int format_event(sse_stream *s, const registry_job_event *ev)
{
    char head[96];
    snprintf(head, sizeof head, "id: %" PRId64 "\nevent: %.15s\n", ev->seq,
             jobs_event_type_name(ev->type));
    if (out_str(s, head))
        return -1;
    const char *d = ev->data_json ? ev->data_json : "{}";
    for (;;) {
        size_t n = strcspn(d, "\r\n");
        if (out_str(s, "data: ") || out_append(s, d, n) || out_str(s, "\n"))
            return -1;
        d += n;
        if (!*d)
            break;
        d += (d[0] == '\r' && d[1] == '\n') ? 2 : 1;
    }
    return out_str(s, "\n");
}

/* Formats the events after s->last_seq: 1 when some were, 0 none, -1 on failure. */
static int stream_fill(sse_stream *s)
{
    api_jobs *J = s->owner;
    registry_job_event *ev = NULL; /* owned: freed below */
    size_t n = 0;
    char err[256];
    if (jobs_pool_events_after(J->pool, s->job_id, s->last_seq, API_JOBS_EVENTS_PER_READ, &ev,
                              &n, err, sizeof err))
        return -1;
    int rc = n ? 1 : 0;
    for (size_t i = 0; i < n && !s->ending; i++) {
        if (format_event(s, &ev[i])) {
            rc = -1;
            break;
        }
        s->last_seq = ev[i].seq;
        s->ending = ev[i].type == JOBS_EVENT_STATE && jobs_state_is_final(ev[i].state);
    }
    registry_free_job_events(ev, n);
    return rc;
}

/* MHD asks for more of the stream; never blocks. With nothing to send it
 * suspends the connection and returns 0 (the pattern MHD documents for a
 * reader with nothing ready); the watcher resumes it. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sse_stream *s = cls;
    api_jobs *J = s->owner;
    for (;;) {
        if (s->out_off < s->out_len) {
            size_t n = s->out_len - s->out_off < max ? s->out_len - s->out_off : max;
            memcpy(buf, s->out + s->out_off, n);
            s->out_off += n;
            if (s->out_off == s->out_len)
                s->out_off = s->out_len = 0;
            s->last_write = util_mono_s();
            return (ssize_t)n;
        }
        if (s->ending)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!J->pool)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (util_mono_s() >= s->ends_at) {
            /* Between two events: the client reconnects at once and
             * resumes after the last id it saw. */
            metrics_count_refusal(METRICS_LIMIT_STREAM_AGE);
            s->ending = 1;
            if (out_str(s, ": this stream has lasted --stream-max-s: reconnect with "
                           "Last-Event-ID\nretry: 500\n\n"))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        int rc = stream_fill(s);
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc > 0)
            continue;
        /* Nothing new. A job already final (its last event was sent before,
         * e.g. Last-Event-ID named it) ends the stream. */
        jobs_state state;
        int64_t seq = 0;
        if (registry_get_job_last_seq(J->reg, s->job_id, &seq, &state, NULL, 0) != REGISTRY_OK)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (jobs_state_is_final(state) && seq <= s->last_seq)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (util_mono_s() - s->last_write >= API_JOBS_KEEPALIVE_S - 0.01) {
            if (out_str(s, ": keep-alive\n\n"))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        pthread_mutex_lock(&J->mu);
        if (J->stopping) {
            pthread_mutex_unlock(&J->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        s->waiting = 1;
        s->next = J->waiting;
        J->waiting = s;
        MHD_suspend_connection(s->conn);
        pthread_cond_broadcast(&J->cv);
        pthread_mutex_unlock(&J->mu);
        return 0;
    }
}

/* The response is done (sent, or the client went away). */
static void stream_free(void *cls)
{
    sse_stream *s = cls;
    api_jobs *J = s->owner;
    pthread_mutex_lock(&J->mu);
    if (s->waiting) /* not expected: MHD keeps a suspended connection */
        for (sse_stream **pp = &J->waiting; *pp; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
    J->n_streams--;
    pthread_mutex_unlock(&J->mu);
    free(s->out);
    free(s);
}

/* Last-Event-ID (absent: 0) into *after. */
static int last_event_id(struct MHD_Connection *c, int64_t *after, answer *a)
{
    *after = 0;
    const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    if (last && *last && (http_parse_i64(last, after) || *after < 0))
        return answer_fail(a, HTTP_ERR_BAD_REQUEST,
                           "Last-Event-ID: the id of an event of this stream (a number)");
    return 0;
}

static int job_exists(const http_ctx *ctx, int64_t id, answer *a)
{
    int64_t seq = 0;
    char err[256];
    int rc = registry_get_job_last_seq(ctx->jobs->reg, id, &seq, NULL, err, sizeof err);
    if (rc == REGISTRY_ERR_NOT_FOUND)
        return answer_fail(a, HTTP_ERR_NOT_FOUND, "no job %" PRId64, id);
    if (rc)
        return answer_fail(a, HTTP_ERR_INTERNAL, "%s", err);
    return 0;
}

enum MHD_Result api_jobs_events(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    answer a = {0};
    jobs_pool *p;
    int64_t id, after;
    if (pool_of(ctx, &p, &a) || job_id_of(req, &id, &a) || last_event_id(c, &after, &a) ||
        job_exists(ctx, id, &a))
        return answer_send(c, &a);
    api_jobs *J = ctx->jobs;
    pthread_mutex_lock(&J->mu);
    int full = J->n_streams >= J->max_streams;
    if (!full)
        J->n_streams++; /* this one's slot, until stream_free (or the failures below) */
    pthread_mutex_unlock(&J->mu);
    if (full)
        return http_send_refusal(c, METRICS_LIMIT_STREAMS, HTTP_ERR_UNAVAILABLE, "5",
                                 "%d event streams are open, as many as the server keeps "
                                 "(--max-streams): retry shortly",
                                 J->max_streams);
    sse_stream *s = calloc(1, sizeof *s); /* owned: by the response (stream_free) once created */
    struct MHD_Response *resp =
        s ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free)
          : NULL;
    if (!resp) {
        free(s);
        pthread_mutex_lock(&J->mu);
        J->n_streams--;
        pthread_mutex_unlock(&J->mu);
        return s ? MHD_NO : http_send_error(c, HTTP_ERR_UNAVAILABLE, "out of memory");
    }
    s->owner = J;
    s->conn = c;
    s->job_id = id;
    s->last_seq = after;
    s->last_write = util_mono_s();
    s->ends_at = s->last_write + J->stream_max_s;
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") ==
            MHD_YES &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") == MHD_YES)
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}
