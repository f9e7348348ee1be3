/* npy: float32 arrays in NumPy's .npy format, version 1.0.
 *
 *     int shape[4] = {n, C, H, W};
 *     uint8_t *buf; size_t len;
 *     if (npy_encode_f32(x, shape, 4, &buf, &len)) ...   // buf owned by the caller, free()
 *
 * The header is the Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (n, C, H, W), }
 * padded with spaces to a multiple of 64 bytes (with the magic and lengths)
 * and ended by '\n', then the data, little-endian, C order. numpy.load reads
 * it as is.
 *
 *     float *x; int shape[NPY_MAX_DIMS], ndim;           // a client's array
 *     if (npy_decode_f32(body, len, max_floats, &x, shape, &ndim, err, sizeof err)) ...
 *     ... x: prod(shape) floats, the caller's: free() ...
 *
 * Reading takes what numpy.save writes for a float32 array (versions 1.0,
 * 2.0 and 3.0, '<f4', C order) and nothing else; the header is checked
 * whole before a float is read.
 */
#ifndef NPY_H
#define NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef enum {
    NPY_OK = 0,
    NPY_ERR_ARG,
    NPY_ERR_NOMEM,
    NPY_ERR_FORMAT,   /* not a float32 .npy array (err says why) */
    NPY_ERR_TOO_LARGE /* more floats than the caller's limit */
} npy_status;

/* data: prod(shape) floats. */
npy_status npy_encode_f32(const float *data, const int *shape, int ndim, uint8_t **out, size_t *out_len);
/* The float32 array in buf (len bytes) into *out (malloc'd, the caller's),
 * its shape into shape (NPY_MAX_DIMS) and *ndim; at most max_floats values,
 * checked against the header before anything is allocated. */
npy_status npy_decode_f32(const uint8_t *buf, size_t len, size_t max_floats, float **out,
                          int *shape, int *ndim, char *err, size_t errlen);

#endif
