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
