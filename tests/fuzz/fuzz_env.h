/* fuzz_env: what the fuzz targets share — a scratch directory, files made
 * from fuzz input, and a vaed daemon running inside the fuzzer's process.
 *
 *     int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
 *     {
 *         char path[FUZZ_ENV_PATH_MAX];
 *         fuzz_env_path(path, sizeof path, "images");          // under the scratch dir
 *         fuzz_env_write_file(path, data, size);
 *         ... load it ...
 *         fuzz_env_reply reply;
 *         fuzz_env_exchange(data, size, &reply);               // raw bytes to the daemon
 *         ... reply.status, reply.raw ...
 *         fuzz_env_reply_free(&reply);
 *     }
 *
 * Every target is built twice: with clang's libFuzzer (make fuzz, build-fuzz/)
 * and with gcc against tests/fuzz/replay_main.c, which replays the corpora
 * under tests/fuzz/corpus/ as a unit test (make test, make asan). So this
 * module and the targets are plain C11 that both compilers take.
 *
 * The scratch directory (/tmp/vaed-fuzz-XXXXXX) is made on first use and
 * removed at exit. The daemon is the real server_run (route table, handlers,
 * registry, compute pools) on 127.0.0.1 on a port of its own, started on
 * first use on a thread of this process, so coverage and sanitizer reports
 * from the handlers reach the fuzzer. It serves a registry holding one model
 * "digits" (28x28 grey, the harness's small MLP) and the data sets "mnist"
 * and "fashion" as 16 images each (VAED_DATA points at the scratch dir); it
 * runs no training workers, so a job the fuzzer submits stays queued, and
 * its token is FUZZ_ENV_TOKEN. The daemon keeps its state between inputs
 * (uploads, aliases, jobs): a crash replays from its input alone because
 * every input is checked against rules that hold in any registry state.
 *
 * Nothing here returns an error a target should handle: a broken scratch
 * dir or daemon aborts with a message, since no input could be judged.
 */
#ifndef FUZZ_ENV_H
#define FUZZ_ENV_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_ENV_PATH_MAX 1024
#define FUZZ_ENV_TOKEN "fuzz-token"

/* Aborts with a message when cond is false: the fuzzer records the input. */
#define FUZZ_CHECK(cond, ...) \
    do { \
        if (!(cond)) \
            fuzz_env_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
    } while (0)
void fuzz_env_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* The scratch directory (made on first call, removed at exit). */
const char *fuzz_env_scratch(void);
/* scratch/name into out; aborts when it does not fit. */
void fuzz_env_path(char *out, size_t outlen, const char *name);
/* Writes data to path (creating or truncating it); aborts on failure. */
void fuzz_env_write_file(const char *path, const void *data, size_t size);
/* rm -rf of path (which must be under the scratch dir), then mkdir. */
void fuzz_env_fresh_dir(const char *path);

/* A data root (made on first call, and $VAED_DATA from then on) holding
 * mnist and fashion as IDX files of 16 28x28 images with labels, train and
 * t10k. */
const char *fuzz_env_data_root(void);

/* The daemon's port (started on first call). */
int fuzz_env_port(void);

typedef struct {
    int status;       /* of the first response; 0 when the daemon closed without one */
    int event_stream; /* the first response is text/event-stream (read for a moment only) */
    uint8_t *raw;     /* owned: every byte received, plus a NUL */
    size_t raw_len;
    const uint8_t *body; /* into raw: the first response's body (NULL without one) */
    size_t body_len;     /* bytes of it received (all of it unless event_stream) */
} fuzz_env_reply;

/* Sends bytes to the daemon on a new connection, then a GET /healthz with
 * Connection: close, closes the sending side, and reads until the daemon
 * closes. Aborts when the daemon does not close
 * within FUZZ_ENV_REPLY_S seconds (a stalled request is a finding) or no
 * longer accepts connections. */
#define FUZZ_ENV_REPLY_S 20
void fuzz_env_exchange(const void *bytes, size_t len, fuzz_env_reply *out);
void fuzz_env_reply_free(fuzz_env_reply *r);
/* Checks what every response must be, whatever the request: a status line,
 * and for every error status a body of exactly
 * {"error":{"code":"...","message":"..."}} (not for HEAD, whose body MHD
 * leaves out); never 500 in any of the responses, since no fault is
 * injected here. */
void fuzz_env_check_reply(const fuzz_env_reply *r, int is_head);

/* Reads a little-endian u16 at p (p[0..2) must be in range). */
static inline unsigned fuzz_env_u16(const uint8_t *p) { return p[0] | (unsigned)p[1] << 8; }

#endif
