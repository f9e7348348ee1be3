/* vaed: the command line: usage, `vaed serve` and the dispatch to each
 * command's module (cli_train: train, sample, eval, reconstruct, import,
 * export; cli_registry: registry, push, models, pull; cli_jobs: jobs). Every
 * command parses its flags into native structs and calls the modules; only
 * main() exits. */
#include <cblas.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_jobs.h"
#include "cli/cli_options.h"
#include "cli/cli_registry.h"
#include "cli/cli_score.h"
#include "cli/cli_train.h"
#include "server/api_infer.h"
#include "server/compute_pool.h"
#include "server/http_server.h"

#ifndef VAED_VERSION
#define VAED_VERSION "0.0.0"
#endif

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "vaed %s: train Variational Autoencoders and serve them over HTTP\n"
            "\n"
            "usage: vaed COMMAND [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  serve      serve the registry's models over HTTP\n"
            "  train      train a model on a data set\n"
            "  sample     decode z ~ N(0, I) through a checkpoint into a PNG grid\n"
            "  eval       negative ELBO, importance-weighted bound, active units on a data set\n"
            "  reconstruct  originals above their reconstructions, as a PNG\n"
            "  score      anomaly scores of a data set's images (and AUROC against another)\n"
            "  import     convert a pytorch/examples VAE state_dict into a vaed checkpoint\n"
            "  export     write a checkpoint in the vaed or pytorch/examples layout\n"
            "  registry   list, import, export or copy the registry (a file or postgresql://)\n"
            "  push       upload a checkpoint to a running server\n"
            "  models     list the models of a running server\n"
            "  pull       download a checkpoint from a running server\n"
            "  jobs       submit, list, show, cancel or watch a running server's training jobs\n"
            "\n"
            "  vaed COMMAND --help   options of one command\n"
            "  vaed --version\n",
            VAED_VERSION);
}

/* ---------- serve ---------- */

static int cmd_serve(int argc, char **argv)
{
    server_options o;
    server_options_default(&o);
    /* the fields of o straight from their flags (CLI_INT, CLI_SIZE); these
     * three are given in other units or an unsigned */
    long max_body_mb = (long)(o.max_body >> 20), max_upload_mb = (long)(o.max_upload >> 20);
    long max_per_ip = (long)o.max_per_ip;
    long max_small_body_kb = (long)(o.max_small_body >> 10);
    long max_header_mb = (long)(o.max_header >> 20);
    long max_query_kb = (long)(o.max_query >> 10);
    const char *token_file = NULL;
    cli_option opts[] = {
        {"listen", CLI_STRING, &o.listen, 0, 0, "ADDR:PORT to listen on (default 127.0.0.1:8080)"},
        {"data-dir", CLI_STRING, &o.data_dir, 0, 0, "directory of registry.db (default var)"},
        {"registry", CLI_STRING, &o.registry, 0, 0,
         "registry file or postgresql://USER@HOST:PORT/DB (else $VAED_REGISTRY, else DATA_DIR/registry.db)"},
        {"job-lease", CLI_INT, &o.job_lease_s, 1, 86400,
         "shared registry: seconds before a dead replica's job is claimed again (default 30)"},
        {"port-file", CLI_STRING, &o.port_file, 0, 0, "write the bound port here once listening"},
        {"default-model", CLI_STRING, &o.default_model, 0, 0, "model used when a request names none"},
        {"threads", CLI_INT, &o.threads, 0, 256, "HTTP worker threads (0 = cores)"},
        {"max-connections", CLI_INT, &o.max_connections, 1, 100000, "connection limit"},
        {"timeout", CLI_INT, &o.timeout_s, 1, 3600, "idle connection timeout, seconds"},
        {"model-cache-mb", CLI_SIZE, &o.model_cache_mb, 1, 1 << 20, "bytes of loaded models kept, MiB"},
        {"response-cache-mb", CLI_SIZE, &o.response_cache_mb, 0, 1 << 20,
         "GET /interpolate answers kept, MiB (default 16, 0 = none)"},
        {"max-body-mb", CLI_LONG, &max_body_mb, 1, 4096, "largest request body, MiB"},
        {"max-upload", CLI_LONG, &max_upload_mb, 1, 65536, "largest checkpoint upload, MiB (default 256)"},
        {"token-file", CLI_STRING, &token_file, 0, 0, "bearer token mutations need (else $VAED_TOKEN)"},
        {"workers", CLI_INT, &o.workers, 0, 64, "training worker threads (default 1)"},
        {"job-mem-mb", CLI_SIZE, &o.job_mem_mb, 1, 1 << 20, "largest memory estimate of a job, MiB"},
        {"max-bodies-mb", CLI_SIZE, &o.max_bodies_mb, 0, 1 << 20,
         "request bodies held at once, all connections, MiB (default 512, 0 = no limit)"},
        {"max-answers-mb", CLI_SIZE, &o.max_answers_mb, 0, 1 << 20,
         "computed answers held at once for clients still reading them, MiB (default 256, 0 = "
         "no limit)"},
        {"min-body-rate-kb", CLI_SIZE, &o.min_body_rate_kb, 0, 1 << 20,
         "KiB a second a request body must average once --timeout has passed (default 64, 0 = "
         "no minimum)"},
        {"max-per-ip", CLI_LONG, &max_per_ip, 0, 100000,
         "open connections from one address (default 128, 0 = no limit)"},
        {"max-streams", CLI_INT, &o.max_streams, 0, 100000,
         "open GET /jobs/ID/events streams (default 32)"},
        {"stream-max-s", CLI_INT, &o.stream_max_s, 1, 86400,
         "seconds an event stream lasts; clients resume with Last-Event-ID (default 600)"},
        {"request-mem-mb", CLI_SIZE, &o.request_mem_mb, 0, 1 << 20,
         "most one inference request may allocate, MiB (default 1024, 0 = no limit)"},
        {"job-retention-days", CLI_INT, &o.job_retention_days, 0, 100000,
         "finished jobs kept, days (default 30, 0 = for ever)"},
        {"max-queued-jobs", CLI_INT, &o.max_queued_jobs, 0, 1000000,
         "jobs waiting at once; past it POST /jobs is 429 (default 100, 0 = no limit)"},
        {"max-batch", CLI_INT, &o.max_batch, 1, COMPUTE_POOL_MAX_BATCH,
         "inference requests one engine call may serve (default 32, 1 = no batching)"},
        {"max-queue-delay-us", CLI_INT, &o.max_queue_delay_us, 0, COMPUTE_POOL_MAX_DELAY_US,
         "microseconds a request may wait for its batch to fill (default 0: batch what is queued)"},
        {"max-n", CLI_INT, &o.max_n, 1, API_INFER_MAX_N,
         "images, latents or labels one request holds (/sample n, /decode z, /reconstruct, /traverse dims x steps; default 1024)"},
        {"max-steps", CLI_INT, &o.max_steps, 2, API_INFER_MAX_STEPS,
         "steps of an /interpolate or a /traverse row (default 256)"},
        {"max-json-depth", CLI_INT, &o.max_json_depth, 1, SERVER_MAX_JSON_DEPTH,
         "nesting of a JSON request body (default 8)"},
        {"max-small-body-kb", CLI_LONG, &max_small_body_kb, 1, 16384,
         "largest job spec or alias body, KiB (default 64)"},
        {"max-header-mb", CLI_LONG, &max_header_mb, 1, 4096,
         "largest safetensors header of an uploaded checkpoint, MiB (default 100)"},
        {"max-header-values", CLI_SIZE, &o.max_header_values, 16, 1L << 24,
         "JSON values in that header (default 65536)"},
        {"max-query-kb", CLI_LONG, &max_query_kb, 1, (long)(SERVER_MAX_QUERY >> 10),
         "bytes of a URL's query, KiB (default 16, the most)"},
        {"max-query-params", CLI_INT, &o.max_query_params, 1, SERVER_MAX_QUERY_PARAMS,
         "parameters of a URL's query (default 1000, the most)"},
        {"mpi-hostfile", CLI_STRING, &o.mpi_hostfile, 0, 0,
         "Open MPI hostfile: jobs with \"ranks\": N > 1 run under mpirun on its hosts"},
    };
    int rc = cli_parse("serve", argc, argv, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    o.max_body = (size_t)max_body_mb << 20;
    o.max_upload = (size_t)max_upload_mb << 20;
    o.max_per_ip = (unsigned)max_per_ip;
    o.max_small_body = (size_t)max_small_body_kb << 10;
    o.max_header = (size_t)max_header_mb << 20;
    o.max_query = (size_t)max_query_kb << 10;
    if (!o.registry && getenv("VAED_REGISTRY") && *getenv("VAED_REGISTRY"))
        o.registry = getenv("VAED_REGISTRY");
    if (o.mpi_hostfile && access(o.mpi_hostfile, R_OK) != 0) {
        fprintf(stderr, "vaed serve: --mpi-hostfile %s: %s\n", o.mpi_hostfile, strerror(errno));
        return 2;
    }
    char token[512] = "";
    if (token_file) {
        FILE *tf = fopen(token_file, "r");
        if (!tf) {
            fprintf(stderr, "vaed serve: --token-file %s: %s\n", token_file, strerror(errno));
            return 2;
        }
        /* Anyone who can change the token owns the registry: refused. One
         * others can read is only warned about: a container reads a secret
         * mounted from a host file its user does not own. */
        struct stat st = {0};
        if (fstat(fileno(tf), &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH))) {
            fprintf(stderr,
                    "vaed serve: --token-file %s can be changed by other users (mode %04o): "
                    "chmod 600 it\n",
                    token_file, (unsigned)(st.st_mode & 07777));
            fclose(tf);
            return 2;
        }
        if (st.st_mode & (S_IRGRP | S_IROTH))
            fprintf(stderr,
                    "vaed serve: warning: --token-file %s is readable by other users (mode "
                    "%04o): anyone on this machine can use the token; chmod 600 it\n",
                    token_file, (unsigned)(st.st_mode & 07777));
        size_t n = fread(token, 1, sizeof token - 1, tf);
        fclose(tf);
        token[n] = '\0';
        token[strcspn(token, "\r\n")] = '\0'; /* one line; a trailing newline is not part of it */
    } else if (getenv("VAED_TOKEN")) {
        snprintf(token, sizeof token, "%s", getenv("VAED_TOKEN"));
    }
    if ((token_file || getenv("VAED_TOKEN")) && strlen(token) < 16) {
        fprintf(stderr, "vaed serve: the token must be at least 16 characters\n");
        return 2;
    }
    o.token = token[0] ? token : NULL;

    /* The registry, the jobs' resume files and the lock are the daemon's
     * alone: created 0600 (directories 0700). */
    umask(077);
    /* Request bodies, answers and model buffers of a megabyte or more are
     * mapped and unmapped whole: glibc's threshold would otherwise rise with
     * the first large free, and freed bodies would stay in the process as
     * heap (the RSS of a daemon should follow what it holds). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    /* Below that, an arena keeps up to 8 MB free at its top instead of
     * glibc's 128 KB: at 64 connections the answers in flight (a JSON
     * /sample?n=16 allocates about 400 KB) came and went above the lower
     * bound, each request paying page faults and zeroing on fresh pages,
     * about a fifth of its CPU time (measured: 365 -> 295 us a request).
     * The price, measured after such a load: RSS 36 MB against 22. */
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Request threads already use both cores: one BLAS thread per request. */
    openblas_set_num_threads(1);
    char err[512];
    if (server_run(&o, &stop_flag, err, sizeof err)) {
        fprintf(stderr, "vaed serve: %s\n", err);
        return 1;
    }
    fprintf(stderr, "vaed: stopped\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("vaed %s\n", VAED_VERSION);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0) return cli_train(argc - 1, argv + 1);
    if (strcmp(cmd, "sample") == 0) return cli_sample(argc - 1, argv + 1);
    if (strcmp(cmd, "registry") == 0) return cli_registry(argc - 1, argv + 1);
    if (strcmp(cmd, "push") == 0) return cli_push(argc - 1, argv + 1);
    if (strcmp(cmd, "models") == 0) return cli_models(argc - 1, argv + 1);
    if (strcmp(cmd, "pull") == 0) return cli_pull(argc - 1, argv + 1);
    if (strcmp(cmd, "jobs") == 0) return cli_jobs(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return cli_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "reconstruct") == 0) return cli_reconstruct(argc - 1, argv + 1);
    if (strcmp(cmd, "score") == 0) return cli_score(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0) return cli_import(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0) return cli_export(argc - 1, argv + 1);
    fprintf(stderr, "vaed: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 2;
}
