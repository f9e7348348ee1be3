/* The C engine against PyTorch: the files in tests/ref/fixtures/ hold a small
 * model, its inputs and eps, and what PyTorch computed from them (in float64,
 * see tests/ref/make_fixtures.py): mu, logvar, z, the decoder mean, the loss,
 * every gradient, and the losses and parameters of 5 Adam steps. Each tensor
 * is compared with a stated tolerance and the worst error is printed; any
 * tensor out of tolerance fails the test. PyTorch itself is not needed here.
 * The same comparisons run for the MLP and the conv model (conv_* fixtures),
 * and for conditional models of both (cond_*, conv_cond_*: the fixture's
 * "labels" go into every pass).
 *
 * Tolerances (the C engine runs in float32; the reference is exact to float32):
 *   mu, logvar, z, x_mean     |c - t| <= 1e-5 * max(1, |t|)
 *   loss, recon, kl           |c - t| <= 1e-5 * max(1, |t|) + 1e-8 * B * D: each of
 *                             the B*D per-pixel terms is rounded in float32 (about
 *                             6e-8 near 0.7), and for the continuous Bernoulli
 *                             they cancel to a sum near 0, so the error does not
 *                             shrink with the sum
 *   gradients                 |c - t| <= 1e-5 * max|t| over the tensor
 *   Adam losses               as loss
 *   Adam parameters           |c - t| <= 2e-6 + 1e-5 * |t|; an Adam step moves a
 *                             parameter by about lr = 1e-3 whatever the gradient's
 *                             size, so this is 0.2% of a step after 5 steps.
 * Run from the repository root (the fixtures are found relative to it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "engine/vae.h"

#define FIXTURE_DIR "tests/ref/fixtures/"
#define ADAM_STEPS 5

#define TOL_ACT 1e-5   /* activations and losses, relative to max(1, |t|) */
#define TOL_GRAD 1e-5  /* gradients, relative to the tensor's max |t| */
#define TOL_ADAM_ABS 2e-6
#define TOL_ADAM_REL 1e-5

typedef enum { SCALE_ELEM, SCALE_TENSOR_MAX, SCALE_ADAM } scale_mode;

/* Compares n floats, prints the worst error, returns 1 when within tolerance. */
static int check_close(const char *what, const float *got, const float *want, size_t n,
                       scale_mode mode, double tol)
{
    double maxabs = 0.0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)want[i]) > maxabs) maxabs = fabs((double)want[i]);
    double worst = 0.0; /* error / allowed */
    double worst_err = 0.0;
    size_t worst_i = 0;
    for (size_t i = 0; i < n; i++) {
        double t = want[i], c = got[i], err = fabs(c - t), allowed;
        switch (mode) {
        case SCALE_ELEM: allowed = tol * fmax(1.0, fabs(t)); break;
        case SCALE_TENSOR_MAX: allowed = tol * (maxabs > 0.0 ? maxabs : 1.0); break;
        default: allowed = TOL_ADAM_ABS + TOL_ADAM_REL * fabs(t); break;
        }
        double r = err / allowed;
        if (!(r <= worst)) { /* also catches NaN */
            worst = isnan(r) ? INFINITY : r;
            worst_err = err;
            worst_i = i;
        }
    }
    int ok = worst <= 1.0;
    print_message("  %-34s n=%-6zu max|t| %-10.4g worst |c-t| %-10.3g at %-6zu (%.3f of tolerance)%s\n",
                  what, n, maxabs, worst_err, worst_i, worst, ok ? "" : "  FAIL");
    return ok;
}

/* A loss summed over n_terms float32 per-pixel terms. */
static int check_scalar(const char *what, double got, double want, double tol, double n_terms)
{
    double err = fabs(got - want), allowed = tol * fmax(1.0, fabs(want)) + 1e-8 * n_terms;
    int ok = err <= allowed;
    print_message("  %-34s c %.9g t %.9g |c-t| %.3g (%.3f of tolerance)%s\n", what, got, want, err,
                  err / allowed, ok ? "" : "  FAIL");
    return ok;
}

/* A fixture tensor of exactly n floats, or NULL (the caller fails). */
static const float *fx_tensor(const st_file *f, const char *name, size_t n)
{
    const st_tensor_info *t = st_find(f, name);
    if (!t) {
        print_error("fixture has no tensor %s\n", name);
        return NULL;
    }
    if (strcmp(t->dtype, "F32") != 0 || t->end - t->begin != n * sizeof(float)) {
        print_error("fixture tensor %s: dtype %s, %llu bytes, expected %zu floats\n", name,
                    t->dtype, (unsigned long long)(t->end - t->begin), n);
        return NULL;
    }
    return (const float *)(f->data + t->begin);
}

static double fx_meta_double(const st_file *f, const char *key)
{
    const char *s = st_meta_get(f, key);
    assert_non_null(s);
    char *end;
    double v = strtod(s, &end);
    assert_true(end != s && *end == '\0');
    return v;
}

/* Sets m's parameters from the fixture's <prefix><name> tensors. */
static void fx_load_params(const st_file *f, vae_model *m, const char *prefix)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const vae_tensor *t = &m->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%s%s", prefix, t->name);
        const float *src = fx_tensor(f, name, t->size);
        assert_non_null(src);
        memcpy(m->params + t->offset, src, t->size * sizeof(float));
    }
}

typedef struct {
    st_file f;
    vae_model m;
    int B, L, Z, D;
    int *labels;     /* owned; (B) a conditional fixture's labels, else NULL */
    int *labels_rep; /* owned; (B * L) labels[b] for each of image b's samples */
} fixture;

static void fixture_open(fixture *fx, const char *name)
{
    char path[256], err[256];
    snprintf(path, sizeof path, FIXTURE_DIR "%s.safetensors", name);
    if (st_read_file(path, &fx->f, err, sizeof err)) fail_msg("%s: %s (run from the repository root)", path, err);
    const char *cj = st_meta_get(&fx->f, "vaed_config");
    assert_non_null(cj);
    vae_config cfg;
    if (ckpt_config_from_json(&cfg, cj, strlen(cj), err, sizeof err)) fail_msg("%s: %s", path, err);
    if (vae_alloc(&fx->m, &cfg, err, sizeof err)) fail_msg("%s: %s", path, err);
    fx->L = cfg.mc_samples;
    fx->Z = cfg.latent;
    fx->D = vae_config_input_dim(&cfg);
    const st_tensor_info *x = st_find(&fx->f, "x");
    assert_non_null(x);
    assert_int_equal(x->ndim, 2);
    assert_int_equal(x->shape[1], fx->D);
    fx->B = (int)x->shape[0];
    fx_load_params(&fx->f, &fx->m, "param.");
    fx->labels = fx->labels_rep = NULL;
    if (vae_config_is_conditional(&cfg)) {
        const float *y = fx_tensor(&fx->f, "labels", (size_t)fx->B);
        assert_non_null(y);
        fx->labels = malloc(sizeof(int) * (size_t)fx->B);
        fx->labels_rep = malloc(sizeof(int) * (size_t)fx->B * (size_t)fx->L);
        assert_true(fx->labels && fx->labels_rep);
        for (int b = 0; b < fx->B; b++) {
            fx->labels[b] = (int)y[b];
            for (int l = 0; l < fx->L; l++) fx->labels_rep[b * fx->L + l] = (int)y[b];
        }
    }
}

static void fixture_close(fixture *fx)
{
    free(fx->labels);
    free(fx->labels_rep);
    vae_free(&fx->m);
    st_free(&fx->f);
}

/* Every comparison for one fixture; returns the number of tensors out of
 * tolerance (0 = all agree). */
static int compare_fixture(fixture *fx)
{
    int bad = 0;
    vae_model *m = &fx->m;
    const st_file *f = &fx->f;
    int B = fx->B, L = fx->L, Z = fx->Z, D = fx->D, BL = B * L;
    char err[256];
    const float *x = fx_tensor(f, "x", (size_t)B * D);
    const float *eps = fx_tensor(f, "eps", (size_t)BL * Z);
    const float *want_mu = fx_tensor(f, "mu", (size_t)B * Z);
    const float *want_lv = fx_tensor(f, "logvar", (size_t)B * Z);
    const float *want_z = fx_tensor(f, "z", (size_t)BL * Z);
    const float *want_xm = fx_tensor(f, "x_mean", (size_t)BL * D);
    assert_true(x && eps && want_mu && want_lv && want_z && want_xm);

    /* inference */
    vae_workspace *ws = vae_workspace_new(m, BL); /* owned here */
    float *mu = malloc(sizeof(float) * B * Z), *lv = malloc(sizeof(float) * B * Z); /* owned here */
    float *z = malloc(sizeof(float) * BL * Z), *xm = malloc(sizeof(float) * BL * D); /* owned here */
    assert_true(ws && mu && lv && z && xm);
    assert_int_equal(vae_encode_cond(m, ws, x, fx->labels, B, mu, lv), VAE_OK);
    bad += !check_close("mu", mu, want_mu, (size_t)B * Z, SCALE_ELEM, TOL_ACT);
    bad += !check_close("logvar", lv, want_lv, (size_t)B * Z, SCALE_ELEM, TOL_ACT);
    /* z from the encoder's output through the engine's latent layer (the
     * training state keeps its own z private) */
    float *heads = malloc(sizeof(float) * B * 2 * Z); /* owned here */
    double *kl_dim = malloc(sizeof(double) * Z), kl_opt; /* owned here */
    assert_true(heads && kl_dim);
    for (int r = 0; r < B; r++) {
        memcpy(heads + (size_t)r * 2 * Z, mu + (size_t)r * Z, sizeof(float) * Z);
        memcpy(heads + (size_t)r * 2 * Z + Z, lv + (size_t)r * Z, sizeof(float) * Z);
    }
    vae_loss_latent_forward(&m->cfg, heads, eps, B, z, kl_dim, &kl_opt);
    free(heads);
    free(kl_dim);
    bad += !check_close("z", z, want_z, (size_t)BL * Z, SCALE_ELEM, TOL_ACT);
    assert_int_equal(vae_decode_cond(m, ws, want_z, fx->labels_rep, BL, xm), VAE_OK);
    bad += !check_close("x_mean (decode of z)", xm, want_xm, (size_t)BL * D, SCALE_ELEM, TOL_ACT);

    /* loss and gradients */
    vae_train_state *ts = vae_train_state_new(m, B, err, sizeof err); /* owned here */
    assert_non_null(ts);
    vae_stats st;
    double n_terms = (double)B * D;
    assert_int_equal(vae_forward_loss_cond(m, ts, x, fx->labels, eps, B, &st), VAE_OK);
    bad += !check_scalar("loss", st.loss, fx_meta_double(f, "loss"), TOL_ACT, n_terms);
    bad += !check_scalar("recon", st.recon, fx_meta_double(f, "recon"), TOL_ACT, n_terms);
    bad += !check_scalar("kl", st.kl, fx_meta_double(f, "kl"), TOL_ACT, (double)B * Z);
    assert_int_equal(vae_backward(m, ts), VAE_OK);
    const float *g = vae_train_grads(ts);
    for (int i = 0; i < m->n_tensors; i++) {
        const vae_tensor *t = &m->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "grad.%s", t->name);
        const float *want = fx_tensor(f, name, t->size);
        assert_non_null(want);
        bad += !check_close(name, g + t->offset, want, t->size, SCALE_TENSOR_MAX, TOL_GRAD);
    }
    vae_train_state_free(ts);

    /* 5 Adam steps from the same start with the fixture's eps */
    const float *adam_eps = fx_tensor(f, "adam_eps", (size_t)ADAM_STEPS * BL * Z);
    const float *adam_losses = fx_tensor(f, "adam_losses", ADAM_STEPS);
    assert_true(adam_eps && adam_losses);
    ts = vae_train_state_new(m, B, err, sizeof err);
    assert_non_null(ts);
    for (int s = 0; s < ADAM_STEPS; s++) {
        assert_int_equal(
            vae_forward_loss_cond(m, ts, x, fx->labels, adam_eps + (size_t)s * BL * Z, B, &st),
            VAE_OK);
        char what[64];
        snprintf(what, sizeof what, "adam loss before step %d", s + 1);
        bad += !check_scalar(what, st.loss, adam_losses[s], TOL_ACT, n_terms);
        vae_zero_grad(ts); /* backward adds */
        assert_int_equal(vae_backward(m, ts), VAE_OK);
        vae_adam_update(m, ts);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const vae_tensor *t = &m->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "adam_param.%s", t->name);
        const float *want = fx_tensor(f, name, t->size);
        assert_non_null(want);
        bad += !check_close(name, m->params + t->offset, want, t->size, SCALE_ADAM, 0.0);
    }
    vae_train_state_free(ts);
    vae_workspace_free(ws);
    free(mu);
    free(lv);
    free(z);
    free(xm);
    return bad;
}

static void run_fixture(const char *name)
{
    fixture fx;
    fixture_open(&fx, name);
    print_message("%s: %s\n", name, st_meta_get(&fx.f, "vaed_config"));
    int bad = compare_fixture(&fx);
    fixture_close(&fx);
    if (bad) fail_msg("%s: %d tensors differ from PyTorch beyond tolerance", name, bad);
}

static void test_bernoulli(void **state) { (void)state; run_fixture("bernoulli"); }
static void test_cbernoulli(void **state) { (void)state; run_fixture("cbernoulli"); }
static void test_gaussian(void **state) { (void)state; run_fixture("gaussian"); }
static void test_gaussian_learned(void **state) { (void)state; run_fixture("gaussian-learned"); }
/* The convolutional VAE (nn.Conv2d / nn.ConvTranspose2d layouts): 16x16 with
 * no padding; 28x28 padded to 32 and cropped, with 2C output channels or the
 * continuous Bernoulli; three image channels through three layers. */
static void test_conv_bernoulli(void **state) { (void)state; run_fixture("conv_bernoulli"); }
static void test_conv_gaussian_learned(void **state) { (void)state; run_fixture("conv_gaussian-learned"); }
static void test_conv_cbernoulli(void **state) { (void)state; run_fixture("conv_cbernoulli"); }
static void test_conv_gaussian_rgb(void **state) { (void)state; run_fixture("conv_gaussian_rgb"); }
/* Conditional models: the one-hot label into the first encoder and decoder
 * layers (with two samples per image; with no hidden layer, into the heads
 * and the output layer); for conv as label planes and into decoder_input. */
static void test_cond_bernoulli(void **state) { (void)state; run_fixture("cond_bernoulli"); }
static void test_cond_gaussian_nohidden(void **state) { (void)state; run_fixture("cond_gaussian_nohidden"); }
static void test_conv_cond_bernoulli(void **state) { (void)state; run_fixture("conv_cond_bernoulli"); }
static void test_conv_cond_rgb(void **state) { (void)state; run_fixture("conv_cond_rgb"); }

/* The comparison can fail: the same fixture with one bias nudged by 1e-4
 * (ten times the tolerance on logvar) must not pass. */
static void test_perturbed_parameter_is_caught(void **state)
{
    (void)state;
    fixture fx;
    fixture_open(&fx, "bernoulli");
    const vae_tensor *t = vae_find_tensor(&fx.m, "fc_logvar.bias");
    assert_non_null(t);
    fx.m.params[t->offset + 1] += 1e-4f;
    print_message("bernoulli with fc_logvar.bias[1] + 1e-4 (expected to FAIL below):\n");
    int bad = compare_fixture(&fx);
    fixture_close(&fx);
    assert_true(bad > 0);
}

/* The same for the conv model: one decoder weight (the last ConvTranspose2d,
 * which only the reconstruction sees) nudged by 1e-3 must show. */
static void test_conv_perturbed_parameter_is_caught(void **state)
{
    (void)state;
    fixture fx;
    fixture_open(&fx, "conv_bernoulli");
    const vae_tensor *t = vae_find_tensor(&fx.m, "decoder.1.weight");
    assert_non_null(t);
    assert_int_equal(t->ndim, 4);
    fx.m.params[t->offset + 5] += 1e-3f;
    print_message("conv_bernoulli with decoder.1.weight[5] + 1e-3 (expected to FAIL below):\n");
    int bad = compare_fixture(&fx);
    fixture_close(&fx);
    assert_true(bad > 0);
}

/* The label matters: the conditional fixtures with each label moved to the
 * next class must not pass, for the MLP and the conv model. */
static void test_cond_wrong_label_is_caught(void **state)
{
    (void)state;
    const char *names[] = {"cond_bernoulli", "conv_cond_bernoulli"};
    for (int i = 0; i < 2; i++) {
        fixture fx;
        fixture_open(&fx, names[i]);
        int K = fx.m.cfg.n_classes;
        for (int b = 0; b < fx.B; b++) fx.labels[b] = (fx.labels[b] + 1) % K;
        for (int r = 0; r < fx.B * fx.L; r++) fx.labels_rep[r] = (fx.labels_rep[r] + 1) % K;
        print_message("%s with every label + 1 (expected to FAIL below):\n", names[i]);
        int bad = compare_fixture(&fx);
        fixture_close(&fx);
        assert_true(bad > 0);
    }
}

/* A pytorch/examples VAE state_dict (no vaed metadata) is recognised by
 * ckpt_load and encodes and decodes as PyTorch does. */
static void test_pytorch_examples(void **state)
{
    (void)state;
    char err[256];
    vae_model m;
    if (ckpt_load_file(&m, FIXTURE_DIR "pytorch_examples.safetensors", NULL, err, sizeof err))
        fail_msg("pytorch_examples.safetensors: %s", err);
    assert_int_equal(m.cfg.n_hidden, 1);
    assert_int_equal(m.cfg.hidden[0], 16);
    assert_int_equal(m.cfg.latent, 4);
    assert_int_equal(vae_config_input_dim(&m.cfg), 784);
    assert_int_equal(m.cfg.likelihood, VAE_LIK_BERNOULLI);
    assert_int_equal(m.cfg.activation, VAE_ACT_RELU);

    st_file e;
    if (st_read_file(FIXTURE_DIR "pytorch_examples_expected.safetensors", &e, err, sizeof err))
        fail_msg("%s", err);
    const st_tensor_info *xi = st_find(&e, "x");
    assert_non_null(xi);
    int B = (int)xi->shape[0], Z = 4, D = 784;
    const float *x = fx_tensor(&e, "x", (size_t)B * D);
    const float *want_mu = fx_tensor(&e, "mu", (size_t)B * Z);
    const float *want_lv = fx_tensor(&e, "logvar", (size_t)B * Z);
    const float *want_xm = fx_tensor(&e, "x_mean", (size_t)B * D);
    assert_true(x && want_mu && want_lv && want_xm);
    vae_workspace *ws = vae_workspace_new(&m, B); /* owned here */
    float *mu = malloc(sizeof(float) * B * Z), *lv = malloc(sizeof(float) * B * Z); /* owned here */
    float *xm = malloc(sizeof(float) * B * D); /* owned here */
    assert_true(ws && mu && lv && xm);
    assert_int_equal(vae_encode(&m, ws, x, B, mu, lv), VAE_OK);
    assert_int_equal(vae_decode(&m, ws, want_mu, B, xm), VAE_OK);
    int bad = 0;
    print_message("pytorch_examples:\n");
    bad += !check_close("mu", mu, want_mu, (size_t)B * Z, SCALE_ELEM, TOL_ACT);
    bad += !check_close("logvar", lv, want_lv, (size_t)B * Z, SCALE_ELEM, TOL_ACT);
    bad += !check_close("x_mean (decode of mu)", xm, want_xm, (size_t)B * D, SCALE_ELEM, TOL_ACT);
    free(mu);
    free(lv);
    free(xm);
    vae_workspace_free(ws);
    st_free(&e);
    vae_free(&m);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bernoulli),
        cmocka_unit_test(test_cbernoulli),
        cmocka_unit_test(test_gaussian),
        cmocka_unit_test(test_gaussian_learned),
        cmocka_unit_test(test_conv_bernoulli),
        cmocka_unit_test(test_conv_gaussian_learned),
        cmocka_unit_test(test_conv_cbernoulli),
        cmocka_unit_test(test_conv_gaussian_rgb),
        cmocka_unit_test(test_cond_bernoulli),
        cmocka_unit_test(test_cond_gaussian_nohidden),
        cmocka_unit_test(test_conv_cond_bernoulli),
        cmocka_unit_test(test_conv_cond_rgb),
        cmocka_unit_test(test_perturbed_parameter_is_caught),
        cmocka_unit_test(test_conv_perturbed_parameter_is_caught),
        cmocka_unit_test(test_cond_wrong_label_is_caught),
        cmocka_unit_test(test_pytorch_examples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
