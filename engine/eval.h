/* eval: how good a trained VAE is, in nats per image.
 *
 *     eval_result r;
 *     eval_run(&model, &test_set, 5000, seed, &r, err, sizeof err);
 *     printf("%f %f\n", r.neg_elbo, r.iwae_nll);
 *
 * The negative ELBO (reconstruction and KL), the importance-weighted bound
 * with K samples (Burda et al.; an estimate of -log p(x) that tightens as K
 * grows), and the number of active latent units: dimensions whose average
 * KL(q(z_u|x) || N(0,1)) over the data exceeds 0.01 nats (the
 * posterior-collapse diagnostic).
 *
 * Per input, how unlike the training data it is (anomaly scores):
 *
 *     eval_score_options o;
 *     eval_score_options_default(&o);              // K = 64, no likelihood regret
 *     eval_score s[n];
 *     eval_score_inputs(&model, x, labels, n, &o, s, err, sizeof err);
 *     ... s[i].ood_score: higher is more anomalous ...
 *     double auroc = eval_auroc(normal, n0, anomalies, n1);
 *
 * For a conditional model, how well it generates the class it is asked
 * for:
 *
 *     eval_class_result c;
 *     eval_class_accuracy(&model, &train_set, 1000, seed, &c, err, sizeof err);
 *     printf("%.3f\n", c.accuracy);   // share of samples classified as their own class
 */
#ifndef EVAL_H
#define EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/dataset.h"
#include "engine/trainer_dist.h"
#include "engine/vae.h"

typedef struct {
    int n;                 /* images evaluated */
    double neg_elbo, recon, kl;
    int iwae_k;            /* 0 when not computed */
    int iwae_n;            /* images the bound was computed on (the first ones) */
    double iwae_nll;       /* -log p(x) estimate */
    int active_units, latent;
} eval_result;

/* What training writes into a checkpoint's metrics: the bound with K = 64 on
 * the first 256 test images (about 0.1 s here; `vaed eval --iwae 5000` is
 * the paper's figure, over the whole test set). */
#define EVAL_TRAIN_IWAE_K 64
#define EVAL_TRAIN_IWAE_IMAGES 256

/* iwae_k = 0 skips the importance-weighted bound. */
vae_status eval_run(const vae_model *m, const dataset *d, int iwae_k, uint64_t seed,
                    eval_result *out, char *err, size_t errlen);
/* The same with the bound on the first iwae_images images only (0: all). */
vae_status eval_run_iwae_images(const vae_model *m, const dataset *d, int iwae_k, int iwae_images,
                                uint64_t seed, eval_result *out, char *err, size_t errlen);
/* Collective with ranks (dist active): the same over the whole set of
 * part->n_all images, each rank evaluating its part of it (trainer_dist.h),
 * held in d, so no rank needs the whole set. Every image's draws are the
 * ones one process makes for it (a rank steps over the others' draws), the
 * bound's per-image values and each latent dimension's KL are summed over
 * the ranks, then in image order: every rank gets the figures, one
 * process's to float rounding of the sums (d the whole set, dist NULL:
 * eval_run_iwae_images, bit for bit). */
vae_status eval_run_part(const vae_model *m, const dataset *d, const trainer_dist_part *part,
                         const trainer_dist *dist, int iwae_k, int iwae_images, uint64_t seed,
                         eval_result *out, char *err, size_t errlen);

/* ---------- anomaly scores ---------- */

/* The scores of one input; nats unless named bits. */
typedef struct {
    double neg_elbo, recon, kl;    /* -ELBO = recon + KL: recon the mean of -log p(x|z_k) over
                                      the K samples, KL in closed form */
    double iwae_nll;               /* -log p(x) estimate, the IWAE bound with K samples */
    double complexity_bits;        /* the input's length under the engine's PNG encoder: its
                                      zlib stream (Sub-filtered 8-bit rows, one Huffman block
                                      of literals, deflate.h), in bits */
    double corrected_bits;         /* iwae_nll in bits - complexity_bits (Serra et al. 2020):
                                      the model's code length against a generic coder's */
    double regret;                 /* likelihood regret (Xiao et al. 2020): neg_elbo minus
                                      the negative ELBO after fitting the encoder to this one
                                      input (the same K draws of eps); NAN when not asked */
    double recon_floor;            /* the least reconstruction term any decoder could give
                                      this input: sum_j H(x_j) of its grey levels under a
                                      Bernoulli likelihood (0 for continuous Bernoulli and a
                                      learned variance) */
    double ood_score;              /* the one to threshold, higher = more anomalous:
                                      iwae_nll - recon_floor, the model's excess over what
                                      the input's own entropy costs (measured: README) */
} eval_score;

#define EVAL_SCORE_MAX_K 5000
#define EVAL_SCORE_MAX_REGRET_STEPS 1000

typedef struct {
    int iwae_k;                    /* 1..EVAL_SCORE_MAX_K; default 64 */
    int regret_steps;              /* 0: no likelihood regret; else Adam steps on the encoder */
    double regret_lr;              /* default 1e-3 */
    double deadline;               /* util_mono_s() after which scoring stops (checked
                                      before each input and each regret step) with
                                      VAE_ERR_TOO_LARGE; 0: none */
    uint64_t seed;                 /* the draws of z (and of dynamic binarisation) */
} eval_score_options;

void eval_score_options_default(eval_score_options *o);
/* Scores of n inputs x (n, D) in [0, 1] (labels (n) for a conditional model,
 * else NULL) into out (n). Inputs are binarised as the model was trained
 * (as eval_run does). The likelihood regret fits a copy of the encoder to
 * each input alone: regret_steps Adam steps (one draw of z each) on its
 * negative ELBO, the decoder fixed. Deterministic given the seed. */
vae_status eval_score_inputs(const vae_model *m, const float *x, const int *labels, int n,
                             const eval_score_options *o, eval_score *out, char *err,
                             size_t errlen);
/* At most what eval_score_inputs allocates for a model of config c with
 * options o, whatever the number of inputs (they are scored one by one):
 * the workspace of one chunk of draws, its buffers and, with the regret, the
 * copy of the model and its training state. */
size_t eval_score_bytes(const vae_config *c, const eval_score_options *o);
/* The area under the ROC curve of a score for anomalies (n1 values) against
 * normal inputs (n0): the chance that an anomaly scores above a normal input,
 * ties counted half (the Mann-Whitney statistic). NAN when either is empty
 * or holds a NaN. */
double eval_auroc(const double *normal, int n0, const double *anomalies, int n1);

/* A simple classifier's verdict on a conditional model's samples. */
typedef struct {
    int n_classes, per_class;
    double accuracy;                          /* samples classified as the class asked for */
    double class_accuracy[VAE_MAX_CLASSES];   /* the same per class */
    double data_accuracy;                     /* the classifier on d's own images */
    int data_n;                               /* of them (the first EVAL_CLASS_DATA_MAX) */
} eval_class_result;

#define EVAL_CLASS_DATA_MAX 10000

/* per_class samples of each class of the conditional model m (z ~ N(0, T²I)
 * with T = temperature, from a generator seeded with seed, decoded to the
 * likelihood's mean, as vaed sample --temperature draws them), each given to a nearest-class-mean classifier on
 * pixels (the mean image of each class over d, squared distance); the share
 * classified as the class they were drawn for. data_accuracy is the same
 * classifier on the first images of d, what it manages on real images.
 * A temperature below 1 keeps z nearer the prior's centre, where a model
 * whose z carries part of the class leaves more of it to the label.
 * VAE_ERR_ARG for an unconditional model, d without labels or of another
 * shape, a class with no image in d, or a temperature outside [0, 10]. */
vae_status eval_class_accuracy(const vae_model *m, const dataset *d, int per_class, uint64_t seed,
                               double temperature, eval_class_result *out, char *err,
                               size_t errlen);

#endif
