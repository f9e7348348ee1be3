/* Image data sets: CIFAR-10 binary batches and folders of PNG files written
 * here in exactly their formats, every rejection naming the file at fault,
 * and validation splits (sizes, determinism, nothing lost or doubled). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "engine/dataset.h"
#include "engine/image.h"
#include "tests/lib/harness.h"

static char root[64];

static int setup(void **state)
{
    (void)state;
    return harness_tmpdir(root, sizeof root);
}

static int teardown(void **state)
{
    (void)state;
    return harness_rm_rf(root);
}

/* root/rel, made (with parents of depth one) when mkdir_it. */
static const char *at(const char *rel, int mkdir_it)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 512, "%s/%s", root, rel);
    if (mkdir_it) mkdir(p, 0700);
    return p;
}

static void write_bytes(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* ---------- CIFAR-10 ---------- */

enum { REC = 3073 };

static uint8_t cifar_pixel(int file, int rec, int k) { return (uint8_t)((file * 31 + rec * 7 + k) % 256); }
static uint8_t cifar_label(int file, int rec) { return (uint8_t)((file + rec) % 10); }

/* n records; extra bytes after them (a truncated next record) */
static void write_cifar(const char *path, int file, int n, int extra)
{
    size_t len = (size_t)n * REC + (size_t)extra;
    uint8_t *b = calloc(len + 1, 1);
    for (int r = 0; r < n; r++) {
        b[(size_t)r * REC] = cifar_label(file, r);
        for (int k = 0; k < 3072; k++) b[(size_t)r * REC + 1 + k] = cifar_pixel(file, r, k);
    }
    write_bytes(path, b, len);
    free(b);
}

static void test_cifar_loads_train_and_test(void **state)
{
    (void)state;
    char err[512];
    at("cifar", 1);
    write_cifar(at("cifar/data_batch_1.bin", 0), 1, 5, 0);
    write_cifar(at("cifar/data_batch_2.bin", 0), 2, 5, 0);
    write_cifar(at("cifar/test_batch.bin", 0), 9, 3, 0);
    dataset d;
    assert_int_equal(dataset_load_cifar_dir(&d, at("cifar", 0), 0, err, sizeof err), VAE_OK);
    assert_int_equal(d.n, 10);
    assert_int_equal(d.channels, 3);
    assert_int_equal(d.height, 32);
    assert_int_equal(d.width, 32);
    assert_non_null(d.labels);
    for (int i = 0; i < 10; i++) {
        int file = 1 + i / 5, rec = i % 5;
        assert_int_equal(d.labels[i], cifar_label(file, rec));
        /* planar R, G, B: the record's byte order is the image's */
        const int ks[] = {0, 1, 1023, 1024, 2048, 3071};
        for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
            assert_float_equal(d.x[(size_t)i * 3072 + ks[j]], cifar_pixel(file, rec, ks[j]) / 255.0f,
                               1e-7);
    }
    dataset_free(&d);
    assert_int_equal(dataset_load_cifar_dir(&d, at("cifar", 0), 1, err, sizeof err), VAE_OK);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.labels[2], cifar_label(9, 2));
    assert_float_equal(d.x[2 * 3072 + 5], cifar_pixel(9, 2, 5) / 255.0f, 1e-7);
    dataset_free(&d);
}

static void test_cifar_rejections(void **state)
{
    (void)state;
    char err[512];
    dataset d;
    /* a missing folder */
    assert_int_not_equal(dataset_load_cifar_dir(&d, at("no-such-folder", 0), 0, err, sizeof err), 0);
    assert_non_null(strstr(err, "no-such-folder"));
    assert_null(d.x);
    /* a folder without batches */
    at("cifar-empty", 1);
    assert_int_not_equal(dataset_load_cifar_dir(&d, at("cifar-empty", 0), 0, err, sizeof err), 0);
    assert_non_null(strstr(err, "data_batch_1.bin"));
    assert_int_not_equal(dataset_load_cifar_dir(&d, at("cifar-empty", 0), 1, err, sizeof err), 0);
    assert_non_null(strstr(err, "test_batch.bin"));
    /* a truncated record, in the second file */
    at("cifar-trunc", 1);
    write_cifar(at("cifar-trunc/data_batch_1.bin", 0), 1, 5, 0);
    write_cifar(at("cifar-trunc/data_batch_2.bin", 0), 2, 5, 100);
    assert_int_equal(dataset_load_cifar_dir(&d, at("cifar-trunc", 0), 0, err, sizeof err),
                     VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "data_batch_2.bin"));
    assert_null(d.x);
    /* a label outside 0..9 (CIFAR-100's layout, say) */
    at("cifar-label", 1);
    write_cifar(at("cifar-label/data_batch_1.bin", 0), 1, 2, 0);
    FILE *f = fopen(at("cifar-label/data_batch_1.bin", 0), "r+b");
    assert_non_null(f);
    fseek(f, REC, SEEK_SET);
    fputc(57, f);
    fclose(f);
    assert_int_equal(dataset_load_cifar_dir(&d, at("cifar-label", 0), 0, err, sizeof err),
                     VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "data_batch_1.bin"));
    assert_non_null(strstr(err, "57"));
    /* a gap in the numbering */
    at("cifar-gap", 1);
    write_cifar(at("cifar-gap/data_batch_1.bin", 0), 1, 1, 0);
    write_cifar(at("cifar-gap/data_batch_3.bin", 0), 3, 1, 0);
    assert_int_not_equal(dataset_load_cifar_dir(&d, at("cifar-gap", 0), 0, err, sizeof err), 0);
    assert_non_null(strstr(err, "data_batch_2.bin"));
}

/* ---------- PNG folders ---------- */

/* An image whose pixel k is (seed * 13 + k * 5) % 256 / 255: exact through 8 bits. */
static void write_png(const char *path, int channels, int h, int w, int seed)
{
    char err[256];
    int n = channels * h * w;
    float *x = malloc(sizeof(float) * n);
    for (int k = 0; k < n; k++) x[k] = (float)((seed * 13 + k * 5) % 256) / 255.0f;
    if (image_write_grid_png(path, x, 1, channels, h, w, 1, err, sizeof err))
        fail_msg("writing %s: %s", path, err);
    free(x);
}

static void assert_image(const dataset *d, int i, int seed)
{
    int n = dataset_dim(d);
    for (int k = 0; k < n; k++)
        assert_float_equal(d->x[(size_t)i * n + k], (float)((seed * 13 + k * 5) % 256) / 255.0f,
                           1e-6);
}

static void test_png_folder_grey_sorted(void **state)
{
    (void)state;
    char err[512];
    at("grey", 1);
    write_png(at("grey/b.png", 0), 1, 6, 8, 2);
    write_png(at("grey/a.png", 0), 1, 6, 8, 1);
    write_png(at("grey/c.png", 0), 1, 6, 8, 3);
    write_bytes(at("grey/.hidden", 0), (const uint8_t *)"x", 1); /* skipped */
    dataset d;
    assert_int_equal(dataset_load_png_dir(&d, at("grey", 0), err, sizeof err), VAE_OK);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.channels, 1);
    assert_int_equal(d.height, 6);
    assert_int_equal(d.width, 8);
    assert_null(d.labels);
    for (int i = 0; i < 3; i++) assert_image(&d, i, i + 1);
    dataset_free(&d);
}

static void test_png_folder_rgb_with_class_folders(void **state)
{
    (void)state;
    char err[512];
    at("rgb", 1);
    at("rgb/dog", 1);
    at("rgb/cat", 1);
    write_png(at("rgb/dog/z.png", 0), 3, 4, 4, 7);
    write_png(at("rgb/cat/2.png", 0), 3, 4, 4, 6);
    write_png(at("rgb/cat/1.png", 0), 3, 4, 4, 5);
    dataset d;
    assert_int_equal(dataset_load_png_dir(&d, at("rgb", 0), err, sizeof err), VAE_OK);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.channels, 3);
    assert_non_null(d.labels);
    /* cat = 0, dog = 1 (sorted); names sorted within */
    assert_int_equal(d.labels[0], 0);
    assert_int_equal(d.labels[1], 0);
    assert_int_equal(d.labels[2], 1);
    assert_image(&d, 0, 5);
    assert_image(&d, 1, 6);
    assert_image(&d, 2, 7);
    dataset_free(&d);
}

static void expect_png_error(const char *folder, const char *culprit)
{
    char err[512];
    dataset d;
    int rc = dataset_load_png_dir(&d, at(folder, 0), err, sizeof err);
    if (rc == VAE_OK) fail_msg("%s loaded", folder);
    if (!strstr(err, culprit)) fail_msg("%s: \"%s\" does not name %s", folder, err, culprit);
    if (getenv("VAED_TEST_VERBOSE")) printf("  %s: %s\n", folder, err);
    assert_null(d.x);
    assert_null(d.labels);
}

static void test_png_folder_rejections(void **state)
{
    (void)state;
    at("mixed-size", 1);
    write_png(at("mixed-size/a.png", 0), 1, 6, 8, 1);
    write_png(at("mixed-size/b.png", 0), 1, 8, 8, 1);
    expect_png_error("mixed-size", "b.png");

    at("mixed-kind", 1);
    write_png(at("mixed-kind/a.png", 0), 1, 4, 4, 1);
    write_png(at("mixed-kind/b.png", 0), 3, 4, 4, 1);
    expect_png_error("mixed-kind", "b.png");

    at("not-png", 1);
    write_png(at("not-png/a.png", 0), 1, 4, 4, 1);
    write_bytes(at("not-png/notes.txt", 0), (const uint8_t *)"hello, world, a text file here", 30);
    expect_png_error("not-png", "notes.txt");

    at("bad-png", 1);
    uint8_t sig[40] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    write_bytes(at("bad-png/broken.png", 0), sig, sizeof sig); /* a header and nothing else */
    expect_png_error("bad-png", "broken.png");

    at("empty", 1);
    expect_png_error("empty", "empty");
    expect_png_error("no-such-folder", "no-such-folder");

    at("file-beside-classes", 1);
    at("file-beside-classes/a", 1);
    write_png(at("file-beside-classes/a/1.png", 0), 1, 4, 4, 1);
    write_png(at("file-beside-classes/stray.png", 0), 1, 4, 4, 1);
    expect_png_error("file-beside-classes", "stray.png");
}

/* ---------- validation split ---------- */

static void make_set(dataset *d, int n)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->channels = 1;
    d->height = 2;
    d->width = 2;
    d->x = malloc(sizeof(float) * 4 * n);
    d->labels = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 4; k++) d->x[i * 4 + k] = (float)i;
        d->labels[i] = (uint8_t)(i % 7);
    }
}

static void test_split_sizes_and_determinism(void **state)
{
    (void)state;
    char err[256];
    dataset a, va, b, vb;
    make_set(&a, 100);
    make_set(&b, 100);
    assert_int_equal(dataset_split_validation(&a, 0.1, 42, &va, err, sizeof err), VAE_OK);
    assert_int_equal(dataset_split_validation(&b, 0.1, 42, &vb, err, sizeof err), VAE_OK);
    assert_int_equal(a.n, 90);
    assert_int_equal(va.n, 10);
    assert_int_equal(va.channels, 1);
    assert_int_equal(va.height, 2);
    assert_non_null(va.labels);
    assert_memory_equal(a.x, b.x, sizeof(float) * 4 * 90);
    assert_memory_equal(va.x, vb.x, sizeof(float) * 4 * 10);
    /* every image exactly once, labels travelling with their images, order kept */
    int seen[100] = {0};
    for (int i = 0; i < a.n; i++) {
        int id = (int)a.x[i * 4];
        seen[id]++;
        assert_int_equal(a.labels[i], id % 7);
        if (i) assert_true(a.x[i * 4] > a.x[(i - 1) * 4]);
    }
    for (int i = 0; i < va.n; i++) {
        int id = (int)va.x[i * 4 + 3];
        seen[id]++;
        assert_int_equal(va.labels[i], id % 7);
    }
    for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
    dataset_free(&a);
    dataset_free(&b);
    dataset_free(&vb);

    /* another seed, another split */
    make_set(&b, 100);
    assert_int_equal(dataset_split_validation(&b, 0.1, 43, &vb, err, sizeof err), VAE_OK);
    assert_int_equal(vb.n, 10);
    assert_true(memcmp(va.x, vb.x, sizeof(float) * 4 * 10) != 0);
    dataset_free(&b);
    dataset_free(&vb);
    dataset_free(&va);

    /* rounding, and at least one image on each side */
    make_set(&a, 3);
    assert_int_equal(dataset_split_validation(&a, 0.01, 1, &va, err, sizeof err), VAE_OK);
    assert_int_equal(va.n, 1);
    assert_int_equal(a.n, 2);
    dataset_free(&a);
    dataset_free(&va);
    make_set(&a, 3);
    assert_int_equal(dataset_split_validation(&a, 0.99, 1, &va, err, sizeof err), VAE_OK);
    assert_int_equal(va.n, 2);
    assert_int_equal(a.n, 1);
    dataset_free(&a);
    dataset_free(&va);
}

static void test_split_rejections(void **state)
{
    (void)state;
    char err[256];
    dataset a, v;
    make_set(&a, 10);
    assert_int_equal(dataset_split_validation(&a, 0.0, 1, &v, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(dataset_split_validation(&a, 1.0, 1, &v, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "val-split"));
    assert_int_equal(a.n, 10); /* untouched */
    assert_null(v.x);
    dataset_free(&a);
    make_set(&a, 1);
    assert_int_equal(dataset_split_validation(&a, 0.5, 1, &v, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(a.n, 1);
    dataset_free(&a);
}

/* ---------- one rank's shard, read alone ---------- */

/* What the whole path gives rank of size: load, split (fraction > 0), class
 * in both halves, the first limit, the shard. val: NULL without a split.
 * 0, or the status of the step that refused (nothing held then). */
static int whole_then_cut(const dataset_source *src, const dataset_shard_spec *s, dataset *train,
                          dataset *val)
{
    char err[512];
    if (src->kind == DATASET_SOURCE_CIFAR)
        assert_int_equal(dataset_load_cifar_dir(train, src->path, src->test_split, err, sizeof err), 0);
    else if (src->kind == DATASET_SOURCE_PNG)
        assert_int_equal(dataset_load_png_dir(train, src->path, err, sizeof err), 0);
    else
        assert_int_equal(dataset_load_idx(train, src->path, src->labels_path, err, sizeof err), 0);
    int rc = 0;
    if (s->val_split > 0.0) {
        assert_int_equal(dataset_split_validation(train, s->val_split, s->seed, val, err, sizeof err), 0);
        if (s->klass >= 0) rc = dataset_filter_class(val, s->klass, err, sizeof err);
    }
    if (!rc && s->klass >= 0) rc = dataset_filter_class(train, s->klass, err, sizeof err);
    if (!rc && s->limit > 0) dataset_truncate(train, s->limit);
    if (!rc) rc = dataset_keep_shard(train, s->rank, s->size, err, sizeof err);
    if (rc) {
        dataset_free(train);
        dataset_free(val);
    }
    return rc;
}

/* a's images are b's from b_first on. */
static void assert_same_images_from(const dataset *a, const dataset *b, int b_first)
{
    assert_true(b_first + a->n <= b->n);
    assert_int_equal(a->channels, b->channels);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->labels != NULL, b->labels != NULL);
    int dim = dataset_dim(a);
    float *x = malloc(sizeof(float) * (size_t)dim), *y = malloc(sizeof(float) * (size_t)dim);
    for (int i = 0; i < a->n; i++) {
        dataset_image(a, i, x);
        dataset_image(b, b_first + i, y);
        assert_memory_equal(x, y, sizeof(float) * (size_t)dim);
        if (a->labels) assert_int_equal(a->labels[i], b->labels[b_first + i]);
    }
    free(x);
    free(y);
}

static void assert_same_images(const dataset *a, const dataset *b)
{
    assert_int_equal(a->n, b->n);
    assert_same_images_from(a, b, 0);
}

/* Every rank of 1, 2 and 3 of src, with and without class, limit and a
 * split: the images of the whole path's cut, and only those read; top_label
 * is the whole source's. */
static void check_shards(const dataset_source *src, int labelled, int top_label)
{
    const struct { int klass, limit; double val_split; } cases[] = {
        {-1, 0, 0.0}, {-1, 7, 0.0}, {-1, 0, 0.3}, {1, 0, 0.0}, {1, 3, 0.25}, {-1, 9, 0.2}};
    int n_total = 0, refused = 0, compared = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (cases[c].klass >= 0 && !labelled) continue;
        for (int size = 1, block = 0; size <= 3; size += block, block = !block) {
            if (block && cases[c].val_split == 0.0) continue;
            int train_sum = 0, val_sum = 0;
            for (int rank = 0; rank < size; rank++) {
                dataset_shard_spec s = {.klass = cases[c].klass, .limit = cases[c].limit,
                                        .val_split = cases[c].val_split, .seed = 11,
                                        .rank = rank, .size = size, .held_block = block ? 2 : 0};
                dataset want = {0}, want_val = {0}, got, got_val;
                dataset_shard_info info;
                char err[512];
                int want_rc = whole_then_cut(src, &s, &want, &want_val);
                int rc = dataset_load_shard(src, &s, &got, s.val_split > 0.0 ? &got_val : NULL,
                                            &info, err, sizeof err);
                if (want_rc) { /* refused as the whole path refuses, holding nothing */
                    assert_int_equal(rc, want_rc);
                    assert_null(got.x);
                    assert_null(got.pixels);
                    refused++;
                    continue;
                }
                if (rc) fail_msg("%s case %zu rank %d of %d: %s", src->path, c, rank, size, err);
                assert_same_images(&got, &want);
                compared++;
                if (s.val_split > 0.0) {
                    /* all held-out images, or this rank's block of them */
                    int lo = want_val.n * rank / size, hi = want_val.n * (rank + 1) / size;
                    int in_blocks = block && want_val.n / size >= 2;
                    assert_int_equal(got_val.n, in_blocks ? hi - lo : want_val.n);
                    assert_int_equal(info.val_first, in_blocks ? lo : 0);
                    assert_same_images_from(&got_val, &want_val, info.val_first);
                    assert_int_equal(info.n_val, want_val.n);
                    val_sum += got_val.n;
                    if (in_blocks && rank == size - 1) assert_int_equal(val_sum, want_val.n);
                }
                /* read: this rank's shard and the held-out images, nothing else */
                assert_int_equal(info.n_read, got.n + (s.val_split > 0.0 ? got_val.n : 0));
                assert_int_equal(info.top_label, top_label);
                train_sum += got.n;
                if (size == 1 && s.val_split == 0.0 && s.klass < 0 && s.limit == 0) n_total = got.n;
                if (rank == size - 1) assert_int_equal(train_sum, info.n_train);
                dataset_free(&want);
                dataset_free(&want_val);
                dataset_free(&got);
                if (s.val_split > 0.0) dataset_free(&got_val);
            }
        }
    }
    if (getenv("VAED_TEST_VERBOSE"))
        printf("  %s: %d shards compared, %d refused by both\n", src->path, compared, refused);
    assert_true(compared > refused); /* the cases test shards more than refusals */
    /* as an evaluation set (held_all): every image of the class, whole or
     * in blocks; no training image */
    for (int size = 1; size <= 3; size++)
        for (int rank = 0; rank < size; rank++) {
            dataset_shard_spec s = {.klass = labelled ? 1 : -1, .rank = rank, .size = size,
                                    .held_all = 1, .held_block = 1};
            dataset_shard_spec whole = {.klass = s.klass, .size = 1};
            dataset want, got, got_val, none;
            dataset_shard_info info;
            char err[512];
            if (whole_then_cut(src, &whole, &want, &none)) continue; /* no image of the class */
            assert_int_equal(dataset_load_shard(src, &s, &got, &got_val, &info, err, sizeof err), 0);
            assert_int_equal(got.n, 0);
            assert_int_equal(info.n_val, want.n);
            int in_blocks = want.n / size >= 1, lo = want.n * rank / size;
            assert_int_equal(info.val_first, in_blocks ? lo : 0);
            assert_int_equal(got_val.n, in_blocks ? want.n * (rank + 1) / size - lo : want.n);
            assert_same_images_from(&got_val, &want, info.val_first);
            assert_int_equal(info.n_read, got_val.n);
            dataset_free(&want);
            dataset_free(&got);
            dataset_free(&got_val);
        }
    /* more ranks than images: the last shard would be empty */
    dataset_shard_spec s = {.klass = -1, .rank = n_total, .size = n_total + 1};
    dataset got;
    dataset_shard_info info;
    char err[512];
    assert_int_equal(dataset_load_shard(src, &s, &got, NULL, &info, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "too few"));
    assert_null(got.x);
    assert_null(got.pixels);
}

static void test_shards_read_only_their_images(void **state)
{
    (void)state;
    /* CIFAR-10: two batch files of uneven sizes, and the test batch */
    at("shard-cifar", 1);
    write_cifar(at("shard-cifar/data_batch_1.bin", 0), 1, 7, 0);
    write_cifar(at("shard-cifar/data_batch_2.bin", 0), 2, 4, 0);
    write_cifar(at("shard-cifar/test_batch.bin", 0), 9, 5, 0);
    char cifar_dir[512];
    snprintf(cifar_dir, sizeof cifar_dir, "%s", at("shard-cifar", 0));
    dataset_source cifar = {.kind = DATASET_SOURCE_CIFAR, .path = cifar_dir};
    check_shards(&cifar, 1, 7);
    cifar.test_split = 1;
    check_shards(&cifar, 1, 9);
    /* IDX: 13 images of 2x3, with labels */
    uint8_t idx_img[16 + 13 * 6], idx_lab[8 + 13];
    const uint8_t img_head[16] = {0, 0, 8, 3, 0, 0, 0, 13, 0, 0, 0, 2, 0, 0, 0, 3};
    const uint8_t lab_head[8] = {0, 0, 8, 1, 0, 0, 0, 13};
    memcpy(idx_img, img_head, 16);
    memcpy(idx_lab, lab_head, 8);
    for (int i = 0; i < 13 * 6; i++) idx_img[16 + i] = (uint8_t)(i * 37 % 256);
    for (int i = 0; i < 13; i++) idx_lab[8 + i] = (uint8_t)(i * 3 % 10);
    char idx_path[512], lab_path[512];
    snprintf(idx_path, sizeof idx_path, "%s", at("shard-images-idx3-ubyte", 0));
    snprintf(lab_path, sizeof lab_path, "%s", at("shard-labels-idx1-ubyte", 0));
    write_bytes(idx_path, idx_img, sizeof idx_img);
    write_bytes(lab_path, idx_lab, sizeof idx_lab);
    dataset_source idx = {.kind = DATASET_SOURCE_IDX, .path = idx_path, .labels_path = lab_path};
    check_shards(&idx, 1, 9); /* plain: one pread per image */
    char gz_path[512];
    snprintf(gz_path, sizeof gz_path, "%s", at("shard-gz-images-idx3-ubyte.gz", 0));
    gzFile gz = gzopen(gz_path, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, idx_img, sizeof idx_img), (int)sizeof idx_img);
    assert_int_equal(gzclose(gz), Z_OK);
    dataset_source idx_gz = {.kind = DATASET_SOURCE_IDX, .path = gz_path, .labels_path = lab_path};
    check_shards(&idx_gz, 1, 9); /* gzip: streamed */
    /* a plain file cut short, or with bytes after the images, as the whole load says */
    dataset_shard_spec half = {.klass = -1, .rank = 1, .size = 2};
    dataset cut;
    dataset_shard_info cut_info;
    char cut_err[512];
    write_bytes(idx_path, idx_img, sizeof idx_img - 1);
    assert_int_equal(dataset_load_shard(&idx, &half, &cut, NULL, &cut_info, cut_err, sizeof cut_err),
                     VAE_ERR_FORMAT);
    assert_non_null(strstr(cut_err, "truncated"));
    uint8_t longer[sizeof idx_img + 1] = {0};
    memcpy(longer, idx_img, sizeof idx_img);
    write_bytes(idx_path, longer, sizeof longer);
    assert_int_equal(dataset_load_shard(&idx, &half, &cut, NULL, &cut_info, cut_err, sizeof cut_err),
                     VAE_ERR_FORMAT);
    assert_non_null(strstr(cut_err, "trailing bytes"));
    assert_null(cut.pixels);
    /* PNG: three class folders of uneven sizes, and an unlabelled folder */
    at("shard-png", 1);
    const char *classes[] = {"a", "b", "c"};
    const int per_class[] = {5, 3, 4};
    int seed = 1;
    for (int k = 0; k < 3; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "shard-png/%s", classes[k]);
        at(rel, 1);
        for (int i = 0; i < per_class[k]; i++) {
            snprintf(rel, sizeof rel, "shard-png/%s/%02d.png", classes[k], i);
            write_png(at(rel, 0), 3, 4, 5, seed++);
        }
    }
    char png_dir[512], grey_dir[512]; /* at's buffers are reused */
    snprintf(png_dir, sizeof png_dir, "%s", at("shard-png", 0));
    dataset_source png = {.kind = DATASET_SOURCE_PNG, .path = png_dir};
    check_shards(&png, 1, 2);
    at("shard-grey", 1);
    for (int i = 0; i < 10; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "shard-grey/%02d.png", i);
        write_png(at(rel, 0), 1, 3, 2, i);
    }
    snprintf(grey_dir, sizeof grey_dir, "%s", at("shard-grey", 0));
    dataset_source grey = {.kind = DATASET_SOURCE_PNG, .path = grey_dir};
    check_shards(&grey, 0, -1);
    /* a PNG of another size in rank 1's shard of 2: rank 0 never reads it;
     * rank 1 names it against the first image */
    write_png(at("shard-grey/03.png", 0), 1, 4, 2, 3);
    dataset_shard_spec s0 = {.klass = -1, .rank = 0, .size = 2}, s1 = {.klass = -1, .rank = 1, .size = 2};
    dataset got;
    dataset_shard_info info;
    char err[512];
    assert_int_equal(dataset_load_shard(&grey, &s0, &got, NULL, &info, err, sizeof err), 0);
    assert_int_equal(info.n_read, 5);
    dataset_free(&got);
    assert_int_equal(dataset_load_shard(&grey, &s1, &got, NULL, &info, err, sizeof err),
                     VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "03.png"));
    assert_non_null(strstr(err, "00.png"));
    /* a class without images, a split without a set for it */
    dataset_shard_spec none = {.klass = 7, .size = 1};
    assert_int_equal(dataset_load_shard(&png, &none, &got, NULL, &info, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "no images with label 7"));
    dataset_shard_spec split = {.klass = -1, .val_split = 0.5, .size = 1};
    assert_int_equal(dataset_load_shard(&png, &split, &got, NULL, &info, err, sizeof err), VAE_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cifar_loads_train_and_test),
        cmocka_unit_test(test_cifar_rejections),
        cmocka_unit_test(test_png_folder_grey_sorted),
        cmocka_unit_test(test_png_folder_rgb_with_class_folders),
        cmocka_unit_test(test_png_folder_rejections),
        cmocka_unit_test(test_split_sizes_and_determinism),
        cmocka_unit_test(test_split_rejections),
        cmocka_unit_test(test_shards_read_only_their_images),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
