/* checkpoint: vae_model <-> safetensors, and the config as JSON. See
 * checkpoint.h. */
#include "engine/checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/file_io.h"
#include "engine/json_strict.h"
#include "engine/safetensors.h"
#include "engine/util.h"

#define CONFIG_KEY "vaed_config"
#define METRICS_KEY "vaed_metrics"

/* ---------- config <-> JSON ---------- */

static int append(char *buf, size_t buflen, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int append(char *buf, size_t buflen, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *pos, *pos < buflen ? buflen - *pos : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    *pos += (size_t)n;
    return *pos < buflen ? 0 : -1;
}

static void append_ints(char *buf, size_t buflen, size_t *pos, const char *key, const int *v, int n)
{
    append(buf, buflen, pos, "\"%s\":[", key);
    for (int i = 0; i < n; i++) append(buf, buflen, pos, "%s%d", i ? "," : "", v[i]);
    append(buf, buflen, pos, "],");
}

int ckpt_config_to_json(const vae_config *c, char *buf, size_t buflen)
{
    size_t pos = 0;
    if (buflen) buf[0] = '\0';
    append(buf, buflen, &pos, "{\"arch\":\"%s\",\"channels\":%d,\"height\":%d,\"width\":%d,",
           vae_arch_name(c->arch), c->channels, c->height, c->width);
    append_ints(buf, buflen, &pos, "hidden", c->hidden, c->n_hidden);
    append_ints(buf, buflen, &pos, "conv_channels", c->conv_channels, c->n_conv);
    /* only when conditional: an unconditional model's bytes stay as they were */
    if (c->n_classes) append(buf, buflen, &pos, "\"n_classes\":%d,", c->n_classes);
    append(buf, buflen, &pos,
           "\"latent\":%d,\"activation\":\"%s\",\"likelihood\":\"%s\",\"sigma\":%.9g,"
           "\"binarize\":\"%s\",\"beta\":%.9g,\"kl_warmup\":%lld,\"free_bits\":%.9g,"
           "\"mc_samples\":%d,\"lr\":%.9g,\"beta1\":%.9g,\"beta2\":%.9g,\"eps\":%.9g,"
           "\"weight_decay\":%.9g,\"clip_grad\":%.9g,\"batch\":%d,\"epochs\":%d,\"seed\":%llu}",
           c->latent, vae_activation_name(c->activation), vae_likelihood_name(c->likelihood),
           c->sigma, vae_binarize_name(c->binarize), c->beta, (long long)c->kl_warmup,
           c->free_bits, c->mc_samples, c->lr, c->beta1, c->beta2, c->eps, c->weight_decay,
           c->clip_grad, c->batch, c->epochs, (unsigned long long)c->seed);
    return pos < buflen ? (int)pos : -1;
}

static int get_int(const json_strict_value *o, const char *key, int64_t lo, int64_t hi,
                   int64_t *out, char *err, size_t errlen)
{
    const json_strict_value *v = json_strict_get(o, key);
    if (!v) return 0; /* absent: keep the default */
    if (v->type != JSON_STRICT_NUMBER || !v->is_integer || v->integer < lo || v->integer > hi) {
        util_set_err(err, errlen, "config: \"%s\" must be an integer in %lld..%lld", key,
                 (long long)lo, (long long)hi);
        return -1;
    }
    *out = v->integer;
    return 0;
}

static int get_float(const json_strict_value *o, const char *key, float *out, char *err,
                     size_t errlen)
{
    const json_strict_value *v = json_strict_get(o, key);
    if (!v) return 0;
    if (v->type != JSON_STRICT_NUMBER || !isfinite(v->number)) {
        util_set_err(err, errlen, "config: \"%s\" must be a number", key);
        return -1;
    }
    *out = (float)v->number;
    return 0;
}

static int get_ints(const json_strict_value *o, const char *key, int *out, int *n, char *err,
                    size_t errlen)
{
    const json_strict_value *v = json_strict_get(o, key);
    if (!v) return 0;
    if (v->type != JSON_STRICT_ARRAY || v->n > VAE_MAX_HIDDEN) {
        util_set_err(err, errlen, "config: \"%s\" must be a list of at most %d integers", key,
                 VAE_MAX_HIDDEN);
        return -1;
    }
    for (size_t i = 0; i < v->n; i++) {
        const json_strict_value *it = &v->items[i];
        if (it->type != JSON_STRICT_NUMBER || !it->is_integer || it->integer < 1 ||
            it->integer > 65536) {
            util_set_err(err, errlen, "config: \"%s\" must hold positive integers", key);
            return -1;
        }
        out[i] = (int)it->integer;
    }
    *n = (int)v->n;
    return 0;
}

static int get_enum(const json_strict_value *o, const char *key, int (*parse)(const char *, void *),
                    void *out, char *err, size_t errlen)
{
    const json_strict_value *v = json_strict_get(o, key);
    if (!v) return 0;
    if (v->type != JSON_STRICT_STRING || parse(v->string, out)) {
        util_set_err(err, errlen, "config: unknown \"%s\" value", key);
        return -1;
    }
    return 0;
}

/* ckpt_config_from_json with at most max_values JSON values: the bound of
 * the header it came in (VAE_ERR_TOO_MANY past it, as there). */
static vae_status config_from_json_budget(vae_config *cfg, const char *json, size_t len,
                                          size_t max_values, char *err, size_t errlen)
{
    vae_config_default(cfg);
    json_strict_value root;
    char jerr[160];
    vae_status jrc = json_strict_parse_budget(json, len, 8, max_values, &root, jerr, sizeof jerr);
    if (jrc) {
        util_set_err(err, errlen, "config is not valid JSON: %s", jerr);
        /* memory is not the file's fault; a budget is the caller's bound */
        return jrc == VAE_ERR_NOMEM || jrc == VAE_ERR_TOO_MANY ? jrc : VAE_ERR_FORMAT;
    }
    vae_status rc = VAE_ERR_FORMAT;
    int64_t v;
    if (root.type != JSON_STRICT_OBJECT) {
        util_set_err(err, errlen, "config must be a JSON object");
        goto end;
    }
#define INT_FIELD(key, lo, hi, dst)                                   \
    v = (dst);                                                        \
    if (get_int(&root, key, lo, hi, &v, err, errlen)) goto end;       \
    (dst) = v;
    INT_FIELD("channels", 1, 4096, cfg->channels);
    INT_FIELD("height", 1, 65536, cfg->height);
    INT_FIELD("width", 1, 65536, cfg->width);
    INT_FIELD("latent", 1, 65536, cfg->latent);
    INT_FIELD("n_classes", 0, 65536, cfg->n_classes);
    INT_FIELD("kl_warmup", 0, INT64_MAX, cfg->kl_warmup);
    INT_FIELD("mc_samples", 1, 1024, cfg->mc_samples);
    INT_FIELD("batch", 1, 1 << 20, cfg->batch);
    INT_FIELD("epochs", 0, 1 << 20, cfg->epochs);
    v = (int64_t)cfg->seed;
    if (get_int(&root, "seed", 0, INT64_MAX, &v, err, errlen)) goto end;
    cfg->seed = (uint64_t)v;
#undef INT_FIELD
    if (get_ints(&root, "hidden", cfg->hidden, &cfg->n_hidden, err, errlen)) goto end;
    if (get_ints(&root, "conv_channels", cfg->conv_channels, &cfg->n_conv, err, errlen)) goto end;
    if (get_float(&root, "sigma", &cfg->sigma, err, errlen) ||
        get_float(&root, "beta", &cfg->beta, err, errlen) ||
        get_float(&root, "free_bits", &cfg->free_bits, err, errlen) ||
        get_float(&root, "lr", &cfg->lr, err, errlen) ||
        get_float(&root, "beta1", &cfg->beta1, err, errlen) ||
        get_float(&root, "beta2", &cfg->beta2, err, errlen) ||
        get_float(&root, "eps", &cfg->eps, err, errlen) ||
        get_float(&root, "weight_decay", &cfg->weight_decay, err, errlen) ||
        get_float(&root, "clip_grad", &cfg->clip_grad, err, errlen))
        goto end;
    if (get_enum(&root, "arch", (int (*)(const char *, void *))vae_arch_parse, &cfg->arch, err, errlen) ||
        get_enum(&root, "activation", (int (*)(const char *, void *))vae_activation_parse,
                 &cfg->activation, err, errlen) ||
        get_enum(&root, "likelihood", (int (*)(const char *, void *))vae_likelihood_parse,
                 &cfg->likelihood, err, errlen) ||
        get_enum(&root, "binarize", (int (*)(const char *, void *))vae_binarize_parse,
                 &cfg->binarize, err, errlen))
        goto end;
    char verr[200];
    if (vae_config_validate(cfg, verr, sizeof verr)) {
        util_set_err(err, errlen, "config: %s", verr);
        goto end;
    }
    rc = VAE_OK;
end:
    json_strict_free(&root);
    return rc;
}

/* ---------- save ---------- */

vae_status ckpt_save_mem(const vae_model *m, const char *metrics_json, uint8_t **out,
                         size_t *out_len, char *err, size_t errlen)
{
    st_tensor_out t[VAE_MAX_TENSORS] = {{0}};
    for (int i = 0; i < m->n_tensors; i++) {
        const vae_tensor *vt = &m->tensors[i];
        t[i].name = vt->name;
        t[i].ndim = vt->ndim;
        for (int d = 0; d < vt->ndim; d++) t[i].shape[d] = vt->shape[d];
        t[i].data = m->params + vt->offset;
    }
    char config[2048];
    if (ckpt_config_to_json(&m->cfg, config, sizeof config) < 0) {
        util_set_err(err, errlen, "config does not fit in %zu bytes", sizeof config);
        return VAE_ERR_ARG;
    }
    const char *keys[3] = {"format", CONFIG_KEY, METRICS_KEY};
    const char *vals[3] = {"pt", config, metrics_json};
    return st_write_mem(t, m->n_tensors, keys, vals, metrics_json ? 3 : 2, out, out_len, err,
                        errlen);
}

vae_status ckpt_save_file(const vae_model *m, const char *metrics_json, const char *path,
                          char *err, size_t errlen)
{
    uint8_t *buf = NULL; /* owned */
    size_t len = 0;
    vae_status rc = ckpt_save_mem(m, metrics_json, &buf, &len, err, errlen);
    if (rc) return rc;
    rc = file_io_write_atomic(path, buf, len, err, errlen);
    free(buf);
    return rc;
}

/* ---------- load ---------- */

static const char *file_name_for(int pytorch_examples, const char *name);

/* pytorch/examples' VAE: fc1 (D->H), fc21/fc22 (H->Z), fc3 (Z->H), fc4 (H->D). */
static const char *const pt_examples_names[][2] = {
    {"fc1.weight", "encoder.0.weight"}, {"fc1.bias", "encoder.0.bias"},
    {"fc21.weight", "fc_mu.weight"},    {"fc21.bias", "fc_mu.bias"},
    {"fc22.weight", "fc_logvar.weight"},{"fc22.bias", "fc_logvar.bias"},
    {"fc3.weight", "decoder.0.weight"}, {"fc3.bias", "decoder.0.bias"},
    {"fc4.weight", "out.weight"},       {"fc4.bias", "out.bias"},
};
#define N_PT_EXAMPLES ((int)(sizeof pt_examples_names / sizeof pt_examples_names[0]))

static const char *file_name_for(int pytorch_examples, const char *name)
{
    if (!pytorch_examples) return name;
    for (int i = 0; i < N_PT_EXAMPLES; i++)
        if (strcmp(pt_examples_names[i][1], name) == 0) return pt_examples_names[i][0];
    return name;
}

static vae_status config_from_pytorch_examples(const st_file *f, vae_config *cfg, char *err,
                                               size_t errlen)
{
    const st_tensor_info *fc1 = st_find(f, "fc1.weight"), *fc21 = st_find(f, "fc21.weight");
    if (!fc1 || !fc21 || fc1->ndim != 2 || fc21->ndim != 2) {
        util_set_err(err, errlen,
                 "no vaed config in __metadata__ and not a pytorch/examples VAE "
                 "(fc1, fc21, fc22, fc3, fc4)");
        return VAE_ERR_FORMAT;
    }
    vae_config_default(cfg);
    int64_t D = fc1->shape[1];
    cfg->hidden[0] = (int)fc1->shape[0];
    cfg->latent = (int)fc21->shape[0];
    cfg->n_hidden = 1;
    if (D == 3072) {
        cfg->channels = 3;
        cfg->height = cfg->width = 32;
    } else {
        int64_t s = (int64_t)llround(sqrt((double)D));
        if (s * s != D) {
            util_set_err(err, errlen, "fc1 takes %lld inputs: not a square image", (long long)D);
            return VAE_ERR_FORMAT;
        }
        cfg->channels = 1;
        cfg->height = cfg->width = (int)s;
    }
    char verr[200];
    if (vae_config_validate(cfg, verr, sizeof verr)) {
        util_set_err(err, errlen, "pytorch/examples layout: %s", verr);
        return VAE_ERR_FORMAT;
    }
    return VAE_OK;
}

vae_status ckpt_config_from_json(vae_config *cfg, const char *json, size_t len, char *err,
                                 size_t errlen)
{
    return config_from_json_budget(cfg, json, len, JSON_STRICT_MAX_VALUES, err, errlen);
}

vae_status ckpt_load_mem(vae_model *m, const uint8_t *buf, size_t len, char **metrics_json,
                         char *err, size_t errlen)
{
    return ckpt_load_mem_limited(m, buf, len, NULL, metrics_json, err, errlen);
}

vae_status ckpt_load_mem_limited(vae_model *m, const uint8_t *buf, size_t len,
                                 const st_limits *limits, char **metrics_json, char *err,
                                 size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (metrics_json) *metrics_json = NULL;
    st_file f;
    char serr[256];
    vae_status rc = st_parse_limited(buf, len, limits, &f, serr, sizeof serr);
    if (rc) {
        util_set_err(err, errlen, "not a valid safetensors file: %s", serr);
        return rc;
    }
    vae_config cfg;
    const char *config_json = st_meta_get(&f, CONFIG_KEY);
    int pytorch_examples = config_json == NULL;
    if (config_json)
        rc = config_from_json_budget(&cfg, config_json, strlen(config_json),
                                     limits && limits->max_values ? limits->max_values
                                                                  : ST_MAX_HEADER_VALUES,
                                     err, errlen);
    else
        rc = config_from_pytorch_examples(&f, &cfg, err, errlen);
    if (rc) goto end;
    char verr[200];
    if ((rc = vae_alloc(m, &cfg, verr, sizeof verr))) {
        util_set_err(err, errlen, "config: %s", verr);
        goto end;
    }
    if (f.n_tensors != m->n_tensors) {
        util_set_err(err, errlen, "the file holds %d tensors; the config needs %d", f.n_tensors,
                 m->n_tensors);
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const vae_tensor *vt = &m->tensors[i];
        const char *fname = file_name_for(pytorch_examples, vt->name);
        const st_tensor_info *t = st_find(&f, fname);
        rc = VAE_ERR_FORMAT;
        if (!t) {
            util_set_err(err, errlen, "tensor %s is missing", fname);
            goto end;
        }
        if (strcmp(t->dtype, "F32") != 0) {
            util_set_err(err, errlen, "tensor %s has dtype %s; only F32 is supported", fname, t->dtype);
            goto end;
        }
        int same = t->ndim == vt->ndim;
        for (int d = 0; same && d < vt->ndim; d++) same = t->shape[d] == vt->shape[d];
        if (!same) {
            char have[96], want[96];
            size_t hp = 0, wp = 0;
            for (int d = 0; d < t->ndim; d++)
                append(have, sizeof have, &hp, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            for (int d = 0; d < vt->ndim; d++)
                append(want, sizeof want, &wp, "%s%d", d ? ", " : "", vt->shape[d]);
            if (!t->ndim) have[0] = '\0';
            util_set_err(err, errlen, "tensor %s has shape [%s]; the config needs [%s]", fname, have,
                     want);
            goto end;
        }
        float *dst = m->params + vt->offset;
        memcpy(dst, f.data + t->begin, vt->size * sizeof(float));
        for (size_t k = 0; k < vt->size; k++)
            if (!isfinite(dst[k])) {
                util_set_err(err, errlen, "tensor %s holds a non-finite value at index %zu", fname, k);
                goto end;
            }
    }
    if (metrics_json) {
        const char *mj = st_meta_get(&f, METRICS_KEY);
        if (mj && !(*metrics_json = strdup(mj))) {
            util_set_err(err, errlen, "out of memory");
            rc = VAE_ERR_NOMEM;
            goto end;
        }
    }
    rc = VAE_OK;
end:
    if (rc) vae_free(m);
    st_free(&f);
    return rc;
}

vae_status ckpt_load_file(vae_model *m, const char *path, char **metrics_json, char *err,
                          size_t errlen)
{
    memset(m, 0, sizeof *m);
    uint8_t *buf; /* owned */
    size_t len;
    vae_status rc = file_io_read_all(path, SIZE_MAX, &buf, &len, err, errlen);
    if (rc) return rc;
    char lerr[300];
    rc = ckpt_load_mem(m, buf, len, metrics_json, lerr, sizeof lerr);
    if (rc) util_set_err(err, errlen, "%s: %s", path, lerr);
    free(buf);
    return rc;
}

vae_status ckpt_save_pytorch_examples(const vae_model *m, const char *path, char *err,
                                      size_t errlen)
{
    if (m->cfg.arch != VAE_ARCH_MLP || m->cfg.n_hidden != 1) {
        util_set_err(err, errlen, "the pytorch/examples layout holds a 1-hidden-layer MLP only");
        return VAE_ERR_ARG;
    }
    st_tensor_out t[VAE_MAX_TENSORS] = {{0}};
    for (int i = 0; i < m->n_tensors; i++) {
        const vae_tensor *vt = &m->tensors[i];
        t[i].name = file_name_for(1, vt->name);
        t[i].ndim = vt->ndim;
        for (int d = 0; d < vt->ndim; d++) t[i].shape[d] = vt->shape[d];
        t[i].data = m->params + vt->offset;
    }
    const char *keys[1] = {"format"}, *vals[1] = {"pt"};
    return st_write_file(path, t, m->n_tensors, keys, vals, 1, err, errlen);
}
