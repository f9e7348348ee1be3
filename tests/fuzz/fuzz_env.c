#include "tests/fuzz/fuzz_env.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "server/http_server.h"
#include "tests/lib/harness.h"

void fuzz_env_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz: %s:%d: check failed: %s: ", file, line, cond);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* ---- the scratch directory ---------------------------------------------- */

static char scratch[FUZZ_ENV_PATH_MAX];
static pid_t scratch_owner;

static void daemon_stop(void);

static void scratch_remove(void)
{
    daemon_stop();
    if (scratch[0] && getpid() == scratch_owner)
        harness_rm_rf(scratch);
}

const char *fuzz_env_scratch(void)
{
    if (!scratch[0]) {
        snprintf(scratch, sizeof scratch, "/tmp/vaed-fuzz-XXXXXX");
        FUZZ_CHECK(mkdtemp(scratch) != NULL, "mkdtemp: %s", strerror(errno));
        scratch_owner = getpid();
        atexit(scratch_remove);
    }
    return scratch;
}

void fuzz_env_path(char *out, size_t outlen, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", fuzz_env_scratch(), name);
    FUZZ_CHECK(n > 0 && (size_t)n < outlen, "path %s too long", name);
}

void fuzz_env_write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "%s: %s", path, strerror(errno));
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size, "%s: short write", path);
    FUZZ_CHECK(fclose(f) == 0, "%s: %s", path, strerror(errno));
}

void fuzz_env_fresh_dir(const char *path)
{
    const char *s = fuzz_env_scratch();
    FUZZ_CHECK(!strncmp(path, s, strlen(s)) && path[strlen(s)] == '/', "%s is outside %s", path,
               s);
    struct stat st;
    if (stat(path, &st) == 0)
        FUZZ_CHECK(harness_rm_rf(path) == 0, "rm -rf %s", path);
    FUZZ_CHECK(mkdir(path, 0755) == 0, "mkdir %s: %s", path, strerror(errno));
}

/* ---- the daemon ------------------------------------------------------------ */

const char *fuzz_env_data_root(void)
{
    static char data[FUZZ_ENV_PATH_MAX];
    if (data[0])
        return data;
    char sub[FUZZ_ENV_PATH_MAX + 16];
    fuzz_env_path(data, sizeof data, "data");
    fuzz_env_fresh_dir(data);
    const char *sets[] = {"mnist", "fashion"};
    for (int i = 0; i < 2; i++) {
        snprintf(sub, sizeof sub, "%s/%s", data, sets[i]);
        FUZZ_CHECK(harness_write_idx_set(sub, 16, 16) == 0, "writing %s", sub);
    }
    FUZZ_CHECK(setenv("VAED_DATA", data, 1) == 0, "setenv");
    return data;
}

static pthread_t daemon_thread;
static volatile sig_atomic_t daemon_stop_flag;
static int daemon_port = -1;
static server_options daemon_opts;
static char daemon_dir[FUZZ_ENV_PATH_MAX], daemon_port_file[FUZZ_ENV_PATH_MAX];

static void *daemon_main(void *arg)
{
    (void)arg;
    char err[512];
    server_status rc = server_run(&daemon_opts, &daemon_stop_flag, err, sizeof err);
    if (rc != SERVER_OK)
        fuzz_env_fail(__FILE__, __LINE__, "server_run", "the daemon stopped: %s", err);
    return NULL;
}

static void daemon_stop(void)
{
    if (daemon_port < 0)
        return;
    daemon_stop_flag = 1;
    pthread_join(daemon_thread, NULL);
    daemon_port = -1;
}

int fuzz_env_port(void)
{
    if (daemon_port >= 0)
        return daemon_port;
    /* A client gone before its answer must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    char err[512];
    fuzz_env_data_root();
    fuzz_env_path(daemon_dir, sizeof daemon_dir, "var");
    fuzz_env_path(daemon_port_file, sizeof daemon_port_file, "port");
    FUZZ_CHECK(harness_put_model(daemon_dir, "digits", NULL, 1, NULL, err, sizeof err) == 0,
               "registering the model: %s", err);

    server_options_default(&daemon_opts);
    daemon_opts.listen = "127.0.0.1:0";
    daemon_opts.data_dir = daemon_dir;
    daemon_opts.port_file = daemon_port_file;
    daemon_opts.threads = 2;
    daemon_opts.max_connections = 64;
    /* An input cut short can leave libmicrohttpd waiting for the rest even
     * after our end is closed (see closing_request): a second, not 30. */
    daemon_opts.timeout_s = 1;
    daemon_opts.max_body = (size_t)1 << 20;
    daemon_opts.max_upload = (size_t)1 << 20;
    daemon_opts.model_cache_mb = 64;
    daemon_opts.response_cache_mb = 1;
    daemon_opts.token = FUZZ_ENV_TOKEN;
    daemon_opts.workers = 0;
    daemon_opts.job_mem_mb = 256;
    FUZZ_CHECK(pthread_create(&daemon_thread, NULL, daemon_main, NULL) == 0, "pthread_create");
    for (int tries = 0; tries < 3000; tries++) {
        FILE *f = fopen(daemon_port_file, "r");
        int port = -1;
        if (f) {
            if (fscanf(f, "%d", &port) != 1)
                port = -1;
            fclose(f);
        }
        if (port > 0) {
            daemon_port = port;
            return port;
        }
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    fuzz_env_fail(__FILE__, __LINE__, "port file", "the daemon did not start within 30 s");
}

/* ---- talking to it ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The value of header name in the header block [h, end), or NULL; *len its length. */
static const char *header_value(const char *h, const char *end, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (const char *line = h; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nlen && !strncasecmp(line, name, nlen) && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && *v == ' ')
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *len = (size_t)(ve - v);
            return v;
        }
        line = eol + 1;
    }
    return NULL;
}

/* Parses the first response in r->raw: status, and where its body is. */
static void parse_first(fuzz_env_reply *r)
{
    const char *raw = (const char *)r->raw;
    if (r->raw_len < 12 || strncmp(raw, "HTTP/1.", 7))
        return;
    r->status = atoi(raw + 9);
    const char *hend = strstr(raw, "\r\n\r\n");
    if (!hend)
        return;
    const char *body = hend + 4, *end = raw + r->raw_len;
    size_t vlen;
    const char *ct = header_value(raw, hend, "Content-Type", &vlen);
    r->event_stream = ct && vlen >= 17 && !strncasecmp(ct, "text/event-stream", 17);
    const char *cl = header_value(raw, hend, "Content-Length", &vlen);
    const char *te = header_value(raw, hend, "Transfer-Encoding", &vlen);
    if (cl) {
        size_t want = strtoull(cl, NULL, 10);
        size_t have = (size_t)(end - body);
        r->body = (const uint8_t *)body;
        r->body_len = want < have ? want : have;
    } else if (te && vlen >= 7 && !strncasecmp(te, "chunked", 7)) {
        /* Joins the chunks in place: the chunk data only moves left. */
        char *out = (char *)body;
        const char *p = body;
        size_t total = 0;
        for (;;) {
            char *after;
            unsigned long long n = strtoull(p, &after, 16);
            const char *eol = strstr(after, "\r\n");
            if (after == p || !eol || n > (size_t)(end - eol - 2))
                break;
            if (n == 0)
                break;
            memmove(out + total, eol + 2, (size_t)n);
            total += (size_t)n;
            p = eol + 2 + n + 2;
            if (p > end)
                break;
        }
        r->body = (const uint8_t *)out;
        r->body_len = total;
    } else {
        r->body = (const uint8_t *)body;
        r->body_len = (size_t)(end - body);
    }
}

/* Sent after the input: a request that makes the daemon close once it has
 * answered everything before it. Closing our sending side alone is not
 * enough: libmicrohttpd (0.9.75, epoll) may miss an end of input that
 * arrives while it is still answering, or together with the bytes before
 * it, and then holds the connection until its idle timeout. */
static const char closing_request[] =
    "\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/* connect(2) that a signal cannot fail: libFuzzer's timer (SIGALRM, once a
 * second for -timeout) interrupts a blocking connect with EINTR while the
 * connection goes on being made; wait for it and take its own result
 * (SO_ERROR) instead of failing the run (CI's fuzz_query did so once). */
static int connect_loopback(int fd, const struct sockaddr_in *addr)
{
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0)
        return 0;
    if (errno != EINTR)
        return -1;
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int n;
    while ((n = poll(&pfd, 1, 1000 * FUZZ_ENV_REPLY_S)) < 0 && errno == EINTR)
        ;
    if (n <= 0) {
        errno = n == 0 ? ETIMEDOUT : errno;
        return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        return -1;
    errno = soerr;
    return soerr ? -1 : 0;
}

void fuzz_env_exchange(const void *input, size_t input_len, fuzz_env_reply *out)
{
    memset(out, 0, sizeof *out);
    size_t len = input_len + sizeof closing_request - 1;
    char *bytes = malloc(len); /* owned: freed below */
    FUZZ_CHECK(bytes != NULL, "out of memory");
    if (input_len)
        memcpy(bytes, input, input_len);
    memcpy(bytes + input_len, closing_request, sizeof closing_request - 1);
    int port = fuzz_env_port();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(connect_loopback(fd, &addr) == 0, "connect to the daemon: %s", strerror(errno));
    double deadline = now_s() + FUZZ_ENV_REPLY_S * harness_slowdown();
    size_t sent = 0, cap = 4096, got = 0;
    uint8_t *raw = malloc(cap + 1); /* owned: handed to out */
    FUZZ_CHECK(raw != NULL, "out of memory");
    double stream_until = 0, sent_at = 0;
    int wr_open = 1;
    for (;;) {
        double now = now_s();
        FUZZ_CHECK(now < deadline, "the daemon did not answer and close within %d s",
                   FUZZ_ENV_REPLY_S);
        if (stream_until && now > stream_until)
            break; /* an event stream runs until the job ends: enough of it */
        /* Our end is closed once the daemon answers, or 10 ms after the
         * last byte: an end of input that arrives with the bytes before it
         * can go unseen by libmicrohttpd (0.9.75, epoll) until its timeout. */
        if (wr_open && sent == len) {
            if (!sent_at)
                sent_at = now;
            if (got || now - sent_at > 0.01) {
                shutdown(fd, SHUT_WR);
                wr_open = 0;
            }
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (wr_open && sent < len ? POLLOUT : 0)};
        if (poll(&pfd, 1, wr_open ? 2 : 50) < 0 && errno != EINTR)
            break;
        if (pfd.revents & POLLOUT) {
            ssize_t n = send(fd, bytes + sent, len - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EINTR && errno != EAGAIN)
                wr_open = 0; /* the daemon answered and closed early */
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (got == cap) {
                uint8_t *grown = realloc(raw, cap * 2 + 1);
                FUZZ_CHECK(grown != NULL, "out of memory");
                raw = grown;
                cap *= 2;
            }
            ssize_t n = recv(fd, raw + got, cap - got, 0);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                break;
            if (n > 0)
                got += (size_t)n;
            raw[got] = '\0';
            if (!stream_until && got > 12 && strstr((char *)raw, "\r\n\r\n") &&
                strcasestr((char *)raw, "text/event-stream"))
                stream_until = now_s() + 0.2;
        }
    }
    close(fd);
    raw[got] = '\0';
    out->raw = raw;
    out->raw_len = got;
    parse_first(out);
    if (getenv("FUZZ_ENV_VERBOSE") && now_s() + FUZZ_ENV_REPLY_S * harness_slowdown() - deadline > 0.5) {
        fprintf(stderr, "fuzz: slow input: ");
        for (size_t i = 0; i < len && i < 400; i++)
            fputc(bytes[i] >= 32 && bytes[i] < 127 ? bytes[i] : '.', stderr);
        fputc('\n', stderr);
    }
    if (getenv("FUZZ_ENV_VERBOSE"))
        fprintf(stderr, "fuzz: %zu bytes sent, %zu received, first status %d, %.0f ms\n", len,
                got, out->status, (now_s() - deadline) * 1e3 + FUZZ_ENV_REPLY_S * 1e3 * harness_slowdown());
    free(bytes);
}

void fuzz_env_reply_free(fuzz_env_reply *r)
{
    free(r->raw);
    memset(r, 0, sizeof *r);
}

/* The first status line of a 500 in raw: "HTTP/1.1 500 ", a reason phrase
 * of letters and spaces, CRLF. The same words also come back inside a body
 * (an error message quoting the URL the fuzzer wrote: "GET /HTTP/1.1 500 x
 * HTTP/1.1" is a 404 naming that path), but there they never end a line:
 * a URL holds no CR or LF and JSON escapes them. */
static const char *find_500_status(const char *raw)
{
    for (const char *p = strstr(raw, "HTTP/1.1 500 "); p; p = strstr(p + 1, "HTTP/1.1 500 ")) {
        const char *q = p + strlen("HTTP/1.1 500 ");
        while ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || *q == ' ')
            q++;
        if (q[0] == '\r' && q[1] == '\n')
            return p;
    }
    return NULL;
}

void fuzz_env_check_reply(const fuzz_env_reply *r, int is_head)
{
    if (r->raw_len == 0)
        return; /* the daemon closed: a request it could not read (cut short) */
    FUZZ_CHECK(r->status >= 100 && r->status <= 599, "no status line: %.200s",
               (const char *)r->raw);
    /* Every response, not only the first: pipelined requests can set up the
     * state (an upload, an alias) that a later one trips on. */
    const char *s500 = find_500_status((const char *)r->raw);
    FUZZ_CHECK(s500 == NULL, "500 without an injected fault: %.600s", s500);
    if (r->status < 400 || is_head || !r->body || r->body_len == 0)
        return;
    /* A request libmicrohttpd refuses itself (malformed, headers too large)
     * gets its own HTML page; and after a HEAD the next bytes are the next
     * pipelined response. */
    if ((r->body_len >= 6 && !memcmp(r->body, "<html>", 6)) ||
        (r->body_len >= 7 && !memcmp(r->body, "HTTP/1.", 7)))
        return;
    cJSON *root = cJSON_ParseWithLength((const char *)r->body, r->body_len); /* owned */
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(error, "message");
    int ok = cJSON_IsObject(root) && cJSON_GetArraySize(root) == 1 && cJSON_IsObject(error) &&
             cJSON_GetArraySize(error) == 2 && cJSON_IsString(code) && cJSON_IsString(msg) &&
             code->valuestring[0] && msg->valuestring[0];
    cJSON_Delete(root);
    FUZZ_CHECK(ok, "status %d without the error body: %.600s", r->status,
               (const char *)r->raw);
}
