#include "checkpoint_metrics.h"

#include <cjson/cJSON.h>
#include <math.h>

static int add_num(cJSON *o, const char *k, double v)
{
    cJSON *n = isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
    return n && cJSON_AddItemToObject(o, k, n);
}

char *checkpoint_metrics_json(const trainer_epoch_metrics *ms, int n, const eval_result *er)
{
    const trainer_epoch_metrics *l = &ms[n - 1];
    int iwae = er && er->iwae_k > 0;
    cJSON *o = cJSON_CreateObject(); /* owned; owns per once added */
    cJSON *per = cJSON_CreateArray();
    int ok = o && per && add_num(o, "epochs", n) && add_num(o, "train_loss", l->train_loss) &&
             add_num(o, "test_loss", l->test_loss) && add_num(o, "test_recon", l->test_recon) &&
             add_num(o, "test_kl", l->test_kl) &&
             add_num(o, "active_units", er ? er->active_units : NAN) &&
             add_num(o, "test_iwae_nll", iwae ? er->iwae_nll : NAN) &&
             add_num(o, "iwae_k", iwae ? er->iwae_k : NAN) &&
             add_num(o, "iwae_images", iwae ? er->iwae_n : NAN);
    for (int i = 0; ok && i < n; i++) {
        cJSON *e = cJSON_CreateObject();
        if (!e || !cJSON_AddItemToArray(per, e)) { /* per owns e once added */
            cJSON_Delete(e);
            ok = 0;
            break;
        }
        ok = add_num(e, "epoch", ms[i].epoch) && add_num(e, "train_loss", ms[i].train_loss) &&
             add_num(e, "train_recon", ms[i].train_recon) &&
             add_num(e, "train_kl", ms[i].train_kl) && add_num(e, "test_loss", ms[i].test_loss);
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
