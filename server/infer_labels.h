/* infer_labels: the class labels a request gives a conditional model, read
 * from the query (?label=K, ?labels=3,3,7) or a JSON body ("label": K,
 * "labels": [3, 3, 7]) and checked against the model.
 *
 *     infer_labels l;
 *     char msg[HTTP_MESSAGE_MAX];
 *     if (infer_labels_from_query(conn, &l, msg, sizeof msg))   // on the polling thread: 400
 *         ...
 *     int labels[n];                                           // later, with the model:
 *     http_error e = infer_labels_resolve(&l, &model->cfg, n, labels, msg, sizeof msg);
 *     ... vae_encode_cond(m, ws, x, e == HTTP_ERR_NONE && l.given ? labels : NULL, ...) ...
 *
 * Syntax is a 400 (a label is decimal digits, at most 9 of them; a list
 * holds 1 to API_INFER_MAX_N of them, comma-separated, nothing else); what
 * only the model can judge is a 422 naming what is wrong: a label given to
 * an unconditional model, a label out of its range (the message names the
 * range), no label for a conditional model where one is needed, or a list
 * whose length is not the number of images. Everything lives in the struct:
 * no allocation, no state.
 */
#ifndef INFER_LABELS_H
#define INFER_LABELS_H

#include <stddef.h>

#include <cJSON.h>
#include <microhttpd.h>

#include "engine/vae.h"
#include "server/api_infer.h"
#include "server/http_util.h"

typedef struct {
    int given;                 /* 0: no label given */
    int one;                   /* label / "label": one label for every image */
    int n;                     /* labels given (1 when one) */
    int v[API_INFER_MAX_N];
} infer_labels;

/* ?label= and ?labels= (at most one of them) into *out. */
http_error infer_labels_from_query(struct MHD_Connection *c, infer_labels *out, char *msg,
                                   size_t msglen);
/* "label" (an integer) or "labels" (an array of integers) of a JSON object,
 * at most one of them, into *out. */
http_error infer_labels_from_json(const cJSON *obj, infer_labels *out, char *msg, size_t msglen);
/* The labels of n images for cfg into out (n ints) when the model is
 * conditional: l's, or the one label repeated. HTTP_ERR_NONE with nothing
 * written when the model is unconditional and l gives none. A conditional
 * model with no label given is a 422 unless none_ok, then out is untouched
 * and the caller picks the labels. */
http_error infer_labels_resolve(const infer_labels *l, const vae_config *cfg, int n, int none_ok,
                                int *out, char *msg, size_t msglen);
/* One label (e.g. an interpolation end) against cfg: 422 when cfg is not
 * conditional or label is outside 0..n_classes-1; what names it. */
http_error infer_labels_check_one(const vae_config *cfg, long long label, const char *what,
                                  char *msg, size_t msglen);

#endif
