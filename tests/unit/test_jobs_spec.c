/* Unit tests for server/jobs_spec.c: POST /jobs bodies into job specs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/vae.h"
#include "server/jobs_spec.h"
#include "tests/lib/harness.h"

typedef struct {
    char dir[64];
    char images[128]; /* 300 images of 8x8, with labels beside */
    char bare[128];   /* 50 images of 8x8, no labels */
} fixture;

static void put_be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

static int write_idx(const char *images, const char *labels, int n, int side)
{
    FILE *f = fopen(images, "wb");
    if (!f) return -1;
    put_be32(f, 0x803);
    put_be32(f, (uint32_t)n);
    put_be32(f, (uint32_t)side);
    put_be32(f, (uint32_t)side);
    for (int i = 0; i < n * side * side; i++) fputc((i * 37 + i / 64) % 256, f);
    fclose(f);
    if (!labels) return 0;
    if (!(f = fopen(labels, "wb"))) return -1;
    put_be32(f, 0x801);
    put_be32(f, (uint32_t)n);
    for (int i = 0; i < n; i++) fputc(i % 10, f);
    fclose(f);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    if (harness_tmpdir(f->dir, sizeof f->dir) != 0) return -1;
    char labels[160];
    snprintf(f->images, sizeof f->images, "%s/d-images-idx3-ubyte", f->dir);
    snprintf(labels, sizeof labels, "%s/d-labels-idx1-ubyte", f->dir);
    snprintf(f->bare, sizeof f->bare, "%s/bare.idx", f->dir);
    if (write_idx(f->images, labels, 300, 8) || write_idx(f->bare, NULL, 50, 8)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    harness_rm_rf(f->dir);
    free(f);
    return 0;
}

/* Parses a body built from fmt (with the fixture's image path as %s where
 * used); returns the status, err filled. */
static int parse(const char *body, jobs_spec *s, char *err, size_t errlen)
{
    return jobs_spec_parse(body, strlen(body), "data", s, err, errlen);
}

static void test_defaults_and_data_shape(void **state)
{
    fixture *f = *state;
    char body[512], err[512] = "";
    jobs_spec s;
    snprintf(body, sizeof body, "{\"model\": \"digits\", \"data\": \"%s\"}", f->images);
    assert_int_equal(parse(body, &s, err, sizeof err), JOBS_SPEC_OK);
    vae_config d;
    vae_config_default(&d);
    assert_string_equal(s.model, "digits");
    assert_string_equal(s.data, f->images);
    assert_int_equal(s.cfg.height, 8);
    assert_int_equal(s.cfg.width, 8);
    assert_int_equal(s.cfg.channels, 1);
    assert_int_equal(s.n_train, 300);
    assert_int_equal(s.n_test, 0);
    assert_int_equal(s.n_used, 300);
    assert_int_equal(s.klass, -1);
    assert_int_equal(s.cfg.n_hidden, 1);
    assert_int_equal(s.cfg.hidden[0], 400);
    assert_int_equal(s.cfg.latent, d.latent);
    assert_int_equal(s.cfg.batch, d.batch);
    assert_int_equal(s.cfg.epochs, d.epochs);
    assert_true(s.cfg.lr == d.lr);
    assert_int_equal((int)s.cfg.seed, 1);
    assert_true(s.mem_bytes > 0);
}

static void test_every_option(void **state)
{
    fixture *f = *state;
    char body[1024], err[512] = "";
    jobs_spec s;
    snprintf(body, sizeof body,
             "{\"model\":\"m.1\",\"data\":\"%s\",\"arch\":\"mlp\",\"hidden\":[32,16],"
             "\"latent\":3,\"activation\":\"tanh\",\"likelihood\":\"gaussian\",\"sigma\":0.5,"
             "\"binarize\":\"dynamic\",\"beta\":2.5,\"kl_warmup\":100,\"free_bits\":0.25,"
             "\"mc_samples\":2,\"lr\":0.002,\"beta1\":0.8,\"beta2\":0.99,\"eps\":1e-7,"
             "\"weight_decay\":0.0001,\"clip_grad\":5,\"batch\":16,\"epochs\":7,\"seed\":42,"
             "\"limit\":100,\"class\":3,\"conditional\":true}",
             f->images);
    assert_int_equal(parse(body, &s, err, sizeof err), JOBS_SPEC_OK);
    assert_int_equal(s.cfg.n_hidden, 2);
    assert_int_equal(s.cfg.hidden[1], 16);
    assert_int_equal(s.cfg.latent, 3);
    assert_int_equal(s.cfg.activation, VAE_ACT_TANH);
    assert_int_equal(s.cfg.likelihood, VAE_LIK_GAUSSIAN);
    assert_true(s.cfg.sigma == 0.5f);
    assert_int_equal(s.cfg.binarize, VAE_BIN_DYNAMIC);
    assert_true(s.cfg.beta == 2.5f);
    assert_int_equal((int)s.cfg.kl_warmup, 100);
    assert_true(s.cfg.free_bits == 0.25f);
    assert_int_equal(s.cfg.mc_samples, 2);
    assert_true(s.cfg.lr == 0.002f);
    assert_true(s.cfg.beta1 == 0.8f && s.cfg.beta2 == 0.99f && s.cfg.eps == 1e-7f);
    assert_true(s.cfg.weight_decay == 0.0001f && s.cfg.clip_grad == 5.0f);
    assert_int_equal(s.cfg.batch, 16);
    assert_int_equal(s.cfg.epochs, 7);
    assert_int_equal((int)s.cfg.seed, 42);
    assert_int_equal(s.limit, 100);
    assert_int_equal(s.n_used, 100);
    assert_int_equal(s.klass, 3);
    assert_int_equal(s.conditional, 1);
    assert_int_equal(s.cfg.n_classes, VAE_MAX_CLASSES); /* a path: the most, for the estimate */

    /* written out in full, and read back to the same spec */
    char *json = jobs_spec_to_json(&s);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"lr\":0.002,"));
    assert_non_null(strstr(json, "\"hidden\":[32,16]"));
    assert_non_null(strstr(json, "\"class\":3"));
    assert_non_null(strstr(json, "\"conditional\":true"));
    jobs_spec back;
    assert_int_equal(jobs_spec_parse(json, strlen(json), "data", &back, err, sizeof err), 0);
    assert_memory_equal(&back.cfg, &s.cfg, sizeof s.cfg);
    assert_string_equal(back.model, s.model);
    assert_string_equal(back.data, s.data);
    assert_int_equal(back.klass, 3);
    assert_int_equal(back.limit, 100);
    assert_int_equal(back.conditional, 1);
    free(json);

    /* class null, hidden as one integer; the body need not end in NUL */
    snprintf(body, sizeof body, "{\"model\":\"m\",\"data\":\"%s\",\"class\":null,\"hidden\":64}XX",
             f->images);
    assert_int_equal(jobs_spec_parse(body, strlen(body) - 2, "data", &s, err, sizeof err), 0);
    assert_int_equal(s.klass, -1);
    assert_int_equal(s.cfg.n_hidden, 1);
    assert_int_equal(s.cfg.hidden[0], 64);
    json = jobs_spec_to_json(&s);
    assert_non_null(strstr(json, "\"class\":null"));
    assert_non_null(strstr(json, "\"conditional\":false"));
    assert_int_equal(s.cfg.n_classes, 0);
    assert_non_null(strstr(json, "\"lr\":0.001,"));
    /* ranks: written only when not 1, so a local job's config reads as before */
    assert_int_equal(s.ranks, 1);
    assert_null(strstr(json, "ranks"));
    free(json);
    snprintf(body, sizeof body, "{\"model\":\"m\",\"data\":\"%s\",\"ranks\":3}", f->images);
    assert_int_equal(jobs_spec_parse(body, strlen(body), "data", &s, err, sizeof err), 0);
    assert_int_equal(s.ranks, 3);
    json = jobs_spec_to_json(&s);
    assert_non_null(strstr(json, "\"ranks\":3"));
    assert_int_equal(jobs_spec_parse(json, strlen(json), "data", &back, err, sizeof err), 0);
    assert_int_equal(back.ranks, 3);
    free(json);
}

/* Each bad body is refused with a message holding the given words. */
static void expect_refused(const fixture *f, const char *fmt, const char *words)
{
    char body[1024], err[512] = "";
    jobs_spec s;
    snprintf(body, sizeof body, fmt, f->images);
    int rc = parse(body, &s, err, sizeof err);
    if (rc != JOBS_SPEC_ERR_INVALID || !strstr(err, words))
        fail_msg("%s: rc %d, err \"%s\" (wanted \"%s\")", body, rc, err, words);
}

static void test_refusals_name_the_key(void **state)
{
    fixture *f = *state;
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"colour\":1}", "unknown key \"colour\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"threads\":2}", "\"threads\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"register\":\"x\"}", "\"register\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"latent\":\"20\"}", "\"latent\" must be an integer");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"latent\":2.5}", "\"latent\" must be an integer");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"latent\":0}", "\"latent\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"epochs\":0}", "\"epochs\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"epochs\":100001}", "\"epochs\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"batch\":-1}", "\"batch\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"lr\":\"fast\"}", "\"lr\" must be a number");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"lr\":0}", "lr must be a positive");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"lr\":1e300}", "\"lr\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"hidden\":[400,\"x\"]}", "\"hidden\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"hidden\":\"400\"}", "\"hidden\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"hidden\":[1,2,3,4,5,6,7,8,9]}", "at most 8");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"hidden\":[20000]}", "width 20000");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"activation\":\"gelu\"}", "\"activation\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"likelihood\":7}", "\"likelihood\" must be a string");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"class\":300}", "\"class\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"class\":\"3\"}", "\"class\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"seed\":-1}", "\"seed\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"conditional\":1}",
                   "\"conditional\" must be true or false");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"batch\":8,\"batch\":9}", "twice");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"ranks\":0}", "\"ranks\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"ranks\":1025}", "\"ranks\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\",\"ranks\":1.5}", "\"ranks\"");
    expect_refused(f, "{\"data\":\"%s\"}", "\"model\" is required");
    expect_refused(f, "{\"model\":\"-bad\",\"data\":\"%s\"}", "\"model\": invalid name");
    expect_refused(f, "[\"%s\"]", "JSON object");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"%s\"", "not valid JSON");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"mnsit\"}%s", "unknown data set \"mnsit\"");
    expect_refused(f, "{\"model\":\"m\",\"data\":\"/nonexistent/x-images-idx3-ubyte\"}%s",
                   "unknown data set");
}

static void test_data_set_checks(void **state)
{
    fixture *f = *state;
    char body[512], err[512] = "";
    jobs_spec s;
    /* a class needs labels beside the images */
    snprintf(body, sizeof body, "{\"model\":\"m\",\"data\":\"%s\",\"class\":1}", f->bare);
    assert_int_equal(parse(body, &s, err, sizeof err), JOBS_SPEC_ERR_INVALID);
    assert_non_null(strstr(err, "labels"));
    /* and so does a conditional model */
    snprintf(body, sizeof body, "{\"model\":\"m\",\"data\":\"%s\",\"conditional\":true}",
             f->bare);
    assert_int_equal(parse(body, &s, err, sizeof err), JOBS_SPEC_ERR_INVALID);
    assert_non_null(strstr(err, "\"conditional\" needs labels"));
    snprintf(body, sizeof body, "{\"model\":\"m\",\"data\":\"%s\"}", f->bare);
    assert_int_equal(parse(body, &s, err, sizeof err), JOBS_SPEC_OK);
    assert_int_equal(s.n_train, 50);
    /* not an IDX file */
    char junk[160];
    snprintf(junk, sizeof junk, "%s/junk", f->dir);
    FILE *fp = fopen(junk, "w");
    fputs("hello, not an image file at all", fp);
    fclose(fp);
    snprintf(body, sizeof body, "{\"model\":\"m\",\"data\":\"%s\"}", junk);
    assert_int_equal(parse(body, &s, err, sizeof err), JOBS_SPEC_ERR_INVALID);
    assert_non_null(strstr(err, "not an IDX image file"));
    /* a built-in name under a root without it */
    const char *fashion = "{\"model\":\"m\",\"data\":\"fashion\"}";
    assert_int_equal(jobs_spec_parse(fashion, strlen(fashion), f->dir, &s, err, sizeof err),
                     JOBS_SPEC_ERR_INVALID);
    assert_non_null(strstr(err, "get-data.sh fashion"));
}

/* The estimate is the engine's own sizes added up (a change of an
 * architecture moves both): what is always held, and the larger of the
 * training state with the per-epoch test evaluation beside it and the final
 * evaluation alone. */
static size_t engine_estimate(const vae_config *c, int n_train, int n_test)
{
    size_t D = (size_t)vae_config_input_dim(c);
    int eval_batch = c->batch < 500 ? 500 : c->batch;
    size_t kept = 4 * vae_config_param_count(c) + (size_t)(n_train + n_test) * (D + 1) +
                  4 * (size_t)n_train;
    size_t training = vae_config_train_state_bytes(c, c->batch, 1) + 4 * D * (size_t)c->batch;
    size_t evaluation = vae_config_train_state_bytes(c, eval_batch, 1) +
                        4 * (size_t)eval_batch * (D + (size_t)c->mc_samples * (size_t)c->latent);
    size_t peak = training + (n_test > 0 ? evaluation : 0);
    return kept + (peak > evaluation ? peak : evaluation);
}

static void test_memory_estimate_is_the_engines(void **state)
{
    (void)state;
    vae_config mlp, wide, conv, colour;
    vae_config_default(&mlp); /* 784-400-20, Bernoulli, batch 128 */
    mlp.channels = 1, mlp.height = 28, mlp.width = 28;
    wide = mlp;
    wide.n_hidden = 2, wide.hidden[0] = 512, wide.hidden[1] = 256;
    wide.likelihood = VAE_LIK_GAUSSIAN_LEARNED, wide.mc_samples = 3, wide.batch = 700;
    conv = mlp;
    conv.arch = VAE_ARCH_CONV, conv.n_conv = 2, conv.conv_channels[0] = 8,
    conv.conv_channels[1] = 16;
    colour = conv;
    colour.channels = 3, colour.height = 32, colour.width = 32;
    colour.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    const vae_config *cfgs[] = {&mlp, &wide, &conv, &colour};
    for (int i = 0; i < 4; i++) {
        char err[256];
        assert_int_equal(vae_config_validate(cfgs[i], err, sizeof err), 0);
        size_t want = engine_estimate(cfgs[i], 1000, 200);
        assert_true(vae_config_param_count(cfgs[i]) > 0);
        assert_true(vae_config_train_state_bytes(cfgs[i], cfgs[i]->batch, 1) > 0);
        assert_int_equal(jobs_spec_memory_bytes(cfgs[i], 1000, 200), want);
        assert_int_equal(jobs_spec_memory_bytes(cfgs[i], 1000, 0), engine_estimate(cfgs[i], 1000, 0));
        /* each image costs its bytes, its label and (for training) its place in the order */
        size_t D = (size_t)vae_config_input_dim(cfgs[i]);
        assert_int_equal(jobs_spec_memory_bytes(cfgs[i], 1001, 200) - want, D + 1 + 4);
        assert_int_equal(jobs_spec_memory_bytes(cfgs[i], 1000, 201) - want, D + 1);
        /* a test set adds its evaluation beside the training state: the smaller
         * of the two comes on top of the larger */
        int eval_batch = cfgs[i]->batch < 500 ? 500 : cfgs[i]->batch;
        size_t training = vae_config_train_state_bytes(cfgs[i], cfgs[i]->batch, 1) +
                          4 * D * (size_t)cfgs[i]->batch;
        size_t evaluation = vae_config_train_state_bytes(cfgs[i], eval_batch, 1) +
                            4 * (size_t)eval_batch * (D + (size_t)cfgs[i]->mc_samples * cfgs[i]->latent);
        assert_int_equal(jobs_spec_memory_bytes(cfgs[i], 1000, 1) -
                             jobs_spec_memory_bytes(cfgs[i], 1000, 0),
                         (training < evaluation ? training : evaluation) + D + 1);
    }
    /* the conv model's state is not the MLP's: the estimate knows the architecture */
    assert_true(jobs_spec_memory_bytes(&conv, 1000, 200) != jobs_spec_memory_bytes(&mlp, 1000, 200));
    vae_config bad = mlp;
    bad.latent = 0; /* does not validate: no estimate to trust */
    assert_int_equal(jobs_spec_memory_bytes(&bad, 1000, 200), SIZE_MAX / 2);
}

static void test_memory_estimate_of_mnist(void **state)
{
    (void)state;
    if (access("data/mnist/train-images-idx3-ubyte", R_OK) != 0)
        fail_msg("data/mnist missing: run scripts/get-data.sh mnist");
    char err[512] = "";
    jobs_spec s;
    const char *body = "{\"model\":\"digits\",\"data\":\"mnist\",\"hidden\":[400],\"latent\":20,"
                       "\"batch\":128,\"epochs\":10}";
    assert_int_equal(jobs_spec_parse(body, strlen(body), "data", &s, err, sizeof err), 0);
    assert_int_equal(s.n_train, 60000);
    assert_int_equal(s.n_test, 10000);
    assert_int_equal(s.mem_bytes, jobs_spec_memory_bytes(&s.cfg, s.n_used, s.n_test));
    /* 70,000 images of 784 bytes (kept as bytes) is 54.9 MB; 652,824
     * parameters x 4 floats is 10.4 MB; activations a few MB more */
    double data = 70000.0 * 784, params = 652824.0 * 16;
    assert_true((double)s.mem_bytes > data + params);
    assert_true((double)s.mem_bytes < data + params + 64e6);
    /* wider layers cost more */
    body = "{\"model\":\"digits\",\"data\":\"mnist\",\"hidden\":[4096,4096]}";
    jobs_spec big;
    assert_int_equal(jobs_spec_parse(body, strlen(body), "data", &big, err, sizeof err), 0);
    assert_true(big.mem_bytes > s.mem_bytes + (size_t)4096 * 4096 * 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults_and_data_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_name_the_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_set_checks, setup, teardown),
        cmocka_unit_test(test_memory_estimate_is_the_engines),
        cmocka_unit_test(test_memory_estimate_of_mnist),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
