#include "server/infer_body.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image.h"
#include "server/metrics.h"

http_error infer_body_prescan(const char *body, size_t len, int max_depth, size_t max_values,
                              char *msg, size_t msglen)
{
    int depth = 0, in_string = 0, closed = 0; /* closed: the top-level container has ended */
    size_t values = 1;
    for (size_t i = 0; i < len; i++) {
        char ch = body[i];
        if (ch == '\0' || (in_string && ch == '\\' && len - i > 5 &&
                            !memcmp(body + i + 1, "u0000", 5))) {
            snprintf(msg, msglen, "the JSON body holds a NUL character (byte %zu)", i);
            return HTTP_ERR_BAD_REQUEST;
        }
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = 0;
            continue;
        }
        if (closed && ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') {
            snprintf(msg, msglen, "the request body has bytes after its JSON value");
            return HTTP_ERR_BAD_REQUEST;
        }
        if (ch == '"') {
            in_string = 1;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max_depth) {
                metrics_count_refusal(METRICS_LIMIT_JSON_DEPTH);
                snprintf(msg, msglen, "JSON nested deeper than %d levels", max_depth);
                return HTTP_ERR_BAD_REQUEST;
            }
            values++;
        } else if (ch == ']' || ch == '}') {
            if (--depth < 0) {
                snprintf(msg, msglen, "the JSON body closes a bracket it never opened (byte %zu)",
                         i);
                return HTTP_ERR_BAD_REQUEST;
            }
            closed = depth == 0;
        } else if (ch == ',') {
            values++;
        }
        if (values > max_values) {
            metrics_count_refusal(METRICS_LIMIT_JSON_VALUES);
            snprintf(msg, msglen,
                     "the JSON body holds more than %zu values, more than the largest batch "
                     "needs",
                     max_values);
            return HTTP_ERR_PAYLOAD_TOO_LARGE;
        }
    }
    return HTTP_ERR_NONE;
}

http_error infer_body_parse_object(const char *body, size_t len, int max_depth, size_t max_values,
                                   cJSON **out, char *msg, size_t msglen)
{
    *out = NULL;
    http_error e = infer_body_prescan(body, len, max_depth, max_values, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0); /* owned: handed to *out */
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        snprintf(msg, msglen, "the request body is not valid JSON (at byte %zu)", at);
        return HTTP_ERR_BAD_REQUEST;
    }
    while (end && end < body + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (!end || end != body + len) {
        cJSON_Delete(root);
        snprintf(msg, msglen, "the request body has bytes after its JSON value");
        return HTTP_ERR_BAD_REQUEST;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(msg, msglen, "the request body must be a JSON object");
        return HTTP_ERR_BAD_REQUEST;
    }
    *out = root;
    return HTTP_ERR_NONE;
}

http_error infer_body_read_numbers(const cJSON *arr, float *dst, int want, int pixels,
                                   const char *what, const char *model_size, char *msg,
                                   size_t msglen)
{
    if (!cJSON_IsArray(arr)) {
        snprintf(msg, msglen, "%s must be an array of numbers", what);
        return HTTP_ERR_BAD_REQUEST;
    }
    /* Types first (400), then the size (422), then the values (422). */
    int got = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsNumber(v)) {
            snprintf(msg, msglen, "%s[%d] is not a number", what, got);
            return HTTP_ERR_BAD_REQUEST;
        }
        got++;
    }
    if (got != want) {
        snprintf(msg, msglen, "%s has %d values, the model takes %d (%s)", what, got, want,
                 model_size);
        return HTTP_ERR_UNPROCESSABLE;
    }
    int k = 0;
    cJSON_ArrayForEach(v, arr) {
        double d = v->valuedouble;
        if (!isfinite(d) || fabs(d) > FLT_MAX) {
            snprintf(msg, msglen, "%s[%d] is not a finite number", what, k);
            return HTTP_ERR_UNPROCESSABLE;
        }
        if (pixels && !(d >= 0.0 && d <= 1.0)) {
            snprintf(msg, msglen, "%s[%d] = %g is outside the pixel range 0..1", what, k, d);
            return HTTP_ERR_UNPROCESSABLE;
        }
        dst[k++] = (float)d;
    }
    return HTTP_ERR_NONE;
}

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

int infer_body_base64_decode(const char *s, uint8_t **out, size_t *out_len)
{
    if (!strncmp(s, "data:", 5)) {
        const char *comma = strchr(s, ',');
        if (!comma)
            return -1;
        s = comma + 1;
    }
    size_t len = strlen(s);
    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    uint8_t *buf = malloc(len / 4 * 3 + 3); /* owned: handed to the caller */
    if (!buf)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *out_len = n;
    return 0;
}

http_error infer_body_read_png(const vae_config *cfg, const uint8_t *png, size_t len, float *dst,
                               const char *what, char *msg, size_t msglen)
{
    if (cfg->channels != 1 && cfg->channels != 3) {
        snprintf(msg, msglen, "this model takes %d channels: PNG input needs 1 or 3",
                 cfg->channels);
        return HTTP_ERR_UNPROCESSABLE;
    }
    float *pixels = NULL; /* owned: freed below */
    int h = 0, w = 0;
    char why[256] = "";
    /* The size its IHDR declares is checked before a byte is inflated. */
    vae_status rc = image_png_size(png, len, &h, &w, why, sizeof why);
    if (rc == VAE_OK && (h != cfg->height || w != cfg->width)) {
        metrics_count_refusal(METRICS_LIMIT_PNG_SIZE);
        snprintf(msg, msglen, "%s is %dx%d pixels, the model takes %dx%d", what, w, h,
                 cfg->width, cfg->height);
        return HTTP_ERR_UNPROCESSABLE;
    }
    if (rc == VAE_OK)
        rc = image_decode_png(png, len, cfg->channels, &pixels, &h, &w, why, sizeof why);
    if (rc == VAE_ERR_NOMEM) {
        snprintf(msg, msglen, "out of memory decoding %s", what);
        return HTTP_ERR_UNAVAILABLE;
    }
    if (rc != VAE_OK) {
        snprintf(msg, msglen, "%s is not a readable PNG image: %s", what, why);
        return HTTP_ERR_BAD_REQUEST;
    }
    if (h != cfg->height || w != cfg->width) {
        free(pixels);
        snprintf(msg, msglen, "%s is %dx%d pixels, the model takes %dx%d", what, w, h,
                 cfg->width, cfg->height);
        return HTTP_ERR_UNPROCESSABLE;
    }
    memcpy(dst, pixels, (size_t)vae_config_input_dim(cfg) * sizeof *dst);
    free(pixels);
    return HTTP_ERR_NONE;
}

http_error infer_body_read_png_base64(const vae_config *cfg, const cJSON *item, float *dst,
                                      const char *what, char *msg, size_t msglen)
{
    if (!cJSON_IsString(item)) {
        snprintf(msg, msglen, "%s must be a base64 string", what);
        return HTTP_ERR_BAD_REQUEST;
    }
    uint8_t *png = NULL; /* owned: freed below */
    size_t len = 0;
    if (infer_body_base64_decode(item->valuestring, &png, &len)) {
        snprintf(msg, msglen, "%s is not valid base64", what);
        return HTTP_ERR_BAD_REQUEST;
    }
    http_error e = infer_body_read_png(cfg, png, len, dst, what, msg, msglen);
    free(png);
    return e;
}

void infer_body_shape_text(char *out, size_t outlen, const vae_config *cfg)
{
    snprintf(out, outlen, "%dx%d with %d channel%s", cfg->width, cfg->height, cfg->channels,
             cfg->channels == 1 ? "" : "s");
}

http_error infer_body_read_images_json(const vae_config *cfg, const char *body, size_t len,
                                       int max_depth, int max_n, size_t max_values, float **x,
                                       int *n, char *msg, size_t msglen)
{
    int D = vae_config_input_dim(cfg);
    char size[64];
    infer_body_shape_text(size, sizeof size, cfg);
    *x = NULL;
    *n = 0;
    cJSON *root = NULL; /* owned: deleted at end */
    float *images = NULL; /* owned: handed to *x */
    int count = 0;
    http_error e = infer_body_parse_object(body, len, max_depth, max_values, &root, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    const cJSON *xs = cJSON_GetObjectItemCaseSensitive(root, "x");
    const cJSON *pngs = cJSON_GetObjectItemCaseSensitive(root, "png_base64");
    const cJSON *list = xs ? xs : pngs;
    const char *key = xs ? "x" : "png_base64";
    if (!xs == !pngs) {
        snprintf(msg, msglen,
                 "the body must hold exactly one of \"x\" (an array of images, each an array of "
                 "%d pixel values) and \"png_base64\" (an array of PNG images)",
                 D);
        e = HTTP_ERR_BAD_REQUEST;
        goto end;
    }
    if (!cJSON_IsArray(list)) {
        snprintf(msg, msglen, "\"%s\" must be an array of images", key);
        e = HTTP_ERR_BAD_REQUEST;
        goto end;
    }
    count = cJSON_GetArraySize(list);
    if (count > max_n)
        metrics_count_refusal(METRICS_LIMIT_MAX_N);
    if (count < 1 || count > max_n) {
        snprintf(msg, msglen, "\"%s\" must hold 1 to %d images (--max-n; it holds %d)", key, max_n,
                 count);
        e = HTTP_ERR_UNPROCESSABLE;
        goto end;
    }
    images = malloc((size_t)count * (size_t)D * sizeof *images);
    if (!images) {
        snprintf(msg, msglen, "out of memory for %d images", count);
        e = HTTP_ERR_UNAVAILABLE;
        goto end;
    }
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        char what[48];
        snprintf(what, sizeof what, "%s[%d]", key, i);
        float *dst = images + (size_t)i * (size_t)D;
        e = xs ? infer_body_read_numbers(item, dst, D, 1, what, size, msg, msglen)
               : infer_body_read_png_base64(cfg, item, dst, what, msg, msglen);
        if (e != HTTP_ERR_NONE)
            goto end;
        i++;
    }
    *x = images;
    *n = count;
    images = NULL;
end:
    free(images);
    cJSON_Delete(root);
    return e;
}

http_error infer_body_read_images(const vae_config *cfg, const char *body, size_t len,
                                  int max_depth, int max_n, size_t max_values, float **x, int *n,
                                  char *msg, size_t msglen)
{
    if (infer_body_fast_pixel_rows(body, len, vae_config_input_dim(cfg), max_n, x, n))
        return HTTP_ERR_NONE;
    return infer_body_read_images_json(cfg, body, len, max_depth, max_n, max_values, x, n, msg,
                                       msglen);
}

/* ---- the fast reader of {"x": [[...], ...]} ------------------------------ */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

const char *infer_body_number_end(const char *p, const char *end)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (p < end && *p == '.') {
        const char *d = ++p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *d = p;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p == d)
            return NULL;
    }
    return p;
}

/* What cJSON makes of the token [p, e): strtod of a NUL-terminated copy. */
static double token_strtod(const char *p, const char *e)
{
    char tok[72];
    size_t n = (size_t)(e - p) < sizeof tok - 1 ? (size_t)(e - p) : sizeof tok - 1;
    memcpy(tok, p, n);
    tok[n] = '\0';
    return strtod(tok, NULL);
}

/* 1 when v, a value within a relative 2^-51 of some decimal, might round to
 * another float than that decimal does, or land on the other side of 1.0:
 * it lies that close to a midpoint between two floats, or to 1. */
static int near_float_edge(double v)
{
    double tol = v * 0x1p-49;
    if (fabs(v - 1.0) <= tol)
        return 1;
    float f = (float)v;
    if ((double)f == v)
        return 0; /* half a float's step from either midpoint */
    float next = nextafterf(f, v > (double)f ? INFINITY : 0.0f);
    double mid = ((double)f + (double)next) * 0.5; /* exact: 25 bits */
    return fabs(v - mid) <= tol;
}

/* The float a JSON number token [p, e) becomes through cJSON (strtod, then
 * a float conversion), when that is a pixel in [0, 1]: 1 with *out, else 0.
 * strtod is several times slower than the rest of the body on 17-digit
 * decimals, so up to 18 significant digits without an exponent are read into
 * an integer m and scaled by an exact power of ten: one rounding, the same
 * double strtod gives, when m is below 2^53 (Clinger's fast path); above it
 * (17 or 18 digits), within 2^-51 of the decimal, which rounds to the same
 * float unless it lies near a midpoint between floats, where strtod decides.
 * Exponents, more digits, and scales past 10^22 go to strtod directly. */
static int pixel_float(const char *p, const char *e, float *out)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *q = p;
    int neg = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    uint64_t m = 0;
    int digits = 0, scale = 0, dropped = 0;
    for (; q < e && *q >= '0' && *q <= '9'; q++) {
        if (digits < 18) {
            m = m * 10 + (uint64_t)(*q - '0');
            if (m)
                digits++;
        } else {
            scale++; /* an integer digit past the 18th */
            dropped = 1;
        }
    }
    if (q < e && *q == '.')
        for (q++; q < e && *q >= '0' && *q <= '9'; q++) {
            if (digits < 18) {
                m = m * 10 + (uint64_t)(*q - '0');
                if (m)
                    digits++;
                scale--;
            } else if (*q != '0') {
                dropped = 1;
            }
        }
    double v;
    if (q < e || dropped || scale < -22 || scale > 22) {
        v = token_strtod(p, e); /* an exponent, too many digits, or far from 0..1 */
    } else {
        v = (double)m;
        if (scale < 0)
            v /= pow10[-scale];
        else if (scale > 0)
            v *= pow10[scale];
        if (neg)
            v = -v;
        if (m > ((uint64_t)1 << 53) && near_float_edge(fabs(v)))
            v = token_strtod(p, e);
    }
    if (!(v >= 0.0 && v <= 1.0))
        return 0;
    *out = (float)v;
    return 1;
}

int infer_body_fast_pixel_rows(const char *body, size_t len, int D, int max_n, float **out,
                               int *n)
{
    const char *p = body, *end = body + len;
    static const char key[] = "\"x\"";
    *out = NULL;
    *n = 0;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return 0;
    p = skip_ws(p, end);
    if ((size_t)(end - p) < sizeof key - 1 || memcmp(p, key, sizeof key - 1) != 0)
        return 0;
    p = skip_ws(p + sizeof key - 1, end);
    if (p >= end || *p++ != ':')
        return 0;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '[')
        return 0;
    size_t cap = 0;
    float *x = NULL; /* owned until handed to *out */
    int rows = 0;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p++ != '[' || rows == max_n)
            goto no;
        if ((size_t)(rows + 1) * (size_t)D > cap) {
            size_t ncap = cap ? cap * 2 : (size_t)D;
            float *grown = realloc(x, ncap * sizeof *x);
            if (!grown)
                goto no;
            x = grown;
            cap = ncap;
        }
        float *row = x + (size_t)rows * (size_t)D;
        for (int k = 0; k < D; k++) {
            p = skip_ws(p, end);
            const char *e = infer_body_number_end(p, end);
            if (!e || e - p > 64 || !pixel_float(p, e, &row[k]))
                goto no;
            p = skip_ws(e, end);
            if (p >= end || *p++ != (k + 1 < D ? ',' : ']'))
                goto no;
        }
        rows++;
        p = skip_ws(p, end);
        if (p >= end)
            goto no;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != ']')
            goto no;
        break;
    }
    p = skip_ws(p, end);
    if (p >= end || *p++ != '}' || skip_ws(p, end) != end)
        goto no;
    *out = x;
    *n = rows;
    return 1;
no:
    free(x);
    return 0;
}
