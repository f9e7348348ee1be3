/* fuzz_infer_body: the request bodies of the inference endpoints
 * (server/infer_body.c).
 *
 * The first byte picks the model's input size D (1 to 8 grey pixels in a
 * row), the rest is the body. Differential: when the fast reader takes an
 * /encode body, the cJSON path must take it too and give the same floats bit
 * for bit; and infer_body_read_images, what the daemon calls, must answer
 * exactly as the cJSON path (status, message, floats) on every body. Then
 * the same body as a /decode body ({"z": [rows]}), as base64 of a PNG, and
 * every refusal must come with a message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/infer_body.h"
#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_N 3

static void check_refusal(http_error e, const char *msg)
{
    if (e == HTTP_ERR_NONE)
        return;
    FUZZ_CHECK(e == HTTP_ERR_BAD_REQUEST || e == HTTP_ERR_UNPROCESSABLE ||
                   e == HTTP_ERR_PAYLOAD_TOO_LARGE || e == HTTP_ERR_UNAVAILABLE,
               "refused with %s", http_error_code(e));
    FUZZ_CHECK(msg[0] != '\0', "%s without a message", http_error_code(e));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    vae_config cfg;
    vae_config_default(&cfg);
    cfg.channels = 1;
    cfg.height = 1;
    cfg.width = 1 + data[0] % 8;
    int D = cfg.width;
    size_t max_values = (size_t)MAX_N * (size_t)(D + 2) + 4096;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    float *xf = NULL, *xj = NULL, *xr = NULL; /* owned: freed below */
    int nf = 0, nj = 0, nr = 0;
    char mj[HTTP_MESSAGE_MAX] = "", mr[HTTP_MESSAGE_MAX] = "";
    int fast = infer_body_fast_pixel_rows(body, len, D, MAX_N, &xf, &nf);
    http_error ej = infer_body_read_images_json(&cfg, body, len, INFER_BODY_MAX_JSON_DEPTH, MAX_N,
                                                max_values, &xj, &nj, mj, sizeof mj);
    http_error er = infer_body_read_images(&cfg, body, len, INFER_BODY_MAX_JSON_DEPTH, MAX_N,
                                           max_values, &xr, &nr, mr, sizeof mr);
    check_refusal(ej, mj);
    if (fast) {
        FUZZ_CHECK(ej == HTTP_ERR_NONE, "the fast reader takes what cJSON refuses (%s: %s)",
                   http_error_code(ej), mj);
        FUZZ_CHECK(nf == nj && !memcmp(xf, xj, (size_t)nf * (size_t)D * sizeof *xf),
                   "the fast reader and cJSON read other floats");
    } else {
        FUZZ_CHECK(xf == NULL && nf == 0, "a refusing fast reader handed back rows");
    }
    FUZZ_CHECK(er == ej, "read_images answers %d, the cJSON path %d", er, ej);
    if (ej == HTTP_ERR_NONE)
        FUZZ_CHECK(nr == nj && !memcmp(xr, xj, (size_t)nj * (size_t)D * sizeof *xr),
                   "read_images and the cJSON path read other floats");
    else
        FUZZ_CHECK(!strcmp(mr, mj) && xr == NULL, "messages differ: \"%s\" and \"%s\"", mr, mj);
    free(xf);
    free(xj);
    free(xr);

    /* The same body as {"z": [[D numbers], ...]}, as /decode reads it. */
    cJSON *root = NULL; /* owned: deleted below */
    char msg[HTTP_MESSAGE_MAX] = "";
    http_error e = infer_body_parse_object(body, len, INFER_BODY_MAX_JSON_DEPTH, max_values, &root,
                                           msg, sizeof msg);
    check_refusal(e, msg);
    http_error pre =
        infer_body_prescan(body, len, INFER_BODY_MAX_JSON_DEPTH, max_values, msg, sizeof msg);
    if (pre != HTTP_ERR_NONE)
        FUZZ_CHECK(e == pre, "the prescan refuses with %d, the parse with %d", pre, e);
    const cJSON *z = cJSON_GetObjectItemCaseSensitive(root, "z");
    const cJSON *row;
    float latent[8];
    int i = 0;
    if (cJSON_IsArray(z))
        cJSON_ArrayForEach(row, z) {
            char what[32];
            snprintf(what, sizeof what, "z[%d]", i++);
            msg[0] = '\0';
            e = infer_body_read_numbers(row, latent, D, i & 1, what, "fuzz", msg, sizeof msg);
            check_refusal(e, msg);
        }
    cJSON_Delete(root);

    /* The same bytes as a png_base64 string. */
    char *s = malloc(len + 1); /* owned: freed below */
    FUZZ_CHECK(s != NULL, "out of memory");
    memcpy(s, body, len);
    s[len] = '\0';
    uint8_t *png = NULL; /* owned: freed below */
    size_t png_len = 0;
    if (infer_body_base64_decode(s, &png, &png_len) == 0) {
        float pixels[8];
        msg[0] = '\0';
        e = infer_body_read_png(&cfg, png, png_len, pixels, "png_base64[0]", msg, sizeof msg);
        check_refusal(e, msg);
        free(png);
    }
    free(s);
    return 0;
}
