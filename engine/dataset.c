/* dataset: IDX (MNIST / Fashion-MNIST) loading, plain or gzip-compressed,
 * CIFAR-10 binary batches and folders of PNG files, in-place filtering and
 * validation splits. See dataset.h. */
#include "engine/dataset.h"

#include "engine/file_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "engine/image.h"
#include "engine/rng.h"
#include "engine/util.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_MAX_SIDE 4096u
/* Reads grow the buffer in steps, so a lying header that claims billions of
 * images costs memory only for the bytes that are really there. */
#define IDX_FIRST_CHUNK (1u << 20)

/* gzread reads plain files as they are, so one path handles both. */
static vae_status idx_open(const char *path, gzFile *out, char *err, size_t errlen) {
    int fd = file_io_open_regular(path, err, errlen); /* a FIFO would block for ever */
    if (fd < 0) return VAE_ERR_IO;
    gzFile gz = gzdopen(fd, "rb"); /* owns fd from here */
    if (!gz) {
        close(fd);
        util_set_err(err, errlen, "%s: out of memory opening the file", path);
        return VAE_ERR_NOMEM;
    }
    gzbuffer(gz, 1u << 17);
    *out = gz;
    return VAE_OK;
}

/* gzerror prefixes "<fd:N>: " when opened with gzdopen; the path says more. */
static const char *gz_message(gzFile gz, int *zerr) {
    const char *msg = gzerror(gz, zerr);
    if (strncmp(msg, "<fd:", 4) == 0) {
        const char *colon = strstr(msg, ": ");
        if (colon) msg = colon + 2;
    }
    return msg;
}

/* Reads up to want bytes into dst; *got says how many came. */
static vae_status idx_read(gzFile gz, const char *path, uint8_t *dst, size_t want, size_t *got,
                           char *err, size_t errlen) {
    *got = 0;
    while (*got < want) {
        size_t chunk = want - *got;
        if (chunk > (1u << 30)) chunk = 1u << 30;
        int r = gzread(gz, dst + *got, (unsigned)chunk);
        if (r < 0) {
            int zerr = 0;
            const char *msg = gz_message(gz, &zerr);
            if (zerr == Z_ERRNO) {
                util_set_err(err, errlen, "%s: %s", path, strerror(errno));
                return VAE_ERR_IO;
            }
            util_set_err(err, errlen, "%s: corrupt gzip data: %s", path, msg);
            return VAE_ERR_FORMAT;
        }
        if (r == 0) {
            /* zlib reports a gzip stream cut short as Z_BUF_ERROR at EOF. */
            int zerr = 0;
            const char *msg = gz_message(gz, &zerr);
            if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
                util_set_err(err, errlen, "%s: corrupt gzip data: %s", path, msg);
                return VAE_ERR_FORMAT;
            }
            break;
        }
        *got += (size_t)r;
    }
    return VAE_OK;
}

/* Checks that nothing follows the file's first `len` bytes (the header's and
 * the body it describes), which gz has read. */
static vae_status idx_read_end(gzFile gz, const char *path, size_t len, char *err, size_t errlen) {
    uint8_t extra[64];
    size_t got;
    vae_status rc = idx_read(gz, path, extra, sizeof extra, &got, err, errlen);
    if (!rc && got) {
        util_set_err(err, errlen, "%s: trailing bytes after the %zu bytes the header describes", path,
                len);
        rc = VAE_ERR_FORMAT;
    }
    return rc;
}

/* Reads exactly `count` bytes after the header and checks nothing follows.
 * *out is owned by the caller. */
static vae_status idx_read_body(gzFile gz, const char *path, size_t header_len, size_t count,
                                uint8_t **out, char *err, size_t errlen) {
    size_t cap = count < IDX_FIRST_CHUNK ? count : IDX_FIRST_CHUNK;
    uint8_t *buf = malloc(cap ? cap : 1); /* owned: handed to *out */
    if (!buf) {
        util_set_err(err, errlen, "%s: out of memory", path);
        return VAE_ERR_NOMEM;
    }
    size_t have = 0;
    for (;;) {
        size_t got;
        vae_status rc = idx_read(gz, path, buf + have, cap - have, &got, err, errlen);
        if (rc) {
            free(buf);
            return rc;
        }
        have += got;
        if (have < cap) {
            util_set_err(err, errlen,
                    "%s: truncated: the header promises %zu data bytes, the file has %zu",
                    path, count, have);
            free(buf);
            return VAE_ERR_FORMAT;
        }
        if (have == count) break;
        size_t ncap = cap * 2 < count ? cap * 2 : count;
        uint8_t *nbuf = realloc(buf, ncap);
        if (!nbuf) {
            free(buf);
            util_set_err(err, errlen, "%s: out of memory (%zu bytes)", path, ncap);
            return VAE_ERR_NOMEM;
        }
        buf = nbuf;
        cap = ncap;
    }
    vae_status rc = idx_read_end(gz, path, header_len + count, err, errlen);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return VAE_OK;
}

static vae_status idx_read_header(gzFile gz, const char *path, uint8_t *hdr, size_t len, uint32_t magic,
                                  char *err, size_t errlen) {
    size_t got;
    vae_status rc = idx_read(gz, path, hdr, len, &got, err, errlen);
    if (rc) return rc;
    if (got < 4 || util_be32(hdr) != magic) {
        util_set_err(err, errlen, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)", path,
                magic == IDX_IMAGES_MAGIC ? "image" : "label", got >= 4 ? util_be32(hdr) : 0u, magic);
        return VAE_ERR_FORMAT;
    }
    if (got < len) {
        util_set_err(err, errlen, "%s: truncated header (%zu of %zu bytes)", path, got, len);
        return VAE_ERR_FORMAT;
    }
    return VAE_OK;
}

/* Reads and checks the 16-byte header of an image file: count and size. */
static vae_status idx_images_header(gzFile gz, const char *path, uint32_t *n, uint32_t *rows,
                                    uint32_t *cols, char *err, size_t errlen) {
    uint8_t hdr[16];
    vae_status rc = idx_read_header(gz, path, hdr, sizeof hdr, IDX_IMAGES_MAGIC, err, errlen);
    if (rc) return rc;
    *n = util_be32(hdr + 4);
    *rows = util_be32(hdr + 8);
    *cols = util_be32(hdr + 12);
    if (*n == 0 || *n > (uint32_t)INT32_MAX) {
        util_set_err(err, errlen, "%s: invalid image count %u", path, *n);
        return VAE_ERR_FORMAT;
    }
    if (*rows == 0 || *cols == 0 || *rows > IDX_MAX_SIDE || *cols > IDX_MAX_SIDE) {
        util_set_err(err, errlen, "%s: invalid image size %ux%u (1 to %u per side)", path, *rows,
                *cols, IDX_MAX_SIDE);
        return VAE_ERR_FORMAT;
    }
    return VAE_OK;
}

vae_status dataset_peek_idx(const char *images_path, int *n, int *height, int *width,
                            char *err, size_t errlen) {
    if (!images_path || !n || !height || !width) {
        util_set_err(err, errlen, "dataset: no image file given");
        return VAE_ERR_ARG;
    }
    gzFile gz;
    vae_status rc = idx_open(images_path, &gz, err, errlen);
    if (rc) return rc;
    uint32_t count, rows, cols;
    rc = idx_images_header(gz, images_path, &count, &rows, &cols, err, errlen);
    gzclose(gz);
    if (rc) return rc;
    *n = (int)count;
    *height = (int)rows;
    *width = (int)cols;
    return VAE_OK;
}

#define IDX_IMAGES_PART "-images-idx3-ubyte"
#define IDX_LABELS_PART "-labels-idx1-ubyte"

int dataset_idx_labels_path(const char *images_path, char *out, size_t outlen) {
    const char *p = images_path ? strstr(images_path, IDX_IMAGES_PART) : NULL;
    if (outlen) out[0] = '\0';
    if (!p) return 0;
    int len = snprintf(out, outlen, "%.*s" IDX_LABELS_PART "%s", (int)(p - images_path),
                       images_path, p + strlen(IDX_IMAGES_PART));
    if (len < 0 || (size_t)len >= outlen) {
        if (outlen) out[0] = '\0';
        return 0;
    }
    return 1;
}

/* An IDX image file's images are grey: one channel of rows x cols. */
static void idx_set_shape(dataset *out, int n, uint32_t rows, uint32_t cols) {
    out->n = n;
    out->channels = 1;
    out->height = (int)rows;
    out->width = (int)cols;
}

static vae_status load_images(dataset *out, const char *path, int compact, char *err, size_t errlen) {
    gzFile gz;
    vae_status rc = idx_open(path, &gz, err, errlen);
    if (rc) return rc;
    uint8_t *pixels = NULL; /* owned here */
    uint32_t n, rows, cols;
    rc = idx_images_header(gz, path, &n, &rows, &cols, err, errlen);
    if (rc) goto end;
    uint64_t dim = (uint64_t)rows * cols;
    if ((uint64_t)n > (SIZE_MAX / sizeof(float)) / dim || dim > (uint64_t)INT32_MAX) {
        util_set_err(err, errlen, "%s: %u images of %ux%u is too large", path, n, rows, cols);
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    size_t count = (size_t)n * (size_t)dim;
    rc = idx_read_body(gz, path, 16, count, &pixels, err, errlen);
    if (rc) goto end;
    if (compact) {
        out->pixels = pixels;
        pixels = NULL;
        goto shape;
    }
    out->x = malloc(count * sizeof *out->x);
    if (!out->x) {
        util_set_err(err, errlen, "%s: out of memory (%zu floats)", path, count);
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    for (size_t i = 0; i < count; i++) out->x[i] = (float)pixels[i] / 255.0f;
shape:
    idx_set_shape(out, (int)n, rows, cols);
end:
    free(pixels);
    gzclose(gz);
    return rc;
}

static vae_status load_labels(dataset *out, const char *path, char *err, size_t errlen) {
    gzFile gz;
    vae_status rc = idx_open(path, &gz, err, errlen);
    if (rc) return rc;
    uint8_t hdr[8];
    rc = idx_read_header(gz, path, hdr, sizeof hdr, IDX_LABELS_MAGIC, err, errlen);
    if (rc) goto end;
    uint32_t n = util_be32(hdr + 4);
    if (n != (uint32_t)out->n) {
        util_set_err(err, errlen, "%s: %u labels but the image file has %d images", path, n, out->n);
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    rc = idx_read_body(gz, path, sizeof hdr, n, &out->labels, err, errlen);
end:
    gzclose(gz);
    return rc;
}

static vae_status load_idx(dataset *out, const char *images_path, const char *labels_path, int compact,
                           char *err, size_t errlen) {
    if (!out) return VAE_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (!images_path) {
        util_set_err(err, errlen, "dataset: no image file given");
        return VAE_ERR_ARG;
    }
    vae_status rc = load_images(out, images_path, compact, err, errlen);
    if (!rc && labels_path) rc = load_labels(out, labels_path, err, errlen);
    if (rc) dataset_free(out);
    return rc;
}

vae_status dataset_load_idx(dataset *out, const char *images_path, const char *labels_path, char *err,
                            size_t errlen) {
    return load_idx(out, images_path, labels_path, 0, err, errlen);
}

vae_status dataset_load_idx_compact(dataset *out, const char *images_path, const char *labels_path,
                                    char *err, size_t errlen) {
    return load_idx(out, images_path, labels_path, 1, err, errlen);
}

void dataset_image(const dataset *d, int i, float *out) {
    size_t dim = (size_t)dataset_dim(d);
    if (d->x) {
        memcpy(out, d->x + (size_t)i * dim, dim * sizeof *out);
        return;
    }
    const uint8_t *p = d->pixels + (size_t)i * dim;
    for (size_t j = 0; j < dim; j++) out[j] = (float)p[j] / 255.0f; /* as the float loader: bit for bit */
}

vae_status dataset_filter_class(dataset *d, int k, char *err, size_t errlen) {
    if (!d || (!d->x && !d->pixels)) {
        util_set_err(err, errlen, "dataset: empty dataset");
        return VAE_ERR_ARG;
    }
    if (!d->labels) {
        util_set_err(err, errlen, "dataset: filtering by class needs labels");
        return VAE_ERR_ARG;
    }
    if (k < 0 || k > 255) {
        util_set_err(err, errlen, "dataset: class %d out of range", k);
        return VAE_ERR_ARG;
    }
    size_t dim = (size_t)dataset_dim(d);
    int kept = 0;
    for (int i = 0; i < d->n; i++) {
        if (d->labels[i] != k) continue;
        if (kept != i) {
            if (d->x)
                memmove(d->x + (size_t)kept * dim, d->x + (size_t)i * dim, dim * sizeof *d->x);
            else
                memmove(d->pixels + (size_t)kept * dim, d->pixels + (size_t)i * dim, dim);
            d->labels[kept] = d->labels[i];
        }
        kept++;
    }
    if (kept == 0) {
        util_set_err(err, errlen, "dataset: no images with label %d", k);
        return VAE_ERR_ARG; /* nothing moved: d is unchanged */
    }
    dataset_truncate(d, kept);
    return VAE_OK;
}

void dataset_truncate(dataset *d, int n) {
    if (!d || n < 1 || n >= d->n) return;
    d->n = n;
    /* Shrinking in place cannot fail in a way that matters: keep the old
     * block if realloc says no. */
    if (d->x) {
        float *x = realloc(d->x, (size_t)n * (size_t)dataset_dim(d) * sizeof *x);
        if (x) d->x = x;
    } else if (d->pixels) {
        uint8_t *p = realloc(d->pixels, (size_t)n * (size_t)dataset_dim(d));
        if (p) d->pixels = p;
    }
    if (d->labels) {
        uint8_t *l = realloc(d->labels, (size_t)n);
        if (l) d->labels = l;
    }
}

vae_status dataset_keep_shard(dataset *d, int rank, int size, char *err, size_t errlen) {
    if (!d || size < 1 || rank < 0 || rank >= size) {
        util_set_err(err, errlen, "dataset: rank %d of %d ranks", rank, size);
        return VAE_ERR_ARG;
    }
    if (d->n <= rank) {
        util_set_err(err, errlen, "the training set has %d images, too few for %d ranks", d->n,
                     size);
        return VAE_ERR_ARG;
    }
    size_t dim = (size_t)dataset_dim(d);
    int kept = 0;
    for (int i = rank; i < d->n; i += size, kept++) {
        if (d->x)
            memmove(d->x + (size_t)kept * dim, d->x + (size_t)i * dim, dim * sizeof *d->x);
        else
            memmove(d->pixels + (size_t)kept * dim, d->pixels + (size_t)i * dim, dim);
        if (d->labels) d->labels[kept] = d->labels[i];
    }
    d->n = kept + 1; /* dataset_truncate gives back the memory of what is past kept */
    dataset_truncate(d, kept);
    return VAE_OK;
}

void dataset_free(dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->pixels);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

/* ---------- whole files ---------- */

/* dir/name into buf; 0, or -1 (buf holds a truncated path) when too long. */
static int join_path(char *buf, size_t n, const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    if (a + 1 + b + 1 > n) {
        snprintf(buf, n, "%s", dir);
        return -1;
    }
    memcpy(buf, dir, a);
    buf[a] = '/';
    memcpy(buf + a + 1, name, b + 1);
    return 0;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static vae_status check_dir(const char *dir, char *err, size_t errlen) {
    struct stat st;
    if (!dir || !*dir) {
        util_set_err(err, errlen, "dataset: no folder given");
        return VAE_ERR_ARG;
    }
    if (stat(dir, &st) != 0) {
        util_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return VAE_ERR_IO;
    }
    if (!S_ISDIR(st.st_mode)) {
        util_set_err(err, errlen, "%s: not a folder", dir);
        return VAE_ERR_IO;
    }
    return VAE_OK;
}

/* ---------- what a source holds, before its images are read ---------- */

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_MAX_BATCHES 5
#define PNG_MAX_FILE ((size_t)64 << 20)
#define PNG_MAX_CLASSES 256

typedef struct {
    char **names; /* owned, each owned */
    int n, cap;
} name_list;

/* A source's index: how many images, their labels and their shape, and
 * where image i is, so that a reader can fetch any subset of them. Built
 * by idx_index, cifar_index or png_index; index_free releases it. */
typedef struct {
    dataset_source_kind kind;
    const char *path;         /* borrowed: the IDX image file or the folder */
    int n;
    uint8_t *labels;          /* owned; n, or NULL when unlabelled */
    int channels, height, width;
    /* CIFAR: file f holds images first[f] .. first[f + 1] - 1 */
    int n_files;
    int fds[CIFAR_MAX_BATCHES];
    int first[CIFAR_MAX_BATCHES + 1];
    char files[CIFAR_MAX_BATCHES][PATH_MAX];
    /* PNG: image i is paths.names[i] */
    name_list paths;
} source_index;

static void names_free(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static void index_free(source_index *ix) {
    for (int f = 0; f < ix->n_files; f++) close(ix->fds[f]);
    free(ix->labels);
    names_free(&ix->paths);
    memset(ix, 0, sizeof *ix);
}

static vae_status idx_index(source_index *ix, const char *images_path, const char *labels_path,
                            char *err, size_t errlen) {
    gzFile gz;
    vae_status rc = idx_open(images_path, &gz, err, errlen);
    if (rc) return rc;
    uint32_t n, rows, cols;
    rc = idx_images_header(gz, images_path, &n, &rows, &cols, err, errlen);
    gzclose(gz);
    if (rc) return rc;
    dataset labels = {.n = (int)n};
    if (labels_path && (rc = load_labels(&labels, labels_path, err, errlen))) return rc;
    ix->n = (int)n;
    ix->labels = labels.labels;
    ix->channels = 1;
    ix->height = (int)rows;
    ix->width = (int)cols;
    return VAE_OK;
}

/* Opens one CIFAR-10 batch file into ix, checking its length and reading
 * its label bytes alone (one pread each), not its pixels. */
static vae_status cifar_index_file(source_index *ix, const char *path, char *err, size_t errlen) {
    int fd = file_io_open_regular(path, err, errlen);
    if (fd < 0) return VAE_ERR_IO;
    int f = ix->n_files++;
    ix->fds[f] = fd; /* index_free closes it */
    snprintf(ix->files[f], sizeof ix->files[f], "%s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        util_set_err(err, errlen, "%s: %s", path, strerror(errno));
        return VAE_ERR_IO;
    }
    size_t len = (size_t)st.st_size;
    if (len == 0 || len % CIFAR_RECORD != 0) {
        util_set_err(err, errlen,
                "%s: %zu bytes is not a whole number of %d-byte CIFAR-10 records (truncated?)",
                path, len, CIFAR_RECORD);
        return VAE_ERR_FORMAT;
    }
    size_t n = len / CIFAR_RECORD;
    if (n > (size_t)(INT_MAX - ix->n)) {
        util_set_err(err, errlen, "%s: too many images (%zu)", path, n + (size_t)ix->n);
        return VAE_ERR_FORMAT;
    }
    uint8_t *labels = realloc(ix->labels, (size_t)ix->n + n);
    if (!labels) {
        util_set_err(err, errlen, "%s: out of memory for %zu labels", path, n);
        return VAE_ERR_NOMEM;
    }
    ix->labels = labels;
    for (size_t i = 0; i < n; i++) {
        uint8_t *l = labels + ix->n + i;
        if (pread(fd, l, 1, (off_t)(i * CIFAR_RECORD)) != 1) {
            util_set_err(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
            return VAE_ERR_IO;
        }
        if (*l > 9) {
            util_set_err(err, errlen, "%s: record %zu has label %d (CIFAR-10 labels are 0..9)", path,
                    i + 1, *l);
            return VAE_ERR_FORMAT;
        }
    }
    ix->n += (int)n;
    ix->first[f + 1] = ix->n;
    return VAE_OK;
}

/* The batch files of a CIFAR-10 folder: data_batch_1.bin ... (no gap), or
 * test_batch.bin. */
static vae_status cifar_index(source_index *ix, const char *dir, int test_split, char *err,
                              size_t errlen) {
    vae_status rc = check_dir(dir, err, errlen);
    if (rc) return rc;
    ix->channels = 3;
    ix->height = ix->width = CIFAR_SIDE;
    char path[PATH_MAX];
    if (test_split) {
        snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        return cifar_index_file(ix, path, err, errlen);
    }
    int present = 0;
    for (int i = 1; i <= CIFAR_MAX_BATCHES; i++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
        if (access(path, F_OK) != 0) break;
        present = i;
    }
    if (present == 0) {
        util_set_err(err, errlen, "%s: no data_batch_1.bin (a CIFAR-10 binary-version folder holds "
                "data_batch_1.bin ... data_batch_5.bin and test_batch.bin)", dir);
        return VAE_ERR_IO;
    }
    for (int i = present + 2; i <= CIFAR_MAX_BATCHES; i++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
        if (access(path, F_OK) == 0) {
            util_set_err(err, errlen, "%s/data_batch_%d.bin is missing but %s is there", dir,
                    present + 1, path);
            return VAE_ERR_IO;
        }
    }
    for (int i = 1; !rc && i <= present; i++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
        rc = cifar_index_file(ix, path, err, errlen);
    }
    return rc;
}

static int names_push(name_list *l, const char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->names, sizeof *v * (size_t)cap);
        if (!v) return -1;
        l->names = v;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(s))) return -1;
    l->n++;
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir not starting with '.', split into folders and the rest,
 * each sorted by name. */
static vae_status list_dir(const char *dir, name_list *dirs, name_list *files, char *err, size_t errlen) {
    DIR *dp = opendir(dir);
    if (!dp) {
        util_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return VAE_ERR_IO;
    }
    vae_status rc = VAE_OK;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.') continue;
        if (join_path(path, sizeof path, dir, e->d_name)) {
            util_set_err(err, errlen, "%s: path too long", path);
            rc = VAE_ERR_ARG;
            break;
        }
        if (names_push(is_dir(path) ? dirs : files, e->d_name)) {
            util_set_err(err, errlen, "%s: out of memory listing the folder", dir);
            rc = VAE_ERR_NOMEM;
            break;
        }
    }
    closedir(dp);
    if (dirs->n > 1) qsort(dirs->names, (size_t)dirs->n, sizeof(char *), cmp_names);
    if (files->n > 1) qsort(files->names, (size_t)files->n, sizeof(char *), cmp_names);
    return rc;
}

/* The kind (grey: 1 channel, else 3) and size of a PNG file from its header,
 * nothing decoded. *buf, *len: the file, owned by the caller. */
static vae_status png_read_head(const char *path, uint8_t **buf, size_t *len, int *channels,
                                int *h, int *w, char *err, size_t errlen) {
    vae_status rc = file_io_read_all(path, PNG_MAX_FILE, buf, len, err, errlen);
    if (rc) return rc;
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (*len < 33 || memcmp(*buf, sig, 8) != 0 || memcmp(*buf + 12, "IHDR", 4) != 0) {
        util_set_err(err, errlen, "%s: not a PNG file", path);
        return VAE_ERR_FORMAT;
    }
    /* colour type: 0 grey, 4 grey+alpha; 2 RGB, 3 palette, 6 RGBA */
    *channels = ((*buf)[25] == 0 || (*buf)[25] == 4) ? 1 : 3;
    char perr[200];
    if ((rc = image_png_size(*buf, *len, h, w, perr, sizeof perr)))
        util_set_err(err, errlen, "%s: %s", path, perr);
    return rc;
}

/* The PNG files of a folder, or of its class sub-folders, in load order,
 * and the shape of the first, which every other must have. */
static vae_status png_index(source_index *ix, const char *dir, char *err, size_t errlen) {
    vae_status rc = check_dir(dir, err, errlen);
    if (rc) return rc;
    name_list dirs = {0}, files = {0}; /* owned */
    name_list *paths = &ix->paths;     /* every image, in load order */
    char path[PATH_MAX];
    if ((rc = list_dir(dir, &dirs, &files, err, errlen))) goto end;
    int labelled = dirs.n > 0;
    if (labelled) {
        if (files.n > 0) {
            util_set_err(err, errlen, "%s/%s: a file beside class sub-folders (%s/%s ...); put every "
                    "image in a sub-folder or none", dir, files.names[0], dir, dirs.names[0]);
            rc = VAE_ERR_FORMAT;
            goto end;
        }
        if (dirs.n > PNG_MAX_CLASSES) {
            util_set_err(err, errlen, "%s: %d class sub-folders, at most %d", dir, dirs.n,
                    PNG_MAX_CLASSES);
            rc = VAE_ERR_FORMAT;
            goto end;
        }
        for (int k = 0; k < dirs.n; k++) {
            name_list sub_dirs = {0}, sub_files = {0};
            join_path(path, sizeof path, dir, dirs.names[k]); /* list_dir checked the length */
            rc = list_dir(path, &sub_dirs, &sub_files, err, errlen);
            if (!rc && sub_dirs.n > 0) {
                util_set_err(err, errlen, "%s/%s: a folder inside a class folder", path,
                        sub_dirs.names[0]);
                rc = VAE_ERR_FORMAT;
            }
            if (!rc) {
                uint8_t *l = realloc(ix->labels, (size_t)paths->n + (size_t)sub_files.n + 1);
                if (!l) rc = VAE_ERR_NOMEM;
                else ix->labels = l;
            }
            char sub[PATH_MAX];
            for (int i = 0; !rc && i < sub_files.n; i++) {
                join_path(sub, sizeof sub, path, sub_files.names[i]);
                ix->labels[paths->n] = (uint8_t)k;
                if (names_push(paths, sub)) rc = VAE_ERR_NOMEM;
            }
            names_free(&sub_dirs);
            names_free(&sub_files);
            if (rc == VAE_ERR_NOMEM) util_set_err(err, errlen, "%s: out of memory", dir);
            if (rc) goto end;
        }
    } else {
        for (int i = 0; i < files.n; i++) {
            join_path(path, sizeof path, dir, files.names[i]);
            if (names_push(paths, path)) {
                util_set_err(err, errlen, "%s: out of memory", dir);
                rc = VAE_ERR_NOMEM;
                goto end;
            }
        }
    }
    if (paths->n == 0) {
        util_set_err(err, errlen, "%s: no images", dir);
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    ix->n = paths->n;
    uint8_t *buf = NULL;
    size_t len;
    rc = png_read_head(paths->names[0], &buf, &len, &ix->channels, &ix->height, &ix->width, err,
                       errlen);
    free(buf);
end:
    names_free(&dirs);
    names_free(&files);
    return rc;
}

static vae_status source_index_open(source_index *ix, const dataset_source *src, char *err,
                                    size_t errlen) {
    memset(ix, 0, sizeof *ix);
    if (!src || (src->kind == DATASET_SOURCE_IDX && !src->path)) {
        util_set_err(err, errlen, "dataset: no image file given");
        return VAE_ERR_ARG;
    }
    ix->kind = src->kind;
    ix->path = src->path;
    vae_status rc;
    switch (src->kind) {
    case DATASET_SOURCE_IDX: rc = idx_index(ix, src->path, src->labels_path, err, errlen); break;
    case DATASET_SOURCE_CIFAR: rc = cifar_index(ix, src->path, src->test_split, err, errlen); break;
    case DATASET_SOURCE_PNG: rc = png_index(ix, src->path, err, errlen); break;
    default:
        util_set_err(err, errlen, "dataset: unknown kind of source");
        rc = VAE_ERR_ARG;
    }
    if (rc) index_free(ix);
    return rc;
}

/* ---------- reading the images a role names ---------- */

/* role[i] of image i of a source: read into none, the first set or the second. */
enum { ROLE_NONE = 0, ROLE_TRAIN = 1, ROLE_VAL = 2 };

/* Image bytes (value * 255) into image k of d, either storage. */
static void put_bytes(dataset *d, int k, const uint8_t *src) {
    size_t dim = (size_t)dataset_dim(d);
    if (d->pixels) {
        memcpy(d->pixels + (size_t)k * dim, src, dim);
        return;
    }
    float *x = d->x + (size_t)k * dim;
    for (size_t j = 0; j < dim; j++) x[j] = (float)src[j] / 255.0f;
}

/* A plain (not gzip) IDX file's images of a role, one pread each, after a
 * check of the file's length against the header's count. */
static vae_status idx_pread_roles(const source_index *ix, const uint8_t *role, dataset **sets,
                                  int *n_read, char *err, size_t errlen) {
    int fd = file_io_open_regular(ix->path, err, errlen);
    if (fd < 0) return VAE_ERR_IO;
    size_t dim = (size_t)ix->height * (size_t)ix->width, body = (size_t)ix->n * dim;
    uint8_t *img = malloc(dim); /* owned here */
    struct stat st;
    vae_status rc = VAE_OK;
    if (!img) {
        util_set_err(err, errlen, "%s: out of memory", ix->path);
        rc = VAE_ERR_NOMEM;
    } else if (fstat(fd, &st) != 0) {
        util_set_err(err, errlen, "%s: %s", ix->path, strerror(errno));
        rc = VAE_ERR_IO;
    } else if ((uint64_t)st.st_size < 16 + (uint64_t)body) {
        util_set_err(err, errlen, "%s: truncated: the header promises %zu data bytes, the file has %zu",
                     ix->path, body, st.st_size > 16 ? (size_t)st.st_size - 16 : (size_t)0);
        rc = VAE_ERR_FORMAT;
    } else if ((uint64_t)st.st_size > 16 + (uint64_t)body) {
        util_set_err(err, errlen, "%s: trailing bytes after the %zu bytes the header describes",
                     ix->path, 16 + body);
        rc = VAE_ERR_FORMAT;
    }
    for (int i = 0; i < ix->n && !rc; i++) {
        if (role[i] == ROLE_NONE) continue;
        ssize_t got = pread(fd, img, dim, (off_t)(16 + (size_t)i * dim));
        if (got != (ssize_t)dim) {
            util_set_err(err, errlen, "%s: %s", ix->path,
                         got < 0 ? strerror(errno) : "the file was cut short while it was read");
            rc = VAE_ERR_IO;
            break;
        }
        dataset *d = sets[role[i] - 1];
        put_bytes(d, d->n++, img);
        (*n_read)++;
    }
    free(img);
    close(fd);
    return rc;
}

/* The images of roles ROLE_TRAIN and ROLE_VAL: of a plain file only those
 * (idx_pread_roles); a gzip one streamed through a chunk (gzip cannot seek)
 * and its whole length checked. */
static vae_status idx_read_roles(const source_index *ix, const uint8_t *role, dataset **sets,
                                 int *n_read, char *err, size_t errlen) {
    gzFile gz;
    vae_status rc = idx_open(ix->path, &gz, err, errlen);
    if (rc) return rc;
    uint32_t n, rows, cols;
    if ((rc = idx_images_header(gz, ix->path, &n, &rows, &cols, err, errlen))) goto end;
    if (n != (uint32_t)ix->n || rows != (uint32_t)ix->height || cols != (uint32_t)ix->width) {
        util_set_err(err, errlen, "%s: the file changed while it was read", ix->path);
        rc = VAE_ERR_IO;
        goto end;
    }
    if (gzdirect(gz)) { /* plain: every image is at a known offset */
        rc = idx_pread_roles(ix, role, sets, n_read, err, errlen);
        goto end;
    }
    size_t dim = (size_t)rows * cols, per = IDX_FIRST_CHUNK / dim ? IDX_FIRST_CHUNK / dim : 1;
    uint8_t *chunk = malloc(per * dim); /* owned here */
    if (!chunk) {
        util_set_err(err, errlen, "%s: out of memory", ix->path);
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    for (uint32_t i0 = 0; i0 < n && !rc; i0 += (uint32_t)per) {
        size_t want = (n - i0 < per ? n - i0 : per) * dim, got;
        if ((rc = idx_read(gz, ix->path, chunk, want, &got, err, errlen))) break;
        if (got < want) {
            util_set_err(err, errlen,
                         "%s: truncated: the header promises %zu data bytes, the file has %zu",
                         ix->path, (size_t)n * dim, (size_t)i0 * dim + got);
            rc = VAE_ERR_FORMAT;
            break;
        }
        for (size_t j = 0; j < want / dim; j++) {
            uint8_t r = role[i0 + j];
            if (r == ROLE_NONE) continue;
            dataset *d = sets[r - 1];
            put_bytes(d, d->n++, chunk + j * dim);
            (*n_read)++;
        }
    }
    free(chunk);
    if (!rc) rc = idx_read_end(gz, ix->path, 16 + (size_t)n * dim, err, errlen);
end:
    gzclose(gz);
    return rc;
}

/* One pread per image of a role: the pixels of the records, nothing else. */
static vae_status cifar_read_roles(const source_index *ix, const uint8_t *role, dataset **sets,
                                   int *n_read, char *err, size_t errlen) {
    uint8_t rec[CIFAR_PIXELS];
    for (int f = 0; f < ix->n_files; f++)
        for (int i = ix->first[f]; i < ix->first[f + 1]; i++) {
            if (role[i] == ROLE_NONE) continue;
            off_t at = (off_t)(i - ix->first[f]) * CIFAR_RECORD + 1;
            ssize_t got = pread(ix->fds[f], rec, sizeof rec, at);
            if (got != (ssize_t)sizeof rec) {
                util_set_err(err, errlen, "%s: %s", ix->files[f],
                             got < 0 ? strerror(errno) : "the file was cut short while it was read");
                return VAE_ERR_IO;
            }
            dataset *d = sets[role[i] - 1];
            put_bytes(d, d->n++, rec);
            (*n_read)++;
        }
    return VAE_OK;
}

/* One decode per image of a role; each must have the first image's kind and size. */
static vae_status png_read_roles(const source_index *ix, const uint8_t *role, dataset **sets,
                                 int *n_read, char *err, size_t errlen) {
    const char *first = ix->paths.names[0];
    for (int i = 0; i < ix->n; i++) {
        if (role[i] == ROLE_NONE) continue;
        const char *path = ix->paths.names[i];
        uint8_t *buf = NULL; /* owned here */
        float *img = NULL;   /* owned here */
        size_t len;
        int channels, h, w;
        char perr[200];
        vae_status rc = png_read_head(path, &buf, &len, &channels, &h, &w, err, errlen);
        if (!rc && channels != ix->channels) {
            util_set_err(err, errlen, "%s: a %s PNG, but the first image (%s) is %s", path,
                    channels == 1 ? "grey" : "colour", first, ix->channels == 1 ? "grey" : "colour");
            rc = VAE_ERR_FORMAT;
        }
        if (!rc && (rc = image_decode_png(buf, len, channels, &img, &h, &w, perr, sizeof perr)))
            util_set_err(err, errlen, "%s: %s", path, perr);
        if (!rc && (h != ix->height || w != ix->width)) {
            util_set_err(err, errlen, "%s: %dx%d, but the first image (%s) is %dx%d", path, w, h,
                    first, ix->width, ix->height);
            rc = VAE_ERR_FORMAT;
        }
        if (!rc) {
            dataset *d = sets[role[i] - 1];
            size_t dim = (size_t)dataset_dim(d);
            memcpy(d->x + (size_t)d->n * dim, img, dim * sizeof(float));
            d->n++;
            (*n_read)++;
        }
        free(img);
        free(buf);
        if (rc) return rc;
    }
    return VAE_OK;
}

/* An empty set for n images of ix's shape, labels when ix has them: bytes
 * when compact (never for PNG, whose decoder gives floats). Images are
 * added at d->n, which starts at 0. */
static vae_status alloc_set(dataset *d, const source_index *ix, int n, int compact, char *err,
                            size_t errlen) {
    memset(d, 0, sizeof *d);
    d->channels = ix->channels;
    d->height = ix->height;
    d->width = ix->width;
    size_t dim = (size_t)dataset_dim(d), count = n > 0 ? (size_t)n : 1;
    if (count > SIZE_MAX / sizeof(float) / dim) {
        util_set_err(err, errlen, "%s: %d images of %zu values is too large", ix->path, n, dim);
        return VAE_ERR_FORMAT;
    }
    if (compact && ix->kind != DATASET_SOURCE_PNG)
        d->pixels = malloc(count * dim);
    else
        d->x = malloc(count * dim * sizeof *d->x);
    if (ix->labels) d->labels = malloc(count);
    if ((!d->pixels && !d->x) || (ix->labels && !d->labels)) {
        dataset_free(d);
        util_set_err(err, errlen, "%s: out of memory for %d images", ix->path, n);
        return VAE_ERR_NOMEM;
    }
    return VAE_OK;
}

/* Reads the images of role 1 into sets[0] and of role 2 into sets[1]
 * (allocated for them, d->n = 0), in the source's order, with their labels. */
static vae_status read_roles(const source_index *ix, const uint8_t *role, dataset **sets,
                             int *n_read, char *err, size_t errlen) {
    int k[2] = {0, 0};
    for (int i = 0; i < ix->n && ix->labels; i++)
        if (role[i] != ROLE_NONE) sets[role[i] - 1]->labels[k[role[i] - 1]++] = ix->labels[i];
    switch (ix->kind) {
    case DATASET_SOURCE_IDX: return idx_read_roles(ix, role, sets, n_read, err, errlen);
    case DATASET_SOURCE_CIFAR: return cifar_read_roles(ix, role, sets, n_read, err, errlen);
    default: return png_read_roles(ix, role, sets, n_read, err, errlen);
    }
}

static vae_status load_part(const dataset_source *src, const dataset_shard_spec *spec,
                            dataset *train, dataset *val, dataset_shard_info *info, int compact,
                            char *err, size_t errlen);

/* A whole source as one set, as floats. */
static vae_status load_whole(dataset *out, const dataset_source *src, char *err, size_t errlen) {
    dataset_shard_spec all = {.klass = -1, .rank = 0, .size = 1};
    dataset_shard_info info;
    return load_part(src, &all, out, NULL, &info, 0, err, errlen);
}

vae_status dataset_load_cifar_dir(dataset *out, const char *dir, int test_split, char *err,
                                  size_t errlen) {
    if (!out) return VAE_ERR_ARG;
    dataset_source src = {.kind = DATASET_SOURCE_CIFAR, .path = dir, .test_split = test_split};
    return load_whole(out, &src, err, errlen);
}

vae_status dataset_load_png_dir(dataset *out, const char *dir, char *err, size_t errlen) {
    if (!out) return VAE_ERR_ARG;
    dataset_source src = {.kind = DATASET_SOURCE_PNG, .path = dir};
    return load_whole(out, &src, err, errlen);
}

/* ---------- validation split ---------- */

/* The validation images of a split of n (n >= 2, 0 < fraction < 1): pick[i]
 * = 1 for each. -1 when out of memory. The one rule both the in-memory split
 * and a shard's use, so they hold out the same images. */
static int split_pick(int n, double fraction, uint64_t seed, uint8_t *pick) {
    long nv = lround(fraction * n);
    if (nv < 1) nv = 1;
    if (nv > n - 1) nv = n - 1;
    int *idx = malloc(sizeof(int) * (size_t)n); /* owned here */
    if (!idx) return -1;
    for (int i = 0; i < n; i++) idx[i] = i;
    rng_state r;
    rng_seed(&r, seed);
    rng_shuffle(&r, idx, n);
    memset(pick, 0, (size_t)n);
    for (long i = 0; i < nv; i++) pick[idx[i]] = 1;
    free(idx);
    return (int)nv;
}

static vae_status split_check(int n, double fraction, char *err, size_t errlen) {
    if (!(fraction > 0.0 && fraction < 1.0)) {
        util_set_err(err, errlen, "val-split must be between 0 and 1 (exclusive), not %g", fraction);
        return VAE_ERR_ARG;
    }
    if (n < 2) {
        util_set_err(err, errlen, "val-split needs at least 2 images, the set has %d", n);
        return VAE_ERR_ARG;
    }
    return VAE_OK;
}

vae_status dataset_split_validation(dataset *d, double fraction, uint64_t seed, dataset *val, char *err,
                                    size_t errlen) {
    if (!d || !val) return VAE_ERR_ARG;
    memset(val, 0, sizeof *val);
    vae_status rc = split_check(d->x ? d->n : 0, fraction, err, errlen);
    if (rc) return rc;
    int n = d->n;
    size_t dim = (size_t)dataset_dim(d);
    uint8_t *pick = malloc((size_t)n); /* owned here */
    int nv = pick ? split_pick(n, fraction, seed, pick) : -1;
    if (nv > 0) {
        val->x = malloc((size_t)nv * dim * sizeof(float));
        if (d->labels) val->labels = malloc((size_t)nv);
    }
    if (nv < 0 || !val->x || (d->labels && !val->labels)) {
        free(pick);
        dataset_free(val);
        util_set_err(err, errlen, "val-split: out of memory");
        return VAE_ERR_NOMEM;
    }
    val->channels = d->channels;
    val->height = d->height;
    val->width = d->width;
    /* both halves keep the original order */
    int kept = 0;
    for (int i = 0; i < n; i++) {
        const float *src = d->x + (size_t)i * dim;
        if (pick[i]) {
            memcpy(val->x + (size_t)val->n * dim, src, dim * sizeof(float));
            if (d->labels) val->labels[val->n] = d->labels[i];
            val->n++;
        } else {
            if (kept != i) {
                memmove(d->x + (size_t)kept * dim, src, dim * sizeof(float));
                if (d->labels) d->labels[kept] = d->labels[i];
            }
            kept++;
        }
    }
    free(pick);
    dataset_truncate(d, kept);
    return VAE_OK;
}

/* ---------- one rank's shard ---------- */

/* Which images of ix this rank reads, as role[] (ix->n), in the order of
 * the whole path (load, split, class, limit, shard): the validation images
 * first (ROLE_VAL, of the class; with held_all every image), then of the
 * rest those of the class, the first limit, numbered g = 0, 1, ..., the ones
 * with g % size == rank (ROLE_TRAIN); then, with held_block, the evaluation
 * images outside this rank's block dropped. *mine: how many ROLE_TRAIN. */
static vae_status select_roles(const source_index *ix, const dataset_shard_spec *s, uint8_t *role,
                               dataset_shard_info *info, int *mine, char *err, size_t errlen) {
    memset(role, s->held_all ? ROLE_VAL : ROLE_NONE, (size_t)ix->n);
    if (s->klass >= 0 && !ix->labels) {
        util_set_err(err, errlen, "dataset: filtering by class needs labels");
        return VAE_ERR_ARG;
    }
    if (s->val_split > 0.0 && !s->held_all) {
        vae_status rc = split_check(ix->n, s->val_split, err, errlen);
        if (rc) return rc;
        if (split_pick(ix->n, s->val_split, s->seed, role) < 0) { /* pick[i] = 1 = ROLE_TRAIN */
            util_set_err(err, errlen, "val-split: out of memory");
            return VAE_ERR_NOMEM;
        }
        for (int i = 0; i < ix->n; i++) role[i] = role[i] ? ROLE_VAL : ROLE_NONE;
    }
    int sel = 0, k = 0, nv = 0;
    info->top_label = -1;
    for (int i = 0; i < ix->n; i++) {
        if (ix->labels && ix->labels[i] > info->top_label) info->top_label = ix->labels[i];
        int of_class = s->klass < 0 || ix->labels[i] == s->klass;
        if (role[i] == ROLE_VAL) {
            if (of_class) nv++;
            else role[i] = ROLE_NONE;
            continue;
        }
        if (!of_class || (s->limit > 0 && sel >= s->limit)) continue;
        if (sel++ % s->size == s->rank) {
            role[i] = ROLE_TRAIN;
            k++;
        }
    }
    int held = s->held_all || s->val_split > 0.0;
    if ((sel == 0 && !s->held_all) || (held && nv == 0)) {
        util_set_err(err, errlen, "dataset: no images with label %d", s->klass);
        return VAE_ERR_ARG;
    }
    if (k == 0 && !s->held_all) {
        util_set_err(err, errlen, "the training set has %d images, too few for %d ranks", sel,
                     s->size);
        return VAE_ERR_ARG;
    }
    info->n_val = nv;
    info->val_first = 0;
    if (held && s->held_block > 0 && nv / s->size >= s->held_block) {
        int lo = (int)((int64_t)nv * s->rank / s->size);
        int hi = (int)((int64_t)nv * (s->rank + 1) / s->size);
        for (int i = 0, v = 0; i < ix->n; i++) {
            if (role[i] != ROLE_VAL) continue;
            if (v < lo || v >= hi) role[i] = ROLE_NONE;
            v++;
        }
        info->val_first = lo;
    }
    info->n_train = sel;
    *mine = k;
    return VAE_OK;
}

/* dataset_load_shard, the sets as bytes when compact (but for PNG). */
static vae_status load_part(const dataset_source *src, const dataset_shard_spec *spec,
                            dataset *train, dataset *val, dataset_shard_info *info, int compact,
                            char *err, size_t errlen) {
    memset(train, 0, sizeof *train);
    if (val) memset(val, 0, sizeof *val);
    memset(info, 0, sizeof *info);
    if (!src || !spec || spec->size < 1 || spec->rank < 0 || spec->rank >= spec->size ||
        spec->klass > 255 || ((spec->val_split > 0.0 || spec->held_all) && !val)) {
        util_set_err(err, errlen, "dataset: rank %d of %d ranks", spec ? spec->rank : 0,
                     spec ? spec->size : 0);
        return VAE_ERR_ARG;
    }
    source_index ix;
    vae_status rc = source_index_open(&ix, src, err, errlen);
    if (rc) return rc;
    uint8_t *role = malloc((size_t)ix.n); /* owned here */
    int mine = 0;
    dataset *sets[2] = {train, val};
    if (!role) {
        util_set_err(err, errlen, "%s: out of memory", src->path);
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    if ((rc = select_roles(&ix, spec, role, info, &mine, err, errlen))) goto end;
    int n_held = 0;
    for (int i = 0; i < ix.n; i++) n_held += role[i] == ROLE_VAL;
    if ((rc = alloc_set(train, &ix, mine, compact, err, errlen))) goto end;
    if ((spec->val_split > 0.0 || spec->held_all) &&
        (rc = alloc_set(val, &ix, n_held, compact, err, errlen)))
        goto end;
    rc = read_roles(&ix, role, sets, &info->n_read, err, errlen);
end:
    if (rc) {
        dataset_free(train);
        if (val) dataset_free(val);
    }
    free(role);
    index_free(&ix);
    return rc;
}

vae_status dataset_load_shard(const dataset_source *src, const dataset_shard_spec *spec,
                              dataset *train, dataset *val, dataset_shard_info *info, char *err,
                              size_t errlen) {
    return load_part(src, spec, train, val, info, 1, err, errlen);
}

vae_status dataset_load_idx_shard(dataset *out, const char *images_path, const char *labels_path,
                                  int klass, int limit, int rank, int size, int *n_selected,
                                  int *top_label, char *err, size_t errlen) {
    dataset_source src = {.kind = DATASET_SOURCE_IDX, .path = images_path,
                          .labels_path = labels_path};
    dataset_shard_spec spec = {.klass = klass, .limit = limit, .rank = rank, .size = size};
    dataset_shard_info info;
    vae_status rc = dataset_load_shard(&src, &spec, out, NULL, &info, err, errlen);
    if (!rc) {
        *n_selected = info.n_train;
        *top_label = info.top_label;
    }
    return rc;
}
