/* json_num: floats as JSON numbers, in as few characters as read back.
 *
 *     char buf[JSON_NUM_FLOAT_MAX];
 *     size_t n = json_num_float(buf, 0.1f);           // "0.1", n = 3
 *     n = json_num_float_digits(buf, 0.123456f, 3);   // "0.123"
 *
 *     char *text = malloc(count * JSON_NUM_FLOAT_MAX); // the caller's
 *     size_t len = json_num_floats(text, v, count, 0); // "0.1,2e-7,1"
 *
 * json_num_float writes the shortest decimal that strtof reads back as the
 * same float32 and, among the shortest, the one closest to the float's exact
 * value (ties to an even last digit): "0.1", not "0.100000001". The
 * responses of /encode, /decode and /sample hold up to hundreds of thousands
 * of floats; here the digits come from exact integer arithmetic (the float's
 * 24-bit mantissa times a power of five in 128-bit products, a shift for the
 * power of two), with no printf and no rounding error to reason about. The
 * interval of decimals that read back as v is found first; the one decimal
 * with a digit fewer than the grid 10^k whose step fits the interval is
 * taken if it lies inside, else the nearer of the two grid points around v
 * that does (the idea of Giulietti's "Schubfach", written here). Floats
 * between about 1e-9 and 1, every pixel and most latents, take a path with
 * 64-bit products, one data-dependent branch and whole-word stores: about
 * 25 ns a float, 1.7x the "%.9g"-identical writer this replaced; on CPUs
 * with AVX-512, json_num_floats computes eight of them at a time, about
 * twice as fast again.
 *
 * Notation, the same in every function: a '-' for negative values (and -0),
 * never a '+'; then the shorter of plain decimal ("0.25", "1500", "0.0123")
 * and exponent form ("1.5e-7", "2e20": one digit before the point, 'e', a '-'
 * only for negative exponents, no leading zeros), plain decimal when they are
 * as long. Plain decimal always has a digit before the point ("0.5", never
 * ".5") and never a trailing point or trailing zeros after it. At most 15
 * characters. A value JSON cannot hold (infinity, NaN) is written as null:
 * the endpoints refuse non-finite results with a 422 before writing them, so
 * null only appears where a caller meant it.
 */
#ifndef JSON_NUM_H
#define JSON_NUM_H

#include <stddef.h>

/* Bytes for one float with its NUL (the longest are like "-1.23456789e-20"), and
 * for one float and a separator in json_num_floats. */
#define JSON_NUM_FLOAT_MAX 16

/* The most significant digits a float32 needs to read back exactly. */
#define JSON_NUM_DIGITS_MAX 9

/* Writes v, shortest round trip, NUL-terminated, into buf
 * (JSON_NUM_FLOAT_MAX bytes); returns the length. */
size_t json_num_float(char *buf, float v);

/* Like json_num_float, with at most digits significant digits (1 ..
 * JSON_NUM_DIGITS_MAX; 0 means shortest round trip): the shortest round trip
 * when it has that many or fewer, else v's exact value rounded to digits
 * digits (half to even), trailing zeros dropped. digits = 9 is therefore the
 * same as 0. */
size_t json_num_float_digits(char *buf, float v, int digits);

/* Writes the n floats of v as json_num_float_digits does, separated by
 * commas, into out (n * JSON_NUM_FLOAT_MAX bytes suffice); no brackets, no
 * NUL. Returns the length. */
size_t json_num_floats(char *out, const float *v, size_t n, int digits);

/* The writer of json_num_floats' common case: "avx512" (eight floats
 * at a time) or "scalar", the best the CPU has unless json_num_floats_use
 * named another it has (returns 0 when it has not). All write the same text;
 * the choice is for tests and benchmarks. */
const char *json_num_floats_kernel(void);
int json_num_floats_use(const char *name);

#endif
