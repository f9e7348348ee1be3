/* Unit tests for engine/image.c: grid encoding checked by decoding, RGB and
 * grey round trips, PNGs of other kinds written here with libpng (palette,
 * 16-bit with alpha, interlaced, oversized), broken input, the IHDR size
 * read without decoding, and ancillary chunks that decoding skips. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "engine/image.h"

/* ---- a small libpng writer for fixtures --------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} membuf;

static void mem_write(png_structp png, png_bytep data, size_t len) {
    membuf *m = png_get_io_ptr(png);
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2;
        m->p = realloc(m->p, m->cap);
        if (!m->p) png_error(png, "oom");
    }
    memcpy(m->p + m->len, data, len);
    m->len += len;
}

static void mem_flush(png_structp png) { (void)png; }

/* rows: h rows of raw PNG sample bytes (packed for bit depths < 8). */
static uint8_t *write_fixture(uint32_t w, uint32_t h, int depth, int color, int interlace,
                              const png_color *palette, int n_palette, uint8_t **rows,
                              size_t *len) {
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    assert_non_null(png);
    png_infop info = png_create_info_struct(png);
    assert_non_null(info);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fail_msg("fixture PNG writing failed");
    }
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, w, h, depth, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, n_palette);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *len = m.len;
    return m.p;
}

/* ---- tests --------------------------------------------------------------- */

static float grey_value(int img, int y, int x) { return (float)((img * 31 + y * 7 + x * 3) % 256) / 255.0f; }

static void test_grey_grid_round_trip(void **state) {
    (void)state;
    enum { N = 4, H = 28, W = 28 };
    float *imgs = malloc(N * H * W * sizeof *imgs);
    assert_non_null(imgs);
    for (int i = 0; i < N; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) imgs[(i * H + y) * W + x] = grey_value(i, y, x);
    /* Out of range and NaN are clamped. */
    imgs[0] = -3.0f;
    imgs[1] = 7.0f;
    imgs[2] = NAN;

    uint8_t *png = NULL;
    size_t len = 0;
    char err[256] = "";
    int rc = image_encode_grid_png(imgs, N, 1, H, W, 0, &png, &len, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_true(len > 8);
    assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);

    float *dec = NULL;
    int h = 0, w = 0;
    rc = image_decode_png(png, len, 1, &dec, &h, &w, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(h, 56);
    assert_int_equal(w, 56);
    for (int i = 0; i < N; i++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                float want = imgs[(i * H + y) * W + x];
                if (isnan(want) || want < 0) want = 0;
                if (want > 1) want = 1;
                float got = dec[((i / 2) * H + y) * 56 + (i % 2) * W + x];
                if (fabsf(got - want) > 0.5f / 255.0f + 1e-6f) {
                    print_message("image %d (%d,%d): %f vs %f\n", i, y, x, got, want);
                    fail();
                }
            }
    assert_true(dec[0] == 0.0f && dec[1] == 1.0f && dec[2] == 0.0f);
    free(dec);
    free(png);

    /* Three images in two columns: the fourth cell is black. */
    rc = image_encode_grid_png(imgs, 3, 1, H, W, 2, &png, &len, err, sizeof err);
    assert_int_equal(rc, 0);
    rc = image_decode_png(png, len, 1, &dec, &h, &w, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(h, 56);
    assert_int_equal(w, 56);
    float lit = 0;
    for (int y = 28; y < 56; y++)
        for (int x = 28; x < 56; x++) lit += dec[y * 56 + x];
    assert_true(lit == 0.0f);
    assert_true(fabsf(dec[30 * 56 + 5] - grey_value(2, 2, 5)) < 1e-6f);

    /* Grey decoded as RGB repeats the value in each plane. */
    float *rgb = NULL;
    rc = image_decode_png(png, len, 3, &rgb, &h, &w, err, sizeof err);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 56 * 56; i++) {
        assert_true(rgb[i] == dec[i]);
        assert_true(rgb[56 * 56 + i] == dec[i]);
        assert_true(rgb[2 * 56 * 56 + i] == dec[i]);
    }
    free(rgb);
    free(dec);
    free(png);

    /* One row: more columns than images. */
    rc = image_encode_grid_png(imgs, 2, 1, H, W, 5, &png, &len, err, sizeof err);
    assert_int_equal(rc, 0);
    rc = image_decode_png(png, len, 1, &dec, &h, &w, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(h, 28);
    assert_int_equal(w, 140);
    free(dec);
    free(png);
    free(imgs);
}

static void test_rgb_round_trip(void **state) {
    (void)state;
    enum { N = 3, C = 3, H = 5, W = 4 };
    float imgs[N * C * H * W];
    for (int i = 0; i < N * C * H * W; i++) imgs[i] = (float)((i * 53) % 256) / 255.0f;
    uint8_t *png = NULL;
    size_t len = 0;
    char err[256] = "";
    int rc = image_encode_grid_png(imgs, N, C, H, W, 3, &png, &len, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    float *dec = NULL, *grey = NULL;
    int h, w;
    rc = image_decode_png(png, len, 3, &dec, &h, &w, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(h, H);
    assert_int_equal(w, N * W);
    rc = image_decode_png(png, len, 1, &grey, &h, &w, err, sizeof err);
    assert_int_equal(rc, 0);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float want = imgs[((i * C + c) * H + y) * W + x];
                    float got = dec[(c * H + y) * (N * W) + i * W + x];
                    assert_true(fabsf(got - want) < 1e-6f);
                }
    for (int p = 0; p < H * N * W; p++) {
        float y = 0.299f * dec[p] + 0.587f * dec[H * N * W + p] + 0.114f * dec[2 * H * N * W + p];
        assert_true(fabsf(grey[p] - y) < 1e-5f);
    }
    free(dec);
    free(grey);
    free(png);
}

static void test_palette_and_other_kinds(void **state) {
    (void)state;
    char err[256] = "";
    float *dec = NULL;
    int h, w;
    size_t len;

    /* 2-bit palette, 4x2: indices 0..3 then 3..0. */
    png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {10, 20, 255}};
    uint8_t r0[1] = {0x1b}, r1[1] = {0xe4}; /* 00 01 10 11 / 11 10 01 00 */
    uint8_t *rows[2] = {r0, r1};
    uint8_t *png = write_fixture(4, 2, 2, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, pal, 4,
                                 rows, &len);
    int rc = image_decode_png(png, len, 3, &dec, &h, &w, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(h, 2);
    assert_int_equal(w, 4);
    for (int x = 0; x < 4; x++) {
        const png_color *a = &pal[x], *b = &pal[3 - x];
        assert_true(dec[0 * 8 + x] == a->red / 255.0f);
        assert_true(dec[1 * 8 + x] == a->green / 255.0f);
        assert_true(dec[2 * 8 + x] == a->blue / 255.0f);
        assert_true(dec[0 * 8 + 4 + x] == b->red / 255.0f);
        assert_true(dec[2 * 8 + 4 + x] == b->blue / 255.0f);
    }
    free(dec);
    rc = image_decode_png(png, len, 1, &dec, &h, &w, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_true(fabsf(dec[1] - 0.299f) < 1e-5f);
    assert_true(fabsf(dec[2] - 0.587f) < 1e-5f);
    free(dec);
    free(png);

    /* 16-bit grey + alpha: alpha dropped, full precision kept. */
    uint8_t ga[2 * 4] = {0x12, 0x34, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00};
    uint8_t *grow[1] = {ga};
    png = write_fixture(2, 1, 16, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, NULL, 0, grow,
                        &len);
    rc = image_decode_png(png, len, 1, &dec, &h, &w, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(w, 2);
    assert_true(fabsf(dec[0] - 0x1234 / 65535.0f) < 1e-7f);
    assert_true(dec[1] == 1.0f);
    free(dec);
    free(png);

    /* 1-bit grey, interlaced RGBA. */
    uint8_t bits[1] = {0xa0}; /* 1 0 1 0 */
    uint8_t *brow[1] = {bits};
    png = write_fixture(4, 1, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, NULL, 0, brow, &len);
    rc = image_decode_png(png, len, 1, &dec, &h, &w, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_true(dec[0] == 1.0f && dec[1] == 0.0f && dec[2] == 1.0f && dec[3] == 0.0f);
    free(dec);
    free(png);

    uint8_t rgba[9][9 * 4];
    uint8_t *rrows[9];
    for (int y = 0; y < 9; y++) {
        rrows[y] = rgba[y];
        for (int x = 0; x < 9; x++) {
            rgba[y][x * 4 + 0] = (uint8_t)(y * 20);
            rgba[y][x * 4 + 1] = (uint8_t)(x * 20);
            rgba[y][x * 4 + 2] = 7;
            rgba[y][x * 4 + 3] = (uint8_t)(x * 10);
        }
    }
    png = write_fixture(9, 9, 8, PNG_COLOR_TYPE_RGB_ALPHA, PNG_INTERLACE_ADAM7, NULL, 0, rrows,
                        &len);
    rc = image_decode_png(png, len, 3, &dec, &h, &w, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 9; x++) {
            assert_true(dec[y * 9 + x] == (float)(y * 20) / 255.0f);
            assert_true(dec[81 + y * 9 + x] == (float)(x * 20) / 255.0f);
            assert_true(dec[162 + y * 9 + x] == 7.0f / 255.0f);
        }
    free(dec);
    free(png);

    /* Larger than 4096 on a side. */
    uint8_t *wide = calloc(5000, 1);
    assert_non_null(wide);
    uint8_t *wrow[1] = {wide};
    png = write_fixture(5000, 1, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, NULL, 0, wrow, &len);
    free(wide);
    dec = NULL;
    rc = image_decode_png(png, len, 1, &dec, &h, &w, err, sizeof err);
    assert_int_equal(rc, VAE_ERR_FORMAT);
    assert_null(dec);
    assert_non_null(strstr(err, "limit"));
    free(png);
}

static void expect_decode_error(const uint8_t *buf, size_t len) {
    float *dec = (float *)(uintptr_t)1;
    int h = -1, w = -1;
    char err[256] = "";
    int rc = image_decode_png(buf, len, 1, &dec, &h, &w, err, sizeof err);
    assert_int_equal(rc, VAE_ERR_FORMAT);
    assert_null(dec);
    assert_int_equal(h, 0);
    assert_int_equal(w, 0);
    assert_true(strlen(err) > 0);
}

static void test_broken_input(void **state) {
    (void)state;
    float img[16 * 16];
    for (int i = 0; i < 256; i++) img[i] = (float)i / 255.0f;
    uint8_t *png = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(image_encode_grid_png(img, 1, 1, 16, 16, 1, &png, &len, err, sizeof err), 0);

    /* Every truncation point. */
    for (size_t cut = 0; cut < len; cut++) expect_decode_error(png, cut);
    /* A flipped bit anywhere after the signature is refused: the encoder
     * writes only critical chunks (IHDR, IDAT, IEND), whose CRC, length or
     * type then no longer holds. */
    for (size_t pos = 8; pos < len; pos++) {
        uint8_t *bad = malloc(len);
        assert_non_null(bad);
        memcpy(bad, png, len);
        bad[pos] ^= 0x10;
        float *dec = NULL;
        int h, w;
        int rc = image_decode_png(bad, len, 3, &dec, &h, &w, err, sizeof err);
        if (rc != VAE_ERR_FORMAT)
            fail_msg("a flipped bit at byte %zu of %zu: status %d", pos, len, rc);
        assert_null(dec);
        free(bad);
    }
    free(png);

    uint8_t noise[512];
    unsigned s = 12345;
    for (size_t i = 0; i < sizeof noise; i++) {
        s = s * 1103515245u + 12345u;
        noise[i] = (uint8_t)(s >> 16);
    }
    expect_decode_error(noise, sizeof noise);
    memcpy(noise, "\x89PNG\r\n\x1a\n", 8); /* signature, then garbage */
    expect_decode_error(noise, sizeof noise);
    expect_decode_error(noise, 8);
    expect_decode_error(NULL, 0);

    /* Bad arguments. */
    float *dec;
    int h, w;
    assert_int_equal(image_decode_png(noise, 8, 2, &dec, &h, &w, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(image_encode_grid_png(img, 1, 2, 16, 16, 1, &png, &len, err, sizeof err),
                     VAE_ERR_ARG);
    assert_int_equal(image_encode_grid_png(img, 0, 1, 16, 16, 1, &png, &len, err, sizeof err),
                     VAE_ERR_ARG);
    assert_int_equal(image_encode_grid_png(img, 1, 1, 20000, 16, 1, &png, &len, err, sizeof err),
                     VAE_ERR_ARG);
}


/* ---- hostile PNGs --------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* One chunk (length, type, data, CRC) in a malloc'd buffer of *len bytes. */
static uint8_t *make_chunk(const char type[4], const uint8_t *data, size_t n, size_t *len) {
    uint8_t *c = malloc(12 + n);
    assert_non_null(c);
    put_be32(c, (uint32_t)n);
    memcpy(c + 4, type, 4);
    if (n) memcpy(c + 8, data, n);
    put_be32(c + 8 + n, (uint32_t)crc32(crc32(0L, Z_NULL, 0), c + 4, (uInt)(4 + n)));
    *len = 12 + n;
    return c;
}

/* png with count copies of chunk after its IHDR (malloc'd, *out_len bytes). */
static uint8_t *insert_after_ihdr(const uint8_t *png, size_t len, const uint8_t *chunk,
                                  size_t chunk_len, int count, size_t *out_len) {
    size_t head = 8 + 25; /* signature, IHDR */
    size_t total = len + (size_t)count * chunk_len;
    uint8_t *out = malloc(total);
    assert_non_null(out);
    memcpy(out, png, head);
    for (int i = 0; i < count; i++) memcpy(out + head + (size_t)i * chunk_len, chunk, chunk_len);
    memcpy(out + head + (size_t)count * chunk_len, png + head, len - head);
    *out_len = total;
    return out;
}

static void test_png_size_from_ihdr(void **state) {
    (void)state;
    float img[28 * 28] = {0};
    uint8_t *png = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(image_encode_grid_png(img, 1, 1, 28, 28, 1, &png, &len, err, sizeof err), 0);
    int h = 0, w = 0;
    assert_int_equal(image_png_size(png, len, &h, &w, err, sizeof err), VAE_OK);
    assert_int_equal(h, 28);
    assert_int_equal(w, 28);
    /* The header alone is enough; less is not. */
    assert_int_equal(image_png_size(png, 33, &h, &w, err, sizeof err), VAE_OK);
    assert_int_equal(image_png_size(png, 32, &h, &w, err, sizeof err), VAE_ERR_FORMAT);
    assert_int_equal(h, 0);
    assert_int_equal(image_png_size(NULL, 0, &h, &w, err, sizeof err), VAE_ERR_FORMAT);
    /* A declared size over the decoder's limit, or zero, is refused. */
    uint8_t *big = malloc(len);
    assert_non_null(big);
    memcpy(big, png, len);
    put_be32(big + 16, 4097);
    assert_int_equal(image_png_size(big, len, &h, &w, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "4097"));
    put_be32(big + 16, 4096);
    put_be32(big + 20, 4096);
    assert_int_equal(image_png_size(big, len, &h, &w, err, sizeof err), VAE_OK);
    assert_int_equal(w, 4096);
    put_be32(big + 20, 0);
    assert_int_equal(image_png_size(big, len, &h, &w, err, sizeof err), VAE_ERR_FORMAT);
    /* IHDR must come first. */
    memcpy(big, png, len);
    memcpy(big + 12, "IDAT", 4);
    assert_int_equal(image_png_size(big, len, &h, &w, err, sizeof err), VAE_ERR_FORMAT);
    free(big);
    free(png);
}

/* Text chunks (a thousand zTXt, each inflating to 1 MiB), an ICC profile
 * and unknown ancillary chunks are skipped: the pixels are the image's. */
static void test_ancillary_chunks_skipped(void **state) {
    (void)state;
    float img[28 * 28];
    for (int i = 0; i < 28 * 28; i++) img[i] = (float)(i % 256) / 255.0f;
    uint8_t *png = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(image_encode_grid_png(img, 1, 1, 28, 28, 1, &png, &len, err, sizeof err), 0);

    size_t plain = (size_t)1 << 20;
    uint8_t *zeros = calloc(plain, 1);
    uLongf zlen = compressBound((uLong)plain);
    uint8_t *data = malloc(4 + 2 + zlen); /* keyword "bomb", NUL, method 0, stream */
    assert_non_null(zeros);
    assert_non_null(data);
    memcpy(data, "bomb", 5);
    data[5] = 0;
    assert_int_equal(compress2(data + 6, &zlen, zeros, (uLong)plain, 9), Z_OK);
    size_t ztxt_len, iccp_len, unknown_len;
    uint8_t *ztxt = make_chunk("zTXt", data, 6 + zlen, &ztxt_len);
    memcpy(data, "icc", 4); /* name, NUL, method, stream */
    data[4] = 0;
    uint8_t *iccp = make_chunk("iCCP", data, 5, &iccp_len); /* damaged: never read */
    uint8_t *unknown = make_chunk("vaEd", zeros, 4096, &unknown_len);
    free(zeros);
    free(data);

    const struct {
        const uint8_t *chunk;
        size_t len;
        int count;
    } cases[] = {{ztxt, ztxt_len, 1000}, {iccp, iccp_len, 3}, {unknown, unknown_len, 100}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t bomb_len = 0;
        uint8_t *bomb = insert_after_ihdr(png, len, cases[k].chunk, cases[k].len, cases[k].count,
                                          &bomb_len);
        float *dec = NULL;
        int h = 0, w = 0;
        int rc = image_decode_png(bomb, bomb_len, 1, &dec, &h, &w, err, sizeof err);
        if (rc) fail_msg("case %zu: %s", k, err);
        assert_int_equal(h, 28);
        assert_int_equal(w, 28);
        for (int i = 0; i < 28 * 28; i++) assert_true(fabsf(dec[i] - img[i]) < 0.51f / 255.0f);
        free(dec);
        free(bomb);
    }
    /* An unknown critical chunk still fails: it could change the pixels. */
    size_t crit_len, bad_len;
    uint8_t *crit = make_chunk("VAED", (const uint8_t *)"x", 1, &crit_len);
    uint8_t *bad = insert_after_ihdr(png, len, crit, crit_len, 1, &bad_len);
    expect_decode_error(bad, bad_len);
    free(bad);
    free(crit);
    free(ztxt);
    free(iccp);
    free(unknown);
    free(png);
}

static void test_write_file(void **state) {
    (void)state;
    char dir[] = "/tmp/vaed_test_img_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], missing[256];
    snprintf(path, sizeof path, "%s/grid.png", dir);
    snprintf(missing, sizeof missing, "%s/nodir/grid.png", dir);
    float img[2 * 3 * 4];
    for (int i = 0; i < 24; i++) img[i] = (float)i / 23.0f;
    char err[256] = "";
    int rc = image_write_grid_png(path, img, 2, 1, 3, 4, 0, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);

    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t buf[4096];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    float *dec = NULL;
    int h, w;
    assert_int_equal(image_decode_png(buf, len, 1, &dec, &h, &w, err, sizeof err), 0);
    assert_int_equal(h, 3);
    assert_int_equal(w, 8);
    assert_true(fabsf(dec[1 * 8 + 4 + 2] - img[12 + 1 * 4 + 2]) < 0.5f / 255.0f + 1e-6f);
    free(dec);

    assert_int_equal(image_write_grid_png(missing, img, 2, 1, 3, 4, 0, err, sizeof err),
                     VAE_ERR_IO);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* scale K draws each pixel as a K x K block: decoding the scaled grid gives
 * the unscaled one's pixel at (y / K, x / K), grey and RGB, and a scale out
 * of 1..IMAGE_MAX_SCALE is refused. */
static void test_scaled_grid(void **state) {
    (void)state;
    enum { N = 3, H = 5, W = 4, K = 3 };
    for (int C = 1; C <= 3; C += 2) {
        float imgs[N * 3 * H * W];
        for (int i = 0; i < N * C * H * W; i++) imgs[i] = (float)((i * 37) % 256) / 255.0f;
        uint8_t *png = NULL, *png1 = NULL;
        size_t len = 0, len1 = 0;
        char err[256] = "";
        assert_int_equal(image_encode_grid_png_scaled(imgs, N, C, H, W, 2, K, &png, &len, err,
                                                      sizeof err), 0);
        assert_int_equal(image_encode_grid_png(imgs, N, C, H, W, 2, &png1, &len1, err, sizeof err),
                         0);
        float *big = NULL, *small = NULL;
        int h = 0, w = 0, h1 = 0, w1 = 0;
        assert_int_equal(image_decode_png(png, len, C, &big, &h, &w, err, sizeof err), 0);
        assert_int_equal(image_decode_png(png1, len1, C, &small, &h1, &w1, err, sizeof err), 0);
        assert_int_equal(h, h1 * K);
        assert_int_equal(w, w1 * K);
        for (int c = 0; c < C; c++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    assert_true(big[(c * h + y) * w + x] ==
                                small[(c * h1 + y / K) * w1 + x / K]);
        free(big);
        free(small);
        free(png);
        free(png1);
        assert_int_equal(image_encode_grid_png_scaled(imgs, N, C, H, W, 2, 0, &png, &len, err,
                                                      sizeof err), VAE_ERR_ARG);
        assert_int_equal(image_encode_grid_png_scaled(imgs, N, C, H, W, 2, IMAGE_MAX_SCALE + 1,
                                                      &png, &len, err, sizeof err), VAE_ERR_ARG);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grey_grid_round_trip),
        cmocka_unit_test(test_rgb_round_trip),
        cmocka_unit_test(test_scaled_grid),
        cmocka_unit_test(test_palette_and_other_kinds),
        cmocka_unit_test(test_broken_input),
        cmocka_unit_test(test_png_size_from_ihdr),
        cmocka_unit_test(test_ancillary_chunks_skipped),
        cmocka_unit_test(test_write_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
