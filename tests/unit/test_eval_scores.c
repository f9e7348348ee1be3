/* Unit tests for the anomaly scores of engine/eval.c (eval_score_inputs,
 * eval_auroc):
 * - the AUROC against hand-counted pairs (separated, reversed, ties, a mix);
 * - the per-input IWAE bound is eval_run's bound, image by image, with the
 *   same seed; recon + kl is the negative ELBO (K = 64 by default);
 * - the complexity is the length of the zlib stream of the PNG the engine
 *   writes for the image, which inflates back to the image's rows; a black
 *   image costs less than a noisy one; the corrected score is the bound in
 *   bits minus it; the floor is the Bernoulli entropy of the grey levels
 *   (0 for a black-and-white image), never above the reconstruction term,
 *   and ood_score is the bound minus it;
 * - the likelihood regret: with a trained decoder and an encoder pushed off
 *   (fc_mu's bias moved by 2), fitting the encoder to each image recovers
 *   nats of the ELBO (regret > 1), one that cannot move regrets nothing
 *   (the two ELBOs take the same draws), the model is left as it was, a second
 *   run gives the same numbers, a deadline that has passed stops it with
 *   VAE_ERR_TOO_LARGE, and out-of-range options are refused; the bytes a
 *   request is budgeted grow with the regret's copy and one chunk of K;
 * - a conditional model scores with the labels, and only with them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "engine/eval.h"
#include "engine/image.h"
#include "engine/util.h"

#define S 8   /* image side */
#define N 12  /* images */

static void small_model(vae_model *m, int n_classes)
{
    char err[256];
    vae_config c;
    vae_config_default(&c);
    c.height = c.width = S;
    c.hidden[0] = 16;
    c.latent = 3;
    c.n_classes = n_classes;
    if (vae_init(m, &c, 4, err, sizeof err)) fail_msg("%s", err);
}

/* N images: blobs of grey on black, the last two noise. */
static void images(dataset *d)
{
    *d = (dataset){.n = N, .channels = 1, .height = S, .width = S};
    d->x = calloc((size_t)N * S * S, sizeof(float));
    d->labels = calloc(N, 1);
    assert_true(d->x && d->labels);
    rng_state r;
    rng_seed(&r, 2);
    for (int i = 0; i < N; i++) {
        d->labels[i] = (uint8_t)(i % 3);
        float *x = d->x + (size_t)i * S * S;
        for (int p = 0; p < S * S; p++) {
            int y = p / S, c = p % S, on = (y - i % S) * (y - i % S) + (c - 3) * (c - 3) < 4;
            x[p] = i >= N - 2 ? rng_uniform(&r) : (on ? 0.8f : 0.0f);
        }
    }
}

static void test_auroc(void **state)
{
    (void)state;
    double lo[3] = {1, 2, 3}, hi[2] = {4, 5}, mid[2] = {2, 2.5}, same[2] = {7, 7};
    assert_true(eval_auroc(lo, 3, hi, 2) == 1.0);
    assert_true(eval_auroc(hi, 2, lo, 3) == 0.0);
    assert_true(eval_auroc(same, 2, same, 2) == 0.5);
    /* anomaly 2 beats 1, ties 2 (half), loses to 3: 1.5; anomaly 2.5 beats 1, 2: 2 */
    assert_true(fabs(eval_auroc(lo, 3, mid, 2) - 3.5 / 6.0) < 1e-12);
    assert_true(isnan(eval_auroc(lo, 0, hi, 2)));
    double with_nan[2] = {1, NAN};
    assert_true(isnan(eval_auroc(lo, 3, with_nan, 2))); /* and it returns */
}

static void test_scores_agree_with_eval(void **state)
{
    (void)state;
    char err[256];
    vae_model m;
    small_model(&m, 0);
    dataset d;
    images(&d);
    eval_score_options o;
    eval_score_options_default(&o);
    assert_int_equal(o.iwae_k, 64);
    o.seed = 5 ^ 0x1a3eULL; /* eval_run's stream for seed 5 */
    eval_score s[N];
    assert_int_equal(eval_score_inputs(&m, d.x, NULL, N, &o, s, err, sizeof err), VAE_OK);
    eval_result er;
    assert_int_equal(eval_run(&m, &d, 64, 5, &er, err, sizeof err), VAE_OK);
    double mean = 0;
    for (int i = 0; i < N; i++) {
        mean += s[i].iwae_nll / N;
        assert_true(fabs(s[i].neg_elbo - (s[i].recon + s[i].kl)) < 1e-9);
        assert_true(s[i].kl >= 0);
        assert_true(isnan(s[i].regret));
        assert_true(fabs(s[i].corrected_bits - (s[i].iwae_nll / log(2.0) - s[i].complexity_bits)) <
                    1e-9);
        double h = 0;
        for (int p = 0; p < S * S; p++) {
            double v = d.x[(size_t)i * S * S + p];
            if (v > 0 && v < 1) h -= v * log(v) + (1 - v) * log(1 - v);
        }
        assert_true(fabs(s[i].recon_floor - h) < 1e-9 * fmax(1, h));
        assert_true(s[i].recon_floor <= s[i].recon);
        assert_true(s[i].ood_score == s[i].iwae_nll - s[i].recon_floor);
        /* the complexity is the PNG's zlib stream, which holds the image's rows */
        uint8_t *png;
        size_t len;
        assert_int_equal(image_encode_grid_png(d.x + (size_t)i * S * S, 1, 1, S, S, 1, &png, &len,
                                               err, sizeof err),
                         VAE_OK);
        size_t zlen = util_be32(png + 33);
        assert_true(s[i].complexity_bits == 8.0 * (double)zlen);
        assert_memory_equal(png + 37, "IDAT", 4);
        uint8_t rows[S * (S + 1)];
        uLongf out = sizeof rows;
        assert_int_equal(uncompress(rows, &out, png + 41, zlen), Z_OK);
        assert_int_equal(out, S * (S + 1));
        free(png);
    }
    if (fabs(mean - er.iwae_nll) > 1e-9 * fabs(er.iwae_nll))
        fail_msg("mean of the per-input bounds %.12g, eval_run's %.12g", mean, er.iwae_nll);
    /* noise costs more bits than a blob on black, and has grey levels to pay for */
    assert_true(s[N - 1].complexity_bits > s[0].complexity_bits);
    assert_true(s[N - 1].recon_floor > 10 * s[0].recon_floor);
    float bw[S * S] = {0};
    bw[9] = 1.0f;
    eval_score one;
    assert_int_equal(eval_score_inputs(&m, bw, NULL, 1, &o, &one, err, sizeof err), VAE_OK);
    assert_true(one.recon_floor == 0.0);
    dataset_free(&d);
    vae_free(&m);
}

static void test_likelihood_regret(void **state)
{
    (void)state;
    char err[256];
    vae_model m;
    small_model(&m, 0);
    dataset d;
    images(&d);
    vae_train_state *ts = vae_train_state_new(&m, N, err, sizeof err);
    assert_non_null(ts);
    rng_state r;
    rng_seed(&r, 8);
    vae_stats st;
    for (int step = 0; step < 400; step++)
        assert_int_equal(vae_train_step(&m, ts, d.x, N, &r, &st), VAE_OK);
    vae_train_state_free(ts);
    const vae_tensor *bias = vae_find_tensor(&m, "fc_mu.bias");
    for (size_t k = 0; k < bias->size; k++) m.params[bias->offset + k] += 2.0f;
    float *before = malloc(sizeof(float) * m.n_params);
    memcpy(before, m.params, sizeof(float) * m.n_params);
    eval_score_options o;
    eval_score_options_default(&o);
    o.regret_steps = 50;
    o.regret_lr = 1e-2;
    eval_score a[N], b[N];
    assert_int_equal(eval_score_inputs(&m, d.x, NULL, N, &o, a, err, sizeof err), VAE_OK);
    assert_memory_equal(before, m.params, sizeof(float) * m.n_params);
    assert_int_equal(eval_score_inputs(&m, d.x, NULL, N, &o, b, err, sizeof err), VAE_OK);
    assert_memory_equal(a, b, sizeof a);
    /* the encoder fitted to one image finds the decoder's code for it again */
    double mean = 0;
    for (int i = 0; i < N; i++) mean += a[i].regret / N;
    print_message("mean likelihood regret after 50 steps: %.3f nats\n", mean);
    assert_true(mean > 1.0);
    /* a fit that cannot move the encoder regrets nothing: both ELBOs take
     * the same draws, so no noise of the draws is left in the difference */
    o.regret_lr = 1e-12;
    assert_int_equal(eval_score_inputs(&m, d.x, NULL, N, &o, b, err, sizeof err), VAE_OK);
    for (int i = 0; i < N; i++)
        if (fabs(b[i].regret) > 1e-3) fail_msg("image %d: regret %g of a still fit", i, b[i].regret);
    o.regret_lr = 1e-2;
    /* bounded: a deadline already passed, too many steps, K out of range */
    o.deadline = util_mono_s() - 1.0;
    assert_int_equal(eval_score_inputs(&m, d.x, NULL, N, &o, a, err, sizeof err),
                     VAE_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "out of time"));
    o.deadline = 0;
    /* what a request is budgeted: the regret adds the copy of the model and
     * its Adam state; K past one chunk of draws adds nothing */
    size_t with = eval_score_bytes(&m.cfg, &o);
    o.regret_steps = 0;
    size_t without = eval_score_bytes(&m.cfg, &o);
    assert_true(with >= without + 4 * sizeof(float) * m.n_params);
    o.iwae_k = 500;
    size_t k500 = eval_score_bytes(&m.cfg, &o);
    o.iwae_k = 5000;
    assert_true(k500 > without && eval_score_bytes(&m.cfg, &o) == k500);
    o.iwae_k = 64;
    o.regret_steps = EVAL_SCORE_MAX_REGRET_STEPS + 1;
    assert_int_equal(eval_score_inputs(&m, d.x, NULL, N, &o, a, err, sizeof err), VAE_ERR_ARG);
    o.regret_steps = 0;
    o.iwae_k = EVAL_SCORE_MAX_K + 1;
    assert_int_equal(eval_score_inputs(&m, d.x, NULL, N, &o, a, err, sizeof err), VAE_ERR_ARG);
    free(before);
    dataset_free(&d);
    vae_free(&m);
}

static void test_conditional_scores(void **state)
{
    (void)state;
    char err[256];
    vae_model m;
    small_model(&m, 3);
    dataset d;
    images(&d);
    int labels[N], other[N];
    for (int i = 0; i < N; i++) {
        labels[i] = d.labels[i];
        other[i] = (labels[i] + 1) % 3;
    }
    eval_score_options o;
    eval_score_options_default(&o);
    o.regret_steps = 3;
    eval_score s[N], t[N];
    assert_int_equal(eval_score_inputs(&m, d.x, NULL, N, &o, s, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(eval_score_inputs(&m, d.x, labels, N, &o, s, err, sizeof err), VAE_OK);
    assert_int_equal(eval_score_inputs(&m, d.x, other, N, &o, t, err, sizeof err), VAE_OK);
    assert_true(s[0].iwae_nll != t[0].iwae_nll); /* the label is used */
    labels[4] = 3;
    assert_int_equal(eval_score_inputs(&m, d.x, labels, N, &o, s, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "classes 0 to 2"));
    dataset_free(&d);
    vae_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auroc),
        cmocka_unit_test(test_scores_agree_with_eval),
        cmocka_unit_test(test_likelihood_regret),
        cmocka_unit_test(test_conditional_scores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
