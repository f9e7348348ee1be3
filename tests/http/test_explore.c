/* Black-box tests of what the dashboard shows: GET and POST /reconstruct,
 * GET /traverse, GET /latent-map, GET /data/... and ?scale= on image
 * answers, against a real vaed serving a checkpoint also loaded here (the
 * engine in this process is the reference), on MNIST's test split from
 * <repo>/data. Deterministic bytes, ETags and 304s, the memory budget
 * (--request-mem-mb), and a catalogue of bad inputs each with its JSON
 * error. Skips when data/mnist is absent. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/dataset.h"
#include "engine/image.h"
#include "engine/pca.h"
#include "engine/vae.h"
#include "tests/lib/harness.h"

#define SEED 7
#define D 784
#define L 4 /* harness_small_config's latent */
#define TOL (0.5 / 255 + 1e-5) /* a PNG pixel against the float it was quantised from */

typedef struct {
    char dir[HARNESS_PATH_MAX];
    harness_daemon daemon;
    int port;
    vae_model ref;
    int have_ref;
    dataset test; /* MNIST test split */
    int have_mnist;
} fixture;

static fixture fx;

static int teardown(void **state)
{
    (void)state;
    harness_daemon_kill9(&fx.daemon);
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    if (fx.have_ref)
        vae_free(&fx.ref);
    if (fx.have_mnist)
        dataset_free(&fx.test);
    return 0;
}

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof fx);
    int have_data = harness_use_repo_data(); /* VAED_DATA, inherited by the daemon */
    if (have_data < 0)
        return -1;
    if (!have_data) {
        *state = &fx;
        return 0; /* every test skips */
    }
    if (dataset_load_idx(&fx.test, "data/mnist/t10k-images-idx3-ubyte",
                         "data/mnist/t10k-labels-idx1-ubyte", err, sizeof err)) {
        fprintf(stderr, "mnist: %s\n", err);
        return -1;
    }
    fx.have_mnist = 1;
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (harness_tmpdir(fx.dir, sizeof fx.dir) ||
        harness_put_model(fx.dir, "digits", NULL, SEED, NULL, err, sizeof err) ||
        harness_model_bytes(NULL, SEED, &bytes, &len, err, sizeof err) ||
        ckpt_load_mem(&fx.ref, bytes, len, NULL, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        free(bytes);
        teardown(state);
        return -1;
    }
    free(bytes);
    fx.have_ref = 1;
    /* 8 MiB a request: what the dashboard asks for fits, a /sample of 1024
     * images at scale 8 (about 100 MB of PNG rows) does not. */
    const char *const args[] = {"--request-mem-mb", "8", NULL};
    fx.port = harness_daemon_start(&fx.daemon, fx.dir, args);
    if (fx.port < 0) {
        teardown(state);
        return -1;
    }
    *state = &fx;
    return 0;
}

/* ---- helpers ---- */

static void get(const char *path, const char *inm, harness_response *r)
{
    char h[160];
    const char *headers[2] = {NULL, NULL};
    if (inm) {
        snprintf(h, sizeof h, "If-None-Match: %s", inm);
        headers[0] = h;
    }
    assert_int_equal(harness_request(fx.port, "GET", path, headers, NULL, 0, r), 0);
}

static void get_ok(const char *path, harness_response *r)
{
    get(path, NULL, r);
    if (r->status != 200)
        fail_msg("GET %s: %d %s", path, r->status, r->body);
}

static float *png_pixels(const harness_response *r, int *h, int *w)
{
    float *pixels = harness_png_pixels(r, h, w);
    if (!pixels)
        fail_msg("not a PNG answer (Content-Type %s)", harness_header(r, "Content-Type"));
    return pixels;
}

/* Cell (row, col) of a grid of 28x28 images drawn at scale k, pixel (y, x). */
static float cell(const float *px, int w, int k, int row, int col, int y, int x)
{
    return px[(size_t)((row * 28 + y) * k) * (size_t)w + (size_t)((col * 28 + x) * k)];
}

static void expect_error(const char *method, const char *path, const char *ctype,
                         const void *body, size_t len, int status, const char *code)
{
    char ct[128];
    const char *headers[2] = {NULL, NULL};
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        headers[0] = ct;
    }
    harness_response r;
    assert_int_equal(harness_request(fx.port, method, path, headers, body, len, &r), 0);
    if (!harness_expect_error(&r, status, code))
        fail_msg("%s %s: expected %d %s, got %d %s", method, path, status, code, r.status, r.body);
    harness_response_free(&r);
}

/* The error's message says what was wrong: it holds needle. */
static void expect_message(const char *path, const char *ctype, const char *body,
                           const char *needle)
{
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    const char *headers[2] = {ct, NULL};
    harness_response r;
    assert_int_equal(harness_request(fx.port, "POST", path, headers, body, strlen(body), &r), 0);
    if (!strstr((const char *)r.body, needle))
        fail_msg("POST %s: %s lacks \"%s\"", path, r.body, needle);
    harness_response_free(&r);
}

/* Same request, same bytes and ETag; If-None-Match with it is 304. */
static void check_etag(const char *path)
{
    harness_response a, b, c;
    get_ok(path, &a);
    get_ok(path, &b);
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len);
    const char *etag = harness_header(&a, "ETag");
    assert_non_null(etag);
    assert_string_equal(etag, harness_header(&b, "ETag"));
    assert_non_null(harness_header(&a, "Cache-Control"));
    get(path, etag, &c);
    assert_int_equal(c.status, 304);
    assert_int_equal(c.body_len, 0);
    harness_response_free(&a);
    harness_response_free(&b);
    harness_response_free(&c);
}

#define NEED_MNIST()                                                                             \
    do {                                                                                         \
        if (!fx.have_mnist)                                                                      \
            skip();                                                                              \
    } while (0)

/* ---- tests ---- */

static void test_data_images_and_sheets(void **state)
{
    (void)state;
    NEED_MNIST();
    harness_response r;
    int h, w;
    get_ok("/data/mnist/test/3?scale=4", &r);
    float *px = png_pixels(&r, &h, &w);
    assert_int_equal(h, 112);
    assert_int_equal(w, 112);
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
            assert_true(fabs(cell(px, w, 4, 0, 0, y, x) - fx.test.x[3 * D + y * 28 + x]) < TOL);
    free(px);
    harness_response_free(&r);

    /* a sheet: 20 images from 100 in rows of 8 (the last row part empty) */
    get_ok("/data/mnist/test?start=100&count=20&cols=8&scale=2", &r);
    px = png_pixels(&r, &h, &w);
    assert_int_equal(w, 8 * 28 * 2);
    assert_int_equal(h, 3 * 28 * 2);
    for (int i = 0; i < 20; i++)
        assert_true(fabs(cell(px, w, 2, i / 8, i % 8, 14, 14) -
                         fx.test.x[(100 + i) * D + 14 * 28 + 14]) < TOL);
    free(px);
    harness_response_free(&r);

    /* JSON: sizes and labels; the last page is shorter */
    get_ok("/data/mnist/test?start=9995&count=10&format=json", &r);
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    assert_int_equal(cJSON_GetObjectItem(root, "size")->valueint, 10000);
    assert_int_equal(cJSON_GetObjectItem(root, "count")->valueint, 5);
    const cJSON *labels = cJSON_GetObjectItem(root, "labels");
    assert_int_equal(cJSON_GetArraySize(labels), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(cJSON_GetArrayItem(labels, i)->valueint, fx.test.labels[9995 + i]);
    cJSON_Delete(root);
    harness_response_free(&r);

    check_etag("/data/mnist/test/7?scale=3");
    check_etag("/data/mnist/test?count=16&scale=2");

    expect_error("POST", "/data/mnist/test/3", NULL, NULL, 0, 405, "method_not_allowed");
}

/* The engine here: mu of images i..i+n-1 of the test split, and decode. */
static void ref_reconstruct(int first, int n, float *mu, float *x)
{
    float *logvar = malloc(sizeof(float) * (size_t)n * L);
    vae_workspace *ws = vae_workspace_new(&fx.ref, n);
    assert_non_null(logvar);
    assert_non_null(ws);
    assert_int_equal(vae_encode(&fx.ref, ws, fx.test.x + (size_t)first * D, n, mu, logvar), VAE_OK);
    assert_int_equal(vae_decode(&fx.ref, ws, mu, n, x), VAE_OK);
    vae_workspace_free(ws);
    free(logvar);
}

static void test_reconstruct(void **state)
{
    (void)state;
    NEED_MNIST();
    enum { N = 6, FIRST = 10 };
    float mu[N * L], x[N * D];
    ref_reconstruct(FIRST, N, mu, x);
    harness_response r;
    int h, w;
    get_ok("/reconstruct?from=mnist:test:10-15&scale=2", &r);
    assert_string_equal(harness_header(&r, "X-Model"), "digits");
    float *px = png_pixels(&r, &h, &w);
    assert_int_equal(w, N * 28 * 2);
    assert_int_equal(h, 2 * 28 * 2);
    for (int i = 0; i < N; i++)
        for (int y = 0; y < 28; y += 3)
            for (int xx = 0; xx < 28; xx += 3) {
                assert_true(fabs(cell(px, w, 2, 0, i, y, xx) -
                                 fx.test.x[(FIRST + i) * D + y * 28 + xx]) < TOL);
                assert_true(fabs(cell(px, w, 2, 1, i, y, xx) - x[i * D + y * 28 + xx]) < 1e-3 + TOL);
            }
    free(px);
    harness_response_free(&r);

    /* JSON: the reconstructions and mu */
    get_ok("/reconstruct?from=mnist:test:10-15&format=json", &r);
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    const cJSON *z = cJSON_GetObjectItem(root, "z"), *xs = cJSON_GetObjectItem(root, "x");
    assert_int_equal(cJSON_GetArraySize(z), N);
    assert_int_equal(cJSON_GetArraySize(xs), N);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < L; k++)
            assert_true(fabs(cJSON_GetArrayItem(cJSON_GetArrayItem(z, i), k)->valuedouble -
                             mu[i * L + k]) < 1e-4);
        assert_true(fabs(cJSON_GetArrayItem(cJSON_GetArrayItem(xs, i), 400)->valuedouble -
                         x[i * D + 400]) < 1e-4);
    }
    cJSON_Delete(root);
    harness_response_free(&r);
    check_etag("/reconstruct?from=mnist:test:10-15&scale=2");
    check_etag("/reconstruct?from=mnist:test:4&model=digits&version=1");

    /* POST: a PNG of a data-set image comes back above its reconstruction */
    get_ok("/data/mnist/test/10", &r);
    harness_response p;
    const char *png_type[] = {"Content-Type: image/png", NULL};
    assert_int_equal(harness_request(fx.port, "POST", "/reconstruct?scale=1", png_type, r.body,
                                     r.body_len, &p), 0);
    assert_int_equal(p.status, 200);
    px = png_pixels(&p, &h, &w);
    assert_int_equal(w, 28);
    assert_int_equal(h, 56);
    assert_true(fabs(px[28 * 28 + 14 * 28 + 14] - x[14 * 28 + 14]) < 2.0 / 255);
    free(px);
    harness_response_free(&p);
    harness_response_free(&r);

}

static void test_reconstruct_bad(void **state)
{
    (void)state;
    NEED_MNIST();
    expect_error("POST", "/reconstruct", "application/json", NULL, 0, 400, "bad_request");
    expect_error("POST", "/reconstruct", "text/plain", "x", 1, 415, "unsupported_media_type");
    expect_error("POST", "/reconstruct", "application/json", "{\"x\": [[0.5]]}", 14, 422,
                 "unprocessable");
    expect_error("POST", "/reconstruct", "application/json", "{\"x\": [[0.5", 11, 400,
                 "bad_request");
    expect_error("POST", "/reconstruct", "image/png", "not a png", 9, 400, "bad_request");
    expect_message("/reconstruct", "application/json", "{\"x\": [[0.5]]}", "784");
    expect_message("/reconstruct", "application/json", "{\"x\": [[0.5", "JSON");
    expect_message("/reconstruct", "image/png", "not a png", "PNG");
}

static void test_traverse(void **state)
{
    (void)state;
    NEED_MNIST();
    enum { STEPS = 5 };
    const double range = 2.5;
    float mu[L], lv[L];
    vae_workspace *ws = vae_workspace_new(&fx.ref, 4 * STEPS);
    assert_non_null(ws);
    assert_int_equal(vae_encode(&fx.ref, ws, fx.test.x + 3 * D, 1, mu, lv), VAE_OK);
    float z[4 * STEPS * L], x[4 * STEPS * D];
    for (int d = 0; d < 4; d++)
        for (int s = 0; s < STEPS; s++) {
            float *row = z + (d * STEPS + s) * L;
            memcpy(row, mu, sizeof mu);
            row[d] += (float)(range * (2.0 * s / (STEPS - 1) - 1.0));
        }
    assert_int_equal(vae_decode(&fx.ref, ws, z, 4 * STEPS, x), VAE_OK);
    vae_workspace_free(ws);

    harness_response r;
    get_ok("/traverse?from=mnist:test:3&steps=5&range=2.5&format=json", &r);
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    const cJSON *zs = cJSON_GetObjectItem(root, "z"), *xs = cJSON_GetObjectItem(root, "x");
    assert_int_equal(cJSON_GetArraySize(zs), 4 * STEPS); /* every dimension of a latent of 4 */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "dims")), 4);
    for (int i = 0; i < 4 * STEPS; i++) {
        for (int k = 0; k < L; k++)
            assert_true(fabs(cJSON_GetArrayItem(cJSON_GetArrayItem(zs, i), k)->valuedouble -
                             z[i * L + k]) < 1e-4);
        assert_true(fabs(cJSON_GetArrayItem(cJSON_GetArrayItem(xs, i), 300)->valuedouble -
                         x[i * D + 300]) < 1e-4);
    }
    cJSON_Delete(root);
    harness_response_free(&r);

    /* PNG: rows dims 1 and 3, STEPS columns */
    int h, w;
    get_ok("/traverse?from=mnist:test:3&dims=1,3&steps=5&range=2.5&scale=3", &r);
    float *px = png_pixels(&r, &h, &w);
    assert_int_equal(w, STEPS * 28 * 3);
    assert_int_equal(h, 2 * 28 * 3);
    for (int s = 0; s < STEPS; s++) {
        assert_true(fabs(cell(px, w, 3, 0, s, 14, 14) - x[(1 * STEPS + s) * D + 14 * 28 + 14]) <
                    1e-3 + TOL);
        assert_true(fabs(cell(px, w, 3, 1, s, 14, 14) - x[(3 * STEPS + s) * D + 14 * 28 + 14]) <
                    1e-3 + TOL);
    }
    free(px);
    harness_response_free(&r);
    check_etag("/traverse?from=mnist:test:3&dims=0-1&steps=4");

}

static void test_latent_map(void **state)
{
    (void)state;
    NEED_MNIST();
    enum { N = 1500 };
    harness_response r;
    get_ok("/latent-map?data=mnist:test&limit=1500", &r);
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    assert_int_equal(cJSON_GetObjectItem(root, "count")->valueint, N);
    const cJSON *proj = cJSON_GetObjectItem(root, "projection");
    assert_string_equal(cJSON_GetObjectItem(proj, "kind")->valuestring, "pca");
    const cJSON *points = cJSON_GetObjectItem(root, "points");
    assert_int_equal(cJSON_GetArraySize(points), N);
    /* the reference: mu here, its PCA here */
    float *mu = malloc(sizeof(float) * N * L), *lv = malloc(sizeof(float) * N * L);
    float *xy = malloc(sizeof(float) * N * 2);
    vae_workspace *ws = vae_workspace_new(&fx.ref, N);
    assert_non_null(mu);
    assert_non_null(lv);
    assert_non_null(xy);
    assert_non_null(ws);
    assert_int_equal(vae_encode(&fx.ref, ws, fx.test.x, N, mu, lv), VAE_OK);
    float mean[L], axes[2 * L], var[2];
    char err[128];
    assert_int_equal(pca_fit(mu, N, L, 2, mean, axes, var, err, sizeof err), VAE_OK);
    pca_project(mu, N, L, 2, mean, axes, xy);
    const cJSON *ax = cJSON_GetObjectItem(proj, "axes");
    for (int j = 0; j < 2; j++)
        for (int k = 0; k < L; k++)
            assert_true(fabs(cJSON_GetArrayItem(cJSON_GetArrayItem(ax, j), k)->valuedouble -
                             axes[j * L + k]) < 1e-3);
    for (int i = 0; i < N; i += 37) {
        const cJSON *p = cJSON_GetArrayItem(points, i);
        assert_true(fabs(cJSON_GetArrayItem(p, 0)->valuedouble - xy[2 * i]) < 1e-3);
        assert_true(fabs(cJSON_GetArrayItem(p, 1)->valuedouble - xy[2 * i + 1]) < 1e-3);
        assert_int_equal(cJSON_GetArrayItem(p, 2)->valueint, fx.test.labels[i]);
        assert_int_equal(cJSON_GetArrayItem(p, 3)->valueint, i);
    }
    vae_workspace_free(ws);
    free(mu);
    free(lv);
    free(xy);
    cJSON_Delete(root);
    harness_response_free(&r);
    /* computed once and kept: the same bytes, and a hit in the response cache */
    check_etag("/latent-map?limit=1500");
    /* JSON only: an Accept that excludes it is 406, not answered with JSON */
    const char *png_only[] = {"Accept: image/png", NULL};
    assert_int_equal(harness_request(fx.port, "GET", "/latent-map?limit=1500", png_only, NULL, 0, &r),
                     0);
    if (!harness_expect_error(&r, 406, "not_acceptable"))
        fail_msg("GET /latent-map with Accept: image/png: %d %s", r.status, (char *)r.body);
    harness_response_free(&r);
}

static void test_scale_and_memory_budget(void **state)
{
    (void)state;
    NEED_MNIST();
    harness_response a, b;
    int h, w, h1, w1;
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=4&seed=3&scale=5", NULL, NULL, 0, &a), 0);
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=4&seed=3", NULL, NULL, 0, &b), 0);
    assert_int_equal(a.status, 200);
    float *big = png_pixels(&a, &h, &w), *small = png_pixels(&b, &h1, &w1);
    assert_int_equal(w, 5 * w1);
    assert_int_equal(h, 5 * h1);
    for (int y = 0; y < h; y += 7)
        for (int x = 0; x < w; x += 3)
            assert_true(big[y * w + x] == small[(y / 5) * w1 + x / 5]);
    free(big);
    free(small);
    harness_response_free(&a);
    harness_response_free(&b);
    get_ok("/interpolate?from=mnist:test:1&to=mnist:test:2&steps=4&scale=2", &a);
    float *px = png_pixels(&a, &h, &w);
    assert_int_equal(w, 4 * 56);
    assert_int_equal(h, 56);
    free(px);
    harness_response_free(&a);
    check_etag("/interpolate?from=mnist:test:1&to=mnist:test:2&steps=4&scale=2");
    /* 1024 images at scale 8: ~100 MB of PNG rows, over --request-mem-mb 8 */
    expect_error("POST", "/sample?n=1024&scale=8", NULL, NULL, 0, 422, "unprocessable");
    expect_error("POST", "/sample?n=4&scale=0", NULL, NULL, 0, 400, "bad_request");
    harness_response hz;
    assert_int_equal(harness_request(fx.port, "GET", "/healthz", NULL, NULL, 0, &hz), 0);
    assert_int_equal(hz.status, 200);
    harness_response_free(&hz);
}

/* GET / is the page and /ui/NAME its files, from the binary: types, the
 * policy that keeps the page on this origin, ETag and 304; an unknown file
 * is a JSON 404. */
static void test_dashboard_files(void **state)
{
    (void)state;
    if (fx.port <= 0)
        skip();
    harness_response r, again;
    get_ok("/", &r);
    assert_string_equal(harness_header(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_non_null(strstr((const char *)r.body, "<script type=\"module\" src=\"/ui/app.js\">"));
    const char *csp = harness_header(&r, "Content-Security-Policy");
    assert_non_null(csp);
    assert_non_null(strstr(csp, "default-src 'self'"));
    assert_non_null(strstr(csp, "connect-src 'self'"));
    get("/", harness_header(&r, "ETag"), &again);
    assert_int_equal(again.status, 304);
    harness_response_free(&again);
    harness_response_free(&r);
    static const char *const files[][2] = {{"/ui/app.js", "text/javascript; charset=utf-8"},
                                           {"/ui/api.js", "text/javascript; charset=utf-8"},
                                           {"/ui/style.css", "text/css; charset=utf-8"}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        get_ok(files[i][0], &r);
        assert_string_equal(harness_header(&r, "Content-Type"), files[i][1]);
        assert_true(r.body_len > 100);
        assert_non_null(harness_header(&r, "ETag"));
        harness_response_free(&r);
    }
    /* every script the page loads is served, and names no other host */
    get_ok("/ui/app.js", &r);
    assert_null(strstr((const char *)r.body, "http://"));
    assert_null(strstr((const char *)r.body, "https://"));
    harness_response_free(&r);
    expect_error("GET", "/ui/nope.js", NULL, NULL, 0, 404, "not_found");
    expect_error("GET", "/ui/", NULL, NULL, 0, 404, "not_found");
    expect_error("GET", "/ui/../registry.db", NULL, NULL, 0, 404, "not_found");
    expect_error("POST", "/", "application/json", "{}", 2, 405, "method_not_allowed");
}

static const struct {
    const char *path;
    int status;
    const char *code;
} bad_gets[] = {
    {"/data/kmnist/test/3", 404, "not_found"},
    {"/data/mnist/valid/3", 404, "not_found"},
    {"/data/mnist/test/10000", 404, "not_found"},
    {"/data/mnist/test/-1", 400, "bad_request"},
    {"/data/mnist/test/3x", 400, "bad_request"},
    {"/data/mnist/test/99999999999999999999", 400, "bad_request"},
    {"/data/mnist/test/3?scale=0", 400, "bad_request"},
    {"/data/mnist/test/3?scale=9", 400, "bad_request"},
    {"/data/mnist/test/3?format=gif", 400, "bad_request"},
    {"/data/mnist/test?count=0", 400, "bad_request"},
    {"/data/mnist/test?count=257", 400, "bad_request"},
    {"/data/mnist/test?start=10000", 404, "not_found"},
    {"/data/mnist/test?cols=-2", 400, "bad_request"},
    {"/reconstruct", 400, "bad_request"},
    {"/reconstruct?from=mnist:test", 400, "bad_request"},
    {"/reconstruct?from=mnist:test:5-2", 400, "bad_request"},
    {"/reconstruct?from=mnist:test:5-x", 400, "bad_request"},
    {"/reconstruct?from=cifar:test:5", 400, "bad_request"},
    {"/reconstruct?from=mnist:test:0-1024", 422, "unprocessable"},
    {"/reconstruct?from=mnist:test:9995-10004", 404, "not_found"},
    {"/reconstruct?from=mnist:test:1&model=nope", 404, "model_not_found"},
    {"/reconstruct?from=mnist:test:1&scale=10", 400, "bad_request"},
    {"/traverse", 400, "bad_request"},
    {"/traverse?from=mnist:test:0-3", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&dims=4", 422, "unprocessable"},
    {"/traverse?from=mnist:test:3&dims=3-1", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&dims=a", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&dims=0-1023", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&steps=1", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&steps=257", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&range=0", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&range=11", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&range=nan", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&range=1e999", 400, "bad_request"},
    {"/traverse?from=mnist:test:10000", 404, "not_found"},
    {"/latent-map?data=mnist", 400, "bad_request"},
    {"/latent-map?data=cifar:test", 400, "bad_request"},
    {"/latent-map?limit=0", 400, "bad_request"},
    {"/latent-map?limit=10001", 400, "bad_request"},
    {"/latent-map?model=a/b", 400, "bad_request"},
    {"/latent-map?format=png", 400, "bad_request"},
    {"/traverse?from=mnist:test:3&dims=0-3&steps=32&scale=8", 422, "unprocessable"},
    {"/interpolate?from=mnist:test:1&to=mnist:test:2&scale=99", 400, "bad_request"},
};

/* Each bad query gets its JSON error, and the daemon stays healthy. */
static void test_bad_queries(void **state)
{
    (void)state;
    NEED_MNIST();
    for (size_t i = 0; i < sizeof bad_gets / sizeof bad_gets[0]; i++)
        expect_error("GET", bad_gets[i].path, NULL, NULL, 0, bad_gets[i].status, bad_gets[i].code);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_images_and_sheets),
        cmocka_unit_test(test_reconstruct),
        cmocka_unit_test(test_reconstruct_bad),
        cmocka_unit_test(test_traverse),
        cmocka_unit_test(test_latent_map),
        cmocka_unit_test(test_scale_and_memory_budget),
        cmocka_unit_test(test_bad_queries),
        cmocka_unit_test(test_dashboard_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
