/* json_strict: a strict RFC 8259 reader. See json_strict.h. */
#include "engine/json_strict.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/util.h"

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

int json_strict_utf8_valid(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

typedef struct {
    const char *s;
    size_t len, pos;
    int max_depth;
    size_t values, max_values; /* values begun, and the budget */
    char *err;
    size_t errlen;
} parser;

static vae_status fail_at(parser *p, vae_status status, const char *what) {
    if (p->pos >= p->len)
        util_set_err(p->err, p->errlen, "json: %s at byte %zu (end of input)", what, p->pos);
    else
        util_set_err(p->err, p->errlen, "json: %s at byte %zu", what, p->pos);
    return status;
}

static void skip_ws(parser *p) {
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
static vae_status parse_string(parser *p, char **out) {
    size_t start = ++p->pos, end = start;
    /* Find the closing quote first: decoding never grows the text, so its
     * span bounds the output size. */
    while (end < p->len && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->len) {
        p->pos = p->len;
        return fail_at(p, VAE_ERR_FORMAT, "unterminated string");
    }
    char *o = malloc(end - start + 1); /* owned: handed to *out */
    if (!o) return fail_at(p, VAE_ERR_NOMEM, "out of memory");
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) {
            free(o);
            return fail_at(p, VAE_ERR_FORMAT, "control character in string");
        }
        if (c != '\\') {
            size_t n = utf8_seq_len((const unsigned char *)p->s + p->pos, end - p->pos);
            if (n == 0) {
                free(o);
                return fail_at(p, VAE_ERR_FORMAT, "invalid UTF-8 in string");
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
            return fail_at(p, VAE_ERR_FORMAT, "invalid escape in string");
        }
        unsigned cp, lo;
        if (end - p->pos < 6 || !hex4(p->s + p->pos + 2, &cp)) {
            free(o);
            return fail_at(p, VAE_ERR_FORMAT, "invalid \\u escape");
        }
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            free(o);
            return fail_at(p, VAE_ERR_FORMAT, "unpaired low surrogate");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - p->pos < 12 || p->s[p->pos + 6] != '\\' || p->s[p->pos + 7] != 'u' ||
                !hex4(p->s + p->pos + 8, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                free(o);
                return fail_at(p, VAE_ERR_FORMAT, "unpaired high surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p->pos += 6;
        }
        if (cp == 0) {
            free(o);
            return fail_at(p, VAE_ERR_FORMAT, "NUL character in string");
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

static vae_status parse_number(parser *p, json_strict_value *v) {
    size_t start = p->pos, i = p->pos;
    int neg = 0, integral = 1;
    if (i < p->len && p->s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= p->len || !is_digit(p->s[i])) {
        p->pos = i;
        return fail_at(p, VAE_ERR_FORMAT, "invalid number");
    }
    size_t int_start = i;
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && is_digit(p->s[i])) {
            p->pos = i;
            return fail_at(p, VAE_ERR_FORMAT, "leading zero in number");
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
            return fail_at(p, VAE_ERR_FORMAT, "digit expected after '.'");
        }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->len || !is_digit(p->s[i])) {
            p->pos = i;
            return fail_at(p, VAE_ERR_FORMAT, "digit expected in exponent");
        }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    /* strtod needs a NUL-terminated copy; the input is not terminated. */
    size_t n = i - start;
    char stack_buf[64];
    char *buf = n < sizeof stack_buf ? stack_buf : malloc(n + 1); /* owned when not stack_buf */
    if (!buf) return fail_at(p, VAE_ERR_NOMEM, "out of memory");
    memcpy(buf, p->s + start, n);
    buf[n] = '\0';
    double d = strtod(buf, NULL);
    if (buf != stack_buf) free(buf);
    if (isinf(d)) return fail_at(p, VAE_ERR_FORMAT, "number out of range");
    v->type = JSON_STRICT_NUMBER;
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

static vae_status parse_value(parser *p, json_strict_value *v, int depth);

static int grow(json_strict_value *v, size_t *cap, int with_keys) {
    if (v->n < *cap) return 1;
    size_t ncap = *cap ? *cap * 2 : 4;
    json_strict_value *items = realloc(v->items, ncap * sizeof *items);
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
static vae_status check_duplicates(parser *p, const json_strict_value *v, size_t obj_pos) {
    if (v->n < 2) return VAE_OK;
    char **sorted = malloc(v->n * sizeof *sorted); /* owned here */
    if (!sorted) return fail_at(p, VAE_ERR_NOMEM, "out of memory");
    memcpy(sorted, v->keys, v->n * sizeof *sorted);
    qsort(sorted, v->n, sizeof *sorted, cmp_key_ptr);
    for (size_t i = 1; i < v->n; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            util_set_err(p->err, p->errlen, "json: duplicate key \"%.200s\" in object at byte %zu",
                    sorted[i], obj_pos);
            free(sorted);
            return VAE_ERR_FORMAT;
        }
    }
    free(sorted);
    return VAE_OK;
}

/* Invariant: the tree under v can be freed with json_strict_free at any point, even
 * half built; on error only the root is freed. */
static vae_status parse_container(parser *p, json_strict_value *v, int depth) {
    int is_obj = p->s[p->pos] == '{';
    size_t open_pos = p->pos;
    if (depth + 1 > p->max_depth) return fail_at(p, VAE_ERR_FORMAT, "nesting too deep");
    v->type = is_obj ? JSON_STRICT_OBJECT : JSON_STRICT_ARRAY;
    p->pos++;
    skip_ws(p);
    char close = is_obj ? '}' : ']';
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return VAE_OK;
    }
    size_t cap = 0;
    for (;;) {
        if (!grow(v, &cap, is_obj)) return fail_at(p, VAE_ERR_NOMEM, "out of memory");
        memset(&v->items[v->n], 0, sizeof v->items[0]);
        if (is_obj) {
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail_at(p, VAE_ERR_FORMAT, "object key expected");
            char *key = NULL;
            vae_status rc = parse_string(p, &key);
            if (rc) return rc;
            v->keys[v->n] = key;
        }
        v->n++; /* the slot (and its key) now belongs to v; its value is still null */
        if (is_obj) {
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail_at(p, VAE_ERR_FORMAT, "':' expected");
            p->pos++;
        }
        vae_status rc = parse_value(p, &v->items[v->n - 1], depth + 1);
        if (rc) return rc;
        skip_ws(p);
        if (p->pos >= p->len)
            return fail_at(p, VAE_ERR_FORMAT, is_obj ? "'}' expected" : "']' expected");
        char c = p->s[p->pos];
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == close) {
            p->pos++;
            break;
        }
        return fail_at(p, VAE_ERR_FORMAT, is_obj ? "',' or '}' expected" : "',' or ']' expected");
    }
    return is_obj ? check_duplicates(p, v, open_pos) : VAE_OK;
}

static vae_status parse_literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return fail_at(p, VAE_ERR_FORMAT, "invalid literal");
    p->pos += n;
    return VAE_OK;
}

static vae_status parse_value(parser *p, json_strict_value *v, int depth) {
    skip_ws(p);
    if (++p->values > p->max_values) {
        util_set_err(p->err, p->errlen, "json: more than %zu values at byte %zu", p->max_values,
                     p->pos);
        return VAE_ERR_TOO_MANY;
    }
    if (p->pos >= p->len) return fail_at(p, VAE_ERR_FORMAT, "value expected");
    char c = p->s[p->pos];
    switch (c) {
    case '{':
    case '[':
        return parse_container(p, v, depth);
    case '"':
        v->type = JSON_STRICT_STRING;
        return parse_string(p, &v->string);
    case 't':
        v->type = JSON_STRICT_BOOL;
        v->boolean = 1;
        return parse_literal(p, "true");
    case 'f':
        v->type = JSON_STRICT_BOOL;
        return parse_literal(p, "false");
    case 'n':
        v->type = JSON_STRICT_NULL;
        return parse_literal(p, "null");
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
        return fail_at(p, VAE_ERR_FORMAT, "unexpected character");
    }
}

vae_status json_strict_parse(const char *text, size_t len, int max_depth, json_strict_value *out,
                             char *err, size_t errlen) {
    return json_strict_parse_budget(text, len, max_depth, JSON_STRICT_MAX_VALUES, out, err,
                                    errlen);
}

vae_status json_strict_parse_budget(const char *text, size_t len, int max_depth,
                                    size_t max_values, json_strict_value *out, char *err,
                                    size_t errlen) {
    if (!out) return VAE_ERR_ARG;
    memset(out, 0, sizeof *out);
    if ((!text && len) || max_depth < 0 || max_values < 1) {
        util_set_err(err, errlen, "json: invalid arguments");
        return VAE_ERR_ARG;
    }
    parser p = {.s = text, .len = len, .max_depth = max_depth, .max_values = max_values,
                .err = err, .errlen = errlen};
    vae_status rc = parse_value(&p, out, 0);
    if (!rc) {
        skip_ws(&p);
        if (p.pos != p.len) rc = fail_at(&p, VAE_ERR_FORMAT, "trailing characters");
    }
    if (rc) json_strict_free(out);
    return rc;
}

const json_strict_value *json_strict_get(const json_strict_value *obj, const char *key) {
    if (!obj || obj->type != JSON_STRICT_OBJECT || !key) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

void json_strict_free(json_strict_value *v) {
    if (!v) return;
    free(v->string);
    for (size_t i = 0; i < v->n; i++) {
        if (v->items) json_strict_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}
