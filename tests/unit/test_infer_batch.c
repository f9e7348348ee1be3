/* Dynamic batching's promise, at the engine and at infer_batch: a row's
 * bits do not depend on the rows around it. gemm_nt_rowwise on every tail
 * of its tiles and its short-K path (each row of an M = 37 product against
 * the same row alone, and against the double-precision product); the MLP's
 * vae_encode / vae_decode (plain and conditional) on a workspace set
 * rows-independent for B = 1 against the same rows inside B = 37; and infer_batch_run on mixed items (sizes 1, 3, 16,
 * two models, both directions, a conv model, a bad label) against one call
 * per item. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gemm.h"
#include "engine/rng.h"
#include "engine/vae.h"
#include "server/infer_batch.h"

#define BIG 37

static float *rand_floats(rng_state *r, size_t n, float lo, float hi)
{
    float *v = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * rng_uniform(r);
    return v;
}

static void test_gemm_rows_alone_equal_rows_together(void **state)
{
    (void)state;
    /* the VAE's shapes, then every tail: N % 8, N % 4, K % 8, K <= 64 */
    static const int shapes[][2] = {{400, 784}, {40, 400}, {400, 20}, {784, 400}, {400, 30},
                                    {13, 37},   {5, 3},    {7, 70},   {9, 64},    {1, 1},
                                    {3, 200},   {27, 8}};
    rng_state r;
    rng_seed(&r, 7);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int N = shapes[s][0], K = shapes[s][1], lda = K + 3;
        float *a = rand_floats(&r, (size_t)BIG * lda, -1, 1);
        float *b = rand_floats(&r, (size_t)N * K, -1, 1);
        float *c = malloc(sizeof(float) * BIG * N), *one = malloc(sizeof(float) * N);
        float *ref = malloc(sizeof(float) * BIG * N);
        assert_non_null(c);
        assert_non_null(one);
        assert_non_null(ref);
        gemm_nt_rowwise(BIG, N, K, a, lda, b, K, c, N);
        gemm_naive(GEMM_N, GEMM_T, BIG, N, K, a, lda, b, K, 0, ref, N);
        for (int i = 0; i < BIG; i++) {
            gemm_nt_rowwise(1, N, K, a + (size_t)i * lda, lda, b, K, one, N);
            if (memcmp(one, c + (size_t)i * N, sizeof(float) * N))
                fail_msg("N %d K %d: row %d of %d differs from the row alone", N, K, i, BIG);
            for (int j = 0; j < N; j++)
                assert_true(fabs(c[(size_t)i * N + j] - ref[(size_t)i * N + j]) <=
                            1e-5 * sqrt((double)K + 1));
        }
        /* and inside other batch sizes: 2, 3, 4, 7 rows from row 5 on */
        for (int m = 2; m <= 7; m++) {
            gemm_nt_rowwise(m, N, K, a + 5 * (size_t)lda, lda, b, K, c, N);
            gemm_nt_rowwise(1, N, K, a + (size_t)(5 + m - 1) * lda, lda, b, K, one, N);
            assert_memory_equal(one, c + (size_t)(m - 1) * N, sizeof(float) * N);
        }
        free(a);
        free(b);
        free(c);
        free(one);
        free(ref);
    }
}

static void model_of(vae_model *m, int n_classes, vae_arch arch, uint64_t seed)
{
    vae_config c;
    vae_config_default(&c);
    c.n_classes = n_classes;
    c.arch = arch;
    char err[256];
    assert_int_equal(vae_init(m, &c, seed, err, sizeof err), VAE_OK);
}

/* B = 1 calls against the same rows in one B = BIG call, bit for bit. */
static void check_model_rows(int n_classes)
{
    vae_model m;
    model_of(&m, n_classes, VAE_ARCH_MLP, 3 + (uint64_t)n_classes);
    const vae_config *c = &m.cfg;
    int D = vae_config_input_dim(c), Z = c->latent, K = c->n_classes;
    rng_state r;
    rng_seed(&r, 11);
    float *x = rand_floats(&r, (size_t)BIG * D, 0, 1), *z = rand_floats(&r, (size_t)BIG * Z, -2, 2);
    float *mu = malloc(sizeof(float) * BIG * Z), *lv = malloc(sizeof(float) * BIG * Z);
    float *xo = malloc(sizeof(float) * BIG * D), *w = calloc((size_t)BIG * (K ? K : 1), sizeof(float));
    float mu1[64], lv1[64], *xo1 = malloc(sizeof(float) * D);
    int labels[BIG];
    for (int i = 0; i < BIG; i++) {
        labels[i] = K ? (i * 7) % K : 0;
        if (K) { /* a walk's mixed labels on odd rows */
            w[(size_t)i * K + labels[i]] += i & 1 ? 0.25f : 1.0f;
            w[(size_t)i * K + (labels[i] + 1) % K] += i & 1 ? 0.75f : 0.0f;
        }
    }
    vae_workspace *ws = vae_workspace_new(&m, BIG);
    assert_non_null(ws);
    assert_true(vae_rows_independent(&m));
    assert_int_equal(vae_workspace_set_rows_independent(&m, ws, 1), VAE_OK);
    const int *y = K ? labels : NULL;
    assert_int_equal(vae_encode_cond(&m, ws, x, y, BIG, mu, lv), VAE_OK);
    assert_int_equal(K ? vae_decode_mixed(&m, ws, z, w, BIG, xo) : vae_decode(&m, ws, z, BIG, xo),
                     VAE_OK);
    for (int i = 0; i < BIG; i++) {
        assert_int_equal(vae_encode_cond(&m, ws, x + (size_t)i * D, y ? y + i : NULL, 1, mu1, lv1),
                         VAE_OK);
        assert_memory_equal(mu1, mu + (size_t)i * Z, sizeof(float) * Z);
        assert_memory_equal(lv1, lv + (size_t)i * Z, sizeof(float) * Z);
        assert_int_equal(K ? vae_decode_mixed(&m, ws, z + (size_t)i * Z, w + (size_t)i * K, 1, xo1)
                           : vae_decode(&m, ws, z + (size_t)i * Z, 1, xo1),
                         VAE_OK);
        assert_memory_equal(xo1, xo + (size_t)i * D, sizeof(float) * D);
    }
    /* one-hot rows through vae_decode_mixed are vae_decode_cond's */
    if (K) {
        float *onehot = calloc((size_t)K, sizeof(float));
        assert_non_null(onehot);
        onehot[labels[3]] = 1.0f;
        assert_int_equal(vae_decode_mixed(&m, ws, z + 3 * (size_t)Z, onehot, 1, xo1), VAE_OK);
        assert_int_equal(vae_decode_cond(&m, ws, z + 3 * (size_t)Z, labels + 3, 1, xo), VAE_OK);
        assert_memory_equal(xo1, xo, sizeof(float) * D);
        free(onehot);
    }
    vae_workspace_free(ws);
    free(x);
    free(z);
    free(mu);
    free(lv);
    free(xo);
    free(xo1);
    free(w);
    vae_free(&m);
}

static void test_mlp_rows_alone_equal_rows_together(void **state)
{
    (void)state;
    check_model_rows(0);
    check_model_rows(10);
}

/* One request's buffers. */
typedef struct {
    infer_batch_item it;
    float *in, *out, *out2, *w;
    int labels[16];
} member;

static void member_init(member *mb, rng_state *r, const vae_model *m, infer_batch_op op, int n,
                        int bad_label)
{
    const vae_config *c = &m->cfg;
    int D = vae_config_input_dim(c), Z = c->latent, K = c->n_classes;
    int enc = op == INFER_BATCH_ENCODE;
    memset(mb, 0, sizeof *mb);
    mb->in = enc ? rand_floats(r, (size_t)n * D, 0, 1) : rand_floats(r, (size_t)n * Z, -2, 2);
    mb->out = calloc((size_t)n * (enc ? Z : D), sizeof(float));
    mb->out2 = enc ? calloc((size_t)n * Z, sizeof(float)) : NULL;
    assert_non_null(mb->out);
    for (int i = 0; i < n; i++) mb->labels[i] = K ? (i + n) % K : 0;
    if (bad_label)
        mb->labels[n - 1] = K + 5;
    if (K && !enc) {
        mb->w = calloc((size_t)n * K, sizeof(float));
        for (int i = 0; i < n; i++) mb->w[(size_t)i * K + mb->labels[i] % K] = 1.0f;
    }
    mb->it = (infer_batch_item){.op = op, .model = m, .n = n, .in = mb->in,
                                .labels = K && enc ? mb->labels : NULL, .label_weights = mb->w,
                                .out = mb->out, .out2 = mb->out2, .status = VAE_ERR_IO};
}

static void member_free(member *mb)
{
    free(mb->in);
    free(mb->out);
    free(mb->out2);
    free(mb->w);
}

static void test_infer_batch_matches_one_call_each(void **state)
{
    (void)state;
    vae_model plain, cond, other, conv;
    model_of(&plain, 0, VAE_ARCH_MLP, 21);
    model_of(&cond, 10, VAE_ARCH_MLP, 22);
    model_of(&other, 0, VAE_ARCH_MLP, 23);
    model_of(&conv, 0, VAE_ARCH_CONV, 24);
    assert_true(vae_rows_independent(&plain));
    assert_false(vae_rows_independent(&conv));
    vae_workspace *cws = vae_workspace_new(&conv, 1);
    assert_non_null(cws);
    assert_int_equal(vae_workspace_set_rows_independent(&conv, cws, 1), VAE_ERR_ARG);
    vae_workspace_free(cws);
    struct {
        const vae_model *m;
        infer_batch_op op;
        int n, bad;
    } plan[] = {
        {&plain, INFER_BATCH_ENCODE, 1, 0}, {&plain, INFER_BATCH_DECODE, 3, 0},
        {&cond, INFER_BATCH_ENCODE, 16, 0}, {&plain, INFER_BATCH_ENCODE, 3, 0},
        {&other, INFER_BATCH_ENCODE, 1, 0}, {&cond, INFER_BATCH_DECODE, 1, 0},
        {&conv, INFER_BATCH_ENCODE, 3, 0},  {&plain, INFER_BATCH_DECODE, 16, 0},
        {&cond, INFER_BATCH_ENCODE, 3, 1},  {&conv, INFER_BATCH_ENCODE, 1, 0},
        {&plain, INFER_BATCH_ENCODE, 16, 0}, {&cond, INFER_BATCH_DECODE, 3, 0},
        {&other, INFER_BATCH_ENCODE, 16, 0},
    };
    enum { N = sizeof plan / sizeof plan[0] };
    member batched[N], alone[N];
    infer_batch_item *items[N];
    rng_state r1, r2;
    rng_seed(&r1, 5);
    rng_seed(&r2, 5);
    for (int i = 0; i < N; i++) {
        member_init(&batched[i], &r1, plan[i].m, plan[i].op, plan[i].n, plan[i].bad);
        member_init(&alone[i], &r2, plan[i].m, plan[i].op, plan[i].n, plan[i].bad);
        items[i] = &batched[i].it;
    }
    infer_batch_run(items, N);
    for (int i = 0; i < N; i++) {
        infer_batch_item *one = &alone[i].it;
        infer_batch_run(&one, 1);
        const vae_config *c = &plan[i].m->cfg;
        int enc = plan[i].op == INFER_BATCH_ENCODE;
        size_t w = enc ? (size_t)c->latent : (size_t)vae_config_input_dim(c);
        if (plan[i].bad) { /* refused alone, without failing the others */
            assert_int_equal(batched[i].it.status, VAE_ERR_ARG);
            assert_int_equal(one->status, VAE_ERR_ARG);
            continue;
        }
        assert_int_equal(batched[i].it.status, VAE_OK);
        assert_int_equal(one->status, VAE_OK);
        assert_memory_equal(batched[i].out, alone[i].out, sizeof(float) * plan[i].n * w);
        if (enc)
            assert_memory_equal(batched[i].out2, alone[i].out2, sizeof(float) * plan[i].n * w);
    }
    for (int i = 0; i < N; i++) {
        member_free(&batched[i]);
        member_free(&alone[i]);
    }
    vae_free(&plain);
    vae_free(&cond);
    vae_free(&other);
    vae_free(&conv);
}

int main(void)
{
    openblas_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_rows_alone_equal_rows_together),
        cmocka_unit_test(test_mlp_rows_alone_equal_rows_together),
        cmocka_unit_test(test_infer_batch_matches_one_call_each),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
