/* util: the few helpers every layer had its own copy of, as static inline
 * functions (no .c: each is a handful of lines the compiler inlines).
 *
 *     util_set_err(err, errlen, "%s: %s", path, strerror(errno));  // NULL/0 buffer: nothing
 *     double t0 = util_mono_s();                 // seconds on the monotonic clock
 *     uint32_t magic = util_be32(header);        // big-endian, as IDX and PNG store it
 *     o = util_put_be32(o, length);              // writes 4 bytes, returns o + 4
 *
 * Nothing here allocates or keeps state.
 */
#ifndef UTIL_H
#define UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* printf into the caller's message buffer; a NULL buffer or errlen 0 is
 * allowed (the caller did not ask why). Truncates to errlen - 1 bytes. */
static inline void util_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void util_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Seconds on CLOCK_MONOTONIC: for durations and rates, never for dates. */
static inline double util_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The big-endian 32-bit number at p (4 bytes). */
static inline uint32_t util_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Writes v big-endian into p[0..4); returns p + 4. */
static inline uint8_t *util_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

#endif
