/* data_sets: data sets by the names users type, and where their files are.
 *
 *     dataset d;
 *     data_sets_load("data", "mnist", DATA_SETS_TRAIN, &d, err, sizeof err);
 *     char images[PATH_MAX], labels[PATH_MAX];
 *     data_sets_idx_paths("data", "mnist", DATA_SETS_TEST, images, labels, PATH_MAX);
 *
 * Names: "mnist" and "fashion" (IDX files under ROOT/mnist, ROOT/fashion, as
 * scripts/get-data.sh leaves them); a path to an IDX image file, whose
 * labels are read from the *-labels-idx1-ubyte file beside it when present;
 * a folder of CIFAR-10 binary batches (data_batch_N.bin, test_batch.bin);
 * or a folder of PNG files (labels from sub-folders), which has no test split.
 * ROOT is $VAED_DATA, else "data". The built-in layout and the rule that
 * finds labels beside an IDX image file (dataset_idx_labels_path) are used
 * here only, so jobs_spec checks a data set by the same paths a run loads.
 */
#ifndef DATA_SETS_H
#define DATA_SETS_H

#include <stddef.h>

#include "engine/dataset.h"

typedef enum { DATA_SETS_TRAIN = 0, DATA_SETS_TEST } data_sets_split;

const char *data_sets_root(void);
/* 1 when name is a built-in name (mnist, fashion). */
int data_sets_is_builtin(const char *name);
/* The IDX files split of name is read from when it is in IDX form: for a
 * built-in name ROOT/NAME/train-images-idx3-ubyte (t10k-... for the test
 * split) and its labels file; for a path, the training split is the path
 * itself and, when the name has an -images-idx3-ubyte part, the labels file
 * beside it (labels "" when not). 0, or -1 for a path's test split (it has
 * none) or a path that does not fit in size bytes. Nothing is opened. */
int data_sets_idx_paths(const char *root, const char *name, data_sets_split split, char *images,
                        char *labels, size_t size);
/* The files split of name is read from, as a source dataset_load_shard reads
 * in part: IDX (as data_sets_idx_paths; a path's labels file only when it
 * can be read, as a load takes it, a built-in set's always), a CIFAR-10 folder (data_batch_1.bin
 * inside) or a PNG folder (training split only). images and labels (size
 * bytes each) hold the paths src points to. 0, or -1 for a split the name
 * does not have or a name that is neither file nor folder. */
int data_sets_source(const char *root, const char *name, data_sets_split split,
                     dataset_source *src, char *images, char *labels, size_t size);
/* Removes from text (NUL-terminated, edited in place) every "DIR/" that
 * starts a path, for DIR as given and as realpath resolves it, so that
 * what a client reads names files from inside dir ("DIR/sub/x" becomes
 * "sub/x"): server paths stay on the server. */
void data_sets_strip_dir(char *text, const char *dir);
/* The same with dir's realpath resolved already (real; NULL or "" when it
 * did not resolve), for a caller that strips the same dir from many texts. */
void data_sets_strip_dir_as(char *text, const char *dir, const char *real);
/* VAE_ERR_ARG when a path has no test split. */
vae_status data_sets_load(const char *root, const char *name, data_sets_split split,
                          dataset *out, char *err, size_t errlen);
/* The same as bytes (dataset_load_idx_compact): for training, where the
 * training set is the bulk of the memory. */
vae_status data_sets_load_compact(const char *root, const char *name, data_sets_split split,
                                  dataset *out, char *err, size_t errlen);

#endif
