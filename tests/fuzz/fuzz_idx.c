/* fuzz_idx: the IDX loaders (dataset_peek_idx, dataset_load_idx,
 * dataset_load_idx_compact, and data_sets_load on a path), plain or gzip.
 *
 * Input: a 2-byte little-endian length L, then L bytes of image file, then
 * the rest as the labels file beside it (none when the rest is empty). A
 * loaded set must agree with its peeked header, hold pixels in [0, 1] and
 * labels for every image, and the float and compact loads must be the
 * same images. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dataset.h"
#include "server/data_sets.h"
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t ilen = fuzz_env_u16(data);
    data += 2;
    size -= 2;
    if (ilen > size)
        ilen = size;
    char dir[FUZZ_ENV_PATH_MAX], images[FUZZ_ENV_PATH_MAX + 64], labels[FUZZ_ENV_PATH_MAX + 64];
    fuzz_env_path(dir, sizeof dir, "idx");
    fuzz_env_fresh_dir(dir);
    snprintf(images, sizeof images, "%s/set-images-idx3-ubyte", dir);
    snprintf(labels, sizeof labels, "%s/set-labels-idx1-ubyte", dir);
    fuzz_env_write_file(images, data, ilen);
    int with_labels = size > ilen;
    if (with_labels)
        fuzz_env_write_file(labels, data + ilen, size - ilen);

    char err[512];
    int n = 0, h = 0, w = 0;
    int peeked = dataset_peek_idx(images, &n, &h, &w, err, sizeof err) == VAE_OK;
    dataset d, c;
    vae_status rc = dataset_load_idx(&d, images, with_labels ? labels : NULL, err, sizeof err);
    vae_status rcc =
        dataset_load_idx_compact(&c, images, with_labels ? labels : NULL, err, sizeof err);
    FUZZ_CHECK((rc == VAE_OK) == (rcc == VAE_OK), "the float load says %d, the compact %d", rc,
               rcc);
    if (rc == VAE_OK) {
        FUZZ_CHECK(peeked && d.n == n && d.height == h && d.width == w && d.channels == 1,
                   "loaded %d of %dx%dx%d, peeked %d of %dx%d", d.n, d.channels, d.height,
                   d.width, n, h, w);
        size_t dim = (size_t)dataset_dim(&d);
        float *img = malloc(dim * sizeof *img); /* owned: freed below */
        FUZZ_CHECK(img != NULL, "out of memory");
        for (int i = 0; i < d.n; i++) {
            dataset_image(&c, i, img);
            FUZZ_CHECK(!memcmp(img, d.x + (size_t)i * dim, dim * sizeof *img),
                       "image %d differs between the loads", i);
            for (size_t p = 0; p < dim; p++)
                FUZZ_CHECK(img[p] >= 0.0f && img[p] <= 1.0f, "pixel out of range");
        }
        free(img);
        FUZZ_CHECK(!with_labels || (d.labels && c.labels && !memcmp(d.labels, c.labels, (size_t)d.n)),
                   "labels differ");
        if (d.labels && d.n >= 2) {
            dataset val;
            if (dataset_split_validation(&d, 0.5, 1, &val, err, sizeof err) == VAE_OK) {
                FUZZ_CHECK(d.n + val.n == c.n, "a split lost images");
                dataset_free(&val);
            }
            if (dataset_filter_class(&c, c.labels[0], err, sizeof err) == VAE_OK)
                FUZZ_CHECK(c.n >= 1, "a class present has no image");
        }
        dataset_free(&d);
        dataset_free(&c);
    }
    dataset s;
    if (data_sets_load(fuzz_env_scratch(), images, DATA_SETS_TRAIN, &s, err, sizeof err) ==
        VAE_OK) {
        FUZZ_CHECK(rc == VAE_OK, "data_sets_load takes what dataset_load_idx refuses");
        dataset_free(&s);
    }
    return 0;
}
