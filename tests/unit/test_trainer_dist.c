/* Unit tests for the engine's side of data-parallel training
 * (engine/trainer_dist.h, trainer_new_dist): two ranks as two threads of
 * this process, joined by a collective over shared memory (the trainer's
 * table of calls, which cli/dist_mpi.c fills with MPI's in `vaed`), so the
 * sanitizers see every allocation of the distributed paths, leaks included
 * (tests/sh/test_mpi.sh runs the same paths as real MPI ranks). On 1,200
 * MNIST images with free bits, clipping, warm-up, dynamic binarisation and
 * 2 MC samples: 2 ranks end an epoch with the parameters and the test loss
 * of one process (to float rounding), each holding only its block of the
 * test set; the final evaluation (eval_run_part) over the ranks' blocks of
 * the test set and their shards of the training images gives the figures of
 * the whole sets (active units, the IWAE bound on the first 256 images,
 * which span both blocks); the ranks agree on a run or name what differs, a
 * cancel on one rank stops both at the same step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "engine/eval.h"
#include "engine/trainer.h"
#include "engine/trainer_dist.h"

#define MNIST_TRAIN "data/mnist/train-images-idx3-ubyte"
#define MNIST_TRAIN_LABELS "data/mnist/train-labels-idx1-ubyte"
#define RANKS 2

/* The collective: each call is a rendezvous of both threads at a barrier,
 * every rank adding the buffers in rank order, so all get the same bits. */
typedef struct {
    pthread_barrier_t bar;
    void *bufs[RANKS];
} shared_comm;

typedef struct {
    shared_comm *comm;
    int rank;
} rank_ctx;

static vae_status thread_broadcast(void *ctx, void *buf, size_t bytes, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    rank_ctx *r = ctx;
    r->comm->bufs[r->rank] = buf;
    pthread_barrier_wait(&r->comm->bar);
    if (r->rank != 0) memcpy(buf, r->comm->bufs[0], bytes);
    pthread_barrier_wait(&r->comm->bar);
    return VAE_OK;
}

static vae_status thread_allreduce(void *ctx, float *buf, size_t n, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    rank_ctx *r = ctx;
    float *sum = malloc(sizeof(float) * (n ? n : 1)); /* owned here */
    if (!sum) abort(); /* a test's thread: no cmocka assertion here */
    r->comm->bufs[r->rank] = buf;
    pthread_barrier_wait(&r->comm->bar);
    for (size_t i = 0; i < n; i++) {
        float s = 0.0f;
        for (int k = 0; k < RANKS; k++) s += ((float *)r->comm->bufs[k])[i];
        sum[i] = s;
    }
    pthread_barrier_wait(&r->comm->bar); /* every rank has read every buffer */
    memcpy(buf, sum, sizeof(float) * n);
    free(sum);
    return VAE_OK;
}

static dataset train_all, test_set;

static int setup(void **state)
{
    (void)state;
    char err[300];
    if (dataset_load_idx_compact(&train_all, MNIST_TRAIN, MNIST_TRAIN_LABELS, err, sizeof err))
        return -1;
    /* the 300 images after the first 1,200 are the test set */
    assert_int_equal(dataset_load_idx_compact(&test_set, MNIST_TRAIN, MNIST_TRAIN_LABELS, err,
                                              sizeof err), 0);
    memmove(test_set.pixels, test_set.pixels + (size_t)1200 * 784, (size_t)300 * 784);
    memmove(test_set.labels, test_set.labels + 1200, 300);
    dataset_truncate(&test_set, 300);
    dataset_truncate(&train_all, 1200);
    openblas_set_num_threads(1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dataset_free(&train_all);
    dataset_free(&test_set);
    return 0;
}

static void config(vae_config *c)
{
    vae_config_default(c);
    /* a small MLP, and every option that couples the images of a batch */
    c->n_hidden = 1, c->hidden[0] = 64, c->latent = 8, c->batch = 50, c->epochs = 1;
    c->free_bits = 0.3f, c->clip_grad = 20.0f, c->kl_warmup = 10, c->mc_samples = 2;
    c->binarize = VAE_BIN_DYNAMIC, c->seed = 11;
}

/* What one rank (or one process, dist NULL) ran and ended with. */
typedef struct {
    shared_comm *comm;
    int rank;
    const char *agree_text; /* trainer_dist_agree's, NULL: skip it */
    int stop_at_step;       /* this rank's cancel turns on after this step; 0: never */
    vae_status agree_rc, epoch_rc;
    int failed_at;          /* the line of a setup step that failed (threads cannot assert) */
    char err[512];
    float *params;          /* owned: the parameters after the epoch */
    size_t n_params;
    trainer_epoch_metrics m;
    trainer_position pos;
    /* in blocks: eval_run_part of the test blocks and the training shards,
     * and eval_run_iwae_images of the whole sets with the same parameters */
    eval_result test_parts, test_whole, train_parts, train_whole;
} run;

typedef struct {
    atomic_int cancel;
    int stop_at_step;
} stopper;

static void on_progress(void *ctx, const trainer_progress *p)
{
    stopper *s = ctx;
    if (s->stop_at_step && p->step >= s->stop_at_step) s->cancel = 1;
}

#define CHECK(cond)                   \
    do {                              \
        if (!(cond)) {                \
            r->failed_at = __LINE__;  \
            goto end;                 \
        }                             \
    } while (0)

/* 1: the ranks evaluate the test set in blocks (trainer_set_test_part), each
 * holding only its block; set before the ranks start */
static int test_in_blocks;

static void *run_rank(void *arg)
{
    run *r = arg;
    rank_ctx ctx = {r->comm, r->rank};
    trainer_dist d = {.rank = r->rank, .size = RANKS, .ctx = &ctx,
                      .broadcast = thread_broadcast, .allreduce_sum = thread_allreduce};
    const trainer_dist *dist = r->comm ? &d : NULL;
    vae_config c;
    config(&c);
    vae_model m = {0};
    dataset shard = {0};
    trainer *t = NULL;
    CHECK(vae_init(&m, &c, c.seed, r->err, sizeof r->err) == VAE_OK);
    CHECK(dataset_load_idx_compact(&shard, MNIST_TRAIN, MNIST_TRAIN_LABELS, r->err,
                                   sizeof r->err) == VAE_OK);
    dataset_truncate(&shard, 1200);
    CHECK(!dist || dataset_keep_shard(&shard, r->rank, RANKS, r->err, sizeof r->err) == VAE_OK);
    if (dist && r->agree_text) {
        r->agree_rc = trainer_dist_agree(dist, 1, r->agree_text, r->err, sizeof r->err);
        if (r->agree_rc) goto end;
    }
    /* rank k's block: test images 150 k .. 150 k + 149; each holds only its
     * block (borrowed from test_set), as in train_run */
    int lo = test_set.n * r->rank / RANKS, hi = test_set.n * (r->rank + 1) / RANKS;
    dataset block = test_set;
    block.pixels += (size_t)lo * dataset_dim(&test_set);
    block.labels += lo;
    block.n = hi - lo;
    int blocks = dist && test_in_blocks, first = lo;
    t = trainer_new_dist(&m, dist ? &shard : &train_all, 1200, blocks ? &block : &test_set, dist,
                         r->err, sizeof r->err);
    CHECK(t);
    CHECK(!blocks || trainer_set_test_part(t, first + 1, test_set.n, r->err, sizeof r->err) ==
                         VAE_ERR_ARG); /* what it holds would not cover its block */
    CHECK(!blocks || trainer_set_test_part(t, first, test_set.n, r->err, sizeof r->err) == VAE_OK);
    CHECK(!dist || trainer_dist_share_state(t, r->err, sizeof r->err) == VAE_OK);
    stopper s = {.stop_at_step = r->stop_at_step};
    trainer_callbacks cb = {.on_progress = on_progress, .ctx = &s, .cancel = &s.cancel};
    r->epoch_rc = trainer_run_epoch(t, &cb, &r->m, r->err, sizeof r->err);
    trainer_get_position(t, &r->pos);
    r->n_params = m.n_params;
    CHECK((r->params = malloc(sizeof(float) * m.n_params)));
    memcpy(r->params, m.params, sizeof(float) * m.n_params);
    if (blocks) {
        trainer_free(t); /* as train_run_evaluate: the training state first */
        t = NULL;
        trainer_dist_part test_part = {.kind = TRAINER_DIST_BLOCK, .n_all = test_set.n,
                                       .first = lo, .lo = lo, .hi = hi};
        trainer_dist_part train_part = {.kind = TRAINER_DIST_SHARD, .n_all = 1200};
        CHECK(eval_run_part(&m, &block, &test_part, dist, 16, 256, c.seed, &r->test_parts,
                            r->err, sizeof r->err) == VAE_OK);
        CHECK(eval_run_part(&m, &shard, &train_part, dist, 16, 256, c.seed, &r->train_parts,
                            r->err, sizeof r->err) == VAE_OK);
        CHECK(eval_run_iwae_images(&m, &test_set, 16, 256, c.seed, &r->test_whole, r->err,
                                   sizeof r->err) == VAE_OK);
        CHECK(eval_run_iwae_images(&m, &train_all, 16, 256, c.seed, &r->train_whole, r->err,
                                   sizeof r->err) == VAE_OK);
    }
end:
    trainer_free(t);
    dataset_free(&shard);
    vae_free(&m);
    return NULL;
}

/* Runs both ranks (texts: each rank's agreement text, or NULL). */
static void run_ranks(run *r, const char *text0, const char *text1, int stop0)
{
    shared_comm comm;
    pthread_barrier_init(&comm.bar, NULL, RANKS);
    pthread_t th[RANKS];
    const char *texts[RANKS] = {text0, text1};
    for (int k = 0; k < RANKS; k++) {
        r[k] = (run){.comm = &comm, .rank = k, .agree_text = texts[k],
                     .stop_at_step = k == 0 ? stop0 : 0};
        assert_int_equal(pthread_create(&th[k], NULL, run_rank, &r[k]), 0);
    }
    for (int k = 0; k < RANKS; k++) pthread_join(th[k], NULL);
    pthread_barrier_destroy(&comm.bar);
    for (int k = 0; k < RANKS; k++)
        if (r[k].failed_at) fail_msg("rank %d: line %d: %s", k, r[k].failed_at, r[k].err);
}

static void test_two_ranks_train_what_one_process_trains(void **state)
{
    (void)state;
    run one = {.rank = 0};
    run_rank(&one);
    if (one.failed_at) fail_msg("line %d: %s", one.failed_at, one.err);
    assert_int_equal(one.epoch_rc, VAE_OK);
    run two[RANKS];
    run_ranks(two, NULL, NULL, 0);
    for (int k = 0; k < RANKS; k++) {
        assert_int_equal(two[k].epoch_rc, VAE_OK);
        assert_int_equal(two[k].n_params, one.n_params);
    }
    /* the ranks hold the same bits; against one process, float rounding */
    assert_memory_equal(two[0].params, two[1].params, sizeof(float) * one.n_params);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < one.n_params; i++) {
        double dlt = (double)two[0].params[i] - one.params[i];
        num += dlt * dlt;
        den += (double)one.params[i] * one.params[i];
    }
    assert_true(sqrt(num / den) < 1e-5);
    assert_true(fabs(two[0].m.train_loss - one.m.train_loss) < 1e-3);
    assert_true(fabs(two[0].m.test_loss - one.m.test_loss) < 1e-3);
    assert_true(two[0].m.test_loss == two[1].m.test_loss);
    /* each rank evaluating only its block of the test set: the same figures */
    run parts[RANKS];
    test_in_blocks = 1;
    run_ranks(parts, NULL, NULL, 0);
    test_in_blocks = 0;
    for (int k = 0; k < RANKS; k++) {
        assert_int_equal(parts[k].epoch_rc, VAE_OK);
        assert_memory_equal(parts[k].params, two[0].params, sizeof(float) * one.n_params);
        assert_true(parts[k].m.test_loss == parts[0].m.test_loss);
        free(parts[k].params);
    }
    assert_true(fabs(parts[0].m.test_loss - one.m.test_loss) < 1e-3);
    assert_true(fabs(parts[0].m.test_recon - one.m.test_recon) < 1e-3);
    assert_true(fabs(parts[0].m.test_kl - one.m.test_kl) < 1e-3);
    /* the final evaluation over the parts: the whole sets' figures; the
     * bound's per-image values are each one rank's, carried as two floats a
     * double (about 48 bits) */
    for (int k = 0; k < RANKS; k++) {
        const eval_result *got[2] = {&parts[k].test_parts, &parts[k].train_parts};
        const eval_result *want[2] = {&parts[k].test_whole, &parts[k].train_whole};
        for (int s = 0; s < 2; s++) {
            assert_int_equal(got[s]->n, want[s]->n);
            assert_int_equal(got[s]->iwae_n, 256);
            assert_int_equal(got[s]->iwae_k, 16);
            assert_int_equal(got[s]->active_units, want[s]->active_units);
            assert_true(fabs(got[s]->iwae_nll - want[s]->iwae_nll) <= 1e-9 * want[s]->iwae_nll);
            /* -ELBO and KL: a batch's sums in float over other batches (about 3e-8) */
            assert_true(fabs(got[s]->neg_elbo - want[s]->neg_elbo) <= 1e-6 * want[s]->neg_elbo);
            assert_true(fabs(got[s]->kl - want[s]->kl) <= 1e-6 * want[s]->kl);
        }
    }
    assert_true(parts[0].test_parts.iwae_nll == parts[1].test_parts.iwae_nll);
    for (int k = 0; k < RANKS; k++) free(two[k].params);
    free(one.params);
}

static void test_ranks_agree_or_say_what_differs(void **state)
{
    (void)state;
    run r[RANKS];
    run_ranks(r, "data=mnist\nseed=1\n", "data=mnist\nseed=2\n", 0);
    assert_int_equal(r[0].agree_rc, VAE_ERR_ARG);
    assert_int_equal(r[1].agree_rc, VAE_ERR_ARG);
    assert_non_null(strstr(r[0].err, "differs from rank 0's on rank 1"));
    assert_non_null(strstr(r[1].err, "rank 0 has \"seed=1\", rank 1 \"seed=2\""));
    assert_null(r[0].params); /* nothing trained */
    run_ranks(r, "same\n", "same\n", 0);
    for (int k = 0; k < RANKS; k++) {
        assert_int_equal(r[k].agree_rc, VAE_OK);
        free(r[k].params);
    }
}

static void test_a_cancel_on_one_rank_stops_both(void **state)
{
    (void)state;
    run r[RANKS];
    run_ranks(r, NULL, NULL, 7);
    for (int k = 0; k < RANKS; k++) {
        assert_int_equal(r[k].epoch_rc, VAE_ERR_CANCELLED);
        assert_int_equal(r[k].pos.next_step, 7); /* rank 0's cancel came after step 7 */
    }
    assert_memory_equal(r[0].params, r[1].params, sizeof(float) * r[0].n_params);
    for (int k = 0; k < RANKS; k++) free(r[k].params);
}

int main(void)
{
    if (access(MNIST_TRAIN, R_OK) != 0) {
        fprintf(stderr, "%s missing: run scripts/get-data.sh mnist\n", MNIST_TRAIN);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_train_what_one_process_trains),
        cmocka_unit_test(test_ranks_agree_or_say_what_differs),
        cmocka_unit_test(test_a_cancel_on_one_rank_stops_both),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
