/* The VAE's numerics: every gradient against central differences of a naive
 * double-precision reference, the latent layer's closed-form KL against
 * Monte Carlo over its own samples, inference against the training forward,
 * and training that is repeatable from its seed. */
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
#include "engine/vae.h"

/* ---------- a naive reference forward pass, in double ---------- */

static const double *T(const vae_model *m, const double *p, const char *name)
{
    const vae_tensor *t = vae_find_tensor(m, name);
    assert_non_null(t);
    return p + t->offset;
}

static void ref_linear(double *y, const double *x, const double *w, const double *b, int B, int in,
                       int out)
{
    for (int r = 0; r < B; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
            y[r * out + o] = s;
        }
}

static double ref_act(double v, vae_activation a)
{
    switch (a) {
    case VAE_ACT_RELU: return v > 0 ? v : 0;
    case VAE_ACT_LEAKY_RELU: return v > 0 ? v : 0.01 * v;
    case VAE_ACT_TANH: return tanh(v);
    case VAE_ACT_ELU: return v > 0 ? v : expm1(v);
    }
    return v;
}

static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

/* The loss vae_forward_loss optimises (beta as given, no warm-up); a
 * conditional model's inputs are x and z with the one-hot of labels (B)
 * after them. */
static double ref_loss(const vae_model *m, const double *p, const float *xf, const int *labels,
                       const float *epsf, int B)
{
    const vae_config *c = &m->cfg;
    int D = vae_config_input_dim(c), Z = c->latent, L = c->mc_samples, H = c->n_hidden;
    int Dout = vae_config_output_dim(c), K = c->n_classes;
    int W = 4096;
    double *a = calloc((size_t)B * L * W, sizeof(double)), *bb = calloc((size_t)B * L * W, sizeof(double));
    double *x = calloc((size_t)B * (D + K), sizeof(double));
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < D; i++) x[b * (D + K) + i] = xf[b * D + i];
        if (K) x[b * (D + K) + D + labels[b]] = 1.0;
    }
    char name[64];
    double *in = x;
    int in_dim = D + K;
    double *bufs[2] = {a, bb};
    for (int i = 0; i < H; i++) {
        double *y = bufs[i & 1];
        snprintf(name, sizeof name, "encoder.%d.weight", i);
        const double *w = T(m, p, name);
        snprintf(name, sizeof name, "encoder.%d.bias", i);
        ref_linear(y, in, w, T(m, p, name), B, in_dim, c->hidden[i]);
        for (int k = 0; k < B * c->hidden[i]; k++) y[k] = ref_act(y[k], c->activation);
        in = y;
        in_dim = c->hidden[i];
    }
    double *mu = malloc(sizeof(double) * B * Z), *lv = malloc(sizeof(double) * B * Z);
    ref_linear(mu, in, T(m, p, "fc_mu.weight"), T(m, p, "fc_mu.bias"), B, in_dim, Z);
    ref_linear(lv, in, T(m, p, "fc_logvar.weight"), T(m, p, "fc_logvar.bias"), B, in_dim, Z);
    double *z = calloc((size_t)B * L * (Z + K), sizeof(double)); /* z, one-hot, per row */
    double kl = 0;
    double *kl_dim = calloc(Z, sizeof(double));
    for (int b = 0; b < B; b++)
        for (int j = 0; j < Z; j++) {
            double m_ = mu[b * Z + j], v = lv[b * Z + j];
            double k = 0.5 * (m_ * m_ + exp(v) - 1 - v);
            kl += k;
            kl_dim[j] += k;
            for (int l = 0; l < L; l++) {
                z[(b * L + l) * (Z + K) + j] = m_ + exp(0.5 * v) * epsf[(b * L + l) * Z + j];
                if (K) z[(b * L + l) * (Z + K) + Z + labels[b]] = 1.0;
            }
        }
    double kl_opt = kl;
    if (c->free_bits > 0) {
        kl_opt = 0;
        for (int j = 0; j < Z; j++) kl_opt += fmax(kl_dim[j] / B, c->free_bits) * B;
    }
    in = z;
    in_dim = Z + K;
    for (int i = 0; i < H; i++) {
        double *y = bufs[i & 1];
        int out = c->hidden[H - 1 - i];
        snprintf(name, sizeof name, "decoder.%d.weight", i);
        const double *w = T(m, p, name);
        snprintf(name, sizeof name, "decoder.%d.bias", i);
        ref_linear(y, in, w, T(m, p, name), B * L, in_dim, out);
        for (int k = 0; k < B * L * out; k++) y[k] = ref_act(y[k], c->activation);
        in = y;
        in_dim = out;
    }
    double *lg = malloc(sizeof(double) * B * L * Dout);
    ref_linear(lg, in, T(m, p, "out.weight"), T(m, p, "out.bias"), B * L, in_dim, Dout);
    double recon = 0;
    for (int r = 0; r < B * L; r++) {
        const float *xr = xf + (r / L) * D;
        for (int j = 0; j < D; j++) {
            double l = lg[r * Dout + j], t = xr[j];
            switch (c->likelihood) {
            case VAE_LIK_BERNOULLI: {
                double s = sigmoid(l);
                recon -= t * log(s) + (1 - t) * log(1 - s);
                break;
            }
            case VAE_LIK_CBERNOULLI: {
                double s = sigmoid(l);
                double logc = fabs(1 - 2 * s) < 1e-9 ? log(2.0) : log(2 * atanh(1 - 2 * s) / (1 - 2 * s));
                recon -= t * log(s) + (1 - t) * log(1 - s) + logc;
                break;
            }
            case VAE_LIK_GAUSSIAN: {
                double d = sigmoid(l) - t, s = c->sigma;
                recon += 0.5 * d * d / (s * s) + log(s) + 0.5 * log(2 * M_PI);
                break;
            }
            case VAE_LIK_GAUSSIAN_LEARNED: {
                double d = sigmoid(l) - t, v = lg[r * Dout + D + j];
                recon += 0.5 * (d * d * exp(-v) + v + log(2 * M_PI));
                break;
            }
            }
        }
    }
    recon /= L;
    free(a); free(bb); free(x); free(mu); free(lv); free(z); free(kl_dim); free(lg);
    return recon + c->beta * kl_opt;
}

/* ---------- gradient check ---------- */

static void small_config(vae_config *c)
{
    vae_config_default(c);
    c->height = 3;
    c->width = 4;
    c->n_hidden = 2;
    c->hidden[0] = 7;
    c->hidden[1] = 5;
    c->latent = 3;
}

/* A conv VAE as small: 16x16, two conv layers of 3 and 4 channels. */
static void small_conv_config(vae_config *c)
{
    vae_config_default(c);
    c->arch = VAE_ARCH_CONV;
    c->height = c->width = 16;
    c->n_conv = 2;
    c->conv_channels[0] = 3;
    c->conv_channels[1] = 4;
    c->latent = 3;
}

static void gradcheck(const vae_config *cfg, const char *label)
{
    char err[256];
    vae_model m;
    assert_int_equal(vae_init(&m, cfg, 42, err, sizeof err), VAE_OK);
    int B = 3, D = vae_config_input_dim(cfg), Z = cfg->latent, L = cfg->mc_samples;
    float *x = malloc(sizeof(float) * B * D), *eps = malloc(sizeof(float) * B * L * Z);
    rng_state r;
    rng_seed(&r, 7);
    for (int i = 0; i < B * D; i++) x[i] = rng_uniform(&r);
    rng_normal_fill(&r, eps, (size_t)B * L * Z);
    int labels[3], *y = cfg->n_classes ? labels : NULL;
    for (int b = 0; b < B; b++) labels[b] = (2 * b + 1) % (cfg->n_classes ? cfg->n_classes : 1);
    vae_train_state *ts = vae_train_state_new(&m, B, err, sizeof err);
    assert_non_null(ts);
    vae_stats st;
    assert_int_equal(vae_forward_loss_cond(&m, ts, x, y, eps, B, &st), VAE_OK);
    assert_int_equal(vae_backward(&m, ts), VAE_OK);
    const float *g = vae_train_grads(ts);

    double *p = malloc(sizeof(double) * m.n_params);
    for (size_t i = 0; i < m.n_params; i++) p[i] = m.params[i];
    double ref = ref_loss(&m, p, x, y, eps, B);
    /* the float forward agrees with the double reference */
    if (fabs(st.loss - ref) > 1e-4 * fmax(1.0, fabs(ref)))
        fail_msg("%s: loss %.9g, reference %.9g", label, st.loss, ref);

    for (int ti = 0; ti < m.n_tensors; ti++) {
        const vae_tensor *t = &m.tensors[ti];
        for (size_t k = 0; k < t->size; k++) {
            size_t i = t->offset + k;
            double h = 1e-6, keep = p[i];
            p[i] = keep + h;
            double lp = ref_loss(&m, p, x, y, eps, B);
            p[i] = keep - h;
            double lm = ref_loss(&m, p, x, y, eps, B);
            p[i] = keep;
            double num = (lp - lm) / (2 * h), ana = g[i];
            double rel = fabs(num - ana) / fmax(fabs(num) + fabs(ana), 1e-3);
            if (!(rel <= 2e-3)) /* a NaN fails too */
                fail_msg("%s: %s[%zu]: analytic %.8g, numeric %.8g (rel %.2g)", label, t->name, k,
                         ana, num, rel);
        }
    }
    free(p);
    free(x);
    free(eps);
    vae_train_state_free(ts);
    vae_free(&m);
}

static void test_gradcheck_bernoulli_relu(void **state)
{
    (void)state;
    vae_config c;
    small_config(&c);
    gradcheck(&c, "bernoulli/relu");
}

static void test_gradcheck_each_likelihood(void **state)
{
    (void)state;
    vae_likelihood liks[] = {VAE_LIK_CBERNOULLI, VAE_LIK_GAUSSIAN, VAE_LIK_GAUSSIAN_LEARNED};
    for (size_t i = 0; i < sizeof liks / sizeof liks[0]; i++) {
        vae_config c;
        small_config(&c);
        c.likelihood = liks[i];
        c.sigma = 0.3f;
        gradcheck(&c, vae_likelihood_name(liks[i]));
    }
}

static void test_gradcheck_each_activation(void **state)
{
    (void)state;
    vae_activation acts[] = {VAE_ACT_LEAKY_RELU, VAE_ACT_TANH, VAE_ACT_ELU};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        vae_config c;
        small_config(&c);
        c.activation = acts[i];
        gradcheck(&c, vae_activation_name(acts[i]));
    }
}

static void test_gradcheck_options(void **state)
{
    (void)state;
    vae_config c;
    small_config(&c);
    c.mc_samples = 3;
    c.beta = 2.5f;
    gradcheck(&c, "mc=3 beta=2.5");
    small_config(&c);
    c.n_hidden = 1;
    c.hidden[0] = 6;
    c.free_bits = 0.4f; /* some dimensions under the floor, some above */
    gradcheck(&c, "free bits");
    small_config(&c);
    c.n_hidden = 0;
    gradcheck(&c, "no hidden layer");
}

/* A conditional model: the one-hot label into the first encoder and decoder
 * layers (their weights' last K columns get gradients), with one hidden
 * layer, two, none, and two samples of z per image. */
static void test_gradcheck_conditional(void **state)
{
    (void)state;
    vae_config c;
    small_config(&c);
    c.n_classes = 4;
    gradcheck(&c, "conditional");
    c.mc_samples = 2;
    c.activation = VAE_ACT_TANH;
    gradcheck(&c, "conditional mc=2 tanh");
    small_config(&c);
    c.n_classes = 3;
    c.n_hidden = 0;
    c.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    gradcheck(&c, "conditional, no hidden layer");
}

/* Backward adds into the gradients and vae_zero_grad zeroes them: twice
 * without zeroing is twice the gradient, for both architectures. */
static void test_backward_adds_into_gradients(void **state)
{
    (void)state;
    char err[200];
    vae_config cfgs[2];
    small_config(&cfgs[0]);
    small_conv_config(&cfgs[1]);
    for (int k = 0; k < 2; k++) {
        vae_model m;
        assert_int_equal(vae_init(&m, &cfgs[k], 4, err, sizeof err), VAE_OK);
        int B = 3, D = vae_config_input_dim(&cfgs[k]), Z = cfgs[k].latent;
        float *x = malloc(sizeof(float) * B * D), eps[9];
        rng_state r;
        rng_seed(&r, 5);
        for (int i = 0; i < B * D; i++) x[i] = rng_uniform(&r);
        rng_normal_fill(&r, eps, (size_t)B * Z);
        vae_train_state *ts = vae_train_state_new(&m, B, err, sizeof err);
        assert_non_null(ts);
        float *once = malloc(sizeof(float) * m.n_params), *g = vae_train_grads(ts);
        vae_stats st;
        for (size_t i = 0; i < m.n_params; i++) assert_true(g[i] == 0.0f); /* a new state */
        assert_int_equal(vae_forward_loss(&m, ts, x, eps, B, &st), VAE_OK);
        assert_int_equal(vae_backward(&m, ts), VAE_OK);
        memcpy(once, g, sizeof(float) * m.n_params);
        assert_int_equal(vae_backward(&m, ts), VAE_OK);
        /* up to rounding: the second pass adds its sums to the first's */
        double scale = 0;
        for (size_t i = 0; i < m.n_params; i++) scale = fmax(scale, fabs(once[i]));
        assert_true(scale > 0);
        for (size_t i = 0; i < m.n_params; i++)
            if (fabs(g[i] - 2.0 * once[i]) > 1e-5 * scale)
                fail_msg("%zu: %g twice, %g once", i, g[i], once[i]);
        vae_zero_grad(ts);
        for (size_t i = 0; i < m.n_params; i++) assert_true(g[i] == 0.0f);
        assert_int_equal(vae_backward(&m, ts), VAE_OK);
        assert_memory_equal(g, once, sizeof(float) * m.n_params); /* the same sums again */
        free(once);
        free(x);
        vae_train_state_free(ts);
        vae_free(&m);
    }
}

/* ---------- the latent layer against Monte Carlo ---------- */

/* KL(N(mu, s^2) || N(0, 1)) = E_q[log q(z) - log p(z)]: the engine's
 * reparameterisation (vae_loss_latent_forward) draws 2e5 z for each of three
 * (mu, logvar) pairs, and their Monte Carlo KL must match the closed form
 * the engine returns. A z drawn with the wrong scale or shift fails it. */
static void test_latent_layer_matches_monte_carlo(void **state)
{
    (void)state;
    enum { Z = 3, N = 200000 };
    const float heads[2 * Z] = {0.0f, 1.5f, -0.7f, /* mu */ 0.0f, -1.2f, 0.9f /* logvar */};
    vae_config c;
    vae_config_default(&c);
    c.latent = Z;
    c.mc_samples = N; /* one image, N samples of z */
    float *eps = malloc(sizeof(float) * N * Z), *z = malloc(sizeof(float) * N * Z);
    assert_true(eps && z);
    rng_state r;
    rng_seed(&r, 3);
    rng_normal_fill(&r, eps, (size_t)N * Z);
    double kl_dim[Z], kl_opt;
    double kl = vae_loss_latent_forward(&c, heads, eps, 1, z, kl_dim, &kl_opt);
    double mc_total = 0;
    for (int j = 0; j < Z; j++) {
        double mu = heads[j], lv = heads[Z + j], sd = exp(0.5 * lv), s = 0;
        for (int i = 0; i < N; i++) {
            double zi = z[(size_t)i * Z + j], u = (zi - mu) / sd;
            s += (-0.5 * u * u - 0.5 * lv) - (-0.5 * zi * zi); /* log q - log p */
        }
        double mc = s / N, closed = 0.5 * ((double)mu * mu + exp(lv) - 1 - lv);
        if (fabs(mc - kl_dim[j]) > 0.01 + 0.01 * closed)
            fail_msg("mu=%g lv=%g: engine KL %g, Monte Carlo over its z %g", mu, lv, kl_dim[j], mc);
        mc_total += mc;
    }
    assert_true(fabs(kl - mc_total) < 0.03 + 0.01 * kl);
    assert_true(kl_opt == kl); /* no free bits */
    free(eps);
    free(z);
}

/* ---------- rng, encode/decode consistency, determinism ---------- */

static void test_rng_normal_moments(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 11);
    enum { N = 1000000 };
    float *v = malloc(sizeof(float) * N);
    rng_normal_fill(&r, v, N);
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        s += v[i];
        s2 += (double)v[i] * v[i];
    }
    assert_true(fabs(s / N) < 0.005);
    assert_true(fabs(s2 / N - 1.0) < 0.01);
    free(v);
    rng_state a, b;
    rng_seed(&a, 99);
    rng_seed(&b, 99);
    for (int i = 0; i < 100; i++) assert_true(rng_next_u64(&a) == rng_next_u64(&b));
}

/* Inference and the training forward are the same network: with eps = 0
 * (z = mu) the training forward's KL is the closed form of vae_encode's mu
 * and logvar, and its reconstruction term is the Bernoulli NLL of
 * vae_decode(mu). */
static void test_encode_matches_training_forward(void **state)
{
    (void)state;
    char err[200];
    vae_config c;
    small_config(&c);
    vae_model m;
    assert_int_equal(vae_init(&m, &c, 9, err, sizeof err), 0);
    enum { B = 4, D = 12, Z = 3 };
    assert_int_equal(vae_config_input_dim(&c), D);
    assert_int_equal(c.latent, Z);
    float x[B * D], mu[B * Z], lv[B * Z], xm[B * D], eps[B * Z] = {0};
    for (int i = 0; i < B * D; i++) x[i] = (float)((i * 7) % 13) / 13.0f;
    vae_workspace *ws = vae_workspace_new(&m, B);
    assert_non_null(ws);
    assert_int_equal(vae_encode(&m, ws, x, B, mu, lv), 0);
    assert_int_equal(vae_decode(&m, ws, mu, B, xm), 0);
    for (int i = 0; i < B * D; i++) assert_true(xm[i] >= 0.0f && xm[i] <= 1.0f);
    vae_train_state *ts = vae_train_state_new(&m, B, err, sizeof err);
    assert_non_null(ts);
    vae_stats st;
    assert_int_equal(vae_forward_loss(&m, ts, x, eps, B, &st), 0);
    double kl = 0, recon = 0;
    for (int i = 0; i < B * Z; i++) kl += 0.5 * ((double)mu[i] * mu[i] + exp(lv[i]) - 1 - lv[i]);
    for (int i = 0; i < B * D; i++) recon -= x[i] * log(xm[i]) + (1 - x[i]) * log(1 - xm[i]);
    if (fabs(kl - st.kl) > 1e-5 * fmax(1, kl)) fail_msg("KL %.9g, of encode %.9g", st.kl, kl);
    if (fabs(recon - st.recon) > 1e-5 * recon)
        fail_msg("recon %.9g, of decode %.9g", st.recon, recon);
    /* a batch larger than the workspace is refused, not overrun */
    assert_int_not_equal(vae_encode(&m, ws, x, B + 1, mu, lv), 0);
    vae_train_state_free(ts);
    vae_workspace_free(ws);
    vae_free(&m);
}

static void train_a_little(vae_model *m, uint64_t seed)
{
    char err[200];
    vae_config c;
    small_config(&c);
    c.batch = 8;
    assert_int_equal(vae_init(m, &c, seed, err, sizeof err), 0);
    vae_train_state *ts = vae_train_state_new(m, 8, err, sizeof err);
    rng_state r;
    rng_seed(&r, seed);
    float x[8 * 12];
    vae_stats st;
    for (int s = 0; s < 20; s++) {
        for (int i = 0; i < 8 * 12; i++) x[i] = rng_uniform(&r);
        assert_int_equal(vae_train_step(m, ts, x, 8, &r, &st), 0);
    }
    vae_train_state_free(ts);
}

static void test_training_is_deterministic(void **state)
{
    (void)state;
    vae_model a, b;
    train_a_little(&a, 123);
    train_a_little(&b, 123);
    uint8_t *ba, *bb;
    size_t la, lb;
    char err[200];
    assert_int_equal(ckpt_save_mem(&a, NULL, &ba, &la, err, sizeof err), 0);
    assert_int_equal(ckpt_save_mem(&b, NULL, &bb, &lb, err, sizeof err), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
    free(ba);
    free(bb);
    vae_free(&a);
    vae_free(&b);
}

static void test_nonfinite_loss_is_refused(void **state)
{
    (void)state;
    char err[200];
    vae_config c;
    small_config(&c);
    vae_model m;
    assert_int_equal(vae_init(&m, &c, 1, err, sizeof err), 0);
    vae_train_state *ts = vae_train_state_new(&m, 2, err, sizeof err);
    float x[24];
    for (int i = 0; i < 24; i++) x[i] = 0.5f;
    x[3] = NAN;
    float *before = malloc(sizeof(float) * m.n_params);
    memcpy(before, m.params, sizeof(float) * m.n_params);
    rng_state r;
    rng_seed(&r, 1);
    vae_stats st;
    assert_int_equal(vae_train_step(&m, ts, x, 2, &r, &st), VAE_ERR_NONFINITE);
    assert_memory_equal(before, m.params, sizeof(float) * m.n_params);
    free(before);
    vae_train_state_free(ts);
    vae_free(&m);
}

static void test_config_validation(void **state)
{
    (void)state;
    char err[200];
    vae_config c;
    vae_config_default(&c);
    assert_int_equal(vae_config_validate(&c, err, sizeof err), 0);
    c.latent = 0;
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "latent"));
    vae_config_default(&c);
    c.lr = -1;
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG);
    vae_config_default(&c);
    c.n_hidden = VAE_MAX_HIDDEN + 1;
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG);
    vae_likelihood l;
    assert_int_equal(vae_likelihood_parse("gaussian-learned", &l), 0);
    assert_int_equal(l, VAE_LIK_GAUSSIAN_LEARNED);
    assert_int_not_equal(vae_likelihood_parse("poisson", &l), 0);
}

/* A step with the batch split over two threads is the same step: the loss
 * equal and the parameters after Adam equal up to the order of the sums;
 * for a conditional model (n_classes > 0) the helper's half of the batch
 * gets its half of the labels. Each thread writes and steps half the rows of
 * every tensor (an odd latent splits the heads unevenly), over both halves
 * of the batch (with mc samples, of the decoder's rows). */
static void parallel_step_matches_single(int n_classes, int mc_samples, int n_hidden)
{
    char err[200];
    vae_config c;
    small_config(&c);
    c.batch = 32;
    c.n_classes = n_classes;
    c.mc_samples = mc_samples;
    c.n_hidden = n_hidden;
    vae_model a, b;
    assert_int_equal(vae_init(&a, &c, 8, err, sizeof err), 0);
    assert_int_equal(vae_init(&b, &c, 8, err, sizeof err), 0);
    vae_train_state *ta = vae_train_state_new(&a, 32, err, sizeof err);
    vae_train_state *tb = vae_train_state_new(&b, 32, err, sizeof err);
    assert_int_equal(vae_train_state_set_threads(tb, &b, 2, err, sizeof err), 0);
    float x[32 * 12];
    int labels[32], *y = n_classes ? labels : NULL;
    rng_state rx, ra, rb;
    rng_seed(&rx, 3);
    rng_seed(&ra, 4);
    rng_seed(&rb, 4);
    for (int step = 0; step < 5; step++) {
        for (int i = 0; i < 32 * 12; i++) x[i] = rng_uniform(&rx);
        for (int i = 0; n_classes && i < 32; i++) labels[i] = (int)(rng_next_u64(&rx) % n_classes);
        vae_stats sa, sb;
        assert_int_equal(vae_train_step_cond(&a, ta, x, y, 32, &ra, &sa), 0);
        assert_int_equal(vae_train_step_cond(&b, tb, x, y, 32, &rb, &sb), 0);
        assert_true(fabs(sa.loss - sb.loss) <= 1e-5 * fabs(sa.loss));
        assert_int_equal(sb.batch, 32);
    }
    for (size_t i = 0; i < a.n_params; i++)
        if (fabsf(a.params[i] - b.params[i]) > 1e-5f * fmaxf(1.0f, fabsf(a.params[i])))
            fail_msg("parameter %zu: %g single, %g split", i, a.params[i], b.params[i]);
    vae_train_state_free(ta);
    vae_train_state_free(tb);
    vae_free(&a);
    vae_free(&b);
}

static void test_parallel_step_matches_single(void **state)
{
    (void)state;
    parallel_step_matches_single(0, 1, 2);
    parallel_step_matches_single(5, 1, 2);
    parallel_step_matches_single(0, 2, 1);
    parallel_step_matches_single(3, 1, 0);
}

/* vae_train_step is its lower-level pieces (zero, forward, backward that
 * adds, Adam) to the bit, step after step, for both architectures: the
 * MLP's step writes its gradient instead, which must leave nothing of the
 * last step's behind. */
static void test_step_equals_its_pieces(void **state)
{
    (void)state;
    vae_config cfgs[2];
    small_config(&cfgs[0]);
    small_conv_config(&cfgs[1]);
    char err[200];
    for (int k = 0; k < 2; k++) {
        const vae_config *c = &cfgs[k];
        vae_model a, b;
        assert_int_equal(vae_init(&a, c, 6, err, sizeof err), VAE_OK);
        assert_int_equal(vae_init(&b, c, 6, err, sizeof err), VAE_OK);
        int B = 5, D = vae_config_input_dim(c), Z = c->latent;
        vae_train_state *ta = vae_train_state_new(&a, B, err, sizeof err);
        vae_train_state *tb = vae_train_state_new(&b, B, err, sizeof err);
        assert_non_null(ta);
        assert_non_null(tb);
        float *x = malloc(sizeof(float) * B * D), *eps = malloc(sizeof(float) * B * Z);
        rng_state rx, ra, rb;
        rng_seed(&rx, 9);
        rng_seed(&ra, 10);
        rng_seed(&rb, 10);
        for (int step = 0; step < 4; step++) {
            for (int i = 0; i < B * D; i++) x[i] = rng_uniform(&rx);
            vae_stats sa, sb;
            assert_int_equal(vae_train_step(&a, ta, x, B, &ra, &sa), VAE_OK);
            rng_normal_fill(&rb, eps, (size_t)B * Z);
            vae_zero_grad(tb);
            assert_int_equal(vae_forward_loss(&b, tb, x, eps, B, &sb), VAE_OK);
            assert_int_equal(vae_backward(&b, tb), VAE_OK);
            vae_adam_update(&b, tb);
            assert_true(sa.loss == sb.loss);
            for (size_t i = 0; i < a.n_params; i++)
                if (a.params[i] != b.params[i])
                    fail_msg("arch %d step %d parameter %zu: %.9g step, %.9g pieces", k, step, i,
                             a.params[i], b.params[i]);
        }
        free(x);
        free(eps);
        vae_train_state_free(ta);
        vae_train_state_free(tb);
        vae_free(&a);
        vae_free(&b);
    }
}

/* A conditional model takes labels and only labels in range; an
 * unconditional one takes none. The label changes what it encodes and
 * decodes; a checkpoint keeps the class count, and an unconditional
 * checkpoint's config says nothing of classes (its bytes are as before). */
static void test_conditional_labels(void **state)
{
    (void)state;
    char err[200];
    vae_config c;
    small_config(&c);
    c.n_classes = 3;
    vae_model m;
    assert_int_equal(vae_init(&m, &c, 2, err, sizeof err), VAE_OK);
    enum { B = 2, D = 12, Z = 3 };
    float x[B * D], mu[B * Z], lv[B * Z], mu2[B * Z], xm[B * D], xm2[B * D], eps[B * Z] = {0};
    for (int i = 0; i < B * D; i++) x[i] = (float)(i % 5) / 5.0f;
    int y[B] = {0, 2}, y2[B] = {1, 2}, bad[B] = {0, 3}, neg[B] = {-1, 0};
    vae_workspace *ws = vae_workspace_new(&m, B);
    assert_non_null(ws);
    assert_int_equal(vae_encode(&m, ws, x, B, mu, lv), VAE_ERR_ARG); /* no labels */
    assert_int_equal(vae_encode_cond(&m, ws, x, bad, B, mu, lv), VAE_ERR_ARG);
    assert_int_equal(vae_encode_cond(&m, ws, x, neg, B, mu, lv), VAE_ERR_ARG);
    assert_int_equal(vae_decode(&m, ws, mu, B, xm), VAE_ERR_ARG);
    assert_int_equal(vae_encode_cond(&m, ws, x, y, B, mu, lv), VAE_OK);
    assert_int_equal(vae_encode_cond(&m, ws, x, y2, B, mu2, lv), VAE_OK);
    assert_true(memcmp(mu, mu2, sizeof(float) * Z) != 0);          /* image 0: another label */
    assert_memory_equal(mu + Z, mu2 + Z, sizeof(float) * Z);        /* image 1: the same */
    assert_int_equal(vae_decode_cond(&m, ws, mu, y, B, xm), VAE_OK);
    assert_int_equal(vae_decode_cond(&m, ws, mu, y2, B, xm2), VAE_OK);
    assert_true(memcmp(xm, xm2, sizeof(float) * D) != 0);
    double ll[B];
    assert_int_equal(vae_log_likelihood(&m, ws, x, mu, B, ll), VAE_ERR_ARG);
    assert_int_equal(vae_log_likelihood_cond(&m, ws, x, 3, mu, B, ll), VAE_ERR_ARG);
    assert_int_equal(vae_log_likelihood_cond(&m, ws, x, 1, mu, B, ll), VAE_OK);
    vae_train_state *ts = vae_train_state_new(&m, B, err, sizeof err);
    assert_non_null(ts);
    vae_stats st;
    assert_int_equal(vae_forward_loss(&m, ts, x, eps, B, &st), VAE_ERR_ARG);
    assert_int_equal(vae_forward_loss_cond(&m, ts, x, bad, eps, B, &st), VAE_ERR_ARG);
    assert_int_equal(vae_forward_loss_cond(&m, ts, x, y, eps, B, &st), VAE_OK);
    rng_state r;
    rng_seed(&r, 1);
    assert_int_equal(vae_train_step(&m, ts, x, B, &r, &st), VAE_ERR_ARG);
    assert_int_equal(vae_train_step_cond(&m, ts, x, y, B, &r, &st), VAE_OK);
    vae_train_state_free(ts);

    /* the class count survives a checkpoint */
    uint8_t *buf;
    size_t len;
    vae_model back;
    assert_int_equal(ckpt_save_mem(&m, NULL, &buf, &len, err, sizeof err), VAE_OK);
    assert_int_equal(ckpt_load_mem(&back, buf, len, NULL, err, sizeof err), VAE_OK);
    free(buf);
    assert_int_equal(back.cfg.n_classes, 3);
    assert_memory_equal(back.params, m.params, sizeof(float) * m.n_params);
    vae_free(&back);
    char json[2048];
    assert_true(ckpt_config_to_json(&m.cfg, json, sizeof json) > 0);
    assert_non_null(strstr(json, "\"n_classes\":3,"));
    vae_workspace_free(ws);
    vae_free(&m);

    /* label weights: a one-hot row is the label; with no hidden layer the
     * logits are linear in the row, so halfway between two labels the logits
     * are halfway between theirs */
    small_config(&c);
    c.n_classes = 3;
    c.n_hidden = 0;
    assert_int_equal(vae_init(&m, &c, 5, err, sizeof err), VAE_OK);
    ws = vae_workspace_new(&m, 3);
    float w[3 * 3] = {1, 0, 0, 0, 0, 1, 0.5f, 0, 0.5f}, z3[3 * Z], xw[3 * D], xa[D], xb[D];
    for (int i = 0; i < 3 * Z; i++) z3[i] = 0.3f * (float)(i % Z) - 0.2f; /* three equal rows */
    int a = 0, b2 = 2;
    assert_int_equal(vae_decode_mixed(&m, ws, z3, w, 3, xw), VAE_OK);
    assert_int_equal(vae_decode_cond(&m, ws, z3, &a, 1, xa), VAE_OK);
    assert_int_equal(vae_decode_cond(&m, ws, z3, &b2, 1, xb), VAE_OK);
    for (int j = 0; j < D; j++) { /* up to the rounding of another batch size */
        assert_float_equal(xw[j], xa[j], 1e-6);
        assert_float_equal(xw[D + j], xb[j], 1e-6);
    }
    for (int j = 0; j < D; j++) {
        double la = log(xa[j] / (1 - xa[j])), lb = log(xb[j] / (1 - xb[j]));
        double lm = log(xw[2 * D + j] / (1 - xw[2 * D + j]));
        if (fabs(lm - 0.5 * (la + lb)) > 1e-4)
            fail_msg("pixel %d: %g, not halfway between %g and %g", j, lm, la, lb);
    }
    w[0] = NAN;
    assert_int_equal(vae_decode_mixed(&m, ws, z3, w, 3, xw), VAE_ERR_ARG);
    vae_workspace_free(ws);
    vae_free(&m);

    small_config(&c);
    assert_int_equal(vae_init(&m, &c, 2, err, sizeof err), VAE_OK);
    assert_true(ckpt_config_to_json(&m.cfg, json, sizeof json) > 0);
    assert_null(strstr(json, "n_classes"));
    ws = vae_workspace_new(&m, B);
    /* labels to an unconditional model */
    assert_int_equal(vae_encode_cond(&m, ws, x, y, B, mu, lv), VAE_ERR_ARG);
    assert_int_equal(vae_log_likelihood_cond(&m, ws, x, 0, mu, B, ll), VAE_ERR_ARG);
    float w1[B * 3] = {0};
    assert_int_equal(vae_decode_mixed(&m, ws, mu, w1, B, xm), VAE_ERR_ARG); /* not conditional */
    vae_workspace_free(ws);
    vae_free(&m);
    c.n_classes = VAE_MAX_CLASSES + 1;
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "classes"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_bernoulli_relu),
        cmocka_unit_test(test_gradcheck_each_likelihood),
        cmocka_unit_test(test_gradcheck_each_activation),
        cmocka_unit_test(test_gradcheck_options),
        cmocka_unit_test(test_gradcheck_conditional),
        cmocka_unit_test(test_backward_adds_into_gradients),
        cmocka_unit_test(test_latent_layer_matches_monte_carlo),
        cmocka_unit_test(test_rng_normal_moments),
        cmocka_unit_test(test_encode_matches_training_forward),
        cmocka_unit_test(test_training_is_deterministic),
        cmocka_unit_test(test_parallel_step_matches_single),
        cmocka_unit_test(test_step_equals_its_pieces),
        cmocka_unit_test(test_conditional_labels),
        cmocka_unit_test(test_nonfinite_loss_is_refused),
        cmocka_unit_test(test_config_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
