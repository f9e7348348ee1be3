/* fuzz_safetensors: st_parse, the reader of every uploaded checkpoint's
 * header, and ckpt_load_mem, which checks the tensors against the config.
 * What st_parse accepts must hold what the header promises (offsets in the
 * data area, names found again by st_find); what ckpt_load_mem accepts must
 * save and load again to the same bytes, since a checkpoint's SHA-256 names
 * it in the registry. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/safetensors.h"
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parsed(const st_file *f)
{
    FUZZ_CHECK(f->n_tensors >= 0 && f->n_meta >= 0, "negative counts");
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor_info *t = &f->tensors[i];
        FUZZ_CHECK(t->begin <= t->end && t->end <= f->data_len, "tensor %s at [%llu, %llu) of %llu",
                   t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                   (unsigned long long)f->data_len);
        FUZZ_CHECK(st_find(f, t->name) == t, "st_find(%s) finds another tensor", t->name);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS, "ndim %d", t->ndim);
    }
    for (int i = 0; i < f->n_meta; i++)
        FUZZ_CHECK(st_meta_get(f, f->meta_keys[i]) != NULL, "metadata %s not found again",
                   f->meta_keys[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    st_file f;
    if (st_parse(data, size, &f, err, sizeof err) == VAE_OK) {
        check_parsed(&f);
        st_free(&f);
    }

    vae_model m;
    char *metrics = NULL; /* owned: freed below */
    if (ckpt_load_mem(&m, data, size, &metrics, err, sizeof err) != VAE_OK) {
        FUZZ_CHECK(metrics == NULL, "a failed load handed back metrics");
        return 0;
    }
    for (size_t i = 0; i < m.n_params; i++)
        FUZZ_CHECK(isfinite(m.params[i]), "parameter %zu is not finite", i);
    uint8_t *saved = NULL, *again = NULL; /* owned: freed below */
    size_t saved_len = 0, again_len = 0;
    FUZZ_CHECK(ckpt_save_mem(&m, metrics, &saved, &saved_len, err, sizeof err) == VAE_OK,
               "saving a loaded model: %s", err);
    vae_model m2;
    char *metrics2 = NULL; /* owned: freed below */
    FUZZ_CHECK(ckpt_load_mem(&m2, saved, saved_len, &metrics2, err, sizeof err) == VAE_OK,
               "loading what we saved: %s", err);
    FUZZ_CHECK(m2.n_params == m.n_params &&
                   !memcmp(m2.params, m.params, m.n_params * sizeof *m.params),
               "the parameters changed through a save and a load");
    FUZZ_CHECK(ckpt_save_mem(&m2, metrics2, &again, &again_len, err, sizeof err) == VAE_OK,
               "saving again: %s", err);
    FUZZ_CHECK(again_len == saved_len && !memcmp(again, saved, saved_len),
               "the same model saved to other bytes");
    free(again);
    free(saved);
    free(metrics2);
    free(metrics);
    vae_free(&m2);
    vae_free(&m);
    return 0;
}
