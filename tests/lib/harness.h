/* harness: black-box testing of the real build/vaed over HTTP on 127.0.0.1.
 *
 *     char dir[HARNESS_PATH_MAX];
 *     harness_tmpdir(dir, sizeof dir);                      // mkdtemp under /tmp
 *     harness_put_model(dir, "digits", NULL, 1, NULL, err, sizeof err);
 *     harness_daemon d;
 *     int port = harness_daemon_start(&d, dir, NULL);       // < 0 on failure
 *     harness_response r;
 *     harness_request(port, "POST", "/sample?n=4", NULL, NULL, 0, &r);
 *     ... r.status, harness_header(&r, "content-type"), r.body, r.body_len ...
 *     harness_response_free(&r);
 *     int rc = harness_daemon_stop(&d);                     // exit status, 0 on success
 *     harness_rm_rf(dir);
 *
 * The binary is $VAED_BIN, else the vaed next to the test binary's tests/
 * directory (BUILD/tests/http_x -> BUILD/vaed, so `make asan` tests the
 * sanitized daemon), else build/vaed relative to the repository root where
 * tests run. Its stdout and stderr go to DIR/vaed.log; when it
 * fails to start or exits non-zero the log is copied to the test's stderr, so
 * a sanitizer report from the daemon shows up in the test output. A daemon
 * is killed (SIGKILL) when the test process that started it ends, so a
 * failed test leaves none behind. Timeouts are tripled when VAED_SANITIZED
 * is set.
 *
 * The client is a plain socket: one request per connection (Connection:
 * close), responses framed by Content-Length, chunked encoding or close.
 * Nothing here aborts: failures return -1 and print why to stderr.
 */
#ifndef HARNESS_H
#define HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cJSON.h>

#include "engine/vae.h"
#include "server/registry.h"

#define HARNESS_PATH_MAX 1024

typedef struct {
    pid_t pid;        /* 0 when not running */
    int port;
    int exit_status;  /* when harness_daemon_start failed because it exited: its status */
    char data_dir[HARNESS_PATH_MAX];
    char log_path[HARNESS_PATH_MAX];
} harness_daemon;

typedef struct {
    char *name;       /* as sent */
    char *value;      /* surrounding spaces trimmed */
} harness_header_field;

typedef struct {
    int status;                     /* 0 when no status line was received */
    char reason[64];
    int n_headers;
    harness_header_field *headers;  /* owned */
    uint8_t *body;                  /* owned; body_len bytes plus a NUL (chunks joined) */
    size_t body_len;
    uint8_t *raw;                   /* owned; every byte received */
    size_t raw_len;
} harness_response;

/* Milliseconds a request may wait for data before giving up (default 30000,
 * tripled under VAED_SANITIZED). */
void harness_set_timeout_ms(int ms);
/* The timeout scale for this run: 3 under sanitizers, else 1. */
int harness_slowdown(void);
/* Monotonic clock readings, and a plain sleep, for tests that poll. */
int64_t harness_now_ms(void);
double harness_now_s(void);
void harness_sleep_ms(int ms);

/* ---- the daemon ---- */

/* The vaed binary the harness starts (see above); may point into buf. */
const char *harness_vaed_bin(char *buf, size_t buflen);

/* Starts `VAED_BIN serve --listen 127.0.0.1:0 --data-dir DIR --port-file
 * DIR/port [extra_args...]` (extra_args NULL-terminated, may be NULL) and
 * waits up to 10 s for the port file. Returns the port, or -1. */
int harness_daemon_start(harness_daemon *d, const char *data_dir,
                         const char *const *extra_args);
/* SIGTERM, wait (SIGKILL after 5 s). Returns the exit code, 128 + signal when
 * killed by a signal, or -1 when there was no daemon or waiting failed. */
int harness_daemon_stop(harness_daemon *d);
/* SIGKILL and reap; returns like harness_daemon_stop. */
int harness_daemon_kill9(harness_daemon *d);
/* Everything the daemon wrote so far (malloc'd, NUL-terminated; NULL when
 * there is no log). */
char *harness_daemon_log(const harness_daemon *d);
/* A kB field of the daemon's /proc/PID/status ("VmRSS", "VmHWM"): its
 * value, or -1. */
long harness_daemon_status_kb(const harness_daemon *d, const char *field);

/* ---- the client ---- */

/* Sends one request. headers: NULL-terminated "Name: value" strings or NULL.
 * Host and Connection: close are added; Content-Length too when body is not
 * NULL and headers name neither Content-Length nor Transfer-Encoding.
 * Returns 0 when a whole response was read, -1 otherwise (out is then still
 * valid to inspect and free). */
int harness_request(int port, const char *method, const char *path, const char *const *headers,
                    const void *body, size_t body_len, harness_response *out);
/* Sends bytes as they are, then reads and parses whatever comes back until
 * the server closes or the timeout; returns 0 when a response was parsed.
 * harness_send_raw then half-closes (for requests the server must see end);
 * harness_send_whole keeps its side open, as curl does, for complete
 * requests that a worker answers while the connection is suspended (a FIN
 * read meanwhile lets libmicrohttpd close without an answer). */
int harness_send_raw(int port, const void *bytes, size_t len, harness_response *out);
int harness_send_whole(int port, const void *bytes, size_t len, harness_response *out);
void harness_response_free(harness_response *r);
/* GET /healthz giving up after timeout_ms (not the timeout set, which is
 * then restored): its status, or 0 when no answer came in time. For tests
 * asserting that a polling thread is free while other work waits. */
int harness_healthz_within(int port, int timeout_ms);
/* The value of one sample of port's /metrics, named in full with its labels
 * ("vaed_limit_refusals_total{limit=\"max_n\"}"); -1 when absent. */
double harness_metric(int port, const char *sample);
/* Case-insensitive lookup of the first header called name; NULL if none. */
const char *harness_header(const harness_response *r, const char *name);
/* The grey pixels of a PNG answer (Content-Type image/png) into a new
 * buffer of h*w floats in [0,1] that the caller frees; NULL when the answer
 * is not such a PNG. */
float *harness_png_pixels(const harness_response *r, int *h, int *w);
/* The body parsed as JSON (caller owns, cJSON_Delete), or NULL. */
cJSON *harness_json(const harness_response *r);
/* A JSON matrix of exactly rows arrays of cols numbers into out (rows *
 * cols floats): 0, or -1 with the first mismatch printed. */
int harness_json_matrix(const cJSON *m, int rows, int cols, float *out);
/* "[[a,b,...],[...]]" of rows x cols floats (row-major, %.9g), the
 * writer's side of harness_json_matrix: a new string the caller frees, or
 * NULL when out of memory. */
char *harness_json_rows(const float *v, int rows, int cols);
/* 1 when r is status with body exactly {"error":{"code":code,"message":<non-empty
 * string>}} and Content-Type application/json; else prints why and returns 0. */
int harness_expect_error(const harness_response *r, int status, const char *code);

/* ---- files and models ---- */

/* Points VAED_DATA (which daemons started later inherit) at the
 * repository's data/ when it holds MNIST, as tests run from the root: 1
 * then, 0 when MNIST is not there (VAED_DATA untouched), -1 on error. */
int harness_use_repo_data(void);

/* mkdtemp("/tmp/vaed-test-XXXXXX") into out; 0 or -1. */
int harness_tmpdir(char *out, size_t outlen);
/* rm -rf path (only paths under /tmp, as a guard); 0 or -1. */
int harness_rm_rf(const char *path);

/* A small MLP config for fast tests: the default 28x28 grey Bernoulli model
 * with one hidden layer of 32 and a latent of 4. */
void harness_small_config(vae_config *cfg);
/* Initialises a model from cfg (NULL: harness_small_config) with seed,
 * serialises it and registers it as the next version of model in
 * DATA_DIR/registry.db (created with DATA_DIR when absent). info (may be
 * NULL) receives the stored version. 0 or -1 with err. */
int harness_put_model(const char *data_dir, const char *model, const vae_config *cfg,
                      uint64_t seed, registry_checkpoint_info *info, char *err, size_t errlen);
/* Serialises a model as checkpoint bytes (*out owned by the caller). */
int harness_model_bytes(const vae_config *cfg, uint64_t seed, uint8_t **out, size_t *out_len,
                        char *err, size_t errlen);
/* A small data set in the layout of data/mnist, in dir (created): the IDX
 * files train-images-idx3-ubyte, train-labels-idx1-ubyte (n_train images)
 * and t10k-* (n_test), 28x28 grey, labels i % 10; images of stripes that
 * differ from one to the next. 0 or -1. */
int harness_write_idx_set(const char *dir, int n_train, int n_test);

/* Writes len bytes of data to path (created or truncated); 0 or -1. */
int harness_write_file(const char *path, const void *data, size_t len);
/* A tiny data set for training jobs: 300 pseudo-random 8x8 images and their
 * labels (tiny-images-idx3-ubyte, tiny-labels-idx1-ubyte) in dir. 0 or -1. */
int harness_write_tiny_images(const char *dir);
/* Lower-case hex SHA-256 of data into hex[65]. */
void harness_sha256_hex(const void *data, size_t len, char hex[65]);

/* ---- the registry file, held ---- */

struct sqlite3;
/* Another process's hold on DATA_DIR/registry.db's write lock (BEGIN
 * IMMEDIATE on a connection of the test's own): every write the daemon
 * makes waits for it, reads do not (WAL). Waits up to 20 s for writes the
 * daemon is making already (its start sweep). The handle, or NULL. */
struct sqlite3 *harness_lock_registry(const char *data_dir);
/* Commits and closes what harness_lock_registry returned: the daemon's
 * waiting writes go on. 0, or -1 when the commit failed (closed anyway). */
int harness_unlock_registry(struct sqlite3 *db);

#endif
