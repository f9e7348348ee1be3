#include "server/json_num.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef unsigned __int128 u128;

/* 10^k for k <= 38 (10^38 < 2^128). */
static u128 pow10_u128(int k)
{
    static const uint64_t small[20] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull,
                                       1000000ull, 10000000ull, 100000000ull, 1000000000ull,
                                       10000000000ull, 100000000000ull, 1000000000000ull,
                                       10000000000000ull, 100000000000000ull,
                                       1000000000000000ull, 10000000000000000ull,
                                       100000000000000000ull, 1000000000000000000ull,
                                       10000000000000000000ull};
    if (k < 20)
        return small[k];
    return (u128)small[19] * small[k - 19];
}

/* round(m * 2^e * 10^k) to nearest, ties to even, when it is exact in 128
 * bits; returns 0 (and leaves *out) when it is not. m < 2^24. */
static int scaled_round(uint32_t m, int e, int k, uint64_t *out)
{
    u128 num, den;
    if (k >= 0) {
        if (k > 31)
            return 0;
        num = (u128)m * pow10_u128(k); /* < 2^24 * 2^103 */
        den = 1;
    } else {
        if (-k > 38)
            return 0;
        num = m;
        den = pow10_u128(-k);
    }
    u128 q, r, half_den;
    if (e > 0) {
        if (e >= 127 || num >> (127 - e))
            return 0; /* num << e would not fit */
        num <<= e;
    }
    if (e < 0 && den == 1) {
        /* the usual case, |v| < 10^9: a division by 2^-e is a shift */
        if (-e >= 127)
            return 0;
        q = num >> -e;
        r = num & (((u128)1 << -e) - 1);
        half_den = (u128)1 << (-e - 1);
        if (r > half_den || (r == half_den && (q & 1)))
            q++;
    } else {
        if (e < 0) {
            if (-e >= 127 || den >> (127 + e))
                return 0;
            den <<= -e;
        }
        q = num / den;
        r = num % den;
        if (r > den - r || (r == den - r && (q & 1)))
            q++;
    }
    if (q >> 63)
        return 0;
    *out = (uint64_t)q;
    return 1;
}

size_t json_num_float(char *buf, float v)
{
    if (!isfinite(v))
        return (size_t)snprintf(buf, JSON_NUM_FLOAT_MAX, "%.9g", (double)v);
    char *p = buf;
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (bits >> 31)
        *p++ = '-';
    uint32_t exp_bits = (bits >> 23) & 0xFF, m = bits & 0x7FFFFF;
    if (!exp_bits && !m) {
        *p++ = '0';
        *p = '\0';
        return (size_t)(p - buf);
    }
    int e;
    if (exp_bits) {
        m |= 0x800000;
        e = (int)exp_bits - 150;
    } else {
        e = -149; /* subnormal */
    }
    /* Nine digits: N = round(|v| * 10^k) in [10^8, 10^9), decimal exponent
     * X = 8 - k. floor(log2 |v| * log10 2) is floor(log10 |v|) or one
     * less; the check fixes it. */
    int e2 = e + 31 - __builtin_clz(m); /* floor(log2 |v|) */
    int k = 8 - (e2 >= 0 ? e2 * 78913 >> 18 : -((-e2 * 78913 + 262143) >> 18)); /* log10 2 */
    uint64_t N = 0;
    int ok = 0;
    for (int tries = 0; tries < 3; tries++) {
        if (!scaled_round(m, e, k, &N))
            break;
        if (N >= 1000000000ull) {
            k--; /* rounding carried into a tenth digit, or log10 was low */
            continue;
        }
        if (N < 100000000ull) {
            k++;
            continue;
        }
        ok = 1;
        break;
    }
    if (!ok)
        return (size_t)snprintf(buf, JSON_NUM_FLOAT_MAX, "%.9g", (double)v);
    int X = 8 - k;
    char d[9];
    for (int i = 8; i >= 0; i--) {
        d[i] = (char)('0' + N % 10);
        N /= 10;
    }
    int nd = 9;
    while (nd > 1 && d[nd - 1] == '0') nd--; /* %g drops trailing zeros */
    if (X >= -4 && X < 9) {
        if (X < 0) {
            *p++ = '0';
            *p++ = '.';
            for (int i = 0; i < -X - 1; i++) *p++ = '0';
            memcpy(p, d, (size_t)nd);
            p += nd;
        } else {
            int ip = X + 1; /* digits before the point */
            for (int i = 0; i < ip; i++) *p++ = i < nd ? d[i] : '0';
            if (nd > ip) {
                *p++ = '.';
                memcpy(p, d + ip, (size_t)(nd - ip));
                p += nd - ip;
            }
        }
    } else {
        *p++ = d[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, d + 1, (size_t)(nd - 1));
            p += nd - 1;
        }
        *p++ = 'e';
        *p++ = X < 0 ? '-' : '+';
        int ax = X < 0 ? -X : X;
        if (ax >= 100)
            *p++ = (char)('0' + ax / 100);
        *p++ = (char)('0' + ax / 10 % 10);
        *p++ = (char)('0' + ax % 10);
    }
    *p = '\0';
    return (size_t)(p - buf);
}
