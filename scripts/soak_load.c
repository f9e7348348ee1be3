/* soak_load: the load of scripts/soak.sh — a mix over every endpoint of a
 * running vaed on 127.0.0.1, from C connections at once, for S seconds.
 *
 *     soak_load setup DATA_DIR VAED_DATA      registers "digits" (28x28) in
 *                                              DATA_DIR and writes a small
 *                                              mnist under VAED_DATA
 *     soak_load run PORT SECONDS CONNECTIONS  the load; prints what it did
 *     soak_load check DATA_DIR/registry.db    registry_check of the file
 *
 * Each connection loops: pick an operation by weight, send it, compare the
 * status with the ones that operation may answer. Uploads are of a small
 * model "soak" (16 pixels, a few KB each, so hours of them stay small),
 * which alias moves and version deletes work on; jobs train a few epochs on
 * the small mnist and some are cancelled; event streams are read to the
 * end (a job's stream ends with it). An answer outside an operation's set
 * is counted and printed (the first 20). Load shedding is allowed where the
 * daemon sheds, and counted apart: 429 for model math (the compute queue
 * full) and job submissions (--max-queued-jobs), 503 for event streams
 * (--max-streams open). Exit 1 when any answer was
 * unexpected. Bounded: it stops after SECONDS, talks to 127.0.0.1 only.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/rng.h"
#include "tests/lib/harness.h"
#include "tests/lib/registry_check.h"

static const char *const json_headers[] = {"Content-Type: application/json", NULL};
static const char *const octet_headers[] = {"Content-Type: application/octet-stream", NULL};

typedef enum {
    OP_HEALTH, OP_METRICS, OP_MODELS, OP_VERSION, OP_FILE, OP_SAMPLE, OP_ENCODE, OP_DECODE,
    OP_INTERP_GET, OP_INTERP_POST, OP_UPLOAD, OP_ALIAS_PUT, OP_ALIAS_DEL, OP_VERSION_DEL,
    OP_JOB_SUBMIT, OP_JOB_CANCEL, OP_JOB_GET, OP_JOB_EVENTS, OP_COUNT
} op;

static const struct {
    const char *name;
    int weight;
    int ok[6]; /* statuses it may answer; 0 ends the list */
} ops[OP_COUNT] = {
    [OP_HEALTH] = {"healthz/readyz", 6, {200}},
    [OP_METRICS] = {"metrics", 2, {200}},
    [OP_MODELS] = {"models", 4, {200}},
    [OP_VERSION] = {"version", 4, {200, 404}},
    [OP_FILE] = {"version file", 2, {200, 304, 404}},
    [OP_SAMPLE] = {"sample", 10, {200, 429}},
    [OP_ENCODE] = {"encode", 8, {200, 429}},
    [OP_DECODE] = {"decode", 8, {200, 429}},
    [OP_INTERP_GET] = {"interpolate GET", 8, {200, 304, 429}},
    [OP_INTERP_POST] = {"interpolate POST", 4, {200, 429}},
    [OP_UPLOAD] = {"upload", 6, {201, 200}},
    [OP_ALIAS_PUT] = {"alias put", 3, {200, 204, 404}},
    [OP_ALIAS_DEL] = {"alias delete", 1, {204, 404}},
    [OP_VERSION_DEL] = {"version delete", 2, {204, 404, 409}},
    [OP_JOB_SUBMIT] = {"job submit", 1, {202, 429}},
    [OP_JOB_CANCEL] = {"job cancel", 1, {200, 202, 404, 409}},
    [OP_JOB_GET] = {"job get", 3, {200, 404}},
    [OP_JOB_EVENTS] = {"job events", 1, {200, 404, 503}},
};

static int port;
static double deadline;
static atomic_long counts[OP_COUNT], unexpected[OP_COUNT], throttled[OP_COUNT];
static atomic_long uploads_made;  /* a counter for distinct upload bytes */
static atomic_long jobs_made;     /* ids are 1, 2, ...: the highest submitted */
static atomic_long unexpected_total;
static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static char encode_body[8192];

static int is_ok(op o, int status)
{
    for (int i = 0; i < 6 && ops[o].ok[i]; i++)
        if (ops[o].ok[i] == status)
            return 1;
    return 0;
}

static void tiny_config(vae_config *cfg)
{
    vae_config_default(cfg);
    cfg->channels = 1;
    cfg->height = cfg->width = 4;
    cfg->n_hidden = 1;
    cfg->hidden[0] = 4;
    cfg->latent = 2;
}

/* Sends o; returns the status (0 when the connection failed). */
static int run_op(op o, rng_state *rng)
{
    char path[256], body[256];
    harness_response r;
    int rc = -1;
    int64_t v = 1 + (int64_t)rng_below(rng, (uint64_t)atomic_load(&uploads_made) + 1);
    int64_t job = 1 + (int64_t)rng_below(rng, (uint64_t)atomic_load(&jobs_made) + 1);
    switch (o) {
    case OP_HEALTH:
        rc = harness_request(port, "GET", rng_below(rng, 2) ? "/healthz" : "/readyz", NULL, NULL,
                             0, &r);
        break;
    case OP_METRICS:
        rc = harness_request(port, "GET", "/metrics", NULL, NULL, 0, &r);
        break;
    case OP_MODELS:
        rc = harness_request(port, "GET", rng_below(rng, 2) ? "/models" : "/models/digits", NULL,
                             NULL, 0, &r);
        break;
    case OP_VERSION:
        snprintf(path, sizeof path, "/models/soak/versions/%" PRId64, v);
        rc = harness_request(port, "GET", path, NULL, NULL, 0, &r);
        break;
    case OP_FILE:
        snprintf(path, sizeof path, "/models/soak/versions/%" PRId64 "/file", v);
        rc = harness_request(port, "GET", path, NULL, NULL, 0, &r);
        break;
    case OP_SAMPLE: {
        static const char *const formats[] = {"png", "json", "npy"};
        snprintf(path, sizeof path, "/sample?model=digits&n=%d&seed=%d&format=%s",
                 1 + (int)rng_below(rng, 16), (int)rng_below(rng, 1000),
                 formats[rng_below(rng, 3)]);
        rc = harness_request(port, "POST", path, NULL, NULL, 0, &r);
        break;
    }
    case OP_ENCODE:
        rc = harness_request(port, "POST", "/encode?model=digits", json_headers, encode_body,
                             strlen(encode_body), &r);
        break;
    case OP_DECODE:
        snprintf(body, sizeof body, "{\"z\": [[%.3f, -0.5, 0.25, 1]]}",
                 (double)rng_uniform(rng) * 4 - 2);
        rc = harness_request(port, "POST", "/decode?model=digits&format=json", json_headers, body,
                             strlen(body), &r);
        break;
    case OP_INTERP_GET:
        snprintf(path, sizeof path,
                 "/interpolate?model=digits&from=mnist:test:%d&to=mnist:test:%d&steps=%d",
                 (int)rng_below(rng, 16), (int)rng_below(rng, 16), 2 + (int)rng_below(rng, 8));
        rc = harness_request(port, "GET", path, NULL, NULL, 0, &r);
        break;
    case OP_INTERP_POST:
        snprintf(body, sizeof body,
                 "{\"from\": {\"z\": [0, 0, 0, 0]}, \"to\": {\"z\": [1, %.2f, -1, 0]}, "
                 "\"steps\": 5, \"mode\": \"slerp\"}",
                 (double)rng_uniform(rng));
        rc = harness_request(port, "POST", "/interpolate?model=digits&format=json", json_headers,
                             body, strlen(body), &r);
        break;
    case OP_UPLOAD: {
        vae_config cfg;
        tiny_config(&cfg);
        uint8_t *b; /* owned: freed below */
        size_t len;
        char err[256];
        long k = atomic_fetch_add(&uploads_made, 1);
        if (harness_model_bytes(&cfg, (uint64_t)k + 1, &b, &len, err, sizeof err))
            return 0;
        rc = harness_request(port, "POST", "/models/soak/checkpoints", octet_headers, b, len, &r);
        free(b);
        break;
    }
    case OP_ALIAS_PUT:
        snprintf(body, sizeof body, "{\"version\": %" PRId64 "}", v);
        rc = harness_request(port, "PUT", "/models/soak/aliases/prod", json_headers, body,
                             strlen(body), &r);
        break;
    case OP_ALIAS_DEL:
        rc = harness_request(port, "DELETE", "/models/soak/aliases/prod", NULL, NULL, 0, &r);
        break;
    case OP_VERSION_DEL:
        snprintf(path, sizeof path, "/models/soak/versions/%" PRId64, v);
        rc = harness_request(port, "DELETE", path, NULL, NULL, 0, &r);
        break;
    case OP_JOB_SUBMIT:
        snprintf(body, sizeof body,
                 "{\"model\": \"soakjob\", \"data\": \"mnist\", \"hidden\": [16], \"latent\": 2,"
                 " \"epochs\": %d, \"batch\": 32, \"seed\": %d}",
                 1 + (int)rng_below(rng, 3), (int)rng_below(rng, 1000000));
        rc = harness_request(port, "POST", "/jobs", json_headers, body, strlen(body), &r);
        if (!rc && r.status == 202)
            atomic_fetch_add(&jobs_made, 1);
        break;
    case OP_JOB_CANCEL:
        snprintf(path, sizeof path, "/jobs/%" PRId64 "/cancel", job);
        rc = harness_request(port, "POST", path, NULL, NULL, 0, &r);
        break;
    case OP_JOB_GET:
        rc = harness_request(port, "GET", rng_below(rng, 2) ? "/jobs" : "/jobs?state=running",
                             NULL, NULL, 0, &r);
        break;
    case OP_JOB_EVENTS:
        snprintf(path, sizeof path, "/jobs/%" PRId64 "/events", job);
        rc = harness_request(port, "GET", path, NULL, NULL, 0, &r);
        break;
    case OP_COUNT:
        return 0;
    }
    int status = rc ? 0 : r.status;
    if (!is_ok(o, status)) {
        long n = atomic_fetch_add(&unexpected_total, 1);
        atomic_fetch_add(&unexpected[o], 1);
        if (n < 20) {
            pthread_mutex_lock(&print_lock);
            fprintf(stderr, "soak: %s answered %d (rc %d): %.300s\n", ops[o].name, status, rc,
                    r.body ? (const char *)r.body : "");
            pthread_mutex_unlock(&print_lock);
        }
    } else if (status == 429 || status == 503) { /* shed: queue or --max-streams full */
        atomic_fetch_add(&throttled[o], 1);
    }
    atomic_fetch_add(&counts[o], 1);
    harness_response_free(&r);
    return status;
}

static void *connection(void *arg)
{
    rng_state rng;
    rng_seed(&rng, (uint64_t)(uintptr_t)arg * 7919 + 1);
    int total = 0;
    for (int o = 0; o < OP_COUNT; o++)
        total += ops[o].weight;
    while (harness_now_s() < deadline) {
        int pick = (int)rng_below(&rng, (uint64_t)total), o = 0;
        while (pick >= ops[o].weight)
            pick -= ops[o++].weight;
        run_op((op)o, &rng);
    }
    return NULL;
}

static int cmd_setup(const char *data_dir, const char *vaed_data)
{
    char err[256], mnist[HARNESS_PATH_MAX];
    snprintf(mnist, sizeof mnist, "%s/mnist", vaed_data);
    if (harness_write_idx_set(mnist, 256, 64))
        return 1;
    if (harness_put_model(data_dir, "digits", NULL, 1, NULL, err, sizeof err)) {
        fprintf(stderr, "soak: %s\n", err);
        return 1;
    }
    return 0;
}

static int cmd_run(int connections, double seconds)
{
    size_t n = (size_t)snprintf(encode_body, sizeof encode_body, "{\"x\": [[");
    for (int i = 0; i < 784; i++)
        n += (size_t)snprintf(encode_body + n, sizeof encode_body - n, i ? ",%.2f" : "%.2f",
                              (double)(i % 7) / 7.0);
    snprintf(encode_body + n, sizeof encode_body - n, "]]}");
    harness_set_timeout_ms(120000);
    double t0 = harness_now_s();
    deadline = t0 + seconds;
    pthread_t *threads = calloc((size_t)connections, sizeof *threads); /* owned: freed below */
    if (!threads)
        return 1;
    for (int i = 0; i < connections; i++)
        pthread_create(&threads[i], NULL, connection, (void *)(uintptr_t)i);
    for (int i = 0; i < connections; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    double took = harness_now_s() - t0;
    long all = 0;
    printf("%-18s %10s %10s %10s\n", "operation", "requests", "shed", "unexpected");
    for (int o = 0; o < OP_COUNT; o++) {
        printf("%-18s %10ld %10ld %10ld\n", ops[o].name, atomic_load(&counts[o]),
               atomic_load(&throttled[o]), atomic_load(&unexpected[o]));
        all += atomic_load(&counts[o]);
    }
    printf("soak: %ld requests in %.0f s (%.0f/s) on %d connections, %ld unexpected statuses\n",
           all, took, all / took, connections, atomic_load(&unexpected_total));
    return atomic_load(&unexpected_total) ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "setup"))
        return cmd_setup(argv[2], argv[3]);
    if (argc == 5 && !strcmp(argv[1], "run")) {
        port = atoi(argv[2]);
        return cmd_run(atoi(argv[4]), atof(argv[3]));
    }
    if (argc == 3 && !strcmp(argv[1], "check")) {
        registry_check_report rep;
        char err[512];
        int rc = registry_check_file(argv[2], &rep, err, sizeof err);
        if (rc)
            fprintf(stderr, "soak: registry: %s\n", err);
        else
            printf("soak: registry whole: %d versions, %d blobs\n", rep.n_versions, rep.n_blobs);
        registry_check_free(&rep);
        return rc ? 1 : 0;
    }
    fprintf(stderr, "usage: soak_load setup DATA_DIR VAED_DATA | run PORT SECONDS CONNECTIONS | "
                    "check DB\n");
    return 2;
}
