/* infer_labels: class labels from a query or a JSON body, checked against a
 * conditional model. See infer_labels.h. */
#include "server/infer_labels.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A label has at most this many digits: beyond any class count, and no
 * overflow. */
#define LABEL_MAX_DIGITS 9

/* The decimal label at s (digits only) ending at end, or -1. */
static int parse_label(const char *s, const char *end)
{
    if (s == end || end - s > LABEL_MAX_DIGITS)
        return -1;
    int v = 0;
    for (const char *p = s; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

http_error infer_labels_from_query(struct MHD_Connection *c, infer_labels *out, char *msg,
                                   size_t msglen)
{
    memset(out, 0, sizeof *out);
    const char *one = NULL, *list = NULL;
    /* a list of API_INFER_MAX_N labels of LABEL_MAX_DIGITS digits and commas */
    if (http_query_str(c, "label", LABEL_MAX_DIGITS + 1, &one, msg, msglen) ||
        http_query_str(c, "labels", (size_t)API_INFER_MAX_N * (LABEL_MAX_DIGITS + 1), &list, msg,
                       msglen))
        return HTTP_ERR_BAD_REQUEST;
    if (one && list) {
        snprintf(msg, msglen, "give 'label' (one for every image) or 'labels' (one per image), "
                              "not both");
        return HTTP_ERR_BAD_REQUEST;
    }
    if (one) {
        int v = parse_label(one, one + strlen(one));
        if (v < 0) {
            snprintf(msg, msglen, "parameter 'label' must be a class number (0, 1, 2 ...)");
            return HTTP_ERR_BAD_REQUEST;
        }
        *out = (infer_labels){.given = 1, .one = 1, .n = 1, .v = {v}};
        return HTTP_ERR_NONE;
    }
    if (!list)
        return HTTP_ERR_NONE;
    for (const char *p = list;;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        int v = parse_label(p, end);
        if (v < 0 || out->n == API_INFER_MAX_N) {
            snprintf(msg, msglen,
                     "parameter 'labels' must be 1 to %d class numbers separated by commas, "
                     "such as labels=3,3,7",
                     API_INFER_MAX_N);
            return HTTP_ERR_BAD_REQUEST;
        }
        out->v[out->n++] = v;
        if (!*end)
            break;
        p = end + 1;
    }
    out->given = 1;
    return HTTP_ERR_NONE;
}

/* A JSON number that is a label: an integer of at most LABEL_MAX_DIGITS
 * digits, or -1. */
static int json_label(const cJSON *v)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    return d >= 0 && d < 1e9 && d == floor(d) ? (int)d : -1;
}

http_error infer_labels_from_json(const cJSON *obj, infer_labels *out, char *msg, size_t msglen)
{
    memset(out, 0, sizeof *out);
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(obj, "label");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, "labels");
    if (one && list) {
        snprintf(msg, msglen, "give \"label\" (one for every image) or \"labels\" (one per "
                              "image), not both");
        return HTTP_ERR_BAD_REQUEST;
    }
    if (one) {
        int v = json_label(one);
        if (v < 0) {
            snprintf(msg, msglen, "\"label\" must be a class number (0, 1, 2 ...)");
            return HTTP_ERR_BAD_REQUEST;
        }
        *out = (infer_labels){.given = 1, .one = 1, .n = 1, .v = {v}};
        return HTTP_ERR_NONE;
    }
    if (!list)
        return HTTP_ERR_NONE;
    int n = cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1;
    if (n < 1 || n > API_INFER_MAX_N) {
        snprintf(msg, msglen, "\"labels\" must be an array of 1 to %d class numbers",
                 API_INFER_MAX_N);
        return HTTP_ERR_BAD_REQUEST;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, list) {
        int v = json_label(it);
        if (v < 0) {
            snprintf(msg, msglen, "\"labels\"[%d] must be a class number (0, 1, 2 ...)", out->n);
            return HTTP_ERR_BAD_REQUEST;
        }
        out->v[out->n++] = v;
    }
    out->given = 1;
    return HTTP_ERR_NONE;
}

/* The message of a label out of cfg's range. */
static http_error out_of_range(const vae_config *cfg, long long label, const char *what,
                               char *msg, size_t msglen)
{
    snprintf(msg, msglen, "%s %lld is out of range: the model's classes are 0 to %d", what,
             label, cfg->n_classes - 1);
    return HTTP_ERR_UNPROCESSABLE;
}

static http_error not_conditional(char *msg, size_t msglen)
{
    snprintf(msg, msglen, "the model is not conditional: it takes no label");
    return HTTP_ERR_UNPROCESSABLE;
}

http_error infer_labels_check_one(const vae_config *cfg, long long label, const char *what,
                                  char *msg, size_t msglen)
{
    if (!vae_config_is_conditional(cfg))
        return not_conditional(msg, msglen);
    if (label < 0 || label >= cfg->n_classes)
        return out_of_range(cfg, label, what, msg, msglen);
    return HTTP_ERR_NONE;
}

http_error infer_labels_resolve(const infer_labels *l, const vae_config *cfg, int n, int none_ok,
                                int *out, char *msg, size_t msglen)
{
    if (!vae_config_is_conditional(cfg))
        return l->given ? not_conditional(msg, msglen) : HTTP_ERR_NONE;
    if (!l->given) {
        if (none_ok)
            return HTTP_ERR_NONE;
        snprintf(msg, msglen,
                 "the model is conditional: give each image's class with label (one for all) or "
                 "labels (one per image), 0 to %d",
                 cfg->n_classes - 1);
        return HTTP_ERR_UNPROCESSABLE;
    }
    if (!l->one && l->n != n) {
        snprintf(msg, msglen, "labels holds %d labels for %d images: give one per image", l->n, n);
        return HTTP_ERR_UNPROCESSABLE;
    }
    for (int i = 0; i < l->n; i++)
        if (l->v[i] >= cfg->n_classes)
            return out_of_range(cfg, l->v[i], "label", msg, msglen);
    for (int i = 0; i < n; i++)
        out[i] = l->v[l->one ? 0 : i];
    return HTTP_ERR_NONE;
}
