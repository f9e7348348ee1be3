/* rng: an explicit-state generator (xoshiro256**), seeded by splitmix64.
 *
 *     rng_state r;
 *     rng_seed(&r, seed);                 // any seed, 0 included
 *     float u = rng_uniform(&r);          // [0, 1)
 *     rng_normal_fill(&r, eps, n);        // n draws of N(0, 1)
 *     rng_shuffle(&r, order, n);          // a uniform permutation of order[0..n)
 *
 * Every random draw in vaed goes through a rng_state the caller owns, so a
 * run is repeatable from its seed. The state is plain data: copying it forks
 * the stream, and its four words stored and restored continue it (the
 * trainer's resume file does that). One state per thread: nothing is locked.
 */
#ifndef RNG_H
#define RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_state;

void rng_seed(rng_state *r, uint64_t seed);
uint64_t rng_next_u64(rng_state *r);
/* Uniform in [0, 1) with 24 random bits. */
float rng_uniform(rng_state *r);
/* Uniform integer in [0, n), n > 0. */
uint64_t rng_below(rng_state *r, uint64_t n);
/* n standard normal draws. */
void rng_normal_fill(rng_state *r, float *out, size_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void rng_shuffle(rng_state *r, int *idx, int n);

#endif
