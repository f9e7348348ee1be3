/* sha256: SHA-256 (FIPS 180-4) as lower-case hex, at once or in pieces.
 *
 *     char hex[65];
 *     sha256_hex(blob, len, hex);                 // the whole buffer
 *
 *     sha256_ctx c;
 *     sha256_init(&c);
 *     sha256_update(&c, piece, n);                // as the bytes arrive
 *     sha256_final_hex(&c, hex);
 *
 * The registry keys checkpoint bytes by it, the ETags of the daemon are built
 * from it, and `vaed pull` checks downloads with it. No allocation; a
 * context is the caller's and is used by one thread at a time.
 */
#ifndef SHA256_H
#define SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;     /* bytes hashed so far */
    uint8_t buf[64];  /* a partial block */
    size_t used;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const uint8_t *data, size_t len);
/* Writes the digest (64 hex digits and a NUL); c must be initialised again
 * before another use. */
void sha256_final_hex(sha256_ctx *c, char out[65]);
void sha256_hex(const uint8_t *data, size_t len, char out[65]);

#endif
