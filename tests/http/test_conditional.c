/* Black-box tests of the label parameters against a real vaed serving a
 * conditional model ("cdigits", 10 classes) beside an unconditional one
 * ("digits"): POST /sample?label=K and ?labels=3,3,7, the class rows of a
 * sample without labels, /encode?label=, /decode with "label" and "labels",
 * POST /interpolate between two labels at a fixed z, GET /interpolate
 * between label:K references and between labelled data-set images; every
 * answer's numbers against the engine run here on the same checkpoint, and
 * the refusals: a label out of range is a 422 naming the range, a label to
 * the unconditional model a 422, bad syntax a 400. GET /interpolate of
 * data-set images reads MNIST from <repo>/data and is skipped without it. */
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
#include "engine/image.h"
#include "engine/rng.h"
#include "engine/vae.h"
#include "tests/lib/harness.h"

#define SEED 11
#define K 10
#define D 784
#define L 4 /* harness_small_config's latent */

typedef struct {
    char dir[HARNESS_PATH_MAX];
    harness_daemon daemon;
    int port;
    vae_model ref; /* cdigits, loaded here from the same bytes */
    int have_ref, have_mnist;
} fixture;

static fixture fx;

static void cond_config(vae_config *c)
{
    harness_small_config(c);
    c->n_classes = K;
}

static int teardown(void **state)
{
    (void)state;
    harness_daemon_kill9(&fx.daemon);
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    if (fx.have_ref)
        vae_free(&fx.ref);
    return 0;
}

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof fx);
    if ((fx.have_mnist = harness_use_repo_data()) < 0)
        return -1;
    vae_config c;
    cond_config(&c);
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (harness_tmpdir(fx.dir, sizeof fx.dir) ||
        harness_put_model(fx.dir, "digits", NULL, SEED, NULL, err, sizeof err) ||
        harness_put_model(fx.dir, "cdigits", &c, SEED, NULL, err, sizeof err) ||
        harness_model_bytes(&c, SEED, &bytes, &len, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        teardown(state);
        return -1;
    }
    int rc = ckpt_load_mem(&fx.ref, bytes, len, NULL, err, sizeof err);
    free(bytes);
    if (rc) {
        fprintf(stderr, "ckpt_load_mem: %s\n", err);
        teardown(state);
        return -1;
    }
    fx.have_ref = 1;
    fx.port = harness_daemon_start(&fx.daemon, fx.dir, NULL);
    if (fx.port < 0) {
        teardown(state);
        return -1;
    }
    return 0;
}

/* ---- helpers ---- */

static int post(const char *path, const char *body, harness_response *r)
{
    const char *headers[] = {"Content-Type: application/json", NULL};
    return harness_request(fx.port, "POST", path, body ? headers : NULL, body,
                           body ? strlen(body) : 0, r);
}

static cJSON *post_ok(const char *path, const char *body)
{
    harness_response r;
    assert_int_equal(post(path, body, &r), 0);
    if (r.status != 200)
        fail_msg("POST %s: %d %s", path, r.status, r.body ? (const char *)r.body : "");
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    harness_response_free(&r);
    return root;
}

/* An error of status and code whose message holds words (when not NULL; as
 * the body has them, quotes escaped). */
static void expect_refused(const char *method, const char *path, const char *body, int status,
                           const char *code, const char *words)
{
    harness_response r;
    const char *headers[] = {"Content-Type: application/json", NULL};
    assert_int_equal(harness_request(fx.port, method, path, body ? headers : NULL, body,
                                     body ? strlen(body) : 0, &r),
                     0);
    if (!harness_expect_error(&r, status, code) ||
        (words && !strstr((const char *)r.body, words)))
        fail_msg("%s %s (%.80s): %d %s, wanted %d %s with \"%s\"", method, path, body ? body : "",
                 r.status, r.body ? (const char *)r.body : "", status, code, words ? words : "");
    harness_response_free(&r);
}

static void read_matrix(const cJSON *m, int rows, int cols, float *out)
{
    assert_int_equal(harness_json_matrix(m, rows, cols, out), 0);
}

static void assert_close(const float *a, const float *b, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - (double)b[i]) > tol)
            fail_msg("element %zu: %.9g vs %.9g", i, (double)a[i], (double)b[i]);
}

/* x (n, D) of the engine here for z (n, L) and labels. */
static void ref_decode(const float *z, const int *labels, int n, float *x)
{
    vae_workspace *ws = vae_workspace_new(&fx.ref, n);
    assert_non_null(ws);
    assert_int_equal(vae_decode_cond(&fx.ref, ws, z, labels, n, x), VAE_OK);
    vae_workspace_free(ws);
}

/* The answer's z and x of n images, x checked against the engine with labels. */
static void check_images(const cJSON *root, int n, const int *labels)
{
    float *z = malloc(sizeof(float) * n * L), *x = malloc(sizeof(float) * n * D);
    float *want = malloc(sizeof(float) * n * D);
    assert_true(z && x && want);
    read_matrix(cJSON_GetObjectItem(root, "z"), n, L, z);
    read_matrix(cJSON_GetObjectItem(root, "x"), n, D, x);
    ref_decode(z, labels, n, want);
    assert_close(x, want, (size_t)n * D, 1e-6);
    free(z);
    free(x);
    free(want);
}

/* ---- tests ---- */

static void test_sample_labels(void **state)
{
    (void)state;
    cJSON *root = post_ok("/sample?model=cdigits&n=4&label=3&seed=2&format=json", NULL);
    int three[4] = {3, 3, 3, 3};
    check_images(root, 4, three);
    cJSON_Delete(root);
    /* a mixed grid: one sample per label, n from the list */
    root = post_ok("/sample?model=cdigits&labels=3,3,7&seed=2&format=json", NULL);
    int mixed[3] = {3, 3, 7};
    check_images(root, 3, mixed);
    cJSON_Delete(root);
    /* the label changes the image: the same z of class 3 and of class 7 differ */
    root = post_ok("/sample?model=cdigits&n=1&label=7&seed=2&format=json", NULL);
    float x7[D], x3[D], z[L];
    read_matrix(cJSON_GetObjectItem(root, "x"), 1, D, x7);
    read_matrix(cJSON_GetObjectItem(root, "z"), 1, L, z);
    ref_decode(z, three, 1, x3);
    assert_true(memcmp(x3, x7, sizeof x3) != 0);
    cJSON_Delete(root);

    /* without labels: a class row per row of the grid, 10 columns of 28 */
    harness_response r;
    assert_int_equal(post("/sample?model=cdigits&n=20&seed=1", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    float *px = NULL;
    int h, w;
    char err[256];
    assert_int_equal(image_decode_png(r.body, r.body_len, 1, &px, &h, &w, err, sizeof err), 0);
    assert_int_equal(w, K * 28);
    assert_int_equal(h, 2 * 28);
    free(px);
    harness_response_free(&r);
    root = post_ok("/sample?model=cdigits&n=12&seed=1&format=json", NULL);
    int rows[12];
    for (int i = 0; i < 12; i++)
        rows[i] = i % K;
    check_images(root, 12, rows);
    cJSON_Delete(root);

    expect_refused("POST", "/sample?model=cdigits&label=10", NULL, 422, "unprocessable",
                   "label 10 is out of range: the model's classes are 0 to 9");
    expect_refused("POST", "/sample?model=cdigits&labels=1,12", NULL, 422, "unprocessable",
                   "0 to 9");
    expect_refused("POST", "/sample?model=digits&label=1", NULL, 422, "unprocessable",
                   "not conditional");
    expect_refused("POST", "/sample?model=cdigits&label=x", NULL, 400, "bad_request", "'label'");
    expect_refused("POST", "/sample?model=cdigits&label=-1", NULL, 400, "bad_request", "'label'");
    expect_refused("POST", "/sample?model=cdigits&labels=3,,7", NULL, 400, "bad_request",
                   "'labels'");
    expect_refused("POST", "/sample?model=cdigits&labels=3,7&n=3", NULL, 400, "bad_request",
                   "labels holds 2");
    expect_refused("POST", "/sample?model=cdigits&label=3&labels=3", NULL, 400, "bad_request",
                   "not both");
    expect_refused("POST", "/sample?model=cdigits&label=12345678901", NULL, 400, "bad_request",
                   NULL);
}

static void test_encode_decode_labels(void **state)
{
    (void)state;
    /* two images (a ramp), encoded with their labels as the engine does */
    char body[2 * D * 12 + 64];
    int p = snprintf(body, sizeof body, "{\"x\":[");
    float x[2 * D];
    for (int i = 0; i < 2 * D; i++) {
        x[i] = (float)(i % 97) / 96.0f;
        p += snprintf(body + p, sizeof body - (size_t)p, "%s%s%.9g", i % D ? "" : (i ? "],[" : "["),
                      i % D ? "," : "", (double)x[i]);
    }
    snprintf(body + p, sizeof body - (size_t)p, "]]}");
    cJSON *root = post_ok("/encode?model=cdigits&labels=4,9", body);
    float mu[2 * L], lv[2 * L], want_mu[2 * L], want_lv[2 * L];
    read_matrix(cJSON_GetObjectItem(root, "mu"), 2, L, mu);
    read_matrix(cJSON_GetObjectItem(root, "logvar"), 2, L, lv);
    cJSON_Delete(root);
    vae_workspace *ws = vae_workspace_new(&fx.ref, 2);
    int labels[2] = {4, 9};
    assert_int_equal(vae_encode_cond(&fx.ref, ws, x, labels, 2, want_mu, want_lv), VAE_OK);
    vae_workspace_free(ws);
    assert_close(mu, want_mu, 2 * L, 1e-6);
    assert_close(lv, want_lv, 2 * L, 1e-6);
    expect_refused("POST", "/encode?model=cdigits", body, 422, "unprocessable",
                   "the model is conditional");
    expect_refused("POST", "/encode?model=cdigits&labels=4", body, 422, "unprocessable",
                   "1 labels for 2 images");
    expect_refused("POST", "/encode?model=digits&label=4", body, 422, "unprocessable",
                   "not conditional");

    /* /decode: one label for all, or one per latent */
    const char *zs = "[[0.5,-1,0.25,2],[0,0,0,0]]";
    float z[2 * L] = {0.5f, -1, 0.25f, 2, 0, 0, 0, 0}, want[2 * D], got[2 * D];
    char dbody[256];
    snprintf(dbody, sizeof dbody, "{\"z\":%s,\"labels\":[2,8]}", zs);
    root = post_ok("/decode?model=cdigits&format=json", dbody);
    read_matrix(cJSON_GetObjectItem(root, "x"), 2, D, got);
    cJSON_Delete(root);
    int y[2] = {2, 8};
    ref_decode(z, y, 2, want);
    assert_close(got, want, 2 * D, 1e-6);
    snprintf(dbody, sizeof dbody, "{\"z\":%s,\"label\":5}", zs);
    root = post_ok("/decode?model=cdigits&format=json", dbody);
    int five[2] = {5, 5};
    check_images(root, 2, five);
    cJSON_Delete(root);
    snprintf(dbody, sizeof dbody, "{\"z\":%s,\"label\":11}", zs);
    expect_refused("POST", "/decode?model=cdigits", dbody, 422, "unprocessable", "0 to 9");
    snprintf(dbody, sizeof dbody, "{\"z\":%s}", zs);
    expect_refused("POST", "/decode?model=cdigits", dbody, 422, "unprocessable", "conditional");
    snprintf(dbody, sizeof dbody, "{\"z\":%s,\"label\":\"5\"}", zs);
    expect_refused("POST", "/decode?model=cdigits", dbody, 400, "bad_request",
                   "must be a class number");
    snprintf(dbody, sizeof dbody, "{\"z\":%s,\"label\":1}", zs);
    expect_refused("POST", "/decode?model=digits", dbody, 422, "unprocessable", "not conditional");
}

/* From label a to label b at one z: every step has that z, the ends are the
 * two classes' images and the middle mixes their one-hots. */
static void test_interpolate_between_labels(void **state)
{
    (void)state;
    cJSON *root = post_ok("/interpolate?model=cdigits&format=json",
                          "{\"from\":{\"label\":3},\"to\":{\"label\":7},\"steps\":5,"
                          "\"z\":[0.3,-0.2,1,0]}");
    float z[5 * L], x[5 * D], ends[2 * D];
    read_matrix(cJSON_GetObjectItem(root, "z"), 5, L, z);
    read_matrix(cJSON_GetObjectItem(root, "x"), 5, D, x);
    cJSON_Delete(root);
    const float fixed[L] = {0.3f, -0.2f, 1, 0};
    for (int s = 0; s < 5; s++)
        assert_close(z + s * L, fixed, L, 0);
    float zz[2 * L];
    memcpy(zz, fixed, sizeof fixed);
    memcpy(zz + L, fixed, sizeof fixed);
    int ab[2] = {3, 7};
    ref_decode(zz, ab, 2, ends);
    assert_close(x, ends, D, 1e-6);
    assert_close(x + 4 * D, ends + D, D, 1e-6);
    float mid[K] = {0}, xm[D];
    mid[3] = mid[7] = 0.5f;
    vae_workspace *ws = vae_workspace_new(&fx.ref, 1);
    assert_int_equal(vae_decode_mixed(&fx.ref, ws, fixed, mid, 1, xm), VAE_OK);
    vae_workspace_free(ws);
    assert_close(x + 2 * D, xm, D, 1e-6);
    /* without "z" the fixed latent is 0 */
    root = post_ok("/interpolate?model=cdigits&format=json",
                   "{\"from\":{\"label\":1},\"to\":{\"label\":2},\"steps\":2}");
    read_matrix(cJSON_GetObjectItem(root, "z"), 2, L, z);
    cJSON_Delete(root);
    for (int i = 0; i < 2 * L; i++)
        assert_true(z[i] == 0.0f);
    expect_refused("POST", "/interpolate?model=cdigits",
                   "{\"from\":{\"label\":3},\"to\":{\"label\":10}}", 422, "unprocessable",
                   "to.label\\\" 10 is out of range: the model's classes are 0 to 9");
    expect_refused("POST", "/interpolate?model=cdigits",
                   "{\"from\":{\"z\":[0,0,0,0]},\"to\":{\"label\":1}}", 422, "unprocessable",
                   "needs a \\\"label");
    expect_refused("POST", "/interpolate?model=digits",
                   "{\"from\":{\"label\":3},\"to\":{\"label\":1}}", 422, "unprocessable",
                   "not conditional");
    expect_refused("POST", "/interpolate?model=cdigits",
                   "{\"from\":{\"label\":\"3\"},\"to\":{\"label\":1}}", 400, "bad_request",
                   "from.label");

    /* GET: label:K references, cacheable */
    harness_response r;
    assert_int_equal(harness_request(fx.port, "GET",
                                     "/interpolate?model=cdigits&from=label:3&to=label:7&steps=4",
                                     NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(harness_header(&r, "ETag"));
    harness_response_free(&r);
    expect_refused("GET", "/interpolate?model=cdigits&from=label:3&to=label:12", NULL, 422,
                   "unprocessable", "label 12 is out of range");
    expect_refused("GET", "/interpolate?model=digits&from=label:3&to=label:1", NULL, 422,
                   "unprocessable", "not conditional");
    expect_refused("GET", "/interpolate?model=cdigits&from=label:x&to=label:1", NULL, 400,
                   "bad_request", "label:K");
    if (!fx.have_mnist)
        return;
    /* data-set images carry their labels into a conditional model */
    assert_int_equal(harness_request(fx.port, "GET",
                                     "/interpolate?model=cdigits&from=mnist:test:0&to=label:1"
                                     "&steps=3&format=json",
                                     NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_labels),
        cmocka_unit_test(test_encode_decode_labels),
        cmocka_unit_test(test_interpolate_between_labels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
