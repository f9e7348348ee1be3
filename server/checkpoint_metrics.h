/* checkpoint_metrics: the metrics a training run writes into its checkpoint
 * (safetensors metadata and the registry), the same for `vaed train` and for
 * training jobs.
 *
 *     eval_result er;   // eval_run_iwae_images(..., EVAL_TRAIN_IWAE_K, EVAL_TRAIN_IWAE_IMAGES, ...)
 *     char *json = checkpoint_metrics_json(ms, epochs, &er);   // the caller's: free()
 *
 * {"epochs", "train_loss", "test_loss", "test_recon", "test_kl" (the last
 * epoch's, nats per image), "active_units", "test_iwae_nll", "iwae_k",
 * "iwae_images" (from the evaluation; null when it was not made), and
 * "per_epoch": [one object per epoch, see checkpoint_metrics_epoch_json]}.
 * No timings: the same seed must give the same bytes.
 * Figures that are not finite (no test split) are null.
 */
#ifndef CHECKPOINT_METRICS_H
#define CHECKPOINT_METRICS_H

#include "engine/eval.h"
#include "engine/trainer.h"

/* n >= 1 epochs in ms; er NULL when the evaluation failed. NULL when out of
 * memory. */
char *checkpoint_metrics_json(const trainer_epoch_metrics *ms, int n, const eval_result *er);
/* One epoch's object, as in "per_epoch" ("epoch", "train_loss",
 * "train_recon", "train_kl", "test_loss", "test_recon", "test_kl"); with
 * with_timing, also "images_per_s" and "seconds" (a job's records, never a
 * checkpoint). The caller owns it (cJSON_Delete); NULL when out of memory. */
struct cJSON *checkpoint_metrics_epoch_json(const trainer_epoch_metrics *e, int with_timing);
/* Adds v under key k of o, null when it is not finite: 1, or 0 when memory
 * ran out (nothing left allocated). For jobs_record's objects too. */
int checkpoint_metrics_add_num(struct cJSON *o, const char *k, double v);

#endif
