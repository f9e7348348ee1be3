/* trainer_dist: what the trainer needs from the processes that train one
 * model together (data parallel), as a table of calls the caller fills, so
 * the engine knows nothing of MPI (cli/dist_mpi.c fills it with MPI's).
 *
 *     trainer_dist d = {.rank = r, .size = n, .ctx = comm,
 *                       .broadcast = my_bcast, .allreduce_sum = my_allreduce};
 *     if (trainer_dist_agree(&d, my_ok, config_text, err, sizeof err)) ...  // every rank
 *     trainer *t = trainer_new_dist(&m, &shard, n_global, test, &d, err, sizeof err);
 *     trainer_dist_share_state(t, err, sizeof err);   // rank 0's state to all
 *
 * Every rank makes the same calls in the same order (they are collective).
 * A call that fails (a rank died, or did not answer in time) returns
 * VAE_ERR_IO with err saying so; the run cannot go on after it, and the
 * caller ends every process (cli/dist_mpi.h: dist_mpi_end).
 *
 * The shard: rank r holds the global training images g with g % size == r,
 * image g at index g / size of its shard (dataset_keep_shard). One process
 * is size 1, and a NULL trainer_dist means one process.
 *
 * The table and ctx are the caller's; the trainer borrows them.
 */
#ifndef TRAINER_DIST_H
#define TRAINER_DIST_H

#include <stddef.h>

#include "engine/vae_status.h"

typedef struct {
    int rank, size;
    void *ctx;
    /* bytes from rank 0's buf into every other rank's buf */
    vae_status (*broadcast)(void *ctx, void *buf, size_t bytes, char *err, size_t errlen);
    /* the element-wise sum over the ranks of buf (n floats), into every
     * rank's buf; every rank adds in the same order, so all get the same bits */
    vae_status (*allreduce_sum)(void *ctx, float *buf, size_t n, char *err, size_t errlen);
} trainer_dist;

/* 1 when d stands for more than one process. */
static inline int trainer_dist_active(const trainer_dist *d) { return d && d->size > 1; }

/* Collective: every rank says whether its setup succeeded (ok) and what
 * makes its run this run (text: the config, the data and its size, the
 * flags). VAE_OK when every rank is ok and has rank 0's text; else
 * VAE_ERR_ARG, err saying which ranks failed or differ (a rank that differs
 * names the first line of text that differs from rank 0's). */
vae_status trainer_dist_agree(const trainer_dist *d, int ok, const char *text, char *err,
                              size_t errlen);

/* Which images of an evaluation set of n_all a rank holds and takes (the
 * sums over the ranks are then the whole set's):
 * TRAINER_DIST_STRIDED  it holds the whole set and takes images g % size == rank;
 * TRAINER_DIST_BLOCK    it holds images first .. of the set and takes its block
 *                       lo .. hi - 1 (lo = n_all * rank / size, hi the next rank's);
 * TRAINER_DIST_SHARD    it holds its shard (dataset_keep_shard): image g, with
 *                       g % size == rank, at g / size. */
typedef enum { TRAINER_DIST_STRIDED = 0, TRAINER_DIST_BLOCK, TRAINER_DIST_SHARD } trainer_dist_kind;

typedef struct {
    trainer_dist_kind kind;
    int n_all;
    int first, lo, hi; /* TRAINER_DIST_BLOCK */
} trainer_dist_part;

/* Where image g of the set is in what rank (of size) holds; -1 when the rank
 * does not take it. */
static inline int trainer_dist_part_index(const trainer_dist_part *p, int rank, int size, int g)
{
    if (p->kind == TRAINER_DIST_BLOCK) return g >= p->lo && g < p->hi ? g - p->first : -1;
    if (g % size != rank) return -1;
    return p->kind == TRAINER_DIST_SHARD ? g / size : g;
}

/* A double carried through a float sum: as two floats, the value and what
 * float rounding left off, summed separately (about 48 bits survive). */
static inline void trainer_dist_split(double v, float *two)
{
    two[0] = (float)v;
    two[1] = (float)(v - (double)two[0]);
}
static inline double trainer_dist_join(const float *two) { return (double)two[0] + two[1]; }

#endif
