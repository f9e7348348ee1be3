/* Unit tests for engine/json_strict.c: escapes and UTF-8, numbers (integers
 * exact to 2^63, doubles, every malformed form), structures, the depth limit
 * (also far past it, which must not exhaust the stack), duplicate keys at any
 * level, malformed input of every kind with the byte offset of the error,
 * and the UTF-8 check the safetensors writer uses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/json_strict.h"

static int parses(const char *text, int depth, json_strict_value *v) {
    char err[256] = "";
    int rc = json_strict_parse(text, strlen(text), depth, v, err, sizeof err);
    if (rc) print_message("unexpected error for %s: %s\n", text, err);
    return rc;
}

static void expect_error(const char *text, int depth, const char *msg_part) {
    char err[256] = "";
    json_strict_value v;
    int rc = json_strict_parse(text, strlen(text), depth, &v, err, sizeof err);
    if (rc == 0) print_message("accepted bad JSON: %s\n", text);
    assert_int_equal(rc, VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "byte"));
    if (msg_part && !strstr(err, msg_part)) {
        print_message("error for %s was \"%s\", wanted \"%s\"\n", text, err, msg_part);
        fail();
    }
    assert_int_equal(v.type, JSON_STRICT_NULL); /* zeroed after failure */
    assert_null(v.items);
}

static void test_escapes(void **state) {
    (void)state;
    json_strict_value v;
    assert_int_equal(parses("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\te\"", 4, &v), 0);
    assert_int_equal(v.type, JSON_STRICT_STRING);
    assert_string_equal(v.string, "a\"b\\c/d\b\f\n\r\te");
    json_strict_free(&v);

    assert_int_equal(parses("\"\\u00e9\\u20AC \\ud83d\\ude00 \xc3\xa9\"", 4, &v), 0);
    assert_string_equal(v.string, "\xc3\xa9\xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9");
    json_strict_free(&v);

    assert_int_equal(parses("\"\\u0041\\u007f\"", 4, &v), 0);
    assert_string_equal(v.string, "A\x7f");
    json_strict_free(&v);

    expect_error("\"\\ud83d\"", 4, "surrogate");
    expect_error("\"\\ude00\"", 4, "surrogate");
    expect_error("\"\\ud83d\\u0041\"", 4, "surrogate");
    expect_error("\"\\u0000\"", 4, "NUL");
    expect_error("\"\\u12\"", 4, NULL);
    expect_error("\"\\x41\"", 4, "escape");
    expect_error("\"tab\there\"", 4, "control");
    expect_error("\"bad \xc3\x28 utf8\"", 4, "UTF-8");
    expect_error("\"overlong \xc0\xaf\"", 4, "UTF-8");
    expect_error("\"unterminated", 4, "unterminated");

    /* An embedded NUL byte in the input is a control character. */
    char nul[] = {'"', 'a', '\0', 'b', '"'};
    char err[128];
    assert_int_equal(json_strict_parse(nul, sizeof nul, 4, &v, err, sizeof err), VAE_ERR_FORMAT);
}

static void test_numbers(void **state) {
    (void)state;
    json_strict_value v;
    assert_int_equal(parses("9007199254740993", 4, &v), 0); /* 2^53 + 1 */
    assert_int_equal(v.type, JSON_STRICT_NUMBER);
    assert_true(v.is_integer);
    assert_true(v.integer == 9007199254740993LL);
    json_strict_free(&v);

    assert_int_equal(parses("9007199254740992", 4, &v), 0);
    assert_true(v.is_integer && v.integer == (1LL << 53) && v.number == 9007199254740992.0);
    json_strict_free(&v);

    assert_int_equal(parses(" -42 ", 4, &v), 0);
    assert_true(v.is_integer && v.integer == -42 && v.number == -42.0);
    json_strict_free(&v);

    assert_int_equal(parses("9223372036854775807", 4, &v), 0);
    assert_true(v.is_integer && v.integer == INT64_MAX);
    json_strict_free(&v);

    assert_int_equal(parses("9223372036854775808", 4, &v), 0);
    assert_false(v.is_integer);
    assert_true(v.number == 9223372036854775808.0);
    json_strict_free(&v);

    assert_int_equal(parses("1.5e3", 4, &v), 0);
    assert_false(v.is_integer);
    assert_true(v.number == 1500.0);
    json_strict_free(&v);

    assert_int_equal(parses("-0.25E-2", 4, &v), 0);
    assert_true(v.number == -0.0025);
    json_strict_free(&v);

    assert_int_equal(parses("0", 4, &v), 0);
    assert_true(v.is_integer && v.integer == 0);
    json_strict_free(&v);

    assert_int_equal(parses("1e+2", 4, &v), 0);
    assert_true(v.number == 100.0 && !v.is_integer);
    json_strict_free(&v);

    expect_error("01", 4, "leading zero");
    expect_error("1.", 4, "'.'");
    expect_error(".5", 4, NULL);
    expect_error("-", 4, NULL);
    expect_error("1e", 4, "exponent");
    expect_error("+1", 4, NULL);
    expect_error("1e999", 4, "range");
    expect_error("NaN", 4, NULL);
    expect_error("Infinity", 4, NULL);
}

static void test_structures(void **state) {
    (void)state;
    json_strict_value v;
    const char *doc = " {\"a\": [1, true, false, null, \"s\", {}], \"b\": {\"c\": []}} \r\n\t";
    assert_int_equal(parses(doc, 4, &v), 0);
    assert_int_equal(v.type, JSON_STRICT_OBJECT);
    assert_int_equal(v.n, 2);
    const json_strict_value *a = json_strict_get(&v, "a");
    assert_non_null(a);
    assert_int_equal(a->type, JSON_STRICT_ARRAY);
    assert_int_equal(a->n, 6);
    assert_int_equal(a->items[1].type, JSON_STRICT_BOOL);
    assert_true(a->items[1].boolean);
    assert_int_equal(a->items[2].type, JSON_STRICT_BOOL);
    assert_false(a->items[2].boolean);
    assert_int_equal(a->items[3].type, JSON_STRICT_NULL);
    assert_string_equal(a->items[4].string, "s");
    assert_int_equal(a->items[5].type, JSON_STRICT_OBJECT);
    assert_int_equal(a->items[5].n, 0);
    const json_strict_value *c = json_strict_get(json_strict_get(&v, "b"), "c");
    assert_non_null(c);
    assert_int_equal(c->type, JSON_STRICT_ARRAY);
    assert_null(json_strict_get(&v, "missing"));
    assert_null(json_strict_get(a, "a")); /* not an object */
    json_strict_free(&v);
    json_strict_free(&v); /* safe twice: zeroed */

    /* Depth: the outer container is depth 1. */
    assert_int_equal(parses("[[[1]]]", 3, &v), 0);
    json_strict_free(&v);
    expect_error("[[[1]]]", 2, "deep");
    expect_error("{\"a\":{\"b\":{}}}", 2, "deep");

    expect_error("", 4, "value expected");
    expect_error("   ", 4, "value expected");
    expect_error("1 2", 4, "trailing");
    expect_error("{} x", 4, "trailing");
    expect_error("[1,]", 4, NULL);
    expect_error("[1 2]", 4, NULL);
    expect_error("{\"a\":1,}", 4, NULL);
    expect_error("{\"a\" 1}", 4, "':'");
    expect_error("{a:1}", 4, "key");
    expect_error("{\"a\":1", 4, NULL);
    expect_error("[", 4, NULL);
    expect_error("tru", 4, "literal");
    expect_error("nul", 4, "literal");
    expect_error("{\"k\":1,\"x\":[2],\"k\":3}", 4, "duplicate");

    /* Error offsets point at the problem. */
    char err[128];
    assert_int_equal(json_strict_parse("[1, @]", 6, 4, &v, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "byte 4"));

    /* Length-bounded: text past len is not read. */
    assert_int_equal(json_strict_parse("[1]garbage", 3, 4, &v, err, sizeof err), 0);
    assert_int_equal(v.n, 1);
    json_strict_free(&v);
}

/* Far past the limit: refused at the limit, not after recursing 100,000 deep. */
static void test_depth_limit(void **state) {
    (void)state;
    json_strict_value v;
    char err[256];
    /* depth 0 admits scalars only */
    assert_int_equal(parses("\"s\"", 0, &v), 0);
    json_strict_free(&v);
    expect_error("[]", 0, "deep");
    expect_error("{}", 0, "deep");
    size_t n = 100000;
    char *deep = malloc(2 * n);
    assert_non_null(deep);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    assert_int_equal(json_strict_parse(deep, 2 * n, 64, &v, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "deep"));
    assert_non_null(strstr(err, "byte 64")); /* the 65th '[' */
    /* exactly at the limit parses */
    memmove(deep + 64, deep + n, 64);
    assert_int_equal(json_strict_parse(deep, 128, 64, &v, err, sizeof err), VAE_OK);
    const json_strict_value *it = &v;
    int levels = 0;
    while (it->type == JSON_STRICT_ARRAY && it->n == 1) {
        it = &it->items[0];
        levels++;
    }
    assert_int_equal(levels, 63);
    assert_int_equal(it->type, JSON_STRICT_ARRAY);
    assert_int_equal(it->n, 0);
    json_strict_free(&v);
    /* objects count the same way */
    assert_int_equal(parses("{\"a\":{\"b\":[1]}}", 3, &v), 0);
    json_strict_free(&v);
    expect_error("{\"a\":{\"b\":[1]}}", 2, "deep");
    free(deep);
}

static void test_duplicate_keys(void **state) {
    (void)state;
    json_strict_value v;
    expect_error("{\"a\":1,\"a\":1}", 4, "duplicate key \"a\"");
    /* nested, and with the object's offset in the message */
    expect_error("[0, {\"x\":{\"k\":1,\"j\":2,\"k\":3}}]", 4,
                 "duplicate key \"k\" in object at byte 9");
    /* keys equal after unescaping are the same key */
    expect_error("{\"\\u0041\":1,\"A\":2}", 4, "duplicate");
    /* keys that differ only in case, or that repeat in sibling objects, are fine */
    assert_int_equal(parses("[{\"a\":1,\"A\":2},{\"a\":3}]", 4, &v), 0);
    json_strict_free(&v);
    /* many keys: found after sorting, wherever the pair is */
    char big[64 * 1024];
    size_t pos = 0;
    pos += (size_t)snprintf(big + pos, sizeof big - pos, "{");
    for (int i = 0; i < 2000; i++)
        pos += (size_t)snprintf(big + pos, sizeof big - pos, "%s\"k%d\":%d", i ? "," : "", i, i);
    snprintf(big + pos, sizeof big - pos, "}");
    assert_int_equal(parses(big, 4, &v), 0);
    assert_int_equal(v.n, 2000);
    const json_strict_value *k1999 = json_strict_get(&v, "k1999");
    assert_non_null(k1999);
    assert_true(k1999->is_integer && k1999->integer == 1999);
    json_strict_free(&v);
    snprintf(big + pos, sizeof big - pos, ",\"k7\":0}");
    expect_error(big, 4, "duplicate key \"k7\"");
}

static void test_more_numbers(void **state) {
    (void)state;
    json_strict_value v;
    assert_int_equal(parses("-0", 4, &v), 0);
    assert_true(v.is_integer && v.integer == 0 && v.number == 0.0 && signbit(v.number));
    json_strict_free(&v);
    assert_int_equal(parses("-9223372036854775807", 4, &v), 0);
    assert_true(v.is_integer && v.integer == -INT64_MAX);
    json_strict_free(&v);
    assert_int_equal(parses("1.0", 4, &v), 0);
    assert_true(!v.is_integer && v.number == 1.0);
    json_strict_free(&v);
    assert_int_equal(parses("1E2", 4, &v), 0);
    assert_true(!v.is_integer && v.number == 100.0);
    json_strict_free(&v);
    /* underflow is not an error: the nearest double is 0 */
    assert_int_equal(parses("1e-400", 4, &v), 0);
    assert_true(v.number == 0.0);
    json_strict_free(&v);
    /* shortest round trip of a double comes back exactly */
    assert_int_equal(parses("0.30000000000000004", 4, &v), 0);
    assert_true(v.number == 0.1 + 0.2);
    json_strict_free(&v);
    /* longer than the reader's stack buffer */
    char longnum[200];
    memset(longnum, '1', sizeof longnum - 1);
    longnum[sizeof longnum - 1] = '\0';
    longnum[1] = '.';
    assert_int_equal(parses(longnum, 4, &v), 0);
    assert_true(fabs(v.number - 1.1111111111111112) < 1e-15);
    json_strict_free(&v);
    expect_error("-01", 4, "leading zero");
    expect_error("00", 4, "leading zero");
    expect_error("1.e5", 4, "'.'");
    expect_error("1e+", 4, "exponent");
    expect_error("-1e999", 4, "range");
    expect_error("0x10", 4, "trailing");
    expect_error("- 1", 4, NULL);
    expect_error("[1, -]", 4, NULL);
}

static void test_more_malformed(void **state) {
    (void)state;
    char err[256];
    json_strict_value v;
    expect_error("{\"a\":[1,{\"b\":2]}", 4, NULL);
    expect_error("{\"a\":1]", 4, NULL);
    expect_error("[1}", 4, NULL);
    expect_error("{\"a\"}", 4, "':'");
    expect_error("{,}", 4, "key");
    expect_error("[,1]", 4, NULL);
    expect_error("\xef\xbb\xbf{}", 4, "unexpected character"); /* a UTF-8 BOM */
    expect_error("// c\n{}", 4, "unexpected character");
    expect_error("{\"a\":1 /* c */}", 4, NULL);
    expect_error("'a'", 4, "unexpected character");
    expect_error("truex", 4, "trailing");
    expect_error("{\"bad \xff key\":1}", 4, "UTF-8");
    expect_error("\"\\u00\"", 4, "\\u");
    expect_error("\"\\u00g0\"", 4, "\\u");
    expect_error("\"\\", 4, "unterminated");
    expect_error("\"\xf4\x90\x80\x80\"", 4, "UTF-8"); /* above U+10FFFF */
    expect_error("\"\xed\xa0\x80\"", 4, "UTF-8");     /* a surrogate written as UTF-8 */
    /* a string cut by len at its closing quote */
    assert_int_equal(json_strict_parse("\"abc\"", 4, 4, &v, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "unterminated"));
    assert_non_null(strstr(err, "end of input"));
    /* bad arguments */
    assert_int_equal(json_strict_parse(NULL, 1, 4, &v, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(json_strict_parse("1", 1, -1, &v, err, sizeof err), VAE_ERR_ARG);
    assert_int_equal(json_strict_parse(NULL, 0, 4, &v, err, sizeof err), VAE_ERR_FORMAT);
    assert_int_equal(json_strict_parse("1", 1, 4, NULL, err, sizeof err), VAE_ERR_ARG);
    /* an error with no buffer for the message is still an error */
    assert_int_equal(json_strict_parse("[", 1, 4, &v, NULL, 0), VAE_ERR_FORMAT);
}

static void test_more_escapes(void **state) {
    (void)state;
    json_strict_value v;
    /* upper- and lower-case hex, the highest code point, and a key with escapes */
    assert_int_equal(parses("{\"k\\u00E9\\n\":\"\\uDBFF\\uDFFF\\u00Ff\"}", 4, &v), 0);
    assert_int_equal(v.n, 1);
    assert_string_equal(v.keys[0], "k\xc3\xa9\n");
    assert_string_equal(v.items[0].string, "\xf4\x8f\xbf\xbf\xc3\xbf");
    assert_non_null(json_strict_get(&v, "k\xc3\xa9\n"));
    json_strict_free(&v);
    assert_int_equal(parses("\"\"", 4, &v), 0);
    assert_string_equal(v.string, "");
    json_strict_free(&v);
    expect_error("\"\\U0041\"", 4, "escape");
    expect_error("\"\\ud83d\\n\"", 4, "surrogate");
    expect_error("\"line\nbreak\"", 4, "control");
    expect_error("\"\x7f ok then \x01\"", 4, "control");
}

static void test_utf8_valid(void **state) {
    (void)state;
    assert_true(json_strict_utf8_valid(""));
    assert_true(json_strict_utf8_valid("plain ascii \x7f"));
    assert_true(json_strict_utf8_valid("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"));
    assert_false(json_strict_utf8_valid("\xff"));
    assert_false(json_strict_utf8_valid("\xc3"));            /* cut short */
    assert_false(json_strict_utf8_valid("\xc0\xaf"));        /* overlong */
    assert_false(json_strict_utf8_valid("\xe0\x80\xaf"));    /* overlong */
    assert_false(json_strict_utf8_valid("\xed\xa0\x80"));    /* surrogate */
    assert_false(json_strict_utf8_valid("\xf4\x90\x80\x80")); /* above U+10FFFF */
    assert_false(json_strict_utf8_valid("ok \x80"));         /* a lone continuation byte */
}

/* A value budget: an array of more values than allowed stops at the first
 * one over (its byte offset named), long before it costs its node each. */
static void test_value_budget(void **state) {
    (void)state;
    json_strict_value v;
    char err[256];
    const char *ten = "[1,2,3,4,5,6,7,8,9]"; /* the array and nine numbers */
    assert_int_equal(json_strict_parse_budget(ten, strlen(ten), 4, 10, &v, err, sizeof err),
                     VAE_OK);
    assert_int_equal(v.n, 9);
    json_strict_free(&v);
    assert_int_equal(json_strict_parse_budget(ten, strlen(ten), 4, 9, &v, err, sizeof err),
                     VAE_ERR_TOO_MANY);
    assert_non_null(strstr(err, "more than 9 values at byte 17"));
    assert_int_equal(v.type, JSON_STRICT_NULL);
    assert_int_equal(json_strict_parse_budget(ten, strlen(ten), 4, 0, &v, err, sizeof err),
                     VAE_ERR_ARG);
    /* the default: JSON_STRICT_MAX_VALUES */
    size_t n = 4 * (size_t)JSON_STRICT_MAX_VALUES;
    char *long_array = malloc(2 * n + 1);
    assert_non_null(long_array);
    long_array[0] = '[';
    for (size_t i = 0; i < n; i++) {
        long_array[1 + 2 * i] = '0';
        long_array[2 + 2 * i] = i + 1 < n ? ',' : ']';
    }
    assert_int_equal(json_strict_parse(long_array, 2 * n + 1, 4, &v, err, sizeof err),
                     VAE_ERR_TOO_MANY);
    assert_non_null(strstr(err, "more than"));
    /* cut to the budget exactly, it parses */
    size_t fits = JSON_STRICT_MAX_VALUES - 1;
    long_array[2 * fits] = ']';
    assert_int_equal(json_strict_parse(long_array, 2 * fits + 1, 4, &v, err, sizeof err), VAE_OK);
    assert_int_equal(v.n, fits);
    json_strict_free(&v);
    free(long_array);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),      cmocka_unit_test(test_more_escapes),
        cmocka_unit_test(test_numbers),      cmocka_unit_test(test_more_numbers),
        cmocka_unit_test(test_structures),   cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_duplicate_keys), cmocka_unit_test(test_more_malformed),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_value_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
