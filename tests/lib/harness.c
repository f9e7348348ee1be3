#include "tests/lib/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "engine/checkpoint.h"
#include "engine/image.h"
#include "server/sha256.h"

static int timeout_ms_setting = -1; /* -1: the default */

int harness_slowdown(void)
{
    const char *s = getenv("VAED_SANITIZED");
    return (s && *s && strcmp(s, "0")) ? 3 : 1;
}

/* Atomic: a test may set it while its request threads read it. */
void harness_set_timeout_ms(int ms)
{
    __atomic_store_n(&timeout_ms_setting, ms, __ATOMIC_RELAXED);
}

static int timeout_ms(void)
{
    int ms = __atomic_load_n(&timeout_ms_setting, __ATOMIC_RELAXED);
    return ms >= 0 ? ms : 30000 * harness_slowdown();
}

int64_t harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double harness_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void harness_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- files ---------------------------------------------------------------- */

static char *read_whole_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap); /* owned: returned */
    while (buf) {
        if (len + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    fclose(f);
    if (buf) {
        buf[len] = '\0';
        if (len_out)
            *len_out = len;
    }
    return buf;
}

static int make_dirs(const char *path)
{
    char buf[HARNESS_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) && errno != EEXIST)
                return -1;
            *p = saved;
            if (!saved)
                break;
        }
    }
    return 0;
}

int harness_tmpdir(char *out, size_t outlen)
{
    if (snprintf(out, outlen, "/tmp/vaed-test-XXXXXX") >= (int)outlen)
        return -1;
    if (!mkdtemp(out)) {
        fprintf(stderr, "harness: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int harness_rm_rf(const char *path)
{
    /* A guard against a test computing a wrong path and deleting elsewhere. */
    if (!path || strncmp(path, "/tmp/", 5) || strstr(path, "..")) {
        fprintf(stderr, "harness: refusing to remove %s\n", path ? path : "(null)");
        return -1;
    }
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) ? -1 : 0;
}

/* ---- the daemon ----------------------------------------------------------- */

long harness_daemon_status_kb(const harness_daemon *d, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)d->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    size_t n = strlen(field);
    while (kb < 0 && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return kb;
}

char *harness_daemon_log(const harness_daemon *d)
{
    return d->log_path[0] ? read_whole_file(d->log_path, NULL) : NULL;
}

static void dump_log(const harness_daemon *d, const char *why)
{
    char *log = harness_daemon_log(d); /* owned: freed below */
    fprintf(stderr, "harness: vaed %s; its log (%s):\n%s\n", why, d->log_path,
            log ? log : "(none)");
    free(log);
}

static int decode_wait_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

/* Waits up to ms for the child; returns its decoded status or -2 when still running. */
static int wait_for_exit(pid_t pid, int ms)
{
    int64_t deadline = harness_now_ms() + ms;
    for (;;) {
        int st;
        pid_t got = waitpid(pid, &st, WNOHANG);
        if (got == pid)
            return decode_wait_status(st);
        if (got < 0 && errno != EINTR)
            return -1;
        if (harness_now_ms() >= deadline)
            return -2;
        harness_sleep_ms(10);
    }
}

const char *harness_vaed_bin(char *buf, size_t buflen)
{
    const char *env = getenv("VAED_BIN");
    if (env && *env)
        return env;
    /* BUILD/tests/http_test_x -> BUILD/vaed: `make asan` builds both into
     * build-asan, and its tests must start the sanitized daemon. */
    char self[HARNESS_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            slash = strrchr(self, '/');
            if (slash && !strcmp(slash, "/tests")) {
                *slash = '\0';
                if (snprintf(buf, buflen, "%s/vaed", self) < (int)buflen &&
                    access(buf, X_OK) == 0)
                    return buf;
            }
        }
    }
    return "build/vaed";
}

int harness_daemon_start(harness_daemon *d, const char *data_dir,
                         const char *const *extra_args)
{
    memset(d, 0, sizeof *d);
    d->port = -1;
    char port_path[HARNESS_PATH_MAX];
    if (snprintf(d->data_dir, sizeof d->data_dir, "%s", data_dir) >= (int)sizeof d->data_dir ||
        snprintf(d->log_path, sizeof d->log_path, "%s/vaed.log", data_dir) >=
            (int)sizeof d->log_path ||
        snprintf(port_path, sizeof port_path, "%s/port", data_dir) >= (int)sizeof port_path) {
        fprintf(stderr, "harness: data dir path too long\n");
        return -1;
    }
    if (make_dirs(data_dir)) {
        fprintf(stderr, "harness: cannot create %s: %s\n", data_dir, strerror(errno));
        return -1;
    }
    unlink(port_path); /* a stale port file from an earlier daemon would mislead us */

    char bin_buf[HARNESS_PATH_MAX];
    const char *bin = harness_vaed_bin(bin_buf, sizeof bin_buf);
    size_t n_extra = 0;
    while (extra_args && extra_args[n_extra])
        n_extra++;
    const char **argv = calloc(9 + n_extra, sizeof *argv); /* owned: freed below */
    if (!argv)
        return -1;
    size_t argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "serve";
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--data-dir";
    argv[argc++] = data_dir;
    argv[argc++] = "--port-file";
    argv[argc++] = port_path;
    for (size_t i = 0; i < n_extra; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;

    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        free(argv);
        return -1;
    }
    if (pid == 0) {
        /* A test that fails (cmocka jumps out of it) or crashes leaves no
         * daemon behind: it dies with the test process. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
            _exit(127);
        int log = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_RDONLY);
        if (log >= 0) {
            dup2(log, STDOUT_FILENO);
            dup2(log, STDERR_FILENO);
            close(log);
        }
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            close(null);
        }
        execv(bin, (char *const *)argv);
        fprintf(stderr, "harness: cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    free(argv);
    d->pid = pid;

    int64_t deadline = harness_now_ms() + 10000 * harness_slowdown();
    for (;;) {
        char *text = read_whole_file(port_path, NULL); /* owned: freed below */
        if (text) {
            char *end;
            long port = strtol(text, &end, 10);
            int ok = end != text && (*end == '\n' || !*end) && port > 0 && port < 65536;
            free(text);
            if (ok) {
                d->port = (int)port;
                return d->port;
            }
        }
        int st = wait_for_exit(pid, 0);
        if (st != -2) {
            d->pid = 0;
            d->exit_status = st;
            char why[64];
            snprintf(why, sizeof why, "exited with status %d before listening", st);
            dump_log(d, why);
            return -1;
        }
        if (harness_now_ms() >= deadline)
            break;
        harness_sleep_ms(20);
    }
    dump_log(d, "wrote no port file within the time limit");
    harness_daemon_kill9(d);
    return -1;
}

int harness_daemon_stop(harness_daemon *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    int st = wait_for_exit(d->pid, 5000 * harness_slowdown());
    if (st == -2) {
        fprintf(stderr, "harness: vaed ignored SIGTERM for 5 s; killing it\n");
        kill(d->pid, SIGKILL);
        st = wait_for_exit(d->pid, 10000);
    }
    d->pid = 0;
    if (st != 0) {
        char why[64];
        snprintf(why, sizeof why, "stopped with status %d", st);
        dump_log(d, why);
    }
    return st;
}

int harness_daemon_kill9(harness_daemon *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGKILL);
    int st = wait_for_exit(d->pid, 10000);
    d->pid = 0;
    return st;
}

/* ---- the client ----------------------------------------------------------- */

typedef struct {
    char *data; /* owned */
    size_t len, cap;
    int failed;
} buf_t;

static void buf_add(buf_t *b, const void *data, size_t len)
{
    if (b->failed)
        return;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void buf_addf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_addf(buf_t *b, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line) {
        b->failed = 1;
        return;
    }
    buf_add(b, line, (size_t)n);
}

static int connect_local(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "harness: socket: %s\n", strerror(errno));
        return -1;
    }
    int ms = timeout_ms();
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
        fprintf(stderr, "harness: connect to 127.0.0.1:%d: %s\n", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends everything; a server that closes early (it answered already) is not
 * an error here, the response read afterwards tells. */
static void send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static const char *find_crlfcrlf(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i + 3 < len; i++)
        if (data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n')
            return (const char *)data + i;
    return NULL;
}

static void clear_parsed(harness_response *r)
{
    for (int i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->body);
    r->headers = NULL;
    r->n_headers = 0;
    r->body = NULL;
    r->body_len = 0;
    r->status = 0;
    r->reason[0] = '\0';
}

static char *dup_range(const char *s, size_t len)
{
    char *out = malloc(len + 1); /* owned: returned */
    if (out) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    return out;
}

/* Parses the head at p (len bytes up to, not including, the blank line). */
static int parse_head(harness_response *r, const char *p, size_t len)
{
    const char *end = p + len;
    const char *eol = memchr(p, '\r', len);
    if (!eol)
        eol = end;
    int major, minor, status, consumed = 0;
    char line[256];
    size_t line_len = (size_t)(eol - p) < sizeof line - 1 ? (size_t)(eol - p) : sizeof line - 1;
    memcpy(line, p, line_len);
    line[line_len] = '\0';
    if (sscanf(line, "HTTP/%d.%d %3d%n", &major, &minor, &status, &consumed) != 3)
        return -1;
    r->status = status;
    const char *reason = line + consumed;
    while (*reason == ' ')
        reason++;
    snprintf(r->reason, sizeof r->reason, "%s", reason);

    p = eol + (eol < end ? 2 : 0);
    while (p < end) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon)
            return -1;
        const char *v = colon + 1, *vend = eol;
        while (v < vend && (*v == ' ' || *v == '\t'))
            v++;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        harness_header_field *grown =
            realloc(r->headers, sizeof *grown * (size_t)(r->n_headers + 1));
        if (!grown)
            return -1;
        r->headers = grown;
        harness_header_field *h = &r->headers[r->n_headers];
        h->name = dup_range(p, (size_t)(colon - p));
        h->value = dup_range(v, (size_t)(vend - v));
        r->n_headers++;
        if (!h->name || !h->value)
            return -1;
        p = eol + (eol < end ? 2 : 0);
    }
    return 0;
}

/* Joins the chunks of a chunked body; 1 complete, 0 incomplete, -1 malformed. */
static int decode_chunked(const uint8_t *p, size_t len, buf_t *out)
{
    size_t i = 0;
    for (;;) {
        const uint8_t *eol = NULL;
        for (size_t j = i; j + 1 < len; j++)
            if (p[j] == '\r' && p[j + 1] == '\n') {
                eol = p + j;
                break;
            }
        if (!eol)
            return 0;
        char *end;
        char size_line[32];
        size_t sl = (size_t)(eol - (p + i));
        if (sl == 0 || sl >= sizeof size_line)
            return -1;
        memcpy(size_line, p + i, sl);
        size_line[sl] = '\0';
        unsigned long long size = strtoull(size_line, &end, 16);
        if (end == size_line || (*end && *end != ';'))
            return -1;
        i = (size_t)(eol - p) + 2;
        if (size == 0) {
            /* trailers, then a blank line */
            for (;;) {
                if (i + 1 >= len)
                    return 0;
                if (p[i] == '\r' && p[i + 1] == '\n')
                    return 1;
                while (i + 1 < len && !(p[i] == '\r' && p[i + 1] == '\n'))
                    i++;
                i += 2;
            }
        }
        if (len - i < size + 2)
            return 0;
        buf_add(out, p + i, (size_t)size);
        if (p[i + size] != '\r' || p[i + size + 1] != '\n')
            return -1;
        i += (size_t)size + 2;
    }
}

/* Parses r->raw. eof: the server closed. Returns 1 complete, 0 needs more
 * bytes, -1 malformed. Skips interim 1xx responses. */
static int parse_response(harness_response *r, int is_head, int eof)
{
    size_t off = 0;
    for (;;) {
        clear_parsed(r);
        const uint8_t *start = r->raw + off;
        size_t avail = r->raw_len - off;
        const char *blank = find_crlfcrlf(start, avail);
        if (!blank)
            return eof ? -1 : 0;
        size_t head_len = (size_t)(blank - (const char *)start);
        if (parse_head(r, (const char *)start, head_len))
            return -1;
        size_t body_off = head_len + 4;
        if (r->status >= 100 && r->status < 200) {
            off += body_off;
            continue;
        }
        const uint8_t *body = start + body_off;
        size_t body_avail = avail - body_off;
        buf_t b = {0};
        int result;
        const char *te = harness_header(r, "transfer-encoding");
        const char *cl = harness_header(r, "content-length");
        if (is_head || r->status == 204 || r->status == 304) {
            result = 1;
        } else if (te && strcasestr(te, "chunked")) {
            result = decode_chunked(body, body_avail, &b);
            if (result == 0 && eof)
                result = -1;
        } else if (cl) {
            char *end;
            unsigned long long want = strtoull(cl, &end, 10);
            if (end == cl || *end)
                return -1;
            if (body_avail >= want) {
                buf_add(&b, body, (size_t)want);
                result = 1;
            } else {
                result = eof ? -1 : 0;
            }
        } else {
            if (eof)
                buf_add(&b, body, body_avail);
            result = eof ? 1 : 0;
        }
        if (b.failed) {
            free(b.data);
            return -1;
        }
        if (result == 1) {
            if (!b.data) {
                b.data = calloc(1, 1);
                if (!b.data)
                    return -1;
            }
            r->body = (uint8_t *)b.data;
            r->body_len = b.len;
        } else {
            free(b.data);
        }
        return result;
    }
}

/* Reads until the response is complete, the server closes, or the timeout. */
static int read_response(int fd, int is_head, harness_response *out)
{
    buf_t raw = {0};
    int result = 0;
    for (;;) {
        char chunk[16384];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n < 0)
                fprintf(stderr, "harness: recv: %s\n",
                        errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno));
            out->raw = (uint8_t *)raw.data;
            out->raw_len = raw.len;
            result = raw.failed ? -1 : parse_response(out, is_head, 1);
            break;
        }
        buf_add(&raw, chunk, (size_t)n);
        out->raw = (uint8_t *)raw.data;
        out->raw_len = raw.len;
        if (raw.failed) {
            result = -1;
            break;
        }
        result = parse_response(out, is_head, 0);
        if (result)
            break;
    }
    if (result != 1) {
        if (result == -1 || !out->status)
            fprintf(stderr, "harness: no complete HTTP response (%zu bytes received)\n",
                    out->raw_len);
        return -1;
    }
    return 0;
}

int harness_request(int port, const char *method, const char *path, const char *const *headers,
                    const void *body, size_t body_len, harness_response *out)
{
    memset(out, 0, sizeof *out);
    buf_t req = {0};
    buf_addf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n", method,
             path, port);
    int framed = 0;
    for (size_t i = 0; headers && headers[i]; i++) {
        if (!strncasecmp(headers[i], "content-length:", 15) ||
            !strncasecmp(headers[i], "transfer-encoding:", 18))
            framed = 1;
        buf_addf(&req, "%s\r\n", headers[i]);
    }
    if (body && !framed)
        buf_addf(&req, "Content-Length: %zu\r\n", body_len);
    buf_add(&req, "\r\n", 2);
    if (body)
        buf_add(&req, body, body_len);
    if (req.failed) {
        free(req.data);
        return -1;
    }
    int fd = connect_local(port);
    if (fd < 0) {
        free(req.data);
        return -1;
    }
    send_all(fd, req.data, req.len);
    free(req.data);
    int rc = read_response(fd, !strcmp(method, "HEAD"), out);
    close(fd);
    return rc;
}

static int send_and_read(int port, const void *bytes, size_t len, int half_close,
                         harness_response *out)
{
    memset(out, 0, sizeof *out);
    int fd = connect_local(port);
    if (fd < 0)
        return -1;
    send_all(fd, bytes, len);
    if (half_close)
        shutdown(fd, SHUT_WR); /* no more bytes are coming; lets the server finish */
    int rc = read_response(fd, 0, out);
    close(fd);
    return rc;
}

int harness_send_raw(int port, const void *bytes, size_t len, harness_response *out)
{
    return send_and_read(port, bytes, len, 1, out);
}

int harness_send_whole(int port, const void *bytes, size_t len, harness_response *out)
{
    return send_and_read(port, bytes, len, 0, out);
}

void harness_response_free(harness_response *r)
{
    clear_parsed(r);
    free(r->raw);
    r->raw = NULL;
    r->raw_len = 0;
}

const char *harness_header(const harness_response *r, const char *name)
{
    for (int i = 0; i < r->n_headers; i++)
        if (!strcasecmp(r->headers[i].name, name))
            return r->headers[i].value;
    return NULL;
}

cJSON *harness_json(const harness_response *r)
{
    if (!r->body)
        return NULL;
    return cJSON_ParseWithLength((const char *)r->body, r->body_len);
}

int harness_json_matrix(const cJSON *m, int rows, int cols, float *out)
{
    if (!cJSON_IsArray(m) || cJSON_GetArraySize(m) != rows) {
        fprintf(stderr, "harness: not an array of %d rows\n", rows);
        return -1;
    }
    int r = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, m) {
        if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != cols) {
            fprintf(stderr, "harness: row %d is not an array of %d numbers\n", r, cols);
            return -1;
        }
        int k = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, row) {
            if (!cJSON_IsNumber(v)) {
                fprintf(stderr, "harness: [%d][%d] is not a number\n", r, k);
                return -1;
            }
            out[(size_t)r * cols + k++] = (float)v->valuedouble;
        }
        r++;
    }
    return 0;
}

char *harness_json_rows(const float *v, int rows, int cols)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fputc('[', f);
    for (int r = 0; r < rows; r++) {
        fputs(r ? ",[" : "[", f);
        for (int k = 0; k < cols; k++)
            fprintf(f, k ? ",%.9g" : "%.9g", (double)v[(size_t)r * cols + k]);
        fputc(']', f);
    }
    fputc(']', f);
    if (fclose(f)) {
        free(text);
        return NULL;
    }
    return text;
}

int harness_use_repo_data(void)
{
    struct stat st;
    if (stat("data/mnist/t10k-images-idx3-ubyte", &st) != 0)
        return 0;
    char cwd[HARNESS_PATH_MAX], data[HARNESS_PATH_MAX + 8];
    if (!getcwd(cwd, sizeof cwd))
        return -1;
    snprintf(data, sizeof data, "%s/data", cwd);
    return setenv("VAED_DATA", data, 1) == 0 ? 1 : -1;
}

int harness_expect_error(const harness_response *r, int status, const char *code)
{
    const char *why = NULL;
    cJSON *root = harness_json(r); /* owned: freed below */
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(error, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(error, "message");
    const char *ctype = harness_header(r, "content-type");
    if (r->status != status)
        why = "wrong status";
    else if (!ctype || strncasecmp(ctype, "application/json", 16))
        why = "Content-Type is not application/json";
    else if (!cJSON_IsObject(root) || cJSON_GetArraySize(root) != 1 || !cJSON_IsObject(error))
        why = "body is not {\"error\":{...}}";
    else if (cJSON_GetArraySize(error) != 2 || !cJSON_IsString(c) || !cJSON_IsString(m))
        why = "error is not {\"code\":string,\"message\":string}";
    else if (strcmp(c->valuestring, code))
        why = "wrong error code";
    else if (!m->valuestring[0])
        why = "empty message";
    if (why)
        fprintf(stderr, "harness: expected %d %s, got %d: %s; body: %.*s\n", status, code,
                r->status, why, (int)(r->body_len < 2000 ? r->body_len : 2000),
                r->body ? (const char *)r->body : "");
    cJSON_Delete(root);
    return why == NULL;
}

/* ---- models --------------------------------------------------------------- */

void harness_small_config(vae_config *cfg)
{
    vae_config_default(cfg);
    cfg->n_hidden = 1;
    cfg->hidden[0] = 32;
    cfg->latent = 4;
}

int harness_model_bytes(const vae_config *cfg, uint64_t seed, uint8_t **out, size_t *out_len,
                        char *err, size_t errlen)
{
    vae_config small;
    if (!cfg) {
        harness_small_config(&small);
        cfg = &small;
    }
    vae_model m; /* owned: freed below */
    if (vae_init(&m, cfg, seed, err, errlen))
        return -1;
    int rc = ckpt_save_mem(&m, NULL, out, out_len, err, errlen);
    vae_free(&m);
    return rc ? -1 : 0;
}

int harness_put_model(const char *data_dir, const char *model, const vae_config *cfg,
                      uint64_t seed, registry_checkpoint_info *info, char *err, size_t errlen)
{
    vae_config small;
    if (!cfg) {
        harness_small_config(&small);
        cfg = &small;
    }
    char db_path[HARNESS_PATH_MAX], config_json[8192], sha[65];
    if (snprintf(db_path, sizeof db_path, "%s/registry.db", data_dir) >= (int)sizeof db_path ||
        make_dirs(data_dir)) {
        snprintf(err, errlen, "cannot create %s", data_dir);
        return -1;
    }
    if (ckpt_config_to_json(cfg, config_json, sizeof config_json) < 0) {
        snprintf(err, errlen, "config JSON does not fit");
        return -1;
    }
    uint8_t *blob = NULL; /* owned: freed at end */
    size_t len = 0;
    registry *reg = NULL; /* owned: closed at end */
    registry_checkpoint_info stored;
    int created = 0, rc = -1;
    if (harness_model_bytes(cfg, seed, &blob, &len, err, errlen))
        goto end;
    harness_sha256_hex(blob, len, sha);
    if (registry_open(db_path, &reg, err, errlen))
        goto end;
    if (registry_put_checkpoint(reg, model, blob, len, sha, config_json, NULL, "upload", &stored,
                                &created, err, errlen))
        goto end;
    if (info)
        *info = stored;
    rc = 0;
end:
    if (reg)
        registry_close(reg);
    free(blob);
    return rc;
}

static int write_idx(const char *dir, const char *split, int n)
{
    char path[HARNESS_PATH_MAX + 64];
    const uint8_t hdr[16] = {0, 0, 8, 3, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                             (uint8_t)n, 0, 0, 0, 28, 0, 0, 0, 28};
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte", dir, split);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fwrite(hdr, 1, sizeof hdr, f);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < 28 * 28; p++)
            fputc(((p / 28 + i) % 4) * 85, f);
    if (fclose(f))
        return -1;
    const uint8_t lhdr[8] = {0, 0, 8, 1, (uint8_t)(n >> 24), (uint8_t)(n >> 16),
                             (uint8_t)(n >> 8), (uint8_t)n};
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte", dir, split);
    f = fopen(path, "wb");
    if (!f)
        return -1;
    fwrite(lhdr, 1, sizeof lhdr, f);
    for (int i = 0; i < n; i++)
        fputc(i % 10, f);
    return fclose(f) ? -1 : 0;
}

int harness_write_idx_set(const char *dir, int n_train, int n_test)
{
    if (make_dirs(dir) || write_idx(dir, "train", n_train) || write_idx(dir, "t10k", n_test)) {
        fprintf(stderr, "harness: cannot write a data set in %s: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* The registry's SHA-256 (checked against the FIPS test vectors in
 * tests/unit/test_registry.c). */
void harness_sha256_hex(const void *data, size_t len, char hex[65])
{
    sha256_hex(data, len, hex);
}

int harness_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int bad = fwrite(data, 1, len, f) != len;
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

int harness_write_tiny_images(const char *dir)
{
    enum { N = 300, PIX = 64 };
    uint8_t *img = malloc(16 + N * PIX), lab[8 + N];
    if (!img)
        return -1;
    be32(img, 0x803);
    be32(img + 4, N);
    be32(img + 8, 8);
    be32(img + 12, 8);
    be32(lab, 0x801);
    be32(lab + 4, N);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < N * PIX; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        img[16 + i] = (uint8_t)(s >> 24);
    }
    for (int i = 0; i < N; i++)
        lab[8 + i] = (uint8_t)(i % 10);
    char path[HARNESS_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/tiny-images-idx3-ubyte", dir);
    int rc = harness_write_file(path, img, 16 + N * PIX);
    snprintf(path, sizeof path, "%s/tiny-labels-idx1-ubyte", dir);
    rc |= harness_write_file(path, lab, sizeof lab);
    free(img);
    return rc;
}


float *harness_png_pixels(const harness_response *r, int *h, int *w)
{
    const char *type = harness_header(r, "Content-Type");
    float *pixels = NULL; /* returned: the caller's */
    char err[256];
    if (!type || strcmp(type, "image/png") != 0)
        return NULL;
    if (image_decode_png(r->body, r->body_len, 1, &pixels, h, w, err, sizeof err) != VAE_OK)
        return NULL;
    return pixels;
}

struct sqlite3 *harness_lock_registry(const char *data_dir)
{
    char path[HARNESS_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/registry.db", data_dir);
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    /* the daemon may be writing at start (a sweep, an orphan check): wait for it */
    sqlite3_busy_timeout(db, 20000);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "harness: BEGIN IMMEDIATE on %s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

int harness_unlock_registry(struct sqlite3 *db)
{
    int rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

int harness_healthz_within(int port, int timeout_ms)
{
    int before = __atomic_exchange_n(&timeout_ms_setting, timeout_ms, __ATOMIC_RELAXED);
    harness_response r;
    int status = harness_request(port, "GET", "/healthz", NULL, NULL, 0, &r) ? 0 : r.status;
    harness_response_free(&r);
    harness_set_timeout_ms(before);
    return status;
}

double harness_metric(int port, const char *sample)
{
    harness_response r;
    double v = -1;
    if (!harness_request(port, "GET", "/metrics", NULL, NULL, 0, &r) && r.status == 200) {
        size_t n = strlen(sample);
        /* a sample starts a line and is followed by a space */
        for (const char *at = (const char *)r.body; (at = strstr(at, sample)); at += n)
            if ((at == (const char *)r.body || at[-1] == '\n') && at[n] == ' ') {
                v = strtod(at + n + 1, NULL);
                break;
            }
    }
    harness_response_free(&r);
    return v;
}
