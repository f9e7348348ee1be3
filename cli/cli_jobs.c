/* cli_jobs: `vaed jobs ...`, over http_client.h. See cli_jobs.h. */
#include "cli/cli_jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli/cli_options.h"
#include "cli/http_client.h"
#include "engine/util.h"

#define CLI_JOBS_MAX_SPEC (1 << 20)
/* Seconds without a byte before a stream counts as broken: the server sends
 * a keep-alive every second. */
#define CLI_JOBS_STREAM_IDLE_S 15

/* A job id argument: 1 ... 2^53, else 0. */
static int64_t parse_id(const char *s)
{
    if (!s || !*s)
        return 0;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > ((int64_t)1 << 53))
            return 0;
        v = v * 10 + (*p - '0');
    }
    return v >= 1 && v <= ((int64_t)1 << 53) ? v : 0;
}

/* The whole of path ("-": stdin) into *out (owned by the caller, NUL-ended). */
static int read_spec(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap); /* owned: handed to *out */
    int rc = -1;
    while (buf) {
        if (n + 1 >= cap) {
            if (cap >= CLI_JOBS_MAX_SPEC) {
                snprintf(err, errlen, "%s: a job spec is at most %d bytes", path,
                         CLI_JOBS_MAX_SPEC);
                goto end;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown)
                break;
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "%s: read error", path);
                goto end;
            }
            buf[n] = '\0';
            *out = buf;
            *len = n;
            buf = NULL;
            rc = 0;
            goto end;
        }
    }
    snprintf(err, errlen, "out of memory");
end:
    free(buf);
    if (f != stdin)
        fclose(f);
    return rc;
}

static const char *json_str(const cJSON *o, const char *k, const char *def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : def;
}

static double json_num(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

/* ---- watch ---------------------------------------------------------------- */

typedef struct {
    int64_t job_id;
    int epochs;          /* of the job, for the progress bar and the epoch lines */
    int tty;             /* stderr is a terminal: draw the bar */
    int bar_drawn;
    char *line;          /* owned: a partial line of the stream */
    size_t line_len, line_cap;
    char ev_id[32];
    char ev_type[32];
    char *ev_data;       /* owned: the data lines of the event being read, joined by \n */
    size_t data_len, data_cap;
    int64_t last_id;     /* for Last-Event-ID */
    double last_byte;    /* CLOCK_MONOTONIC of the last byte received */
    int done;            /* a final state event arrived */
    int exit_code;
    int oom;
} watch_state;

static void clear_bar(watch_state *w)
{
    if (w->bar_drawn) {
        fprintf(stderr, "\r%*s\r", 100, "");
        w->bar_drawn = 0;
    }
}

static void show_progress(watch_state *w, const cJSON *d)
{
    if (!w->tty)
        return;
    int epoch = (int)json_num(d, "epoch", 0), epochs = (int)json_num(d, "epochs", w->epochs);
    double step = json_num(d, "step", 0), steps = json_num(d, "steps", 0);
    double frac = epochs > 0 && steps > 0 ? ((epoch - 1) + step / steps) / epochs : 0;
    if (frac < 0)
        frac = 0;
    if (frac > 1)
        frac = 1;
    char bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] %3.0f%%  epoch %d/%d  %.0f img/s  loss %.4g  eta %.0fs   ", bar,
            frac * 100, epoch, epochs, json_num(d, "images_per_s", 0), json_num(d, "loss", 0),
            json_num(d, "eta_s", 0));
    fflush(stderr);
    w->bar_drawn = 1;
}

static void show_epoch(watch_state *w, const cJSON *d)
{
    clear_bar(w);
    printf("epoch %d/%d  train_loss %.4f", (int)json_num(d, "epoch", 0), w->epochs,
           json_num(d, "train_loss", 0));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(d, "test_loss");
    if (cJSON_IsNumber(t))
        printf("  test_loss %.4f", t->valuedouble);
    printf("  %.0f img/s  %.2f s\n", json_num(d, "images_per_s", 0), json_num(d, "seconds", 0));
    fflush(stdout);
}

static void show_state(watch_state *w, const cJSON *d)
{
    clear_bar(w);
    const char *state = json_str(d, "state", "?");
    if (!strcmp(state, "succeeded")) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(d, "result");
        printf("job %" PRId64 " succeeded: %s version %lld\n", w->job_id,
               json_str(r, "model", "?"), (long long)json_num(r, "version", 0));
        w->done = 1;
        w->exit_code = 0;
    } else if (!strcmp(state, "failed")) {
        printf("job %" PRId64 " failed: %s\n", w->job_id, json_str(d, "error", "(no reason)"));
        w->done = 1;
        w->exit_code = 1;
    } else if (!strcmp(state, "cancelled")) {
        printf("job %" PRId64 " cancelled\n", w->job_id);
        w->done = 1;
        w->exit_code = 1;
    } else {
        const char *reason = json_str(d, "reason", NULL);
        printf("job %" PRId64 " %s%s%s%s\n", w->job_id, state, reason ? " (" : "",
               reason ? reason : "", reason ? ")" : "");
    }
    fflush(stdout);
}

static void dispatch_event(watch_state *w)
{
    if (w->ev_id[0])
        w->last_id = strtoll(w->ev_id, NULL, 10);
    cJSON *d = w->ev_data ? cJSON_ParseWithLength(w->ev_data, w->data_len) : NULL; /* owned */
    if (d) {
        if (!strcmp(w->ev_type, "progress"))
            show_progress(w, d);
        else if (!strcmp(w->ev_type, "epoch"))
            show_epoch(w, d);
        else if (!strcmp(w->ev_type, "state"))
            show_state(w, d);
    }
    cJSON_Delete(d);
    w->ev_id[0] = w->ev_type[0] = '\0';
    w->data_len = 0;
}

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n + 1)
            c *= 2;
        char *grown = realloc(*buf, c);
        if (!grown)
            return -1;
        *buf = grown;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* One line of the stream (without its end of line). */
static void stream_line(watch_state *w, char *line, size_t n)
{
    if (n == 0) {
        if (w->ev_type[0] || w->data_len)
            dispatch_event(w);
        return;
    }
    if (line[0] == ':')
        return; /* a comment: keep-alive */
    char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    if (*v == ' ')
        v++;
    size_t vlen = (size_t)(line + n - v);
    if (flen == 2 && !strncmp(line, "id", 2))
        snprintf(w->ev_id, sizeof w->ev_id, "%.*s", (int)vlen, v);
    else if (flen == 5 && !strncmp(line, "event", 5))
        snprintf(w->ev_type, sizeof w->ev_type, "%.*s", (int)vlen, v);
    else if (flen == 4 && !strncmp(line, "data", 4)) {
        if ((w->data_len && append(&w->ev_data, &w->data_len, &w->data_cap, "\n", 1)) ||
            append(&w->ev_data, &w->data_len, &w->data_cap, v, vlen))
            w->oom = 1;
    }
}

static int on_stream_data(void *ctx, const char *data, size_t len)
{
    watch_state *w = ctx;
    w->last_byte = util_mono_s();
    if (append(&w->line, &w->line_len, &w->line_cap, data, len)) {
        w->oom = 1;
        return 1;
    }
    size_t start = 0;
    for (size_t i = 0; i < w->line_len && !w->done; i++) {
        if (w->line[i] != '\n')
            continue;
        size_t n = i - start;
        if (n && w->line[start + n - 1] == '\r')
            n--;
        stream_line(w, w->line + start, n);
        start = i + 1;
    }
    memmove(w->line, w->line + start, w->line_len - start);
    w->line_len -= start;
    return w->done || w->oom;
}

static int watch_job(const http_client_url *u, int64_t id, long retry_s)
{
    char path[64], err[512];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    http_client_reply r;
    if (http_client_call(u, "GET", path, NULL, NULL, 0, &r, err, sizeof err)) {
        fprintf(stderr, "vaed jobs watch: %s\n", err);
        http_client_reply_free(&r);
        return 1;
    }
    if (r.status != 200) {
        http_client_print_error("jobs watch", &r);
        http_client_reply_free(&r);
        return 1;
    }
    watch_state w;
    memset(&w, 0, sizeof w);
    w.job_id = id;
    w.tty = isatty(STDERR_FILENO);
    cJSON *job = cJSON_ParseWithLength(r.body, r.body_len); /* owned: freed below */
    w.epochs = (int)json_num(cJSON_GetObjectItemCaseSensitive(job, "config"), "epochs", 0);
    cJSON_Delete(job);
    http_client_reply_free(&r);

    snprintf(path, sizeof path, "/jobs/%" PRId64 "/events", id);
    w.last_byte = util_mono_s();
    int status = 1;
    for (;;) {
        char last[64];
        snprintf(last, sizeof last, "Last-Event-ID: %" PRId64, w.last_id);
        const char *headers[] = {"Accept: text/event-stream", w.last_id ? last : NULL, NULL};
        w.line_len = 0;
        w.data_len = 0;
        w.ev_id[0] = w.ev_type[0] = '\0';
        int rc = http_client_stream(u, path, headers, CLI_JOBS_STREAM_IDLE_S, on_stream_data,
                                    &w, &r, err, sizeof err);
        if (w.done) {
            status = w.exit_code;
            http_client_reply_free(&r);
            break;
        }
        if (w.oom) {
            fprintf(stderr, "vaed jobs watch: out of memory\n");
            http_client_reply_free(&r);
            break;
        }
        if (rc == 0 && (r.status < 200 || r.status > 299)) {
            clear_bar(&w);
            http_client_print_error("jobs watch", &r);
            http_client_reply_free(&r);
            break;
        }
        http_client_reply_free(&r);
        /* The stream ended early or broke off (a restarting server): go on
         * from the last event, for a while. */
        clear_bar(&w);
        if (util_mono_s() - w.last_byte > (double)retry_s) {
            fprintf(stderr, "vaed jobs watch: %s; gave up after %ld s\n",
                    rc ? err : "the stream ended before the job did", retry_s);
            break;
        }
        sleep(1);
    }
    clear_bar(&w);
    free(w.line);
    free(w.ev_data);
    return status;
}

/* ---- subcommands ---------------------------------------------------------- */

static const char usage_text[] =
    "usage: vaed jobs submit [--url URL] [--token-file F] [--watch] FILE|-\n"
    "       vaed jobs list   [--url URL] [--state STATE]\n"
    "       vaed jobs show   [--url URL] ID\n"
    "       vaed jobs cancel [--url URL] [--token-file F] ID\n"
    "       vaed jobs watch  [--url URL] [--retry-s N] ID\n";

static int jobs_submit(const http_client_url *u, const char *token, const char *file, int watch,
                       long retry_s)
{
    char err[512];
    char *spec = NULL; /* owned: freed below */
    size_t len = 0;
    if (read_spec(file, &spec, &len, err, sizeof err)) {
        fprintf(stderr, "vaed jobs submit: %s\n", err);
        return 1;
    }
    char auth[600];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    const char *headers[] = {"Content-Type: application/json", token[0] ? auth : NULL, NULL};
    http_client_reply r;
    int rc = http_client_call(u, "POST", "/jobs", headers, spec, len, &r, err, sizeof err);
    free(spec);
    if (rc) {
        fprintf(stderr, "vaed jobs submit: %s\n", err);
        http_client_reply_free(&r);
        return 1;
    }
    if (r.status != 202) {
        http_client_print_error("jobs submit", &r);
        http_client_reply_free(&r);
        return 1;
    }
    cJSON *job = cJSON_ParseWithLength(r.body, r.body_len); /* owned: freed below */
    int64_t id = (int64_t)json_num(job, "id", 0);
    if (id > 0)
        printf("job %" PRId64 " %s\n", id, json_str(job, "state", "queued"));
    else
        fprintf(stderr, "vaed jobs submit: an unexpected answer: %.200s\n", r.body);
    fflush(stdout);
    cJSON_Delete(job);
    http_client_reply_free(&r);
    if (id <= 0)
        return 1;
    return watch ? watch_job(u, id, retry_s) : 0;
}

static int jobs_list(const http_client_url *u, const char *state)
{
    char path[96], err[512];
    snprintf(path, sizeof path, "/jobs%s%s", state ? "?state=" : "", state ? state : "");
    http_client_reply r;
    if (http_client_call(u, "GET", path, NULL, NULL, 0, &r, err, sizeof err)) {
        fprintf(stderr, "vaed jobs list: %s\n", err);
        http_client_reply_free(&r);
        return 1;
    }
    int status = 1;
    cJSON *root = r.status == 200 ? cJSON_ParseWithLength(r.body, r.body_len) : NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "jobs");
    if (cJSON_IsArray(list)) {
        const cJSON *j;
        cJSON_ArrayForEach(j, list)
        {
            const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
            const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(j, "metrics");
            const cJSON *result = cJSON_GetObjectItemCaseSensitive(j, "result");
            printf("%lld\t%s\t%s\t%d/%d epochs", (long long)json_num(j, "id", 0),
                   json_str(j, "state", "?"), json_str(cfg, "model", "?"),
                   cJSON_IsArray(metrics) ? cJSON_GetArraySize(metrics) : 0,
                   (int)json_num(cfg, "epochs", 0));
            if (cJSON_IsObject(result))
                printf("\t%s version %lld", json_str(result, "model", "?"),
                       (long long)json_num(result, "version", 0));
            printf("\t%s\n", json_str(j, "created_at", ""));
        }
        status = 0;
    } else if (r.status != 200) {
        http_client_print_error("jobs list", &r);
    } else {
        fprintf(stderr, "vaed jobs list: an unexpected answer: %.200s\n", r.body);
    }
    cJSON_Delete(root);
    http_client_reply_free(&r);
    return status;
}

static int jobs_show(const http_client_url *u, int64_t id)
{
    char path[64], err[512];
    snprintf(path, sizeof path, "/jobs/%" PRId64, id);
    http_client_reply r;
    if (http_client_call(u, "GET", path, NULL, NULL, 0, &r, err, sizeof err)) {
        fprintf(stderr, "vaed jobs show: %s\n", err);
        http_client_reply_free(&r);
        return 1;
    }
    int status = 1;
    cJSON *job = r.status == 200 ? cJSON_ParseWithLength(r.body, r.body_len) : NULL;
    char *text = job ? cJSON_Print(job) : NULL; /* owned: freed below */
    if (text) {
        printf("%s\n", text);
        status = 0;
    } else if (r.status != 200) {
        http_client_print_error("jobs show", &r);
    } else {
        fprintf(stderr, "vaed jobs show: an unexpected answer: %.200s\n", r.body);
    }
    free(text);
    cJSON_Delete(job);
    http_client_reply_free(&r);
    return status;
}

static int jobs_cancel(const http_client_url *u, const char *token, int64_t id)
{
    char path[64], err[512], auth[600];
    snprintf(path, sizeof path, "/jobs/%" PRId64 "/cancel", id);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    const char *headers[] = {token[0] ? auth : NULL, NULL};
    http_client_reply r;
    if (http_client_call(u, "POST", path, headers, NULL, 0, &r, err, sizeof err)) {
        fprintf(stderr, "vaed jobs cancel: %s\n", err);
        http_client_reply_free(&r);
        return 1;
    }
    int status = 1;
    if (r.status == 200) {
        printf("job %" PRId64 " cancelled\n", id);
        status = 0;
    } else if (r.status == 202) {
        printf("job %" PRId64 " stopping (it stops before its next step)\n", id);
        status = 0;
    } else {
        http_client_print_error("jobs cancel", &r);
    }
    http_client_reply_free(&r);
    return status;
}

int cli_jobs(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    int is_submit = !strcmp(sub, "submit"), is_list = !strcmp(sub, "list"),
        is_show = !strcmp(sub, "show"), is_cancel = !strcmp(sub, "cancel"),
        is_watch = !strcmp(sub, "watch");
    if (!is_submit && !is_list && !is_show && !is_cancel && !is_watch) {
        fprintf(stderr, "vaed jobs: unknown subcommand %s (submit, list, show, cancel, watch)\n",
                sub);
        return 2;
    }
    const char *url = HTTP_CLIENT_DEFAULT_URL, *token_file = NULL, *state = NULL;
    int watch = 0;
    long retry_s = 30;
    cli_option opts[] = {
        {"url", CLI_STRING, &url, 0, 0, "server, http://HOST:PORT (default " HTTP_CLIENT_DEFAULT_URL ")"},
        {"token-file", CLI_STRING, &token_file, 0, 0, "bearer token file (else $VAED_TOKEN); submit, cancel"},
        {"state", CLI_STRING, &state, 0, 0, "list: only jobs in this state"},
        {"watch", CLI_FLAG, &watch, 0, 0, "submit: then watch the job"},
        {"retry-s", CLI_LONG, &retry_s, 0, 86400, "watch: seconds to keep reconnecting (default 30)"},
    };
    char cmd[32];
    snprintf(cmd, sizeof cmd, "jobs %s", sub);
    int rc = cli_parse(cmd, argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    const char *arg = cli_positional(0);
    int64_t id = arg ? parse_id(arg) : 0;
    if (cli_positional(1) || (is_list && arg) || (is_submit && !arg) ||
        ((is_show || is_cancel || is_watch) && !id)) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (state && (strlen(state) > 16 || strspn(state, "abcdefghijklmnopqrstuvwxyz") != strlen(state))) {
        fprintf(stderr, "vaed jobs list: --state: queued, running, succeeded, failed or cancelled\n");
        return 2;
    }
    char err[512], token[512];
    http_client_url u;
    if (http_client_parse_url(url, &u, err, sizeof err) ||
        http_client_load_token(token_file, token, sizeof token, err, sizeof err)) {
        fprintf(stderr, "vaed %s: %s\n", cmd, err);
        return 2;
    }
    if (is_submit)
        return jobs_submit(&u, token, arg, watch, retry_s);
    if (is_list)
        return jobs_list(&u, state);
    if (is_show)
        return jobs_show(&u, id);
    if (is_cancel)
        return jobs_cancel(&u, token, id);
    return watch_job(&u, id, retry_s);
}
