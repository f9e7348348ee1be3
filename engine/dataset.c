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

/* Whether image i of the file is selected (class and limit), and its number
 * g among the selected; labels NULL without a labels file. */
static int idx_selected(const uint8_t *labels, int klass, int limit, int i, int *g) {
    if (klass >= 0 && labels[i] != klass) return 0;
    if (limit > 0 && *g >= limit) return 0;
    (*g)++;
    return 1;
}

vae_status dataset_load_idx_shard(dataset *out, const char *images_path, const char *labels_path,
                                  int klass, int limit, int rank, int size, int *n_selected,
                                  int *top_label, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!images_path || size < 1 || rank < 0 || rank >= size || klass > 255) {
        util_set_err(err, errlen, "dataset: rank %d of %d ranks", rank, size);
        return VAE_ERR_ARG;
    }
    gzFile gz;
    vae_status rc = idx_open(images_path, &gz, err, errlen);
    if (rc) return rc;
    uint8_t *chunk = NULL; /* owned here */
    uint32_t n, rows, cols;
    if ((rc = idx_images_header(gz, images_path, &n, &rows, &cols, err, errlen))) goto end;
    size_t dim = (size_t)rows * cols;
    out->n = (int)n;
    if (labels_path && (rc = load_labels(out, labels_path, err, errlen))) goto end;
    if (klass >= 0 && !out->labels) {
        util_set_err(err, errlen, "dataset: filtering by class needs labels");
        rc = VAE_ERR_ARG;
        goto end;
    }
    *top_label = -1;
    for (uint32_t i = 0; out->labels && i < n; i++)
        if (out->labels[i] > *top_label) *top_label = out->labels[i];
    int sel = 0, mine = 0;
    for (uint32_t i = 0; i < n; i++)
        if (idx_selected(out->labels, klass, limit, (int)i, &sel) && (sel - 1) % size == rank) mine++;
    if (sel == 0 || mine == 0) {
        if (sel == 0)
            util_set_err(err, errlen, "dataset: no images with label %d", klass);
        else
            util_set_err(err, errlen, "the training set has %d images, too few for %d ranks", sel,
                         size);
        rc = VAE_ERR_ARG;
        goto end;
    }
    /* the shard and its labels, then the file streamed through a chunk */
    uint8_t *labels = out->labels; /* owned here until out takes the shard's */
    out->labels = NULL;
    out->pixels = malloc((size_t)mine * dim);                      /* owned by out */
    uint8_t *mine_labels = labels ? malloc((size_t)mine) : NULL;  /* handed to out below */
    size_t per = IDX_FIRST_CHUNK / dim ? IDX_FIRST_CHUNK / dim : 1;
    chunk = malloc(per * dim);
    if (!out->pixels || !chunk || (labels && !mine_labels)) {
        free(labels);
        free(mine_labels);
        util_set_err(err, errlen, "%s: out of memory for a shard of %d images", images_path, mine);
        rc = VAE_ERR_NOMEM;
        goto end;
    }
    int g = 0, k = 0;
    for (uint32_t i0 = 0; i0 < n && !rc; i0 += (uint32_t)per) {
        size_t want = (n - i0 < per ? n - i0 : per) * dim, got;
        if ((rc = idx_read(gz, images_path, chunk, want, &got, err, errlen))) break;
        if (got < want) {
            util_set_err(err, errlen,
                         "%s: truncated: the header promises %zu data bytes, the file has %zu",
                         images_path, (size_t)n * dim, (size_t)i0 * dim + got);
            rc = VAE_ERR_FORMAT;
            break;
        }
        for (size_t j = 0; j < want / dim; j++) {
            uint32_t i = i0 + (uint32_t)j;
            if (!idx_selected(labels, klass, limit, (int)i, &g) || (g - 1) % size != rank) continue;
            memcpy(out->pixels + (size_t)k * dim, chunk + j * dim, dim);
            if (labels) mine_labels[k] = labels[i];
            k++;
        }
    }
    free(labels);
    out->labels = mine_labels;
    if (!rc) rc = idx_read_end(gz, images_path, 16 + (size_t)n * dim, err, errlen);
    idx_set_shape(out, mine, rows, cols);
    *n_selected = sel;
end:
    free(chunk);
    gzclose(gz);
    if (rc) dataset_free(out);
    return rc;
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

/* Grows d to hold `more` further images of its current shape. */
static vae_status grow(dataset *d, size_t more, int with_labels, const char *path, char *err,
                       size_t errlen) {
    size_t dim = (size_t)dataset_dim(d), n = (size_t)d->n + more;
    if (n > INT_MAX || n > SIZE_MAX / sizeof(float) / dim) {
        util_set_err(err, errlen, "%s: too many images (%zu)", path, n);
        return VAE_ERR_FORMAT;
    }
    float *x = realloc(d->x, n * dim * sizeof *x);
    if (!x) goto nomem;
    d->x = x;
    if (with_labels) {
        uint8_t *l = realloc(d->labels, n);
        if (!l) goto nomem;
        d->labels = l;
    }
    return VAE_OK;
nomem:
    util_set_err(err, errlen, "%s: out of memory for %zu images", path, n);
    return VAE_ERR_NOMEM;
}

/* ---------- CIFAR-10 ---------- */

#define CIFAR_SIDE 32
#define CIFAR_PIXELS (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_PIXELS)
#define CIFAR_MAX_BATCHES 5
#define CIFAR_MAX_FILE ((size_t)1 << 30)

static vae_status cifar_append(dataset *d, const char *path, char *err, size_t errlen) {
    uint8_t *buf; /* owned here */
    size_t len;
    vae_status rc = file_io_read_all(path, CIFAR_MAX_FILE, &buf, &len, err, errlen);
    if (rc) return rc;
    if (len == 0 || len % CIFAR_RECORD != 0) {
        util_set_err(err, errlen,
                "%s: %zu bytes is not a whole number of %d-byte CIFAR-10 records (truncated?)",
                path, len, CIFAR_RECORD);
        free(buf);
        return VAE_ERR_FORMAT;
    }
    size_t n = len / CIFAR_RECORD;
    for (size_t i = 0; i < n; i++)
        if (buf[i * CIFAR_RECORD] > 9) {
            util_set_err(err, errlen, "%s: record %zu has label %d (CIFAR-10 labels are 0..9)", path,
                    i + 1, buf[i * CIFAR_RECORD]);
            free(buf);
            return VAE_ERR_FORMAT;
        }
    rc = grow(d, n, 1, path, err, errlen);
    if (rc) {
        free(buf);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = buf + i * CIFAR_RECORD;
        float *x = d->x + ((size_t)d->n + i) * CIFAR_PIXELS;
        d->labels[(size_t)d->n + i] = r[0];
        for (int k = 0; k < CIFAR_PIXELS; k++) x[k] = (float)r[1 + k] / 255.0f;
    }
    d->n += (int)n;
    free(buf);
    return VAE_OK;
}

vae_status dataset_load_cifar_dir(dataset *out, const char *dir, int test_split, char *err,
                                  size_t errlen) {
    if (!out) return VAE_ERR_ARG;
    memset(out, 0, sizeof *out);
    vae_status rc = check_dir(dir, err, errlen);
    if (rc) return rc;
    out->channels = 3;
    out->height = out->width = CIFAR_SIDE;
    char path[PATH_MAX];
    if (test_split) {
        snprintf(path, sizeof path, "%s/test_batch.bin", dir);
        rc = cifar_append(out, path, err, errlen);
    } else {
        int present = 0;
        for (int i = 1; i <= CIFAR_MAX_BATCHES; i++) {
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
            if (access(path, F_OK) != 0) break;
            present = i;
        }
        if (present == 0) {
            util_set_err(err, errlen, "%s: no data_batch_1.bin (a CIFAR-10 binary-version folder holds "
                    "data_batch_1.bin ... data_batch_5.bin and test_batch.bin)", dir);
            rc = VAE_ERR_IO;
        }
        for (int i = present + 2; !rc && i <= CIFAR_MAX_BATCHES; i++) {
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
            if (access(path, F_OK) == 0) {
                util_set_err(err, errlen, "%s/data_batch_%d.bin is missing but %s is there", dir,
                        present + 1, path);
                rc = VAE_ERR_IO;
            }
        }
        for (int i = 1; !rc && i <= present; i++) {
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, i);
            rc = cifar_append(out, path, err, errlen);
        }
    }
    if (rc) dataset_free(out);
    return rc;
}

/* ---------- PNG folders ---------- */

#define PNG_MAX_FILE ((size_t)64 << 20)
#define PNG_MAX_CLASSES 256

typedef struct {
    char **names; /* owned, each owned */
    int n, cap;
} name_list;

static void names_free(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
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

/* Appends one PNG; the first one sets the shape and kind. */
static vae_status png_append(dataset *d, const char *path, int label, int labelled, int total,
                             const char *first, char *err, size_t errlen) {
    uint8_t *buf; /* owned here */
    size_t len;
    float *img = NULL; /* owned here */
    vae_status rc = file_io_read_all(path, PNG_MAX_FILE, &buf, &len, err, errlen);
    if (rc) return rc;
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len < 33 || memcmp(buf, sig, 8) != 0 || memcmp(buf + 12, "IHDR", 4) != 0) {
        util_set_err(err, errlen, "%s: not a PNG file", path);
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    /* colour type: 0 grey, 4 grey+alpha; 2 RGB, 3 palette, 6 RGBA */
    int channels = (buf[25] == 0 || buf[25] == 4) ? 1 : 3;
    if (d->channels && channels != d->channels) {
        util_set_err(err, errlen, "%s: a %s PNG, but the first image (%s) is %s", path,
                channels == 1 ? "grey" : "colour", first, d->channels == 1 ? "grey" : "colour");
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    int h, w;
    char perr[200];
    if ((rc = image_decode_png(buf, len, channels, &img, &h, &w, perr, sizeof perr))) {
        util_set_err(err, errlen, "%s: %s", path, perr);
        goto end;
    }
    if (d->channels == 0) {
        d->channels = channels;
        d->height = h;
        d->width = w;
        if ((rc = grow(d, (size_t)total, labelled, path, err, errlen))) goto end;
    } else if (h != d->height || w != d->width) {
        util_set_err(err, errlen, "%s: %dx%d, but the first image (%s) is %dx%d", path, w, h, first,
                d->width, d->height);
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    size_t dim = (size_t)dataset_dim(d);
    memcpy(d->x + (size_t)d->n * dim, img, dim * sizeof(float));
    if (labelled) d->labels[d->n] = (uint8_t)label;
    d->n++;
end:
    free(img);
    free(buf);
    return rc;
}

vae_status dataset_load_png_dir(dataset *out, const char *dir, char *err, size_t errlen) {
    if (!out) return VAE_ERR_ARG;
    memset(out, 0, sizeof *out);
    vae_status rc = check_dir(dir, err, errlen);
    if (rc) return rc;
    name_list dirs = {0}, files = {0}; /* owned */
    name_list paths = {0};             /* owned; every image, in load order */
    uint8_t *labels = NULL;            /* owned; per path when labelled */
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
                uint8_t *l = realloc(labels, (size_t)paths.n + (size_t)sub_files.n + 1);
                if (!l) rc = VAE_ERR_NOMEM;
                else labels = l;
            }
            char sub[PATH_MAX];
            for (int i = 0; !rc && i < sub_files.n; i++) {
                join_path(sub, sizeof sub, path, sub_files.names[i]);
                labels[paths.n] = (uint8_t)k;
                if (names_push(&paths, sub)) rc = VAE_ERR_NOMEM;
            }
            names_free(&sub_dirs);
            names_free(&sub_files);
            if (rc == VAE_ERR_NOMEM) util_set_err(err, errlen, "%s: out of memory", dir);
            if (rc) goto end;
        }
    } else {
        for (int i = 0; i < files.n; i++) {
            join_path(path, sizeof path, dir, files.names[i]);
            if (names_push(&paths, path)) {
                util_set_err(err, errlen, "%s: out of memory", dir);
                rc = VAE_ERR_NOMEM;
                goto end;
            }
        }
    }
    if (paths.n == 0) {
        util_set_err(err, errlen, "%s: no images", dir);
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    for (int i = 0; i < paths.n; i++) {
        rc = png_append(out, paths.names[i], labelled ? labels[i] : 0, labelled, paths.n,
                        paths.names[0], err, errlen);
        if (rc) goto end;
    }
end:
    if (rc) dataset_free(out);
    names_free(&dirs);
    names_free(&files);
    names_free(&paths);
    free(labels);
    return rc;
}

/* ---------- validation split ---------- */

vae_status dataset_split_validation(dataset *d, double fraction, uint64_t seed, dataset *val, char *err,
                                    size_t errlen) {
    if (!d || !val) return VAE_ERR_ARG;
    memset(val, 0, sizeof *val);
    if (!(fraction > 0.0 && fraction < 1.0)) {
        util_set_err(err, errlen, "val-split must be between 0 and 1 (exclusive), not %g", fraction);
        return VAE_ERR_ARG;
    }
    if (!d->x || d->n < 2) {
        util_set_err(err, errlen, "val-split needs at least 2 images, the set has %d", d ? d->n : 0);
        return VAE_ERR_ARG;
    }
    int n = d->n;
    long nv = lround(fraction * n);
    if (nv < 1) nv = 1;
    if (nv > n - 1) nv = n - 1;
    size_t dim = (size_t)dataset_dim(d);
    int *idx = malloc(sizeof(int) * (size_t)n);   /* owned here */
    uint8_t *pick = calloc((size_t)n, 1);          /* owned here */
    val->x = malloc((size_t)nv * dim * sizeof(float));
    if (d->labels) val->labels = malloc((size_t)nv);
    if (!idx || !pick || !val->x || (d->labels && !val->labels)) {
        free(idx);
        free(pick);
        dataset_free(val);
        util_set_err(err, errlen, "val-split: out of memory");
        return VAE_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    rng_state r;
    rng_seed(&r, seed);
    rng_shuffle(&r, idx, n);
    for (long i = 0; i < nv; i++) pick[idx[i]] = 1;
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
    free(idx);
    free(pick);
    dataset_truncate(d, kept);
    return VAE_OK;
}
