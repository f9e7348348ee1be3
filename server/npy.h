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
 */
#ifndef NPY_H
#define NPY_H

#include <stddef.h>
#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef enum { NPY_OK = 0, NPY_ERR_ARG, NPY_ERR_NOMEM } npy_status;

/* data: prod(shape) floats. */
npy_status npy_encode_f32(const float *data, const int *shape, int ndim, uint8_t **out, size_t *out_len);

#endif
