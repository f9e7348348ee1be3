/* metrics: request counters and latency histograms for GET /metrics, in the
 * Prometheus text exposition format (version 0.0.4).
 *
 *     metrics_observe("/sample", "POST", 200, 0.004);  // once per finished request
 *     metrics_gauges g = {.models_loaded = 1, .cache_bytes = n};
 *     char *text; size_t len;
 *     metrics_render(&g, &text, &len);                 // text owned by the caller, free()
 *
 * Routes are the route table's patterns ("/models/ * /versions/ *" with the
 * segments left as "*"), so the label set stays bounded whatever clients send;
 * methods outside the usual few count as "OTHER". Features that are not part
 * of this module report through hooks: the jobs feature calls
 * metrics_set_jobs_hook once at start, the trainer metrics_set_training_hook;
 * until they do, jobs by state and training images/s read 0.
 * All functions are thread-safe.
 */
#ifndef METRICS_H
#define METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { METRICS_OK = 0, METRICS_ERR_NOMEM } metrics_status;

/* The job states /metrics always lists (zeros when no hook is set). */
#define METRICS_JOB_STATES 5
extern const char *const metrics_job_state_names[METRICS_JOB_STATES]; /* queued running succeeded failed cancelled */

/* Fills counts[i] for metrics_job_state_names[i]. */
typedef void (*metrics_jobs_fn)(void *arg, int64_t counts[METRICS_JOB_STATES]);
/* Images per second of the training running now (0 when none). */
typedef double (*metrics_rate_fn)(void *arg);

void metrics_set_jobs_hook(metrics_jobs_fn fn, void *arg);
void metrics_set_training_hook(metrics_rate_fn fn, void *arg);

/* The bounds a request can run into; each refusal is counted by kind in
 * vaed_limit_refusals_total{limit="..."} (metrics_limit_names). */
typedef enum {
    METRICS_LIMIT_BODY_SIZE = 0,  /* 413: one body over --max-body-mb / --max-upload */
    METRICS_LIMIT_NO_BODY,        /* 413: a body sent to a route that takes none */
    METRICS_LIMIT_BODY_BUDGET,    /* 503: bodies held at once over --max-bodies-mb */
    METRICS_LIMIT_PER_IP,         /* connection refused: --max-per-ip */
    METRICS_LIMIT_CONNECTIONS,    /* connection refused: --max-connections open */
    METRICS_LIMIT_HOST,           /* 403: a Host that is not this machine's (no token) */
    METRICS_LIMIT_ORIGIN,         /* 403: a foreign Origin on a mutation (no token) */
    METRICS_LIMIT_STREAMS,        /* 503: --max-streams event streams open */
    METRICS_LIMIT_STREAM_AGE,     /* a stream ended at --stream-max-s (clients resume) */
    METRICS_LIMIT_REQUEST_MEMORY, /* 422: an inference over --request-mem-mb */
    METRICS_LIMIT_JSON_VALUES,    /* 413: more JSON values than the request can need */
    METRICS_LIMIT_PNG_SIZE,       /* 422: a PNG whose IHDR is not the model's size */
    METRICS_LIMIT_PNG_GRID,       /* 422: a PNG answer over 16384 pixels a side */
    METRICS_LIMIT_QUEUED_JOBS,    /* 429: --max-queued-jobs jobs wait already */
    METRICS_LIMIT_JOB_MEMORY,     /* 422: a job whose estimate is over --job-mem-mb */
    METRICS_LIMIT_MAX_N,          /* 400: n (images, latents, labels) over --max-n */
    METRICS_LIMIT_MAX_STEPS,      /* 400: steps over --max-steps */
    METRICS_LIMIT_JSON_DEPTH,     /* 400: a JSON body nested deeper than --max-json-depth */
    METRICS_LIMIT_SMALL_BODY,     /* 413: a job spec or alias body over --max-small-body-kb */
    METRICS_LIMIT_HEADER_SIZE,    /* 422: a checkpoint header over --max-header-mb */
    METRICS_LIMIT_HEADER_VALUES,  /* 422: a checkpoint header over --max-header-values */
    METRICS_LIMIT_QUERY,          /* 414: a query over --max-query-kb or --max-query-params */
    METRICS_LIMIT_ANSWER_BUDGET,  /* 503: answers held for slow clients over --max-answers-mb */
    METRICS_LIMIT_BODY_RATE,      /* closed: a body slower than --min-body-rate-kb after --timeout */
    METRICS_LIMIT_COUNT
} metrics_limit;
extern const char *const metrics_limit_names[METRICS_LIMIT_COUNT];
void metrics_count_refusal(metrics_limit limit);
uint64_t metrics_refusals(metrics_limit limit);

/* route must outlive the process (a route table string or a literal). */
void metrics_observe(const char *route, const char *method, unsigned status, double seconds);

/* One engine call of the inference endpoints (server/infer_batch): how many
 * requests' rows it stacked and how many rows that was. Histograms
 * vaed_infer_batch_requests and vaed_infer_batch_rows (buckets at powers of
 * two); a batch of more than one request is also counted in
 * vaed_infer_batches_shared_total. */
void metrics_observe_infer_batch(int requests, int rows);

typedef struct {
    int models_loaded;
    size_t cache_bytes;
    uint64_t model_loads;      /* checkpoints loaded into the model cache, ever */
    int compute_in_flight;     /* admitted inference requests, queued or running */
    int compute_limit;
    uint64_t compute_rejected; /* 429s */
    uint64_t response_cache_hits, response_cache_misses; /* GET /interpolate lookups */
    size_t response_cache_bytes;
    size_t answers_held_bytes; /* computed answers not yet sent (--max-answers-mb) */
} metrics_gauges;

metrics_status metrics_render(const metrics_gauges *g, char **out, size_t *out_len);
/* Forgets every counter (tests). */
void metrics_reset(void);

#endif
