#include "server/data_sets.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *data_sets_root(void)
{
    const char *d = getenv("VAED_DATA");
    return d && *d ? d : "data";
}

int data_sets_is_builtin(const char *name)
{
    return strcmp(name, "mnist") == 0 || strcmp(name, "fashion") == 0;
}

int data_sets_idx_paths(const char *root, const char *name, data_sets_split split, char *images,
                        char *labels, size_t size)
{
    if (size)
        images[0] = labels[0] = '\0';
    if (data_sets_is_builtin(name)) {
        const char *s = split == DATA_SETS_TEST ? "t10k" : "train";
        int a = snprintf(images, size, "%s/%s/%s-images-idx3-ubyte", root, name, s);
        int b = snprintf(labels, size, "%s/%s/%s-labels-idx1-ubyte", root, name, s);
        return a >= 0 && (size_t)a < size && b >= 0 && (size_t)b < size ? 0 : -1;
    }
    if (split == DATA_SETS_TEST)
        return -1;
    int a = snprintf(images, size, "%s", name);
    if (a < 0 || (size_t)a >= size)
        return -1;
    dataset_idx_labels_path(name, labels, size);
    return 0;
}

int data_sets_source(const char *root, const char *name, data_sets_split split,
                     dataset_source *src, char *images, char *labels, size_t size)
{
    struct stat st;
    memset(src, 0, sizeof *src);
    if (!data_sets_is_builtin(name) && stat(name, &st) == 0 && S_ISDIR(st.st_mode)) {
        int n = snprintf(images, size, "%s/data_batch_1.bin", name);
        if (n < 0 || (size_t)n >= size)
            return -1;
        src->kind = access(images, F_OK) == 0 ? DATASET_SOURCE_CIFAR : DATASET_SOURCE_PNG;
        src->test_split = split == DATA_SETS_TEST;
        if (src->test_split && src->kind == DATASET_SOURCE_PNG)
            return -1;
        snprintf(images, size, "%s", name);
        src->path = images;
        return 0;
    }
    if (data_sets_idx_paths(root, name, split, images, labels, size))
        return -1;
    src->kind = DATASET_SOURCE_IDX;
    src->path = images;
    /* as load: a built-in set's labels always, a path's when they are there */
    src->labels_path =
        labels[0] && (data_sets_is_builtin(name) || access(labels, R_OK) == 0) ? labels : NULL;
    return 0;
}

typedef vae_status (*idx_loader)(dataset *, const char *, const char *, char *, size_t);

static vae_status load(const char *root, const char *name, data_sets_split split,
                       idx_loader load_idx, dataset *out, char *err, size_t errlen)
{
    char img[PATH_MAX], lab[PATH_MAX];
    memset(out, 0, sizeof *out);
    if (data_sets_is_builtin(name)) {
        data_sets_idx_paths(root, name, split, img, lab, sizeof img);
        vae_status rc = load_idx(out, img, lab, err, errlen);
        if (rc == VAE_ERR_IO) {
            size_t n = strlen(err);
            snprintf(err + n, errlen > n ? errlen - n : 0,
                     " (run `bash scripts/get-data.sh %s` to fetch it)", name);
        }
        return rc;
    }
    struct stat st;
    if (stat(name, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* a folder: CIFAR-10 binary batches, else PNG files */
        snprintf(img, sizeof img, "%s/data_batch_1.bin", name);
        if (access(img, F_OK) == 0) {
            snprintf(lab, sizeof lab, "%s/test_batch.bin", name);
            if (split == DATA_SETS_TEST && access(lab, F_OK) != 0) {
                snprintf(err, errlen, "%s has no test_batch.bin", name);
                return VAE_ERR_ARG;
            }
            return dataset_load_cifar_dir(out, name, split == DATA_SETS_TEST, err, errlen);
        }
        if (split == DATA_SETS_TEST) {
            snprintf(err, errlen, "%s (a folder of PNG files) has no test split", name);
            return VAE_ERR_ARG;
        }
        return dataset_load_png_dir(out, name, err, errlen);
    }
    if (split == DATA_SETS_TEST) {
        snprintf(err, errlen, "%s has no test split", name);
        return VAE_ERR_ARG;
    }
    if (data_sets_idx_paths(root, name, split, img, lab, sizeof img)) {
        snprintf(err, errlen, "%.200s...: the path is too long", name);
        return VAE_ERR_ARG;
    }
    return load_idx(out, img, lab[0] && access(lab, R_OK) == 0 ? lab : NULL, err, errlen);
}

vae_status data_sets_load(const char *root, const char *name, data_sets_split split,
                          dataset *out, char *err, size_t errlen)
{
    return load(root, name, split, dataset_load_idx, out, err, errlen);
}

vae_status data_sets_load_compact(const char *root, const char *name, data_sets_split split,
                                  dataset *out, char *err, size_t errlen)
{
    return load(root, name, split, dataset_load_idx_compact, out, err, errlen);
}

/* Removes every prefix + "/" from text. */
static void strip_prefix(char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    while (n > 1 && prefix[n - 1] == '/')
        n--;
    if (n == 0 || (n == 1 && prefix[0] == '.'))
        return;
    for (char *at = text; (at = strstr(at, prefix));) {
        int starts = at == text || at[-1] == ' ' || at[-1] == '"' || at[-1] == '\'' ||
                     at[-1] == '(' || at[-1] == ':' || at[-1] == '=';
        if (!starts || at[n] != '/') {
            at += n;
            continue;
        }
        memmove(at, at + n + 1, strlen(at + n + 1) + 1);
    }
}

void data_sets_strip_dir_as(char *text, const char *dir, const char *real)
{
    if (!text || !dir || !*dir)
        return;
    if (real && *real && strcmp(real, dir))
        strip_prefix(text, real);
    strip_prefix(text, dir);
}

void data_sets_strip_dir(char *text, const char *dir)
{
    char real[PATH_MAX];
    data_sets_strip_dir_as(text, dir, dir && *dir && realpath(dir, real) ? real : NULL);
}
