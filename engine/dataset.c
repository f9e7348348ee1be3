/* dataset: IDX (MNIST / Fashion-MNIST) loading, plain or gzip-compressed,
 * and in-place filtering. See dataset.h. */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_MAX_SIDE 4096u
/* Reads grow the buffer in steps, so a lying header that claims billions of
 * images costs memory only for the bytes that are really there. */
#define IDX_FIRST_CHUNK (1u << 20)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* gzread reads plain files as they are, so one path handles both. */
static int idx_open(const char *path, gzFile *out, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return DATASET_ERR_IO;
    }
    gzFile gz = gzdopen(fd, "rb"); /* owns fd from here */
    if (!gz) {
        close(fd);
        set_err(err, errlen, "%s: out of memory opening the file", path);
        return DATASET_ERR_NOMEM;
    }
    gzbuffer(gz, 1u << 17);
    *out = gz;
    return DATASET_OK;
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
static int idx_read(gzFile gz, const char *path, uint8_t *dst, size_t want, size_t *got,
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
                set_err(err, errlen, "%s: %s", path, strerror(errno));
                return DATASET_ERR_IO;
            }
            set_err(err, errlen, "%s: corrupt gzip data: %s", path, msg);
            return DATASET_ERR_FORMAT;
        }
        if (r == 0) {
            /* zlib reports a gzip stream cut short as Z_BUF_ERROR at EOF. */
            int zerr = 0;
            const char *msg = gz_message(gz, &zerr);
            if (zerr != Z_OK && zerr != Z_BUF_ERROR) {
                set_err(err, errlen, "%s: corrupt gzip data: %s", path, msg);
                return DATASET_ERR_FORMAT;
            }
            break;
        }
        *got += (size_t)r;
    }
    return DATASET_OK;
}

/* Reads exactly `count` bytes after the header and checks nothing follows.
 * *out is owned by the caller. */
static int idx_read_body(gzFile gz, const char *path, size_t header_len, size_t count,
                         uint8_t **out, char *err, size_t errlen) {
    size_t cap = count < IDX_FIRST_CHUNK ? count : IDX_FIRST_CHUNK;
    uint8_t *buf = malloc(cap ? cap : 1); /* owned: handed to *out */
    if (!buf) {
        set_err(err, errlen, "%s: out of memory", path);
        return DATASET_ERR_NOMEM;
    }
    size_t have = 0;
    for (;;) {
        size_t got;
        int rc = idx_read(gz, path, buf + have, cap - have, &got, err, errlen);
        if (rc) {
            free(buf);
            return rc;
        }
        have += got;
        if (have < cap) {
            set_err(err, errlen,
                    "%s: truncated: the header promises %zu data bytes, the file has %zu",
                    path, count, have);
            free(buf);
            return DATASET_ERR_FORMAT;
        }
        if (have == count) break;
        size_t ncap = cap * 2 < count ? cap * 2 : count;
        uint8_t *nbuf = realloc(buf, ncap);
        if (!nbuf) {
            free(buf);
            set_err(err, errlen, "%s: out of memory (%zu bytes)", path, ncap);
            return DATASET_ERR_NOMEM;
        }
        buf = nbuf;
        cap = ncap;
    }
    uint8_t extra[64];
    size_t got;
    int rc = idx_read(gz, path, extra, sizeof extra, &got, err, errlen);
    if (!rc && got) {
        set_err(err, errlen, "%s: trailing bytes after the %zu bytes the header describes", path,
                header_len + count);
        rc = DATASET_ERR_FORMAT;
    }
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    return DATASET_OK;
}

static int idx_read_header(gzFile gz, const char *path, uint8_t *hdr, size_t len, uint32_t magic,
                           char *err, size_t errlen) {
    size_t got;
    int rc = idx_read(gz, path, hdr, len, &got, err, errlen);
    if (rc) return rc;
    if (got < 4 || be32(hdr) != magic) {
        set_err(err, errlen, "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)", path,
                magic == IDX_IMAGES_MAGIC ? "image" : "label", got >= 4 ? be32(hdr) : 0u, magic);
        return DATASET_ERR_FORMAT;
    }
    if (got < len) {
        set_err(err, errlen, "%s: truncated header (%zu of %zu bytes)", path, got, len);
        return DATASET_ERR_FORMAT;
    }
    return DATASET_OK;
}

static int load_images(dataset *out, const char *path, char *err, size_t errlen) {
    gzFile gz;
    int rc = idx_open(path, &gz, err, errlen);
    if (rc) return rc;
    uint8_t hdr[16];
    uint8_t *pixels = NULL; /* owned here */
    rc = idx_read_header(gz, path, hdr, sizeof hdr, IDX_IMAGES_MAGIC, err, errlen);
    if (rc) goto end;
    uint32_t n = be32(hdr + 4), rows = be32(hdr + 8), cols = be32(hdr + 12);
    if (n == 0 || n > (uint32_t)INT32_MAX) {
        set_err(err, errlen, "%s: invalid image count %u", path, n);
        rc = DATASET_ERR_FORMAT;
        goto end;
    }
    if (rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE) {
        set_err(err, errlen, "%s: invalid image size %ux%u (1 to %u per side)", path, rows, cols,
                IDX_MAX_SIDE);
        rc = DATASET_ERR_FORMAT;
        goto end;
    }
    uint64_t dim = (uint64_t)rows * cols;
    if ((uint64_t)n > (SIZE_MAX / sizeof(float)) / dim || dim > (uint64_t)INT32_MAX) {
        set_err(err, errlen, "%s: %u images of %ux%u is too large", path, n, rows, cols);
        rc = DATASET_ERR_FORMAT;
        goto end;
    }
    size_t count = (size_t)n * (size_t)dim;
    rc = idx_read_body(gz, path, sizeof hdr, count, &pixels, err, errlen);
    if (rc) goto end;
    out->x = malloc(count * sizeof *out->x);
    if (!out->x) {
        set_err(err, errlen, "%s: out of memory (%zu floats)", path, count);
        rc = DATASET_ERR_NOMEM;
        goto end;
    }
    for (size_t i = 0; i < count; i++) out->x[i] = (float)pixels[i] / 255.0f;
    out->n = (int)n;
    out->channels = 1;
    out->height = (int)rows;
    out->width = (int)cols;
end:
    free(pixels);
    gzclose(gz);
    return rc;
}

static int load_labels(dataset *out, const char *path, char *err, size_t errlen) {
    gzFile gz;
    int rc = idx_open(path, &gz, err, errlen);
    if (rc) return rc;
    uint8_t hdr[8];
    rc = idx_read_header(gz, path, hdr, sizeof hdr, IDX_LABELS_MAGIC, err, errlen);
    if (rc) goto end;
    uint32_t n = be32(hdr + 4);
    if (n != (uint32_t)out->n) {
        set_err(err, errlen, "%s: %u labels but the image file has %d images", path, n, out->n);
        rc = DATASET_ERR_FORMAT;
        goto end;
    }
    rc = idx_read_body(gz, path, sizeof hdr, n, &out->labels, err, errlen);
end:
    gzclose(gz);
    return rc;
}

int dataset_load_idx(dataset *out, const char *images_path, const char *labels_path, char *err,
                     size_t errlen) {
    if (!out) return DATASET_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (!images_path) {
        set_err(err, errlen, "dataset: no image file given");
        return DATASET_ERR_ARG;
    }
    int rc = load_images(out, images_path, err, errlen);
    if (!rc && labels_path) rc = load_labels(out, labels_path, err, errlen);
    if (rc) dataset_free(out);
    return rc;
}

int dataset_filter_class(dataset *d, int k, char *err, size_t errlen) {
    if (!d || !d->x) {
        set_err(err, errlen, "dataset: empty dataset");
        return DATASET_ERR_ARG;
    }
    if (!d->labels) {
        set_err(err, errlen, "dataset: filtering by class needs labels");
        return DATASET_ERR_ARG;
    }
    if (k < 0 || k > 255) {
        set_err(err, errlen, "dataset: class %d out of range", k);
        return DATASET_ERR_ARG;
    }
    size_t dim = (size_t)dataset_dim(d);
    int kept = 0;
    for (int i = 0; i < d->n; i++) {
        if (d->labels[i] != k) continue;
        if (kept != i) {
            memmove(d->x + (size_t)kept * dim, d->x + (size_t)i * dim, dim * sizeof *d->x);
            d->labels[kept] = d->labels[i];
        }
        kept++;
    }
    if (kept == 0) {
        set_err(err, errlen, "dataset: no images with label %d", k);
        return DATASET_ERR_ARG; /* nothing moved: d is unchanged */
    }
    dataset_truncate(d, kept);
    return DATASET_OK;
}

void dataset_truncate(dataset *d, int n) {
    if (!d || n < 1 || n >= d->n) return;
    d->n = n;
    /* Shrinking in place cannot fail in a way that matters: keep the old
     * block if realloc says no. */
    float *x = realloc(d->x, (size_t)n * (size_t)dataset_dim(d) * sizeof *x);
    if (x) d->x = x;
    if (d->labels) {
        uint8_t *l = realloc(d->labels, (size_t)n);
        if (l) d->labels = l;
    }
}

void dataset_free(dataset *d) {
    if (!d) return;
    free(d->x);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
