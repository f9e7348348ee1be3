#include "server/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const metrics_job_state_names[METRICS_JOB_STATES] = {"queued", "running", "succeeded",
                                                                 "failed", "cancelled"};

/* Upper bounds in seconds; +Inf is implied. */
static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1,    0.25,  0.5,    1.0,   2.5,   5.0,   10.0};
#define N_BUCKETS (sizeof bucket_le / sizeof bucket_le[0])
/* Routes x methods x statuses stay small; past this, new series are dropped
 * (and counted) rather than grown without bound. */
#define MAX_SERIES 512
#define MAX_ROUTES 64

typedef struct {
    const char *route;
    const char *method;
    unsigned status;
    uint64_t count;
} request_series;

typedef struct {
    const char *route;
    uint64_t buckets[N_BUCKETS]; /* not cumulative; summed when rendered */
    uint64_t count;
    double sum;
} latency_series;

const char *const metrics_limit_names[METRICS_LIMIT_COUNT] = {
    [METRICS_LIMIT_BODY_SIZE] = "body_size",
    [METRICS_LIMIT_NO_BODY] = "no_body",
    [METRICS_LIMIT_BODY_BUDGET] = "bodies_held",
    [METRICS_LIMIT_PER_IP] = "per_ip_connections",
    [METRICS_LIMIT_CONNECTIONS] = "connections",
    [METRICS_LIMIT_HOST] = "host",
    [METRICS_LIMIT_ORIGIN] = "origin",
    [METRICS_LIMIT_STREAMS] = "event_streams",
    [METRICS_LIMIT_STREAM_AGE] = "stream_age",
    [METRICS_LIMIT_REQUEST_MEMORY] = "request_memory",
    [METRICS_LIMIT_JSON_VALUES] = "json_values",
    [METRICS_LIMIT_PNG_SIZE] = "png_size",
    [METRICS_LIMIT_PNG_GRID] = "png_grid",
    [METRICS_LIMIT_QUEUED_JOBS] = "queued_jobs",
    [METRICS_LIMIT_JOB_MEMORY] = "job_memory",
    [METRICS_LIMIT_MAX_N] = "max_n",
    [METRICS_LIMIT_MAX_STEPS] = "max_steps",
    [METRICS_LIMIT_JSON_DEPTH] = "json_depth",
    [METRICS_LIMIT_SMALL_BODY] = "small_body",
    [METRICS_LIMIT_HEADER_SIZE] = "header_size",
    [METRICS_LIMIT_HEADER_VALUES] = "header_values",
    [METRICS_LIMIT_QUERY] = "query",
    [METRICS_LIMIT_ANSWER_BUDGET] = "answers_held",
    [METRICS_LIMIT_BODY_RATE] = "body_rate",
};
/* Atomics: a refusal often happens where no lock should be taken. */
static uint64_t refusals[METRICS_LIMIT_COUNT];

void metrics_count_refusal(metrics_limit limit)
{
    if ((unsigned)limit < METRICS_LIMIT_COUNT)
        __atomic_add_fetch(&refusals[limit], 1, __ATOMIC_RELAXED);
}

uint64_t metrics_refusals(metrics_limit limit)
{
    return (unsigned)limit < METRICS_LIMIT_COUNT
               ? __atomic_load_n(&refusals[limit], __ATOMIC_RELAXED)
               : 0;
}

/* Engine calls by requests and rows stacked: bucket b counts the calls of
 * at most 2^b (cumulated when rendered), the last one the rest. Atomics:
 * each engine call adds to them, and a lock there would be one more place
 * for the compute threads to meet. */
#define BATCH_BUCKETS 12 /* le 1, 2, 4 ... 1024, 2048 */
typedef struct {
    uint64_t buckets[BATCH_BUCKETS + 1]; /* the last: over 2^(BATCH_BUCKETS-1) */
    uint64_t count, sum;
} batch_histogram;
static batch_histogram batch_requests, batch_rows;
static uint64_t batches_shared;

static void batch_add(batch_histogram *h, int v)
{
    int b = 0;
    while (b < BATCH_BUCKETS && v > (1 << b))
        b++;
    __atomic_add_fetch(&h->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->count, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&h->sum, (uint64_t)(v > 0 ? v : 0), __ATOMIC_RELAXED);
}

void metrics_observe_infer_batch(int requests, int rows)
{
    batch_add(&batch_requests, requests);
    batch_add(&batch_rows, rows);
    if (requests > 1)
        __atomic_add_fetch(&batches_shared, 1, __ATOMIC_RELAXED);
}

static void batch_render(FILE *f, const char *name, const char *help, batch_histogram *h)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int b = 0; b < BATCH_BUCKETS; b++) {
        cumulative += __atomic_load_n(&h->buckets[b], __ATOMIC_RELAXED);
        fprintf(f, "%s_bucket{le=\"%d\"} %llu\n", name, 1 << b, (unsigned long long)cumulative);
    }
    cumulative += __atomic_load_n(&h->buckets[BATCH_BUCKETS], __ATOMIC_RELAXED);
    fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %llu\n%s_count %llu\n", name,
            (unsigned long long)cumulative, name,
            (unsigned long long)__atomic_load_n(&h->sum, __ATOMIC_RELAXED), name,
            (unsigned long long)cumulative);
}

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static request_series requests[MAX_SERIES];
static int n_requests;
static latency_series latencies[MAX_ROUTES];
static int n_latencies;
static uint64_t dropped;
static metrics_jobs_fn jobs_fn;
static void *jobs_arg;
static metrics_rate_fn training_fn;
static void *training_arg;

void metrics_set_jobs_hook(metrics_jobs_fn fn, void *arg)
{
    pthread_mutex_lock(&metrics_lock);
    jobs_fn = fn;
    jobs_arg = arg;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_set_training_hook(metrics_rate_fn fn, void *arg)
{
    pthread_mutex_lock(&metrics_lock);
    training_fn = fn;
    training_arg = arg;
    pthread_mutex_unlock(&metrics_lock);
}

static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; method && i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(method, known[i]))
            return known[i];
    return "OTHER";
}

void metrics_observe(const char *route, const char *method, unsigned status, double seconds)
{
    if (!route)
        route = "unmatched";
    const char *m = method_label(method);
    if (seconds < 0)
        seconds = 0;
    pthread_mutex_lock(&metrics_lock);
    int i;
    for (i = 0; i < n_requests; i++)
        if (requests[i].route == route && requests[i].method == m && requests[i].status == status)
            break;
    if (i == n_requests && n_requests < MAX_SERIES)
        requests[n_requests++] = (request_series){route, m, status, 0};
    if (i < n_requests)
        requests[i].count++;
    else
        dropped++;
    for (i = 0; i < n_latencies; i++)
        if (latencies[i].route == route)
            break;
    if (i == n_latencies && n_latencies < MAX_ROUTES) {
        memset(&latencies[i], 0, sizeof latencies[i]);
        latencies[n_latencies++].route = route;
    }
    if (i < n_latencies) {
        latency_series *l = &latencies[i];
        size_t b = 0;
        while (b < N_BUCKETS && seconds > bucket_le[b])
            b++;
        if (b < N_BUCKETS)
            l->buckets[b]++;
        l->count++;
        l->sum += seconds;
    }
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_reset(void)
{
    pthread_mutex_lock(&metrics_lock);
    n_requests = n_latencies = 0;
    dropped = 0;
    for (int i = 0; i < METRICS_LIMIT_COUNT; i++)
        __atomic_store_n(&refusals[i], 0, __ATOMIC_RELAXED);
    memset(&batch_requests, 0, sizeof batch_requests);
    memset(&batch_rows, 0, sizeof batch_rows);
    __atomic_store_n(&batches_shared, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&metrics_lock);
}

metrics_status metrics_render(const metrics_gauges *g, char **out, size_t *out_len)
{
    char *text = NULL; /* owned: handed to the caller */
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return METRICS_ERR_NOMEM;

    /* Hooks are called outside the lock: they take their own. */
    pthread_mutex_lock(&metrics_lock);
    metrics_jobs_fn jf = jobs_fn;
    void *ja = jobs_arg;
    metrics_rate_fn tf = training_fn;
    void *ta = training_arg;
    pthread_mutex_unlock(&metrics_lock);
    int64_t jobs[METRICS_JOB_STATES] = {0};
    if (jf)
        jf(ja, jobs);
    double images_per_s = tf ? tf(ta) : 0.0;

    pthread_mutex_lock(&metrics_lock);
    fputs("# HELP vaed_http_requests_total HTTP requests answered, by route pattern, method and "
          "status.\n# TYPE vaed_http_requests_total counter\n",
          f);
    for (int i = 0; i < n_requests; i++)
        fprintf(f, "vaed_http_requests_total{route=\"%s\",method=\"%s\",status=\"%u\"} %llu\n",
                requests[i].route, requests[i].method, requests[i].status,
                (unsigned long long)requests[i].count);
    fputs("# HELP vaed_http_request_duration_seconds Time from the request line to the last "
          "byte queued, by route pattern.\n# TYPE vaed_http_request_duration_seconds histogram\n",
          f);
    for (int i = 0; i < n_latencies; i++) {
        const latency_series *l = &latencies[i];
        uint64_t cumulative = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cumulative += l->buckets[b];
            fprintf(f, "vaed_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                    l->route, bucket_le[b], (unsigned long long)cumulative);
        }
        fprintf(f, "vaed_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                l->route, (unsigned long long)l->count);
        fprintf(f, "vaed_http_request_duration_seconds_sum{route=\"%s\"} %.9g\n", l->route, l->sum);
        fprintf(f, "vaed_http_request_duration_seconds_count{route=\"%s\"} %llu\n", l->route,
                (unsigned long long)l->count);
    }
    fprintf(f, "# HELP vaed_metrics_series_dropped_total Observations not counted because the "
               "series table was full.\n# TYPE vaed_metrics_series_dropped_total counter\n"
               "vaed_metrics_series_dropped_total %llu\n",
            (unsigned long long)dropped);
    pthread_mutex_unlock(&metrics_lock);

    fprintf(f, "# HELP vaed_models_loaded Checkpoints held in the model cache.\n"
               "# TYPE vaed_models_loaded gauge\nvaed_models_loaded %d\n",
            g ? g->models_loaded : 0);
    fprintf(f, "# HELP vaed_model_cache_bytes Bytes of parameters in the model cache.\n"
               "# TYPE vaed_model_cache_bytes gauge\nvaed_model_cache_bytes %zu\n",
            g ? g->cache_bytes : 0);
    fprintf(f, "# HELP vaed_model_loads_total Checkpoints loaded into the model cache (once "
               "however many requests waited for the load).\n"
               "# TYPE vaed_model_loads_total counter\nvaed_model_loads_total %llu\n",
            (unsigned long long)(g ? g->model_loads : 0));
    fprintf(f, "# HELP vaed_response_cache_hits_total GET /interpolate answers served from the "
               "response cache.\n# TYPE vaed_response_cache_hits_total counter\n"
               "vaed_response_cache_hits_total %llu\n"
               "# HELP vaed_response_cache_misses_total GET /interpolate lookups that had to "
               "compute the answer.\n# TYPE vaed_response_cache_misses_total counter\n"
               "vaed_response_cache_misses_total %llu\n"
               "# HELP vaed_response_cache_bytes Bytes the response cache holds (bodies, keys and "
               "bookkeeping).\n# TYPE vaed_response_cache_bytes gauge\n"
               "vaed_response_cache_bytes %zu\n",
            (unsigned long long)(g ? g->response_cache_hits : 0),
            (unsigned long long)(g ? g->response_cache_misses : 0),
            g ? g->response_cache_bytes : 0);
    fprintf(f, "# HELP vaed_answers_held_bytes Bytes of computed answers not yet sent to their "
               "clients (bounded by --max-answers-mb).\n# TYPE vaed_answers_held_bytes gauge\n"
               "vaed_answers_held_bytes %zu\n",
            g ? g->answers_held_bytes : 0);
    fprintf(f, "# HELP vaed_inference_in_flight Inference requests admitted (queued or running).\n"
               "# TYPE vaed_inference_in_flight gauge\nvaed_inference_in_flight %d\n"
               "# HELP vaed_inference_limit Admission limit; past it requests get 429.\n"
               "# TYPE vaed_inference_limit gauge\nvaed_inference_limit %d\n"
               "# HELP vaed_inference_rejected_total Inference requests refused with 429.\n"
               "# TYPE vaed_inference_rejected_total counter\nvaed_inference_rejected_total %llu\n",
            g ? g->compute_in_flight : 0, g ? g->compute_limit : 0,
            (unsigned long long)(g ? g->compute_rejected : 0));
    batch_render(f, "vaed_infer_batch_requests",
                 "Inference engine calls (/encode, /decode, /sample, /interpolate) by the "
                 "number of requests whose rows they stacked (--max-batch).",
                 &batch_requests);
    batch_render(f, "vaed_infer_batch_rows", "Inference engine calls by rows (images or latents).",
                 &batch_rows);
    fprintf(f, "# HELP vaed_infer_batches_shared_total Inference engine calls that served more "
               "than one request.\n# TYPE vaed_infer_batches_shared_total counter\n"
               "vaed_infer_batches_shared_total %llu\n",
            (unsigned long long)__atomic_load_n(&batches_shared, __ATOMIC_RELAXED));
    fputs("# HELP vaed_limit_refusals_total Requests and connections refused (or streams "
          "ended) by a bound, by bound.\n# TYPE vaed_limit_refusals_total counter\n",
          f);
    for (int i = 0; i < METRICS_LIMIT_COUNT; i++)
        fprintf(f, "vaed_limit_refusals_total{limit=\"%s\"} %llu\n", metrics_limit_names[i],
                (unsigned long long)metrics_refusals((metrics_limit)i));
    fputs("# HELP vaed_jobs Training jobs by state.\n# TYPE vaed_jobs gauge\n", f);
    for (int i = 0; i < METRICS_JOB_STATES; i++)
        fprintf(f, "vaed_jobs{state=\"%s\"} %lld\n", metrics_job_state_names[i],
                (long long)jobs[i]);
    fprintf(f, "# HELP vaed_training_images_per_second Training throughput of running jobs.\n"
               "# TYPE vaed_training_images_per_second gauge\n"
               "vaed_training_images_per_second %.6g\n",
            images_per_s);
    int bad = ferror(f);
    if (fclose(f) || bad || !text) {
        free(text);
        return METRICS_ERR_NOMEM;
    }
    *out = text;
    *out_len = len;
    return METRICS_OK;
}
