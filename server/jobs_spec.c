/* jobs_spec: POST /jobs bodies into a jobs_spec. See jobs_spec.h. */
#include "server/jobs_spec.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/util.h"
#include "server/data_sets.h"
#include "server/registry.h"

/* seeds and step counts travel as JSON numbers (doubles): exact to 2^53 */
#define JOBS_SPEC_MAX_EXACT 9007199254740992.0

/* ---------- typed getters: each names the key on failure ---------- */

static int get_number(const cJSON *it, double lo, double hi, double *out, char *err,
                      size_t errlen)
{
    if (!cJSON_IsNumber(it)) {
        util_set_err(err, errlen, "\"%s\" must be a number", it->string);
        return -1;
    }
    double v = it->valuedouble;
    if (!isfinite(v) || v < lo || v > hi) {
        util_set_err(err, errlen, "\"%s\" is %g, out of range [%g, %g]", it->string, v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int get_integer(const cJSON *it, double lo, double hi, double *out, char *err,
                       size_t errlen)
{
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble)) {
        util_set_err(err, errlen, "\"%s\" must be an integer", it->string);
        return -1;
    }
    if (it->valuedouble < lo || it->valuedouble > hi) {
        util_set_err(err, errlen, "\"%s\" is %.0f, out of range %.0f..%.0f", it->string,
                     it->valuedouble, lo, hi);
        return -1;
    }
    *out = it->valuedouble;
    return 0;
}

/* A float option: a finite number that a float holds. */
static int get_float(const cJSON *it, float *out, char *err, size_t errlen)
{
    double v;
    if (get_number(it, -FLT_MAX, FLT_MAX, &v, err, errlen)) return -1;
    *out = (float)v;
    return 0;
}

static int get_int(const cJSON *it, int lo, int hi, int *out, char *err, size_t errlen)
{
    double v;
    if (get_integer(it, lo, hi, &v, err, errlen)) return -1;
    *out = (int)v;
    return 0;
}

static const char *get_string(const cJSON *it, char *err, size_t errlen)
{
    if (!cJSON_IsString(it) || !it->valuestring) {
        util_set_err(err, errlen, "\"%s\" must be a string", it->string);
        return NULL;
    }
    return it->valuestring;
}

/* A list of widths, or one integer. */
static int get_widths(const cJSON *it, int *out, int *n, char *err, size_t errlen)
{
    *n = 0;
    if (cJSON_IsNumber(it)) return get_int(it, 1, 65536, &out[(*n)++], err, errlen);
    if (!cJSON_IsArray(it)) {
        util_set_err(err, errlen, "\"%s\" must be a list of integers, e.g. [512, 256]", it->string);
        return -1;
    }
    const cJSON *w;
    cJSON_ArrayForEach(w, it)
    {
        if (*n == VAE_MAX_HIDDEN) {
            util_set_err(err, errlen, "\"%s\" holds at most %d widths", it->string, VAE_MAX_HIDDEN);
            return -1;
        }
        if (!cJSON_IsNumber(w) || w->valuedouble != floor(w->valuedouble) ||
            w->valuedouble < 1 || w->valuedouble > 65536) {
            util_set_err(err, errlen, "\"%s\" must hold integers in 1..65536", it->string);
            return -1;
        }
        out[(*n)++] = (int)w->valuedouble;
    }
    return 0;
}

/* ---------- the data set, from its IDX header ---------- */

/* The image count and size of an IDX image file, without reading the images. */
static int peek(const char *images, int *n, int *rows, int *cols, char *err, size_t errlen)
{
    return dataset_peek_idx(images, n, rows, cols, err, errlen) == VAE_OK ? 0 : -1;
}

static int check_data(jobs_spec *s, const char *root, char *err, size_t errlen)
{
    char img[PATH_MAX + 64], lab[PATH_MAX + 64];
    int rows, cols, trows, tcols;
    if (data_sets_is_builtin(s->data)) {
        data_sets_idx_paths(root, s->data, DATA_SETS_TRAIN, img, lab, sizeof img);
        if (access(img, R_OK) != 0) {
            util_set_err(err, errlen,
                         "data set \"%s\" is not downloaded (run `bash scripts/get-data.sh %s`)",
                         s->data, s->data);
            return -1;
        }
        if (peek(img, &s->n_train, &rows, &cols, err, errlen)) return -1;
        data_sets_idx_paths(root, s->data, DATA_SETS_TEST, img, lab, sizeof img);
        s->n_test = 0;
        if (access(img, R_OK) == 0) {
            if (peek(img, &s->n_test, &trows, &tcols, err, errlen)) return -1;
            if (trows != rows || tcols != cols) {
                util_set_err(err, errlen, "data set \"%s\": test images are %dx%d, training %dx%d",
                             s->data, trows, tcols, rows, cols);
                return -1;
            }
        }
    } else {
        if (!strchr(s->data, '/') || access(s->data, R_OK) != 0) {
            util_set_err(err, errlen,
                         "unknown data set \"%.200s\": use mnist, fashion or the path of an IDX "
                         "image file",
                         s->data);
            return -1;
        }
        if (peek(s->data, &s->n_train, &rows, &cols, err, errlen)) return -1;
        s->n_test = 0;
        /* a class or a conditional model needs the labels data_sets_load
         * reads beside the images */
        if ((s->klass >= 0 || s->conditional) &&
            (data_sets_idx_paths(root, s->data, DATA_SETS_TRAIN, img, lab, sizeof img) ||
             !lab[0] || access(lab, R_OK) != 0)) {
            util_set_err(err, errlen,
                         "\"%s\" needs labels: no *-labels-idx1-ubyte file beside %.200s",
                         s->klass >= 0 ? "class" : "conditional", s->data);
            return -1;
        }
    }
    s->cfg.channels = 1;
    s->cfg.height = rows;
    s->cfg.width = cols;
    s->n_used = s->limit > 0 && s->limit < s->n_train ? s->limit : s->n_train;
    if (s->conditional)
        s->cfg.n_classes = data_sets_is_builtin(s->data) ? 10 : VAE_MAX_CLASSES;
    return 0;
}

/* ---------- memory ---------- */

size_t jobs_spec_memory_bytes(const vae_config *c, int n_train, int n_test)
{
    size_t params = vae_config_param_count(c);
    if (params == 0) return SIZE_MAX / 2;
    /* in doubles: a silly config must not wrap around */
    double D = (double)vae_config_input_dim(c);
    int eval_batch = c->batch < 500 ? 500 : c->batch; /* trainer_evaluate's batch */
    double kept = 4.0 * (double)params                   /* the parameters */
                  + ((double)n_train + n_test) * (D + 1)  /* images and labels, as bytes */
                  + 4.0 * n_train;                        /* the data order */
    double training = (double)vae_config_train_state_bytes(c, c->batch, 1) /* grads, Adam, ... */
                      + 4.0 * D * c->batch;                                 /* the batch copy */
    double evaluation = (double)vae_config_train_state_bytes(c, eval_batch, 1)
                        + 4.0 * eval_batch * (D + (double)c->mc_samples * c->latent);
    /* the test set is evaluated after every epoch, beside the training
     * state; the final evaluation runs once train_run has freed it */
    double peak = training + (n_test > 0 ? evaluation : 0);
    double bytes = kept + (peak > evaluation ? peak : evaluation);
    return bytes > (double)SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)bytes;
}

/* ---------- parse ---------- */

static const char *const known_keys[] = {
    "model", "data", "arch", "hidden", "conv_channels", "latent", "activation", "likelihood",
    "sigma", "binarize", "beta", "kl_warmup", "free_bits", "mc_samples", "lr", "beta1",
    "beta2", "eps", "weight_decay", "clip_grad", "batch", "epochs", "seed", "limit", "class",
    "conditional", "ranks",
};
#define N_KEYS (sizeof known_keys / sizeof known_keys[0])

static int key_index(const char *k)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(k, known_keys[i]) == 0) return (int)i;
    return -1;
}

/* One key's value into s; the key is known. */
static int apply_key(jobs_spec *s, const cJSON *it, char *err, size_t errlen)
{
    vae_config *c = &s->cfg;
    const char *k = it->string, *v;
    double d;
    if (strcmp(k, "model") == 0) {
        if (!(v = get_string(it, err, errlen))) return -1;
        if (!registry_valid_name(v)) {
            util_set_err(err, errlen,
                         "\"model\": invalid name \"%.64s\": use 1-64 of A-Z a-z 0-9 . _ -, not "
                         "starting with . or -",
                         v);
            return -1;
        }
        snprintf(s->model, sizeof s->model, "%s", v);
    } else if (strcmp(k, "data") == 0) {
        if (!(v = get_string(it, err, errlen))) return -1;
        if (!*v || strlen(v) >= sizeof s->data) {
            util_set_err(err, errlen, "\"data\" must be 1-%zu characters", sizeof s->data - 1);
            return -1;
        }
        snprintf(s->data, sizeof s->data, "%s", v);
    } else if (strcmp(k, "arch") == 0) {
        if (!(v = get_string(it, err, errlen))) return -1;
        if (vae_arch_parse(v, &c->arch)) {
            util_set_err(err, errlen, "\"arch\": mlp or conv, not \"%.32s\"", v);
            return -1;
        }
    } else if (strcmp(k, "hidden") == 0) {
        return get_widths(it, c->hidden, &c->n_hidden, err, errlen);
    } else if (strcmp(k, "conv_channels") == 0) {
        if (get_widths(it, c->conv_channels, &c->n_conv, err, errlen)) return -1;
        if (c->n_conv == 0) {
            util_set_err(err, errlen, "\"conv_channels\" needs at least one layer");
            return -1;
        }
    } else if (strcmp(k, "latent") == 0) {
        return get_int(it, 1, 4096, &c->latent, err, errlen);
    } else if (strcmp(k, "activation") == 0) {
        if (!(v = get_string(it, err, errlen))) return -1;
        if (vae_activation_parse(v, &c->activation)) {
            util_set_err(err, errlen,
                         "\"activation\": relu, leaky_relu, tanh or elu, not \"%.32s\"", v);
            return -1;
        }
    } else if (strcmp(k, "likelihood") == 0) {
        if (!(v = get_string(it, err, errlen))) return -1;
        if (vae_likelihood_parse(v, &c->likelihood)) {
            util_set_err(err, errlen,
                         "\"likelihood\": bernoulli, cbernoulli, gaussian or gaussian-learned, not "
                         "\"%.32s\"",
                         v);
            return -1;
        }
    } else if (strcmp(k, "binarize") == 0) {
        if (!(v = get_string(it, err, errlen))) return -1;
        if (vae_binarize_parse(v, &c->binarize)) {
            util_set_err(err, errlen, "\"binarize\": none, static or dynamic, not \"%.32s\"", v);
            return -1;
        }
    } else if (strcmp(k, "sigma") == 0) {
        return get_float(it, &c->sigma, err, errlen);
    } else if (strcmp(k, "beta") == 0) {
        return get_float(it, &c->beta, err, errlen);
    } else if (strcmp(k, "free_bits") == 0) {
        return get_float(it, &c->free_bits, err, errlen);
    } else if (strcmp(k, "lr") == 0) {
        return get_float(it, &c->lr, err, errlen);
    } else if (strcmp(k, "beta1") == 0) {
        return get_float(it, &c->beta1, err, errlen);
    } else if (strcmp(k, "beta2") == 0) {
        return get_float(it, &c->beta2, err, errlen);
    } else if (strcmp(k, "eps") == 0) {
        return get_float(it, &c->eps, err, errlen);
    } else if (strcmp(k, "weight_decay") == 0) {
        return get_float(it, &c->weight_decay, err, errlen);
    } else if (strcmp(k, "clip_grad") == 0) {
        return get_float(it, &c->clip_grad, err, errlen);
    } else if (strcmp(k, "kl_warmup") == 0) {
        if (get_integer(it, 0, JOBS_SPEC_MAX_EXACT, &d, err, errlen)) return -1;
        c->kl_warmup = (int64_t)d;
    } else if (strcmp(k, "mc_samples") == 0) {
        return get_int(it, 1, 64, &c->mc_samples, err, errlen);
    } else if (strcmp(k, "batch") == 0) {
        return get_int(it, 1, 65536, &c->batch, err, errlen);
    } else if (strcmp(k, "epochs") == 0) {
        return get_int(it, 1, JOBS_SPEC_MAX_EPOCHS, &c->epochs, err, errlen);
    } else if (strcmp(k, "seed") == 0) {
        if (get_integer(it, 0, JOBS_SPEC_MAX_EXACT, &d, err, errlen)) return -1;
        c->seed = (uint64_t)d;
    } else if (strcmp(k, "limit") == 0) {
        return get_int(it, 0, INT_MAX, &s->limit, err, errlen);
    } else if (strcmp(k, "class") == 0) {
        if (cJSON_IsNull(it)) {
            s->klass = -1;
            return 0;
        }
        return get_int(it, 0, 255, &s->klass, err, errlen);
    } else if (strcmp(k, "conditional") == 0) {
        if (!cJSON_IsBool(it)) {
            util_set_err(err, errlen, "\"conditional\" must be true or false");
            return -1;
        }
        s->conditional = cJSON_IsTrue(it);
    } else if (strcmp(k, "ranks") == 0) {
        return get_int(it, 1, JOBS_SPEC_MAX_RANKS, &s->ranks, err, errlen);
    }
    return 0;
}

/* 1 when path (resolved) is root (resolved) or inside it. */
static int path_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/') return 1;
    return strncmp(path, root, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* For jobs_spec_parse_confined: a path must name a file inside data_root once
 * symlinks and ".." are resolved; s->data becomes that resolved path. The
 * same message whether the file is missing or outside the root, so a client
 * cannot probe what exists elsewhere on the server. */
static int confine_data(jobs_spec *s, const char *root, char *err, size_t errlen)
{
    char root_real[PATH_MAX], joined[PATH_MAX + 2], real[PATH_MAX];
    if (!realpath(root, root_real)) {
        util_set_err(err, errlen, "\"data\": this server has no data directory, so only mnist "
                             "and fashion can be named");
        return -1;
    }
    int over = s->data[0] == '/'
                   ? snprintf(joined, sizeof joined, "%s", s->data) >= (int)sizeof joined
                   : snprintf(joined, sizeof joined, "%s/%s", root, s->data) >= (int)sizeof joined;
    int ok = !over && realpath(joined, real) && path_under(real, root_real);
    if (ok) {
        /* data_sets_load also reads the labels file beside the images */
        char lab[PATH_MAX + 64], lab_real[PATH_MAX];
        if (dataset_idx_labels_path(real, lab, sizeof lab) && access(lab, F_OK) == 0)
            ok = realpath(lab, lab_real) && path_under(lab_real, root_real);
    }
    if (!ok) {
        util_set_err(err, errlen,
                     "\"data\": no data set \"%.200s\" in the server's data directory (a path "
                     "there is relative to it; mnist and fashion are built in)",
                     s->data);
        return -1;
    }
    snprintf(s->data, sizeof s->data, "%s", real);
    return 0;
}

static int parse_object(const cJSON *root, const char *data_root, int confined, jobs_spec *s,
                        char *err, size_t errlen)
{
    if (!cJSON_IsObject(root)) {
        util_set_err(err, errlen, "a job is a JSON object, e.g. {\"model\": \"digits\", \"data\": "
                             "\"mnist\", \"epochs\": 10}");
        return -1;
    }
    int seen[N_KEYS] = {0};
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        const char *k = it->string ? it->string : "";
        int i = key_index(k);
        if (i < 0) {
            if (strcmp(k, "threads") == 0)
                util_set_err(err, errlen, "\"threads\" cannot be set per job: the daemon runs "
                                     "OpenBLAS with one thread per training worker");
            else if (strcmp(k, "register") == 0 || strcmp(k, "out") == 0 ||
                     strcmp(k, "data_dir") == 0)
                util_set_err(err, errlen, "\"%s\" is a CLI-only option: a job's result is "
                                     "registered as a version of \"model\"", k);
            else
                util_set_err(err, errlen, "unknown key \"%.64s\"", k);
            return -1;
        }
        if (seen[i]++) {
            util_set_err(err, errlen, "\"%s\" is given twice", k);
            return -1;
        }
        if (apply_key(s, it, err, errlen)) return -1;
    }
    if (!s->model[0]) {
        util_set_err(err, errlen, "\"model\" is required: the registry model the result becomes "
                             "a version of");
        return -1;
    }
    if (confined && !data_sets_is_builtin(s->data) && confine_data(s, data_root, err, errlen))
        return -1;
    if (check_data(s, data_root, err, errlen)) return -1;
    if (vae_config_validate(&s->cfg, err, errlen)) return -1;
    s->mem_bytes = jobs_spec_memory_bytes(&s->cfg, s->n_used, s->n_test);
    return 0;
}

static jobs_spec_status parse(const char *json, size_t len, const char *data_root, int confined,
                              jobs_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    vae_config_default(&out->cfg);
    snprintf(out->data, sizeof out->data, "mnist");
    out->klass = -1;
    out->ranks = 1;
    if (!json || len == 0) {
        util_set_err(err, errlen, "empty job: send a JSON object");
        return JOBS_SPEC_ERR_INVALID;
    }
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, NULL, 0); /* owned: freed below */
    if (!root) {
        util_set_err(err, errlen, "the job is not valid JSON");
        return JOBS_SPEC_ERR_INVALID;
    }
    int rc = parse_object(root, data_root ? data_root : data_sets_root(), confined, out, err,
                          errlen);
    cJSON_Delete(root);
    return rc ? JOBS_SPEC_ERR_INVALID : JOBS_SPEC_OK;
}

jobs_spec_status jobs_spec_parse(const char *json, size_t len, const char *data_root,
                                 jobs_spec *out, char *err, size_t errlen)
{
    return parse(json, len, data_root, 0, out, err, errlen);
}

jobs_spec_status jobs_spec_parse_confined(const char *json, size_t len, const char *data_root,
                                          jobs_spec *out, char *err, size_t errlen)
{
    return parse(json, len, data_root, 1, out, err, errlen);
}

/* ---------- back to JSON ---------- */

/* The shortest decimal that reads back as the same float, so 0.001f is
 * written 0.001 and not 0.0010000000474974513. */
static double float_as_written(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static cJSON *widths(const int *w, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateNumber(w[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

char *jobs_spec_to_json(const jobs_spec *s)
{
    const vae_config *c = &s->cfg;
    char *out = NULL;
    cJSON *o = cJSON_CreateObject(); /* owned: freed at end */
    if (!o) return NULL;
    int ok = cJSON_AddStringToObject(o, "model", s->model) &&
             cJSON_AddStringToObject(o, "data", s->data) &&
             cJSON_AddStringToObject(o, "arch", vae_arch_name(c->arch)) &&
             cJSON_AddItemToObject(o, "hidden", widths(c->hidden, c->n_hidden));
    if (ok && c->arch == VAE_ARCH_CONV)
        ok = cJSON_AddItemToObject(o, "conv_channels", widths(c->conv_channels, c->n_conv));
    ok = ok && cJSON_AddNumberToObject(o, "latent", c->latent) &&
         cJSON_AddStringToObject(o, "activation", vae_activation_name(c->activation)) &&
         cJSON_AddStringToObject(o, "likelihood", vae_likelihood_name(c->likelihood)) &&
         cJSON_AddNumberToObject(o, "sigma", float_as_written(c->sigma)) &&
         cJSON_AddStringToObject(o, "binarize", vae_binarize_name(c->binarize)) &&
         cJSON_AddNumberToObject(o, "beta", float_as_written(c->beta)) &&
         cJSON_AddNumberToObject(o, "kl_warmup", (double)c->kl_warmup) &&
         cJSON_AddNumberToObject(o, "free_bits", float_as_written(c->free_bits)) &&
         cJSON_AddNumberToObject(o, "mc_samples", c->mc_samples) &&
         cJSON_AddNumberToObject(o, "lr", float_as_written(c->lr)) &&
         cJSON_AddNumberToObject(o, "beta1", float_as_written(c->beta1)) &&
         cJSON_AddNumberToObject(o, "beta2", float_as_written(c->beta2)) &&
         cJSON_AddNumberToObject(o, "eps", float_as_written(c->eps)) &&
         cJSON_AddNumberToObject(o, "weight_decay", float_as_written(c->weight_decay)) &&
         cJSON_AddNumberToObject(o, "clip_grad", float_as_written(c->clip_grad)) &&
         cJSON_AddNumberToObject(o, "batch", c->batch) &&
         cJSON_AddNumberToObject(o, "epochs", c->epochs) &&
         cJSON_AddNumberToObject(o, "seed", (double)c->seed) &&
         cJSON_AddNumberToObject(o, "limit", s->limit) &&
         (s->klass >= 0 ? cJSON_AddNumberToObject(o, "class", s->klass) != NULL
                        : cJSON_AddNullToObject(o, "class") != NULL) &&
         cJSON_AddBoolToObject(o, "conditional", s->conditional) != NULL;
    /* only when it is not 1, so a job of one process reads as it always did */
    if (ok && s->ranks > 1) ok = cJSON_AddNumberToObject(o, "ranks", s->ranks) != NULL;
    if (ok) out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}
