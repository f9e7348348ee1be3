/* image: PNG encoding (by hand, see deflate.h) and decoding (libpng), for
 * grids of images.
 *
 *     uint8_t *png; size_t len;
 *     if (image_encode_grid_png(x, n, 1, 28, 28, 0, &png, &len, err, sizeof err)) ...
 *     ... send or store png[0..len) ...; free(png);          // the caller's
 *     float *pixels; int h, w;
 *     if (image_decode_png(png, len, 1, &pixels, &h, &w, err, sizeof err)) ...
 *     ... pixels: (1, h, w) in [0, 1] ...; free(pixels);     // the caller's
 *
 * Images are float (C, H, W) planar with values in [0, 1]; C is 1 (grey) or
 * 3 (RGB). Values outside [0, 1] are clamped; NaN becomes 0. Decoding refuses
 * images over 4096 pixels a side, encoding grids over 16384.
 *
 * PNG input is untrusted: a caller that knows the size it wants reads it
 * with image_png_size (the IHDR chunk only, no libpng) and refuses another
 * before paying for a decode. Decoding skips every ancillary chunk (text,
 * ICC profiles, unknown chunks: only their CRC is checked), so their number
 * or compression costs nothing but their length.
 */
#ifndef IMAGE_H
#define IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/vae_status.h"

/* Tiles n images into rows of cols (cols <= 0: ceil(sqrt(n))), no padding,
 * unused cells black, and encodes an 8-bit grey or RGB PNG into *out
 * (owned by the caller, free()). */
vae_status image_encode_grid_png(const float *images, int n, int channels, int height, int width,
                                 int cols, uint8_t **out, size_t *out_len, char *err,
                                 size_t errlen);
/* The same with every pixel drawn as a scale x scale block (nearest
 * neighbour; 1 <= scale <= IMAGE_MAX_SCALE), so a 28-pixel digit is readable
 * in a page: the grid is scale times as wide and high. */
#define IMAGE_MAX_SCALE 8
vae_status image_encode_grid_png_scaled(const float *images, int n, int channels, int height,
                                        int width, int cols, int scale, uint8_t **out,
                                        size_t *out_len, char *err, size_t errlen);
/* Whether n images of height x width, cols to a row (as above), each pixel
 * a scale x scale block, fit in one grid: VAE_OK, or VAE_ERR_ARG with why
 * when a side would pass IMAGE_MAX_ENCODE_SIDE pixels. The encoders apply
 * the same rule; a caller checks it before it computes the images. */
#define IMAGE_MAX_ENCODE_SIDE 16384
vae_status image_grid_fits(int n, int height, int width, int cols, int scale, char *err,
                           size_t errlen);
/* The same, written to path atomically (engine/file_io). */
vae_status image_write_grid_png(const char *path, const float *images, int n, int channels,
                                int height, int width, int cols, char *err, size_t errlen);
/* The width and height the IHDR chunk of png declares: VAE_ERR_FORMAT when
 * png does not start with a PNG signature and an IHDR chunk, or declares a
 * zero size or one over 4096 a side. Reads 24 bytes; nothing is decoded. */
vae_status image_png_size(const uint8_t *png, size_t len, int *height, int *width, char *err,
                          size_t errlen);
/* Decodes one PNG (grey, grey+alpha, RGB, RGBA or palette, any bit depth) into
 * want_channels (1 or 3) planar floats: *out owned by the caller (free()).
 * Alpha is dropped; RGB to grey uses ITU-R BT.601 luma. */
vae_status image_decode_png(const uint8_t *png, size_t len, int want_channels, float **out,
                            int *height, int *width, char *err, size_t errlen);

#endif
