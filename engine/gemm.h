/* gemm: the single-precision matrix products of the engine.
 *
 *     gemm(GEMM_N, GEMM_T, M, N, K, a, lda, b, ldb, 0, c, ldc);  // c = a . b^T
 *
 * Row-major like cblas_sgemm with alpha = 1 and beta = 0 (accumulate = 0) or
 * 1 (accumulate = 1). On CPUs with AVX-512 the products run on vaed's own
 * kernels: OpenBLAS may be held to its AVX2 kernels (OPENBLAS_CORETYPE, which
 * some machines set because older builds misbehave on newer CPUs), and the
 * shapes of a VAE (a batch of 1 to 128 rows against weights of a few hundred
 * by a few hundred) are small enough that OpenBLAS's copying of both operands
 * into its own layout costs as much as the arithmetic. The kernels need no
 * copy: every variant reads its operands where they are. Elsewhere, and for
 * op(a) = a^T together with op(b) = b^T, gemm calls OpenBLAS: sgemv for one
 * or two rows of a . b^T (which sgemm would first copy all of b for), else
 * sgemm.
 *
 * gemm_naive is the reference the tests compare with (double accumulators).
 * The caller owns a, b and c; gemm allocates nothing (the AVX-512 path
 * copies a small b^T onto its stack) and is thread-safe.
 */
#ifndef GEMM_H
#define GEMM_H

typedef enum { GEMM_N = 0, GEMM_T = 1 } gemm_trans;

/* c: (M, N) = op(a): (M, K) . op(b): (K, N), plus c when accumulate is 1.
 * op(a) = a, an (M, K) matrix with row stride lda, or a^T of a (K, M) one;
 * likewise op(b). */
void gemm(gemm_trans ta, gemm_trans tb, int M, int N, int K, const float *a, int lda,
          const float *b, int ldb, int accumulate, float *c, int ldc);
void gemm_naive(gemm_trans ta, gemm_trans tb, int M, int N, int K, const float *a, int lda,
                const float *b, int ldb, int accumulate, float *c, int ldc);
/* 1 when gemm runs on vaed's kernels here, 0 when it hands over to OpenBLAS
 * (set VAED_GEMM=blas in the environment to force the latter). */
int gemm_uses_own_kernels(void);

/* c: (M, N) = a: (M, K) . b^T (b: (N, K), row-major, no accumulation) with
 * each row of c a function of its row of a alone: the same bits whatever M
 * and wherever the row sits in a. A server that stacks the rows of several
 * requests into one product (server/infer_batch) gives each the answer it
 * would have had alone; gemm cannot promise that, as OpenBLAS's sgemv and
 * sgemm blocking and edge kernels sum in orders that depend on M. Every
 * element is one vector accumulator over k in order, then one fixed
 * horizontal sum: AVX-512 runs gemm's own kernels (which are made so),
 * AVX2 + FMA its 8-lane twin here, any other CPU one sgemv a row. */
void gemm_nt_rowwise(int M, int N, int K, const float *a, int lda, const float *b, int ldb,
                     float *c, int ldc);

#endif
