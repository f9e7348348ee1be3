/* The convolutional VAE: tensor shapes (32 -> 2x2, 28 padded and cropped,
 * 64x64x3), the loss and every gradient against central differences of a
 * naive double-precision reference written here in PyTorch's (N, C, H, W)
 * terms, the fast kernels against the naive ones, and inference that agrees
 * with training and does not depend on the batch it is in. */
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

/* A conv model through vae.h, as every caller builds one. */
static void conv_model(vae_model *m, const vae_config *c, uint64_t seed)
{
    char err[200];
    if (vae_init(m, c, seed, err, sizeof err)) fail_msg("config: %s", err);
    assert_int_equal(m->cfg.arch, VAE_ARCH_CONV);
}

static void tiny_config(vae_config *c, int channels, int side, int n_conv, const int *widths,
                        int latent)
{
    vae_config_default(c);
    c->arch = VAE_ARCH_CONV;
    c->channels = channels;
    c->height = c->width = side;
    c->n_conv = n_conv;
    for (int i = 0; i < n_conv; i++) c->conv_channels[i] = widths[i];
    c->latent = latent;
}

static const vae_tensor *tensor(const vae_model *m, const char *name)
{
    const vae_tensor *t = vae_find_tensor(m, name);
    if (!t) fail_msg("no tensor %s", name);
    return t;
}

static void assert_shape(const vae_model *m, const char *name, int ndim, int d0, int d1, int d2,
                         int d3)
{
    const vae_tensor *t = tensor(m, name);
    int want[4] = {d0, d1, d2, d3};
    assert_int_equal(t->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != want[i])
            fail_msg("%s dim %d: %d, expected %d", name, i, t->shape[i], want[i]);
}

/* ---------- shapes ---------- */

static void test_tensor_shapes(void **state)
{
    (void)state;
    vae_config c;
    int w4[] = {32, 64, 128, 256};
    tiny_config(&c, 1, 32, 4, w4, 20);
    vae_model m;
    conv_model(&m, &c, 1);
    assert_shape(&m, "encoder.0.weight", 4, 32, 1, 3, 3);
    assert_shape(&m, "encoder.3.weight", 4, 256, 128, 3, 3);
    assert_shape(&m, "encoder.3.bias", 1, 256, 0, 0, 0);
    assert_shape(&m, "fc_mu.weight", 2, 20, 256 * 2 * 2, 0, 0); /* 32 -> 2x2 */
    assert_shape(&m, "fc_logvar.bias", 1, 20, 0, 0, 0);
    assert_shape(&m, "decoder_input.weight", 2, 1024, 20, 0, 0);
    assert_shape(&m, "decoder.0.weight", 4, 256, 128, 3, 3); /* ConvTranspose2d: [in, out, k, k] */
    assert_shape(&m, "decoder.3.weight", 4, 32, 1, 3, 3);
    assert_shape(&m, "decoder.3.bias", 1, 1, 0, 0, 0);
    size_t total = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        assert_int_equal(m.tensors[i].offset, total);
        total += m.tensors[i].size;
    }
    assert_int_equal(total, m.n_params);
    /* PyTorch's default init: |w| <= 1/sqrt(fan_in); ConvT's fan_in is out*k*k */
    const vae_tensor *t = tensor(&m, "decoder.3.weight");
    float mx = 0;
    for (size_t k = 0; k < t->size; k++) mx = fmaxf(mx, fabsf(m.params[t->offset + k]));
    assert_true(mx <= 1.0f / 3.0f && mx > 0.25f);
    vae_free(&m);

    /* 28x28 runs at 32x32: same 2x2 at the end */
    tiny_config(&c, 1, 28, 4, w4, 8);
    conv_model(&m, &c, 1);
    assert_shape(&m, "fc_mu.weight", 2, 8, 1024, 0, 0);
    vae_free(&m);

    /* 64x64x3 (World Models frames), gaussian-learned: 2C output channels */
    tiny_config(&c, 3, 64, 4, w4, 32);
    c.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    conv_model(&m, &c, 1);
    assert_shape(&m, "encoder.0.weight", 4, 32, 3, 3, 3);
    assert_shape(&m, "fc_mu.weight", 2, 32, 256 * 4 * 4, 0, 0);
    assert_shape(&m, "decoder.3.weight", 4, 32, 6, 3, 3);
    assert_int_equal(vae_config_output_dim(&c), 2 * 3 * 64 * 64);
    int B = 2, D = vae_config_input_dim(&c);
    float *x = malloc(sizeof(float) * B * D), mu[64], lv[64], *xm = malloc(sizeof(float) * B * D);
    for (int i = 0; i < B * D; i++) x[i] = (float)((i * 7) % 11) / 11.0f;
    vae_workspace *ws = vae_workspace_new(&m, B);
    assert_non_null(ws);
    assert_int_equal(vae_encode(&m, ws, x, B, mu, lv), VAE_OK);
    assert_int_equal(vae_decode(&m, ws, mu, B, xm), VAE_OK);
    for (int i = 0; i < B * D; i++) assert_true(xm[i] >= 0.0f && xm[i] <= 1.0f);
    free(x);
    free(xm);
    vae_workspace_free(ws);
    vae_free(&m);
}

static void test_config_validation(void **state)
{
    (void)state;
    char err[200];
    vae_config c;
    int w[] = {8, 8, 8, 8, 8, 8, 8};
    tiny_config(&c, 1, 28, 4, w, 4);
    assert_int_equal(vae_config_validate(&c, err, sizeof err), 0);
    c.height = c.width = 30;
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "30"));
    c.height = 32;
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG); /* not square */
    tiny_config(&c, 2, 32, 4, w, 4);
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG);
    tiny_config(&c, 1, 16, 5, w, 4);
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG); /* below 1x1 */
    tiny_config(&c, 1, 16, 4, w, 4);
    assert_int_equal(vae_config_validate(&c, err, sizeof err), 0); /* 16 -> 1x1 */
    tiny_config(&c, 3, 64, 6, w, 4);
    assert_int_equal(vae_config_validate(&c, err, sizeof err), 0);
    c.n_conv = 7;
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG);
    tiny_config(&c, 1, 32, 2, w, 4);
    c.conv_channels[1] = 0;
    assert_int_equal(vae_config_validate(&c, err, sizeof err), VAE_ERR_ARG);
}

/* ---------- the reference: one image at a time, (C, H, W), in double ---------- */

static const double *T(const vae_model *m, const double *p, const char *fmt, int i)
{
    char name[64];
    snprintf(name, sizeof name, fmt, i);
    return p + tensor(m, name)->offset;
}

/* nn.Conv2d(cin, cout, 3, stride=2, padding=1): x (cin, h, h) -> y (cout, h/2, h/2) */
static void ref_conv(double *y, const double *x, const double *w, const double *b, int cin,
                     int cout, int h)
{
    int o = h / 2;
    for (int co = 0; co < cout; co++)
        for (int oy = 0; oy < o; oy++)
            for (int ox = 0; ox < o; ox++) {
                double s = b[co];
                for (int ci = 0; ci < cin; ci++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = 2 * oy - 1 + ky, ix = 2 * ox - 1 + kx;
                            if (iy < 0 || iy >= h || ix < 0 || ix >= h) continue;
                            s += w[((co * cin + ci) * 3 + ky) * 3 + kx] * x[(ci * h + iy) * h + ix];
                        }
                y[(co * o + oy) * o + ox] = s;
            }
}

/* nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1):
 * x (cin, h, h) -> y (cout, 2h, 2h); weight [cin, cout, 3, 3]. */
static void ref_convt(double *y, const double *x, const double *w, const double *b, int cin,
                      int cout, int h)
{
    int o = 2 * h;
    for (int co = 0; co < cout; co++)
        for (int i = 0; i < o * o; i++) y[co * o * o + i] = b[co];
    for (int ci = 0; ci < cin; ci++)
        for (int iy = 0; iy < h; iy++)
            for (int ix = 0; ix < h; ix++)
                for (int co = 0; co < cout; co++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int oy = 2 * iy - 1 + ky, ox = 2 * ix - 1 + kx;
                            if (oy < 0 || oy >= o || ox < 0 || ox >= o) continue;
                            y[(co * o + oy) * o + ox] +=
                                w[((ci * cout + co) * 3 + ky) * 3 + kx] * x[(ci * h + iy) * h + ix];
                        }
}

static double leaky(double v) { return v > 0 ? v : 0.2 * v; }
static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

static double pixel_nll(const vae_config *c, double l, double lvx, double t)
{
    switch (c->likelihood) {
    case VAE_LIK_BERNOULLI: {
        double s = sigmoid(l);
        return -(t * log(s) + (1 - t) * log(1 - s));
    }
    case VAE_LIK_CBERNOULLI: {
        double s = sigmoid(l);
        double logc = fabs(1 - 2 * s) < 1e-9 ? log(2.0) : log(2 * atanh(1 - 2 * s) / (1 - 2 * s));
        return -(t * log(s) + (1 - t) * log(1 - s) + logc);
    }
    case VAE_LIK_GAUSSIAN: {
        double d = sigmoid(l) - t, s = c->sigma;
        return 0.5 * d * d / (s * s) + log(s) + 0.5 * log(2 * M_PI);
    }
    case VAE_LIK_GAUSSIAN_LEARNED: {
        double d = sigmoid(l) - t;
        return 0.5 * (d * d * exp(-lvx) + lvx + log(2 * M_PI));
    }
    }
    return 0;
}

/* The loss vae_forward_loss optimises (no warm-up: beta as given); a
 * conditional model's input has K one-hot planes after its channels and its
 * decoder_input takes z with the one-hot of labels[b] after it. */
static double ref_loss(const vae_model *m, const double *p, const float *xf, const int *labels,
                       const float *epsf, int B)
{
    const vae_config *c = &m->cfg;
    int C = c->channels, S = c->height, P = S == 28 ? 32 : S, off = (P - S) / 2;
    int n = c->n_conv, Z = c->latent, L = c->mc_samples, D = C * S * S, K = c->n_classes;
    int Cout = c->likelihood == VAE_LIK_GAUSSIAN_LEARNED ? 2 * C : C;
    int F = P >> n, flat = c->conv_channels[n - 1] * F * F;
    size_t big = (size_t)(Cout > C + K ? Cout : C + K) * P * P;
    for (int i = 0; i < n; i++) big += (size_t)c->conv_channels[i] * P * P; /* generous */
    double *a = malloc(sizeof(double) * big), *bb = malloc(sizeof(double) * big);
    double *mu = malloc(sizeof(double) * B * Z), *lv = malloc(sizeof(double) * B * Z);
    double *kl_dim = calloc((size_t)Z, sizeof(double));
    double recon = 0, kl = 0;
    for (int b = 0; b < B; b++) {
        /* pad, then the label planes */
        for (size_t i = 0; i < (size_t)(C + K) * P * P; i++) a[i] = 0;
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    a[(ch * P + y + off) * P + x + off] = xf[(size_t)b * D + (ch * S + y) * S + x];
        if (K)
            for (int i = 0; i < P * P; i++) a[(size_t)(C + labels[b]) * P * P + i] = 1.0;
        int cin = C + K, h = P;
        double *in = a, *out = bb;
        for (int i = 0; i < n; i++) {
            int co = c->conv_channels[i];
            ref_conv(out, in, T(m, p, "encoder.%d.weight", i), T(m, p, "encoder.%d.bias", i), cin, co, h);
            h /= 2;
            cin = co;
            for (int k = 0; k < co * h * h; k++) out[k] = leaky(out[k]);
            double *t = in;
            in = out;
            out = t;
        }
        /* in: the flattened (ch, F, F) features */
        const double *wm = T(m, p, "fc_mu.weight", 0), *wl = T(m, p, "fc_logvar.weight", 0);
        const double *bm = T(m, p, "fc_mu.bias", 0), *bl = T(m, p, "fc_logvar.bias", 0);
        for (int j = 0; j < Z; j++) {
            double sm = bm[j], sl = bl[j];
            for (int k = 0; k < flat; k++) {
                sm += wm[j * flat + k] * in[k];
                sl += wl[j * flat + k] * in[k];
            }
            mu[b * Z + j] = sm;
            lv[b * Z + j] = sl;
            double k = 0.5 * (sm * sm + exp(sl) - 1 - sl);
            kl += k;
            kl_dim[j] += k;
        }
        for (int l = 0; l < L; l++) {
            double z[64];
            for (int j = 0; j < Z; j++)
                z[j] = mu[b * Z + j] + exp(0.5 * lv[b * Z + j]) * epsf[(size_t)(b * L + l) * Z + j];
            const double *wd = T(m, p, "decoder_input.weight", 0), *bd = T(m, p, "decoder_input.bias", 0);
            for (int k = 0; k < flat; k++) {
                double s = bd[k];
                for (int j = 0; j < Z; j++) s += wd[k * (Z + K) + j] * z[j];
                if (K) s += wd[k * (Z + K) + Z + labels[b]];
                a[k] = s;
            }
            in = a;
            out = bb;
            h = F;
            cin = c->conv_channels[n - 1];
            for (int i = 0; i < n; i++) {
                int co = i < n - 1 ? c->conv_channels[n - 2 - i] : Cout;
                ref_convt(out, in, T(m, p, "decoder.%d.weight", i), T(m, p, "decoder.%d.bias", i), cin, co, h);
                h *= 2;
                cin = co;
                if (i < n - 1)
                    for (int k = 0; k < co * h * h; k++) out[k] = leaky(out[k]);
                double *t = in;
                in = out;
                out = t;
            }
            /* crop and score */
            for (int ch = 0; ch < C; ch++)
                for (int y = 0; y < S; y++)
                    for (int x = 0; x < S; x++) {
                        double lg = in[(ch * P + y + off) * P + x + off];
                        double lvx = Cout > C ? in[((ch + C) * P + y + off) * P + x + off] : 0;
                        recon += pixel_nll(c, lg, lvx, xf[(size_t)b * D + (ch * S + y) * S + x]);
                    }
        }
    }
    recon /= L;
    double kl_opt = kl;
    if (c->free_bits > 0) {
        kl_opt = 0;
        for (int j = 0; j < Z; j++) kl_opt += fmax(kl_dim[j] / B, c->free_bits) * B;
    }
    free(a); free(bb); free(mu); free(lv); free(kl_dim);
    return recon + c->beta * kl_opt;
}

/* ---------- gradient check, fast against naive ---------- */

static void run_grads(const vae_model *m, int naive, const float *x, const int *labels,
                      const float *eps, int B, float *grads, vae_stats *st)
{
    char err[200];
    vae_train_state *ts = vae_train_state_new(m, B, err, sizeof err);
    if (!ts) fail_msg("%s", err);
    assert_int_equal(vae_train_state_use_naive(ts, naive), VAE_OK);
    assert_int_equal(vae_forward_loss_cond(m, ts, x, labels, eps, B, st), VAE_OK);
    assert_int_equal(vae_backward(m, ts), VAE_OK);
    memcpy(grads, vae_train_grads(ts), sizeof(float) * m->n_params);
    vae_train_state_free(ts);
}

static void gradcheck(const vae_config *cfg, const char *label, int max_per_tensor)
{
    vae_model m;
    conv_model(&m, cfg, 42);
    int B = 2, D = vae_config_input_dim(cfg), Z = cfg->latent, L = cfg->mc_samples;
    float *x = malloc(sizeof(float) * B * D), *eps = malloc(sizeof(float) * B * L * Z);
    rng_state r;
    rng_seed(&r, 7);
    for (int i = 0; i < B * D; i++) x[i] = rng_uniform(&r);
    rng_normal_fill(&r, eps, (size_t)B * L * Z);
    int labels[2] = {cfg->n_classes - 1, 0}, *y = cfg->n_classes ? labels : NULL;
    float *g = malloc(sizeof(float) * m.n_params), *gn = malloc(sizeof(float) * m.n_params);
    vae_stats st, stn;
    run_grads(&m, 0, x, y, eps, B, g, &st);
    run_grads(&m, 1, x, y, eps, B, gn, &stn);

    /* fast and naive kernels: the same loss and gradients up to rounding,
     * but not to the bit (the naive loops sum in double): equal bits would
     * mean vae_train_state_use_naive ran the fast kernels twice */
    assert_true(memcmp(g, gn, sizeof(float) * m.n_params) != 0);
    if (fabs(st.loss - stn.loss) > 1e-5 * fmax(1.0, fabs(st.loss)))
        fail_msg("%s: fast loss %.9g, naive %.9g", label, st.loss, stn.loss);
    for (size_t i = 0; i < m.n_params; i++)
        if (fabs(g[i] - gn[i]) > 1e-3 * fmax(1e-2, fabs(gn[i])))
            fail_msg("%s: grad[%zu] fast %.8g, naive %.8g", label, i, g[i], gn[i]);

    double *p = malloc(sizeof(double) * m.n_params);
    for (size_t i = 0; i < m.n_params; i++) p[i] = m.params[i];
    double ref = ref_loss(&m, p, x, y, eps, B);
    if (fabs(st.loss - ref) > 1e-4 * fmax(1.0, fabs(ref)))
        fail_msg("%s: loss %.9g, reference %.9g", label, st.loss, ref);

    for (int ti = 0; ti < m.n_tensors; ti++) {
        const vae_tensor *t = &m.tensors[ti];
        size_t stride = t->size > (size_t)max_per_tensor ? t->size / max_per_tensor : 1;
        for (size_t k = 0; k < t->size; k += stride) {
            size_t i = t->offset + k;
            double h = 1e-6, keep = p[i];
            p[i] = keep + h;
            double lp = ref_loss(&m, p, x, y, eps, B);
            p[i] = keep - h;
            double lm = ref_loss(&m, p, x, y, eps, B);
            p[i] = keep;
            double num = (lp - lm) / (2 * h), ana = g[i];
            /* float rounding in sums over whole images is ~1e-6 absolute */
            double rel = fabs(num - ana) / fmax(fabs(num) + fabs(ana), 5e-3);
            if (rel > 2e-3)
                fail_msg("%s: %s[%zu]: analytic %.8g, numeric %.8g (rel %.2g)", label, t->name, k,
                         ana, num, rel);
        }
    }
    free(p);
    free(x);
    free(eps);
    free(g);
    free(gn);
    vae_free(&m);
}

static void test_gradcheck_bernoulli(void **state)
{
    (void)state;
    vae_config c;
    int w[] = {4, 8};
    tiny_config(&c, 1, 16, 2, w, 3);
    gradcheck(&c, "1x16x16 bernoulli", 1 << 30);
}

static void test_gradcheck_likelihoods(void **state)
{
    (void)state;
    vae_config c;
    int w[] = {4, 8};
    vae_likelihood liks[] = {VAE_LIK_CBERNOULLI, VAE_LIK_GAUSSIAN, VAE_LIK_GAUSSIAN_LEARNED};
    for (size_t i = 0; i < sizeof liks / sizeof liks[0]; i++) {
        tiny_config(&c, 3, 16, 2, w, 3);
        c.likelihood = liks[i];
        c.sigma = 0.3f;
        gradcheck(&c, vae_likelihood_name(liks[i]), 40);
    }
}

static void test_gradcheck_options(void **state)
{
    (void)state;
    vae_config c;
    int w[] = {3, 4, 5};
    tiny_config(&c, 1, 16, 3, w, 4); /* three layers: 16 -> 2x2 */
    c.mc_samples = 3;
    c.beta = 2.5f;
    gradcheck(&c, "mc=3 beta=2.5", 40);
    int w2[] = {4, 8};
    tiny_config(&c, 1, 16, 2, w2, 4);
    c.free_bits = 0.05f;
    gradcheck(&c, "free bits", 40);
}

/* 28x28: padded to 32 on the way in, cropped on the way out */
static void test_gradcheck_padded_28(void **state)
{
    (void)state;
    vae_config c;
    int w[] = {2, 3};
    tiny_config(&c, 1, 28, 2, w, 3);
    gradcheck(&c, "28x28", 40);
}

/* A conditional model: K label planes into encoder.0 (over the padded side
 * of a 28x28 input too), the one-hot into decoder_input; two samples of z
 * per image, three channels. */
static void test_gradcheck_conditional(void **state)
{
    (void)state;
    vae_config c;
    int w[] = {3, 4};
    tiny_config(&c, 1, 16, 2, w, 3);
    c.n_classes = 3;
    gradcheck(&c, "conditional 16x16", 1 << 30);
    tiny_config(&c, 1, 28, 2, w, 3);
    c.n_classes = 4;
    c.mc_samples = 2;
    gradcheck(&c, "conditional 28x28 mc=2", 40);
    tiny_config(&c, 3, 16, 2, w, 3);
    c.n_classes = 2;
    c.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    gradcheck(&c, "conditional rgb gaussian-learned", 40);
}

/* ---------- inference ---------- */

static void test_encode_decode_consistent(void **state)
{
    (void)state;
    char err[200];
    vae_config c;
    int w[] = {4, 8, 8};
    tiny_config(&c, 1, 28, 3, w, 5);
    vae_model m;
    conv_model(&m, &c, 9);
    enum { B = 5 };
    int D = vae_config_input_dim(&c), Z = c.latent;
    float *x = malloc(sizeof(float) * B * D), mu[B * 5], lv[B * 5], mu1[5], lv1[5];
    float *xm = malloc(sizeof(float) * B * D), *xm1 = malloc(sizeof(float) * D);
    for (int i = 0; i < B * D; i++) x[i] = (float)((i * 7) % 13) / 13.0f;
    vae_workspace *ws = vae_workspace_new(&m, B);
    assert_non_null(ws);
    assert_int_equal(vae_encode(&m, ws, x, B, mu, lv), 0);
    assert_int_equal(vae_decode(&m, ws, mu, B, xm), 0);
    /* each image alone gives what it gave in the batch */
    for (int b = 0; b < B; b++) {
        assert_int_equal(vae_encode(&m, ws, x + (size_t)b * D, 1, mu1, lv1), 0);
        for (int j = 0; j < Z; j++) {
            assert_float_equal(mu1[j], mu[b * Z + j], 1e-5);
            assert_float_equal(lv1[j], lv[b * Z + j], 1e-5);
        }
        assert_int_equal(vae_decode(&m, ws, mu + b * Z, 1, xm1), 0);
        for (int j = 0; j < D; j++) assert_float_equal(xm1[j], xm[(size_t)b * D + j], 1e-5);
    }
    /* the training forward reports the KL of the encoder's mu and logvar */
    vae_train_state *ts = vae_train_state_new(&m, B, err, sizeof err);
    assert_non_null(ts);
    float eps[B * 5] = {0};
    vae_stats st;
    assert_int_equal(vae_forward_loss(&m, ts, x, eps, B, &st), 0);
    double kl = 0;
    for (int i = 0; i < B * Z; i++) kl += 0.5 * ((double)mu[i] * mu[i] + exp(lv[i]) - 1 - lv[i]);
    assert_true(fabs(kl - st.kl) < 1e-4 * fmax(1, kl));
    /* with eps = 0 the reconstruction term is that of decode(mu) */
    double recon = 0;
    for (int i = 0; i < B * D; i++) {
        double q = xm[i] < 1e-7 ? 1e-7 : (xm[i] > 1 - 1e-7 ? 1 - 1e-7 : xm[i]);
        recon -= x[i] * log(q) + (1 - x[i]) * log(1 - q);
    }
    assert_true(fabs(recon - st.recon) < 1e-3 * recon);
    /* a batch over the state's size is refused */
    assert_int_equal(vae_forward_loss(&m, ts, x, eps, B + 1, &st), VAE_ERR_ARG);
    vae_train_state_free(ts);
    vae_workspace_free(ws);
    free(x);
    free(xm);
    free(xm1);
    vae_free(&m);
}

static void test_nonfinite_input_is_reported(void **state)
{
    (void)state;
    char err[200];
    vae_config c;
    int w[] = {4, 8};
    tiny_config(&c, 1, 16, 2, w, 3);
    vae_model m;
    conv_model(&m, &c, 3);
    float x[2 * 256], eps[6] = {0};
    for (int i = 0; i < 512; i++) x[i] = 0.5f;
    x[100] = NAN;
    vae_train_state *ts = vae_train_state_new(&m, 2, err, sizeof err);
    assert_non_null(ts);
    vae_stats st;
    assert_int_equal(vae_forward_loss(&m, ts, x, eps, 2, &st), VAE_ERR_NONFINITE);
    vae_train_state_free(ts);
    vae_free(&m);
}

/* ---------- checkpoints and training steps ---------- */

static void test_checkpoint_round_trip(void **state)
{
    (void)state;
    char err[256];
    vae_config c;
    int w[] = {4, 8, 8};
    tiny_config(&c, 1, 28, 3, w, 4);
    vae_model m, m2;
    conv_model(&m, &c, 5);
    /* every 4-d tensor survives the file */
    uint8_t *buf;
    size_t len;
    assert_int_equal(ckpt_save_mem(&m, NULL, &buf, &len, err, sizeof err), VAE_OK);
    if (ckpt_load_mem(&m2, buf, len, NULL, err, sizeof err)) fail_msg("load: %s", err);
    free(buf);
    assert_int_equal(m2.cfg.arch, VAE_ARCH_CONV);
    assert_int_equal(m2.n_params, m.n_params);
    assert_memory_equal(m2.params, m.params, sizeof(float) * m.n_params);
    assert_int_equal(tensor(&m2, "decoder.2.weight")->ndim, 4);
    vae_free(&m);
    vae_free(&m2);
}

/* Steps with the batch split over two threads are the steps of one thread
 * (the loss equal, the parameters after Adam equal up to the order of the
 * sums), and training lowers the loss. */
static void test_training_steps(void **state)
{
    (void)state;
    char err[256];
    vae_config c;
    int w[] = {4, 8, 8};
    tiny_config(&c, 1, 28, 3, w, 4);
    c.batch = 16;
    vae_model a, b;
    conv_model(&a, &c, 5);
    conv_model(&b, &c, 5);
    enum { B = 16 };
    int D = vae_config_input_dim(&c);
    float *x = malloc(sizeof(float) * B * D);
    rng_state rx, ra, rb;
    rng_seed(&rx, 2);
    rng_seed(&ra, 3);
    rng_seed(&rb, 3);
    for (int i = 0; i < B * D; i++) x[i] = rng_uniform(&rx);
    vae_train_state *ta = vae_train_state_new(&a, B, err, sizeof err);
    vae_train_state *tb = vae_train_state_new(&b, B, err, sizeof err);
    assert_non_null(ta);
    assert_non_null(tb);
    assert_int_equal(vae_train_state_set_threads(tb, &b, 2, err, sizeof err), VAE_OK);
    vae_stats sa, sb;
    double first = 0;
    for (int k = 0; k < 30; k++) {
        assert_int_equal(vae_train_step(&a, ta, x, B, &ra, &sa), VAE_OK);
        assert_int_equal(vae_train_step(&b, tb, x, B, &rb, &sb), VAE_OK);
        if (fabs(sa.loss - sb.loss) > 1e-4 * fabs(sa.loss))
            fail_msg("step %d: loss %.9g single, %.9g split", k, sa.loss, sb.loss);
        assert_int_equal(sb.batch, B);
        if (k == 0) first = sa.loss;
    }
    assert_true(sa.loss < first);
    for (size_t i = 0; i < a.n_params; i++)
        if (fabsf(a.params[i] - b.params[i]) > 1e-4f * fmaxf(1.0f, fabsf(a.params[i])))
            fail_msg("parameter %zu: %g single, %g split", i, a.params[i], b.params[i]);
    vae_train_state_free(ta);
    vae_train_state_free(tb);
    free(x);
    vae_free(&a);
    vae_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_shapes),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_gradcheck_bernoulli),
        cmocka_unit_test(test_gradcheck_likelihoods),
        cmocka_unit_test(test_gradcheck_options),
        cmocka_unit_test(test_gradcheck_padded_28),
        cmocka_unit_test(test_gradcheck_conditional),
        cmocka_unit_test(test_encode_decode_consistent),
        cmocka_unit_test(test_nonfinite_input_is_reported),
        cmocka_unit_test(test_checkpoint_round_trip),
        cmocka_unit_test(test_training_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
