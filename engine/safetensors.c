/* safetensors: the format's parser and writer. See safetensors.h for the
 * format and the contract. */
#include "engine/safetensors.h"

#include "engine/file_io.h"
#include "engine/json_strict.h"
#include "engine/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies tensor data as-is and so needs a little-endian host"
#endif

/* ------------------------------------------------------------------------ */
/* safetensors parsing                                                      */

static const struct {
    const char *name;
    unsigned size;
} st_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
    {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
    {"U16", 2}, {"U8", 1},  {"BOOL", 1},
};

static unsigned st_dtype_size(const char *name) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return st_dtypes[i].size;
    return 0;
}

/* Header JSON never needs more than root -> tensor -> shape. */
#define ST_JSON_DEPTH 3

static vae_status st_parse_metadata(const json_strict_value *m, st_file *f, char *err, size_t errlen) {
    if (m->type != JSON_STRICT_OBJECT) {
        util_set_err(err, errlen, "safetensors: __metadata__ is not an object");
        return VAE_ERR_FORMAT;
    }
    if (m->n == 0) return VAE_OK;
    f->meta_keys = calloc(m->n, sizeof *f->meta_keys);
    f->meta_values = calloc(m->n, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) {
        util_set_err(err, errlen, "safetensors: out of memory");
        return VAE_ERR_NOMEM;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i].type != JSON_STRICT_STRING) {
            util_set_err(err, errlen, "safetensors: __metadata__ value for \"%.200s\" is not a string",
                    m->keys[i]);
            return VAE_ERR_FORMAT;
        }
        f->meta_keys[i] = strdup(m->keys[i]);
        f->meta_values[i] = strdup(m->items[i].string);
        f->n_meta = (int)i + 1; /* counts slots to free, even half-filled */
        if (!f->meta_keys[i] || !f->meta_values[i]) {
            util_set_err(err, errlen, "safetensors: out of memory");
            return VAE_ERR_NOMEM;
        }
    }
    return VAE_OK;
}

static int st_parse_u64(const json_strict_value *v, uint64_t *out) {
    if (!v || v->type != JSON_STRICT_NUMBER || !v->is_integer || v->integer < 0) return 0;
    *out = (uint64_t)v->integer;
    return 1;
}

static vae_status st_parse_tensor(const char *name, const json_strict_value *e, uint64_t data_len,
                                  st_tensor_info *t, char *err, size_t errlen) {
#define FAIL(...)                                                                          \
    do {                                                                                   \
        char why_[256];                                                                    \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                          \
        util_set_err(err, errlen, "safetensors: tensor \"%.200s\": %s", name, why_);            \
        return VAE_ERR_FORMAT;                                                              \
    } while (0)
    if (name[0] == '\0') FAIL("empty name");
    if (strlen(name) >= ST_NAME_MAX) FAIL("name longer than %d bytes", ST_NAME_MAX - 1);
    if (e->type != JSON_STRICT_OBJECT) FAIL("entry is not an object");
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->keys[i], "dtype") && strcmp(e->keys[i], "shape") &&
            strcmp(e->keys[i], "data_offsets"))
            FAIL("unknown field \"%.64s\"", e->keys[i]);
    strcpy(t->name, name);

    const json_strict_value *dtype = json_strict_get(e, "dtype");
    if (!dtype || dtype->type != JSON_STRICT_STRING) FAIL("missing or non-string dtype");
    unsigned esize = st_dtype_size(dtype->string);
    if (!esize) FAIL("unknown dtype \"%.32s\"", dtype->string);
    strcpy(t->dtype, dtype->string);

    const json_strict_value *shape = json_strict_get(e, "shape");
    if (!shape || shape->type != JSON_STRICT_ARRAY) FAIL("missing or non-array shape");
    if (shape->n > ST_MAX_DIMS) FAIL("%zu dimensions, at most %d supported", shape->n, ST_MAX_DIMS);
    uint64_t count = 1;
    int overflow = 0;
    t->ndim = (int)shape->n;
    for (size_t i = 0; i < shape->n; i++) {
        uint64_t d;
        if (!st_parse_u64(&shape->items[i], &d)) FAIL("shape[%zu] is not a non-negative integer", i);
        t->shape[i] = (int64_t)d;
        if (d && count > UINT64_MAX / d) overflow = 1;
        else count *= d;
    }
    /* A zero dimension makes the count zero whatever overflowed before it. */
    for (size_t i = 0; i < shape->n; i++)
        if (t->shape[i] == 0) overflow = 0, count = 0;
    if (overflow || count > UINT64_MAX / esize) FAIL("shape product overflows");
    uint64_t nbytes = count * esize;

    const json_strict_value *offs = json_strict_get(e, "data_offsets");
    if (!offs || offs->type != JSON_STRICT_ARRAY || offs->n != 2) FAIL("data_offsets must be [begin, end]");
    if (!st_parse_u64(&offs->items[0], &t->begin) || !st_parse_u64(&offs->items[1], &t->end))
        FAIL("data_offsets are not non-negative integers");
    if (t->begin > t->end) FAIL("data_offsets begin %" PRIu64 " > end %" PRIu64, t->begin, t->end);
    if (t->end > data_len)
        FAIL("data_offsets end %" PRIu64 " beyond the data area (%" PRIu64 " bytes)", t->end,
             data_len);
    if (t->end - t->begin != nbytes)
        FAIL("%" PRIu64 " bytes in data_offsets but shape x dtype needs %" PRIu64,
             t->end - t->begin, nbytes);
    return VAE_OK;
#undef FAIL
}

static int cmp_tensor_offsets(const void *a, const void *b) {
    const st_tensor_info *x = *(const st_tensor_info *const *)a;
    const st_tensor_info *y = *(const st_tensor_info *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Like the reference implementation: sorted by offset, each tensor starts
 * where the previous ended, and the last ends at the end of the data. */
static vae_status st_check_layout(st_file *f, char *err, size_t errlen) {
    if (f->n_tensors == 0) {
        if (f->data_len != 0) {
            util_set_err(err, errlen, "safetensors: %" PRIu64 " bytes of data but no tensors",
                    f->data_len);
            return VAE_ERR_FORMAT;
        }
        return VAE_OK;
    }
    const st_tensor_info **order = malloc((size_t)f->n_tensors * sizeof *order); /* owned here */
    if (!order) {
        util_set_err(err, errlen, "safetensors: out of memory");
        return VAE_ERR_NOMEM;
    }
    for (int i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_tensor_offsets);
    uint64_t expect = 0;
    vae_status rc = VAE_OK;
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor_info *t = order[i];
        if (t->begin != expect) {
            if (t->begin < expect)
                util_set_err(err, errlen, "safetensors: tensor \"%.200s\" overlaps the previous one (begins at %" PRIu64 ", previous ends at %" PRIu64 ")",
                        t->name, t->begin, expect);
            else
                util_set_err(err, errlen, "safetensors: gap before tensor \"%.200s\" (begins at %" PRIu64 ", previous data ends at %" PRIu64 ")",
                        t->name, t->begin, expect);
            rc = VAE_ERR_FORMAT;
            break;
        }
        expect = t->end;
    }
    if (!rc && expect != f->data_len) {
        util_set_err(err, errlen, "safetensors: tensors cover %" PRIu64 " bytes but the data area has %" PRIu64 " (after \"%.200s\")",
                expect, f->data_len, order[f->n_tensors - 1]->name);
        rc = VAE_ERR_FORMAT;
    }
    free(order);
    return rc;
}

vae_status st_parse(const uint8_t *buf, size_t len, st_file *f, char *err, size_t errlen) {
    return st_parse_limited(buf, len, NULL, f, err, errlen);
}

vae_status st_parse_limited(const uint8_t *buf, size_t len, const st_limits *limits, st_file *f,
                            char *err, size_t errlen) {
    size_t max_header = limits && limits->max_header ? limits->max_header : ST_MAX_HEADER;
    size_t max_values = limits && limits->max_values ? limits->max_values : ST_MAX_HEADER_VALUES;
    if (!f) return VAE_ERR_ARG;
    memset(f, 0, sizeof *f);
    if (!buf && len) {
        util_set_err(err, errlen, "safetensors: invalid arguments");
        return VAE_ERR_ARG;
    }
    if (len < 8) {
        util_set_err(err, errlen, "safetensors: %zu bytes, too short for the 8-byte header length", len);
        return VAE_ERR_FORMAT;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > (uint64_t)(len - 8)) {
        util_set_err(err, errlen, "safetensors: header length %" PRIu64 " exceeds the %zu bytes after it",
                n, len - 8);
        return VAE_ERR_FORMAT;
    }
    if (n > max_header) {
        util_set_err(err, errlen, "safetensors: header length %" PRIu64 " exceeds the limit of %zu",
                     n, max_header);
        return VAE_ERR_TOO_LARGE;
    }
    f->data = buf + 8 + n;
    f->data_len = (uint64_t)(len - 8 - n);

    char jerr[256] = "";
    json_strict_value root; /* owned here; freed at the end */
    vae_status rc = json_strict_parse_budget((const char *)buf + 8, (size_t)n, ST_JSON_DEPTH,
                                             max_values, &root, jerr, sizeof jerr);
    if (rc) {
        /* Offsets in the JSON error are relative to the header start. */
        util_set_err(err, errlen, "safetensors: bad header %s (offsets count from the header start, file byte 8)", jerr);
        f->data = NULL;
        f->data_len = 0;
        return rc;
    }
    if (root.type != JSON_STRICT_OBJECT) {
        util_set_err(err, errlen, "safetensors: header is not a JSON object");
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    size_t n_tensors = root.n;
    const json_strict_value *meta = json_strict_get(&root, "__metadata__");
    if (meta) n_tensors--;
    if (n_tensors > (size_t)INT_MAX) {
        util_set_err(err, errlen, "safetensors: too many tensors");
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    if (meta && (rc = st_parse_metadata(meta, f, err, errlen))) goto end;
    if (n_tensors) {
        f->tensors = calloc(n_tensors, sizeof *f->tensors);
        if (!f->tensors) {
            util_set_err(err, errlen, "safetensors: out of memory");
            rc = VAE_ERR_NOMEM;
            goto end;
        }
    }
    for (size_t i = 0; i < root.n; i++) {
        if (strcmp(root.keys[i], "__metadata__") == 0) continue;
        rc = st_parse_tensor(root.keys[i], &root.items[i], f->data_len, &f->tensors[f->n_tensors],
                             err, errlen);
        if (rc) goto end;
        f->n_tensors++;
    }
    rc = st_check_layout(f, err, errlen);
end:
    json_strict_free(&root);
    if (rc) st_free(f);
    return rc;
}

vae_status st_read_file(const char *path, st_file *f, char *err, size_t errlen) {
    if (!f) return VAE_ERR_ARG;
    memset(f, 0, sizeof *f);
    if (!path) {
        util_set_err(err, errlen, "safetensors: no path");
        return VAE_ERR_ARG;
    }
    uint8_t *buf; /* owned: handed to f->owned_buf */
    size_t size;
    vae_status rc = file_io_read_all(path, SIZE_MAX - 1, &buf, &size, err, errlen);
    if (rc) return rc;
    char perr[512] = "";
    rc = st_parse(buf, size, f, perr, sizeof perr);
    if (rc) {
        util_set_err(err, errlen, "%s: %s", path, perr);
        free(buf);
        return rc;
    }
    f->owned_buf = buf;
    f->owned_len = size;
    return VAE_OK;
}

const st_tensor_info *st_find(const st_file *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta_get(const st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (f->meta_keys[i] && strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

void st_free(st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_meta; i++) {
        if (f->meta_keys) free(f->meta_keys[i]);
        if (f->meta_values) free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->owned_buf);
    memset(f, 0, sizeof *f);
}

/* ------------------------------------------------------------------------ */
/* safetensors writing                                                      */

typedef struct {
    char *p; /* owned */
    size_t len, cap;
    int oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n + 1) ncap *= 2;
        char *p = realloc(b->p, ncap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_put_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"') sb_put(b, "\\\"", 2);
        else if (c == '\\') sb_put(b, "\\\\", 2);
        else if (c == '\n') sb_put(b, "\\n", 2);
        else if (c == '\t') sb_put(b, "\\t", 2);
        else if (c == '\r') sb_put(b, "\\r", 2);
        else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else
            sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Non-zero when two of the n strings are equal. */
static int has_duplicates(const char *const *names, int n, const char **dup) {
    if (n < 2) return 0;
    const char **s = malloc((size_t)n * sizeof *s); /* owned here */
    if (!s) return -1;
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_str_ptr);
    int found = 0;
    for (int i = 1; i < n && !found; i++)
        if (strcmp(s[i - 1], s[i]) == 0) {
            found = 1;
            *dup = s[i]; /* the caller's string: only the pointer array was copied */
        }
    free(s);
    return found;
}

vae_status st_write_mem(const st_tensor_out *tensors, int n_tensors,
                        const char *const *meta_keys, const char *const *meta_values, int n_meta,
                        uint8_t **out, size_t *out_len, char *err, size_t errlen) {
    if (!out || !out_len || n_tensors < 0 || n_meta < 0 || (n_tensors && !tensors) ||
        (n_meta && (!meta_keys || !meta_values))) {
        util_set_err(err, errlen, "safetensors: invalid arguments");
        return VAE_ERR_ARG;
    }
    *out = NULL;
    *out_len = 0;
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i] || !json_strict_utf8_valid(meta_keys[i]) ||
            !json_strict_utf8_valid(meta_values[i])) {
            util_set_err(err, errlen, "safetensors: metadata entry %d is NULL or not UTF-8", i);
            return VAE_ERR_ARG;
        }
    }
    const char *dup = NULL;
    int d = has_duplicates(meta_keys, n_meta, &dup);
    if (d) {
        if (d < 0) util_set_err(err, errlen, "safetensors: out of memory");
        else util_set_err(err, errlen, "safetensors: duplicate metadata key \"%.200s\"", dup);
        return d < 0 ? VAE_ERR_NOMEM : VAE_ERR_ARG;
    }

    uint64_t total = 0;
    for (int i = 0; i < n_tensors; i++) {
        const st_tensor_out *t = &tensors[i];
        if (!t->name || !t->name[0] || strlen(t->name) >= ST_NAME_MAX ||
            strcmp(t->name, "__metadata__") == 0 || !json_strict_utf8_valid(t->name)) {
            util_set_err(err, errlen, "safetensors: tensor %d has an invalid name", i);
            return VAE_ERR_ARG;
        }
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
            util_set_err(err, errlen, "safetensors: tensor \"%.200s\": ndim %d out of range", t->name,
                    t->ndim);
            return VAE_ERR_ARG;
        }
        unsigned esize = st_dtype_size(t->dtype ? t->dtype : "F32");
        if (!esize) {
            util_set_err(err, errlen, "safetensors: tensor \"%.200s\": unknown dtype \"%.32s\"",
                    t->name, t->dtype);
            return VAE_ERR_ARG;
        }
        uint64_t count = 1;
        for (int k = 0; k < t->ndim; k++) {
            if (t->shape[k] < 0 ||
                (t->shape[k] && count > UINT64_MAX / esize / (uint64_t)t->shape[k])) {
                util_set_err(err, errlen, "safetensors: tensor \"%.200s\": invalid shape", t->name);
                return VAE_ERR_ARG;
            }
            count *= (uint64_t)t->shape[k];
        }
        if (count && !t->data) {
            util_set_err(err, errlen, "safetensors: tensor \"%.200s\": no data", t->name);
            return VAE_ERR_ARG;
        }
        if (count * esize > UINT64_MAX - total) {
            util_set_err(err, errlen, "safetensors: total size overflows");
            return VAE_ERR_ARG;
        }
        total += count * esize;
    }
    if (n_tensors > 1) {
        const char **names = malloc((size_t)n_tensors * sizeof *names); /* owned here */
        if (!names) {
            util_set_err(err, errlen, "safetensors: out of memory");
            return VAE_ERR_NOMEM;
        }
        for (int i = 0; i < n_tensors; i++) names[i] = tensors[i].name;
        d = has_duplicates(names, n_tensors, &dup);
        if (d > 0) util_set_err(err, errlen, "safetensors: duplicate tensor name \"%.200s\"", dup);
        free(names);
        if (d) {
            if (d < 0) util_set_err(err, errlen, "safetensors: out of memory");
            return d < 0 ? VAE_ERR_NOMEM : VAE_ERR_ARG;
        }
    }

    strbuf h = {0}; /* h.p owned here */
    char num[64];
    sb_puts(&h, "{");
    if (n_meta) {
        sb_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_puts(&h, ",");
            sb_put_json_string(&h, meta_keys[i]);
            sb_puts(&h, ":");
            sb_put_json_string(&h, meta_values[i]);
        }
        sb_puts(&h, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n_tensors; i++) {
        const st_tensor_out *t = &tensors[i];
        if (i || n_meta) sb_puts(&h, ",");
        const char *dtype = t->dtype ? t->dtype : "F32";
        uint64_t nbytes = st_dtype_size(dtype);
        sb_put_json_string(&h, t->name);
        sb_puts(&h, ":{\"dtype\":");
        sb_put_json_string(&h, dtype);
        sb_puts(&h, ",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            snprintf(num, sizeof num, "%s%" PRId64, k ? "," : "", t->shape[k]);
            sb_puts(&h, num);
            nbytes *= (uint64_t)t->shape[k];
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", offset,
                 offset + nbytes);
        sb_puts(&h, num);
        offset += nbytes;
    }
    sb_puts(&h, "}");
    while (h.len % 8) sb_puts(&h, " ");
    if (h.oom) {
        free(h.p);
        util_set_err(err, errlen, "safetensors: out of memory");
        return VAE_ERR_NOMEM;
    }
    if (total > SIZE_MAX - 8 - h.len) {
        free(h.p);
        util_set_err(err, errlen, "safetensors: file too large");
        return VAE_ERR_ARG;
    }
    size_t size = 8 + h.len + (size_t)total;
    uint8_t *buf = malloc(size); /* owned: handed to *out */
    if (!buf) {
        free(h.p);
        util_set_err(err, errlen, "safetensors: out of memory (%zu bytes)", size);
        return VAE_ERR_NOMEM;
    }
    uint64_t n = h.len;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, h.p, h.len);
    free(h.p);
    uint8_t *dst = buf + 8 + n;
    for (int i = 0; i < n_tensors; i++) {
        size_t nbytes = st_dtype_size(tensors[i].dtype ? tensors[i].dtype : "F32");
        for (int k = 0; k < tensors[i].ndim; k++) nbytes *= (size_t)tensors[i].shape[k];
        if (nbytes) memcpy(dst, tensors[i].data, nbytes);
        dst += nbytes;
    }
    *out = buf;
    *out_len = size;
    return VAE_OK;
}

vae_status st_write_file(const char *path, const st_tensor_out *tensors, int n_tensors,
                         const char *const *meta_keys, const char *const *meta_values, int n_meta,
                         char *err, size_t errlen) {
    uint8_t *buf = NULL; /* owned here */
    size_t len = 0;
    vae_status rc = st_write_mem(tensors, n_tensors, meta_keys, meta_values, n_meta, &buf, &len,
                                 err, errlen);
    if (rc) return rc;
    rc = file_io_write_atomic(path, buf, len, err, errlen);
    free(buf);
    return rc;
}
