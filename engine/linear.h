/* linear: the fully connected layer of every architecture, on gemm.
 *
 * Row-major batches, PyTorch's weight layout (w: (out, in)):
 *     linear_forward(y, x, w, b, B, in, out);             // y = x . w^T + b
 *     linear_backward(dx, dw, db, dy, x, w, B, in, out);  // dw, db += ...; dx = ... when not NULL
 *
 * Like every backward pass of the engine (conv.h's too), linear_backward
 * adds into the parameter gradients, so that zeroing them is one call per
 * step (vae_zero_grad) and a tensor used twice sums its gradients; the
 * caller owns all the buffers.
 */
#ifndef LINEAR_H
#define LINEAR_H

/* y: (B, out) = x: (B, in) . w^T, no bias. */
void linear_matmul_wt(float *y, const float *x, const float *w, int B, int in, int out);
/* y = x . w^T + b */
void linear_forward(float *y, const float *x, const float *w, const float *b, int B, int in,
                    int out);
/* The same two for inference: each row of y a function of its row of x
 * alone, whatever B (gemm_nt_rowwise), so rows stacked from several
 * requests come out as they would one request at a time. */
void linear_matmul_wt_rowwise(float *y, const float *x, const float *w, int B, int in, int out);
void linear_forward_rowwise(float *y, const float *x, const float *w, const float *b, int B,
                            int in, int out);
/* dw: (out, in) += dy^T . x ; db += column sums of dy ; dx: (B, in) = dy . w
 * (overwritten; skipped when dx is NULL). */
void linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int B, int in, int out);
/* The two halves of it. dw rows [r0, r1) and db[r0, r1) from the same
 * columns of dy, added (accumulate 1) or written (0): a step whose every
 * gradient comes from one call per layer needs no zeroing, and threads that
 * share a batch can each write their rows of dw over all of its rows (one
 * call per thread's part of the batch). */
void linear_backward_params(float *dw, float *db, const float *dy, const float *x, int B, int in,
                            int out, int r0, int r1, int accumulate);
/* dx: (B, in) = dy . w (overwritten) */
void linear_backward_input(float *dx, const float *dy, const float *w, int B, int in, int out);

#endif
