/* Black-box tests of the inference API: /sample, /encode, /decode,
 * /interpolate (POST and GET), /readyz, /metrics, /openapi.yaml, every output
 * format, a catalogue of bad requests, the 429 admission limit and slow
 * clients. Numbers are checked against the engine run in this process on the
 * same checkpoint bytes the daemon serves. GET /interpolate reads MNIST from
 * <repo>/data (VAED_DATA); its tests skip when data/mnist is absent. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/checkpoint.h"
#include "engine/dataset.h"
#include "engine/image.h"
#include "engine/rng.h"
#include "engine/vae.h"
#include "tests/lib/harness.h"

#define SEED 7
#define N_IMAGES 3
#define D 784
#define L 4 /* harness_small_config's latent */

typedef struct {
    char dir[HARNESS_PATH_MAX];
    char empty_dir[HARNESS_PATH_MAX];
    harness_daemon daemon, empty_daemon;
    int port, empty_port;
    vae_model ref;      /* the checkpoint the daemon serves, loaded here */
    int have_ref;
    float x[N_IMAGES * D]; /* test images in [0, 1] */
    int have_mnist;
    dataset mnist_test;
} fixture;

static fixture fx;

static int teardown(void **state);

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof fx);
    if ((fx.have_mnist = harness_use_repo_data()) < 0) /* VAED_DATA, inherited by the daemon */
        return -1;
    if (fx.have_mnist) {
        if (dataset_load_idx(&fx.mnist_test, "data/mnist/t10k-images-idx3-ubyte", NULL, err,
                             sizeof err)) {
            fprintf(stderr, "mnist: %s\n", err);
            return -1;
        }
        memcpy(fx.x, fx.mnist_test.x, sizeof fx.x);
    } else {
        rng_state r;
        rng_seed(&r, 99);
        for (int i = 0; i < N_IMAGES * D; i++)
            fx.x[i] = rng_uniform(&r);
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (harness_tmpdir(fx.dir, sizeof fx.dir) ||
        harness_tmpdir(fx.empty_dir, sizeof fx.empty_dir))
        goto fail;
    if (harness_put_model(fx.dir, "digits", NULL, SEED, NULL, err, sizeof err) ||
        harness_model_bytes(NULL, SEED, &bytes, &len, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        goto fail;
    }
    if (ckpt_load_mem(&fx.ref, bytes, len, NULL, err, sizeof err)) {
        fprintf(stderr, "ckpt_load_mem: %s\n", err);
        free(bytes);
        goto fail;
    }
    free(bytes);
    fx.have_ref = 1;
    /* One compute thread: the admission limit is then 32, easy to exceed. */
    const char *const args[] = {"--threads", "1", NULL};
    fx.port = harness_daemon_start(&fx.daemon, fx.dir, args);
    fx.empty_port = harness_daemon_start(&fx.empty_daemon, fx.empty_dir, NULL);
    if (fx.port < 0 || fx.empty_port < 0)
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
    harness_daemon_kill9(&fx.daemon);
    harness_daemon_kill9(&fx.empty_daemon);
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    if (fx.empty_dir[0])
        harness_rm_rf(fx.empty_dir);
    if (fx.have_ref)
        vae_free(&fx.ref);
    if (fx.have_mnist)
        dataset_free(&fx.mnist_test);
    return 0;
}

/* ---- helpers ---- */

static void ref_encode(const float *x, int n, float *mu, float *logvar)
{
    vae_workspace *ws = vae_workspace_new(&fx.ref, n);
    assert_non_null(ws);
    assert_int_equal(vae_encode(&fx.ref, ws, x, n, mu, logvar), VAE_OK);
    vae_workspace_free(ws);
}

static void ref_decode(const float *z, int n, float *x)
{
    vae_workspace *ws = vae_workspace_new(&fx.ref, n);
    assert_non_null(ws);
    assert_int_equal(vae_decode(&fx.ref, ws, z, n, x), VAE_OK);
    vae_workspace_free(ws);
}

/* "[[a,b,...],[...]]" of rows x cols floats (malloc'd). */
static char *json_rows(const float *v, int rows, int cols)
{
    char *text = harness_json_rows(v, rows, cols);
    assert_non_null(text);
    return text;
}

static char *json_row(const float *v, int cols)
{
    char *rows = json_rows(v, 1, cols);
    size_t len = strlen(rows);
    memmove(rows, rows + 1, len - 2);
    rows[len - 2] = '\0';
    return rows;
}

static int request(int port, const char *method, const char *path, const char *ctype,
                   const char *accept, const void *body, size_t len, harness_response *r)
{
    char ct[128], ac[256];
    const char *headers[3] = {NULL, NULL, NULL};
    int h = 0;
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        headers[h++] = ct;
    }
    if (accept) {
        snprintf(ac, sizeof ac, "Accept: %s", accept);
        headers[h++] = ac;
    }
    return harness_request(port, method, path, headers, body, len, r);
}

static cJSON *post_json_ok(const char *path, const char *body)
{
    harness_response r;
    assert_int_equal(request(fx.port, "POST", path, "application/json", NULL, body, strlen(body), &r),
                     0);
    if (r.status != 200)
        fail_msg("POST %s: %d %s", path, r.status, r.body);
    assert_string_equal(harness_header(&r, "Content-Type"), "application/json");
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    harness_response_free(&r);
    return root;
}

/* A JSON matrix of rows x cols numbers into out. */
static void read_matrix(const cJSON *m, int rows, int cols, float *out)
{
    assert_int_equal(harness_json_matrix(m, rows, cols, out), 0);
}

static void assert_close(const float *a, const float *b, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - (double)b[i]) > tol)
            fail_msg("element %zu: %.9g vs %.9g (tolerance %g)", i, (double)a[i], (double)b[i],
                     tol);
}

/* Parses a .npy (version 1.0, '<f4', C order) and checks its shape. */
static const float *npy_check(const harness_response *r, const int *shape, int ndim)
{
    assert_true(r->body_len >= 10);
    assert_memory_equal(r->body, "\x93NUMPY\x01\x00", 8);
    size_t hlen = r->body[8] | ((size_t)r->body[9] << 8);
    assert_int_equal((10 + hlen) % 64, 0);
    assert_true(10 + hlen <= r->body_len);
    char header[1024];
    assert_true(hlen < sizeof header);
    memcpy(header, r->body + 10, hlen);
    header[hlen] = '\0';
    assert_int_equal(header[hlen - 1], '\n');
    assert_non_null(strstr(header, "'descr': '<f4'"));
    assert_non_null(strstr(header, "'fortran_order': False"));
    char want[128] = "'shape': (";
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        size_t used = strlen(want);
        snprintf(want + used, sizeof want - used, "%d%s", shape[i], i + 1 < ndim ? ", " : ")");
        count *= (size_t)shape[i];
    }
    if (!strstr(header, want))
        fail_msg("npy header %s lacks %s", header, want);
    assert_int_equal(r->body_len, 10 + hlen + count * 4);
    return (const float *)(r->body + 10 + hlen); /* x86: little-endian already */
}

static float *png_pixels(const harness_response *r, int *h, int *w)
{
    float *pixels = harness_png_pixels(r, h, w);
    if (!pixels)
        fail_msg("not a PNG answer (Content-Type %s)", harness_header(r, "Content-Type"));
    return pixels;
}

static void expect_error(int port, const char *method, const char *path, const char *ctype,
                         const char *accept, const void *body, size_t len, int status,
                         const char *code)
{
    harness_response r;
    assert_int_equal(request(port, method, path, ctype, accept, body, len, &r), 0);
    if (!harness_expect_error(&r, status, code))
        fail_msg("%s %s (body %.80s): expected %d %s", method, path,
                 body ? (const char *)body : "", status, code);
    harness_response_free(&r);
}

static void expect_json_error(const char *path, const char *body, int status, const char *code)
{
    expect_error(fx.port, "POST", path, "application/json", NULL, body, strlen(body), status, code);
}

static void expect_healthy(int port)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
}

/* ---- /sample ---- */

static void test_sample_formats(void **state)
{
    (void)state;
    harness_response r;
    int h, w;
    assert_int_equal(request(fx.port, "POST", "/sample?n=16&seed=5", NULL, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    float *px = png_pixels(&r, &h, &w);
    assert_int_equal(h, 112);
    assert_int_equal(w, 112);
    free(px);
    harness_response_free(&r);

    /* JSON by Accept: z ~ N(0, I) decoded; x matches the engine on that z. */
    assert_int_equal(
        request(fx.port, "POST", "/sample?n=2&seed=5", NULL, "application/json", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "model")->valuestring, "digits");
    assert_int_equal(cJSON_GetObjectItem(root, "version")->valueint, 1);
    float z[2 * L], x[2 * D], want[2 * D];
    read_matrix(cJSON_GetObjectItem(root, "z"), 2, L, z);
    read_matrix(cJSON_GetObjectItem(root, "x"), 2, D, x);
    ref_decode(z, 2, want);
    assert_close(x, want, 2 * D, 1e-6);
    cJSON_Delete(root);
    harness_response_free(&r);

    /* The first draws of seed 5 are the same whatever n. */
    assert_int_equal(request(fx.port, "POST", "/sample?n=3&seed=5&format=npy", NULL, NULL, NULL, 0,
                             &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(harness_header(&r, "Content-Type"), "application/x-npy");
    int shape[4] = {3, 1, 28, 28};
    const float *npy = npy_check(&r, shape, 4);
    assert_close(npy, want, 2 * D, 1e-6);
    harness_response_free(&r);

    /* Accept with q-values: png refused, npy preferred. */
    assert_int_equal(request(fx.port, "POST", "/sample?n=1&seed=1", NULL,
                             "image/png;q=0, application/json;q=0.5, application/x-npy", NULL, 0,
                             &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(harness_header(&r, "Content-Type"), "application/x-npy");
    harness_response_free(&r);
    assert_int_equal(request(fx.port, "POST", "/sample?n=1", NULL, "image/*", NULL, 0, &r), 0);
    assert_string_equal(harness_header(&r, "Content-Type"), "image/png");
    harness_response_free(&r);

    /* The largest n, and temperature. */
    assert_int_equal(request(fx.port, "POST", "/sample?n=1024&seed=2", NULL, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    px = png_pixels(&r, &h, &w);
    assert_int_equal(w, 32 * 28);
    assert_int_equal(h, 32 * 28);
    free(px);
    harness_response_free(&r);
    assert_int_equal(request(fx.port, "POST", "/sample?n=1&seed=5&temperature=0.5&format=json",
                             NULL, NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    root = harness_json(&r);
    float zt[L];
    read_matrix(cJSON_GetObjectItem(root, "z"), 1, L, zt);
    for (int k = 0; k < L; k++)
        assert_true(fabsf(zt[k] - 0.5f * z[k]) < 1e-6f);
    cJSON_Delete(root);
    harness_response_free(&r);
}

static void test_sample_same_seed_same_bytes(void **state)
{
    (void)state;
    const char *paths[] = {"/sample?n=9&seed=77", "/sample?n=9&seed=77&format=npy",
                           "/sample?n=9&seed=77&format=json"};
    for (size_t i = 0; i < 3; i++) {
        harness_response a, b;
        assert_int_equal(request(fx.port, "POST", paths[i], NULL, NULL, NULL, 0, &a), 0);
        assert_int_equal(request(fx.port, "POST", paths[i], NULL, NULL, NULL, 0, &b), 0);
        assert_int_equal(a.status, 200);
        assert_int_equal(a.body_len, b.body_len);
        assert_memory_equal(a.body, b.body, a.body_len);
        harness_response_free(&a);
        harness_response_free(&b);
    }
}

/* ---- /encode and /decode ---- */

static void test_encode_matches_engine(void **state)
{
    (void)state;
    char *rows = json_rows(fx.x, N_IMAGES, D);
    char *body = malloc(strlen(rows) + 16);
    sprintf(body, "{\"x\":%s}", rows);
    cJSON *root = post_json_ok("/encode", body);
    float mu[N_IMAGES * L], logvar[N_IMAGES * L], want_mu[N_IMAGES * L], want_lv[N_IMAGES * L];
    read_matrix(cJSON_GetObjectItem(root, "mu"), N_IMAGES, L, mu);
    read_matrix(cJSON_GetObjectItem(root, "logvar"), N_IMAGES, L, logvar);
    assert_string_equal(cJSON_GetObjectItem(root, "model")->valuestring, "digits");
    ref_encode(fx.x, N_IMAGES, want_mu, want_lv);
    assert_close(mu, want_mu, N_IMAGES * L, 1e-6);
    assert_close(logvar, want_lv, N_IMAGES * L, 1e-6);
    cJSON_Delete(root);
    free(body);
    free(rows);
}

/* Every way JSON may spell a pixel value reads as the same float: plain and
 * 17-digit decimals, exponents, 20 fraction digits, "-0", "1.0", "1E0",
 * spaces around them. The same numbers under the key spelled "\u0078" (valid
 * JSON the fast reader leaves to cJSON) give the very same answer: the two
 * readers agree. */
static void test_encode_number_spellings(void **state)
{
    (void)state;
    float x[D];
    memcpy(x, fx.x, sizeof x);
    static const char *const edges[] = {"0", "1", "-0", "1.0", "1E0", "0e5", "0.0"};
    static const float edge_values[] = {0, 1, 0, 1, 1, 0, 0};
    size_t cap = (size_t)D * 40 + 64, len = 0;
    char *body = malloc(cap);
    len += (size_t)snprintf(body + len, cap - len, " { \"x\" : [ [");
    for (int k = 0; k < D; k++) {
        const char *sep = k ? "," : "";
        if (k < 7) {
            x[k] = edge_values[k];
            len += (size_t)snprintf(body + len, cap - len, "%s%s", sep, edges[k]);
            continue;
        }
        switch (k % 4) {
        case 0: len += (size_t)snprintf(body + len, cap - len, "%s%.17g", sep, x[k]); break;
        case 1: len += (size_t)snprintf(body + len, cap - len, "%s%.9e", sep, x[k]); break;
        case 2: len += (size_t)snprintf(body + len, cap - len, "%s%.20f", sep, x[k]); break;
        default: len += (size_t)snprintf(body + len, cap - len, "%s \n %.9g\t", sep, x[k]); break;
        }
    }
    snprintf(body + len, cap - len, "] ] }\n");
    cJSON *root = post_json_ok("/encode", body);
    float mu[L], logvar[L], want_mu[L], want_lv[L];
    read_matrix(cJSON_GetObjectItem(root, "mu"), 1, L, mu);
    read_matrix(cJSON_GetObjectItem(root, "logvar"), 1, L, logvar);
    ref_encode(x, 1, want_mu, want_lv);
    assert_close(mu, want_mu, L, 1e-6);
    assert_close(logvar, want_lv, L, 1e-6);

    char *escaped = malloc(strlen(body) + 8);
    char *key = strstr(body, "\"x\"");
    assert_non_null(key);
    sprintf(escaped, "%.*s\"\\u0078\"%s", (int)(key - body), body, key + 3);
    cJSON *slow = post_json_ok("/encode", escaped);
    char *a = cJSON_PrintUnformatted(root), *b = cJSON_PrintUnformatted(slow);
    assert_string_equal(a, b);
    free(a);
    free(b);
    cJSON_Delete(slow);
    free(escaped);
    cJSON_Delete(root);
    free(body);
}

/* A PNG of image i, and the pixels it holds after 8-bit quantisation. */
static uint8_t *png_of(int i, size_t *len, float *quantised)
{
    uint8_t *png = NULL;
    char err[256];
    assert_int_equal(image_encode_grid_png(fx.x + i * D, 1, 1, 28, 28, 1, &png, len, err,
                                           sizeof err),
                     VAE_OK);
    float *px = NULL;
    int h, w;
    assert_int_equal(image_decode_png(png, *len, 1, &px, &h, &w, err, sizeof err), VAE_OK);
    memcpy(quantised, px, D * sizeof *px);
    free(px);
    return png;
}

static char *base64(const uint8_t *data, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < len)
            v |= data[i + 2];
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

static void test_encode_png_and_base64(void **state)
{
    (void)state;
    size_t len0, len1;
    float q[2 * D];
    uint8_t *png0 = png_of(0, &len0, q);
    uint8_t *png1 = png_of(1, &len1, q + D);
    float want_mu[2 * L], want_lv[2 * L], mu[2 * L];
    ref_encode(q, 2, want_mu, want_lv);

    harness_response r;
    assert_int_equal(request(fx.port, "POST", "/encode", "image/png", NULL, png0, len0, &r), 0);
    assert_int_equal(r.status, 200);
    cJSON *root = harness_json(&r);
    read_matrix(cJSON_GetObjectItem(root, "mu"), 1, L, mu);
    assert_close(mu, want_mu, L, 1e-6);
    cJSON_Delete(root);
    harness_response_free(&r);

    char *b0 = base64(png0, len0), *b1 = base64(png1, len1);
    char *body = malloc(strlen(b0) + strlen(b1) + 64);
    sprintf(body, "{\"png_base64\":[\"%s\",\"data:image/png;base64,%s\"]}", b0, b1);
    root = post_json_ok("/encode", body);
    read_matrix(cJSON_GetObjectItem(root, "mu"), 2, L, mu);
    assert_close(mu, want_mu, 2 * L, 1e-6);
    cJSON_Delete(root);

    /* An RGB image is converted to grey; a 32x32 one is refused naming both sizes. */
    float rgb[3 * D];
    for (int c = 0; c < 3; c++)
        memcpy(rgb + c * D, fx.x, D * sizeof *rgb);
    uint8_t *png = NULL;
    size_t len;
    char err[256];
    assert_int_equal(image_encode_grid_png(rgb, 1, 3, 28, 28, 1, &png, &len, err, sizeof err), 0);
    assert_int_equal(request(fx.port, "POST", "/encode", "image/png", NULL, png, len, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    free(png);
    float big[32 * 32] = {0};
    assert_int_equal(image_encode_grid_png(big, 1, 1, 32, 32, 1, &png, &len, err, sizeof err), 0);
    assert_int_equal(request(fx.port, "POST", "/encode", "image/png", NULL, png, len, &r), 0);
    assert_true(harness_expect_error(&r, 422, "unprocessable"));
    assert_non_null(strstr((const char *)r.body, "32x32"));
    assert_non_null(strstr((const char *)r.body, "28x28"));
    harness_response_free(&r);
    free(png);
    free(body);
    free(b0);
    free(b1);
    free(png0);
    free(png1);
}

static void test_decode_of_mu_is_reconstruction(void **state)
{
    (void)state;
    float mu[N_IMAGES * L], lv[N_IMAGES * L], recon[N_IMAGES * D];
    ref_encode(fx.x, N_IMAGES, mu, lv);
    ref_decode(mu, N_IMAGES, recon);
    /* mu as the daemon gives it, back to /decode */
    char *rows = json_rows(fx.x, N_IMAGES, D);
    char *body = malloc(strlen(rows) + 16);
    sprintf(body, "{\"x\":%s}", rows);
    cJSON *root = post_json_ok("/encode", body);
    char *mu_text = cJSON_PrintUnformatted(cJSON_GetObjectItem(root, "mu"));
    char *zbody = malloc(strlen(mu_text) + 16);
    sprintf(zbody, "{\"z\":%s}", mu_text);

    harness_response r;
    assert_int_equal(request(fx.port, "POST", "/decode?format=npy", "application/json", NULL, zbody,
                             strlen(zbody), &r),
                     0);
    assert_int_equal(r.status, 200);
    int shape[4] = {N_IMAGES, 1, 28, 28};
    assert_close(npy_check(&r, shape, 4), recon, N_IMAGES * D, 1e-6);
    harness_response_free(&r);

    /* By default a PNG grid: the engine's reconstruction drawn the same way. */
    assert_int_equal(request(fx.port, "POST", "/decode", "application/json", NULL, zbody,
                             strlen(zbody), &r),
                     0);
    uint8_t *png = NULL;
    size_t len;
    char err[256];
    assert_int_equal(image_encode_grid_png(recon, N_IMAGES, 1, 28, 28, 0, &png, &len, err,
                                           sizeof err),
                     0);
    int h, w;
    float *got = png_pixels(&r, &h, &w), *want = NULL;
    assert_int_equal(image_decode_png(png, len, 1, &want, &h, &w, err, sizeof err), 0);
    assert_close(got, want, (size_t)h * (size_t)w, 1.0 / 255 + 1e-6);
    free(got);
    free(want);
    free(png);
    harness_response_free(&r);
    free(zbody);
    free(mu_text);
    cJSON_Delete(root);
    free(body);
    free(rows);
}

/* ---- /interpolate ---- */

static void check_walk(const char *mode)
{
    float mu[2 * L], lv[2 * L], ends_x[2 * D];
    ref_encode(fx.x, 2, mu, lv);
    ref_decode(mu, 2, ends_x);
    char *a = json_row(fx.x, D);
    char *zb = json_row(mu + L, L);
    char *body = malloc(strlen(a) + strlen(zb) + 128);
    sprintf(body, "{\"from\":{\"x\":%s},\"to\":{\"z\":%s},\"steps\":6,\"mode\":\"%s\"}", a, zb,
            mode);
    char path[64];
    snprintf(path, sizeof path, "/interpolate?format=json");
    cJSON *root = post_json_ok(path, body);
    float z[6 * L], x[6 * D];
    read_matrix(cJSON_GetObjectItem(root, "z"), 6, L, z);
    read_matrix(cJSON_GetObjectItem(root, "x"), 6, D, x);
    assert_close(z, mu, L, 1e-6);                  /* starts at mu(from) */
    assert_close(z + 5 * L, mu + L, L, 1e-6);      /* ends at the given z */
    assert_close(x, ends_x, D, 1e-5);              /* decoded ends */
    assert_close(x + 5 * D, ends_x + D, D, 1e-5);
    /* Every point against the walk computed here independently. */
    const float *a0 = mu, *b0 = mu + L;
    double na = 0, nb = 0, dot = 0;
    for (int k = 0; k < L; k++) {
        na += (double)a0[k] * a0[k];
        nb += (double)b0[k] * b0[k];
        dot += (double)a0[k] * b0[k];
    }
    double omega = acos(dot / sqrt(na * nb));
    for (int s = 0; s < 6; s++) {
        double t = s / 5.0;
        for (int k = 0; k < L; k++) {
            double want = !strcmp(mode, "slerp")
                              ? (sin((1 - t) * omega) * a0[k] + sin(t * omega) * b0[k]) / sin(omega)
                              : (1 - t) * a0[k] + t * b0[k];
            if (fabs(z[s * L + k] - want) > 1e-5)
                fail_msg("%s step %d dim %d: %g vs %g", mode, s, k, (double)z[s * L + k], want);
        }
    }
    cJSON_Delete(root);

    /* The PNG strip: one row of 6; first and last tiles are the decoded ends. */
    harness_response r;
    assert_int_equal(request(fx.port, "POST", "/interpolate", "application/json", NULL, body,
                             strlen(body), &r),
                     0);
    assert_int_equal(r.status, 200);
    int h, w;
    float *px = png_pixels(&r, &h, &w);
    assert_int_equal(h, 28);
    assert_int_equal(w, 6 * 28);
    for (int y = 0; y < 28; y++)
        for (int c = 0; c < 28; c++) {
            assert_true(fabsf(px[y * w + c] - ends_x[y * 28 + c]) <= 1.0f / 255 + 1e-4f);
            assert_true(fabsf(px[y * w + 5 * 28 + c] - ends_x[D + y * 28 + c]) <=
                        1.0f / 255 + 1e-4f);
        }
    free(px);
    harness_response_free(&r);
    free(body);
    free(a);
    free(zb);
}

static void test_interpolate_post_lerp_slerp(void **state)
{
    (void)state;
    check_walk("lerp");
    check_walk("slerp");
}

static void test_interpolate_get(void **state)
{
    (void)state;
    if (!fx.have_mnist)
        skip();
    const char *path = "/interpolate?from=mnist:test:0&to=mnist:test:1&steps=10&mode=slerp";
    harness_response r, again;
    assert_int_equal(harness_request(fx.port, "GET", path, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    int h, w;
    float *px = png_pixels(&r, &h, &w);
    assert_int_equal(w, 280);
    assert_int_equal(h, 28);
    /* The first tile is the decoded mu of test image 0 (fx.x holds it). */
    float mu[2 * L], lv[2 * L], ends[2 * D];
    ref_encode(fx.x, 2, mu, lv);
    ref_decode(mu, 2, ends);
    for (int y = 0; y < 28; y++)
        for (int c = 0; c < 28; c++)
            assert_true(fabsf(px[y * w + c] - ends[y * 28 + c]) <= 1.0f / 255 + 1e-4f);
    free(px);
    const char *etag = harness_header(&r, "ETag");
    assert_non_null(etag);
    assert_true(etag[0] == '"');
    assert_non_null(harness_header(&r, "Cache-Control"));
    assert_int_equal(harness_request(fx.port, "GET", path, NULL, NULL, 0, &again), 0);
    assert_int_equal(again.body_len, r.body_len);
    assert_memory_equal(again.body, r.body, r.body_len);
    assert_string_equal(harness_header(&again, "ETag"), etag);
    harness_response_free(&again);

    char inm[128];
    snprintf(inm, sizeof inm, "If-None-Match: W/\"x\", %s", etag);
    const char *const headers[] = {inm, NULL};
    assert_int_equal(harness_request(fx.port, "GET", path, headers, NULL, 0, &again), 0);
    assert_int_equal(again.status, 304);
    assert_int_equal(again.body_len, 0);
    assert_string_equal(harness_header(&again, "ETag"), etag);
    harness_response_free(&again);
    /* Other parameters, another tag. */
    assert_int_equal(harness_request(fx.port, "GET",
                                     "/interpolate?from=mnist:test:0&to=mnist:test:1&steps=9",
                                     headers, NULL, 0, &again),
                     0);
    assert_int_equal(again.status, 200);
    assert_true(strcmp(harness_header(&again, "ETag"), etag) != 0);
    harness_response_free(&again);
    /* A pinned version may be cached for good. */
    assert_int_equal(harness_request(fx.port, "GET",
                                     "/interpolate?from=mnist:test:0&to=mnist:train:1&model=digits"
                                     "&version=1&format=npy",
                                     NULL, NULL, 0, &again),
                     0);
    assert_int_equal(again.status, 200);
    int shape[4] = {8, 1, 28, 28};
    npy_check(&again, shape, 4);
    assert_non_null(strstr(harness_header(&again, "Cache-Control"), "immutable"));
    harness_response_free(&again);
    harness_response_free(&r);

    expect_error(fx.port, "GET", "/interpolate?from=mnist:test:99999&to=mnist:test:1", NULL, NULL,
                 NULL, 0, 404, "not_found");
    expect_error(fx.port, "GET", "/interpolate?from=mnist:test:1&to=mnist:valid:1", NULL, NULL,
                 NULL, 0, 400, "bad_request");
    expect_error(fx.port, "GET", "/interpolate?from=..%2Fetc:test:1&to=mnist:test:1", NULL, NULL,
                 NULL, 0, 400, "bad_request");
    expect_error(fx.port, "GET", "/interpolate?from=mnist:test:1", NULL, NULL, NULL, 0, 400,
                 "bad_request");
    expect_error(fx.port, "GET", "/interpolate?from=mnist:test:1&to=mnist:test:2&steps=257", NULL,
                 NULL, NULL, 0, 400, "bad_request");
    expect_error(fx.port, "GET", "/interpolate?from=mnist:test:1&to=mnist:test:2&mode=cubic", NULL,
                 NULL, NULL, 0, 400, "bad_request");
}

/* ---- the response cache of GET /interpolate ---- */

/* The value of the unlabelled sample NAME in port's /metrics (-1 when absent). */
static double metric(int port, const char *name)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\n%s ", name);
    const char *at = strstr((const char *)r.body, pattern);
    double v = at ? strtod(at + strlen(pattern), NULL) : -1;
    harness_response_free(&r);
    return v;
}

typedef struct {
    double hits, misses;
} cache_counts;

static cache_counts counts(int port)
{
    cache_counts c = {metric(port, "vaed_response_cache_hits_total"),
                      metric(port, "vaed_response_cache_misses_total")};
    assert_true(c.hits >= 0 && c.misses >= 0);
    return c;
}

/* Expects the counters to have moved by exactly hits and misses since *before,
 * then moves *before on. */
static void expect_counts(int port, cache_counts *before, int hits, int misses, const char *what)
{
    cache_counts now = counts(port);
    if (now.hits != before->hits + hits || now.misses != before->misses + misses)
        fail_msg("%s: hits %g -> %g (want +%d), misses %g -> %g (want +%d)", what, before->hits,
                 now.hits, hits, before->misses, now.misses, misses);
    *before = now;
}

static void get_ok(int port, const char *path, harness_response *r)
{
    assert_int_equal(harness_request(port, "GET", path, NULL, NULL, 0, r), 0);
    if (r->status != 200)
        fail_msg("GET %s: %d %.200s", path, r->status, r->body ? (const char *)r->body : "");
}

/* Same status, same bytes, the same headers in the same order but Date. */
static void assert_same_response(const harness_response *a, const harness_response *b)
{
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->body_len, b->body_len);
    assert_memory_equal(a->body, b->body, a->body_len);
    assert_int_equal(a->n_headers, b->n_headers);
    for (int i = 0; i < a->n_headers; i++) {
        assert_string_equal(a->headers[i].name, b->headers[i].name);
        if (strcasecmp(a->headers[i].name, "Date"))
            assert_string_equal(a->headers[i].value, b->headers[i].value);
    }
}

static int same_bytes(const harness_response *a, const harness_response *b)
{
    return a->body_len == b->body_len && !memcmp(a->body, b->body, a->body_len);
}

/* The same URL twice: one computation, then the same response from the
 * cache; other parameters are other entries; errors are never kept. */
static void test_interpolate_cache(void **state)
{
    (void)state;
    if (!fx.have_mnist)
        skip();
    cache_counts n = counts(fx.port);
    assert_true(metric(fx.port, "vaed_response_cache_bytes") >= 0);
    /* steps 7 goes through the compute pool, steps 3 runs on the polling thread. */
    const char *const paths[] = {
        "/interpolate?from=mnist:test:5&to=mnist:test:6&steps=7",
        "/interpolate?from=mnist:test:5&to=mnist:test:6&steps=3",
    };
    for (size_t p = 0; p < 2; p++) {
        harness_response first, again;
        double bytes = metric(fx.port, "vaed_response_cache_bytes");
        get_ok(fx.port, paths[p], &first);
        expect_counts(fx.port, &n, 0, 1, "first GET");
        /* The body, its key and a little bookkeeping. */
        double grown = metric(fx.port, "vaed_response_cache_bytes") - bytes;
        if (grown < (double)first.body_len || grown > (double)first.body_len + 512)
            fail_msg("the cache grew by %g bytes for a body of %zu", grown, first.body_len);
        get_ok(fx.port, paths[p], &again);
        expect_counts(fx.port, &n, 1, 0, "second GET");
        assert_same_response(&first, &again);
        assert_non_null(harness_header(&again, "ETag"));
        assert_string_equal(harness_header(&again, "Cache-Control"), "public, no-cache");
        assert_string_equal(harness_header(&again, "X-Model"), "digits");
        assert_string_equal(harness_header(&again, "X-Model-Version"), "1");
        harness_response_free(&again);
        /* And a third time, from another thread of the pool perhaps: still the same. */
        get_ok(fx.port, paths[p], &again);
        expect_counts(fx.port, &n, 1, 0, "third GET");
        assert_same_response(&first, &again);
        harness_response_free(&again);
        harness_response_free(&first);
    }

    /* Each parameter makes another entry: a miss, other bytes, another tag. */
    harness_response base;
    get_ok(fx.port, paths[0], &base);
    expect_counts(fx.port, &n, 1, 0, "base");
    const char *const others[] = {
        "/interpolate?from=mnist:test:5&to=mnist:test:6&steps=8",
        "/interpolate?from=mnist:test:5&to=mnist:test:6&steps=7&mode=slerp",
        "/interpolate?from=mnist:test:5&to=mnist:test:9&steps=7",
        "/interpolate?from=mnist:train:5&to=mnist:test:6&steps=7",
        "/interpolate?from=mnist:test:5&to=mnist:test:6&steps=7&format=npy",
        "/interpolate?from=mnist:test:5&to=mnist:test:6&steps=7&format=json",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        harness_response r, again;
        get_ok(fx.port, others[i], &r);
        expect_counts(fx.port, &n, 0, 1, others[i]);
        if (same_bytes(&r, &base))
            fail_msg("%s answered the bytes of %s", others[i], paths[0]);
        assert_true(strcmp(harness_header(&r, "ETag"), harness_header(&base, "ETag")) != 0);
        get_ok(fx.port, others[i], &again);
        expect_counts(fx.port, &n, 1, 0, others[i]);
        assert_same_response(&r, &again);
        harness_response_free(&again);
        harness_response_free(&r);
    }
    /* Accept picks the format like ?format= does, and shares its entry. */
    harness_response r;
    const char *const accept_npy[] = {"Accept: application/x-npy", NULL};
    assert_int_equal(harness_request(fx.port, "GET", paths[0], accept_npy, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(harness_header(&r, "Content-Type"), "application/x-npy");
    expect_counts(fx.port, &n, 1, 0, "Accept: application/x-npy");
    harness_response_free(&r);

    /* The same checkpoint pinned: the same entry, but its own Cache-Control. */
    get_ok(fx.port,
           "/interpolate?from=mnist:test:5&to=mnist:test:6&steps=7&model=digits&version=1", &r);
    expect_counts(fx.port, &n, 1, 0, "pinned");
    assert_true(same_bytes(&r, &base));
    assert_string_equal(harness_header(&r, "ETag"), harness_header(&base, "ETag"));
    assert_string_equal(harness_header(&r, "Cache-Control"), "public, max-age=31536000, immutable");
    harness_response_free(&r);

    /* If-None-Match with the tag still answers 304, without a body. */
    char inm[128];
    snprintf(inm, sizeof inm, "If-None-Match: %s", harness_header(&base, "ETag"));
    const char *const conditional[] = {inm, NULL};
    assert_int_equal(harness_request(fx.port, "GET", paths[0], conditional, NULL, 0, &r), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    harness_response_free(&r);
    /* A tag that does not match is answered from the cache. */
    const char *const stale_tag[] = {"If-None-Match: \"0123\"", NULL};
    assert_int_equal(harness_request(fx.port, "GET", paths[0], stale_tag, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    expect_counts(fx.port, &n, 1, 0, "If-None-Match of another tag");
    assert_same_response(&r, &base);
    harness_response_free(&r);
    harness_response_free(&base);

    /* An error is computed again each time, never kept. */
    for (int i = 0; i < 2; i++) {
        expect_error(fx.port, "GET", "/interpolate?from=mnist:test:99999&to=mnist:test:1&steps=7",
                     NULL, NULL, NULL, 0, 404, "not_found");
        expect_counts(fx.port, &n, 0, 1, "404");
    }
}

/* Pushing, deleting and pushing again: "latest" never gets a strip of a
 * checkpoint it no longer names, and --response-cache-mb 0 keeps nothing. */

/* POSTs a checkpoint as a new version of "digits" (201 expected). */
static void push_digits(int port, const uint8_t *bytes, size_t len)
{
    const char *const octets[] = {"Content-Type: application/octet-stream", NULL};
    harness_response r;
    assert_int_equal(harness_request(port, "POST", "/models/digits/checkpoints", octets, bytes, len,
                                     &r),
                     0);
    assert_int_equal(r.status, 201);
    harness_response_free(&r);
}
static void test_interpolate_cache_follows_registry(void **state)
{
    (void)state;
    if (!fx.have_mnist)
        skip();
    char dir[HARNESS_PATH_MAX], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    assert_int_equal(harness_put_model(dir, "digits", NULL, 1, NULL, err, sizeof err), 0);
    harness_daemon d;
    int port = harness_daemon_start(&d, dir, NULL);
    assert_true(port > 0);
    cache_counts n = counts(port);
    const char *latest = "/interpolate?from=mnist:test:2&to=mnist:test:3&steps=6&format=json";
    const char *v1 = "/interpolate?from=mnist:test:2&to=mnist:test:3&steps=6&format=json"
                     "&model=digits&version=1";
    harness_response a, b, r;
    get_ok(port, latest, &a);
    expect_counts(port, &n, 0, 1, "v1");
    assert_string_equal(harness_header(&a, "X-Model-Version"), "1");
    get_ok(port, latest, &r);
    expect_counts(port, &n, 1, 0, "v1 again");
    assert_same_response(&a, &r);
    harness_response_free(&r);

    /* A new version of other weights: latest moves to it at once. */
    uint8_t *bytes = NULL;
    size_t len = 0;
    assert_int_equal(harness_model_bytes(NULL, 2, &bytes, &len, err, sizeof err), 0);
    push_digits(port, bytes, len);
    get_ok(port, latest, &b);
    expect_counts(port, &n, 0, 1, "v2");
    assert_string_equal(harness_header(&b, "X-Model-Version"), "2");
    assert_non_null(strstr((const char *)b.body, "\"version\":2,"));
    assert_false(same_bytes(&a, &b));
    assert_true(strcmp(harness_header(&a, "ETag"), harness_header(&b, "ETag")) != 0);
    get_ok(port, latest, &r);
    expect_counts(port, &n, 1, 0, "v2 again");
    assert_same_response(&b, &r);
    harness_response_free(&r);
    /* Version 1 pinned is still its own entry. */
    get_ok(port, v1, &r);
    expect_counts(port, &n, 1, 0, "v1 pinned");
    assert_true(same_bytes(&a, &r));
    harness_response_free(&r);

    /* Version 2 deleted: latest is version 1 again, not the kept strip of 2. */
    assert_int_equal(harness_request(port, "DELETE", "/models/digits/versions/2", NULL, NULL, 0,
                                     &r),
                     0);
    assert_int_equal(r.status, 204);
    harness_response_free(&r);
    get_ok(port, latest, &r);
    assert_string_equal(harness_header(&r, "X-Model-Version"), "1");
    assert_true(same_bytes(&a, &r));
    harness_response_free(&r);
    expect_counts(port, &n, 1, 0, "after the delete");
    expect_error(port, "GET",
                 "/interpolate?from=mnist:test:2&to=mnist:test:3&steps=6&format=json"
                 "&model=digits&version=2",
                 NULL, NULL, NULL, 0, 404, "model_not_found");

    /* The same bytes pushed again become version 3: same checkpoint, but the
     * answer names version 3, so it is another entry. */
    push_digits(port, bytes, len);
    get_ok(port, latest, &r);
    expect_counts(port, &n, 0, 1, "v3");
    assert_string_equal(harness_header(&r, "X-Model-Version"), "3");
    assert_non_null(strstr((const char *)r.body, "\"version\":3,"));
    assert_null(strstr((const char *)r.body, "\"version\":2,"));
    harness_response_free(&r);
    free(bytes);
    assert_int_equal(harness_daemon_stop(&d), 0);

    /* --response-cache-mb 0: the same bytes, computed every time. */
    const char *const off[] = {"--response-cache-mb", "0", NULL};
    port = harness_daemon_start(&d, dir, off);
    assert_true(port > 0);
    for (int i = 0; i < 2; i++) {
        get_ok(port, v1, &r);
        assert_true(same_bytes(&a, &r));
        harness_response_free(&r);
    }
    assert_true(metric(port, "vaed_response_cache_hits_total") == 0);
    assert_true(metric(port, "vaed_response_cache_bytes") == 0);
    assert_int_equal(harness_daemon_stop(&d), 0);
    harness_response_free(&a);
    harness_response_free(&b);
    harness_rm_rf(dir);
}

/* ---- operations ---- */

static void test_readyz_metrics_openapi(void **state)
{
    (void)state;
    harness_response r;
    assert_int_equal(harness_request(fx.port, "GET", "/readyz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    assert_int_equal(harness_request(fx.empty_port, "GET", "/readyz", NULL, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 503, "no_model"));
    harness_response_free(&r);

    assert_int_equal(harness_request(fx.port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(harness_header(&r, "Content-Type"), "text/plain"));
    const char *text = (const char *)r.body;
    assert_non_null(
        strstr(text, "vaed_http_requests_total{route=\"/sample\",method=\"POST\",status=\"200\"}"));
    assert_non_null(strstr(text, "vaed_http_request_duration_seconds_bucket{route=\"/sample\",le=\"+Inf\"}"));
    assert_non_null(strstr(text, "# TYPE vaed_http_request_duration_seconds histogram"));
    assert_non_null(strstr(text, "vaed_models_loaded 1"));
    assert_non_null(strstr(text, "vaed_model_cache_bytes "));
    assert_non_null(strstr(text, "# TYPE vaed_response_cache_hits_total counter\n"));
    assert_non_null(strstr(text, "# TYPE vaed_response_cache_misses_total counter\n"));
    assert_non_null(strstr(text, "# TYPE vaed_response_cache_bytes gauge\n"));
    assert_non_null(strstr(text, "vaed_jobs{state=\"queued\"}"));
    assert_non_null(strstr(text, "vaed_training_images_per_second "));
    /* Every sample line is NAME{labels} VALUE or NAME VALUE. */
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        if (*line != '#') {
            const char *space = memchr(line, ' ', (size_t)(nl - line));
            assert_non_null(space);
            char *end;
            strtod(space + 1, &end);
            assert_true(end == nl);
        }
        line = nl + 1;
    }
    harness_response_free(&r);

    assert_int_equal(harness_request(fx.port, "GET", "/openapi.yaml", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(harness_header(&r, "Content-Type"), "application/yaml");
    assert_true(r.body_len > 100 && !memcmp(r.body, "openapi: 3", 10));
    assert_non_null(strstr((const char *)r.body, "\n  /interpolate:\n"));
    harness_response_free(&r);
}

/* ---- bad requests ---- */

static void test_bad_requests(void **state)
{
    (void)state;
    char *row = json_row(fx.x, D);
    char buf[8192];

    /* malformed, truncated, wrong top-level type, trailing bytes */
    expect_json_error("/encode", "{\"x\": [[0.1, 0.2]", 400, "bad_request");
    expect_json_error("/encode", "{\"x\": [[0.1, 0.2]]} extra", 400, "bad_request");
    expect_json_error("/encode", "[[0.5]]", 400, "bad_request");
    expect_json_error("/encode", "\"x\"", 400, "bad_request");
    expect_json_error("/encode", "{}", 400, "bad_request");
    expect_json_error("/encode", "{\"x\": \"pixels\"}", 400, "bad_request");
    expect_json_error("/encode", "{\"x\": [\"row\"]}", 400, "bad_request");
    expect_json_error("/encode", "{\"x\": [[\"0.5\"]]}", 400, "bad_request");
    expect_json_error("/encode", "{\"x\": [[NaN]]}", 400, "bad_request");
    expect_json_error("/encode", "{\"x\": [[Infinity]]}", 400, "bad_request");
    expect_json_error("/encode", "{\"x\": [], \"png_base64\": []}", 400, "bad_request");
    expect_json_error("/encode", "{\"png_base64\": [\"!!!notbase64\"]}", 400, "bad_request");
    expect_json_error("/encode", "{\"png_base64\": [\"aGVsbG8=\"]}", 400, "bad_request");
    expect_json_error("/encode", "{\"png_base64\": [42]}", 400, "bad_request");
    expect_json_error("/encode", "{\"x\":[[[[[[[[[[0]]]]]]]]]]}", 400, "bad_request");
    /* wrong sizes, non-finite and out-of-range values */
    expect_json_error("/encode", "{\"x\": []}", 422, "unprocessable");
    expect_json_error("/encode", "{\"x\": [[0.5, 0.5]]}", 422, "unprocessable");
    snprintf(buf, sizeof buf, "{\"x\": [%s]}", row);
    char *p = strstr(buf, "[[") + 2; /* first pixel -> 1e999 */
    char big[8300];
    snprintf(big, sizeof big, "%.*s1e999,%s", (int)(p - buf), buf, strchr(p, ',') + 1);
    expect_json_error("/encode", big, 422, "unprocessable");
    snprintf(big, sizeof big, "%.*s1.5,%s", (int)(p - buf), buf, strchr(p, ',') + 1);
    expect_json_error("/encode", big, 422, "unprocessable");
    snprintf(big, sizeof big, "%.*s-0.1,%s", (int)(p - buf), buf, strchr(p, ',') + 1);
    expect_json_error("/encode", big, 422, "unprocessable");
    expect_json_error("/decode", "{\"z\": [[0, 0, 0]]}", 422, "unprocessable");
    expect_json_error("/decode", "{\"z\": [[0, 0, 0, 1e999]]}", 422, "unprocessable");
    expect_json_error("/decode", "{\"z\": [[0, 0, 0, -1e400]]}", 422, "unprocessable");
    expect_json_error("/decode", "{\"z\": [[0, 0, 0, null]]}", 400, "bad_request");
    expect_json_error("/decode", "{\"z\": [0, 0, 0, 0]}", 400, "bad_request");
    expect_json_error("/decode", "{\"zz\": [[0, 0, 0, 0]]}", 400, "bad_request");
    expect_json_error("/interpolate", "{\"from\": {\"z\": [0,0,0,0]}}", 400, "bad_request");
    expect_json_error("/interpolate",
                      "{\"from\": {\"z\": [0,0,0,0]}, \"to\": {\"z\": [1,1,1,1]}, \"steps\": 257}",
                      422, "unprocessable");
    expect_json_error("/interpolate",
                      "{\"from\": {\"z\": [0,0,0,0]}, \"to\": {\"z\": [1,1,1,1]}, \"steps\": 1}",
                      422, "unprocessable");
    expect_json_error("/interpolate",
                      "{\"from\": {\"z\": [0,0,0,0]}, \"to\": {\"z\": [1,1,1,1]}, \"steps\": 2.5}",
                      400, "bad_request");
    expect_json_error("/interpolate",
                      "{\"from\": {\"z\": [0,0,0,0]}, \"to\": {\"z\": [1,1,1]}}", 422,
                      "unprocessable");
    expect_json_error("/interpolate",
                      "{\"from\": {\"z\": [0,0,0,0], \"x\": [0]}, \"to\": {\"z\": [1,1,1,1]}}",
                      400, "bad_request");
    expect_json_error("/interpolate",
                      "{\"from\": {\"z\": [0,0,0,0]}, \"to\": {\"z\": [1,1,1,1]}, \"mode\": 3}",
                      400, "bad_request");
    /* huge n, steps; a batch over the limit */
    expect_error(fx.port, "POST", "/sample?n=1025", NULL, NULL, NULL, 0, 400, "bad_request");
    expect_error(fx.port, "POST", "/sample?n=99999999999999999999", NULL, NULL, NULL, 0, 400,
                 "bad_request");
    expect_error(fx.port, "POST", "/sample?temperature=nan", NULL, NULL, NULL, 0, 400,
                 "bad_request");
    expect_error(fx.port, "POST", "/sample?temperature=1e999", NULL, NULL, NULL, 0, 400,
                 "bad_request");
    expect_error(fx.port, "POST", "/sample?format=gif", NULL, NULL, NULL, 0, 400, "bad_request");
    {
        size_t n = 1025, cap = n * 16 + 32, used = 0;
        char *many = malloc(cap);
        used += (size_t)snprintf(many, cap, "{\"z\":[");
        for (size_t i = 0; i < n; i++)
            used += (size_t)snprintf(many + used, cap - used, "%s[0,0,0,0]", i ? "," : "");
        snprintf(many + used, cap - used, "]}");
        expect_json_error("/decode", many, 422, "unprocessable");
        free(many);
    }
    /* empty bodies, no length, wrong content types */
    expect_error(fx.port, "POST", "/encode", "application/json", NULL, "", 0, 400, "bad_request");
    expect_error(fx.port, "POST", "/encode", "application/json", NULL, NULL, 0, 411,
                 "length_required");
    expect_error(fx.port, "POST", "/decode", "text/plain", NULL, "{}", 2, 415,
                 "unsupported_media_type");
    expect_error(fx.port, "POST", "/decode", NULL, NULL, "{}", 2, 415, "unsupported_media_type");
    expect_error(fx.port, "POST", "/decode", "image/png", NULL, "{}", 2, 415,
                 "unsupported_media_type");
    /* truncated and non-PNG images */
    size_t len;
    float q[D];
    uint8_t *png = png_of(0, &len, q);
    expect_error(fx.port, "POST", "/encode", "image/png", NULL, png, len / 2, 400, "bad_request");
    expect_error(fx.port, "POST", "/encode", "image/png", NULL, "GIF89a....", 10, 400,
                 "bad_request");
    free(png);
    /* Accept that excludes everything offered */
    expect_error(fx.port, "POST", "/sample?n=1", NULL, "text/html", NULL, 0, 406,
                 "not_acceptable");
    expect_error(fx.port, "POST", "/sample?n=1", NULL, "image/png;q=0, */*;q=0", NULL, 0, 406,
                 "not_acceptable");
    expect_error(fx.port, "POST", "/encode", "application/json", "image/png", "{\"x\":[]}", 8, 406,
                 "not_acceptable");
    /* unknown model or version */
    expect_json_error("/decode?model=nope", "{\"z\":[[0,0,0,0]]}", 404, "model_not_found");
    expect_json_error("/decode?model=digits&version=9", "{\"z\":[[0,0,0,0]]}", 404,
                      "model_not_found");
    expect_json_error("/decode?model=..%2Fx", "{\"z\":[[0,0,0,0]]}", 400, "bad_request");
    expect_error(fx.empty_port, "POST", "/decode", "application/json", NULL, "{\"z\":[[0]]}", 11,
                 503, "no_model");
    /* routing */
    expect_error(fx.port, "GET", "/encode", NULL, NULL, NULL, 0, 405, "method_not_allowed");
    expect_error(fx.port, "PUT", "/interpolate", NULL, NULL, NULL, 0, 405, "method_not_allowed");
    free(row);
    expect_healthy(fx.port);
}

/* Very long URLs and headers are refused (by libmicrohttpd: 414/431, or a
 * closed connection); the daemon keeps serving. */
static void test_long_url_and_headers(void **state)
{
    (void)state;
    size_t n = 200000;
    char *path = malloc(n + 32);
    strcpy(path, "/sample?n=1&pad=");
    memset(path + strlen(path), 'a', n);
    path[n + 16] = '\0';
    harness_response r;
    harness_request(fx.port, "POST", path, NULL, NULL, 0, &r);
    if (r.status)
        assert_true(r.status >= 400 && r.status < 500);
    harness_response_free(&r);
    char *header = malloc(n + 32);
    strcpy(header, "X-Pad: ");
    memset(header + 7, 'b', n);
    header[n + 7] = '\0';
    const char *const headers[] = {header, NULL};
    harness_request(fx.port, "GET", "/healthz", headers, NULL, 0, &r);
    if (r.status)
        assert_true(r.status >= 400 && r.status < 500);
    harness_response_free(&r);
    free(header);
    free(path);
    expect_healthy(fx.port);
}

static int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Reads until the server closes; returns the bytes (malloc'd). */
static char *read_all(int fd, int timeout_ms)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0)
            break;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t got = recv(fd, buf + len, cap - len, 0);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    buf[len] = '\0';
    return buf;
}

/* Slow clients: one sends half its headers and stalls, another half its
 * body; both are closed after the idle timeout, and meanwhile the daemon
 * answers others. */
static void test_slow_clients(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX], err[256];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    assert_int_equal(harness_put_model(dir, "digits", NULL, SEED, NULL, err, sizeof err), 0);
    harness_daemon d;
    const char *const args[] = {"--timeout", "1", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);
    int a = connect_port(port), b = connect_port(port);
    const char ha[] = "POST /sample?n=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    const char hb[] = "POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: 1000\r\n\r\n{\"x\":[[";
    assert_true(send(a, ha, sizeof ha - 1, 0) > 0);
    assert_true(send(b, hb, sizeof hb - 1, 0) > 0);
    expect_healthy(port);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *ra = read_all(a, 10000 * harness_slowdown());
    char *rb = read_all(b, 10000 * harness_slowdown());
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    assert_true(waited < 8.0 * harness_slowdown()); /* closed by the 1 s timeout */
    assert_true(strstr(ra, "200 OK") == NULL && strstr(rb, "200 OK") == NULL);
    free(ra);
    free(rb);
    close(a);
    close(b);
    expect_healthy(port);
    assert_int_equal(harness_daemon_stop(&d), 0);
    harness_rm_rf(dir);
}

/* More requests at once than the admission limit (32 with one compute
 * thread): some get 429 with Retry-After, the rest succeed, none fail
 * otherwise, and the daemon serves on. */
static void test_overload_429(void **state)
{
    (void)state;
    enum { N = 100 };
    int fds[N];
    const char req[] = "POST /sample?n=1024&seed=1&format=npy HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Connection: close\r\nContent-Length: 0\r\n\r\n";
    for (int i = 0; i < N; i++)
        fds[i] = connect_port(fx.port);
    for (int i = 0; i < N; i++)
        assert_true(send(fds[i], req, sizeof req - 1, 0) == (ssize_t)(sizeof req - 1));
    int ok = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        char *resp = read_all(fds[i], 30000 * harness_slowdown());
        close(fds[i]);
        if (!strncmp(resp, "HTTP/1.1 200", 12)) {
            ok++;
        } else if (!strncmp(resp, "HTTP/1.1 429", 12)) {
            busy++;
            assert_non_null(strcasestr(resp, "\r\nRetry-After: 1\r\n"));
            assert_non_null(strstr(resp, "\"too_many_requests\""));
        } else {
            fail_msg("unexpected answer: %.200s", resp);
        }
        free(resp);
    }
    assert_true(ok >= 32);
    assert_true(busy >= 1);
    harness_response r;
    assert_int_equal(harness_request(fx.port, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_non_null(strstr((const char *)r.body, "status=\"429\""));
    harness_response_free(&r);
    expect_healthy(fx.port);
}

static void test_clean_exit(void **state)
{
    (void)state;
    assert_int_equal(harness_daemon_stop(&fx.daemon), 0);
    assert_int_equal(harness_daemon_stop(&fx.empty_daemon), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_formats),
        cmocka_unit_test(test_sample_same_seed_same_bytes),
        cmocka_unit_test(test_encode_matches_engine),
        cmocka_unit_test(test_encode_number_spellings),
        cmocka_unit_test(test_encode_png_and_base64),
        cmocka_unit_test(test_decode_of_mu_is_reconstruction),
        cmocka_unit_test(test_interpolate_post_lerp_slerp),
        cmocka_unit_test(test_interpolate_get),
        cmocka_unit_test(test_interpolate_cache),
        cmocka_unit_test(test_interpolate_cache_follows_registry),
        cmocka_unit_test(test_readyz_metrics_openapi),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_long_url_and_headers),
        cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_overload_429),
        cmocka_unit_test(test_clean_exit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
