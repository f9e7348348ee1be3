/* Unit tests for engine/eval.c, against an independent computation in double
 * precision on a model small enough to integrate: 2x2 grey images, one hidden
 * layer of 3 ReLU units, a latent of 2, Bernoulli likelihood, parameters
 * drawn wider than PyTorch's default (U(-1.2, 1.2)) so that q(z|x) is
 * clearly not the true posterior: the negative ELBO is 1.16 nats above
 * -log p(x), and the bounds between them are tenths of a nat apart.
 *
 * The reference reads the parameters by their PyTorch names and runs the
 * network itself; it shares nothing with the engine but the generator, which
 * it uses to draw the same eps as eval.c. What is checked:
 * - eval_run's neg_elbo, recon and kl equal the reference's with the same eps
 *   (tolerance 2e-5 relative: float against double arithmetic);
 * - the importance-weighted bound equals the reference's with the same eps,
 *   for K = 1, 3 and 700 (two chunks, of 500 and 200), and on the first
 *   images only;
 * - -log p(x), by quadrature over the latent plane (351x351 midpoints on
 *   [-7, 7]^2; a grid twice as fine or twice as wide changes it by less
 *   than 1e-4 nats), and the exact negative ELBO, by the same quadrature
 *   under q(z|x). With K = 1 the bound's mean over 400 seeds equals the
 *   negative ELBO within 4 standard errors of that mean. The mean over
 *   seeds does not grow with K (K = 1, 2, 8, 32, 128; a step may rise by at
 *   most 3 standard errors of the paired difference, and here each falls by
 *   more than 20) and stays above -log p(x) (within 4 standard errors).
 *   iwae_nll <= neg_elbo. With q = the prior (weights p(x|z)/p(x) bounded,
 *   so the bound converges fast) and K = 2000 the bound is -log p(x) within
 *   0.02 nats, where the ELBO is 0.6 nats off;
 * - active units: the count of latent dimensions whose mean KL exceeds 0.01
 *   nats, also with a collapsed dimension and on either side of the threshold.
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

#include "engine/eval.h"

#define D 4 /* pixels */
#define H 3 /* hidden units */
#define Z 2 /* latent */
#define N_IMAGES 40
#define LOG_2PI 1.8378770664093453

/* ---------- the reference: the network in double ---------- */

typedef struct {
    double enc_w[H][D], enc_b[H];
    double mu_w[Z][H], mu_b[Z], lv_w[Z][H], lv_b[Z];
    double dec_w[H][Z], dec_b[H];
    double out_w[D][H], out_b[D];
} ref_net;

static void copy_tensor(const vae_model *m, const char *name, double *dst, size_t n)
{
    const vae_tensor *t = vae_find_tensor(m, name);
    if (!t) fail_msg("the model has no tensor %s", name);
    assert_int_equal(t->size, n);
    for (size_t i = 0; i < n; i++) dst[i] = m->params[t->offset + i];
}

static void ref_from_model(const vae_model *m, ref_net *r)
{
    copy_tensor(m, "encoder.0.weight", &r->enc_w[0][0], H * D);
    copy_tensor(m, "encoder.0.bias", r->enc_b, H);
    copy_tensor(m, "fc_mu.weight", &r->mu_w[0][0], Z * H);
    copy_tensor(m, "fc_mu.bias", r->mu_b, Z);
    copy_tensor(m, "fc_logvar.weight", &r->lv_w[0][0], Z * H);
    copy_tensor(m, "fc_logvar.bias", r->lv_b, Z);
    copy_tensor(m, "decoder.0.weight", &r->dec_w[0][0], H * Z);
    copy_tensor(m, "decoder.0.bias", r->dec_b, H);
    copy_tensor(m, "out.weight", &r->out_w[0][0], D * H);
    copy_tensor(m, "out.bias", r->out_b, D);
}

static void ref_encode(const ref_net *r, const float *x, double *mu, double *logvar)
{
    double h[H];
    for (int i = 0; i < H; i++) {
        double s = r->enc_b[i];
        for (int j = 0; j < D; j++) s += r->enc_w[i][j] * x[j];
        h[i] = s > 0 ? s : 0;
    }
    for (int u = 0; u < Z; u++) {
        double a = r->mu_b[u], b = r->lv_b[u];
        for (int i = 0; i < H; i++) {
            a += r->mu_w[u][i] * h[i];
            b += r->lv_w[u][i] * h[i];
        }
        mu[u] = a;
        logvar[u] = b;
    }
}

/* -log p(x | z): Bernoulli cross-entropy with the decoder's logits */
static double ref_nll(const ref_net *r, const float *x, const double *z)
{
    double h[H], nll = 0;
    for (int i = 0; i < H; i++) {
        double s = r->dec_b[i];
        for (int u = 0; u < Z; u++) s += r->dec_w[i][u] * z[u];
        h[i] = s > 0 ? s : 0;
    }
    for (int j = 0; j < D; j++) {
        double l = r->out_b[j];
        for (int i = 0; i < H; i++) l += r->out_w[j][i] * h[i];
        nll += fmax(l, 0) + log1p(exp(-fabs(l))) - x[j] * l;
    }
    return nll;
}

static double ref_kl(const double *mu, const double *logvar)
{
    double kl = 0;
    for (int u = 0; u < Z; u++) kl += 0.5 * (mu[u] * mu[u] + exp(logvar[u]) - 1 - logvar[u]);
    return kl;
}

/* The grid: midpoints of 351 cells per axis over [-7, 7]. */
#define GRID 351
#define GRID_R 7.0

/* -log p(x) = -log of the integral of p(x|z) p(z) over the plane. */
static double ref_true_nll(const ref_net *r, const float *x)
{
    double h = 2 * GRID_R / GRID, top = -INFINITY, sum = 0;
    for (int a = 0; a < GRID; a++)
        for (int b = 0; b < GRID; b++) {
            double z[Z] = {-GRID_R + (a + 0.5) * h, -GRID_R + (b + 0.5) * h};
            double lw = -ref_nll(r, x, z) - 0.5 * (z[0] * z[0] + z[1] * z[1]) - LOG_2PI;
            if (lw > top) {
                sum = sum * exp(top - lw) + 1;
                top = lw;
            } else {
                sum += exp(lw - top);
            }
        }
    return -(top + log(sum) + 2 * log(h));
}

/* The exact negative ELBO: E_q[-log p(x|z)] by quadrature over eps, plus KL. */
static double ref_neg_elbo(const ref_net *r, const float *x)
{
    double mu[Z], lv[Z];
    ref_encode(r, x, mu, lv);
    double h = 2 * GRID_R / GRID, wsum = 0, sum = 0;
    for (int a = 0; a < GRID; a++)
        for (int b = 0; b < GRID; b++) {
            double e[Z] = {-GRID_R + (a + 0.5) * h, -GRID_R + (b + 0.5) * h};
            double w = exp(-0.5 * (e[0] * e[0] + e[1] * e[1]));
            double z[Z] = {mu[0] + exp(0.5 * lv[0]) * e[0], mu[1] + exp(0.5 * lv[1]) * e[1]};
            sum += w * ref_nll(r, x, z);
            wsum += w;
        }
    return sum / wsum + ref_kl(mu, lv);
}

/* ---------- fixtures ---------- */

static void make_model(vae_model *m, uint64_t seed)
{
    vae_config c;
    vae_config_default(&c);
    c.height = c.width = 2;
    c.hidden[0] = H;
    c.latent = Z;
    char err[256];
    assert_int_equal(vae_alloc(m, &c, err, sizeof err), VAE_OK);
    rng_state r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < m->n_params; i++) m->params[i] = 2.4f * rng_uniform(&r) - 1.2f;
}

static void make_data(dataset *d)
{
    *d = (dataset){.n = N_IMAGES, .channels = 1, .height = 2, .width = 2};
    d->x = malloc(sizeof(float) * N_IMAGES * D);
    assert_non_null(d->x);
    rng_state r;
    rng_seed(&r, 77);
    for (int i = 0; i < N_IMAGES * D; i++) d->x[i] = rng_uniform(&r);
}

/* What each test starts from: the model, the images and the reference. */
typedef struct {
    vae_model m;
    dataset d;
    ref_net r;
} fixture;

static int fixture_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f); /* owned: freed by fixture_teardown */
    if (!f) return -1;
    make_model(&f->m, 3);
    make_data(&f->d);
    ref_from_model(&f->m, &f->r);
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    fixture *f = *state;
    dataset_free(&f->d);
    vae_free(&f->m);
    free(f);
    return 0;
}

/* Over the images: the mean -log p(x) and the mean exact negative ELBO. */
static void ref_bounds(const ref_net *r, const dataset *d, double *true_nll, double *neg_elbo)
{
    *true_nll = *neg_elbo = 0;
    for (int i = 0; i < d->n; i++) {
        *true_nll += ref_true_nll(r, d->x + i * D);
        *neg_elbo += ref_neg_elbo(r, d->x + i * D);
    }
    *true_nll /= d->n;
    *neg_elbo /= d->n;
}

static void assert_close(double got, double want, double rel, const char *what)
{
    if (!(fabs(got - want) <= rel * (1 + fabs(want))))
        fail_msg("%s: %.9g, the reference says %.9g (tolerance %g relative)", what, got, want, rel);
}

static double eval_iwae(const vae_model *m, const dataset *d, int k, uint64_t seed,
                        eval_result *out)
{
    char err[256];
    vae_status rc = eval_run(m, d, k, seed, out, err, sizeof err);
    if (rc) fail_msg("eval_run: %s", err);
    assert_int_equal(out->iwae_k, k);
    assert_int_equal(out->iwae_n, d->n);
    return out->iwae_nll;
}

/* ---------- the tests ---------- */

/* neg_elbo, recon and kl with eval.c's own eps: trainer_evaluate draws them
 * for the whole set at once (one batch: fewer than 500 images) from a
 * generator seeded with the seed. */
static void test_elbo_matches_the_reference(void **state)
{
    fixture *f = *state;
    vae_model *m = &f->m;
    dataset *d = &f->d;
    ref_net *r = &f->r;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        float eps[N_IMAGES * Z];
        rng_state g;
        rng_seed(&g, seed);
        rng_normal_fill(&g, eps, N_IMAGES * Z);
        double recon = 0, kl = 0;
        for (int i = 0; i < N_IMAGES; i++) {
            double mu[Z], lv[Z], z[Z];
            ref_encode(r, d->x + i * D, mu, lv);
            for (int u = 0; u < Z; u++) z[u] = mu[u] + exp(0.5 * lv[u]) * eps[i * Z + u];
            recon += ref_nll(r, d->x + i * D, z);
            kl += ref_kl(mu, lv);
        }
        eval_result e;
        char err[256];
        assert_int_equal(eval_run(m, d, 0, seed, &e, err, sizeof err), VAE_OK);
        assert_int_equal(e.n, N_IMAGES);
        assert_int_equal(e.iwae_k, 0);
        assert_true(isnan(e.iwae_nll));
        assert_close(e.recon, recon / N_IMAGES, 2e-5, "recon");
        assert_close(e.kl, kl / N_IMAGES, 2e-5, "kl");
        assert_close(e.neg_elbo, (recon + kl) / N_IMAGES, 2e-5, "neg_elbo");
        assert_true(e.kl > 0.5); /* not a trivial posterior */
    }
}

/* The bound with eval.c's eps: per image, K*Z normals in chunks of at most
 * 500 samples from a generator seeded with seed ^ 0x1a3e (no binarisation
 * draws: the model does not binarise). */
static double ref_iwae_same_eps(const ref_net *r, const dataset *d, int k, uint64_t seed)
{
    rng_state g;
    rng_seed(&g, seed ^ 0x1a3eULL);
    float *eps = malloc(sizeof(float) * 500 * Z);
    double *lw = malloc(sizeof(double) * (size_t)k);
    assert_non_null(eps);
    assert_non_null(lw);
    double total = 0;
    for (int i = 0; i < d->n; i++) {
        const float *x = d->x + i * D;
        double mu[Z], lv[Z];
        ref_encode(r, x, mu, lv);
        for (int k0 = 0; k0 < k; k0 += 500) {
            int kn = k - k0 < 500 ? k - k0 : 500;
            rng_normal_fill(&g, eps, (size_t)kn * Z);
            for (int s = 0; s < kn; s++) {
                double z[Z], lp = 0, lq = 0;
                for (int u = 0; u < Z; u++) {
                    double e = eps[s * Z + u];
                    z[u] = mu[u] + exp(0.5 * lv[u]) * e;
                    lp += -0.5 * (z[u] * z[u] + LOG_2PI);
                    lq += -0.5 * (e * e + LOG_2PI + lv[u]);
                }
                lw[k0 + s] = -ref_nll(r, x, z) + lp - lq;
            }
        }
        double top = lw[0];
        for (int s = 1; s < k; s++) top = fmax(top, lw[s]);
        double sum = 0;
        for (int s = 0; s < k; s++) sum += exp(lw[s] - top);
        total += -(top + log(sum / k));
    }
    free(eps);
    free(lw);
    return total / d->n;
}

static void test_iwae_matches_the_reference(void **state)
{
    fixture *f = *state;
    vae_model *m = &f->m;
    dataset *d = &f->d;
    ref_net *r = &f->r;
    const int ks[] = {1, 3, 700};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        eval_result e;
        double got = eval_iwae(m, d, ks[i], 11, &e);
        assert_close(got, ref_iwae_same_eps(r, d, ks[i], 11), 2e-5, "iwae_nll");
    }
    /* on the first images only */
    eval_result e;
    char err[256];
    assert_int_equal(eval_run_iwae_images(m, d, 3, 7, 11, &e, err, sizeof err), VAE_OK);
    assert_int_equal(e.iwae_n, 7);
    dataset first = *d;
    first.n = 7;
    assert_close(e.iwae_nll, ref_iwae_same_eps(r, &first, 3, 11), 2e-5, "iwae_nll, 7 images");
    assert_int_equal(eval_run(m, d, -1, 11, &e, err, sizeof err), VAE_ERR_ARG);
}

/* Latent dimension u made constant: mu = mu_bias, logvar = 0, so its KL is
 * mu_bias^2 / 2 for every image. */
static void set_dim_constant(vae_model *m, int u, float mu_bias)
{
    const vae_tensor *mw = vae_find_tensor(m, "fc_mu.weight");
    const vae_tensor *mb = vae_find_tensor(m, "fc_mu.bias");
    const vae_tensor *lw = vae_find_tensor(m, "fc_logvar.weight");
    const vae_tensor *lb = vae_find_tensor(m, "fc_logvar.bias");
    assert_true(mw && mb && lw && lb);
    for (int i = 0; i < H; i++) {
        m->params[mw->offset + (size_t)u * H + i] = 0;
        m->params[lw->offset + (size_t)u * H + i] = 0;
    }
    m->params[mb->offset + u] = mu_bias;
    m->params[lb->offset + u] = 0;
}

typedef struct {
    double mean, se; /* over seeds; se: the standard error of the mean */
} seed_mean;

/* The bound with K samples over seeds 1..n_seeds; per_seed (may be NULL)
 * receives each seed's value, to pair runs of the same seed. */
static seed_mean iwae_over_seeds(const vae_model *m, const dataset *d, int k, int n_seeds,
                                 double *per_seed)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n_seeds; i++) {
        eval_result e;
        double v = eval_iwae(m, d, k, (uint64_t)i + 1, &e);
        if (per_seed) per_seed[i] = v;
        s += v;
        s2 += v * v;
    }
    double mean = s / n_seeds, var = (s2 - n_seeds * mean * mean) / (n_seeds - 1);
    return (seed_mean){mean, sqrt(var / n_seeds)};
}

static void test_iwae_bound_properties(void **state)
{
    fixture *f = *state;
    vae_model *m = &f->m;
    dataset *d = &f->d;
    ref_net *r = &f->r;
    double true_nll, neg_elbo;
    ref_bounds(r, d, &true_nll, &neg_elbo);
    print_message("-log p(x) %.4f, negative ELBO %.4f (exact, by quadrature)\n", true_nll,
                  neg_elbo);
    /* a model where the bounds differ, or the checks below prove little */
    assert_true(neg_elbo - true_nll > 0.3);

    /* K = 1: an unbiased estimate of the negative ELBO */
    enum { SEEDS = 400 };
    static double prev_runs[SEEDS], runs[SEEDS];
    seed_mean k1 = iwae_over_seeds(m, d, 1, SEEDS, prev_runs);
    print_message("K=1: %.4f +- %.4f over %d seeds\n", k1.mean, k1.se, SEEDS);
    if (!(fabs(k1.mean - neg_elbo) <= 4 * k1.se))
        fail_msg("with K = 1 the bound averages %.4f (se %.4f); the negative ELBO is %.4f",
                 k1.mean, k1.se, neg_elbo);

    /* the mean does not grow with K; each seed's run is paired with the same
     * seed at the previous K */
    const int ks[] = {2, 8, 32, 128};
    double prev = k1.mean;
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        seed_mean mk = iwae_over_seeds(m, d, ks[i], SEEDS, runs);
        double s = 0, s2 = 0;
        for (int j = 0; j < SEEDS; j++) {
            double diff = runs[j] - prev_runs[j];
            s += diff;
            s2 += diff * diff;
        }
        double md = s / SEEDS, se_diff = sqrt((s2 - SEEDS * md * md) / (SEEDS - 1) / SEEDS);
        print_message("K=%d: %.4f +- %.4f (change %+.4f +- %.4f)\n", ks[i], mk.mean, mk.se, md,
                      se_diff);
        if (!(md <= 3 * se_diff))
            fail_msg("the bound grew from %.4f to %.4f going to K = %d", prev, mk.mean, ks[i]);
        /* on average never below -log p(x) */
        assert_true(mk.mean >= true_nll - 4 * mk.se);
        prev = mk.mean;
        memcpy(prev_runs, runs, sizeof runs);
    }

    /* eval_run's bound is below its ELBO */
    eval_result e;
    double big = eval_iwae(m, d, 2000, 5, &e);
    print_message("K=2000: %.4f\n", big);
    assert_true(e.iwae_nll <= e.neg_elbo);
    assert_true(big <= neg_elbo);
    assert_true(big >= true_nll);

    /* q = the prior (both latent heads constant 0): the weights p(x|z)/p(x)
     * are bounded, so the bound nears -log p(x) fast */
    set_dim_constant(m, 0, 0.0f);
    set_dim_constant(m, 1, 0.0f);
    const vae_tensor *dec = vae_find_tensor(m, "decoder.0.weight");
    assert_non_null(dec);
    for (size_t i = 0; i < dec->size; i++) m->params[dec->offset + i] *= 3.0f; /* sharper p(x|z) */
    ref_from_model(m, r);
    ref_bounds(r, d, &true_nll, &neg_elbo);
    big = eval_iwae(m, d, 2000, 5, &e);
    print_message("q = prior: -log p(x) %.4f, negative ELBO %.4f, K=2000: %.4f\n", true_nll,
                  neg_elbo, big);
    assert_true(neg_elbo - true_nll > 0.3);
    assert_true(fabs(big - true_nll) < 0.02);
}

/* The reference count: dimensions whose KL averaged over the data > 0.01. */
static int ref_active_units(const ref_net *r, const dataset *d)
{
    double kl_dim[Z] = {0};
    for (int i = 0; i < d->n; i++) {
        double mu[Z], lv[Z];
        ref_encode(r, d->x + i * D, mu, lv);
        for (int u = 0; u < Z; u++) kl_dim[u] += 0.5 * (mu[u] * mu[u] + exp(lv[u]) - 1 - lv[u]);
    }
    int active = 0;
    for (int u = 0; u < Z; u++) active += kl_dim[u] / d->n > 0.01;
    return active;
}

static void test_active_units(void **state)
{
    fixture *f = *state;
    vae_model *m = &f->m;
    dataset *d = &f->d;
    ref_net *r = &f->r;
    char err[256];
    eval_result e;
    assert_int_equal(eval_run(m, d, 0, 1, &e, err, sizeof err), VAE_OK);
    ref_from_model(m, r);
    assert_int_equal(e.latent, Z);
    assert_int_equal(ref_active_units(r, d), 2);
    assert_int_equal(e.active_units, 2);
    /* KL 0 (collapsed), 0.005 (below the threshold), 0.02 (above) */
    const struct {
        float bias;
        int active;
    } cases[] = {{0.0f, 1}, {0.1f, 1}, {0.2f, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        set_dim_constant(m, 1, cases[i].bias);
        ref_from_model(m, r);
        assert_int_equal(ref_active_units(r, d), cases[i].active);
        assert_int_equal(eval_run(m, d, 0, 1, &e, err, sizeof err), VAE_OK);
        assert_int_equal(e.active_units, cases[i].active);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_elbo_matches_the_reference, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_iwae_matches_the_reference, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_iwae_bound_properties, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_active_units, fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
