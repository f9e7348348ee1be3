/* image: PNG grids, written by hand and read with libpng. See image.h.
 *
 * libpng reports errors by longjmp. Each libpng call sequence runs in a small
 * *_inner function that holds the setjmp; everything it allocates hangs off a
 * context owned by the caller, so after a longjmp no local variable with an
 * indeterminate value is used and the caller frees everything in one place. */
#include "engine/image.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "engine/deflate.h"
#include "engine/file_io.h"
#include "engine/util.h"

/* Images larger than this are refused when decoding. */
#define IMAGE_MAX_DECODE_SIDE 4096
/* The largest chunk libpng may allocate while reading: the only chunks kept
 * are PLTE (768 bytes) and tRNS (256), and IDAT is read in pieces of 8 KiB. */
#define IMAGE_MAX_CHUNK_ALLOC ((png_alloc_size_t)1 << 20)

typedef struct {
    png_structp png;
    png_infop info;
    int nomem;
    char msg[256];
    char warning[256]; /* the last one: libpng often warns with the detail, then fails */
    const uint8_t *in;
    size_t in_len, in_pos;
    uint8_t *pixels;  /* owned: decoded rows, interleaved */
    png_bytep *rows;  /* owned: pointers into pixels */
    uint32_t width, height;
    int channels, bit_depth;
} image_png_ctx;

static void image_png_error(png_structp png, png_const_charp msg) {
    image_png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (e.g. a damaged ancillary chunk) do not stop decoding; the last
 * one is kept to explain a later error. */
static void image_png_warning(png_structp png, png_const_charp msg) {
    image_png_ctx *c = png_get_error_ptr(png);
    snprintf(c->warning, sizeof c->warning, "%s", msg);
}

/* v in [0, 1] to 0..255, rounded to nearest (ties to even, as lrintf);
 * NaN and below 0 give 0. Branch-free so that GCC vectorises the loops. */
static inline uint8_t quantize(float v) {
    float t = v * 255.0f;
    t = t > 0.0f ? t : 0.0f; /* also NaN */
    t = t < 255.0f ? t : 255.0f;
    return (uint8_t)(int)rintf(t);
}

static void quantize_run(uint8_t *restrict dst, const float *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = quantize(src[i]);
}

/* One chunk: length, type, data (already at o + 8), CRC of type and data. */
static uint8_t *put_chunk(uint8_t *o, const char type[4], size_t len) {
    util_put_be32(o, (uint32_t)len);
    memcpy(o + 4, type, 4);
    uint32_t crc = (uint32_t)crc32_z(crc32(0L, Z_NULL, 0), o + 4, 4 + len);
    return util_put_be32(o + 8 + len, crc);
}

/* PNG is written here rather than by libpng: the image data is one zlib
 * stream from deflate_literals (see deflate.h for why), in chunks whose
 * framing is a few lines. Rows use the Sub filter, which turns the smooth
 * grey levels of decoded images into small, Huffman-friendly differences. */
vae_status image_encode_grid_png(const float *images, int n, int channels, int height, int width,
                                 int cols, uint8_t **out, size_t *out_len, char *err,
                                 size_t errlen) {
    return image_encode_grid_png_scaled(images, n, channels, height, width, cols, 1, out, out_len,
                                        err, errlen);
}

/* The columns of a grid of n asked for with cols (<= 0: ceil(sqrt(n))). */
static int grid_cols(int n, int cols)
{
    if (cols > 0)
        return cols;
    long long c = 1;
    while (c * c < n) c++;
    return (int)c;
}

vae_status image_grid_fits(int n, int height, int width, int cols, int scale, char *err,
                           size_t errlen)
{
    cols = grid_cols(n, cols);
    long long grid_rows = (n + (long long)cols - 1) / cols;
    long long gw = (long long)cols * width * scale, gh = grid_rows * height * scale;
    if (gw > IMAGE_MAX_ENCODE_SIDE || gh > IMAGE_MAX_ENCODE_SIDE) {
        util_set_err(err, errlen, "png: grid of %lldx%lld pixels exceeds %d per side", gh, gw,
                IMAGE_MAX_ENCODE_SIDE);
        return VAE_ERR_ARG;
    }
    return VAE_OK;
}

vae_status image_encode_grid_png_scaled(const float *images, int n, int channels, int height,
                                        int width, int cols, int scale, uint8_t **out,
                                        size_t *out_len, char *err, size_t errlen) {
    if (!out || !out_len || !images || n < 1 || (channels != 1 && channels != 3) || height < 1 ||
        width < 1 || scale < 1 || scale > IMAGE_MAX_SCALE) {
        util_set_err(err, errlen, "png: invalid arguments (n=%d channels=%d %dx%d scale=%d)", n,
                channels, height, width, scale);
        return VAE_ERR_ARG;
    }
    *out = NULL;
    *out_len = 0;
    vae_status rc = image_grid_fits(n, height, width, cols, scale, err, errlen);
    if (rc != VAE_OK)
        return rc;
    cols = grid_cols(n, cols);
    long long grid_rows = (n + (long long)cols - 1) / cols;
    size_t W = (size_t)cols * (size_t)width * (size_t)scale;
    size_t H = (size_t)grid_rows * (size_t)height * (size_t)scale;
    size_t C = (size_t)channels, K = (size_t)scale;
    size_t plane = (size_t)height * (size_t)width, stride = 1 + W * C;

    /* The filtered rows: a filter byte, then the pixels' differences. */
    uint8_t *raw = calloc(H * stride, 1); /* owned; unused cells stay black */
    size_t zcap = raw ? deflate_literals_bound(H * stride) : 0;
    uint8_t *png = raw ? malloc(8 + 25 + 12 + zcap + 12) : NULL; /* owned until handed over */
    if (!raw || !png) {
        free(raw);
        free(png);
        util_set_err(err, errlen, "png: out of memory");
        return VAE_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        const float *img = images + (size_t)i * C * plane;
        size_t x0 = (size_t)(i % cols) * (size_t)width * K;
        size_t y0 = (size_t)(i / cols) * (size_t)height * K;
        for (size_t ch = 0; ch < C; ch++)
            for (size_t y = 0; y < (size_t)height; y++) {
                uint8_t *row = raw + (y0 + y * K) * stride + 1;
                const float *src = img + ch * plane + y * (size_t)width;
                if (C == 1 && K == 1)
                    quantize_run(row + x0, src, (size_t)width);
                else
                    for (size_t x = 0; x < (size_t)width; x++) {
                        uint8_t v = quantize(src[x]);
                        for (size_t k = 0; k < K; k++) row[(x0 + x * K + k) * C + ch] = v;
                    }
                /* nearest neighbour: the row K times (its filter byte is set below) */
                for (size_t k = 1; k < K; k++)
                    memcpy(row + k * stride + x0 * C, row + x0 * C, (size_t)width * K * C);
            }
    }
    for (size_t y = 0; y < H; y++) {
        uint8_t *row = raw + y * stride;
        row[0] = 1; /* Sub: each byte minus the one a pixel to its left */
        for (size_t x = W * C; x > C; x--) row[x] = (uint8_t)(row[x] - row[x - C]);
    }

    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    uint8_t *o = png;
    memcpy(o, signature, 8);
    o += 8;
    uint8_t *d = util_put_be32(util_put_be32(o + 8, (uint32_t)W), (uint32_t)H);
    d[0] = 8;                  /* bits per sample */
    d[1] = channels == 1 ? 0 : 2; /* grey or RGB */
    d[2] = d[3] = d[4] = 0;    /* deflate, adaptive filters, no interlace */
    o = put_chunk(o, "IHDR", 13);
    size_t zlen = deflate_literals(raw, H * stride, o + 8);
    o = put_chunk(o, "IDAT", zlen);
    o = put_chunk(o, "IEND", 0);
    free(raw);
    *out = png;
    *out_len = (size_t)(o - png);
    return VAE_OK;
}

vae_status image_write_grid_png(const char *path, const float *images, int n, int channels,
                                int height, int width, int cols, char *err, size_t errlen) {
    if (!path) {
        util_set_err(err, errlen, "png: no path");
        return VAE_ERR_ARG;
    }
    uint8_t *png = NULL; /* owned here */
    size_t len = 0;
    vae_status rc = image_encode_grid_png(images, n, channels, height, width, cols, &png, &len,
                                          err, errlen);
    if (rc) return rc;
    rc = file_io_write_atomic(path, png, len, err, errlen);
    free(png);
    return rc;
}

static void image_read_cb(png_structp png, png_bytep data, size_t len) {
    image_png_ctx *c = png_get_io_ptr(png);
    if (len > c->in_len - c->in_pos) png_error(png, "truncated PNG data");
    memcpy(data, c->in + c->in_pos, len);
    c->in_pos += len;
}

static int decode_inner(image_png_ctx *c) {
    if (setjmp(png_jmpbuf(c->png))) return 1;
    png_set_read_fn(c->png, c, image_read_cb);
    png_set_user_limits(c->png, IMAGE_MAX_DECODE_SIDE, IMAGE_MAX_DECODE_SIDE);
    /* Every chunk but IHDR, PLTE, tRNS, IDAT and IEND is skipped unread
     * (only its CRC is checked): text, ICC profiles and unknown chunks are
     * never inflated or kept, so a body of a thousand compressed text chunks
     * costs its length in CRC work and no memory. */
    png_set_keep_unknown_chunks(c->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_set_chunk_cache_max(c->png, 16);
    png_set_chunk_malloc_max(c->png, IMAGE_MAX_CHUNK_ALLOC);
    png_read_info(c->png, c->info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    if (w == 0 || h == 0 || w > IMAGE_MAX_DECODE_SIDE || h > IMAGE_MAX_DECODE_SIDE)
        png_error(c->png, "image size out of range");
    /* Everything becomes 8- or 16-bit grey or RGB, alpha dropped. 16-bit
     * samples are kept for precision. A palette's tRNS is dropped too:
     * png_set_palette_to_rgb expands it into an alpha channel. */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(c->png, c->info, PNG_INFO_tRNS))
        png_set_strip_alpha(c->png);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);

    c->width = w;
    c->height = h;
    c->channels = png_get_channels(c->png, c->info);
    c->bit_depth = png_get_bit_depth(c->png, c->info);
    if ((c->channels != 1 && c->channels != 3) || (c->bit_depth != 8 && c->bit_depth != 16))
        png_error(c->png, "unsupported pixel layout after conversion");
    size_t rowbytes = png_get_rowbytes(c->png, c->info);
    if (rowbytes != (size_t)w * (size_t)c->channels * (size_t)(c->bit_depth / 8))
        png_error(c->png, "unexpected row size");
    c->pixels = malloc((size_t)h * rowbytes);
    c->rows = malloc((size_t)h * sizeof *c->rows);
    if (!c->pixels || !c->rows) {
        c->nomem = 1;
        png_error(c->png, "out of memory");
    }
    for (size_t y = 0; y < h; y++) c->rows[y] = c->pixels + y * rowbytes;
    png_read_image(c->png, c->rows);
    png_read_end(c->png, NULL);
    return 0;
}

vae_status image_png_size(const uint8_t *png, size_t len, int *height, int *width, char *err,
                          size_t errlen) {
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    *height = *width = 0;
    /* signature, then the IHDR chunk: length 13, "IHDR", width, height */
    if (!png || len < 8 + 8 + 13 + 4 || memcmp(png, signature, 8) != 0 ||
        util_be32(png + 8) != 13 || memcmp(png + 12, "IHDR", 4) != 0) {
        util_set_err(err, errlen, "png: not a PNG image starting with its IHDR chunk (%zu bytes)",
                     len);
        return VAE_ERR_FORMAT;
    }
    uint32_t w = util_be32(png + 16), h = util_be32(png + 20);
    if (w == 0 || h == 0 || w > IMAGE_MAX_DECODE_SIDE || h > IMAGE_MAX_DECODE_SIDE) {
        util_set_err(err, errlen, "png: the image declares %ux%u pixels (at most %d a side)",
                     (unsigned)w, (unsigned)h, IMAGE_MAX_DECODE_SIDE);
        return VAE_ERR_FORMAT;
    }
    *width = (int)w;
    *height = (int)h;
    return VAE_OK;
}

vae_status image_decode_png(const uint8_t *png, size_t len, int want_channels, float **out,
                            int *height, int *width, char *err, size_t errlen) {
    if (!out || !height || !width || (want_channels != 1 && want_channels != 3) ||
        (!png && len)) {
        util_set_err(err, errlen, "png: invalid arguments");
        return VAE_ERR_ARG;
    }
    *out = NULL;
    *height = *width = 0;
    if (len < 8 || png_sig_cmp(png, 0, 8) != 0) {
        util_set_err(err, errlen, "png: not a PNG image (%zu bytes, bad signature)", len);
        return VAE_ERR_FORMAT;
    }

    image_png_ctx c = {0};
    c.in = png;
    c.in_len = len;
    vae_status rc = VAE_OK;
    c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, image_png_error, image_png_warning);
    if (c.png) c.info = png_create_info_struct(c.png);
    if (!c.png || !c.info) {
        util_set_err(err, errlen, "png: out of memory");
        rc = VAE_ERR_NOMEM;
    } else if (decode_inner(&c)) {
        util_set_err(err, errlen, "png: cannot decode: %s%s%s%s", c.msg, c.warning[0] ? " (" : "",
                c.warning, c.warning[0] ? ")" : "");
        rc = c.nomem ? VAE_ERR_NOMEM : VAE_ERR_FORMAT;
    }
    png_destroy_read_struct(c.png ? &c.png : NULL, c.info ? &c.info : NULL, NULL);

    if (!rc) {
        size_t plane = (size_t)c.width * c.height;
        float *f = malloc(plane * (size_t)want_channels * sizeof *f); /* owned: handed to *out */
        if (!f) {
            util_set_err(err, errlen, "png: out of memory");
            rc = VAE_ERR_NOMEM;
        } else {
            int wide = c.bit_depth == 16;
            float full = wide ? 65535.0f : 255.0f;
            for (size_t i = 0; i < plane; i++) {
                float s[3];
                for (int ch = 0; ch < c.channels; ch++) {
                    const uint8_t *p = c.pixels + (i * (size_t)c.channels + (size_t)ch) * (wide ? 2 : 1);
                    unsigned v = wide ? (unsigned)p[0] << 8 | p[1] : p[0]; /* PNG is big-endian */
                    s[ch] = (float)v / full;
                }
                if (c.channels == 1) s[1] = s[2] = s[0];
                if (want_channels == 1) {
                    /* The weights sum to 1 but rounding can push white above it. */
                    float y = 0.299f * s[0] + 0.587f * s[1] + 0.114f * s[2];
                    f[i] = c.channels == 1 ? s[0] : fminf(y, 1.0f);
                } else {
                    for (int ch = 0; ch < 3; ch++) f[(size_t)ch * plane + i] = s[ch];
                }
            }
            *out = f;
            *height = (int)c.height;
            *width = (int)c.width;
        }
    }
    free(c.pixels);
    free(c.rows);
    return rc;
}
