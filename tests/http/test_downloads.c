/* Downloads and registry writes off the polling threads (issue #12,
 * "polling threads only move bytes"): a checkpoint in PostgreSQL is
 * streamed in pieces, each fetched off the polling threads, so a slow
 * database holds no polling thread and a download costs a piece of memory,
 * not the checkpoint; alias writes wait for a locked SQLite file on a
 * worker, not on a polling thread.
 *
 * Real daemon on 127.0.0.1, real PostgreSQL (tests/lib/pg_server), real
 * SQLite file. The database is made slow honestly: the test's own
 * connection holds a lock the daemon's statements must wait for.
 * Orderings, not timings: /healthz must answer while the locked work has
 * not (on the old code it waited for the lock, so the test gives up after
 * 3 s and fails). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/lib/harness.h"
#include "tests/lib/pg_server.h"

static pg_server pg;

static int setup(void **state)
{
    (void)state;
    char err[256];
    if (pg_server_start(&pg, err, sizeof err)) {
        fprintf(stderr, "test_downloads: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pg_server_free(&pg);
    return 0;
}

/* A daemon on a fresh PostgreSQL database, with two polling threads (so a
 * few blocked requests block them all) and no per-IP limit. */
typedef struct {
    char dir[HARNESS_PATH_MAX];
    char url[256];
    harness_daemon d;
    int port;
    uint8_t *bytes; /* owned: the checkpoint uploaded as m v1 */
    size_t len;
    char sha256[65];
} pg_daemon;

/* hidden: the width of the small MLP (1300: some 8 MB, 8 pieces). */
static void pg_daemon_start(pg_daemon *f, int hidden)
{
    char err[256];
    memset(f, 0, sizeof *f);
    assert_int_equal(harness_tmpdir(f->dir, sizeof f->dir), 0);
    assert_int_equal(pg_server_new_db(&pg, f->url, sizeof f->url, err, sizeof err), 0);
    const char *const args[] = {"--registry", f->url, "--threads", "2", "--max-per-ip", "0",
                                NULL};
    f->port = harness_daemon_start(&f->d, f->dir, args);
    assert_true(f->port > 0);
    vae_config cfg;
    harness_small_config(&cfg);
    cfg.hidden[0] = hidden;
    assert_int_equal(harness_model_bytes(&cfg, 7, &f->bytes, &f->len, err, sizeof err), 0);
    harness_sha256_hex(f->bytes, f->len, f->sha256);
    const char *headers[] = {"Content-Type: application/octet-stream", NULL};
    harness_response r;
    assert_int_equal(harness_request(f->port, "POST", "/models/m/checkpoints", headers, f->bytes,
                                     f->len, &r),
                     0);
    assert_int_equal(r.status, 201);
    harness_response_free(&r);
}

static void pg_daemon_stop(pg_daemon *f)
{
    assert_int_equal(harness_daemon_stop(&f->d), 0);
    harness_rm_rf(f->dir);
    free(f->bytes);
}

/* One request on a thread of its own: a download of m v1 (expect set:
 * checked against those bytes) or an alias PUT (path set). */
typedef struct {
    int port;
    const pg_daemon *expect; /* GET /models/m/versions/1/file, or NULL */
    char path[64];           /* PUT path {"version": 1}, when expect is NULL */
    int status;
    int ok;   /* a download: 200, every byte, the right ETag */
    int done; /* atomic: 1 once answered */
} request;

static void *request_thread(void *arg)
{
    request *q = arg;
    const pg_daemon *f = q->expect;
    const char *headers[] = {"Content-Type: application/json", NULL};
    const char body[] = "{\"version\": 1}";
    harness_response r;
    int rc = f ? harness_request(q->port, "GET", "/models/m/versions/1/file", NULL, NULL, 0, &r)
               : harness_request(q->port, "PUT", q->path, headers, body, sizeof body - 1, &r);
    q->status = rc ? -1 : r.status;
    if (f && q->status == 200 && r.body_len == f->len) {
        char hex[65], etag[70];
        harness_sha256_hex(r.body, r.body_len, hex);
        snprintf(etag, sizeof etag, "\"%s\"", f->sha256);
        const char *tag = harness_header(&r, "etag");
        q->ok = strcmp(hex, f->sha256) == 0 && tag && strcmp(tag, etag) == 0;
    }
    harness_response_free(&r);
    __atomic_store_n(&q->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* A checkpoint of several pieces comes out of PostgreSQL byte for byte,
 * to several clients at once (their pieces interleave on the daemon's blob
 * connection), with its sha256 as ETag; a conditional GET is a 304. */
static void test_pg_download_identical(void **state)
{
    (void)state;
    enum { N = 4 };
    pg_daemon f;
    pg_daemon_start(&f, 1300);
    print_message("downloads: a checkpoint of %zu bytes\n", f.len);
    assert_true(f.len > 4 * (1u << 20));
    request dl[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        dl[i] = (request){.port = f.port, .expect = &f};
        assert_int_equal(pthread_create(&t[i], NULL, request_thread, &dl[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_true(dl[i].ok);
    }
    char inm[96];
    snprintf(inm, sizeof inm, "If-None-Match: \"%s\"", f.sha256);
    const char *headers[] = {inm, NULL};
    harness_response r;
    assert_int_equal(harness_request(f.port, "GET", "/models/m/versions/1/file", headers, NULL, 0,
                                     &r),
                     0);
    assert_int_equal(r.status, 304);
    harness_response_free(&r);
    pg_daemon_stop(&f);
}

/* The test's own PostgreSQL connection, which locks the daemon out of
 * blobs: every read of checkpoint bytes waits for its COMMIT. */
static PGconn *lock_blobs(const char *url)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *res = PQexec(c, "BEGIN; LOCK TABLE blobs IN ACCESS EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    return c;
}

static void unlock_blobs(PGconn *c)
{
    PGresult *res = PQexec(c, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(c);
}

/* GET /healthz, waiting at most 3 s: its status, 0 when it did not answer. */
/* Six downloads wait for a database that holds their bytes locked (more
 * than the daemon's two polling threads); /healthz answers meanwhile, and
 * once the lock goes every download completes byte for byte. */
static void test_pg_slow_database(void **state)
{
    (void)state;
    enum { N = 6 };
    pg_daemon f;
    pg_daemon_start(&f, 1300);
    PGconn *lock = lock_blobs(f.url);
    request dl[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        dl[i] = (request){.port = f.port, .expect = &f};
        assert_int_equal(pthread_create(&t[i], NULL, request_thread, &dl[i]), 0);
    }
    harness_sleep_ms(500); /* every download is in, waiting for the lock */
    int healthz = harness_healthz_within(f.port, 3000);
    int answered = 0;
    for (int i = 0; i < N; i++)
        answered += __atomic_load_n(&dl[i].done, __ATOMIC_ACQUIRE);
    /* Unlocked and joined before asserting: a failure must leave neither
     * the daemon stuck nor threads writing into this frame. */
    unlock_blobs(lock);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    print_message("slow database: /healthz %d while %d of %d downloads had an answer\n", healthz,
                  answered, N);
    assert_int_equal(healthz, 200);
    assert_int_equal(answered, 0); /* they did wait for the lock */
    for (int i = 0; i < N; i++)
        assert_true(dl[i].ok);
    pg_daemon_stop(&f);
}

/* A connection to the daemon with a small receive window, so that the
 * daemon's writes stall soon, and a GET of the file sent on it. */
static int stalled_download(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&to, sizeof to), 0);
    const char req[] = "GET /models/m/versions/1/file HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Connection: close\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)(sizeof req - 1));
    return fd;
}

/* kB of the daemon's resident memory. */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* kB the daemon's resident memory grows by while n clients have stopped
 * reading an 8 MB checkpoint; /healthz answers meanwhile. */
static long stalled_rss_growth_kb(int n)
{
    pg_daemon f;
    pg_daemon_start(&f, 1300);
    long before = rss_kb(f.d.pid);
    int *fds = calloc((size_t)n, sizeof *fds);
    assert_non_null(fds);
    for (int i = 0; i < n; i++)
        fds[i] = stalled_download(f.port);
    harness_sleep_ms(1500); /* each has sent what its window takes */
    long during = rss_kb(f.d.pid);
    print_message("stalled downloads: %d of %zu bytes: RSS %ld kB before, %ld kB during\n", n,
                  f.len, before, during);
    assert_int_equal(harness_healthz_within(f.port, 3000), 200);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    assert_int_equal(harness_healthz_within(f.port, 3000), 200);
    pg_daemon_stop(&f);
    return during - before;
}

/* 20 clients that stop reading an 8 MB checkpoint cost the daemon a piece
 * or two each, not the checkpoint each (160 MB when each download held it
 * all). */
static void test_pg_stalled_downloads_memory(void **state)
{
    (void)state;
    /* Pieces of 1 MiB (the prefetched one too) and MHD's buffers: some
     * 45 MB; whole copies: 160+. */
    assert_true(stalled_rss_growth_kb(20) < 64L * 1024 * harness_slowdown());
}

/* Prefetched pieces are bounded for all downloads together: 64 stalled
 * clients each hold the piece they read, and only 16 of them (16 MiB) a
 * prefetched one beside it: some 90 MB, where a prefetch each is
 * 145. */
static void test_pg_prefetch_bounded(void **state)
{
    (void)state;
    enum { N = 64 };
    long bound_mib = N + 16 + 24; /* the pieces read, the prefetch budget, MHD's buffers */
    assert_true(stalled_rss_growth_kb(N) < bound_mib * 1024 * harness_slowdown());
}

/* A checkpoint deleted while a client downloads it: the response ends
 * short (the connection closes before Content-Length) and what was sent is
 * the checkpoint's own first bytes; the daemon serves on. */
static void test_pg_deleted_mid_download(void **state)
{
    (void)state;
    pg_daemon f;
    pg_daemon_start(&f, 2600); /* some 16 MB: more than the sockets hold */
    int fd = stalled_download(f.port);
    harness_sleep_ms(500);
    harness_response r;
    assert_int_equal(harness_request(f.port, "DELETE", "/models/m/versions/1", NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 204);
    harness_response_free(&r);
    size_t cap = f.len + 65536, len = 0;
    char *all = malloc(cap);
    assert_non_null(all);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000 * harness_slowdown()) <= 0)
            break; /* the daemon neither sent nor closed: fails below */
        ssize_t n = recv(fd, all + len, cap - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        assert_true(len < cap);
    }
    close(fd);
    char *body = memmem(all, len, "\r\n\r\n", 4);
    assert_non_null(body);
    body += 4;
    size_t body_len = len - (size_t)(body - all);
    print_message("deleted mid-download: %zu of %zu bytes sent, then closed\n", body_len, f.len);
    assert_true(body_len < f.len);
    assert_memory_equal(body, f.bytes, body_len);
    free(all);
    assert_int_equal(harness_healthz_within(f.port, 3000), 200);
    assert_int_equal(harness_request(f.port, "GET", "/models/m/versions/1/file", NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 404);
    harness_response_free(&r);
    pg_daemon_stop(&f);
}

/* Another process holds the SQLite file's write lock; alias PUTs (more
 * than the two polling threads) wait for it, and /healthz, sent after
 * them, answers before any of them does. */
static void test_sqlite_writes_beside_locked_file(void **state)
{
    (void)state;
    enum { N = 4 };
    char dir[HARNESS_PATH_MAX], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    assert_int_equal(harness_put_model(dir, "m", NULL, 1, NULL, err, sizeof err), 0);
    harness_daemon d;
    const char *const args[] = {"--threads", "2", "--max-per-ip", "0", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);

    struct sqlite3 *other = harness_lock_registry(dir);
    assert_non_null(other);
    request a[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        a[i] = (request){.port = port};
        snprintf(a[i].path, sizeof a[i].path, "/models/m/aliases/a%d", i);
        assert_int_equal(pthread_create(&t[i], NULL, request_thread, &a[i]), 0);
    }
    harness_sleep_ms(500); /* every PUT is in, waiting for the file */
    int healthz = harness_healthz_within(port, 3000);
    int answered = 0;
    for (int i = 0; i < N; i++)
        answered += __atomic_load_n(&a[i].done, __ATOMIC_ACQUIRE);
    assert_int_equal(harness_unlock_registry(other), 0);
    print_message("locked file: /healthz %d while %d of %d alias PUTs had an answer\n", healthz,
                  answered, N);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(a[i].status, 200);
    assert_int_equal(healthz, 200);
    assert_int_equal(answered, 0);
    /* And the writes' answers still say what was written. */
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/models/m/versions/a3", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    assert_int_equal(harness_request(port, "DELETE", "/models/m/aliases/a3", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 204);
    harness_response_free(&r);
    assert_int_equal(harness_request(port, "DELETE", "/models/m/aliases/a3", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    harness_response_free(&r);
    assert_int_equal(harness_daemon_stop(&d), 0);
    harness_rm_rf(dir);
}

int main(void)
{
    if (!pg_server_available()) {
        fprintf(stderr, "test_downloads: PostgreSQL is not installed (make deps)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pg_download_identical),
        cmocka_unit_test(test_pg_slow_database),
        cmocka_unit_test(test_pg_stalled_downloads_memory),
        cmocka_unit_test(test_pg_prefetch_bounded),
        cmocka_unit_test(test_pg_deleted_mid_download),
        cmocka_unit_test(test_sqlite_writes_beside_locked_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
