/* json_strict: a small strict JSON reader (RFC 8259), for the safetensors
 * header and the model config kept in a checkpoint's metadata; the engine
 * links no JSON library.
 *
 *     json_strict_value root;                              // filled by the parse
 *     if (json_strict_parse(text, len, 8, &root, err, sizeof err)) ...  // err: byte offset, why
 *     const json_strict_value *v = json_strict_get(&root, "latent");
 *     if (v && v->type == JSON_STRICT_NUMBER && v->is_integer) ... v->integer ...
 *     json_strict_free(&root);                             // frees the whole tree
 *
 * Strict means: one value with nothing but whitespace after it, no trailing
 * commas, comments, NaN or Infinity, numbers that fit a double, strings of
 * valid UTF-8 with no control characters, paired surrogates and no NUL
 * (escaped or not), no duplicate keys in an object, and containers nested at
 * most max_depth deep (the outermost is depth 1), so a hostile header cannot
 * exhaust the stack. At most JSON_STRICT_MAX_VALUES values (each costs a
 * node of about 64 bytes; json_strict_parse_budget takes another bound), so
 * a long array cannot cost gigabytes: the parse stops at the first value
 * over. The text need not be NUL-terminated: exactly len bytes are read.
 *
 * The caller owns the tree: every string, item and key array hangs off the
 * root and json_strict_free releases them all; pointers from json_strict_get
 * point into it and are valid until then.
 */
#ifndef JSON_STRICT_H
#define JSON_STRICT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae_status.h"

typedef enum {
    JSON_STRICT_NULL,
    JSON_STRICT_BOOL,
    JSON_STRICT_NUMBER,
    JSON_STRICT_STRING,
    JSON_STRICT_ARRAY,
    JSON_STRICT_OBJECT
} json_strict_type;

typedef struct json_strict_value {
    json_strict_type type;
    int boolean;
    double number;
    int is_integer;                  /* number written without fraction or exponent */
    int64_t integer;                 /* exact value when is_integer (|v| < 2^63) */
    char *string;                    /* owned, NUL-terminated (JSON_STRICT_STRING) */
    size_t n;                        /* items / members */
    struct json_strict_value *items; /* owned; array items or object values */
    char **keys;                     /* owned; object keys, parallel to items */
} json_strict_value;

/* Values one parse builds at most (a safetensors header of 64 tensors needs
 * about 700). */
#define JSON_STRICT_MAX_VALUES 65536

/* Parses text[0..len) into *out. VAE_ERR_FORMAT with err giving the byte offset
 * and why, VAE_ERR_TOO_MANY past JSON_STRICT_MAX_VALUES values (a budget, not
 * a malformed text: a caller may count it apart), VAE_ERR_NOMEM, VAE_ERR_ARG;
 * on failure *out is a JSON_STRICT_NULL holding nothing. */
vae_status json_strict_parse(const char *text, size_t len, int max_depth, json_strict_value *out,
                             char *err, size_t errlen);
/* The same with at most max_values values (> 0). */
vae_status json_strict_parse_budget(const char *text, size_t len, int max_depth,
                                    size_t max_values, json_strict_value *out, char *err,
                                    size_t errlen);
/* The member key of obj, or NULL when obj is not an object or has no such key. */
const json_strict_value *json_strict_get(const json_strict_value *obj, const char *key);
/* Frees what v holds and zeroes it (safe to call twice). */
void json_strict_free(json_strict_value *v);
/* 1 when s (NUL-terminated) is valid UTF-8 as JSON strings must be: no
 * overlong forms, surrogates or code points above U+10FFFF. */
int json_strict_utf8_valid(const char *s);

#endif
