/* deflate: literal-only zlib streams. See deflate.h. */
#include "engine/deflate.h"

#include <string.h>
#include <zlib.h>

enum { NLIT = 257, EOB = 256, NCL = 19, MAX_BITS = 15, MAX_CL_BITS = 7 };

/* The order in which the code-length code's lengths are sent (RFC 1951 3.2.7). */
static const uint8_t cl_order[NCL] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

size_t deflate_literals_bound(size_t n)
{
    /* zlib header and Adler-32, and stored blocks of 65535 bytes with 5
     * bytes of header each: the Huffman block is used only when smaller;
     * and 8 bytes that its last 8-byte store may overrun. */
    return 2 + 4 + n + 5 * (n / 65535 + 1) + 8;
}

/* Shell sort of the (frequency << 16 | symbol) keys: at most 257 of them. */
static void sort_keys(uint64_t *k, int n)
{
    static const int gaps[] = {132, 57, 23, 10, 4, 1};
    for (size_t g = 0; g < sizeof gaps / sizeof *gaps; g++)
        for (int i = gaps[g]; i < n; i++) {
            uint64_t v = k[i];
            int j = i;
            for (; j >= gaps[g] && k[j - gaps[g]] > v; j -= gaps[g]) k[j] = k[j - gaps[g]];
            k[j] = v;
        }
}

/* Huffman code lengths, none above max_bits, for the nsym symbols (at least
 * two with a nonzero frequency). When the tree is too deep, the frequencies
 * are halved (a used symbol stays used) and the tree rebuilt: the code stays
 * complete, as inflate requires, at a negligible cost in size. */
static void huffman_lengths(const uint32_t *freq_in, int nsym, int max_bits, uint8_t *len)
{
    uint32_t freq[NLIT];
    uint64_t key[NLIT], weight[2 * NLIT];
    int parent[2 * NLIT], depth[2 * NLIT];
    for (int s = 0; s < nsym; s++) freq[s] = freq_in[s];
    for (;;) {
        int n = 0;
        for (int s = 0; s < nsym; s++) {
            len[s] = 0;
            if (freq[s]) key[n++] = (uint64_t)freq[s] << 16 | (uint64_t)s;
        }
        sort_keys(key, n);
        /* Two queues: leaves in weight order, and internal nodes, which are
         * made in weight order too; a node's parent has a higher index. */
        for (int i = 0; i < n; i++) weight[i] = key[i] >> 16;
        int leaf = 0, inner = n, next = n;
        for (int k = 0; k < n - 1; k++) {
            int ab[2];
            for (int t = 0; t < 2; t++)
                ab[t] = leaf < n && (inner >= next || weight[leaf] <= weight[inner]) ? leaf++
                                                                                     : inner++;
            weight[next] = weight[ab[0]] + weight[ab[1]];
            parent[ab[0]] = parent[ab[1]] = next++;
        }
        depth[next - 1] = 0;
        int deepest = 0;
        for (int i = next - 2; i >= 0; i--) {
            depth[i] = depth[parent[i]] + 1;
            if (i < n && depth[i] > deepest)
                deepest = depth[i];
        }
        if (deepest <= max_bits) {
            for (int i = 0; i < n; i++) len[key[i] & 0xFFFF] = (uint8_t)depth[i];
            return;
        }
        for (int s = 0; s < nsym; s++) freq[s] = (freq[s] + 1) / 2;
    }
}

/* Canonical codes (RFC 1951 3.2.2), bit-reversed: deflate sends a Huffman
 * code from its first bit, into a stream packed from the low bit up. */
static void canonical_codes(const uint8_t *len, int nsym, uint16_t *code)
{
    int count[MAX_BITS + 1] = {0}, next[MAX_BITS + 1];
    for (int s = 0; s < nsym; s++) count[len[s]]++;
    count[0] = 0;
    for (int b = 1, c = 0; b <= MAX_BITS; b++) {
        c = (c + count[b - 1]) << 1;
        next[b] = c;
    }
    for (int s = 0; s < nsym; s++) {
        if (!len[s]) {
            code[s] = 0;
            continue;
        }
        unsigned c = (unsigned)next[len[s]]++, r = 0;
        for (int b = 0; b < len[s]; b++) r |= ((c >> b) & 1u) << (len[s] - 1 - b);
        code[s] = (uint16_t)r;
    }
}

/* At least two used symbols, so that the code is a tree (the extra symbol
 * gets a code that is never sent). */
static void ensure_two(uint32_t *freq, int nsym)
{
    int used = 0;
    for (int s = 0; s < nsym; s++) used += freq[s] != 0;
    for (int s = 0; used < 2 && s < nsym; s++)
        if (!freq[s]) {
            freq[s] = 1;
            used++;
        }
}

typedef struct {
    uint8_t *out;
    uint64_t bits;
    int count;
} bit_writer;

static inline void put_bits(bit_writer *w, uint32_t v, int n)
{
    w->bits |= (uint64_t)v << w->count;
    w->count += n;
    if (w->count >= 32) {
        uint32_t low = (uint32_t)w->bits;
        for (int i = 0; i < 4; i++) w->out[i] = (uint8_t)(low >> (8 * i));
        w->out += 4;
        w->bits >>= 32;
        w->count -= 32;
    }
}

/* Writes the pending whole bytes, leaving 0 to 7 bits pending. */
static void flush_bits_to_byte(bit_writer *w)
{
    while (w->count >= 8) {
        *w->out++ = (uint8_t)w->bits;
        w->bits >>= 8;
        w->count -= 8;
    }
}

/* Writes everything pending, the last byte padded with zero bits. */
static void flush_bits(bit_writer *w)
{
    flush_bits_to_byte(w);
    if (w->count > 0)
        *w->out++ = (uint8_t)w->bits;
    w->bits = 0;
    w->count = 0;
}

static size_t stored_blocks(const uint8_t *in, size_t n, uint8_t *o)
{
    uint8_t *start = o;
    size_t pos = 0;
    do {
        size_t len = n - pos < 65535 ? n - pos : 65535;
        *o++ = pos + len == n; /* BFINAL, BTYPE 00, padding to the byte */
        o[0] = (uint8_t)len;
        o[1] = (uint8_t)(len >> 8);
        o[2] = (uint8_t)~len;
        o[3] = (uint8_t)(~len >> 8);
        o += 4;
        if (len)
            memcpy(o, in + pos, len);
        o += len;
        pos += len;
    } while (pos < n);
    return (size_t)(o - start);
}

size_t deflate_literals(const uint8_t *in, size_t n, uint8_t *out)
{
    uint8_t *o = out;
    *o++ = 0x78; /* deflate, 32 KiB window */
    *o++ = 0x01; /* fastest; (0x7801 % 31) == 0 */

    /* Four counts per byte value, summed after: filtered rows are mostly
     * one or two values, and a single count would make each increment wait
     * for the previous one to reach memory. */
    uint32_t part[4][256] = {{0}}, freq[NLIT];
    size_t i4 = 0;
    for (; i4 + 4 <= n; i4 += 4) {
        part[0][in[i4]]++;
        part[1][in[i4 + 1]]++;
        part[2][in[i4 + 2]]++;
        part[3][in[i4 + 3]]++;
    }
    for (; i4 < n; i4++) part[0][in[i4]]++;
    for (int s = 0; s < 256; s++) freq[s] = part[0][s] + part[1][s] + part[2][s] + part[3][s];
    freq[EOB] = 1;
    ensure_two(freq, NLIT);
    uint8_t len[NLIT];
    uint16_t code[NLIT];
    huffman_lengths(freq, NLIT, MAX_BITS, len);
    canonical_codes(len, NLIT, code);

    /* The lengths sent: the 257 literal/end codes, then one distance code of
     * one bit (a lone one-bit distance code is the one incomplete code
     * inflate accepts; no distance is ever used). */
    uint8_t lens[NLIT + 1];
    memcpy(lens, len, NLIT);
    lens[NLIT] = 1;
    uint32_t cl_freq[NCL] = {0};
    for (int i = 0; i < NLIT + 1; i++) cl_freq[lens[i]]++;
    ensure_two(cl_freq, NCL);
    uint8_t cl_len[NCL];
    uint16_t cl_code[NCL];
    huffman_lengths(cl_freq, NCL, MAX_CL_BITS, cl_len);
    canonical_codes(cl_len, NCL, cl_code);
    int hclen = NCL;
    while (hclen > 4 && !cl_len[cl_order[hclen - 1]]) hclen--;

    /* Huffman only where it is smaller than storing. */
    uint64_t bits = 3 + 5 + 5 + 4 + 3 * (uint64_t)hclen;
    for (int i = 0; i < NLIT + 1; i++) bits += cl_len[lens[i]];
    for (int s = 0; s < NLIT; s++) bits += (uint64_t)freq[s] * len[s];
    if ((bits + 7) / 8 >= n + 5 * (n / 65535 + 1)) {
        o += stored_blocks(in, n, o);
    } else {
        bit_writer w = {o, 0, 0};
        put_bits(&w, 1, 1); /* BFINAL */
        put_bits(&w, 2, 2); /* BTYPE 10: dynamic Huffman */
        put_bits(&w, NLIT - 257, 5);
        put_bits(&w, 1 - 1, 5);
        put_bits(&w, (uint32_t)hclen - 4, 4);
        for (int i = 0; i < hclen; i++) put_bits(&w, cl_len[cl_order[i]], 3);
        for (int i = 0; i < NLIT + 1; i++) put_bits(&w, cl_code[lens[i]], cl_len[lens[i]]);
        size_t i = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* The codes without a branch per code (a served grid's codes are
         * too irregular to predict): three codes (at most 45 bits) joined,
         * added above the 0 to 7 pending bits, all 64 bits stored, and the
         * whole bytes passed. A store may run 8 bytes past the stream's end,
         * which the bound allows for. */
        flush_bits_to_byte(&w);
        uint8_t *wo = w.out;
        uint64_t bb = w.bits;
        int bc = w.count;
        for (; i + 3 <= n; i += 3) {
            int l0 = len[in[i]], l1 = len[in[i + 1]];
            uint64_t c3 = (uint64_t)code[in[i]] | (uint64_t)code[in[i + 1]] << l0 |
                          (uint64_t)code[in[i + 2]] << (l0 + l1);
            bb |= c3 << bc;
            bc += l0 + l1 + len[in[i + 2]];
            memcpy(wo, &bb, 8);
            wo += bc >> 3;
            bb >>= bc & ~7; /* bc <= 52 */
            bc &= 7;
        }
        w.out = wo;
        w.bits = bb;
        w.count = bc;
#endif
        for (; i < n; i++) put_bits(&w, code[in[i]], len[in[i]]);
        put_bits(&w, code[EOB], len[EOB]);
        flush_bits(&w);
        o = w.out;
    }
    uint32_t adler = (uint32_t)adler32_z(adler32(0L, Z_NULL, 0), in, n);
    for (int i = 3; i >= 0; i--) *o++ = (uint8_t)(adler >> (8 * i));
    return (size_t)(o - out);
}
