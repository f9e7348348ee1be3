/* safetensors: a strict JSON reader (sj_*), the safetensors parser and writer,
 * and atomic file writes. See safetensors.h for the format and the contract. */
#include "engine/safetensors.h"

#include "engine/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies tensor data as-is and so needs a little-endian host"
#endif

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < need) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < need; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return need;
}

static int utf8_valid(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* sj: strict JSON (RFC 8259)                                               */

typedef struct {
    const char *s;
    size_t len, pos;
    int max_depth;
    char *err;
    size_t errlen;
} sj_parser;

static vae_status sj_fail(sj_parser *p, vae_status status, const char *what) {
    if (p->pos >= p->len)
        set_err(p->err, p->errlen, "json: %s at byte %zu (end of input)", what, p->pos);
    else
        set_err(p->err, p->errlen, "json: %s at byte %zu", what, p->pos);
    return status;
}

static void sj_skip_ws(sj_parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t utf8_put(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* p->pos is at the opening quote. *out is owned by the caller on success. */
static vae_status sj_parse_string(sj_parser *p, char **out) {
    size_t start = ++p->pos, end = start;
    /* Find the closing quote first: decoding never grows the text, so its
     * span bounds the output size. */
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len) {
        p->pos = p->len;
        return sj_fail(p, VAE_ERR_FORMAT, "unterminated string");
    }
    char *o = malloc(end - start + 1); /* owned: handed to *out */
    if (!o) return sj_fail(p, VAE_ERR_NOMEM, "out of memory");
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) {
            free(o);
            return sj_fail(p, VAE_ERR_FORMAT, "control character in string");
        }
        if (c != '\\') {
            size_t n = utf8_seq_len((const unsigned char *)p->s + p->pos, end - p->pos);
            if (n == 0) {
                free(o);
                return sj_fail(p, VAE_ERR_FORMAT, "invalid UTF-8 in string");
            }
            memcpy(o + k, p->s + p->pos, n);
            k += n;
            p->pos += n;
            continue;
        }
        char e = p->s[p->pos + 1]; /* in range: the scan above skipped it */
        const char *simple = "\"\\/bfnrt";
        const char *map = "\"\\/\b\f\n\r\t";
        const char *hit = strchr(simple, e);
        if (e && hit) {
            o[k++] = map[hit - simple];
            p->pos += 2;
            continue;
        }
        if (e != 'u') {
            p->pos++;
            free(o);
            return sj_fail(p, VAE_ERR_FORMAT, "invalid escape in string");
        }
        unsigned cp, lo;
        if (end - p->pos < 6 || !hex4(p->s + p->pos + 2, &cp)) {
            free(o);
            return sj_fail(p, VAE_ERR_FORMAT, "invalid \\u escape");
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            free(o);
            return sj_fail(p, VAE_ERR_FORMAT, "unpaired low surrogate");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - p->pos < 12 || p->s[p->pos + 6] != '\\' || p->s[p->pos + 7] != 'u' ||
                !hex4(p->s + p->pos + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                free(o);
                return sj_fail(p, VAE_ERR_FORMAT, "unpaired high surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p->pos += 6;
        }
        if (cp == 0) {
            free(o);
            return sj_fail(p, VAE_ERR_FORMAT, "NUL character in string");
        }
        k += utf8_put(o + k, cp);
        p->pos += 6;
    }
    o[k] = '\0';
    p->pos = end + 1;
    *out = o;
    return VAE_OK;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static vae_status sj_parse_number(sj_parser *p, sj_value *v) {
    size_t start = p->pos, i = p->pos;
    int neg = 0, integral = 1;
    if (i < p->len && p->s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= p->len || !is_digit(p->s[i])) {
        p->pos = i;
        return sj_fail(p, VAE_ERR_FORMAT, "invalid number");
    }
    size_t int_start = i;
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && is_digit(p->s[i])) {
            p->pos = i;
            return sj_fail(p, VAE_ERR_FORMAT, "leading zero in number");
        }
    } else {
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    size_t int_end = i;
    if (i < p->len && p->s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->len || !is_digit(p->s[i])) {
            p->pos = i;
            return sj_fail(p, VAE_ERR_FORMAT, "digit expected after '.'");
        }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->len || !is_digit(p->s[i])) {
            p->pos = i;
            return sj_fail(p, VAE_ERR_FORMAT, "digit expected in exponent");
        }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    /* strtod needs a NUL-terminated copy; the input is not terminated. */
    size_t n = i - start;
    char stack_buf[64];
    char *buf = n < sizeof stack_buf ? stack_buf : malloc(n + 1); /* owned when not stack_buf */
    if (!buf) return sj_fail(p, VAE_ERR_NOMEM, "out of memory");
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    double d = strtod(buf, NULL);
    if (buf != stack_buf) free(buf);
    if (isinf(d)) return sj_fail(p, VAE_ERR_FORMAT, "number out of range");
    v->type = SJ_NUMBER;
    v->number = d;
    if (integral) {
        uint64_t mag = 0;
        int fits = 1;
        for (size_t j = int_start; j < int_end; j++) {
            unsigned digit = (unsigned)(p->s[j] - '0');
            if (mag > (UINT64_MAX - digit) / 10) {
                fits = 0;
                break;
            }
            mag = mag * 10 + digit;
        }
        if (fits && mag <= (uint64_t)INT64_MAX) {
            v->is_integer = 1;
            v->integer = neg ? -(int64_t)mag : (int64_t)mag;
        }
    }
    p->pos = i;
    return VAE_OK;
}

static vae_status sj_parse_value(sj_parser *p, sj_value *v, int depth);

static int grow(sj_value *v, size_t *cap, int with_keys) {
    if (v->n < *cap) return 1;
    size_t ncap = *cap ? *cap * 2 : 4;
    sj_value *items = realloc(v->items, ncap * sizeof *items);
    if (!items) return 0;
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, ncap * sizeof *keys);
        if (!keys) return 0;
        v->keys = keys;
    }
    *cap = ncap;
    return 1;
}

static int cmp_key_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorting a copy keeps duplicate detection O(n log n) for big headers. */
static vae_status sj_check_duplicates(sj_parser *p, const sj_value *v, size_t obj_pos) {
    if (v->n < 2) return VAE_OK;
    char **sorted = malloc(v->n * sizeof *sorted); /* owned here */
    if (!sorted) return sj_fail(p, VAE_ERR_NOMEM, "out of memory");
    memcpy(sorted, v->keys, v->n * sizeof *sorted);
    qsort(sorted, v->n, sizeof *sorted, cmp_key_ptr);
    for (size_t i = 1; i < v->n; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            set_err(p->err, p->errlen, "json: duplicate key \"%.200s\" in object at byte %zu",
                    sorted[i], obj_pos);
            free(sorted);
            return VAE_ERR_FORMAT;
        }
    }
    free(sorted);
    return VAE_OK;
}

/* Invariant: the tree under v can be freed with sj_free at any point, even
 * half built; on error only the root is freed. */
static vae_status sj_parse_container(sj_parser *p, sj_value *v, int depth) {
    int is_obj = p->s[p->pos] == '{';
    size_t open_pos = p->pos;
    if (depth + 1 > p->max_depth) return sj_fail(p, VAE_ERR_FORMAT, "nesting too deep");
    v->type = is_obj ? SJ_OBJECT : SJ_ARRAY;
    p->pos++;
    sj_skip_ws(p);
    char close = is_obj ? '}' : ']';
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return VAE_OK;
    }
    size_t cap = 0;
    for (;;) {
        if (!grow(v, &cap, is_obj)) return sj_fail(p, VAE_ERR_NOMEM, "out of memory");
        memset(&v->items[v->n], 0, sizeof v->items[0]);
        if (is_obj) {
            sj_skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return sj_fail(p, VAE_ERR_FORMAT, "object key expected");
            char *key = NULL;
            vae_status rc = sj_parse_string(p, &key);
            if (rc) return rc;
            v->keys[v->n] = key;
        }
        v->n++; /* the slot (and its key) now belongs to v; its value is still null */
        if (is_obj) {
            sj_skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return sj_fail(p, VAE_ERR_FORMAT, "':' expected");
            p->pos++;
        }
        vae_status rc = sj_parse_value(p, &v->items[v->n - 1], depth + 1);
        if (rc) return rc;
        sj_skip_ws(p);
        if (p->pos >= p->len) return sj_fail(p, VAE_ERR_FORMAT, is_obj ? "'}' expected" : "']' expected");
        char c = p->s[p->pos];
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == close) {
            p->pos++;
            break;
        }
        return sj_fail(p, VAE_ERR_FORMAT, is_obj ? "',' or '}' expected" : "',' or ']' expected");
    }
    return is_obj ? sj_check_duplicates(p, v, open_pos) : VAE_OK;
}

static vae_status sj_literal(sj_parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return sj_fail(p, VAE_ERR_FORMAT, "invalid literal");
    p->pos += n;
    return VAE_OK;
}

static vae_status sj_parse_value(sj_parser *p, sj_value *v, int depth) {
    sj_skip_ws(p);
    if (p->pos >= p->len) return sj_fail(p, VAE_ERR_FORMAT, "value expected");
    char c = p->s[p->pos];
    switch (c) {
    case '{':
    case '[':
        return sj_parse_container(p, v, depth);
    case '"':
        v->type = SJ_STRING;
        return sj_parse_string(p, &v->string);
    case 't':
        v->type = SJ_BOOL;
        v->boolean = 1;
        return sj_literal(p, "true");
    case 'f':
        v->type = SJ_BOOL;
        return sj_literal(p, "false");
    case 'n':
        v->type = SJ_NULL;
        return sj_literal(p, "null");
    default:
        if (c == '-' || is_digit(c)) return sj_parse_number(p, v);
        return sj_fail(p, VAE_ERR_FORMAT, "unexpected character");
    }
}

vae_status sj_parse(const char *text, size_t len, int max_depth, sj_value *out, char *err,
                    size_t errlen) {
    if (!out) return VAE_ERR_ARG;
    memset(out, 0, sizeof *out);
    if ((!text && len) || max_depth < 0) {
        set_err(err, errlen, "json: invalid arguments");
        return VAE_ERR_ARG;
    }
    sj_parser p = {.s = text, .len = len, .max_depth = max_depth, .err = err, .errlen = errlen};
    vae_status rc = sj_parse_value(&p, out, 0);
    if (!rc) {
        sj_skip_ws(&p);
        if (p.pos != p.len) rc = sj_fail(&p, VAE_ERR_FORMAT, "trailing characters");
    }
    if (rc) sj_free(out);
    return rc;
}

const sj_value *sj_get(const sj_value *obj, const char *key) {
    if (!obj || obj->type != SJ_OBJECT || !key) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

void sj_free(sj_value *v) {
    if (!v) return;
    free(v->string);
    for (size_t i = 0; i < v->n; i++) {
        if (v->items) sj_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

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

static vae_status st_parse_metadata(const sj_value *m, st_file *f, char *err, size_t errlen) {
    if (m->type != SJ_OBJECT) {
        set_err(err, errlen, "safetensors: __metadata__ is not an object");
        return VAE_ERR_FORMAT;
    }
    if (m->n == 0) return VAE_OK;
    f->meta_keys = calloc(m->n, sizeof *f->meta_keys);
    f->meta_values = calloc(m->n, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) {
        set_err(err, errlen, "safetensors: out of memory");
        return VAE_ERR_NOMEM;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i].type != SJ_STRING) {
            set_err(err, errlen, "safetensors: __metadata__ value for \"%.200s\" is not a string",
                    m->keys[i]);
            return VAE_ERR_FORMAT;
        }
        f->meta_keys[i] = strdup(m->keys[i]);
        f->meta_values[i] = strdup(m->items[i].string);
        f->n_meta = (int)i + 1; /* counts slots to free, even half-filled */
        if (!f->meta_keys[i] || !f->meta_values[i]) {
            set_err(err, errlen, "safetensors: out of memory");
            return VAE_ERR_NOMEM;
        }
    }
    return VAE_OK;
}

static int st_parse_u64(const sj_value *v, uint64_t *out) {
    if (!v || v->type != SJ_NUMBER || !v->is_integer || v->integer < 0) return 0;
    *out = (uint64_t)v->integer;
    return 1;
}

static vae_status st_parse_tensor(const char *name, const sj_value *e, uint64_t data_len,
                                  st_tensor_info *t, char *err, size_t errlen) {
#define FAIL(...)                                                                          \
    do {                                                                                   \
        char why_[256];                                                                    \
        snprintf(why_, sizeof why_, __VA_ARGS__);                                          \
        set_err(err, errlen, "safetensors: tensor \"%.200s\": %s", name, why_);            \
        return VAE_ERR_FORMAT;                                                              \
    } while (0)
    if (name[0] == '\0') FAIL("empty name");
    if (strlen(name) >= ST_NAME_MAX) FAIL("name longer than %d bytes", ST_NAME_MAX - 1);
    if (e->type != SJ_OBJECT) FAIL("entry is not an object");
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->keys[i], "dtype") && strcmp(e->keys[i], "shape") &&
            strcmp(e->keys[i], "data_offsets"))
            FAIL("unknown field \"%.64s\"", e->keys[i]);
    strcpy(t->name, name);

    const sj_value *dtype = sj_get(e, "dtype");
    if (!dtype || dtype->type != SJ_STRING) FAIL("missing or non-string dtype");
    unsigned esize = st_dtype_size(dtype->string);
    if (!esize) FAIL("unknown dtype \"%.32s\"", dtype->string);
    strcpy(t->dtype, dtype->string);

    const sj_value *shape = sj_get(e, "shape");
    if (!shape || shape->type != SJ_ARRAY) FAIL("missing or non-array shape");
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

    const sj_value *offs = sj_get(e, "data_offsets");
    if (!offs || offs->type != SJ_ARRAY || offs->n != 2) FAIL("data_offsets must be [begin, end]");
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
            set_err(err, errlen, "safetensors: %" PRIu64 " bytes of data but no tensors",
                    f->data_len);
            return VAE_ERR_FORMAT;
        }
        return VAE_OK;
    }
    const st_tensor_info **order = malloc((size_t)f->n_tensors * sizeof *order); /* owned here */
    if (!order) {
        set_err(err, errlen, "safetensors: out of memory");
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
                set_err(err, errlen, "safetensors: tensor \"%.200s\" overlaps the previous one (begins at %" PRIu64 ", previous ends at %" PRIu64 ")",
                        t->name, t->begin, expect);
            else
                set_err(err, errlen, "safetensors: gap before tensor \"%.200s\" (begins at %" PRIu64 ", previous data ends at %" PRIu64 ")",
                        t->name, t->begin, expect);
            rc = VAE_ERR_FORMAT;
            break;
        }
        expect = t->end;
    }
    if (!rc && expect != f->data_len) {
        set_err(err, errlen, "safetensors: tensors cover %" PRIu64 " bytes but the data area has %" PRIu64 " (after \"%.200s\")",
                expect, f->data_len, order[f->n_tensors - 1]->name);
        rc = VAE_ERR_FORMAT;
    }
    free(order);
    return rc;
}

vae_status st_parse(const uint8_t *buf, size_t len, st_file *f, char *err, size_t errlen) {
    if (!f) return VAE_ERR_ARG;
    memset(f, 0, sizeof *f);
    if (!buf && len) {
        set_err(err, errlen, "safetensors: invalid arguments");
        return VAE_ERR_ARG;
    }
    if (len < 8) {
        set_err(err, errlen, "safetensors: %zu bytes, too short for the 8-byte header length", len);
        return VAE_ERR_FORMAT;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n > (uint64_t)(len - 8)) {
        set_err(err, errlen, "safetensors: header length %" PRIu64 " exceeds the %zu bytes after it",
                n, len - 8);
        return VAE_ERR_FORMAT;
    }
    if (n > ST_MAX_HEADER) {
        set_err(err, errlen, "safetensors: header length %" PRIu64 " exceeds the limit of %u", n,
                ST_MAX_HEADER);
        return VAE_ERR_FORMAT;
    }
    f->data = buf + 8 + n;
    f->data_len = (uint64_t)(len - 8 - n);

    char jerr[256] = "";
    sj_value root; /* owned here; freed at the end */
    vae_status rc = sj_parse((const char *)buf + 8, (size_t)n, ST_JSON_DEPTH, &root, jerr, sizeof jerr);
    if (rc) {
        /* Offsets in the JSON error are relative to the header start. */
        set_err(err, errlen, "safetensors: bad header %s (offsets count from the header start, file byte 8)", jerr);
        f->data = NULL;
        f->data_len = 0;
        return rc;
    }
    if (root.type != SJ_OBJECT) {
        set_err(err, errlen, "safetensors: header is not a JSON object");
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    size_t n_tensors = root.n;
    const sj_value *meta = sj_get(&root, "__metadata__");
    if (meta) n_tensors--;
    if (n_tensors > (size_t)INT_MAX) {
        set_err(err, errlen, "safetensors: too many tensors");
        rc = VAE_ERR_FORMAT;
        goto end;
    }
    if (meta && (rc = st_parse_metadata(meta, f, err, errlen))) goto end;
    if (n_tensors) {
        f->tensors = calloc(n_tensors, sizeof *f->tensors);
        if (!f->tensors) {
            set_err(err, errlen, "safetensors: out of memory");
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
    sj_free(&root);
    if (rc) st_free(f);
    return rc;
}

vae_status st_read_file(const char *path, st_file *f, char *err, size_t errlen) {
    if (!f) return VAE_ERR_ARG;
    memset(f, 0, sizeof *f);
    if (!path) {
        set_err(err, errlen, "safetensors: no path");
        return VAE_ERR_ARG;
    }
    uint8_t *buf; /* owned: handed to f->owned_buf */
    size_t size;
    vae_status rc = file_read_all(path, SIZE_MAX - 1, &buf, &size, err, errlen);
    if (rc) return rc;
    char perr[512] = "";
    rc = st_parse(buf, size, f, perr, sizeof perr);
    if (rc) {
        set_err(err, errlen, "%s: %s", path, perr);
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
        set_err(err, errlen, "safetensors: invalid arguments");
        return VAE_ERR_ARG;
    }
    *out = NULL;
    *out_len = 0;
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i] || !utf8_valid(meta_keys[i]) ||
            !utf8_valid(meta_values[i])) {
            set_err(err, errlen, "safetensors: metadata entry %d is NULL or not UTF-8", i);
            return VAE_ERR_ARG;
        }
    }
    const char *dup = NULL;
    int d = has_duplicates(meta_keys, n_meta, &dup);
    if (d) {
        if (d < 0) set_err(err, errlen, "safetensors: out of memory");
        else set_err(err, errlen, "safetensors: duplicate metadata key \"%.200s\"", dup);
        return d < 0 ? VAE_ERR_NOMEM : VAE_ERR_ARG;
    }

    uint64_t total = 0;
    for (int i = 0; i < n_tensors; i++) {
        const st_tensor_out *t = &tensors[i];
        if (!t->name || !t->name[0] || strlen(t->name) >= ST_NAME_MAX ||
            strcmp(t->name, "__metadata__") == 0 || !utf8_valid(t->name)) {
            set_err(err, errlen, "safetensors: tensor %d has an invalid name", i);
            return VAE_ERR_ARG;
        }
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
            set_err(err, errlen, "safetensors: tensor \"%.200s\": ndim %d out of range", t->name,
                    t->ndim);
            return VAE_ERR_ARG;
        }
        unsigned esize = st_dtype_size(t->dtype ? t->dtype : "F32");
        if (!esize) {
            set_err(err, errlen, "safetensors: tensor \"%.200s\": unknown dtype \"%.32s\"",
                    t->name, t->dtype);
            return VAE_ERR_ARG;
        }
        uint64_t count = 1;
        for (int k = 0; k < t->ndim; k++) {
            if (t->shape[k] < 0 ||
                (t->shape[k] && count > UINT64_MAX / esize / (uint64_t)t->shape[k])) {
                set_err(err, errlen, "safetensors: tensor \"%.200s\": invalid shape", t->name);
                return VAE_ERR_ARG;
            }
            count *= (uint64_t)t->shape[k];
        }
        if (count && !t->data) {
            set_err(err, errlen, "safetensors: tensor \"%.200s\": no data", t->name);
            return VAE_ERR_ARG;
        }
        if (count * esize > UINT64_MAX - total) {
            set_err(err, errlen, "safetensors: total size overflows");
            return VAE_ERR_ARG;
        }
        total += count * esize;
    }
    if (n_tensors > 1) {
        const char **names = malloc((size_t)n_tensors * sizeof *names); /* owned here */
        if (!names) {
            set_err(err, errlen, "safetensors: out of memory");
            return VAE_ERR_NOMEM;
        }
        for (int i = 0; i < n_tensors; i++) names[i] = tensors[i].name;
        d = has_duplicates(names, n_tensors, &dup);
        if (d > 0) set_err(err, errlen, "safetensors: duplicate tensor name \"%.200s\"", dup);
        free(names);
        if (d) {
            if (d < 0) set_err(err, errlen, "safetensors: out of memory");
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
        set_err(err, errlen, "safetensors: out of memory");
        return VAE_ERR_NOMEM;
    }
    if (total > SIZE_MAX - 8 - h.len) {
        free(h.p);
        set_err(err, errlen, "safetensors: file too large");
        return VAE_ERR_ARG;
    }
    size_t size = 8 + h.len + (size_t)total;
    uint8_t *buf = malloc(size); /* owned: handed to *out */
    if (!buf) {
        free(h.p);
        set_err(err, errlen, "safetensors: out of memory (%zu bytes)", size);
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
    rc = file_write_atomic(path, buf, len, err, errlen);
    free(buf);
    return rc;
}
