/* jobs_record: a job's progress and metrics as JSON. See jobs_record.h. */
#include "server/jobs_record.h"

#include <cjson/cJSON.h>

#include "server/checkpoint_metrics.h"

/* Prints o and frees it; NULL when o is NULL or printing fails. */
static char *print_and_free(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL; /* the caller's */
    cJSON_Delete(o);
    return s;
}

char *jobs_record_progress_json(const trainer_progress *p)
{
    cJSON *o = cJSON_CreateObject(); /* owned: freed by print_and_free */
    int ok = o && checkpoint_metrics_add_num(o, "epoch", p->epoch) &&
             checkpoint_metrics_add_num(o, "epochs", p->epochs) &&
             checkpoint_metrics_add_num(o, "step", (double)p->step) &&
             checkpoint_metrics_add_num(o, "steps", (double)p->steps) &&
             checkpoint_metrics_add_num(o, "images_per_s", p->images_per_s) &&
             checkpoint_metrics_add_num(o, "eta_s", p->eta_s) &&
             checkpoint_metrics_add_num(o, "loss", p->loss);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return print_and_free(o);
}

char *jobs_record_epoch_json(const trainer_epoch_metrics *e)
{
    return print_and_free(checkpoint_metrics_epoch_json(e, 1));
}

char *jobs_record_epochs_json(const trainer_epoch_metrics *ms, int n)
{
    cJSON *a = cJSON_CreateArray(); /* owned: freed by print_and_free */
    for (int i = 0; a && i < n; i++) {
        cJSON *e = checkpoint_metrics_epoch_json(&ms[i], 1);
        if (!e || !cJSON_AddItemToArray(a, e)) { /* a owns e once added */
            cJSON_Delete(e);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return print_and_free(a);
}
