#include "server/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

npy_status npy_encode_f32(const float *data, const int *shape, int ndim, uint8_t **out, size_t *out_len)
{
    if (!out || !out_len || ndim < 1 || ndim > NPY_MAX_DIMS || (!data && ndim))
        return NPY_ERR_ARG;
    *out = NULL;
    *out_len = 0;
    size_t count = 1;
    char dims[NPY_MAX_DIMS * 24] = "";
    size_t used = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return NPY_ERR_ARG;
        count *= (size_t)shape[i];
        /* A one-element tuple needs its trailing comma: (n,) */
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%d%s", shape[i],
                                 ndim == 1 ? "," : (i + 1 < ndim ? ", " : ""));
    }
    char dict[sizeof dims + 128];
    int dict_len = snprintf(dict, sizeof dict,
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    /* magic (6) + version (2) + header length (2) + dict + padding + '\n' */
    size_t head = 10 + (size_t)dict_len + 1;
    size_t padded = (head + 63) / 64 * 64;
    size_t header_len = padded - 10;
    if (header_len > 65535)
        return NPY_ERR_ARG;
    size_t total = padded + count * sizeof(float);
    uint8_t *buf = malloc(total); /* owned: handed to the caller */
    if (!buf)
        return NPY_ERR_NOMEM;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(header_len & 0xff);
    buf[9] = (uint8_t)(header_len >> 8);
    memcpy(buf + 10, dict, (size_t)dict_len);
    memset(buf + 10 + dict_len, ' ', header_len - (size_t)dict_len - 1);
    buf[padded - 1] = '\n';
    /* Floats are stored little-endian whatever the host. */
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &data[i], sizeof bits);
        uint8_t *p = buf + padded + 4 * i;
        p[0] = (uint8_t)bits;
        p[1] = (uint8_t)(bits >> 8);
        p[2] = (uint8_t)(bits >> 16);
        p[3] = (uint8_t)(bits >> 24);
    }
    *out = buf;
    *out_len = total;
    return NPY_OK;
}

/* The value of key in the header dict text (NUL-terminated): where it starts,
 * or NULL. Keys are quoted with ' or ". */
static const char *dict_value(const char *dict, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = dict; (p = strpbrk(p, "'\"")) != NULL; p++) {
        if (!strncmp(p + 1, key, klen) && p[1 + klen] == p[0]) {
            const char *v = p + 2 + klen;
            while (*v == ' ') v++;
            if (*v != ':') return NULL;
            v++;
            while (*v == ' ') v++;
            return v;
        }
    }
    return NULL;
}

npy_status npy_decode_f32(const uint8_t *buf, size_t len, size_t max_floats, float **out,
                          int *shape, int *ndim, char *err, size_t errlen)
{
    *out = NULL;
    *ndim = 0;
#define BAD(...)                                  \
    do {                                          \
        snprintf(err, errlen, __VA_ARGS__);       \
        return NPY_ERR_FORMAT;                    \
    } while (0)
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        BAD("not a .npy file (no \\x93NUMPY magic)");
    int major = buf[6];
    size_t head, hlen;
    if (major == 1) {
        hlen = buf[8] | (size_t)buf[9] << 8;
        head = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) BAD(".npy header is cut short");
        hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        head = 12;
    } else {
        BAD(".npy version %d.%d is not one this server reads (1.0, 2.0, 3.0)", major, buf[7]);
    }
    if (hlen > 65536 || head + hlen > len)
        BAD(".npy header of %zu bytes does not fit the body", hlen);
    char dict[65537];
    memcpy(dict, buf + head, hlen);
    dict[hlen] = '\0';
    const char *descr = dict_value(dict, "descr"), *fortran = dict_value(dict, "fortran_order");
    const char *sh = dict_value(dict, "shape");
    if (!descr || !fortran || !sh) BAD(".npy header lacks descr, fortran_order or shape");
    if (strncmp(descr + 1, "<f4", 3) != 0 || descr[4] != descr[0])
        BAD(".npy array must be float32 ('<f4'), not %.12s", descr);
    if (strncmp(fortran, "False", 5) != 0)
        BAD(".npy array must be in C order (fortran_order False)");
    if (*sh != '(') BAD(".npy shape is not a tuple");
    size_t count = 1;
    const char *p = sh + 1;
    for (;;) {
        while (*p == ' ') p++;
        if (*p == ')') break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 1L << 30 || *ndim == NPY_MAX_DIMS)
            BAD(".npy shape is not a tuple of at most %d sizes", NPY_MAX_DIMS);
        shape[(*ndim)++] = (int)v;
        count *= (size_t)v;
        if (count > max_floats) {
            snprintf(err, errlen, ".npy array holds more than %zu values", max_floats);
            return NPY_ERR_TOO_LARGE;
        }
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p != ')') BAD(".npy shape is not a tuple of sizes");
    }
    if (len - head - hlen != count * sizeof(float))
        BAD(".npy data is %zu bytes; its shape needs %zu", len - head - hlen,
            count * sizeof(float));
#undef BAD
    float *x = malloc(count ? count * sizeof(float) : 1); /* owned: handed to the caller */
    if (!x) return NPY_ERR_NOMEM;
    const uint8_t *d = buf + head + hlen;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits = d[4 * i] | (uint32_t)d[4 * i + 1] << 8 | (uint32_t)d[4 * i + 2] << 16 |
                        (uint32_t)d[4 * i + 3] << 24;
        memcpy(&x[i], &bits, sizeof bits);
    }
    *out = x;
    return NPY_OK;
}
