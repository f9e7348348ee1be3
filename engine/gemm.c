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

/* ---------- AVX-512: the same tile contract, up to 12 rows -------------
 * One 16-lane register per row holds what kern2 keeps in two 8-lane ones,
 * and each lane sums its products in the same k order with the same fused
 * multiply-adds, so a tile has the same bits as gemm_kernel_6x16's. Twelve
 * accumulators keep both FMA units busy through their latency; six did not. */
KERN_INLINE void kern16(const int MR, const int masked, int nr, int kc, const float *a, long ars,
                        long acs, const float *b, long ldb, gemm_dest dest, float *out, long ldo,
                        const float *bias)
{
    __mmask16 m = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << (nr < 0 ? 0 : nr)) - 1);
    __m512 s[12];
    #pragma GCC unroll 12
    for (int r = 0; r < 12; r++) s[r] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, a += acs, b += ldb) {
        __m512 v = masked ? _mm512_maskz_loadu_ps(m, b) : _mm512_loadu_ps(b);
        #pragma GCC unroll 12
        for (int r = 0; r < MR; r++) s[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r * ars]), v, s[r]);
    }
    __mmask16 w = dest == GEMM_TO_TILE ? (__mmask16)0xFFFF : m;
    #pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        float *o = out + r * ldo;
        __m512 t = s[r];
        if (dest == GEMM_TO_C_SET && bias)
            t = _mm512_add_ps(t, _mm512_set1_ps(bias[r]));
        else if (dest == GEMM_TO_C_ADD)
            t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(w, o));
        _mm512_mask_storeu_ps(o, w, t);
    }
}

#define KERN16_CASE(MR)                                                                         \
    case (MR) * 2:                                                                               \
        kern16(MR, 0, nr, kc, a, ars, acs, b, ldb, dest, out, ldo, bias);                        \
        break;                                                                                   \
    case (MR) * 2 + 1:                                                                           \
        kern16(MR, 1, nr, kc, a, ars, acs, b, ldb, dest, out, ldo, bias);                        \
        break;

KERN void gemm_kernel_12x16(int mr, int nr, int masked, int kc, const float *a, long ars,
                            long acs, const float *b, long ldb, gemm_dest dest, float *out,
                            long ldo, const float *bias)
{
    switch (mr * 2 + masked) {
        KERN16_CASE(1) KERN16_CASE(2) KERN16_CASE(3) KERN16_CASE(4) KERN16_CASE(5)
        KERN16_CASE(6) KERN16_CASE(7) KERN16_CASE(8) KERN16_CASE(9) KERN16_CASE(10)
        KERN16_CASE(11) KERN16_CASE(12)
    default:
        break;
    }
}

/* Two 12 x 16 tiles side by side, on two packed panels: per k two loads of
 * b and twelve broadcasts feed 24 multiply-adds, where the 12 x 16 tile has
 * thirteen loads for twelve, which bound it by loads (measured on AMD Zen 5:
 * the conv products at about 62 % of the FMA peak). Each lane still sums in
 * k order from zero with the same multiply-adds, so the bits are the 12 x 16
 * tile's for each half. */
KERN_INLINE void kern32(const int MR, int nr, int kc, const float *a, long ars, long acs,
                        const float *b0, const float *b1, gemm_dest dest, float *out, long ldo,
                        const float *bias)
{
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << (nr < 0 ? 0 : nr)) - 1);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
    __m512 s[12][2];
    #pragma GCC unroll 12
    for (int r = 0; r < 12; r++) s[r][0] = s[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++, a += acs, b0 += 16, b1 += 16) {
        __m512 v0 = _mm512_loadu_ps(b0), v1 = _mm512_loadu_ps(b1);
        #pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(a[r * ars]);
            s[r][0] = _mm512_fmadd_ps(av, v0, s[r][0]);
            s[r][1] = _mm512_fmadd_ps(av, v1, s[r][1]);
        }
    }
    #pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        float *o = out + r * ldo;
        __m512 t0 = s[r][0], t1 = s[r][1];
        if (dest == GEMM_TO_C_SET && bias) {
            t0 = _mm512_add_ps(t0, _mm512_set1_ps(bias[r]));
            t1 = _mm512_add_ps(t1, _mm512_set1_ps(bias[r]));
        } else if (dest == GEMM_TO_C_ADD) {
            t0 = _mm512_add_ps(t0, _mm512_maskz_loadu_ps(m0, o));
            t1 = _mm512_add_ps(t1, _mm512_maskz_loadu_ps(m1, o + 16));
        }
        _mm512_mask_storeu_ps(o, m0, t0);
        _mm512_mask_storeu_ps(o + 16, m1, t1);
    }
}

#define KERN32_CASE(MR)                                                                         \
    case MR:                                                                                     \
        kern32(MR, nr, kc, a, ars, acs, b0, b1, dest, out, ldo, bias);                           \
        break;

KERN void gemm_kernel_12x32(int mr, int nr, int kc, const float *a, long ars, long acs,
                            const float *b0, const float *b1, gemm_dest dest, float *out,
                            long ldo, const float *bias)
{
    if (dest == GEMM_TO_TILE)
        return; /* not this kernel's contract */
    switch (mr) {
        KERN32_CASE(1) KERN32_CASE(2) KERN32_CASE(3) KERN32_CASE(4) KERN32_CASE(5)
        KERN32_CASE(6) KERN32_CASE(7) KERN32_CASE(8) KERN32_CASE(9) KERN32_CASE(10)
        KERN32_CASE(11) KERN32_CASE(12)
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

#if defined(__x86_64__)
/* ---------- gemm_nt_rowwise on AVX2: c[r][j] = dot(a row r, b row j) -----
 * One 8-lane accumulator per element over k in steps of 8 (the last step
 * masked), then hsum8: the order of every element's sum depends on K alone,
 * so the tile shapes may follow M freely. 3 x 4 tiles (12 accumulators, 3
 * rows of a and a product register: the 16 ymm registers), and 1 x 8 for
 * the rows left over, which is also a single request's one image: 8
 * independent accumulators keep both FMA units busy on the weights'
 * stream. */
#define KERN2 __attribute__((target("avx2,fma")))
#define KERN2_INLINE static inline __attribute__((always_inline)) KERN2

KERN2_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

KERN2_INLINE void kern_dots8(const int MR, const int NB, int K, const float *a, long lda,
                             const float *b, long ldb, float *c, long ldc)
{
    __m256 s[3][8];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
        #pragma GCC unroll 8
        for (int j = 0; j < NB; j++) s[r][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 av[3];
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) av[r] = _mm256_loadu_ps(a + r * lda + k);
        #pragma GCC unroll 8
        for (int j = 0; j < NB; j++) {
            __m256 bv = _mm256_loadu_ps(b + j * ldb + k);
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++) s[r][j] = _mm256_fmadd_ps(av[r], bv, s[r][j]);
        }
    }
    if (k < K) {
        static const int32_t ramp[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        __m256i m = _mm256_loadu_si256((const __m256i *)(ramp + 8 - (K - k)));
        __m256 av[3];
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) av[r] = _mm256_maskload_ps(a + r * lda + k, m);
        #pragma GCC unroll 8
        for (int j = 0; j < NB; j++) {
            __m256 bv = _mm256_maskload_ps(b + j * ldb + k, m);
            #pragma GCC unroll 8
            for (int r = 0; r < MR; r++) s[r][j] = _mm256_fmadd_ps(av[r], bv, s[r][j]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
        #pragma GCC unroll 8
        for (int j = 0; j < NB; j++) c[r * ldc + j] = hsum8(s[r][j]);
}

#define DOTS8_CASE(MR, NB)                                                                       \
    case (NB):                                                                                   \
        kern_dots8(MR, NB, K, a, lda, b, ldb, c, ldc);                                           \
        break;

KERN2 static void kern_dots8_1(int NB, int K, const float *a, long lda, const float *b, long ldb,
                               float *c, long ldc)
{
    switch (NB) {
        DOTS8_CASE(1, 1) DOTS8_CASE(1, 2) DOTS8_CASE(1, 3) DOTS8_CASE(1, 4)
        DOTS8_CASE(1, 5) DOTS8_CASE(1, 6) DOTS8_CASE(1, 7) DOTS8_CASE(1, 8)
    default:
        break;
    }
}

KERN2 static void kern_dots8_3(int NB, int K, const float *a, long lda, const float *b, long ldb,
                               float *c, long ldc)
{
    switch (NB) {
        DOTS8_CASE(3, 1) DOTS8_CASE(3, 2) DOTS8_CASE(3, 3) DOTS8_CASE(3, 4)
    default:
        break;
    }
}

/* Columns in blocks outermost, as gemm_dots: those rows of b (the weights)
 * stay in the first-level cache while the rows of a pass. */
KERN2 static void gemm_dots8(int M, int N, int K, const float *a, long lda, const float *b,
                             long ldb, float *c, long ldc)
{
    int M3 = M - M % 3;
    for (int j0 = 0; j0 < N; j0 += 8) {
        int nj = N - j0 < 8 ? N - j0 : 8;
        for (int i0 = 0; i0 < M3; i0 += 3)
            for (int jj = 0; jj < nj; jj += 4)
                kern_dots8_3(nj - jj < 4 ? nj - jj : 4, K, a + i0 * lda, lda,
                             b + (j0 + jj) * ldb, ldb, c + (long)i0 * ldc + j0 + jj, ldc);
        for (int i = M3; i < M; i++)
            kern_dots8_1(nj, K, a + i * lda, lda, b + j0 * ldb, ldb, c + (long)i * ldc + j0, ldc);
    }
}

/* A short K (a decoder's first layer, from the latent) leaves a dot
 * product too little to sum per horizontal sum: b^T is copied (it is small)
 * and every element summed over k in order by broadcasts of a(r, k) times a
 * row of b^T, as gemm's AVX-512 path does; tiles of 4 rows x 3 vectors. */
KERN2_INLINE void kern_rows8(const int MR, const int NV, int K, const float *a, long lda,
                             const float *bt, long ldbt, __m256i last, float *c, long ldc)
{
    __m256 s[4][3];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) s[r][v] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m256 bv[3];
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) bv[v] = _mm256_loadu_ps(bt + k * ldbt + 8 * v);
        #pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m256 av = _mm256_broadcast_ss(a + r * lda + k);
            #pragma GCC unroll 8
            for (int v = 0; v < NV; v++) s[r][v] = _mm256_fmadd_ps(av, bv[v], s[r][v]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            if (v == NV - 1)
                _mm256_maskstore_ps(c + r * ldc + 8 * v, last, s[r][v]);
            else
                _mm256_storeu_ps(c + r * ldc + 8 * v, s[r][v]);
        }
}

#define ROWS8_CASE(MR, NV)                                                                       \
    case ((MR) - 1) * 3 + (NV) - 1:                                                              \
        kern_rows8(MR, NV, K, a, lda, bt, ldbt, last, c, ldc);                                   \
        break;
#define ROWS8_CASES(MR) ROWS8_CASE(MR, 1) ROWS8_CASE(MR, 2) ROWS8_CASE(MR, 3)

KERN2 static void kern_rows8_any(int MR, int NV, int K, const float *a, long lda, const float *bt,
                                 long ldbt, __m256i last, float *c, long ldc)
{
    switch ((MR - 1) * 3 + NV - 1) {
        ROWS8_CASES(1) ROWS8_CASES(2) ROWS8_CASES(3) ROWS8_CASES(4)
    default:
        break;
    }
}

/* bt: (K, N) with rows padded to ldbt, a multiple of 8 (the last vector of
 * a row reads its padding, which is stored nowhere). */
KERN2 static void gemm_rows8(int M, int N, int K, const float *a, long lda, const float *bt,
                             long ldbt, float *c, long ldc)
{
    static const int32_t ramp[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int j0 = 0; j0 < N; j0 += 24) {
        int nj = N - j0 < 24 ? N - j0 : 24;
        int NV = (nj + 7) / 8, tail = nj - 8 * (NV - 1);
        __m256i last = _mm256_loadu_si256((const __m256i *)(ramp + 8 - tail));
        for (int i0 = 0; i0 < M; i0 += 4) {
            int MR = M - i0 < 4 ? M - i0 : 4;
            kern_rows8_any(MR, NV, K, a + i0 * lda, lda, bt + j0, ldbt, last,
                           c + (long)i0 * ldc + j0, ldc);
        }
    }
}

/* bt: (K, ldbt) = b^T of b: (N, K), the padding columns N..ldbt zero: 8 x 8
 * blocks through registers (unpack, shuffle, permute), the edges one by
 * one. A single request's decode pays this copy each call, so it is kept
 * to a fraction of the product. */
KERN2 static void transpose_small(float *bt, int ldbt, const float *b, long ldb, int N, int K)
{
    int N8 = N & ~7, K8 = K & ~7;
    for (int j0 = 0; j0 < N8; j0 += 8)
        for (int k0 = 0; k0 < K8; k0 += 8) {
            __m256 r[8], t[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(b + (j0 + i) * ldb + k0);
            for (int i = 0; i < 8; i += 2) {
                t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < 8; i += 4) {
                r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
                r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
            }
            for (int i = 0; i < 4; i++) {
                _mm256_storeu_ps(bt + (k0 + i) * ldbt + j0, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
                _mm256_storeu_ps(bt + (k0 + i + 4) * ldbt + j0,
                                 _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
            }
        }
    for (int j = 0; j < N; j++)
        for (int k = j < N8 ? K8 : 0; k < K; k++) bt[k * ldbt + j] = b[(size_t)j * ldb + k];
    for (int k = 0; k < K; k++)
        for (int j = N; j < ldbt; j++) bt[k * ldbt + j] = 0.0f;
}

static int has_avx2_fma = -1; /* -1 until the first call looks at the CPU */

static int uses_avx2_rowwise(void)
{
    int v = __atomic_load_n(&has_avx2_fma, __ATOMIC_RELAXED);
    if (v < 0) {
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&has_avx2_fma, v, __ATOMIC_RELAXED);
    }
    return v;
}
#endif

void gemm_nt_rowwise(int M, int N, int K, const float *a, int lda, const float *b, int ldb,
                     float *c, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
#if GEMM_HAVE_AVX512
    if (gemm_uses_own_kernels() == GEMM_OWN_AVX512 && K > 0) {
        gemm(GEMM_N, GEMM_T, M, N, K, a, lda, b, ldb, 0, c, ldc);
        return;
    }
#endif
#if defined(__x86_64__)
    int ldbt = (N + 7) & ~7;
    if (uses_avx2_rowwise() && K > 0 && K <= SMALL_BT_MAX_K && K * ldbt <= SMALL_BT_FLOATS) {
        float bt[SMALL_BT_FLOATS];
        transpose_small(bt, ldbt, b, ldb, N, K);
        gemm_rows8(M, N, K, a, lda, bt, ldbt, c, ldc);
        return;
    }
    if (uses_avx2_rowwise() && K > 0) {
        gemm_dots8(M, N, K, a, lda, b, ldb, c, ldc);
        return;
    }
#endif
    for (int r = 0; r < M; r++) /* M calls of one row: each row's bits are its own */
        gemm(GEMM_N, GEMM_T, 1, N, K, a + (size_t)r * lda, lda, b, ldb, 0, c + (size_t)r * ldc,
             ldc);
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
