/* json_num: floats as JSON numbers, the way printf("%.9g") writes them.
 *
 *     char buf[JSON_NUM_FLOAT_MAX];
 *     size_t n = json_num_float(buf, 0.1f);   // "0.100000001", n = 11
 *
 * Nine significant digits bring every float back exactly when parsed. The
 * responses of /encode, /decode and /sample hold up to hundreds of thousands
 * of them, and glibc's printf spends about 0.2 us on each (multi-precision
 * arithmetic for any double); here a float's 24-bit mantissa times a power
 * of ten fits in 128-bit integers, so the same correctly rounded digits come
 * from a few multiplications. The output is byte-identical to "%.9g" (the
 * tests compare both on millions of floats); non-finite values, which JSON
 * cannot hold, and the rare exponents the fast path does not cover go
 * through snprintf.
 */
#ifndef JSON_NUM_H
#define JSON_NUM_H

#include <stddef.h>

#define JSON_NUM_FLOAT_MAX 24

/* Writes v as "%.9g" would, NUL-terminated, into buf (JSON_NUM_FLOAT_MAX
 * bytes); returns the length. */
size_t json_num_float(char *buf, float v);

#endif
