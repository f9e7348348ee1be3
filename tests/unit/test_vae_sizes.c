/* What a configuration costs, asked of the engine before anything is built:
 * vae_config_param_count against the model vae_alloc really builds, and
 * vae_config_train_state_bytes / vae_config_workspace_bytes against the heap
 * the allocations really take, over MLP and conv configurations of several
 * shapes, depths and likelihoods; 0 for configurations that do not validate.
 *
 * The heap is measured around each allocation: under AddressSanitizer with
 * its count of the bytes the program asked for (exact), otherwise with
 * mallinfo2() with every block kept on the heap (mallopt), where each
 * malloc'd chunk costs at most CHUNK_SLACK bytes over what was asked. So a
 * buffer allocated outside the size computation, or a size computed but not
 * allocated, fails the test unless it is smaller than that slack.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "engine/vae.h"

/* ---------- configurations ---------- */

static void mlp(vae_config *c, int side, int channels, int n_hidden, const int *hidden, int latent)
{
    vae_config_default(c);
    c->channels = channels;
    c->height = c->width = side;
    c->n_hidden = n_hidden;
    for (int i = 0; i < n_hidden; i++) c->hidden[i] = hidden[i];
    c->latent = latent;
}

static void conv(vae_config *c, int side, int channels, int n_conv, const int *widths, int latent)
{
    vae_config_default(c);
    c->arch = VAE_ARCH_CONV;
    c->channels = channels;
    c->height = c->width = side;
    c->n_conv = n_conv;
    for (int i = 0; i < n_conv; i++) c->conv_channels[i] = widths[i];
    c->latent = latent;
}

/* The configurations every test runs over (n_configs of them). */
static int n_configs;
static vae_config configs[32];
static const char *labels[32];

static void add(const vae_config *c, const char *label)
{
    configs[n_configs] = *c;
    labels[n_configs++] = label;
}

static int setup(void **state)
{
    (void)state;
    vae_config c;
    int h400[] = {400}, h75[] = {7, 5}, deep[] = {64, 48, 40, 32, 24, 16, 12, 8};
    int w4[] = {32, 64, 128, 256}, w2[] = {4, 8}, w6[] = {4, 4, 8, 8, 16, 16};
    n_configs = 0;
    mlp(&c, 28, 1, 1, h400, 20);
    add(&c, "mlp 784-400-20");
    mlp(&c, 28, 1, 1, h400, 20);
    c.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    add(&c, "mlp 784-400-20 gaussian-learned");
    mlp(&c, 4, 1, 2, h75, 3);
    c.mc_samples = 3;
    add(&c, "mlp 16-7-5-3 mc=3");
    mlp(&c, 5, 1, 0, NULL, 2);
    add(&c, "mlp no hidden layer");
    mlp(&c, 32, 3, 8, deep, 6);
    c.activation = VAE_ACT_TANH;
    add(&c, "mlp 3x32x32 eight layers");
    mlp(&c, 32, 3, 8, deep, 6);
    c.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    add(&c, "mlp 3x32x32 eight layers gaussian-learned");
    conv(&c, 28, 1, 4, w4, 20);
    c.batch = 32; /* as below */
    add(&c, "conv 28 32-64-128-256");
    conv(&c, 16, 1, 2, w2, 3);
    add(&c, "conv 16 4-8");
    conv(&c, 16, 3, 2, w2, 3);
    c.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    c.mc_samples = 2;
    add(&c, "conv 3x16 4-8 gaussian-learned mc=2");
    conv(&c, 64, 3, 6, w6, 8);
    c.batch = 32; /* keeps the state under the 32 MiB of main() */
    add(&c, "conv 3x64 six layers");
    conv(&c, 32, 1, 1, w2, 5);
    add(&c, "conv 32 one layer");
    mlp(&c, 28, 1, 1, h400, 20);
    c.n_classes = 10;
    c.mc_samples = 2;
    add(&c, "mlp 784-400-20 conditional mc=2");
    mlp(&c, 5, 1, 0, NULL, 2);
    c.n_classes = 7;
    add(&c, "mlp no hidden layer conditional");
    conv(&c, 28, 1, 2, w2, 3);
    c.n_classes = 10;
    c.mc_samples = 2;
    c.batch = 32;
    add(&c, "conv 28 4-8 conditional mc=2");
    return 0;
}

/* ---------- parameter counts ---------- */

static void test_param_count_is_the_models(void **state)
{
    (void)state;
    char err[256];
    for (int i = 0; i < n_configs; i++) {
        vae_model m;
        if (vae_alloc(&m, &configs[i], err, sizeof err)) fail_msg("%s: %s", labels[i], err);
        size_t n = vae_config_param_count(&configs[i]);
        if (n != m.n_params) fail_msg("%s: count %zu, model %zu", labels[i], n, m.n_params);
        vae_free(&m);
    }
    /* PyTorch's examples/vae: 784-400-20 has 652,824 parameters */
    vae_config c;
    vae_config_default(&c);
    assert_int_equal(vae_config_param_count(&c), 652824);
    /* conditional on 10 classes: 10 more inputs to encoder.0 and decoder.0 */
    c.n_classes = 10;
    assert_int_equal(vae_config_param_count(&c), 652824 + 2 * 10 * 400);
}

/* gaussian-learned doubles the decoder's output: its last layer has D more
 * outputs, each with a weight per input and a bias */
static void test_gaussian_learned_doubles_the_output(void **state)
{
    (void)state;
    vae_config c;
    int h[] = {400, 200};
    mlp(&c, 28, 1, 2, h, 20);
    size_t bern = vae_config_param_count(&c);
    c.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    assert_int_equal(vae_config_param_count(&c), bern + (size_t)(400 + 1) * 784);
    int w[] = {8, 16};
    conv(&c, 16, 3, 2, w, 4);
    bern = vae_config_param_count(&c);
    c.likelihood = VAE_LIK_GAUSSIAN_LEARNED;
    /* the last ConvTranspose2d: 8 -> 2C channels instead of C, 3x3 */
    assert_int_equal(vae_config_param_count(&c), bern + (size_t)8 * 3 * 9 + 3);
}

static void test_invalid_configs_cost_nothing(void **state)
{
    (void)state;
    vae_config bad[5];
    for (int i = 0; i < 5; i++) bad[i] = configs[0];
    bad[0].latent = 0;
    bad[1].n_hidden = VAE_MAX_HIDDEN + 1;
    bad[2].arch = (vae_arch)7;
    bad[3] = configs[7]; /* conv 16 */
    bad[3].height = bad[3].width = 30;
    bad[4] = configs[7];
    bad[4].n_conv = 5; /* 16 halved five times is below 1x1 */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(vae_config_param_count(&bad[i]), 0);
        assert_int_equal(vae_config_train_state_bytes(&bad[i], 8, 1), 0);
        assert_int_equal(vae_config_train_state_bytes(&bad[i], 8, 2), 0);
        assert_int_equal(vae_config_workspace_bytes(&bad[i], 8), 0);
    }
    assert_int_equal(vae_config_train_state_bytes(&configs[0], 0, 1), 0);
    assert_int_equal(vae_config_workspace_bytes(&configs[0], 0), 0);
}

/* ---------- bytes against the heap ---------- */

#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void); /* libasan's */
static size_t heap_in_use(void) { return __sanitizer_get_current_allocated_bytes(); }
#define CHUNK_SLACK 0 /* the bytes asked for, exactly */
#else
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
/* glibc: a chunk is the request plus an 8-byte header, rounded up to 16 */
#define CHUNK_SLACK 24
#endif
/* Starting the helper thread allocates its thread-local storage's vector
 * (glibc's dtv, a few hundred bytes) on top of what vaed asks for. */
#define THREAD_SLACK 1024

static void check_bytes(const char *label, const char *what, size_t estimate, size_t used,
                        size_t slack)
{
    if (used < estimate || used > estimate + slack)
        fail_msg("%s: %s: estimate %zu bytes, the heap grew by %zu (allowed %zu over)", label,
                 what, estimate, used, slack);
}

/* For each configuration and a few batch sizes: the training state (with
 * the helper thread started and stopped again) and the workspace. */
static void test_bytes_are_what_is_allocated(void **state)
{
    (void)state;
    char err[256];
    for (int i = 0; i < n_configs; i++) {
        const vae_config *c = &configs[i];
        vae_model m;
        if (vae_init(&m, c, 1, err, sizeof err)) fail_msg("%s: %s", labels[i], err);
        int batches[] = {1, 7, c->batch};
        for (int k = 0; k < 3; k++) {
            int B = batches[k];
            size_t before = heap_in_use();
            vae_train_state *ts = vae_train_state_new(&m, B, err, sizeof err);
            if (!ts) fail_msg("%s: %s", labels[i], err);
            check_bytes(labels[i], "train state", vae_config_train_state_bytes(c, B, 1),
                        heap_in_use() - before, 1 * CHUNK_SLACK);
            assert_int_equal(vae_train_state_set_threads(ts, &m, 2, err, sizeof err), VAE_OK);
            check_bytes(labels[i], "train state, 2 threads", vae_config_train_state_bytes(c, B, 2),
                        heap_in_use() - before, 3 * CHUNK_SLACK + THREAD_SLACK);
            /* the helper goes again with threads back to 1 */
            assert_int_equal(vae_train_state_set_threads(ts, &m, 1, err, sizeof err), VAE_OK);
            check_bytes(labels[i], "train state, back to 1 thread",
                        vae_config_train_state_bytes(c, B, 1), heap_in_use() - before,
                        1 * CHUNK_SLACK + THREAD_SLACK);
            vae_train_state_free(ts);

            before = heap_in_use();
            vae_workspace *ws = vae_workspace_new(&m, B);
            assert_non_null(ws);
            check_bytes(labels[i], "workspace", vae_config_workspace_bytes(c, B),
                        heap_in_use() - before, CHUNK_SLACK);
            vae_workspace_free(ws);
        }
        vae_free(&m);
    }
}

int main(void)
{
#if !defined(__SANITIZE_ADDRESS__)
    /* every block on the heap, counted to the chunk (mmap'd ones are rounded
     * to pages): 32 MiB is glibc's ceiling, above every state here */
    if (mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1) return 1;
#endif
    /* the first thread a process starts allocates once for good: not ours */
    char err[256];
    vae_config c;
    mlp(&c, 4, 1, 0, NULL, 2);
    vae_model m;
    if (vae_init(&m, &c, 1, err, sizeof err)) return 1;
    vae_train_state *ts = vae_train_state_new(&m, 4, err, sizeof err);
    if (!ts || vae_train_state_set_threads(ts, &m, 2, err, sizeof err)) return 1;
    vae_train_state_free(ts);
    vae_free(&m);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_count_is_the_models),
        cmocka_unit_test(test_gaussian_learned_doubles_the_output),
        cmocka_unit_test(test_invalid_configs_cost_nothing),
        cmocka_unit_test(test_bytes_are_what_is_allocated),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
