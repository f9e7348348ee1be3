/* Black-box tests of hostile input: each test builds an attack itself, runs
 * it against a real vaed on 127.0.0.1 and checks what it cost (time, and
 * the daemon's peak memory read from /proc/PID/status after resetting it
 * through /proc/PID/clear_refs), what it was answered, and that the daemon
 * is alive and serving afterwards. Every attack is bounded in count and
 * time. Attack connections come from 127.0.0.2 (another loopback address),
 * so the per-address limit treats them as another client than the checks
 * from 127.0.0.1. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <zlib.h>

#include "engine/image.h"
#include "tests/lib/harness.h"

typedef struct {
    char dir[HARNESS_PATH_MAX];
    harness_daemon d;
    int port;
} fixture;

static fixture fx;

static int teardown(void **state);

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof fx);
    if (harness_tmpdir(fx.dir, sizeof fx.dir))
        goto fail;
    if (harness_put_model(fx.dir, "digits", NULL, 7, NULL, err, sizeof err)) {
        fprintf(stderr, "put model: %s\n", err);
        goto fail;
    }
    fx.port = harness_daemon_start(&fx.d, fx.dir, NULL);
    if (fx.port < 0)
        goto fail;
    *state = &fx;
    return 0;
fail:
    teardown(state);
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    if (fx.d.pid) {
        int rc = harness_daemon_stop(&fx.d);
        if (rc != 0)
            fprintf(stderr, "vaed exited with %d\n", rc);
    }
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    return 0;
}

/* ---- measuring -------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM"); -1 when unreadable. */
static long status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* Resets the daemon's peak RSS (VmHWM) to its current RSS and returns that. */
static long peak_reset(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("5", f);
    fclose(f);
    return status_kb(pid, "VmRSS");
}

/* How far the peak rose above base (kB), printed with what. */
static long peak_growth_kb(pid_t pid, long base, const char *what)
{
    long hwm = status_kb(pid, "VmHWM");
    assert_true(hwm > 0);
    print_message("%s: peak RSS %ld kB above the %ld kB before\n", what, hwm - base, base);
    return hwm - base;
}

static void expect_healthy(void)
{
    harness_response r;
    assert_int_equal(harness_request(fx.port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    /* and still computing */
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=2&seed=1", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
}

/* ---- PNGs ------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Appends one chunk to buf (at *len; the caller made room). */
static void put_chunk(uint8_t *buf, size_t *len, const char type[4], const uint8_t *data,
                      size_t n)
{
    uint8_t *c = buf + *len;
    put_be32(c, (uint32_t)n);
    memcpy(c + 4, type, 4);
    if (n)
        memcpy(c + 8, data, n);
    put_be32(c + 8 + n, (uint32_t)crc32(crc32(0L, Z_NULL, 0), c + 4, (uInt)(4 + n)));
    *len += 12 + n;
}

/* A grey 8-bit PNG of w x h whose IDAT inflates to all its (zero) rows, with
 * n_text zTXt chunks of text_bytes zeros each before it; malloc'd. */
static uint8_t *hostile_png(uint32_t w, uint32_t h, int n_text, size_t text_bytes, size_t *len)
{
    size_t raw = (size_t)h * (1 + (size_t)w);
    uint8_t *zeros = calloc(raw > text_bytes ? raw : text_bytes, 1);
    assert_non_null(zeros);
    uLongf idat_len = compressBound((uLong)raw), text_len = compressBound((uLong)text_bytes);
    uint8_t *idat = malloc(idat_len), *text = malloc(6 + text_len);
    assert_non_null(idat);
    assert_non_null(text);
    assert_int_equal(compress2(idat, &idat_len, zeros, (uLong)raw, 9), Z_OK);
    memcpy(text, "bomb", 5); /* keyword, NUL, compression method 0 */
    text[5] = 0;
    if (n_text)
        assert_int_equal(compress2(text + 6, &text_len, zeros, (uLong)text_bytes, 9), Z_OK);
    free(zeros);
    size_t cap = 8 + 25 + (size_t)n_text * (12 + 6 + text_len) + 12 + idat_len + 12;
    uint8_t *png = malloc(cap);
    assert_non_null(png);
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    *len = 8;
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8; /* depth; colour type 0 (grey), no interlace */
    put_chunk(png, len, "IHDR", ihdr, 13);
    for (int i = 0; i < n_text; i++)
        put_chunk(png, len, "zTXt", text, 6 + text_len);
    put_chunk(png, len, "IDAT", idat, idat_len);
    put_chunk(png, len, "IEND", NULL, 0);
    free(idat);
    free(text);
    return png;
}

/* A thousand compressed text chunks of 8 MiB of zeros each (a 7.7 MiB body
 * that libpng's defaults inflate to GBs): skipped unread, so the 28x28 image
 * behind them is encoded at once. */
static void test_png_text_bomb(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *png = hostile_png(28, 28, 1000, (size_t)8 << 20, &len);
    print_message("text bomb: %zu bytes\n", len);
    assert_true(len > ((size_t)7 << 20) && len < ((size_t)16 << 20));
    const char *headers[] = {"Content-Type: image/png", NULL};
    long base = peak_reset(fx.d.pid);
    double t0 = now_s();
    harness_response r;
    assert_int_equal(harness_request(fx.port, "POST", "/encode", headers, png, len, &r), 0);
    double took = now_s() - t0;
    print_message("text bomb: %d in %.3f s\n", r.status, took);
    assert_int_equal(r.status, 200);
    cJSON *root = harness_json(&r);
    assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "mu")));
    cJSON_Delete(root);
    harness_response_free(&r);
    assert_true(took < 1.0 * harness_slowdown());
    /* The body itself is buffered (8 MiB); nothing is inflated. */
    assert_true(peak_growth_kb(fx.d.pid, base, "text bomb") < 64 * 1024);
    free(png);
    expect_healthy();
}

/* A PNG of about 16 KiB that declares 4096x4096 and inflates to all of it:
 * refused from its IHDR, before any decoding, and fast. */
static void test_png_size_bomb(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *png = hostile_png(4096, 4096, 0, 0, &len);
    print_message("size bomb: %zu bytes\n", len);
    const char *headers[] = {"Content-Type: image/png", NULL};
    long base = peak_reset(fx.d.pid);
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        double t0 = now_s();
        harness_response r;
        assert_int_equal(harness_request(fx.port, "POST", "/encode", headers, png, len, &r), 0);
        double took = now_s() - t0;
        worst = took > worst ? took : worst;
        assert_true(harness_expect_error(&r, 422, "unprocessable"));
        cJSON *root = harness_json(&r);
        const char *m = cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(root, "error"), "message")
                            ->valuestring;
        assert_non_null(strstr(m, "4096x4096"));
        cJSON_Delete(root);
        harness_response_free(&r);
    }
    print_message("size bomb: slowest of 10 refusals %.1f ms\n", worst * 1e3);
    /* A full decode of 16 M pixels takes ~170 ms here; the refusal ~1. */
    assert_true(worst < 0.05 * harness_slowdown());
    assert_true(peak_growth_kb(fx.d.pid, base, "size bomb") < 16 * 1024);
    free(png);
    expect_healthy();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_text_bomb),
        cmocka_unit_test(test_png_size_bomb),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
