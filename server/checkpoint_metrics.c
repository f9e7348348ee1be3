#include "server/checkpoint_metrics.h"

#include <cjson/cJSON.h>
#include <math.h>

int checkpoint_metrics_add_num(struct cJSON *o, const char *k, double v)
{
    cJSON *n = isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); /* o's once added */
    if (n && cJSON_AddItemToObject(o, k, n))
        return 1;
    cJSON_Delete(n); /* cJSON keeps no item it could not add (its key's copy failed) */
    return 0;
}

cJSON *checkpoint_metrics_epoch_json(const trainer_epoch_metrics *e, int with_timing)
{
    cJSON *o = cJSON_CreateObject(); /* the caller's */
    if (!o)
        return NULL;
    int ok = checkpoint_metrics_add_num(o, "epoch", e->epoch) &&
             checkpoint_metrics_add_num(o, "train_loss", e->train_loss) &&
             checkpoint_metrics_add_num(o, "train_recon", e->train_recon) &&
             checkpoint_metrics_add_num(o, "train_kl", e->train_kl) &&
             checkpoint_metrics_add_num(o, "test_loss", e->test_loss) &&
             checkpoint_metrics_add_num(o, "test_recon", e->test_recon) &&
             checkpoint_metrics_add_num(o, "test_kl", e->test_kl);
    if (ok && with_timing)
        ok = checkpoint_metrics_add_num(o, "images_per_s", e->images_per_s) &&
             checkpoint_metrics_add_num(o, "seconds", e->seconds);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *checkpoint_metrics_json(const trainer_epoch_metrics *ms, int n, const eval_result *er)
{
    const trainer_epoch_metrics *l = &ms[n - 1];
    int iwae = er && er->iwae_k > 0;
    cJSON *o = cJSON_CreateObject(); /* owned; owns per once added */
    cJSON *per = cJSON_CreateArray();
    int ok = o && per && checkpoint_metrics_add_num(o, "epochs", n) &&
             checkpoint_metrics_add_num(o, "train_loss", l->train_loss) &&
             checkpoint_metrics_add_num(o, "test_loss", l->test_loss) &&
             checkpoint_metrics_add_num(o, "test_recon", l->test_recon) &&
             checkpoint_metrics_add_num(o, "test_kl", l->test_kl) &&
             checkpoint_metrics_add_num(o, "active_units", er ? er->active_units : NAN) &&
             checkpoint_metrics_add_num(o, "test_iwae_nll", iwae ? er->iwae_nll : NAN) &&
             checkpoint_metrics_add_num(o, "iwae_k", iwae ? er->iwae_k : NAN) &&
             checkpoint_metrics_add_num(o, "iwae_images", iwae ? er->iwae_n : NAN);
    for (int i = 0; ok && i < n; i++) {
        cJSON *e = checkpoint_metrics_epoch_json(&ms[i], 0);
        if (!e || !cJSON_AddItemToArray(per, e)) { /* per owns e once added */
            cJSON_Delete(e);
            ok = 0;
        }
    }
    if (ok && cJSON_AddItemToObject(o, "per_epoch", per)) {
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return s;
    }
    cJSON_Delete(per);
    cJSON_Delete(o);
    return NULL;
}
