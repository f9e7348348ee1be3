/* dataset: images as floats in [0, 1], with labels.
 *
 *     dataset train;
 *     if (dataset_load_idx(&train, "data/mnist/train-images-idx3-ubyte",
 *                          "data/mnist/train-labels-idx1-ubyte", err, sizeof err)) ...
 *     ... train.x + i * dataset_dim(&train) is image i, (C, H, W) planar ...
 *     dataset_free(&train);
 *
 * Loaders check everything they read (magic, dimensions, lengths, counts) and
 * say in err what was wrong and with which file.
 */
#ifndef DATASET_H
#define DATASET_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DATASET_OK = 0,
    DATASET_ERR_IO,
    DATASET_ERR_FORMAT,
    DATASET_ERR_NOMEM,
    DATASET_ERR_ARG
} dataset_status;

typedef struct {
    int n;                  /* number of images */
    int channels, height, width;
    float *x;               /* owned; n * channels * height * width, in [0, 1] */
    uint8_t *labels;        /* owned; n labels, or NULL when unlabelled */
} dataset;

static inline int dataset_dim(const dataset *d) { return d->channels * d->height * d->width; }

/* IDX (LeCun) image file, with an optional label file (labels_path may be NULL).
 * Image magic 0x00000803, label magic 0x00000801; counts must agree. */
int dataset_load_idx(dataset *out, const char *images_path, const char *labels_path, char *err,
                     size_t errlen);
/* Keeps only images with label k (needs labels). */
int dataset_filter_class(dataset *d, int k, char *err, size_t errlen);
/* Keeps the first n images (n >= 1). */
void dataset_truncate(dataset *d, int n);
void dataset_free(dataset *d);

#endif
