/* dataset: images as floats in [0, 1], with labels.
 *
 *     dataset train;
 *     if (dataset_load_idx(&train, "data/mnist/train-images-idx3-ubyte",
 *                          "data/mnist/train-labels-idx1-ubyte", err, sizeof err)) ...
 *     ... train.x + i * dataset_dim(&train) is image i, (C, H, W) planar ...
 *     dataset_free(&train);
 *
 *     int n, h, w;                    // what a file holds, without loading it
 *     if (dataset_peek_idx("data/mnist/t10k-images-idx3-ubyte", &n, &h, &w, err, sizeof err)) ...
 *
 * Loaders check everything they read (magic, dimensions, lengths, counts) and
 * say in err what was wrong and with which file; on failure the dataset holds
 * nothing. The dataset owns its arrays; dataset_free releases them.
 */
#ifndef DATASET_H
#define DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae_status.h"

typedef struct {
    int n;                  /* number of images */
    int channels, height, width;
    float *x;               /* owned; n * channels * height * width, in [0, 1];
                               NULL in a compact dataset, which holds pixels */
    uint8_t *pixels;        /* owned; compact datasets only: value * 255, same layout */
    uint8_t *labels;        /* owned; n labels, or NULL when unlabelled */
} dataset;

static inline int dataset_dim(const dataset *d) { return d->channels * d->height * d->width; }

/* IDX (LeCun) image file, with an optional label file (labels_path may be NULL).
 * Image magic 0x00000803, label magic 0x00000801; counts must agree. */
vae_status dataset_load_idx(dataset *out, const char *images_path, const char *labels_path,
                            char *err, size_t errlen);
/* The same, kept as bytes (a quarter of the memory: MNIST's 60,000 training
 * images take 47 MB instead of 188 MB); read images with dataset_image. */
vae_status dataset_load_idx_compact(dataset *out, const char *images_path,
                                    const char *labels_path, char *err, size_t errlen);
/* The image count and size from the 16-byte header of an IDX image file (plain or gzip),
 * without reading the images; the same checks as the loaders (magic, a count of 1 to
 * 2^31-1, 1 to 4096 pixels per side). */
vae_status dataset_peek_idx(const char *images_path, int *n, int *height, int *width,
                            char *err, size_t errlen);
/* The labels file that belongs beside an IDX image file ("...-images-idx3-ubyte..." ->
 * "...-labels-idx1-ubyte...", at the first "-images-idx3-ubyte"): 1 with the path in out,
 * 0 when the name has no such part (or out is too small; out is then ""). */
int dataset_idx_labels_path(const char *images_path, char *out, size_t outlen);
/* One rank's shard of an IDX training set as bytes (dataset_load_shard
 * without a split): of the images with label klass (-1: all) the first
 * limit (0: all), the ones with g % size == rank. *n_selected gets how many
 * were selected over all ranks, *top_label the largest label in the whole
 * labels file (-1 without one). */
vae_status dataset_load_idx_shard(dataset *out, const char *images_path, const char *labels_path,
                                  int klass, int limit, int rank, int size, int *n_selected,
                                  int *top_label, char *err, size_t errlen);
/* Image i as floats in [0, 1] into out (dataset_dim floats), either storage. */
void dataset_image(const dataset *d, int i, float *out);
/* Keeps only images with label k (needs labels). */
vae_status dataset_filter_class(dataset *d, int k, char *err, size_t errlen);
/* Keeps the first n images (n >= 1). */
void dataset_truncate(dataset *d, int n);
/* Keeps rank's shard of size ranks: the images i with i % size == rank, in
 * their order (image i is then at i / size). VAE_ERR_ARG when the shard
 * would be empty (fewer images than ranks). */
vae_status dataset_keep_shard(dataset *d, int rank, int size, char *err, size_t errlen);
void dataset_free(dataset *d);

/* CIFAR-10 binary version, as a folder: data_batch_1.bin, data_batch_2.bin, ...
 * (the training set: every consecutive one present from 1, at most 5) or, with
 * test_split non-zero, test_batch.bin. Each record is 1 label byte (0..9) then
 * 3072 pixel bytes, R then G then B planes of 32x32; a file must hold whole
 * records. Gives 3x32x32 images with labels. */
vae_status dataset_load_cifar_dir(dataset *out, const char *dir, int test_split, char *err,
                                  size_t errlen);
/* A folder of PNG files, all the same size and kind (grey: 1 channel, or
 * colour: 3; alpha dropped), in name order (strcmp). When the folder holds
 * sub-folders instead, each is a class: label = the sub-folder's index in
 * name order (at most 256), images in name order within it. Names starting
 * with '.' are skipped; any other file that is not a PNG, or a PNG of another
 * size or kind, is an error naming it. */
vae_status dataset_load_png_dir(dataset *out, const char *dir, char *err, size_t errlen);
/* Moves a fraction (0 < fraction < 1, rounded, at least 1 image, leaving at
 * least 1) of d's images, chosen by a generator seeded with seed, into *val
 * (initialised here, the caller frees it); d keeps the rest in their order.
 * The same d, fraction and seed always give the same split. */
vae_status dataset_split_validation(dataset *d, double fraction, uint64_t seed, dataset *val,
                                    char *err, size_t errlen);

/* ---------- one rank's part of a source, reading only that part ----------
 *
 *     dataset_source src = {.kind = DATASET_SOURCE_CIFAR, .path = "data/cifar10"};
 *     dataset_shard_spec spec = {.klass = -1, .val_split = 0.1, .seed = 7,
 *                                .rank = r, .size = n};
 *     dataset train, val;            // both owned by the caller: dataset_free
 *     dataset_shard_info info;
 *     if (dataset_load_shard(&src, &spec, &train, &val, &info, err, sizeof err)) ...
 *
 * The result is what loading the whole source, splitting off the validation
 * images (dataset_split_validation with fraction and seed), keeping the class
 * in both halves (dataset_filter_class), the first limit training images
 * (dataset_truncate) and rank's shard of them (dataset_keep_shard) would
 * give, but only the images kept are read: an index first (the count, the
 * labels, the shape: IDX headers and label files, CIFAR-10 label bytes one
 * pread each, a PNG folder's listing and its first file's header), then one
 * pread per CIFAR-10 record, per image of a plain IDX file, one decode per PNG
 * file, or one streamed pass over a gzip IDX file (gzip cannot seek) keeping
 * the chosen images. The same
 * checks and messages as the whole loaders, for the images that are read
 * (a PNG another rank holds is checked by that rank). IDX and CIFAR-10 sets
 * come as bytes (dataset_image reads them), PNG ones as floats. */
typedef enum { DATASET_SOURCE_IDX = 0, DATASET_SOURCE_CIFAR, DATASET_SOURCE_PNG } dataset_source_kind;

typedef struct {
    dataset_source_kind kind;
    const char *path;        /* IDX: the image file; CIFAR-10, PNG: the folder */
    const char *labels_path; /* IDX: the labels file, or NULL */
    int test_split;          /* CIFAR-10: test_batch.bin, not data_batch_N.bin */
} dataset_source;

typedef struct {
    int klass;        /* -1: every class */
    int limit;        /* 0: every training image; else the first limit (after the class) */
    double val_split; /* 0: none; else the fraction held out (needs val) */
    uint64_t seed;    /* of the split */
    int rank, size;   /* this rank's shard of size ranks; 0 of 1 for the whole set */
    int held_all;     /* every image (of the class) is an evaluation image, none a
                         training image: a test split into val (train holds none) */
    int held_block;   /* 0: val holds every evaluation image; else, when each rank's
                         contiguous block of them has at least held_block images
                         (rank r's: images n_val * r / size .. n_val * (r + 1) / size - 1),
                         only this rank's block (from info.val_first) */
} dataset_shard_spec;

typedef struct {
    int n_train;   /* training images over all ranks (this rank holds the g % size == rank) */
    int n_val;     /* evaluation images over all ranks */
    int val_first; /* the first of them val holds (0 unless val is a block) */
    int top_label; /* the largest label of the whole source, -1 without labels */
    int n_read;    /* images this call read from the source (for tests) */
} dataset_shard_info;

/* train gets rank's shard of the training images, val (NULL when
 * val_split is 0 and not held_all) the evaluation images (see held_block).
 * VAE_ERR_ARG for a class without images (in either half), a training shard
 * left empty, a bad split; on failure both hold nothing. */
vae_status dataset_load_shard(const dataset_source *src, const dataset_shard_spec *spec,
                              dataset *train, dataset *val, dataset_shard_info *info, char *err,
                              size_t errlen);

#endif
