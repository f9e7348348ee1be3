/* data_sets: data sets by the names users type.
 *
 *     dataset d;
 *     data_sets_load("data", "mnist", DATA_SETS_TRAIN, &d, err, sizeof err);
 *
 * Names: "mnist" and "fashion" (IDX files under ROOT/mnist, ROOT/fashion, as
 * scripts/get-data.sh leaves them); a path to an IDX image file, whose
 * labels are read from the *-labels-idx1-ubyte file beside it when present;
 * a folder of CIFAR-10 binary batches (data_batch_N.bin, test_batch.bin);
 * or a folder of PNG files (labels from sub-folders), which has no test split.
 * ROOT is $VAED_DATA, else "data".
 */
#ifndef DATA_SETS_H
#define DATA_SETS_H

#include <stddef.h>

#include "engine/dataset.h"

typedef enum { DATA_SETS_TRAIN = 0, DATA_SETS_TEST } data_sets_split;

const char *data_sets_root(void);
/* 1 when name is a built-in name (mnist, fashion). */
int data_sets_is_builtin(const char *name);
/* VAE_ERR_ARG when a path has no test split. */
int data_sets_load(const char *root, const char *name, data_sets_split split, dataset *out,
                   char *err, size_t errlen);
/* The same as bytes (dataset_load_idx_compact): for training, where the
 * training set is the bulk of the memory. */
int data_sets_load_compact(const char *root, const char *name, data_sets_split split,
                           dataset *out, char *err, size_t errlen);

#endif
