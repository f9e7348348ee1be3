/* gemm: the single-precision matrix products of the engine.
 *
 *     gemm(GEMM_N, GEMM_T, M, N, K, a, lda, b, ldb, 0, c, ldc);  // c = a . b^T
 *
 * Row-major like cblas_sgemm with alpha = 1 and beta = 0 (accumulate = 0) or
 * 1 (accumulate = 1). On CPUs with AVX2 and FMA but no AVX-512, op(a) . b
 * (either op(a)) runs on a 6 x 16 AVX2 kernel that reads both operands where
 * they are (1.05-1.3x OpenBLAS on the MLP's shapes here, and none of
 * OpenBLAS's copies), the rest on OpenBLAS. On CPUs with AVX-512 the products run on vaed's own
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
/* Which of vaed's kernels gemm runs here: GEMM_OWN_AVX512 (all but
 * a^T . b^T), GEMM_OWN_AVX2 (op(a) . b), or GEMM_OWN_NONE: all on OpenBLAS
 * (set VAED_GEMM=blas in the environment to force the latter). */
enum { GEMM_OWN_NONE = 0, GEMM_OWN_AVX2 = 1, GEMM_OWN_AVX512 = 2 };
int gemm_uses_own_kernels(void);

/* The AVX2 + FMA kernel itself, for callers that feed it their own operands
 * (conv.c's implicit GEMM); only on x86-64 CPUs with AVX2 and FMA. One tile
 * of mr <= 6 rows by 16 columns: sum over k < kc of a(r, k) * b(k, l) with
 * a(r, k) = a[r*ars + k*acs] and row k of b at b + k*ldb; masked: read only
 * the first nr columns of b. The first nr (<= 16) columns go to out (row r
 * at out + r*ldo): GEMM_TO_TILE (all 16, nr ignored), GEMM_TO_C_SET (bias[r]
 * + sum, bias may be NULL) or GEMM_TO_C_ADD (out += sum). */
typedef enum { GEMM_TO_TILE, GEMM_TO_C_SET, GEMM_TO_C_ADD } gemm_dest;
/* The kernel's packed layout: columns 0 .. nr-1 (nr <= 16) of b's K rows
 * into dst as K rows of 16, zeros after nr (any CPU). */
void gemm_pack_panel16(float *dst, const float *b, long ldb, int K, int nr);
void gemm_kernel_6x16(int mr, int nr, int masked, int kc, const float *a, long ars, long acs,
                      const float *b, long ldb, gemm_dest dest, float *out, long ldo,
                      const float *bias);
/* The same contract on AVX-512F with mr <= 12 rows (only on x86-64 CPUs
 * with AVX-512F): one 16-lane register per row, each lane summing in the
 * same k order, so a tile has the same bits as gemm_kernel_6x16 gives it. */
void gemm_kernel_12x16(int mr, int nr, int masked, int kc, const float *a, long ars, long acs,
                       const float *b, long ldb, gemm_dest dest, float *out, long ldo,
                       const float *bias);

/* Two such tiles side by side (AVX-512F only): 12 rows by nr <= 32 columns,
 * columns 0-15 from the packed panel b0 and 16-31 from b1 (kc rows of 16
 * each), to out as GEMM_TO_C_SET or GEMM_TO_C_ADD say (not GEMM_TO_TILE);
 * each half has the bits gemm_kernel_12x16 gives it. */
void gemm_kernel_12x32(int mr, int nr, int kc, const float *a, long ars, long acs,
                       const float *b0, const float *b1, gemm_dest dest, float *out, long ldo,
                       const float *bias);

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
