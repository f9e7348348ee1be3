/* rng: xoshiro256** with splitmix64 seeding, uniform, normal (Box-Muller)
 * and shuffles. See rng.h. */
#include "engine/rng.h"

#include <math.h>

/* splitmix64 spreads any seed (0 included) over the 256-bit state, as the
 * xoshiro authors recommend. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(rng_state *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next_u64(rng_state *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float rng_uniform(rng_state *r) { return (float)(rng_next_u64(r) >> 40) * (1.0f / 16777216.0f); }

uint64_t rng_below(rng_state *r, uint64_t n)
{
    /* Rejection keeps the draw unbiased for any n. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do {
        v = rng_next_u64(r);
    } while (v >= limit);
    return v % n;
}

void rng_normal_fill(rng_state *r, float *out, size_t n)
{
    /* Box-Muller in double, both outputs used; u1 in (0, 1] so log is finite. */
    size_t i = 0;
    while (i < n) {
        double u1 = ((double)(rng_next_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
        double u2 = (double)(rng_next_u64(r) >> 11) * (1.0 / 9007199254740992.0);
        double rad = sqrt(-2.0 * log(u1));
        double th = 6.283185307179586 * u2;
        out[i++] = (float)(rad * cos(th));
        if (i < n) out[i++] = (float)(rad * sin(th));
    }
}

void rng_shuffle(rng_state *r, int *idx, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1);
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
