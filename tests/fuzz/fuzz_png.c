/* fuzz_png: image_decode_png, the decoder of every uploaded PNG (/encode
 * bodies, png_base64, PNG-folder data sets). Each input is decoded as grey
 * and as RGB; a decoded image must have a size within the documented
 * bounds, pixels in [0, 1], and survive an encode and a second decode with
 * its size. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/image.h"
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int channels = 1; channels <= 3; channels += 2) {
        float *px = NULL; /* owned: freed below */
        int h = 0, w = 0;
        char err[256];
        vae_status rc = image_decode_png(data, size, channels, &px, &h, &w, err, sizeof err);
        if (rc != VAE_OK) {
            FUZZ_CHECK(px == NULL, "a failed decode handed back pixels");
            FUZZ_CHECK(err[0] != '\0', "a failed decode (%d) without a message", rc);
            continue;
        }
        FUZZ_CHECK(h >= 1 && w >= 1 && h <= 4096 && w <= 4096, "decoded %dx%d", w, h);
        size_t n = (size_t)channels * (size_t)h * (size_t)w;
        for (size_t i = 0; i < n; i++)
            FUZZ_CHECK(px[i] >= 0.0f && px[i] <= 1.0f, "pixel %zu = %g", i, (double)px[i]);
        if ((size_t)h * (size_t)w <= 65536) {
            uint8_t *png = NULL; /* owned: freed below */
            size_t len = 0;
            FUZZ_CHECK(image_encode_grid_png(px, 1, channels, h, w, 1, &png, &len, err,
                                             sizeof err) == VAE_OK,
                       "re-encoding: %s", err);
            float *again = NULL; /* owned: freed below */
            int h2 = 0, w2 = 0;
            FUZZ_CHECK(image_decode_png(png, len, channels, &again, &h2, &w2, err, sizeof err) ==
                           VAE_OK,
                       "decoding our own PNG: %s", err);
            FUZZ_CHECK(h2 == h && w2 == w, "%dx%d came back %dx%d", w, h, w2, h2);
            free(again);
            free(png);
        }
        free(px);
    }
    return 0;
}
