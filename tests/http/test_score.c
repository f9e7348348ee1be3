/* Black-box tests of POST /score and GET /score against a real vaed: every
 * field of the answer against eval_score_inputs run here on the same
 * checkpoint with the same seed (JSON, PNG and npy bodies alike, the
 * likelihood regret when asked), the bounds (k, regret steps, draws and
 * regret work per request) and the refusals (bodies, shapes, values,
 * Content-Type), and the labels of a conditional model. GET /score reads
 * MNIST from <repo>/data and is skipped without it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/dataset.h"
#include "engine/eval.h"
#include "engine/image.h"
#include "server/npy.h"
#include "tests/lib/harness.h"

#define SEED 13
#define D 784

typedef struct {
    char dir[HARNESS_PATH_MAX];
    harness_daemon daemon;
    int port;
    vae_model ref, cref; /* digits and cdigits, loaded here from the same bytes */
    int have_mnist;
    float x[3 * D];
    /* the budget test's own daemon, in the fixture so that a failed
     * assertion still leaves it to teardown */
    char budget_dir[HARNESS_PATH_MAX];
    harness_daemon budget_daemon;
} fixture;

static fixture fx;

static int load(const vae_config *c, vae_model *m)
{
    char err[256];
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (harness_model_bytes(c, SEED, &bytes, &len, err, sizeof err)) return -1;
    int rc = ckpt_load_mem(m, bytes, len, NULL, err, sizeof err);
    free(bytes);
    return rc ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    harness_daemon_kill9(&fx.daemon);
    if (fx.dir[0]) harness_rm_rf(fx.dir);
    harness_daemon_kill9(&fx.budget_daemon);
    if (fx.budget_dir[0]) harness_rm_rf(fx.budget_dir);
    vae_free(&fx.ref);
    vae_free(&fx.cref);
    return 0;
}

static int setup(void **state)
{
    char err[256];
    memset(&fx, 0, sizeof fx);
    if ((fx.have_mnist = harness_use_repo_data()) < 0) return -1;
    vae_config c, cc;
    harness_small_config(&c);
    cc = c;
    cc.n_classes = 10;
    for (int i = 0; i < 3 * D; i++) fx.x[i] = (float)((i * 7919) % 255) / 255.0f * (i % 3 != 0);
    if (harness_tmpdir(fx.dir, sizeof fx.dir) ||
        harness_put_model(fx.dir, "digits", &c, SEED, NULL, err, sizeof err) ||
        harness_put_model(fx.dir, "cdigits", &cc, SEED, NULL, err, sizeof err) ||
        load(&c, &fx.ref) || load(&cc, &fx.cref)) {
        teardown(state);
        return -1;
    }
    fx.port = harness_daemon_start(&fx.daemon, fx.dir, NULL);
    if (fx.port < 0) {
        teardown(state);
        return -1;
    }
    return 0;
}

/* ---- helpers ---- */

/* {"x": [[...n images...]]} of fx.x (malloc'd). */
static char *json_images(const float *x, int n)
{
    char *rows = harness_json_rows(x, n, D);
    assert_non_null(rows);
    size_t len = strlen(rows);
    char *text = malloc(len + 8);
    assert_non_null(text);
    snprintf(text, len + 8, "{\"x\":%s}", rows);
    free(rows);
    return text;
}

static int post(const char *path, const char *ctype, const void *body, size_t len,
                harness_response *r)
{
    char ct[96];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
    const char *headers[] = {ct, NULL};
    return harness_request(fx.port, "POST", path, headers, body, len, r);
}

static cJSON *ok_json(harness_response *r, const char *what)
{
    if (r->status != 200) fail_msg("%s: %d %s", what, r->status, r->body ? (char *)r->body : "");
    cJSON *root = harness_json(r);
    assert_non_null(root);
    harness_response_free(r);
    return root;
}

static void expect_refused(const char *method, const char *path, const char *ctype,
                           const void *body, size_t len, int status, const char *code,
                           const char *words)
{
    harness_response r;
    char ct[96];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "application/json");
    const char *headers[] = {ct, NULL};
    assert_int_equal(harness_request(fx.port, method, path, body ? headers : NULL, body, len, &r),
                     0);
    if (!harness_expect_error(&r, status, code) || (words && !strstr((char *)r.body, words)))
        fail_msg("%s %s: %d %s, wanted %d %s with \"%s\"", method, path, r.status,
                 r.body ? (char *)r.body : "", status, code, words ? words : "");
    harness_response_free(&r);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("no number \"%s\"", key);
    return v->valuedouble;
}

/* The answer's n scores against the engine's for x with k, regret steps. */
static void check_scores(const cJSON *root, const vae_model *m, const float *x, const int *labels,
                         int n, int k, int regret)
{
    assert_int_equal((int)num(root, "k"), k);
    assert_int_equal((int)num(root, "regret_steps"), regret);
    assert_string_equal(cJSON_GetObjectItem(root, "complexity")->valuestring,
                        "png-literal-deflate");
    const cJSON *scores = cJSON_GetObjectItem(root, "scores");
    assert_int_equal(cJSON_GetArraySize(scores), n);
    eval_score_options o;
    eval_score_options_default(&o);
    o.iwae_k = k;
    o.regret_steps = regret;
    eval_score *want = calloc((size_t)n, sizeof *want);
    char err[256];
    assert_int_equal(eval_score_inputs(m, x, labels, n, &o, want, err, sizeof err), VAE_OK);
    for (int i = 0; i < n; i++) {
        const cJSON *s = cJSON_GetArrayItem(scores, i);
        const double got[] = {num(s, "neg_elbo"), num(s, "recon"), num(s, "kl"),
                              num(s, "iwae_nll"), num(s, "complexity_bits"),
                              num(s, "corrected_bits"), num(s, "recon_floor"),
                              num(s, "ood_score")};
        const double exp_[] = {want[i].neg_elbo, want[i].recon, want[i].kl, want[i].iwae_nll,
                               want[i].complexity_bits, want[i].corrected_bits,
                               want[i].recon_floor, want[i].ood_score};
        for (size_t f = 0; f < sizeof got / sizeof got[0]; f++)
            if (fabs(got[f] - exp_[f]) > 1e-7 * fmax(1.0, fabs(exp_[f])))
                fail_msg("input %d field %zu: %.9g, engine %.9g", i, f, got[f], exp_[f]);
        const cJSON *lr = cJSON_GetObjectItem(s, "likelihood_regret");
        if (regret)
            assert_true(fabs(lr->valuedouble - want[i].regret) <=
                        1e-7 * fmax(1, fabs(want[i].regret)));
        else
            assert_true(cJSON_IsNull(lr));
    }
    free(want);
}

/* ---- tests ---- */

static void test_score_bodies(void **state)
{
    (void)state;
    harness_response r;
    char *body = json_images(fx.x, 3);
    assert_int_equal(post("/score?model=digits", "application/json", body, strlen(body), &r), 0);
    cJSON *root = ok_json(&r, "POST /score JSON");
    check_scores(root, &fx.ref, fx.x, NULL, 3, 64, 0);
    cJSON_Delete(root);
    assert_int_equal(post("/score?model=digits&k=7&regret=4&seed=1", "application/json", body,
                          strlen(body), &r),
                     0);
    root = ok_json(&r, "POST /score with regret");
    check_scores(root, &fx.ref, fx.x, NULL, 3, 7, 4);
    cJSON_Delete(root);

    /* the same images as npy, (n, C, H, W) and (n, D) */
    uint8_t *npy;
    size_t len;
    int shape4[4] = {3, 1, 28, 28}, shape2[2] = {3, D};
    assert_int_equal(npy_encode_f32(fx.x, shape4, 4, &npy, &len), NPY_OK);
    assert_int_equal(post("/score?model=digits", "application/x-npy", npy, len, &r), 0);
    root = ok_json(&r, "POST /score npy");
    check_scores(root, &fx.ref, fx.x, NULL, 3, 64, 0);
    cJSON_Delete(root);
    free(npy);
    assert_int_equal(npy_encode_f32(fx.x, shape2, 2, &npy, &len), NPY_OK);
    assert_int_equal(post("/score?model=digits&k=3", "application/x-npy", npy, len, &r), 0);
    root = ok_json(&r, "POST /score npy (n, D)");
    check_scores(root, &fx.ref, fx.x, NULL, 3, 3, 0);
    cJSON_Delete(root);
    /* a bad array: garbage, another shape, a value outside [0, 1] */
    expect_refused("POST", "/score?model=digits", "application/x-npy", "not npy", 7, 400,
                   "bad_request", "npy");
    npy[len - 1] = 0x7f; /* the last float becomes NaN-ish / huge */
    expect_refused("POST", "/score?model=digits", "application/x-npy", npy, len, 422,
                   "unprocessable", "[0, 1]");
    free(npy);
    int shape3[2] = {3, 100};
    assert_int_equal(npy_encode_f32(fx.x, shape3, 2, &npy, &len), NPY_OK);
    expect_refused("POST", "/score?model=digits", "application/x-npy", npy, len, 422,
                   "unprocessable", "shape");
    free(npy);

    /* one PNG: scored as its 8-bit pixels */
    uint8_t *png;
    char err[256];
    assert_int_equal(image_encode_grid_png(fx.x, 1, 1, 28, 28, 1, &png, &len, err, sizeof err),
                     VAE_OK);
    assert_int_equal(post("/score?model=digits", "image/png", png, len, &r), 0);
    root = ok_json(&r, "POST /score PNG");
    float *px;
    int h, w;
    assert_int_equal(image_decode_png(png, len, 1, &px, &h, &w, err, sizeof err), VAE_OK);
    check_scores(root, &fx.ref, px, NULL, 1, 64, 0);
    cJSON_Delete(root);
    free(px);
    free(png);

    /* bounds and refusals */
    expect_refused("POST", "/score?model=digits&k=0", NULL, body, strlen(body), 400,
                   "bad_request", "'k'");
    expect_refused("POST", "/score?model=digits&k=5001", NULL, body, strlen(body), 400,
                   "bad_request", "'k'");
    expect_refused("POST", "/score?model=digits&regret=1001", NULL, body, strlen(body), 400,
                   "bad_request", "'regret'");
    expect_refused("POST", "/score?model=digits", "text/plain", body, strlen(body), 415,
                   "unsupported_media_type", "application/x-npy");
    expect_refused("POST", "/score?model=digits&label=1", NULL, body, strlen(body), 422,
                   "unprocessable", "not conditional");
    free(body);
    enum { MANY = 101 };
    float *many = calloc((size_t)MANY * D, sizeof(float));
    body = json_images(many, MANY);
    expect_refused("POST", "/score?model=digits&k=2600", NULL, body, strlen(body), 422,
                   "unprocessable", "draws");
    expect_refused("POST", "/score?model=digits&regret=100", NULL, body, strlen(body), 422,
                   "unprocessable", "regret");
    free(body);
    free(many);
}

static void test_score_conditional_and_get(void **state)
{
    (void)state;
    harness_response r;
    char *body = json_images(fx.x, 2);
    assert_int_equal(post("/score?model=cdigits&labels=2,9", "application/json", body,
                          strlen(body), &r),
                     0);
    cJSON *root = ok_json(&r, "POST /score conditional");
    int labels[2] = {2, 9};
    check_scores(root, &fx.cref, fx.x, labels, 2, 64, 0);
    cJSON_Delete(root);
    expect_refused("POST", "/score?model=cdigits", NULL, body, strlen(body), 422,
                   "unprocessable", "conditional");
    expect_refused("POST", "/score?model=cdigits&label=10", NULL, body, strlen(body), 422,
                   "unprocessable", "0 to 9");
    free(body);

    expect_refused("GET", "/score?model=digits&from=nope", NULL, NULL, 0, 400, "bad_request",
                   "DATASET:SPLIT:INDEX");
    expect_refused("GET", "/score?model=digits", NULL, NULL, 0, 400, "bad_request", "'from'");
    if (!fx.have_mnist) return;
    expect_refused("GET", "/score?model=digits&from=mnist:test:10000", NULL, NULL, 0, 404,
                   "not_found", "0 to 9999");
    char err[256];
    dataset d;
    assert_int_equal(dataset_load_idx(&d, "data/mnist/t10k-images-idx3-ubyte",
                                      "data/mnist/t10k-labels-idx1-ubyte", err, sizeof err),
                     VAE_OK);
    assert_int_equal(harness_request(fx.port, "GET", "/score?model=digits&from=mnist:test:5",
                                     NULL, NULL, 0, &r),
                     0);
    root = ok_json(&r, "GET /score");
    check_scores(root, &fx.ref, d.x + 5 * D, NULL, 1, 64, 0);
    cJSON_Delete(root);
    /* a conditional model takes the image's own label */
    assert_int_equal(harness_request(fx.port, "GET", "/score?model=cdigits&from=mnist:test:5&k=9",
                                     NULL, NULL, 0, &r),
                     0);
    root = ok_json(&r, "GET /score conditional");
    int own = d.labels[5];
    check_scores(root, &fx.cref, d.x + 5 * D, &own, 1, 9, 0);
    cJSON_Delete(root);
    dataset_free(&d);
}

/* What a request may allocate counts the engine's share before the body is
 * read: with --request-mem-mb 1 three images pass at k=8, while k=500 (a
 * workspace of 500 draws) and the likelihood regret of a wider model (a
 * copy of it with its Adam state) are refused, naming the flag. */
static void test_score_memory_budget(void **state)
{
    (void)state;
    char err[256], *dir = fx.budget_dir;
    harness_daemon *d = &fx.budget_daemon;
    const char *const args[] = {"--request-mem-mb", "1", NULL};
    assert_int_equal(harness_tmpdir(dir, sizeof fx.budget_dir), 0);
    vae_config wide; /* vaed's default 784-400-20: 2.6 MB a copy of its parameters */
    vae_config_default(&wide);
    assert_int_equal(harness_put_model(dir, "digits", NULL, SEED, NULL, err, sizeof err), 0);
    assert_int_equal(harness_put_model(dir, "wide", &wide, SEED, NULL, err, sizeof err), 0);
    int fixture_port = fx.port; /* post() and expect_refused() speak to fx.port */
    fx.port = harness_daemon_start(d, dir, args);
    assert_true(fx.port > 0);
    uint8_t *npy;
    size_t len;
    int shape[2] = {3, D};
    assert_int_equal(npy_encode_f32(fx.x, shape, 2, &npy, &len), NPY_OK);
    harness_response r;
    assert_int_equal(post("/score?k=8", "application/x-npy", npy, len, &r), 0);
    cJSON_Delete(ok_json(&r, "POST /score under the budget"));
    expect_refused("POST", "/score?k=500", "application/x-npy", npy, len, 422, "unprocessable",
                   "--request-mem-mb");
    assert_int_equal(post("/score?model=wide&k=8", "application/x-npy", npy, len, &r), 0);
    cJSON_Delete(ok_json(&r, "POST /score on the wide model"));
    expect_refused("POST", "/score?model=wide&k=8&regret=2", "application/x-npy", npy, len, 422,
                   "unprocessable", "--request-mem-mb");
    free(npy);
    harness_daemon_kill9(d);
    harness_rm_rf(dir);
    dir[0] = '\0';
    fx.port = fixture_port;
}

/* A score's work (here ~10,000 regret steps and 50,000 draws) runs on the
 * compute pool, never on the polling thread that read it: while it runs,
 * /metrics counts it in vaed_inference_in_flight and /healthz answers. On
 * a polling thread the gauge would stay 0 for the whole score. */
typedef struct {
    char *body;
    harness_response r;
    int rc;
    volatile int done;
} long_score;

static void *send_long_score(void *arg)
{
    long_score *s = arg;
    s->rc = post("/score?model=digits&k=5000&regret=1000", "application/json", s->body,
                 strlen(s->body), &s->r);
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static long in_flight(void)
{
    harness_response m;
    long v = -1;
    if (harness_request(fx.port, "GET", "/metrics", NULL, NULL, 0, &m) == 0 && m.status == 200) {
        const char *at = strstr((const char *)m.body, "\nvaed_inference_in_flight ");
        if (at)
            v = strtol(at + strlen("\nvaed_inference_in_flight "), NULL, 10);
    }
    harness_response_free(&m);
    return v;
}

static void test_score_off_polling_threads(void **state)
{
    (void)state;
    float x[10 * D];
    for (int i = 0; i < 10; i++)
        memcpy(x + (size_t)i * D, fx.x + (size_t)(i % 3) * D, D * sizeof *x);
    long_score s = {.body = json_images(x, 10)};
    assert_int_equal(in_flight(), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_long_score, &s), 0);
    int seen = 0, healthy = 0;
    while (!__atomic_load_n(&s.done, __ATOMIC_ACQUIRE) && !(seen && healthy)) {
        if (in_flight() >= 1 && !__atomic_load_n(&s.done, __ATOMIC_ACQUIRE)) {
            seen = 1;
            harness_response h;
            if (harness_request(fx.port, "GET", "/healthz", NULL, NULL, 0, &h) == 0 &&
                h.status == 200)
                healthy = 1;
            harness_response_free(&h);
        }
        harness_sleep_ms(5);
    }
    pthread_join(t, NULL);
    free(s.body);
    assert_int_equal(s.rc, 0);
    cJSON_Delete(ok_json(&s.r, "a long POST /score"));
    assert_true(seen);
    assert_true(healthy);
    assert_int_equal(in_flight(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_score_bodies),
        cmocka_unit_test(test_score_conditional_and_get),
        cmocka_unit_test(test_score_memory_budget),
        cmocka_unit_test(test_score_off_polling_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
