/* jobs_record: the JSON text a training job's registry row and events hold,
 * written in this one place. The job pool calls it with native figures; the
 * HTTP layer hands the text on as it is (GET /jobs/ID embeds it, the event
 * stream sends it), so nothing parses it back.
 *
 *     char *p = jobs_record_progress_json(&progress);  // the "progress" column and event
 *     char *m = jobs_record_epochs_json(ms, n);         // the "metrics" column
 *     char *e = jobs_record_epoch_json(&ms[n - 1]);     // an "epoch" event
 *     ... registry_set_job_progress(reg, id, p, m, JOBS_EVENT_EPOCH, e, ...);
 *     free(p); free(m); free(e);
 *
 * Each returns malloc'd text the caller frees, or NULL when out of memory.
 * Figures that are not finite are written null.
 */
#ifndef JOBS_RECORD_H
#define JOBS_RECORD_H

#include "engine/trainer.h"

/* {"epoch", "epochs", "step", "steps", "images_per_s", "eta_s", "loss"} */
char *jobs_record_progress_json(const trainer_progress *p);
/* One epoch's object with its timings ("images_per_s", "seconds"): see
 * checkpoint_metrics_epoch_json. */
char *jobs_record_epoch_json(const trainer_epoch_metrics *e);
/* [one epoch object per entry of ms], n >= 0. */
char *jobs_record_epochs_json(const trainer_epoch_metrics *ms, int n);

#endif
