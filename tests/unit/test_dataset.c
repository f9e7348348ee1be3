/* Unit tests for engine/dataset.c: IDX files written under a temporary
 * directory (plain and gzip), every rejection the loader promises, class
 * filtering, and the real MNIST test set when it has been downloaded. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "engine/dataset.h"
#include "engine/util.h"

static char tmpdir[] = "/tmp/vaed_test_ds_XXXXXX";
static char paths[64][300];
static int n_paths;

static const char *tmp_path(const char *name) {
    assert_true(n_paths < 64);
    snprintf(paths[n_paths], sizeof paths[0], "%s/%s", tmpdir, name);
    return paths[n_paths++];
}

/* Writes an image IDX file: header with the given fields, then `data_len`
 * bytes of pixel i = (i * 37) % 256. */
static const char *write_images(const char *name, uint32_t magic, uint32_t n, uint32_t rows,
                                uint32_t cols, size_t data_len, int gz) {
    const char *path = tmp_path(name);
    uint8_t *buf = malloc(16 + data_len);
    assert_non_null(buf);
    util_put_be32(buf, magic);
    util_put_be32(buf + 4, n);
    util_put_be32(buf + 8, rows);
    util_put_be32(buf + 12, cols);
    for (size_t i = 0; i < data_len; i++) buf[16 + i] = (uint8_t)((i * 37) % 256);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, buf, (unsigned)(16 + data_len)), (int)(16 + data_len));
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, 16 + data_len, f), 16 + data_len);
        assert_int_equal(fclose(f), 0);
    }
    free(buf);
    return path;
}

static const char *write_labels(const char *name, uint32_t magic, uint32_t n,
                                const uint8_t *labels, size_t len) {
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t hdr[8];
    util_put_be32(hdr, magic);
    util_put_be32(hdr + 4, n);
    assert_int_equal(fwrite(hdr, 1, 8, f), 8);
    if (len) assert_int_equal(fwrite(labels, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static int setup(void **state) {
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < n_paths; i++) unlink(paths[i]);
    return rmdir(tmpdir);
}

static void expect_load_error(const char *img, const char *lab, int status, const char *part,
                              const char *file) {
    dataset d;
    char err[512] = "";
    int rc = dataset_load_idx(&d, img, lab, err, sizeof err);
    if (rc != status || !strstr(err, part) || !strstr(err, file)) {
        print_message("status %d, error \"%s\"; wanted %d with \"%s\"\n", rc, err, status, part);
        fail();
    }
    assert_null(d.x);
    assert_null(d.labels);
    assert_int_equal(d.n, 0);
}

static const uint8_t good_labels[3] = {5, 0, 5};

static void check_good(const dataset *d, int with_labels) {
    assert_int_equal(d->n, 3);
    assert_int_equal(d->channels, 1);
    assert_int_equal(d->height, 2);
    assert_int_equal(d->width, 3);
    assert_int_equal(dataset_dim(d), 6);
    for (int i = 0; i < 18; i++) assert_true(d->x[i] == (float)((i * 37) % 256) / 255.0f);
    assert_true(d->x[0] == 0.0f);
    if (with_labels) {
        assert_non_null(d->labels);
        assert_memory_equal(d->labels, good_labels, 3);
    } else {
        assert_null(d->labels);
    }
}

static void test_good_file(void **state) {
    (void)state;
    const char *img = write_images("good-images", 0x803, 3, 2, 3, 18, 0);
    const char *lab = write_labels("good-labels", 0x801, 3, good_labels, 3);
    dataset d;
    char err[512] = "";
    int rc = dataset_load_idx(&d, img, lab, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    check_good(&d, 1);

    /* Filtering keeps images 0 and 2, in order. */
    float img2[6];
    memcpy(img2, d.x + 12, sizeof img2);
    assert_int_equal(dataset_filter_class(&d, 7, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(d.n, 3); /* unchanged */
    assert_int_equal(dataset_filter_class(&d, 5, err, sizeof err), 0);
    assert_int_equal(d.n, 2);
    assert_true(d.x[0] == 0.0f);
    assert_memory_equal(d.x + 6, img2, sizeof img2);
    assert_int_equal(d.labels[0], 5);
    assert_int_equal(d.labels[1], 5);
    assert_int_equal(dataset_filter_class(&d, -1, err, sizeof err), VAE_ERR_ARG);

    dataset_truncate(&d, 5); /* more than there are: no change */
    assert_int_equal(d.n, 2);
    dataset_truncate(&d, 1);
    assert_int_equal(d.n, 1);
    assert_true(d.x[0] == 0.0f);
    dataset_free(&d);
    dataset_free(&d); /* safe twice */

    /* Without labels. */
    assert_int_equal(dataset_load_idx(&d, img, NULL, err, sizeof err), 0);
    check_good(&d, 0);
    assert_int_equal(dataset_filter_class(&d, 5, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "labels"));
    dataset_free(&d);
}

static void test_gzip(void **state) {
    (void)state;
    const char *img = write_images("gz-images.gz", 0x803, 3, 2, 3, 18, 1);
    const char *lab = write_labels("gz-labels", 0x801, 3, good_labels, 3);
    dataset d;
    char err[512] = "";
    int rc = dataset_load_idx(&d, img, lab, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    check_good(&d, 1);
    dataset_free(&d);

    /* A gzip file that promises more than it holds. */
    const char *shortgz = write_images("gz-short.gz", 0x803, 3, 2, 3, 17, 1);
    expect_load_error(shortgz, NULL, VAE_ERR_FORMAT, "truncated", shortgz);

    /* A gzip stream cut in the middle, and one with a corrupted body. */
    const char *big = write_images("gz-big.gz", 0x803, 40, 28, 28, 40 * 784, 1);
    FILE *f = fopen(big, "rb");
    assert_non_null(f);
    uint8_t raw[65536];
    size_t n = fread(raw, 1, sizeof raw, f);
    fclose(f);
    assert_true(n > 64 && n < sizeof raw);
    const char *cut = tmp_path("gz-cut.gz");
    f = fopen(cut, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(raw, 1, n / 2, f), n / 2);
    fclose(f);
    expect_load_error(cut, NULL, VAE_ERR_FORMAT, "", cut);

    for (size_t i = 20; i < n - 8; i++) raw[i] ^= 0x5a;
    const char *bad = tmp_path("gz-corrupt.gz");
    f = fopen(bad, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(raw, 1, n, f), n);
    fclose(f);
    expect_load_error(bad, NULL, VAE_ERR_FORMAT, "", bad);
}

static void test_rejects(void **state) {
    (void)state;
    const char *lab3 = write_labels("labels3", 0x801, 3, good_labels, 3);
    const char *img = write_images("images-ok", 0x803, 3, 2, 3, 18, 0);

    const char *p = write_images("bad-magic", 0x801, 3, 2, 3, 18, 0);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "magic", p);
    p = write_labels("bad-label-magic", 0x803, 3, good_labels, 3);
    expect_load_error(img, p, VAE_ERR_FORMAT, "magic", p);

    p = write_images("truncated", 0x803, 3, 2, 3, 17, 0);
    expect_load_error(p, lab3, VAE_ERR_FORMAT, "truncated", p);
    p = write_labels("truncated-labels", 0x801, 3, good_labels, 2);
    expect_load_error(img, p, VAE_ERR_FORMAT, "truncated", p);

    /* Header only partly there. */
    p = tmp_path("short-header");
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite("\0\0\x08\x03\0\0", 1, 6, f);
    fclose(f);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "truncated", p);
    p = tmp_path("empty");
    f = fopen(p, "wb");
    assert_non_null(f);
    fclose(f);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "magic", p);

    p = write_images("trailing", 0x803, 3, 2, 3, 19, 0);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "trailing", p);
    const uint8_t four[4] = {1, 2, 3, 4};
    p = write_labels("trailing-labels", 0x801, 3, four, 4);
    expect_load_error(img, p, VAE_ERR_FORMAT, "trailing", p);

    p = write_images("zero-n", 0x803, 0, 2, 3, 0, 0);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "count", p);
    p = write_images("zero-rows", 0x803, 3, 0, 3, 0, 0);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "size", p);
    p = write_images("huge-cols", 0x803, 1, 2, 5000, 10000, 0);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "size", p);
    p = write_images("huge-n", 0x803, 0xffffffffu, 28, 28, 784, 0);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "count", p);
    /* A header claiming ~2^55 bytes must fail on the data, not allocate it. */
    p = write_images("huge-claim", 0x803, 0x7fffffffu, 4096, 4096, 100, 0);
    expect_load_error(p, NULL, VAE_ERR_FORMAT, "truncated", p);

    /* Counts that disagree. */
    p = write_labels("labels2", 0x801, 2, good_labels, 2);
    expect_load_error(img, p, VAE_ERR_FORMAT, "2 labels", p);

    /* Missing files. */
    const char *missing = tmp_path("does-not-exist");
    expect_load_error(missing, NULL, VAE_ERR_IO, "No such file", missing);
    expect_load_error(img, missing, VAE_ERR_IO, "No such file", missing);

    dataset d;
    char err[128];
    assert_int_equal(dataset_load_idx(&d, NULL, NULL, err, sizeof err), VAE_ERR_ARG);
}

static void test_peek_idx(void **state) {
    (void)state;
    char err[512] = "";
    int n = -1, h = -1, w = -1;
    /* plain and gzip; the images need not be there, only the header */
    const char *p = write_images("peek-images", 0x803, 70000, 28, 27, 0, 0);
    assert_int_equal(dataset_peek_idx(p, &n, &h, &w, err, sizeof err), VAE_OK);
    assert_int_equal(n, 70000);
    assert_int_equal(h, 28);
    assert_int_equal(w, 27);
    p = write_images("peek-images.gz", 0x803, 3, 2, 3, 18, 1);
    assert_int_equal(dataset_peek_idx(p, &n, &h, &w, err, sizeof err), VAE_OK);
    assert_int_equal(n, 3);
    assert_int_equal(h, 2);
    assert_int_equal(w, 3);

    /* each refusal names the file and leaves the outputs alone */
    const struct {
        uint32_t magic, n, rows, cols;
        const char *why;
    } bad[] = {
        {0x801, 3, 2, 3, "magic"},    {0x803, 0, 2, 3, "count"},
        {0x803, 0x80000000u, 2, 3, "count"}, {0x803, 3, 0, 3, "size"},
        {0x803, 3, 2, 4097, "size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "peek-bad-%zu", i);
        p = write_images(name, bad[i].magic, bad[i].n, bad[i].rows, bad[i].cols, 0, 0);
        n = h = w = -1;
        assert_int_equal(dataset_peek_idx(p, &n, &h, &w, err, sizeof err), VAE_ERR_FORMAT);
        assert_non_null(strstr(err, p));
        assert_non_null(strstr(err, bad[i].why));
        assert_true(n == -1 && h == -1 && w == -1);
    }
    p = tmp_path("peek-short");
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite("\0\0\x08\x03\0\0\0\1", 1, 8, f);
    fclose(f);
    assert_int_equal(dataset_peek_idx(p, &n, &h, &w, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "truncated"));
    p = tmp_path("peek-missing");
    assert_int_equal(dataset_peek_idx(p, &n, &h, &w, err, sizeof err), VAE_ERR_IO);
    assert_non_null(strstr(err, p));
    assert_int_equal(dataset_peek_idx(NULL, &n, &h, &w, err, sizeof err), VAE_ERR_ARG);
}

static void test_idx_labels_path(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(dataset_idx_labels_path("data/mnist/train-images-idx3-ubyte", out, sizeof out), 1);
    assert_string_equal(out, "data/mnist/train-labels-idx1-ubyte");
    assert_int_equal(dataset_idx_labels_path("/x/t10k-images-idx3-ubyte.gz", out, sizeof out), 1);
    assert_string_equal(out, "/x/t10k-labels-idx1-ubyte.gz");
    /* the first occurrence is the one replaced */
    assert_int_equal(dataset_idx_labels_path("a-images-idx3-ubyte/b-images-idx3-ubyte", out,
                                             sizeof out), 1);
    assert_string_equal(out, "a-labels-idx1-ubyte/b-images-idx3-ubyte");
    /* no such part */
    strcpy(out, "junk");
    assert_int_equal(dataset_idx_labels_path("data/digits.idx", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(dataset_idx_labels_path("train-images-idx1-ubyte", out, sizeof out), 0);
    /* too long for out */
    char small[20];
    assert_int_equal(dataset_idx_labels_path("train-images-idx3-ubyte", small, sizeof small), 0);
    assert_string_equal(small, "");
    assert_int_equal(dataset_idx_labels_path("train-images-idx3-ubyte", out, 24), 1);
    assert_string_equal(out, "train-labels-idx1-ubyte");
    assert_int_equal(dataset_idx_labels_path("train-images-idx3-ubyte", out, 23), 0);
}

static int exists(const char *path) { return access(path, R_OK) == 0; }

/* The shard of rank r of n: images r, r + n, ... of the 60,000 MNIST
 * training images, both storages, with their labels; too many ranks refused. */
static void test_keep_shard(void **state) {
    (void)state;
    const char *img = "data/mnist/train-images-idx3-ubyte", *lab = "data/mnist/train-labels-idx1-ubyte";
    dataset all, shard;
    char err[512] = "";
    assert_int_equal(dataset_load_idx_compact(&all, img, lab, err, sizeof err), 0);
    for (int compact = 0; compact < 2; compact++) {
        assert_int_equal((compact ? dataset_load_idx_compact : dataset_load_idx)(&shard, img, lab, err,
                                                                              sizeof err), 0);
        assert_int_equal(dataset_keep_shard(&shard, 2, 7, err, sizeof err), 0);
        assert_int_equal(shard.n, (60000 - 2 + 6) / 7);
        float a[784], b[784];
        for (int i = 0; i < shard.n; i += 997) {
            dataset_image(&shard, i, a);
            dataset_image(&all, 2 + 7 * i, b);
            assert_memory_equal(a, b, sizeof a);
            assert_int_equal(shard.labels[i], all.labels[2 + 7 * i]);
        }
        dataset_free(&shard);
    }
    /* read as a shard: the same images as loading, filtering, cutting and sharding */
    const struct { int klass, limit, rank, size; } cases[] = {
        {-1, 0, 1, 2}, {7, 0, 0, 3}, {7, 1000, 2, 3}, {-1, 5, 4, 5}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dataset want, got;
        int n_sel = 0, top = 0;
        assert_int_equal(dataset_load_idx_compact(&want, img, lab, err, sizeof err), 0);
        if (cases[c].klass >= 0)
            assert_int_equal(dataset_filter_class(&want, cases[c].klass, err, sizeof err), 0);
        if (cases[c].limit) dataset_truncate(&want, cases[c].limit);
        int n_want = want.n;
        assert_int_equal(dataset_keep_shard(&want, cases[c].rank, cases[c].size, err, sizeof err), 0);
        assert_int_equal(dataset_load_idx_shard(&got, img, lab, cases[c].klass, cases[c].limit,
                                                cases[c].rank, cases[c].size, &n_sel, &top, err,
                                                sizeof err), 0);
        assert_int_equal(n_sel, n_want);
        assert_int_equal(top, 9);
        assert_int_equal(got.n, want.n);
        assert_memory_equal(got.pixels, want.pixels, (size_t)got.n * 784);
        assert_memory_equal(got.labels, want.labels, (size_t)got.n);
        dataset_free(&want);
        dataset_free(&got);
    }
    int n_sel, top;
    assert_int_equal(dataset_load_idx_shard(&shard, img, lab, -1, 3, 3, 4, &n_sel, &top, err,
                                            sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "too few for 4 ranks"));
    assert_int_equal(dataset_load_idx_shard(&shard, img, NULL, 2, 0, 0, 2, &n_sel, &top, err,
                                            sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "needs labels"));
    dataset_truncate(&all, 3);
    assert_int_equal(dataset_keep_shard(&all, 3, 4, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "too few for 4 ranks"));
    assert_int_equal(dataset_keep_shard(&all, 0, 1, err, sizeof err), 0);
    assert_int_equal(all.n, 3);
    dataset_free(&all);
}

static void test_real_mnist(void **state) {
    (void)state;
    const char *img = "data/mnist/t10k-images-idx3-ubyte";
    const char *lab = "data/mnist/t10k-labels-idx1-ubyte";
    if (!exists(img) || !exists(lab)) {
        img = "data/mnist/t10k-images-idx3-ubyte.gz";
        lab = "data/mnist/t10k-labels-idx1-ubyte.gz";
    }
    /* a missing data set is a failure, not a skip: a skip would pass the
     * suite with the real-file path never run */
    if (!exists(img) || !exists(lab))
        fail_msg("MNIST test set not found under data/mnist: run scripts/get-data.sh mnist");
    dataset d;
    char err[512] = "";
    int rc = dataset_load_idx(&d, img, lab, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(d.n, 10000);
    assert_int_equal(d.channels, 1);
    assert_int_equal(d.height, 28);
    assert_int_equal(d.width, 28);
    assert_int_equal(d.labels[0], 7);
    assert_int_equal(d.labels[1], 2);
    float lo = 1, hi = 0;
    for (size_t i = 0; i < (size_t)d.n * 784; i++) {
        if (d.x[i] < lo) lo = d.x[i];
        if (d.x[i] > hi) hi = d.x[i];
    }
    assert_true(lo == 0.0f && hi == 1.0f);
    /* the compact (byte) form reads back the same floats, also after filtering */
    dataset c;
    assert_int_equal(dataset_load_idx_compact(&c, img, lab, err, sizeof err), 0);
    assert_null(c.x);
    assert_non_null(c.pixels);
    float a[784], b[784];
    for (int i = 0; i < d.n; i += 997) {
        dataset_image(&d, i, a);
        dataset_image(&c, i, b);
        assert_memory_equal(a, b, sizeof a);
    }
    assert_int_equal(dataset_filter_class(&d, 7, err, sizeof err), 0);
    assert_int_equal(d.n, 1028); /* sevens in the MNIST test set */
    assert_int_equal(dataset_filter_class(&c, 7, err, sizeof err), 0);
    assert_int_equal(c.n, 1028);
    dataset_image(&d, 1027, a);
    dataset_image(&c, 1027, b);
    assert_memory_equal(a, b, sizeof a);
    dataset_truncate(&c, 10);
    assert_int_equal(c.n, 10);
    dataset_free(&c);
    dataset_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_peek_idx),
        cmocka_unit_test(test_idx_labels_path),
        cmocka_unit_test(test_real_mnist),
        cmocka_unit_test(test_keep_shard),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
