#include "engine/gemm.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define GEMM_HAVE_AVX512 1
#else
#define GEMM_HAVE_AVX512 0
#endif

static int own_kernels = -1; /* -1 until the first call looks at the CPU; then GEMM_OWN_* */

int gemm_uses_own_kernels(void)
{
    int v = __atomic_load_n(&own_kernels, __ATOMIC_RELAXED);
    if (v >= 0)
        return v;
    const char *env = getenv("VAED_GEMM");
    v = GEMM_OWN_NONE;
#if GEMM_HAVE_AVX512
    if (!(env && strcmp(env, "blas") == 0)) {
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
            v = GEMM_OWN_AVX512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            v = GEMM_OWN_AVX2;
    }
#else
    (void)env;
#endif
    __atomic_store_n(&own_kernels, v, __ATOMIC_RELAXED);
    return v;
}

#if GEMM_HAVE_AVX512
/* The kernels keep their tile of c in registers (24 of the 32 vector
 * registers) for the whole of K, so c is read and written once; the tile
 * shapes below are small enough that the compiler keeps every accumulator in
 * a register once the loops over rows and vectors are unrolled, which the
 * compile-time tile sizes of each instance allow. */
#define KERN __attribute__((target("avx512f,avx512vl,fma")))
#define KERN_INLINE static inline __attribute__((always_inline)) KERN

/* ---------- op(b) = b: a row of b is contiguous -------------------------
 * c[r][16v + l] (+)= sum over k of a(r, k) * b[k][16v + l] for r < MR and
 * v < NV (the last vector under the mask `last`), a(r, k) = a[r*ars + k*acs].
 * A broadcast of a(r, k) times whole rows of b: no horizontal sums. */
KERN_INLINE void kern_rows(const int MR, const int NV, int K, const float *a, long ars, long acs,
                           const float *b, long ldb, __mmask16 last, int acc, float *c, long ldc)
{
    __m512 s[6][4];
    #pragma GCC unroll 8
    for (int r = 0; r < 6; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < 4; v++) s[r][v] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *bk = b + k * ldb;
        const float *ak = a + k * acs;
        __m512 bv[4];
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++)
            bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, bk + 16 * v) : _mm512_loadu_ps(bk + 16 * v);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(ak[r * ars]);
            #pragma GCC unroll 8
            for (int v = 0; v < NV; v++) s[r][v] = _mm512_fmadd_ps(av, bv[v], s[r][v]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
            float *cp = c + r * ldc + 16 * v;
            __m512 out = s[r][v];
            if (acc)
                out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(m, cp));
            _mm512_mask_storeu_ps(cp, m, out);
        }
}

#define ROWS_CASE(MR, NV)                                                                        \
    case ((MR) - 1) * 4 + (NV) - 1:                                                              \
        kern_rows(MR, NV, K, a, ars, acs, b, ldb, last, acc, c, ldc);                            \
        break;
#define ROWS_CASES(MR) ROWS_CASE(MR, 1) ROWS_CASE(MR, 2) ROWS_CASE(MR, 3) ROWS_CASE(MR, 4)

KERN static void kern_rows_any(int MR, int NV, int K, const float *a, long ars, long acs,
                               const float *b, long ldb, __mmask16 last, int acc, float *c,
                               long ldc)
{
    switch ((MR - 1) * 4 + NV - 1) {
        ROWS_CASES(1) ROWS_CASES(2) ROWS_CASES(3) ROWS_CASES(4) ROWS_CASES(5) ROWS_CASES(6)
    default:
        break;
    }
}

/* Columns of c in blocks of 64 outermost: that block of b (K rows of 64)
 * stays in cache while every 6-row tile of a passes over it. */
KERN static void gemm_rows(int M, int N, int K, const float *a, long ars, long acs,
                           const float *b, long ldb, int acc, float *c, long ldc)
{
    for (int j0 = 0; j0 < N; j0 += 64) {
        int nj = N - j0 < 64 ? N - j0 : 64;
        int NV = (nj + 15) / 16, tail = nj - 16 * (NV - 1);
        __mmask16 last = (__mmask16)(tail == 16 ? 0xFFFF : (1u << tail) - 1);
        for (int i0 = 0; i0 < M; i0 += 6) {
            int MR = M - i0 < 6 ? M - i0 : 6;
            kern_rows_any(MR, NV, K, a + i0 * ars, ars, acs, b + j0, ldb, last, acc,
                          c + (long)i0 * ldc + j0, ldc);
        }
    }
}

/* ---------- op(a) = a, op(b) = b^T: rows of both are contiguous in k -----
 * c[r][j] (+)= dot(a row r, b row j) for r < MR, j < NB: a 6 x 4 tile of dot
 * products, 16 products of each at a time, summed across the vector once at
 * the end (four of them at a time by reduce4). */
KERN_INLINE __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    /* per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] and the same for c, d */
    __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
    /* per lane: [a, b, c, d] */
    __m512 abcd = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
                                _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

KERN_INLINE void kern_dots(const int MR, const int NB, int K, const float *a, long lda,
                           const float *b, long ldb, int acc, float *c, long ldc)
{
    __m512 s[6][4];
    #pragma GCC unroll 8
    for (int r = 0; r < 6; r++)
        #pragma GCC unroll 8
        for (int j = 0; j < 4; j++) s[r][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 bv[4];
        #pragma GCC unroll 8
        for (int j = 0; j < NB; j++) bv[j] = _mm512_loadu_ps(b + j * ldb + k);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_loadu_ps(a + r * lda + k);
            #pragma GCC unroll 8
            for (int j = 0; j < NB; j++) s[r][j] = _mm512_fmadd_ps(av, bv[j], s[r][j]);
        }
    }
    if (k < K) {
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 bv[4];
        #pragma GCC unroll 8
        for (int j = 0; j < NB; j++) bv[j] = _mm512_maskz_loadu_ps(m, b + j * ldb + k);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_maskz_loadu_ps(m, a + r * lda + k);
            #pragma GCC unroll 8
            for (int j = 0; j < NB; j++) s[r][j] = _mm512_fmadd_ps(av, bv[j], s[r][j]);
        }
    }
    __mmask8 m4 = (__mmask8)((1u << NB) - 1);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        __m128 sums = reduce4(s[r][0], s[r][1], s[r][2], s[r][3]);
        float *cp = c + r * ldc;
        if (acc)
            sums = _mm_add_ps(sums, _mm_maskz_loadu_ps(m4, cp));
        _mm_mask_storeu_ps(cp, m4, sums);
    }
}

#define DOTS_CASE(MR, NB)                                                                        \
    case ((MR) - 1) * 4 + (NB) - 1:                                                              \
        kern_dots(MR, NB, K, a, lda, b, ldb, acc, c, ldc);                                       \
        break;
#define DOTS_CASES(MR) DOTS_CASE(MR, 1) DOTS_CASE(MR, 2) DOTS_CASE(MR, 3) DOTS_CASE(MR, 4)

KERN static void kern_dots_any(int MR, int NB, int K, const float *a, long lda, const float *b,
                               long ldb, int acc, float *c, long ldc)
{
    switch ((MR - 1) * 4 + NB - 1) {
        DOTS_CASES(1) DOTS_CASES(2) DOTS_CASES(3) DOTS_CASES(4) DOTS_CASES(5) DOTS_CASES(6)
    default:
        break;
    }
}

/* Rows of b (columns of c) in fours outermost: those four rows stay in the
 * first-level cache while every 6-row tile of a streams past them, so b (the
 * weights, the larger operand in a VAE) is read from memory once. */
KERN static void gemm_dots(int M, int N, int K, const float *a, long lda, const float *b,
                           long ldb, int acc, float *c, long ldc)
{
    for (int j0 = 0; j0 < N; j0 += 4) {
        int NB = N - j0 < 4 ? N - j0 : 4;
        for (int i0 = 0; i0 < M; i0 += 6) {
            int MR = M - i0 < 6 ? M - i0 : 6;
            kern_dots_any(MR, NB, K, a + i0 * lda, lda, b + j0 * ldb, ldb, acc,
                          c + (long)i0 * ldc + j0, ldc);
        }
    }
}
#endif


#if GEMM_HAVE_AVX512 /* x86-64: the AVX2 kernel too */
/* ---------- AVX2 + FMA: one 6 x 16 tile ---------------------------------
 * The tile of sums over k < kc of a(r, k) * b(k, l), r < MR, in 12 of the 16
 * vector registers for the whole of kc; b rows are ldb apart, and with
 * masked only the first nr columns of b are read (the edge of a plain
 * matrix). Written to out as dest says, the first nr columns. */
#define KERN2 __attribute__((target("avx2,fma")))
#define KERN2_INLINE static inline __attribute__((always_inline)) KERN2

static const int lane_table[24] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                   -1, -1, -1, -1, 0,  0,  0,  0,  0,  0,  0,  0};

/* the first n (clamped to 0..8) lanes set */
KERN2_INLINE __m256i first_lanes(int n)
{
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(lane_table + 16 - n));
}

KERN2_INLINE void kern2(const int MR, const int masked, int nr, int kc, const float *a, long ars,
                        long acs, const float *b, long ldb, gemm_dest dest, float *out, long ldo,
                        const float *bias)
{
    __m256i m0 = first_lanes(nr), m1 = first_lanes(nr - 8);
    __m256 s[6][2];
    #pragma GCC unroll 8
    for (int r = 0; r < 6; r++) s[r][0] = s[r][1] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++, a += acs, b += ldb) {
        __m256 v0 = masked ? _mm256_maskload_ps(b, m0) : _mm256_loadu_ps(b);
        __m256 v1 = masked ? _mm256_maskload_ps(b + 8, m1) : _mm256_loadu_ps(b + 8);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * ars);
            s[r][0] = _mm256_fmadd_ps(av, v0, s[r][0]);
            s[r][1] = _mm256_fmadd_ps(av, v1, s[r][1]);
        }
    }
    int full = nr >= 16 || dest == GEMM_TO_TILE;
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        float *o = out + r * ldo;
        __m256 lo = s[r][0], hi = s[r][1];
        if (dest == GEMM_TO_C_SET && bias) {
            __m256 bv = _mm256_broadcast_ss(bias + r);
            lo = _mm256_add_ps(lo, bv);
            hi = _mm256_add_ps(hi, bv);
        } else if (dest == GEMM_TO_C_ADD) {
            lo = _mm256_add_ps(lo, full ? _mm256_loadu_ps(o) : _mm256_maskload_ps(o, m0));
            hi = _mm256_add_ps(hi, full ? _mm256_loadu_ps(o + 8) : _mm256_maskload_ps(o + 8, m1));
        }
        if (full) {
            _mm256_storeu_ps(o, lo);
            _mm256_storeu_ps(o + 8, hi);
        } else {
            _mm256_maskstore_ps(o, m0, lo);
            _mm256_maskstore_ps(o + 8, m1, hi);
        }
    }
}

#define KERN2_CASE(MR, MASKED)                                                                  \
    case (MR) * 2 + (MASKED):                                                                    \
        kern2(MR, MASKED, nr, kc, a, ars, acs, b, ldb, dest, out, ldo, bias);                    \
        break;

KERN2 void gemm_kernel_6x16(int mr, int nr, int masked, int kc, const float *a, long ars,
                            long acs, const float *b, long ldb, gemm_dest dest, float *out,
                            long ldo, const float *bias)
{
    switch (mr * 2 + masked) {
        KERN2_CASE(1, 0) KERN2_CASE(1, 1) KERN2_CASE(2, 0) KERN2_CASE(2, 1) KERN2_CASE(3, 0)
        KERN2_CASE(3, 1) KERN2_CASE(4, 0) KERN2_CASE(4, 1) KERN2_CASE(5, 0) KERN2_CASE(5, 1)
        KERN2_CASE(6, 0) KERN2_CASE(6, 1)
    default:
        break;
    }
}

/* b's panel of 16 columns (nr of them, zeros after) as K rows of 16. */
void gemm_pack_panel16(float *dst, const float *b, long ldb, int K, int nr)
{
    for (int k = 0; k < K; k++) {
        const float *src = b + (size_t)k * ldb;
        float *d = dst + (size_t)k * 16;
        int j = 0;
        for (; j < nr; j++) d[j] = src[j];
        for (; j < 16; j++) d[j] = 0.0f;
    }
}

/* At most this K, each 16-column panel of b is first copied (16 KB of
 * stack at most): rows of b a power of two apart (a conv layer's
 * positions) all fall into one set of the first-level cache, and reading
 * them in place ran up to 1.8x slower than OpenBLAS, which copies too. */
#define PANEL_MAX_K 256

/* c (+)= op(a) . b on the 6 x 16 kernel: 16 columns of b outermost, whose
 * K rows stay in cache while every 6-row tile of a passes over them. */
static void gemm_rows_avx2(int M, int N, int K, const float *a, long ars, long acs,
                           const float *b, long ldb, int acc, float *c, long ldc)
{
    float panel[PANEL_MAX_K * 16];
    for (int j0 = 0; j0 < N; j0 += 16) {
        int nr = N - j0 < 16 ? N - j0 : 16, masked = nr < 16;
        const float *bp = b + j0;
        long ldp = ldb;
        if (K <= PANEL_MAX_K && M > 6) {
            gemm_pack_panel16(panel, b + j0, ldb, K, nr);
            bp = panel;
            ldp = 16;
            masked = 0;
        }
        for (int i0 = 0; i0 < M; i0 += 6)
            gemm_kernel_6x16(M - i0 < 6 ? M - i0 : 6, nr, masked, K, a + (size_t)i0 * ars, ars,
                             acs, bp, ldp, acc ? GEMM_TO_C_ADD : GEMM_TO_C_SET,
                             c + (size_t)i0 * ldc + j0, ldc, NULL);
    }
}
#endif

/* 32 KiB of stack at most: gemm runs on request threads too. */
#define SMALL_BT_FLOATS 8192
#define SMALL_BT_MAX_K 64

void gemm(gemm_trans ta, gemm_trans tb, int M, int N, int K, const float *a, int lda,
          const float *b, int ldb, int accumulate, float *c, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            for (int i = 0; i < M; i++) memset(c + (size_t)i * ldc, 0, sizeof(float) * N);
        return;
    }
#if GEMM_HAVE_AVX512
    if (gemm_uses_own_kernels() == GEMM_OWN_AVX2 && tb == GEMM_N) {
        long ars = ta == GEMM_N ? lda : 1, acs = ta == GEMM_N ? 1 : lda;
        gemm_rows_avx2(M, N, K, a, ars, acs, b, ldb, accumulate, c, ldc);
        return;
    }
    if (gemm_uses_own_kernels() == GEMM_OWN_AVX512) {
        if (tb == GEMM_N) {
            long ars = ta == GEMM_N ? lda : 1, acs = ta == GEMM_N ? 1 : lda;
            gemm_rows(M, N, K, a, ars, acs, b, ldb, accumulate, c, ldc);
            return;
        }
        if (ta == GEMM_N && K <= SMALL_BT_MAX_K && K * N <= SMALL_BT_FLOATS) {
            /* A short K leaves the dot kernel little to sum per horizontal
             * reduction: b^T copied (it is small) goes the row kernel's way. */
            float bt[SMALL_BT_FLOATS];
            for (int j = 0; j < N; j++)
                for (int k = 0; k < K; k++) bt[k * N + j] = b[(size_t)j * ldb + k];
            gemm_rows(M, N, K, a, lda, 1, bt, N, accumulate, c, ldc);
            return;
        }
        if (ta == GEMM_N) {
            gemm_dots(M, N, K, a, lda, b, ldb, accumulate, c, ldc);
            return;
        }
    }
#endif
    if (ta == GEMM_N && tb == GEMM_T && M <= 2) {
        /* A row or two (encoding one image): sgemv reads b as it is, where
         * sgemm would first copy all of it for so little work. */
        for (int r = 0; r < M; r++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, b, ldb, a + (size_t)r * lda, 1,
                        accumulate ? 1.0f : 0.0f, c + (size_t)r * ldc, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta == GEMM_N ? CblasNoTrans : CblasTrans,
                tb == GEMM_N ? CblasNoTrans : CblasTrans, M, N, K, 1.0f, a, lda, b, ldb,
                accumulate ? 1.0f : 0.0f, c, ldc);
}

void gemm_naive(gemm_trans ta, gemm_trans tb, int M, int N, int K, const float *a, int lda,
                const float *b, int ldb, int accumulate, float *c, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = accumulate ? c[(size_t)i * ldc + j] : 0.0;
            for (int k = 0; k < K; k++) {
                float av = ta == GEMM_N ? a[(size_t)i * lda + k] : a[(size_t)k * lda + i];
                float bv = tb == GEMM_N ? b[(size_t)k * ldb + j] : b[(size_t)j * ldb + k];
                s += (double)av * bv;
            }
            c[(size_t)i * ldc + j] = (float)s;
        }
}
