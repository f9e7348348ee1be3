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
 */
#ifndef EVAL_H
#define EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/dataset.h"
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

#endif
