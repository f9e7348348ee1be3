#include "server/json_num.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef unsigned __int128 u128;

/* 5^m for m <= 55 (5^55 < 2^128), high and low 64 bits: the float's
 * mantissa times 5^m is exact in 192 bits, and 10^m = 5^m * 2^m leaves a
 * power of two that is a shift. m goes to 53 (the smallest subnormal rounded
 * to nine digits). */
static const uint64_t pow5[56][2] = {
    {0x0ull, 0x1ull},
    {0x0ull, 0x5ull},
    {0x0ull, 0x19ull},
    {0x0ull, 0x7dull},
    {0x0ull, 0x271ull},
    {0x0ull, 0xc35ull},
    {0x0ull, 0x3d09ull},
    {0x0ull, 0x1312dull},
    {0x0ull, 0x5f5e1ull},
    {0x0ull, 0x1dcd65ull},
    {0x0ull, 0x9502f9ull},
    {0x0ull, 0x2e90eddull},
    {0x0ull, 0xe8d4a51ull},
    {0x0ull, 0x48c27395ull},
    {0x0ull, 0x16bcc41e9ull},
    {0x0ull, 0x71afd498dull},
    {0x0ull, 0x2386f26fc1ull},
    {0x0ull, 0xb1a2bc2ec5ull},
    {0x0ull, 0x3782dace9d9ull},
    {0x0ull, 0x1158e460913dull},
    {0x0ull, 0x56bc75e2d631ull},
    {0x0ull, 0x1b1ae4d6e2ef5ull},
    {0x0ull, 0x878678326eac9ull},
    {0x0ull, 0x2a5a058fc295edull},
    {0x0ull, 0xd3c21bcecceda1ull},
    {0x0ull, 0x422ca8b0a00a425ull},
    {0x0ull, 0x14adf4b7320334b9ull},
    {0x0ull, 0x6765c793fa10079dull},
    {0x2ull, 0x4fce5e3e2502611ull},
    {0xaull, 0x18f07d736b90be55ull},
    {0x32ull, 0x7cb2734119d3b7a9ull},
    {0xfcull, 0x6f7c40458122964dull},
    {0x4eeull, 0x2d6d415b85acef81ull},
    {0x18a6ull, 0xe32246c99c60ad85ull},
    {0x7b42ull, 0x6fab61f00de36399ull},
    {0x2684cull, 0x2e58e9b04570f1fdull},
    {0xc097cull, 0xe7bc90715b34b9f1ull},
    {0x3c2f70ull, 0x86aed236c807a1b5ull},
    {0x12ced32ull, 0xa16a1b11e8262889ull},
    {0x5e0a1fdull, 0x2712875988becaadull},
    {0x1d6329f1ull, 0xc35ca4bfabb9f561ull},
    {0x92efd1b8ull, 0xd0cf37be5aa1cae5ull},
    {0x2deaf189cull, 0x140c16b7c528f679ull},
    {0xe596b7b0cull, 0x643c7196d9ccd05dull},
    {0x47bf19673dull, 0xf52e37f2410011d1ull},
    {0x166bb7f0435ull, 0xc9e717bb45005915ull},
    {0x701a97b150cull, 0xf18376a85901bd69ull},
    {0x23084f676940ull, 0xb7915149bd08b30dull},
    {0xaf298d050e43ull, 0x95d69670b12b7f41ull},
    {0x36bcfc1194751ull, 0xed30f03375d97c45ull},
    {0x111b0ec57e6499ull, 0xa1f4b1014d3f6d59ull},
    {0x558749db77f700ull, 0x29c77506823d22bdull},
    {0x1aba4714957d300ull, 0xd0e549208b31adb1ull},
    {0x85a36366eb71f04ull, 0x147a6da2b7f86475ull},
    {0x29c30f1029939b14ull, 0x6664242d97d9f649ull},
    {0xd0cf4b50cfe20765ull, 0xfff4b4e3f741cf6dull},
};

/* A scaled value: its integer part, and where its fraction lies. */
typedef enum { FRAC_ZERO, FRAC_BELOW_HALF, FRAC_HALF, FRAC_ABOVE_HALF } frac_kind;

typedef struct {
    uint64_t i;
    frac_kind frac;
} scaled;

static frac_kind frac_of(int half, int rest)
{
    return half ? (rest ? FRAC_ABOVE_HALF : FRAC_HALF) : (rest ? FRAC_BELOW_HALF : FRAC_ZERO);
}

/* (yh * 2^64 + yl) / 2^s for s >= 1. */
static scaled shift_down(u128 yh, uint64_t yl, int s)
{
    scaled r;
    int half, rest;
    if (s < 64) {
        r.i = (uint64_t)((yh << (64 - s)) | (yl >> s));
        half = (int)(yl >> (s - 1)) & 1;
        rest = (yl & ((1ull << (s - 1)) - 1)) != 0;
    } else if (s == 64) {
        r.i = (uint64_t)yh;
        half = (int)(yl >> 63);
        rest = (yl << 1) != 0;
    } else {
        int t = s - 64; /* at most 106 - 64 here */
        r.i = (uint64_t)(yh >> t);
        half = (int)(yh >> (t - 1)) & 1;
        rest = yl || (yh & (((u128)1 << (t - 1)) - 1));
    }
    r.frac = frac_of(half, rest);
    return r;
}

/* x * 2^(q-2) * 10^-k, exactly: x < 2^27, and q, k those of a float
 * (shortest or rounded to at most nine digits), so the integer part fits in
 * 64 bits. */
static scaled scale(uint64_t x, int q, int k)
{
    if (k <= 0) {
        /* x * 5^-k / 2^(2 - q + k): a product and a shift */
        const uint64_t *p = pow5[-k];
        int s = 2 - q + k;
        if (!p[0] && s >= 1 && s < 128) {
            /* the common case, |v| in about [1e-27, 1e7): one 64-bit product */
            u128 y = (u128)x * p[1];
            u128 rem = y & (((u128)1 << s) - 1), half = (u128)1 << (s - 1);
            scaled r = {(uint64_t)(y >> s),
                        rem == 0 ? FRAC_ZERO
                                 : rem < half ? FRAC_BELOW_HALF
                                              : rem == half ? FRAC_HALF : FRAC_ABOVE_HALF};
            return r;
        }
        u128 lo = (u128)x * p[1];
        u128 yh = (u128)x * p[0] + (lo >> 64);
        if (s <= 0) {
            scaled r = {(uint64_t)lo << -s, FRAC_ZERO};
            return r;
        }
        return shift_down(yh, (uint64_t)lo, s);
    }
    /* x * 2^(q-2-k) / 5^k: |v| >= 10, rare in an image or a latent */
    u128 num = x, den = (u128)pow5[k][0] << 64 | pow5[k][1];
    int e = q - 2 - k;
    if (e >= 0)
        num <<= e;
    else
        den <<= -e;
    u128 rem = num % den;
    scaled r = {(uint64_t)(num / den),
                rem == 0 ? FRAC_ZERO
                         : 2 * rem < den ? FRAC_BELOW_HALF
                                         : 2 * rem == den ? FRAC_HALF : FRAC_ABOVE_HALF};
    return r;
}

/* floor(x / 2^18) for negative x too (>> of a negative int is the
 * compiler's choice in C). */
static int floor_shift18(int x)
{
    return x >= 0 ? x >> 18 : -((-x + 262143) >> 18);
}

/* The rounding interval of a float, in units of 10^k: the decimals n * 10^k
 * that read back as the float are those with lo < n < hi, or equal to a
 * bound when ends_in (an even mantissa: strtof breaks ties to even). */
typedef struct {
    scaled lo, hi;
    int ends_in;
} interval;

static int inside(const interval *r, uint64_t n)
{
    int above = n > r->lo.i || (r->ends_in && n == r->lo.i && r->lo.frac == FRAC_ZERO);
    int below = n < r->hi.i || (n == r->hi.i && (r->hi.frac != FRAC_ZERO || r->ends_in));
    return above && below;
}

/* n * 2^s against the interval (yl, yr) of 2^s units (or [yl, yr] when
 * ends_in), where n * 2^s fits in 128 bits. */
static int inside_u128(u128 n_s, u128 yl, u128 yr, int ends_in)
{
    return (n_s > yl || (ends_in && n_s == yl)) && (n_s < yr || (ends_in && n_s == yr));
}

/* The shortest decimal n * 10^k that reads back as c * 2^q, nearest of the
 * shortest. asym: c is a power of two above the smallest exponent, so the
 * float below is half as far as the one above. */
static uint32_t shortest(uint32_t c, int q, int asym, int *k_out)
{
    /* 10^k <= the interval's width < 10^(k+1): 2^q, or 3/4 2^q when asym
     * (log10 2 = 78913 / 2^18, log10 3/4 = -32751 / 2^18, exact for every
     * float exponent). The interval then holds at least one multiple of
     * 10^k and at most one of 10^(k+1); v / 10^k is below 2^28. */
    int k = floor_shift18(q * 78913 - (asym ? 32751 : 0));
    uint64_t cb = 4 * (uint64_t)c;
    int ends_in = !(c & 1);
    *k_out = k;
    int sh = 2 - q + k;
    if (k <= 0 && !pow5[-k][0] && sh >= 1 && sh <= 96) {
        /* |v| in about [1e-27, 1e7), every image and latent: the interval's
         * ends and v as exact 128-bit multiples of 2^-sh in units of 10^k */
        u128 p = pow5[-k][1];
        u128 yv = cb * p, yl = yv - (asym ? p : 2 * p), yr = yv + 2 * p;
        uint32_t s = (uint32_t)(yv >> sh), s10 = s / 10 * 10;
        if (s10 && inside_u128((u128)s10 << sh, yl, yr, ends_in))
            return s10;
        if (inside_u128((u128)(s10 + 10) << sh, yl, yr, ends_in))
            return s10 + 10;
        int in_s = inside_u128((u128)s << sh, yl, yr, ends_in);
        int in_t = inside_u128((u128)(s + 1) << sh, yl, yr, ends_in);
        if (in_s && in_t) { /* both read back: the nearer, ties to even */
            u128 rem = yv - ((u128)s << sh), half = (u128)1 << (sh - 1);
            return rem < half || (rem == half && !(s & 1)) ? s : s + 1;
        }
        return in_s ? s : s + 1;
    }
    interval r = {scale(cb - (asym ? 1 : 2), q, k), scale(cb + 2, q, k), ends_in};
    scaled v = scale(cb, q, k);
    uint32_t s = (uint32_t)v.i, s10 = s / 10 * 10; /* s >= 1 */
    if (s10 && inside(&r, s10))
        return s10;
    if (inside(&r, s10 + 10))
        return s10 + 10;
    int in_s = inside(&r, s), in_t = inside(&r, s + 1);
    if (in_s && in_t)
        return v.frac < FRAC_HALF || (v.frac == FRAC_HALF && !(s & 1)) ? s : s + 1;
    return in_s ? s : s + 1;
}

static const uint32_t pow10_u32[10] = {1u,      10u,      100u,      1000u,      10000u,
                                       100000u, 1000000u, 10000000u, 100000000u, 1000000000u};

/* Digits of n < 10^10 (n >= 1). */
static inline __attribute__((always_inline)) int digit_count(uint32_t n)
{
    int d = ((32 - __builtin_clz(n)) * 1233) >> 12; /* log10 2 ~ 1233 / 4096 */
    return d + (n >= pow10_u32[d]);
}

static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

/* Exactly nd digits of n at p, leading zeros included. Written in place, not
 * copied from a scratch buffer: a copy of just-written bytes stalls. */
static void put_digits(char *p, uint32_t n, int nd)
{
    p += nd;
    for (; nd >= 2; nd -= 2) {
        p -= 2;
        memcpy(p, digit_pairs + 2 * (n % 100), 2);
        n /= 100;
    }
    if (nd)
        p[-1] = (char)('0' + n);
}

/* The 8 decimal digits of n < 10^8 (leading zeros included) as ASCII bytes,
 * the first in the low byte: split into 4-digit halves in 32-bit lanes,
 * then 2-digit quarters in 16-bit lanes, then digits in bytes, each
 * division by 100 or 10 a multiplication and a shift exact for the lane's
 * range. No loop, no table. */
static inline __attribute__((always_inline)) uint64_t digits8(uint32_t n)
{
    uint64_t x = (n / 10000) | ((uint64_t)(n % 10000) << 32);
    uint64_t hundreds = ((x * 10486) >> 20) & 0x0000007F0000007Full; /* < 10^4: / 100 */
    uint64_t y = hundreds | ((x - hundreds * 100) << 16);
    uint64_t tens = ((y * 103) >> 10) & 0x000F000F000F000Full; /* < 100: / 10 */
    return (tens | ((y - tens * 10) << 8)) + 0x3030303030303030ull;
}

static void store64(char *p, uint64_t v)
{
    memcpy(p, &v, sizeof v); /* one unaligned store on x86 */
}

/* n * 10^k (n without trailing zeros) in the notation of json_num.h at p,
 * which has JSON_NUM_WIDE bytes of room: whole words are stored and the
 * bytes past the end left for the next number to overwrite. */
#define JSON_NUM_WIDE 24
static char *put_decimal(char *p, uint32_t n, int k)
{
    int nd = digit_count(n);
    int x = nd - 1 + k; /* the exponent of the first digit */
    int ax = x < 0 ? -x : x;
    int len_exp = nd + (nd > 1) + 1 + (x < 0) + (ax >= 10 ? 2 : 1); /* |x| <= 45 */
    int len_plain = k >= 0 ? nd + k : x >= 0 ? nd + 1 : 1 - x + nd;
    /* n's digits, right-aligned in 16 bytes with leading zeros, the first
     * in the low byte: any run of them is a shift, with no branch on how many */
    u128 all = digits8(n / 100000000) | (u128)digits8(n % 100000000) << 64;
    if (len_plain <= len_exp && x < 0) {
        /* "0." and the -k <= 11 digits of n, leading zeros included */
        u128 w = all >> (8 * (16 + k));
        p[0] = '0';
        p[1] = '.';
        store64(p + 2, (uint64_t)w);
        store64(p + 10, (uint64_t)(w >> 64));
        return p + 2 - k;
    }
    if (len_plain <= len_exp) {
        /* digits with the point inside or trailing zeros: rare in images */
        if (k >= 0) {
            put_digits(p, n, nd);
            memset(p + nd, '0', (size_t)k);
        } else {
            put_digits(p, n / pow10_u32[-k], x + 1);
            p[x + 1] = '.';
            put_digits(p + x + 2, n % pow10_u32[-k], -k);
        }
        return p + len_plain;
    }
    /* d.ddde-x: the first digit, the point, the others */
    u128 d = all >> (8 * (16 - nd));
    p[0] = (char)d;
    p[1] = '.';
    store64(p + 2, (uint64_t)(d >> 8));
    char *e = nd > 1 ? p + nd + 1 : p + 1;
    /* 'e', a '-' when negative, one or two digits: one word */
    uint32_t tail = 'e', len = 1;
    if (x < 0)
        tail |= (uint32_t)'-' << (8 * len++);
    if (ax >= 10) {
        tail |= (uint32_t)('0' + ax / 10) << (8 * len++);
        ax %= 10;
    }
    tail |= (uint32_t)('0' + ax) << (8 * len++);
    memcpy(e, &tail, sizeof tail);
    return e + len;
}

/* For each biased exponent whose floats are between about 1e-9 and 3e7
 * (every pixel and nearly every latent): 5^-k, k and the shift sh of the
 * symmetric case of shortest, with which the interval's ends and v in units
 * of 10^k are exact 64-bit multiples of 2^-sh (5^-k < 2^38, the mantissa
 * times 4 < 2^26); sh = 0 elsewhere. Generated from shortest's formulas. */
static const struct {
    uint64_t pow5;
    int8_t k;
    uint8_t sh;
} fast_exp[256] = {
    [97] = {152587890625u, -16, 39},
    [98] = {152587890625u, -16, 38},
    [99] = {152587890625u, -16, 37},
    [100] = {152587890625u, -16, 36},
    [101] = {30517578125u, -15, 36},
    [102] = {30517578125u, -15, 35},
    [103] = {30517578125u, -15, 34},
    [104] = {6103515625u, -14, 34},
    [105] = {6103515625u, -14, 33},
    [106] = {6103515625u, -14, 32},
    [107] = {1220703125u, -13, 32},
    [108] = {1220703125u, -13, 31},
    [109] = {1220703125u, -13, 30},
    [110] = {1220703125u, -13, 29},
    [111] = {244140625u, -12, 29},
    [112] = {244140625u, -12, 28},
    [113] = {244140625u, -12, 27},
    [114] = {48828125u, -11, 27},
    [115] = {48828125u, -11, 26},
    [116] = {48828125u, -11, 25},
    [117] = {9765625u, -10, 25},
    [118] = {9765625u, -10, 24},
    [119] = {9765625u, -10, 23},
    [120] = {9765625u, -10, 22},
    [121] = {1953125u, -9, 22},
    [122] = {1953125u, -9, 21},
    [123] = {1953125u, -9, 20},
    [124] = {390625u, -8, 20},
    [125] = {390625u, -8, 19},
    [126] = {390625u, -8, 18},
    [127] = {78125u, -7, 18},
    [128] = {78125u, -7, 17},
    [129] = {78125u, -7, 16},
    [130] = {78125u, -7, 15},
    [131] = {15625u, -6, 15},
    [132] = {15625u, -6, 14},
    [133] = {15625u, -6, 13},
    [134] = {3125u, -5, 13},
    [135] = {3125u, -5, 12},
    [136] = {3125u, -5, 11},
    [137] = {625u, -4, 11},
    [138] = {625u, -4, 10},
    [139] = {625u, -4, 9},
    [140] = {625u, -4, 8},
    [141] = {125u, -3, 8},
    [142] = {125u, -3, 7},
    [143] = {125u, -3, 6},
    [144] = {25u, -2, 6},
    [145] = {25u, -2, 5},
    [146] = {25u, -2, 4},
    [147] = {5u, -1, 4},
    [148] = {5u, -1, 3},
    [149] = {5u, -1, 2},
    [150] = {1u, 0, 2},
    [151] = {1u, 0, 1},
};

/* shortest() for a float of a fast_exp exponent that is not a power of
 * two, with the rounding interval in 64 bits and the choice made without
 * branches (which candidate wins depends on the data, and a mispredicted
 * branch costs more than all the tests), and trailing zeros dropped: *nd
 * is the digit count of what it returns. */
static inline __attribute__((always_inline)) uint32_t shortest_fast(uint32_t c, int e,
                                                                 int *k_out, int *nd)
{
    uint64_t p = fast_exp[e].pow5, mask = (1ull << fast_exp[e].sh) - 1;
    int sh = fast_exp[e].sh, ends_in = !(c & 1);
    int k = fast_exp[e].k;
    uint64_t yv = 4 * (uint64_t)c * p, yl = yv - 2 * p, yr = yv + 2 * p;
    /* s >= c >= 2^23 (10^k <= 2^q), so s has 7 to 9 digits */
    uint32_t s = (uint32_t)(yv >> sh), q10 = s / 10, s10 = q10 * 10;
    /* the integers inside: lo .. hi, where an end counts when its fraction
     * is 0 and ends_in (lo >= 1: the interval's lower end is above 0) */
    uint32_t lo = (uint32_t)(yl >> sh) + 1 - (ends_in & !(yl & mask));
    uint32_t hi = (uint32_t)(yr >> sh) - (!(yr & mask) & !ends_in);
    /* s <= hi and s + 1 >= lo always (v is inside), and so is s10 + 10 >= lo */
    uint64_t rem = yv & mask, half = 1ull << (sh - 1);
    uint32_t t_nearer = (rem > half) | ((rem == half) & s);
    uint32_t n = s + (s >= lo ? (s + 1 <= hi) & t_nearer : 1);
    /* s or s + 1 is neither a multiple of 10 (that would be s10 or s10 +
     * 10) nor has more digits than s; s10 or s10 + 10 when one is inside
     * (a digit fewer reads back), as q10 or q10 + 1 at k + 1 */
    int ten = (s10 >= lo) | (s10 + 10 <= hi);
    n = ten ? q10 + (s10 < lo) : n;
    k += ten;
    *nd = 7 + (s >= 10000000) + (s >= 100000000) - ten;
    if (ten && n % 10 == 0) { /* more zeros, or q10 + 1 a power of ten */
        do {
            n /= 10;
            k++;
        } while (n % 10 == 0);
        *nd = digit_count(n);
    }
    *k_out = k;
    return n;
}

/* v at p (no NUL), any float; returns the end. */
static char *put_float_any(char *p, float v, int digits)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t exp_bits = (bits >> 23) & 0xFF, c = bits & 0x7FFFFF;
    if (exp_bits == 0xFF) {
        memcpy(p, "null", 4);
        return p + 4;
    }
    *p = '-';
    p += bits >> 31;
    if (!exp_bits && !c) {
        *p++ = '0';
        return p;
    }
    int q = -149, asym = 0;
    if (exp_bits) {
        asym = !c && exp_bits > 1;
        c |= 0x800000;
        q = (int)exp_bits - 150;
    }
    int k;
    uint32_t n = shortest(c, q, asym, &k);
    while (n % 10 == 0) {
        n /= 10;
        k++;
    }
    int nd = digit_count(n);
    if (digits >= 1 && nd > digits) {
        /* v's exact value rounded to digits digits: the same first-digit
         * exponent as the shortest (both have two or more digits, and a
         * power of ten between them would have been shorter still) */
        k += nd - digits;
        scaled r = scale(4 * (uint64_t)c, q, k);
        n = (uint32_t)r.i + (r.frac == FRAC_ABOVE_HALF || (r.frac == FRAC_HALF && (r.i & 1)));
        while (n % 10 == 0) {
            n /= 10;
            k++;
        }
    }
    return put_decimal(p, n, k);
}

/* The floats of images and latents, between about 1e-9 and 1 in size,
 * take a short path in two steps: their decimal n * 10^k (float_parts), the
 * shortest or rounded to a digit count, then its text (put_parts). Anything
 * else is "slow" and left to put_float_any. (Running the first step on a block of
 * floats before the second was slower, measured.) */
typedef struct {
    uint32_t n;
    int8_t k, nd;
    uint8_t negative, slow;
} float_decimal;

static inline __attribute__((always_inline)) void float_parts(float v, int digits,
                                                              float_decimal *d)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t exp_bits = (bits >> 23) & 0xFF, c = bits & 0x7FFFFF;
    d->negative = (uint8_t)(bits >> 31);
    d->slow = !fast_exp[exp_bits].sh || !c || exp_bits >= 127;
    if (d->slow)
        return;
    int k, nd;
    uint32_t n = shortest_fast(c | 0x800000, (int)exp_bits, &k, &nd);
    if (digits && nd > digits) {
        /* v rounded to digits digits, as put_float_any does: at k2 =
         * x - digits + 1, where v * 10^-k2 = 4c * 5^-k2 / 2^sh is exact in
         * 128 bits (x >= -10, so 5^-k2 <= 5^18; sh from 8 to 55) */
        int k2 = nd - digits + k, sh = 2 - ((int)exp_bits - 150) + k2;
        u128 y = (u128)(4 * (uint64_t)(c | 0x800000)) * pow5[-k2][1];
        u128 rem = y & (((u128)1 << sh) - 1), half = (u128)1 << (sh - 1);
        n = (uint32_t)(y >> sh);
        n += rem > half || (rem == half && (n & 1));
        k = k2;
        while (n % 10 == 0) {
            n /= 10;
            k++;
        }
        nd = digit_count(n);
        d->slow = nd - 1 + k >= 0; /* rounded up to 1: not a "0." or "e-" form */
    }
    d->n = n;
    d->k = (int8_t)k;
    d->nd = (int8_t)nd;
}

/* d's text at p (JSON_NUM_WIDE bytes of room; no NUL); returns the end.
 * Below 1, plain decimal is "0." and -k digits, the shorter form while the
 * first digit's exponent x is -3 or more (-2 for one digit), and exponent
 * form is "d.ddde-x" with x from -4 to -10. */
static inline __attribute__((always_inline)) char *put_text(char *p, int negative, int k, int nd,
                                                           u128 all)
{
    int x = nd - 1 + k;
    *p = '-';
    p += negative;
    if (x >= -2 - (nd > 1)) {
        u128 w = all >> (8 * (16 + k)); /* the -k <= 11 digits after "0." */
        p[0] = '0';
        p[1] = '.';
        store64(p + 2, (uint64_t)w);
        store64(p + 10, (uint64_t)(w >> 64));
        return p + 2 - k;
    }
    u128 digs = all >> (8 * (16 - nd)); /* the nd digits of n from the low byte */
    p[0] = (char)digs;
    p[1] = '.';
    store64(p + 2, (uint64_t)(digs >> 8));
    p += nd > 1 ? nd + 1 : 1;
    int ax = -x; /* 4 .. 10 */
    uint32_t tail = ax >= 10 ? 'e' | '-' << 8 | (uint32_t)('1') << 16 | (uint32_t)('0' + ax - 10) << 24
                             : 'e' | '-' << 8 | (uint32_t)('0' + ax) << 16;
    memcpy(p, &tail, sizeof tail);
    return p + 3 + (ax >= 10);
}

/* n's digits right-aligned in 16 bytes, leading zeros included, the first in
 * the low byte: any run of them is a shift (n < 2^28: the ninth digit from
 * the end, top, is the only one above the low 8). */
static inline __attribute__((always_inline)) u128 digits16(uint32_t n)
{
    uint32_t top = n / 100000000;
    return (0x3030303030303030ull + ((uint64_t)top << 56)) |
           (u128)digits8(n - top * 100000000) << 64;
}

static inline __attribute__((always_inline)) char *put_parts(char *p, const float_decimal *d)
{
    return put_text(p, d->negative, d->k, d->nd, digits16(d->n));
}

/* v at p (JSON_NUM_WIDE bytes of room; no NUL); returns the end. */
static inline __attribute__((always_inline)) char *put_float(char *p, float v, int digits)
{
    float_decimal d;
    float_parts(v, digits, &d);
    return d.slow ? put_float_any(p, v, digits) : put_parts(p, &d);
}

size_t json_num_float_digits(char *buf, float v, int digits)
{
    char wide[JSON_NUM_WIDE + 1];
    size_t len = (size_t)(put_float(wide, v, digits) - wide);
    memcpy(buf, wide, len);
    buf[len] = '\0';
    return len;
}

size_t json_num_float(char *buf, float v)
{
    return json_num_float_digits(buf, v, 0);
}

/* ---------- eight floats at a time, on AVX-512 ---------------------------
 * shortest_fast, digits16 and the "0.ddd" text of put_text for eight floats
 * in the 64-bit lanes of a vector (GCC's vector extensions where C's
 * operators say it, intrinsics where a lane's shift count may reach 64),
 * then the eight texts stored one after another. The scalar path spends most
 * of its time in multiplications and shifts that are the same for every
 * float; here one instruction does eight. The formulas are the scalar ones
 * lane by lane (each comparison's -1 / 0 a mask where the scalar code has a
 * condition), so the text is the same, which the tests check on every
 * exponent. A float off the fast path is computed on a stand-in value, its
 * lane ignored, and written by put_float_any; one in exponent form is
 * written by put_text. No AVX2 body: a first one, built on the 64-bit
 * multiplications AVX2 lacks, measured slower than the scalar path, and the
 * 32-bit products used now have not been tried there. */
#if defined(__x86_64__)
#include <immintrin.h>

#define BLOCK 8
typedef uint64_t u64x8 __attribute__((vector_size(8 * BLOCK)));
typedef int64_t i64x8 __attribute__((vector_size(8 * BLOCK)));

enum { LANE_PLAIN, LANE_EXPONENT, LANE_SLOW };

typedef struct {
    uint64_t text_low[BLOCK], text_high[BLOCK]; /* LANE_PLAIN: the text, 16 bytes */
    uint64_t low[BLOCK], high[BLOCK];           /* LANE_EXPONENT: digits16 */
    int64_t k[BLOCK], nd[BLOCK], len[BLOCK];
    uint8_t negative[BLOCK], kind[BLOCK];
} float_block;

/* the gathers read a row of fast_exp as two 8-byte words: pow5, then k, sh */
_Static_assert(sizeof fast_exp[0] == 16 && offsetof(__typeof__(fast_exp[0]), k) == 8 &&
                   offsetof(__typeof__(fast_exp[0]), sh) == 9,
               "fast_exp's row layout");

/* 1 in the lanes where a comparison holds, else 0 */
#define ONE_IF(cmp) ((u64x8)(cmp) & 1)

#define BLOCK_ISA __attribute__((target("avx512f,avx512dq,avx512bw")))

/* Products of 32 bits by 32 bits in each 64-bit lane (vpmuludq: a third of
 * vpmullq's latency, which the chain below is made of), and of each 16 or
 * 32-bit field, when the operands are known to fit. */
static inline __attribute__((always_inline)) BLOCK_ISA u64x8 mul32(u64x8 a, uint64_t b)
{
    return (u64x8)_mm512_mul_epu32((__m512i)a, _mm512_set1_epi64((long long)b));
}

static inline __attribute__((always_inline)) BLOCK_ISA u64x8 mul_fields32(u64x8 a, int b)
{
    return (u64x8)_mm512_mullo_epi32((__m512i)a, _mm512_set1_epi32(b));
}

static inline __attribute__((always_inline)) BLOCK_ISA u64x8 mul_fields16(u64x8 a, short b)
{
    return (u64x8)_mm512_mullo_epi16((__m512i)a, _mm512_set1_epi16(b));
}

BLOCK_ISA static void block_avx512(const float *v, float_block *b)
{
    /* the floats' fields, and fast_exp's row of each exponent by gathers
     * (one of pow5, one of k and sh, 8 bytes after it) */
    u64x8 bits = (u64x8)_mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)v));
    u64x8 e = (bits >> 23) & 0xFF, m = bits & 0x7FFFFF, negative = bits >> 31;
    const long long *rows = (const long long *)fast_exp;
    enum { ROW_WORDS = sizeof fast_exp[0] / 8 };
    u64x8 pow5_e = (u64x8)_mm512_i64gather_epi64((__m512i)(e * ROW_WORDS), rows, 8);
    u64x8 k_sh = (u64x8)_mm512_i64gather_epi64((__m512i)(e * ROW_WORDS + 1), rows, 8);
    u64x8 sh_e = (k_sh >> 8) & 0xFF;
    u64x8 slow = (u64x8)(sh_e == 0) | (u64x8)(m == 0) | (u64x8)(e >= 127);
    /* a slow lane computes on a stand-in on the fast path: exponent 126, m = 1 */
    u64x8 c = (~slow & (m | 0x800000)) | (slow & 0x800001);
    u64x8 p = (~slow & pow5_e) | (slow & fast_exp[126].pow5);
    u64x8 sh = (~slow & sh_e) | (slow & fast_exp[126].sh);
    i64x8 k = (i64x8)((~slow & k_sh) | (slow & (uint8_t)fast_exp[126].k));
    k = (k << 56) >> 56; /* the int8_t's sign */
    u64x8 one = c - c + 1;
    /* shortest_fast */
    u64x8 mask = (one << sh) - 1, ends_in = (c & 1) ^ 1;
    /* 4c < 2^26 times p < 2^38, in two halves of p */
    u64x8 c4 = 4 * c;
    u64x8 yv = (u64x8)_mm512_mul_epu32((__m512i)c4, (__m512i)p) +
               ((u64x8)_mm512_mul_epu32((__m512i)c4, (__m512i)(p >> 32)) << 32);
    u64x8 yl = yv - 2 * p, yr = yv + 2 * p;
    u64x8 s = yv >> sh, q10 = mul32(s, 0xCCCCCCCDull) >> 35; /* s < 2^32 */
    u64x8 s10 = (q10 << 3) + (q10 << 1);
    u64x8 lo = (yl >> sh) + 1 - (ends_in & ONE_IF((yl & mask) == 0));
    u64x8 hi = (yr >> sh) - (ONE_IF((yr & mask) == 0) & (ends_in ^ 1));
    u64x8 rem = yv & mask, half = one << (sh - 1);
    u64x8 t_nearer = ONE_IF(rem > half) | (ONE_IF(rem == half) & s);
    u64x8 s_in = (u64x8)(s >= lo);
    u64x8 n = s + ((s_in & ONE_IF(s + 1 <= hi) & t_nearer) | (~s_in & 1));
    u64x8 ten = (u64x8)(s10 >= lo) | (u64x8)(s10 + 10 <= hi);
    n = (ten & (q10 + ONE_IF(s10 < lo))) | (~ten & n);
    k += (i64x8)(ten & 1);
    for (;;) { /* trailing zeros (only where ten) */
        u64x8 q = mul32(n, 0xCCCCCCCDull) >> 35, zero = (u64x8)(n == (q << 3) + (q << 1));
        if (!_mm512_test_epi64_mask((__m512i)zero, (__m512i)zero))
            break;
        n = (zero & q) | (~zero & n);
        k -= (i64x8)zero;
    }
    u64x8 nd = one; /* n < 2^28 < 10^9 */
    for (uint64_t t = 10; t <= 100000000; t *= 10) nd += ONE_IF(n >= t);
    /* digits16 and digits8, n / 10000 as the compiler writes it for 32 bits */
    u64x8 top = ONE_IF(n >= 100000000) + ONE_IF(n >= 200000000);
    u64x8 low8 = n - mul32(top, 100000000);
    u64x8 q4 = mul32(low8, 0xD1B71759ull) >> 45;
    u64x8 x = q4 | ((low8 - mul32(q4, 10000)) << 32);
    /* as digits8, each 32-bit field's product in 32 bits, each 16-bit one's
     * in 16 (x's fields < 10^4, hundreds' < 100, y's 16-bit fields < 100) */
    u64x8 hundreds = (mul_fields32(x, 10486) >> 20) & 0x0000007F0000007Full;
    u64x8 y = hundreds | ((x - mul_fields16(hundreds, 100)) << 16);
    u64x8 tens = (mul_fields16(y, 103) >> 10) & 0x000F000F000F000Full;
    u64x8 high = (tens | ((y - mul_fields16(tens, 10)) << 8)) + 0x3030303030303030ull;
    u64x8 low = (top << 56) + 0x3030303030303030ull;
    /* put_text's plain form: "0." and w = (high:low) >> 8 * (16 + k), the
     * shifts of 64 bits or more giving 0 (vpsrlvq, vpsllvq) */
    __m512i shift = (__m512i)((u64x8)(k + 16) * 8), lw = (__m512i)low, hw = (__m512i)high;
    __m512i c64 = _mm512_set1_epi64(64);
    u64x8 w_low = (u64x8)_mm512_or_si512(
        _mm512_or_si512(_mm512_srlv_epi64(lw, shift),
                        _mm512_sllv_epi64(hw, _mm512_sub_epi64(c64, shift))),
        _mm512_srlv_epi64(hw, _mm512_sub_epi64(shift, c64)));
    u64x8 w_high = (u64x8)_mm512_srlv_epi64(hw, shift);
    u64x8 t_low = (w_low << 16) | 0x2E30, t_high = (w_low >> 48) | (w_high << 16); /* "0." */
    u64x8 neg = -negative; /* then '-' before it */
    t_high = (neg & ((t_high << 8) | (t_low >> 56))) | (~neg & t_high);
    t_low = (neg & ((t_low << 8) | '-')) | (~neg & t_low);
    u64x8 len = 2 - (u64x8)k + negative;
    i64x8 xe = (i64x8)nd - 1 + k;
    i64x8 plain = xe >= -2 - (i64x8)ONE_IF(nd > 1);
    memcpy(b->text_low, &t_low, sizeof t_low);
    memcpy(b->text_high, &t_high, sizeof t_high);
    memcpy(b->low, &low, sizeof low);
    memcpy(b->high, &high, sizeof high);
    memcpy(b->k, &k, sizeof k);
    memcpy(b->nd, &nd, sizeof nd);
    memcpy(b->len, &len, sizeof len);
    u64x8 kind = (slow & LANE_SLOW) | (~slow & ~(u64x8)plain & LANE_EXPONENT);
    _mm_storel_epi64((__m128i *)b->kind, _mm512_cvtepi64_epi8((__m512i)kind));
    _mm_storel_epi64((__m128i *)b->negative, _mm512_cvtepi64_epi8((__m512i)negative));
}

typedef void (*block_fn)(const float *v, float_block *b);
static const struct {
    const char *name;
    block_fn fn;
} block_kernels[] = {{"avx512", block_avx512}, {"scalar", NULL}};
#define N_BLOCK_KERNELS ((int)(sizeof block_kernels / sizeof block_kernels[0]))

static int cpu_has_kernel(int i)
{
    if (block_kernels[i].fn == block_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512bw");
    return 1;
}

static int block_kernel = -1; /* an index into block_kernels; -1 until the first call */

static int active_kernel(void)
{
    int i = __atomic_load_n(&block_kernel, __ATOMIC_RELAXED);
    if (i < 0) {
        for (i = 0; !cpu_has_kernel(i); i++) {}
        __atomic_store_n(&block_kernel, i, __ATOMIC_RELAXED);
    }
    return i;
}
#endif

const char *json_num_floats_kernel(void)
{
#if defined(__x86_64__)
    return block_kernels[active_kernel()].name;
#else
    return "scalar";
#endif
}

int json_num_floats_use(const char *name)
{
#if defined(__x86_64__)
    for (int i = 0; i < N_BLOCK_KERNELS; i++)
        if (strcmp(block_kernels[i].name, name) == 0 && cpu_has_kernel(i)) {
            __atomic_store_n(&block_kernel, i, __ATOMIC_RELAXED);
            return 1;
        }
    return 0;
#else
    return strcmp(name, "scalar") == 0;
#endif
}

size_t json_num_floats(char *out, const float *v, size_t n, int digits)
{
    char *p = out, *end = out + n * JSON_NUM_FLOAT_MAX;
    size_t i = 0;
#if defined(__x86_64__)
    block_fn fn = block_kernels[active_kernel()].fn;
    /* shortest only (a digit count is the rare request), and while whole
     * words fit: each float writes at most JSON_NUM_WIDE bytes, a comma 1 */
    for (; fn && !digits && i + BLOCK <= n && end - p >= BLOCK * (JSON_NUM_WIDE + 1); i += BLOCK) {
        float_block b;
        fn(v + i, &b);
        for (int j = 0; j < BLOCK; j++) {
            if (i + (size_t)j)
                *p++ = ',';
            if (b.kind[j] == LANE_PLAIN) {
                store64(p, b.text_low[j]);
                store64(p + 8, b.text_high[j]);
                p += b.len[j];
            } else if (b.kind[j] == LANE_EXPONENT) {
                p = put_text(p, b.negative[j], (int)b.k[j], (int)b.nd[j],
                             b.low[j] | (u128)b.high[j] << 64);
            } else {
                p = put_float_any(p, v[i + j], 0);
            }
        }
    }
#endif
    for (; i < n; i++) {
        if (i)
            *p++ = ',';
        if (end - p >= JSON_NUM_WIDE) {
            p = put_float(p, v[i], digits);
        } else { /* the last few: through a buffer with room for whole words */
            char wide[JSON_NUM_WIDE];
            size_t len = (size_t)(put_float(wide, v[i], digits) - wide);
            memcpy(p, wide, len);
            p += len;
        }
    }
    return (size_t)(p - out);
}
