/* infer_batch: one engine call for the rows of several inference requests
 * (dynamic batching: server/compute_pool gathers the requests, api_infer
 * turns each into an item of rows in and buffers out).
 *
 *     infer_batch_item a = {.op = INFER_BATCH_ENCODE, .model = m, .n = 3, .in = x,
 *                           .out = mu, .out2 = logvar};
 *     infer_batch_item *items[] = {&a, &b, ...};
 *     infer_batch_run(items, n);     // each item's status, its outputs filled
 *
 * Items of one model (the same vae_model, i.e. the same cached handle) and
 * one op are stacked, in order, into calls of at most INFER_BATCH_ROWS_MAX
 * rows (an item with more runs alone), and the outputs split back. Each
 * item's rows come out with the bits one call of its own gives: every call,
 * stacked or not, runs on a workspace whose rows are independent
 * (vae_workspace_set_rows_independent: the MLP's products on gemm_nt_rowwise),
 * which tests/unit/test_infer_batch.c checks. A conv model's items run one
 * call each, on the usual products: its convolutions make no such promise
 * (their kernels are not written for it), so stacking them could change an
 * answer's bits.
 *
 * Everything an item points to is the caller's; infer_batch allocates the
 * stacked copies and the workspace of a call and frees them before it
 * returns. Out of memory for the stacked copies, the items run one call
 * each (same bits, less speed). Each engine call is counted in /metrics
 * (metrics_observe_infer_batch). Thread-safe: items of one call share
 * nothing with another call's.
 */
#ifndef INFER_BATCH_H
#define INFER_BATCH_H

#include "engine/vae.h"

/* Rows of one engine call: API_INFER_MAX_N, the most one request has, so
 * that a batch's memory is that of one large request. */
#define INFER_BATCH_ROWS_MAX 1024

typedef enum {
    INFER_BATCH_ENCODE, /* x (n, D) -> mu, logvar (n, latent) */
    INFER_BATCH_DECODE  /* z (n, latent) -> x_mean (n, D) */
} infer_batch_op;

typedef struct {
    infer_batch_op op;
    const vae_model *model;
    int n;                      /* rows, >= 1 */
    const float *in;            /* encode: x; decode: z */
    const int *labels;          /* encode, conditional model: n labels; else NULL */
    const float *label_weights; /* decode, conditional model: (n, n_classes); else NULL */
    float *out;                 /* encode: mu; decode: x_mean */
    float *out2;                /* encode: logvar; decode: unused */
    vae_status status;          /* set by infer_batch_run */
} infer_batch_item;

/* Runs every item (status VAE_OK, or the engine's error: VAE_ERR_ARG for a
 * label out of range or too many rows for memory, ...). */
void infer_batch_run(infer_batch_item *const *items, int n);

#endif
