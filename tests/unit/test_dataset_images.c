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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
