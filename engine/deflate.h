/* deflate: zlib streams (RFC 1950 around RFC 1951) made of literals only,
 * for the PNG images vaed serves.
 *
 *     size_t cap = deflate_literals_bound(n);
 *     uint8_t *z = malloc(cap);                  // the caller's
 *     size_t len = deflate_literals(in, n, z);   // len <= cap, never fails
 *
 * One dynamic-Huffman block with no string matching: on the filtered rows of
 * decoded images (grey levels, little exact repetition) matching gains a few
 * per cent of size and costs most of zlib's time; for the grids a request
 * returns, zlib at level 1 spends about 14x the time of this coder (the
 * figures are in README's performance section). Input that Huffman coding
 * would not shrink goes out as stored blocks. Any inflate (zlib, libpng,
 * browsers) reads the result.
 */
#ifndef DEFLATE_H
#define DEFLATE_H

#include <stddef.h>
#include <stdint.h>

/* The most bytes deflate_literals writes for n bytes of input. */
size_t deflate_literals_bound(size_t n);
/* Compresses in[0..n) into out (deflate_literals_bound(n) bytes) as a zlib
 * stream; returns its length. */
size_t deflate_literals(const uint8_t *in, size_t n, uint8_t *out);

#endif
