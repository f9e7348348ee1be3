/* infer_body: the two readers of an /encode body agree.
 *
 * The fast reader (infer_body_fast_pixel_rows) and the cJSON path
 * (infer_body_read_images_json) are run on tens of thousands of generated
 * bodies — every number spelling JSON allows (exponents, -0, 1e-7,
 * 17-digit decimals, 1.0000000001, the exact decimals of midpoints between
 * two floats and their neighbours at 17, 18 and 19 digits), whitespace
 * between every two tokens, and broken structure — and:
 *   - whenever the fast reader takes a body, the cJSON path takes it too and
 *     gives the same floats, bit for bit (-0 included);
 *   - infer_body_read_images, the reader the daemon calls, gives exactly
 *     the cJSON path's answer on every body (status, message, floats): a
 *     refusal by the fast reader is never an answer of its own.
 * A run where the fast reader took too few bodies would prove nothing, so
 * that is a failure too. Then the pieces one by one: the number grammar,
 * the prescan limits, parsing errors, read_numbers' order of checks,
 * base64, and PNG. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/image.h"
#include "engine/rng.h"
#include "server/infer_body.h"

#define D 4
#define MAX_N 3
#define MAX_VALUES ((size_t)MAX_N * (D + 2) + 4096)
#define BODY_MAX 8192

static vae_config test_config(void)
{
    vae_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.channels = 1;
    cfg.height = 1;
    cfg.width = D;
    return cfg;
}

static int pick(rng_state *r, int n)
{
    return (int)rng_below(r, (uint64_t)n);
}

static double uniform(rng_state *r)
{
    return (double)(rng_next_u64(r) >> 11) * 0x1p-53;
}

/* A random float in [0, 1], sometimes tiny, sometimes 0 or 1. */
static float pixel(rng_state *r)
{
    switch (pick(r, 6)) {
    case 0:
        return (float)ldexp(uniform(r), -pick(r, 30));
    case 1:
        return (float)pick(r, 2);
    default:
        return (float)uniform(r);
    }
}

/* The exact decimal of v (a double with few enough fractional bits), with
 * trailing zeros cut, into out. */
static void exact_decimal(char *out, size_t outlen, double v)
{
    snprintf(out, outlen, "%.70f", v);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '0' && out[n - 2] != '.')
        out[--n] = '\0';
}

/* s with only its first `digits` significant digits kept (truncated). */
static void keep_digits(char *s, int digits)
{
    int seen = 0, started = 0;
    for (char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            continue;
        if (*p != '0')
            started = 1;
        if (started && ++seen > digits)
            *p = '0';
    }
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '0' && strchr(s, '.') && s[n - 2] != '.')
        s[--n] = '\0';
}

static const char *const special_numbers[] = {
    "0", "-0", "1", "1.0", "0.0", "-0.0", "1e0", "1E0", "1e-7", "1E-7", "0.0000001", "1e-07",
    "5e-1", "0.5e+0", "0.5E-0", "1.0000000001", "1.00000000000000011", "0.99999999999999999",
    "0.999999999999999999999", "1.000000000000000000001", "0.12345678901234567",
    "0.1234567890123456789", "2e-45", "1e-45", "0.000000000000000000000000000001",
    "-0.5", "1.5", "-1e-300", "1e400", "01", "1.", ".5", "+1", "-", "1e", "1e+", "0x1",
    "0.00000000000000000000000000000000000000000000000000000000000000000001",
    "16777217e-24", "0.100000001490116119384765625", "0.10000000149011612",
    "0.100000008940696716308593750", "0.10000000894069671630859375000000000001",
};

/* One number as a client might spell it. */
static void number_text(rng_state *r, char *out, size_t outlen)
{
    float f = pixel(r);
    char exact[128];
    switch (pick(r, 12)) {
    case 0:
        snprintf(out, outlen, "%.9g", (double)f);
        break;
    case 1:
        snprintf(out, outlen, "%.17g", uniform(r));
        break;
    case 2:
        snprintf(out, outlen, "%.6f", (double)f);
        break;
    case 3:
        snprintf(out, outlen, "%.20f", uniform(r));
        break;
    case 4:
        snprintf(out, outlen, pick(r, 2) ? "%.3e" : "%.8E", (double)f);
        break;
    case 5:
    case 6:
    case 7: {
        /* Around the midpoint between f and the next float up: exactly it,
         * cut to 17, 18 or 19 significant digits, or just above it. */
        float next = nextafterf(f, 2.0f);
        if (next > 1.0f) {
            snprintf(out, outlen, "1");
            break;
        }
        exact_decimal(exact, sizeof exact, ((double)f + (double)next) * 0.5);
        int how = pick(r, 5);
        if (how >= 1 && how <= 3)
            keep_digits(exact, 16 + how);
        snprintf(out, outlen, "%s%s", exact, how == 4 ? "000000000001" : "");
        break;
    }
    case 8:
        snprintf(out, outlen, "%s",
                 special_numbers[pick(r, sizeof special_numbers / sizeof special_numbers[0])]);
        break;
    case 9:
        snprintf(out, outlen, "%.17g", (double)f);
        break;
    default:
        snprintf(out, outlen, "%.9g", (double)f);
    }
}

/* Whitespace JSON allows (and, rarely, a form feed it does not). */
static const char *space(rng_state *r)
{
    static const char *const spaces[] = {"", "", "", " ", "\t", "\n", "\r\n", " \n\t ", "\f"};
    int i = pick(r, 64) ? pick(r, 8) : 8;
    return spaces[i];
}

static size_t put(char *body, size_t used, const char *s)
{
    size_t n = strlen(s);
    if (used + n < BODY_MAX) {
        memcpy(body + used, s, n);
        used += n;
    }
    body[used] = '\0';
    return used;
}

/* A body close to {"x": [[D numbers], ...]}: usually exactly that, else
 * with one thing wrong. */
static size_t make_body(rng_state *r, char *body)
{
    size_t n = 0;
    int wrong = pick(r, 4) == 0 ? pick(r, 9) : -1;
    int rows = wrong == 0 ? (pick(r, 2) ? 0 : MAX_N + 1) : 1 + pick(r, MAX_N);
    char num[160];
    n = put(body, n, space(r));
    n = put(body, n, "{");
    n = put(body, n, space(r));
    n = put(body, n, wrong == 1 ? "\"y\"" : "\"x\"");
    n = put(body, n, space(r));
    n = put(body, n, ":");
    n = put(body, n, space(r));
    n = put(body, n, "[");
    for (int i = 0; i < rows; i++) {
        n = put(body, n, space(r));
        if (i)
            n = put(body, n, ",");
        n = put(body, n, space(r));
        n = put(body, n, "[");
        int cols = wrong == 2 && i == rows - 1 ? D + (pick(r, 2) ? 1 : -1) : D;
        for (int k = 0; k < cols; k++) {
            n = put(body, n, space(r));
            if (k)
                n = put(body, n, ",");
            n = put(body, n, space(r));
            if (wrong == 3 && k == 1)
                snprintf(num, sizeof num, "%s", pick(r, 2) ? "\"0.5\"" : "null");
            else
                number_text(r, num, sizeof num);
            n = put(body, n, num);
        }
        n = put(body, n, space(r));
        n = put(body, n, "]");
    }
    n = put(body, n, space(r));
    n = put(body, n, "]");
    if (wrong == 4)
        n = put(body, n, ", \"png_base64\": []");
    if (wrong == 5)
        n = put(body, n, ", \"x\": [[0,0,0,0]]");
    n = put(body, n, space(r));
    if (wrong != 6)
        n = put(body, n, "}");
    n = put(body, n, space(r));
    if (wrong == 7)
        n = put(body, n, "x");
    if (wrong == 8)
        n = put(body, n, "{}");
    return n;
}

static int same_floats(const float *a, const float *b, int n)
{
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* Checks one body; returns 1 when the fast reader took it. */
static int check_body(const char *body, size_t len)
{
    vae_config cfg = test_config();
    float *xf = NULL, *xj = NULL, *xc = NULL;
    int nf = 0, nj = 0, nc = 0;
    char mj[HTTP_MESSAGE_MAX] = "", mc[HTTP_MESSAGE_MAX] = "";
    int fast = infer_body_fast_pixel_rows(body, len, D, MAX_N, &xf, &nf);
    http_error ej = infer_body_read_images_json(&cfg, body, len, INFER_BODY_MAX_JSON_DEPTH, MAX_N,
                                                MAX_VALUES, &xj, &nj, mj, sizeof mj);
    http_error ec = infer_body_read_images(&cfg, body, len, INFER_BODY_MAX_JSON_DEPTH, MAX_N,
                                           MAX_VALUES, &xc, &nc, mc, sizeof mc);
    if (fast) {
        if (ej != HTTP_ERR_NONE)
            fail_msg("the fast reader took a body cJSON refuses (%d: %s):\n%s", ej, mj, body);
        if (nf != nj || !same_floats(xf, xj, nf * D)) {
            for (int i = 0; i < nf * D && nf == nj; i++)
                if (memcmp(&xf[i], &xj[i], sizeof xf[i]))
                    print_error("value %d: fast %.9g, cJSON %.9g\n", i, (double)xf[i],
                                (double)xj[i]);
            fail_msg("the two readers disagree on:\n%s", body);
        }
    }
    if (ec != ej || (ej != HTTP_ERR_NONE && strcmp(mc, mj)) ||
        (ej == HTTP_ERR_NONE && (nc != nj || !same_floats(xc, xj, nj * D))))
        fail_msg("infer_body_read_images answers %d (%s), the cJSON path %d (%s), on:\n%s", ec,
                 mc, ej, mj, body);
    if (ej != HTTP_ERR_NONE && (xj || xc))
        fail_msg("images handed out with an error");
    free(xf);
    free(xj);
    free(xc);
    return fast;
}

static void test_fast_and_cjson_agree(void **state)
{
    (void)state;
    rng_state r;
    rng_seed(&r, 20240611);
    static char body[BODY_MAX];
    int bodies = 40000, taken = 0;
    for (int i = 0; i < bodies; i++)
        taken += check_body(body, make_body(&r, body));
    /* About half the bodies are well formed with every number readable. */
    if (taken < bodies / 5)
        fail_msg("the fast reader took only %d of %d bodies", taken, bodies);
}

/* Bodies the fast reader must take (or the daemon loses its fast path), and
 * some it must leave to cJSON; the answers agree either way. */
static void test_fast_reader_takes_common_bodies(void **state)
{
    (void)state;
    static const char *const take[] = {
        "{\"x\":[[0,0.5,1,0.25]]}",
        " {\n \"x\" : [ [ 0 , 0.5 , 1 , 0.25 ] , [1,1,1,1] ] }\r\n",
        "{\"x\":[[0.12156862745098039,0.9999999999999999,1e-7,-0]]}",
        "{\"x\":[[1.0000000000,0.0000001,5E-1,0.100000001490116119384765625]]}",
        "{\"x\":[[0.123456789012345678,0.999999999999999999,0.5000000000000000001,0]]}",
    };
    static const char *const leave[] = {
        "{\"x\":[[0,0.5,1,1.0000000001]]}", /* > 1: cJSON says 422 */
        "{\"x\":[[0,0.5,1,01]]}",           /* not JSON, cJSON reads 1 */
        "{\"x\":[[0,0.5,1]]}",              /* too short: 422 */
        "{\"x\":[[0,0.5,1,0]],\"y\":1}",     /* another key */
        "{\"x\":[[0,0.5,1,0]]}\f",          /* cJSON's whitespace, not JSON's */
        "{\"x\":[[0,0.5,1,0],[0,0,0,0],[0,0,0,0],[0,0,0,0]]}", /* more than MAX_N */
    };
    for (size_t i = 0; i < sizeof take / sizeof take[0]; i++)
        if (!check_body(take[i], strlen(take[i])))
            fail_msg("the fast reader refused %s", take[i]);
    for (size_t i = 0; i < sizeof leave / sizeof leave[0]; i++)
        if (check_body(leave[i], strlen(leave[i])))
            fail_msg("the fast reader took %s", leave[i]);
    /* -0 stays negative zero, as strtod reads it. */
    float *x = NULL;
    int n = 0;
    const char *neg = "{\"x\":[[-0,-0.0,0,1]]}";
    assert_true(infer_body_fast_pixel_rows(neg, strlen(neg), D, MAX_N, &x, &n));
    assert_true(signbit(x[0]) && signbit(x[1]) && !signbit(x[2]));
    free(x);
}

static void test_number_grammar(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int len; /* of the number at its start; -1 none */
    } cases[] = {
        {"0", 1},       {"-0", 2},      {"12", 2},      {"1.5", 3},     {"1e5", 3},
        {"1E+5", 4},    {"1e-05", 5},   {"-0.5e3,", 6}, {"01", 1},      {"1.", -1},
        {".5", -1},     {"-", -1},      {"+1", -1},     {"1e", -1},     {"1e+", -1},
        {"1.5e", -1},   {"-a", -1},     {"0x1", 1},     {"1.25]", 4},   {"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = cases[i].text, *end = p + strlen(p);
        const char *e = infer_body_number_end(p, end);
        int got = e ? (int)(e - p) : -1;
        if (got != cases[i].len)
            fail_msg("\"%s\": number of length %d, expected %d", p, got, cases[i].len);
    }
    /* Not NUL-terminated: the end bounds the scan. */
    assert_true(infer_body_number_end("123", (const char *)"123" + 2) == (const char *)"123" + 2);
}

static void test_prescan_limits(void **state)
{
    (void)state;
    char msg[HTTP_MESSAGE_MAX];
    const char *deep = "{\"a\":[[[[[[[[1]]]]]]]]}"; /* 9 levels */
    assert_int_equal(
        infer_body_prescan(deep, strlen(deep), INFER_BODY_MAX_JSON_DEPTH, 100, msg, sizeof msg),
        HTTP_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg, "deeper than 8"));
    const char *eight = "{\"a\":[[[[[[[1]]]]]]]}";
    assert_int_equal(
        infer_body_prescan(eight, strlen(eight), INFER_BODY_MAX_JSON_DEPTH, 100, msg, sizeof msg),
        HTTP_ERR_NONE);
    /* the bound is the caller's (--max-json-depth): 7 levels over 6 */
    assert_int_equal(infer_body_prescan(eight, strlen(eight), 6, 100, msg, sizeof msg),
                     HTTP_ERR_BAD_REQUEST);
    assert_non_null(strstr(msg, "deeper than 6"));
    const char *many = "[1,2,3,4,5]";
    assert_int_equal(
        infer_body_prescan(many, strlen(many), INFER_BODY_MAX_JSON_DEPTH, 5, msg, sizeof msg),
        HTTP_ERR_PAYLOAD_TOO_LARGE);
    assert_int_equal(
        infer_body_prescan(many, strlen(many), INFER_BODY_MAX_JSON_DEPTH, 6, msg, sizeof msg),
        HTTP_ERR_NONE);
    /* Brackets and commas inside strings (escaped quotes too) do not count. */
    const char *str = "{\"a\":\"[[[[[[[[[,,,,,\\\"[[[[\"}";
    assert_int_equal(
        infer_body_prescan(str, strlen(str), INFER_BODY_MAX_JSON_DEPTH, 3, msg, sizeof msg),
        HTTP_ERR_NONE);
}

static void test_parse_object_errors(void **state)
{
    (void)state;
    char msg[HTTP_MESSAGE_MAX];
    cJSON *root = (cJSON *)&root; /* must be reset */
    assert_int_equal(infer_body_parse_object("{\"a\":", 5, INFER_BODY_MAX_JSON_DEPTH, 100, &root,
                                             msg, sizeof msg),
                     HTTP_ERR_BAD_REQUEST);
    assert_null(root);
    assert_non_null(strstr(msg, "not valid JSON (at byte"));
    assert_int_equal(
        infer_body_parse_object("{} x", 4, INFER_BODY_MAX_JSON_DEPTH, 100, &root, msg, sizeof msg),
        HTTP_ERR_BAD_REQUEST);
    assert_string_equal(msg, "the request body has bytes after its JSON value");
    assert_int_equal(
        infer_body_parse_object("[1]", 3, INFER_BODY_MAX_JSON_DEPTH, 100, &root, msg, sizeof msg),
        HTTP_ERR_BAD_REQUEST);
    assert_string_equal(msg, "the request body must be a JSON object");
    /* Only the first len bytes count: what follows is not part of the body. */
    assert_int_equal(infer_body_parse_object("{\"a\":1} \r\n}}}", 10, INFER_BODY_MAX_JSON_DEPTH,
                                             100, &root, msg, sizeof msg),
                     HTTP_ERR_NONE);
    assert_non_null(root);
    cJSON_Delete(root);
}

static void test_read_numbers_order(void **state)
{
    (void)state;
    char msg[HTTP_MESSAGE_MAX];
    float dst[3];
    struct {
        const char *json;
        int pixels;
        http_error want;
        const char *msg;
    } cases[] = {
        {"{\"v\":[1,\"a\",2,3,4]}", 1, HTTP_ERR_BAD_REQUEST, "v[1] is not a number"},
        {"{\"v\":[1,2]}", 1, HTTP_ERR_UNPROCESSABLE, "v has 2 values, the model takes 3 (S)"},
        {"{\"v\":[0,2,1]}", 1, HTTP_ERR_UNPROCESSABLE, "v[1] = 2 is outside the pixel range 0..1"},
        {"{\"v\":[0,2,1e39]}", 0, HTTP_ERR_UNPROCESSABLE, "v[2] is not a finite number"},
        {"{\"v\":7}", 0, HTTP_ERR_BAD_REQUEST, "v must be an array of numbers"},
        {"{\"v\":[0,-2,3]}", 0, HTTP_ERR_NONE, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *root = cJSON_Parse(cases[i].json);
        msg[0] = '\0';
        http_error e = infer_body_read_numbers(cJSON_GetObjectItem(root, "v"), dst, 3,
                                               cases[i].pixels, "v", "S", msg, sizeof msg);
        cJSON_Delete(root);
        if (e != cases[i].want || strcmp(msg, cases[i].msg))
            fail_msg("%s: %d \"%s\", expected %d \"%s\"", cases[i].json, e, msg, cases[i].want,
                     cases[i].msg);
    }
    assert_true(dst[0] == 0.0f && dst[1] == -2.0f && dst[2] == 3.0f);
}

static void test_base64(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *out; /* NULL: refused */
    } cases[] = {
        {"", ""},
        {"Zg==", "f"},
        {"Zg", "f"},
        {"Zm8=", "fo"},
        {"Zm9v", "foo"},
        {"Zm9vYg", "foob"},
        {"data:image/png;base64,Zm9vYmE=", "fooba"},
        {"-_-_", "\xfb\xff\xbf"},
        {"+/+/", "\xfb\xff\xbf"},
        {"Z", NULL},
        {"Zm9v!", NULL},
        {"Zm 9v", NULL},
        {"data:image/png;base64", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *out = NULL;
        size_t len = 0;
        int rc = infer_body_base64_decode(cases[i].in, &out, &len);
        if (!cases[i].out) {
            if (rc == 0)
                fail_msg("\"%s\" decoded", cases[i].in);
            continue;
        }
        if (rc || len != strlen(cases[i].out) || memcmp(out, cases[i].out, len))
            fail_msg("\"%s\" decoded wrong", cases[i].in);
        free(out);
    }
}

static void test_png(void **state)
{
    (void)state;
    vae_config cfg = test_config(); /* 4x1 grey */
    const float pixels[D] = {0.0f, 1.0f, 128.0f / 255.0f, 64.0f / 255.0f};
    uint8_t *png = NULL;
    size_t len = 0;
    char why[256];
    assert_int_equal(image_encode_grid_png(pixels, 1, 1, 1, D, 1, &png, &len, why, sizeof why),
                     VAE_OK);
    float got[D];
    char msg[HTTP_MESSAGE_MAX];
    assert_int_equal(infer_body_read_png(&cfg, png, len, got, "the image", msg, sizeof msg),
                     HTTP_ERR_NONE);
    assert_memory_equal(got, pixels, sizeof got);
    vae_config wide = cfg;
    wide.width = 2 * D;
    float big[2 * D];
    assert_int_equal(infer_body_read_png(&wide, png, len, big, "the image", msg, sizeof msg),
                     HTTP_ERR_UNPROCESSABLE);
    assert_string_equal(msg, "the image is 4x1 pixels, the model takes 8x1");
    assert_int_equal(infer_body_read_png(&cfg, png, len / 2, got, "x", msg, sizeof msg),
                     HTTP_ERR_BAD_REQUEST);
    vae_config two = cfg;
    two.channels = 2;
    assert_int_equal(infer_body_read_png(&two, png, len, got, "x", msg, sizeof msg),
                     HTTP_ERR_UNPROCESSABLE);
    free(png);

    cJSON *not_string = cJSON_CreateNumber(1);
    assert_int_equal(infer_body_read_png_base64(&cfg, not_string, got, "p[0]", msg, sizeof msg),
                     HTTP_ERR_BAD_REQUEST);
    assert_string_equal(msg, "p[0] must be a base64 string");
    cJSON_Delete(not_string);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_and_cjson_agree),
        cmocka_unit_test(test_fast_reader_takes_common_bodies),
        cmocka_unit_test(test_number_grammar),
        cmocka_unit_test(test_prescan_limits),
        cmocka_unit_test(test_parse_object_errors),
        cmocka_unit_test(test_read_numbers_order),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_png),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
