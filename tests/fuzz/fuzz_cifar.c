/* fuzz_cifar: the CIFAR-10 folder loader (dataset_load_cifar_dir).
 *
 * Input: one byte whose low 3 bits give how many data_batch_N.bin files
 * there are (0 to 7, so a folder may also skip a number: 6 and 7 write
 * batches 1, 2, 4 and 1, 2, 4, 5) and whose bit 3 adds test_batch.bin; the rest is
 * cut into equal pieces, one per file. A loaded set must be whole records:
 * 3x32x32 images, a label 0..9 for each. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "engine/dataset.h"
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_set(const dataset *d)
{
    FUZZ_CHECK(d->n >= 1 && d->channels == 3 && d->height == 32 && d->width == 32 && d->labels,
               "loaded %d of %dx%dx%d", d->n, d->channels, d->height, d->width);
    for (int i = 0; i < d->n; i++)
        FUZZ_CHECK(d->labels[i] <= 9, "label %d", d->labels[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int batches = data[0] & 7, test = (data[0] >> 3) & 1;
    static const int gapped[2][4] = {{1, 2, 4, 0}, {1, 2, 4, 5}};
    int files[8], n_files = 0;
    if (batches <= 5)
        for (int i = 1; i <= batches; i++)
            files[n_files++] = i;
    else
        for (int i = 0; i < 4 && gapped[batches - 6][i]; i++)
            files[n_files++] = gapped[batches - 6][i];
    if (test)
        files[n_files++] = 0;
    data++;
    size--;
    char dir[FUZZ_ENV_PATH_MAX], path[FUZZ_ENV_PATH_MAX + 32];
    fuzz_env_path(dir, sizeof dir, "cifar");
    fuzz_env_fresh_dir(dir);
    size_t piece = n_files ? size / (size_t)n_files : 0;
    for (int f = 0; f < n_files; f++) {
        if (files[f])
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, files[f]);
        else
            snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        size_t len = f + 1 == n_files ? size - piece * (size_t)f : piece;
        fuzz_env_write_file(path, data + piece * (size_t)f, len);
    }
    char err[512];
    for (int split = 0; split <= 1; split++) {
        dataset d;
        err[0] = '\0';
        if (dataset_load_cifar_dir(&d, dir, split, err, sizeof err) == VAE_OK) {
            check_set(&d);
            dataset_free(&d);
        } else {
            FUZZ_CHECK(err[0] != '\0' && d.x == NULL && d.labels == NULL,
                       "a failed load left images or no message");
        }
    }
    return 0;
}
