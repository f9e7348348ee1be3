#include "server/infer_batch.h"

#include <stdlib.h>
#include <string.h>

#include "server/metrics.h"

/* The engine call of rows (n of them) in, into out / out2. */
static vae_status run_call(infer_batch_op op, const vae_model *m, int n, const float *in,
                           const int *labels, const float *weights, float *out, float *out2)
{
    vae_workspace *ws = vae_workspace_new(m, n); /* owned */
    if (!ws)
        return VAE_ERR_NOMEM;
    /* Every call, stacked or alone, the same products: a request's rows
     * come out alike whichever it got. */
    if (vae_rows_independent(m))
        vae_workspace_set_rows_independent(m, ws, 1);
    vae_status rc;
    if (op == INFER_BATCH_ENCODE)
        rc = vae_encode_cond(m, ws, in, labels, n, out, out2);
    else if (weights)
        rc = vae_decode_mixed(m, ws, in, weights, n, out);
    else
        rc = vae_decode(m, ws, in, n, out);
    vae_workspace_free(ws);
    return rc;
}

static void run_alone(infer_batch_item *it)
{
    it->status = run_call(it->op, it->model, it->n, it->in, it->labels, it->label_weights,
                          it->out, it->out2);
    metrics_observe_infer_batch(1, it->n);
}

/* The items of group (k of them, one model and op, rows in all) as one call:
 * their rows stacked in order, the outputs split back. */
static void run_stacked(infer_batch_item *const *group, int k, int rows)
{
    const infer_batch_item *first = group[0];
    const vae_config *cfg = &first->model->cfg;
    int enc = first->op == INFER_BATCH_ENCODE;
    size_t in_w = enc ? (size_t)vae_config_input_dim(cfg) : (size_t)cfg->latent;
    size_t out_w = enc ? (size_t)cfg->latent : (size_t)vae_config_input_dim(cfg);
    size_t K = (size_t)cfg->n_classes;
    int cond = vae_config_is_conditional(cfg);
    float *in = malloc((size_t)rows * in_w * sizeof *in);                    /* owned */
    float *out = malloc((size_t)rows * out_w * sizeof *out);                 /* owned */
    float *out2 = enc ? malloc((size_t)rows * out_w * sizeof *out2) : NULL;  /* owned */
    int *labels = cond && enc ? malloc((size_t)rows * sizeof *labels) : NULL; /* owned */
    float *weights = cond && !enc ? malloc((size_t)rows * K * sizeof *weights) : NULL; /* owned */
    if (!in || !out || (enc && !out2) || (cond && enc && !labels) || (cond && !enc && !weights)) {
        for (int i = 0; i < k; i++)
            run_alone(group[i]);
        goto end;
    }
    size_t at = 0;
    for (int i = 0; i < k; i++) {
        const infer_batch_item *it = group[i];
        memcpy(in + at * in_w, it->in, (size_t)it->n * in_w * sizeof *in);
        if (labels)
            memcpy(labels + at, it->labels, (size_t)it->n * sizeof *labels);
        if (weights)
            memcpy(weights + at * K, it->label_weights, (size_t)it->n * K * sizeof *weights);
        at += (size_t)it->n;
    }
    vae_status rc = run_call(first->op, first->model, rows, in, labels, weights, out, out2);
    if (rc != VAE_OK) {
        /* One item's bad label fails the whole call: each alone, so that
         * only that one fails. */
        for (int i = 0; i < k; i++)
            run_alone(group[i]);
        goto end;
    }
    metrics_observe_infer_batch(k, rows);
    at = 0;
    for (int i = 0; i < k; i++) {
        infer_batch_item *it = group[i];
        memcpy(it->out, out + at * out_w, (size_t)it->n * out_w * sizeof *out);
        if (enc)
            memcpy(it->out2, out2 + at * out_w, (size_t)it->n * out_w * sizeof *out2);
        it->status = VAE_OK;
        at += (size_t)it->n;
    }
end:
    free(in);
    free(out);
    free(out2);
    free(labels);
    free(weights);
}

/* An item the stacked call can take: a conditional model's with its labels
 * (the engine refuses the other kind alone, with its own status). */
static int item_stackable(const infer_batch_item *it)
{
    int cond = vae_config_is_conditional(&it->model->cfg);
    const void *lab = it->op == INFER_BATCH_ENCODE ? (const void *)it->labels
                                                   : (const void *)it->label_weights;
    return vae_rows_independent(it->model) && it->n < INFER_BATCH_ROWS_MAX &&
           cond == (lab != NULL);
}

void infer_batch_run(infer_batch_item *const *items, int n)
{
    infer_batch_item *group[INFER_BATCH_ROWS_MAX]; /* each item has a row at least */
    unsigned char *done = calloc((size_t)n, 1);     /* owned */
    for (int i = 0; i < n; i++) {
        if (done && done[i])
            continue;
        infer_batch_item *it = items[i];
        if (!done || !item_stackable(it)) {
            run_alone(it);
            continue;
        }
        int k = 0, rows = 0;
        for (int j = i; j < n; j++) {
            infer_batch_item *o = items[j];
            if (done[j] || o->model != it->model || o->op != it->op || !item_stackable(o) ||
                rows + o->n > INFER_BATCH_ROWS_MAX)
                continue;
            group[k++] = o;
            rows += o->n;
            done[j] = 1;
        }
        if (k == 1)
            run_alone(it);
        else
            run_stacked(group, k, rows);
    }
    free(done);
}
