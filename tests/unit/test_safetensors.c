/* Unit tests for engine/safetensors.c: the parser's rejections, a
 * hand-written reference file, round trips through memory and disk (also of
 * dtypes other than F32), and the atomic write. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/file_io.h"
#include "engine/safetensors.h"

/* ---- safetensors parsing ------------------------------------------------ */

/* Builds 8-byte length + header + data_len zero bytes; caller frees. */
static uint8_t *make_file(const char *header, uint64_t declared_len, size_t data_len,
                          size_t *len) {
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    uint8_t *b = calloc(1, *len);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(declared_len >> (8 * i));
    memcpy(b + 8, header, hl);
    return b;
}

static void expect_st_error(const char *header, size_t data_len, const char *msg_part) {
    size_t len;
    uint8_t *b = make_file(header, strlen(header), data_len, &len);
    st_file f;
    char err[512] = "";
    int rc = st_parse(b, len, &f, err, sizeof err);
    if (rc == 0) print_message("accepted bad header: %s\n", header);
    assert_int_equal(rc, VAE_ERR_FORMAT);
    if (msg_part && !strstr(err, msg_part)) {
        print_message("error for %s was \"%s\", wanted \"%s\"\n", header, err, msg_part);
        fail();
    }
    assert_int_equal(f.n_tensors, 0);
    assert_null(f.tensors);
    st_free(&f);
    free(b);
}

static void test_st_rejects(void **state) {
    (void)state;
    const char *t1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    st_file f;
    char err[512];
    size_t len;

    /* Sanity: the base case parses. */
    uint8_t *b = make_file(t1, strlen(t1), 8, &len);
    assert_int_equal(st_parse(b, len, &f, err, sizeof err), 0);
    assert_int_equal(f.n_tensors, 1);
    st_free(&f);

    /* Header length larger than the file. */
    b[0] = (uint8_t)(strlen(t1) + 9);
    assert_int_equal(st_parse(b, len, &f, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "header length"));
    /* Huge header length. */
    for (int i = 0; i < 8; i++) b[i] = 0xff;
    assert_int_equal(st_parse(b, len, &f, err, sizeof err), VAE_ERR_FORMAT);
    b[7] = 0;
    b[6] = 0;
    assert_int_equal(st_parse(b, len, &f, err, sizeof err), VAE_ERR_FORMAT);
    free(b);

    /* Too short for the length itself; empty buffer. */
    uint8_t tiny[5] = {1, 0, 0, 0, 0};
    assert_int_equal(st_parse(tiny, sizeof tiny, &f, err, sizeof err), VAE_ERR_FORMAT);
    assert_int_equal(st_parse(NULL, 0, &f, err, sizeof err), VAE_ERR_FORMAT);

    /* Truncated JSON: the declared length cuts the header short. */
    b = make_file(t1, strlen(t1) - 5, 8, &len);
    assert_int_equal(st_parse(b, len, &f, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, "header"));
    free(b);

    expect_st_error("[1,2]", 0, "not a JSON object");
    expect_st_error("\"x\"", 0, "not a JSON object");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8,
                    "trailing");
    /* Offsets out of range. */
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                    "\"a\"");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9,9]}}", 4,
                    "beyond");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "begin");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, NULL);
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8, NULL);
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 9, NULL);
    /* Overlapping. */
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    12, "overlaps");
    /* A hole between tensors, and unused bytes at the end. */
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                    12, "gap before tensor \"b\"");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "cover");
    expect_st_error("{}", 8, "no tensors");
    /* Shape and length disagree. */
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                    "needs 12");
    expect_st_error("{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, NULL);
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                    "\"data_offsets\":[0,8]}}",
                    8, "overflow");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                    "shape[0]");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],"
                    "\"data_offsets\":[0,8]}}",
                    8, "dimensions");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape");
    /* Bad dtype. */
    expect_st_error("{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                    "unknown dtype");
    expect_st_error("{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    expect_st_error("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8,
                    "unknown field");
    expect_st_error("{\"a\":[1]}", 8, "not an object");
    /* Duplicate names. */
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, "duplicate");
    /* Metadata must map strings to strings. */
    expect_st_error("{\"__metadata__\":{\"k\":1},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    4, "not a string");
    expect_st_error("{\"__metadata__\":{\"k\":{}},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    4, NULL);
    expect_st_error("{\"__metadata__\":[\"k\"],"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    4, "__metadata__");
    /* Deep nesting. */
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[[[[[[[[1]]]]]]]],\"data_offsets\":[0,4]}}",
                    4, "deep");
    /* Names: empty and too long. */
    expect_st_error("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty");
    char longhdr[800];
    char name[ST_NAME_MAX + 1];
    memset(name, 'n', ST_NAME_MAX);
    name[ST_NAME_MAX] = '\0';
    snprintf(longhdr, sizeof longhdr,
             "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", name);
    expect_st_error(longhdr, 4, "name longer");

    /* st_free is safe on a zeroed struct. */
    st_file z;
    memset(&z, 0, sizeof z);
    st_free(&z);
}

/* A file laid out as the reference implementation writes one: header padded
 * with spaces to 8 bytes, tensors listed out of offset order, metadata. */
static void test_st_reference_file(void **state) {
    (void)state;
    static const char header[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
        "\"idx\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[16,24]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[24,26]}}";
    static const uint8_t len_bytes[8] = {0xc8, 0, 0, 0, 0, 0, 0, 0}; /* 200 */
    static const uint8_t data[26] = {
        0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x3f, 0x00,
        0x00, 0x50, 0x40, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x3c};
    uint8_t buf[8 + 200 + 26];
    assert_true(strlen(header) <= 200);
    memcpy(buf, len_bytes, 8);
    memset(buf + 8, ' ', 200);
    memcpy(buf + 8, header, strlen(header));
    memcpy(buf + 208, data, sizeof data);

    st_file f;
    char err[256] = "";
    int rc = st_parse(buf, sizeof buf, &f, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(f.n_tensors, 3);
    assert_int_equal(f.n_meta, 1);
    assert_string_equal(st_meta_get(&f, "format"), "pt");
    assert_null(st_meta_get(&f, "missing"));
    assert_int_equal(f.data_len, 26);
    assert_ptr_equal(f.data, buf + 208);

    const st_tensor_info *w = st_find(&f, "w");
    assert_non_null(w);
    assert_string_equal(w->dtype, "F32");
    assert_int_equal(w->ndim, 2);
    assert_int_equal(w->shape[0], 2);
    assert_int_equal(w->shape[1], 2);
    float wv[4];
    memcpy(wv, f.data + w->begin, sizeof wv);
    assert_true(wv[0] == 1.0f && wv[1] == -2.0f && wv[2] == 0.5f && wv[3] == 3.25f);

    const st_tensor_info *idx = st_find(&f, "idx");
    assert_non_null(idx);
    assert_string_equal(idx->dtype, "I64");
    int64_t iv;
    memcpy(&iv, f.data + idx->begin, sizeof iv);
    assert_int_equal(iv, -7);

    const st_tensor_info *h = st_find(&f, "h");
    assert_non_null(h);
    assert_string_equal(h->dtype, "F16");
    assert_int_equal(h->ndim, 0);
    assert_int_equal(h->end - h->begin, 2);
    assert_null(st_find(&f, "nope"));
    st_free(&f);
    st_free(&f);
}

/* ---- writing ------------------------------------------------------------ */

static void check_round_trip(const st_file *f, const float *a, const float *b) {
    assert_int_equal(f->n_tensors, 3);
    const st_tensor_info *ta = st_find(f, "enc.fc1.weight");
    const st_tensor_info *tb = st_find(f, "name with \"quotes\" \\ and \xc3\xa9");
    const st_tensor_info *te = st_find(f, "empty");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_non_null(te);
    assert_string_equal(ta->dtype, "F32");
    assert_int_equal(ta->ndim, 2);
    assert_int_equal(ta->shape[0], 3);
    assert_int_equal(ta->shape[1], 2);
    assert_int_equal(tb->ndim, 1);
    assert_int_equal(tb->shape[0], 5);
    assert_int_equal(te->ndim, 2);
    assert_int_equal(te->shape[0], 0);
    assert_int_equal(te->begin, te->end);
    assert_memory_equal(f->data + ta->begin, a, 6 * sizeof(float));
    assert_memory_equal(f->data + tb->begin, b, 5 * sizeof(float));
    assert_int_equal(f->n_meta, 2);
    assert_string_equal(st_meta_get(f, "config"), "{\"z_dim\": 16,\n\t\"x\": \"y\"}");
    assert_string_equal(st_meta_get(f, "note"), "ctrl \x01 \xe2\x82\xac");
}

static void fill_round_trip(st_tensor_out t[3], float a[6], float b[5]) {
    for (int i = 0; i < 6; i++) a[i] = (float)i * 0.5f - 1.0f;
    for (int i = 0; i < 5; i++) b[i] = (float)i * -1.25f;
    b[4] = INFINITY;
    memset(t, 0, 3 * sizeof t[0]);
    t[0] = (st_tensor_out){.name = "enc.fc1.weight", .ndim = 2, .shape = {3, 2}, .data = a};
    t[1] = (st_tensor_out){.name = "name with \"quotes\" \\ and \xc3\xa9", .ndim = 1, .shape = {5},
                           .data = b};
    t[2] = (st_tensor_out){.name = "empty", .ndim = 2, .shape = {0, 7}, .data = NULL};
}

static const char *const meta_keys[] = {"config", "note"};
static const char *const meta_values[] = {"{\"z_dim\": 16,\n\t\"x\": \"y\"}",
                                          "ctrl \x01 \xe2\x82\xac"};

static void test_st_round_trip_mem(void **state) {
    (void)state;
    st_tensor_out t[3];
    float a[6], b[5];
    fill_round_trip(t, a, b);
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    int rc = st_write_mem(t, 3, meta_keys, meta_values, 2, &buf, &len, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    assert_int_equal((8 + n) % 8, 0);
    assert_int_equal(len, 8 + n + 44);
    assert_int_equal(buf[8], '{');

    st_file f;
    rc = st_parse(buf, len, &f, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    check_round_trip(&f, a, b);
    st_free(&f);
    free(buf);

    /* No tensors and no metadata is still a valid file. */
    rc = st_write_mem(NULL, 0, NULL, NULL, 0, &buf, &len, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(len, 16);
    assert_int_equal(st_parse(buf, len, &f, err, sizeof err), 0);
    assert_int_equal(f.n_tensors, 0);
    st_free(&f);
    free(buf);

    /* Bad arguments. */
    st_tensor_out dup[2] = {{.name = "x", .ndim = 1, .shape = {1}, .data = a},
                            {.name = "x", .ndim = 1, .shape = {1}, .data = a}};
    assert_int_equal(st_write_mem(dup, 2, NULL, NULL, 0, &buf, &len, err, sizeof err), VAE_ERR_ARG);
    assert_non_null(strstr(err, "duplicate"));
    assert_null(buf);
    st_tensor_out bad = {.name = "x", .ndim = 9, .data = a};
    assert_int_equal(st_write_mem(&bad, 1, NULL, NULL, 0, &buf, &len, err, sizeof err), VAE_ERR_ARG);
    st_tensor_out neg = {.name = "x", .ndim = 1, .shape = {-1}, .data = a};
    assert_int_equal(st_write_mem(&neg, 1, NULL, NULL, 0, &buf, &len, err, sizeof err), VAE_ERR_ARG);
    st_tensor_out meta_name = {.name = "__metadata__", .ndim = 1, .shape = {1}, .data = a};
    assert_int_equal(st_write_mem(&meta_name, 1, NULL, NULL, 0, &buf, &len, err, sizeof err),
                     VAE_ERR_ARG);
    const char *k2[] = {"k", "k"}, *v2[] = {"1", "2"};
    assert_int_equal(st_write_mem(NULL, 0, k2, v2, 2, &buf, &len, err, sizeof err), VAE_ERR_ARG);
    const char *kbad[] = {"bad \xff utf8"};
    assert_int_equal(st_write_mem(NULL, 0, kbad, v2, 1, &buf, &len, err, sizeof err), VAE_ERR_ARG);
}

/* Tensors of other dtypes keep their bytes and name their dtype in the header. */
static void test_st_write_other_dtypes(void **state) {
    (void)state;
    double d[3] = {NAN, -0.0, 1.0 / 3.0};
    int32_t k[4] = {3, -1, INT32_MAX, 0};
    float f[2] = {1.5f, -2.0f};
    st_tensor_out t[3] = {
        {.name = "d", .ndim = 1, .shape = {3}, .data = d, .dtype = "F64"},
        {.name = "k", .ndim = 2, .shape = {2, 2}, .data = k, .dtype = "I32"},
        {.name = "f", .ndim = 1, .shape = {2}, .data = f, .dtype = "F32"},
    };
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    assert_int_equal(st_write_mem(t, 3, NULL, NULL, 0, &buf, &len, err, sizeof err), 0);
    st_file sf;
    assert_int_equal(st_parse(buf, len, &sf, err, sizeof err), 0);
    const st_tensor_info *td = st_find(&sf, "d"), *tk = st_find(&sf, "k"), *tf = st_find(&sf, "f");
    assert_non_null(td);
    assert_non_null(tk);
    assert_non_null(tf);
    assert_string_equal(td->dtype, "F64");
    assert_string_equal(tk->dtype, "I32");
    assert_string_equal(tf->dtype, "F32");
    assert_int_equal(td->end - td->begin, sizeof d);
    assert_int_equal(tk->end - tk->begin, sizeof k);
    assert_int_equal(tk->ndim, 2);
    assert_memory_equal(sf.data + td->begin, d, sizeof d);
    assert_memory_equal(sf.data + tk->begin, k, sizeof k);
    assert_memory_equal(sf.data + tf->begin, f, sizeof f);
    st_free(&sf);
    free(buf);

    st_tensor_out unknown = {.name = "x", .ndim = 1, .shape = {1}, .data = f, .dtype = "F31"};
    buf = NULL;
    assert_int_equal(st_write_mem(&unknown, 1, NULL, NULL, 0, &buf, &len, err, sizeof err),
                     VAE_ERR_ARG);
    assert_non_null(strstr(err, "F31"));
    assert_null(buf);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void test_st_round_trip_file(void **state) {
    (void)state;
    char dir[] = "/tmp/vaed_test_st_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], sub[256], missing[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(missing, sizeof missing, "%s/nodir/model.safetensors", dir);

    st_tensor_out t[3];
    float a[6], b[5];
    fill_round_trip(t, a, b);
    char err[512] = "";
    int rc = st_write_file(path, t, 3, meta_keys, meta_values, 2, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(count_entries(dir), 1); /* no temporary left behind */

    st_file f;
    rc = st_read_file(path, &f, err, sizeof err);
    if (rc) print_message("%s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(f.owned_buf);
    check_round_trip(&f, a, b);
    st_free(&f);

    /* Overwrite with different content. */
    a[0] = 42.0f;
    assert_int_equal(st_write_file(path, t, 3, meta_keys, meta_values, 2, err, sizeof err), 0);
    assert_int_equal(st_read_file(path, &f, err, sizeof err), 0);
    check_round_trip(&f, a, b);
    st_free(&f);
    assert_int_equal(count_entries(dir), 1);

    /* Failures leave no temporary and do not touch the target. */
    assert_int_equal(st_write_file(missing, t, 3, NULL, NULL, 0, err, sizeof err), VAE_ERR_IO);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(mkdir(sub, 0755), 0);
    const uint8_t bytes[3] = {1, 2, 3};
    assert_int_equal(st_write_file(sub, t, 3, NULL, NULL, 0, err, sizeof err), VAE_ERR_IO);
    struct stat sb;
    assert_int_equal(stat(sub, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(count_entries(dir), 2);
    assert_int_equal(st_read_file(path, &f, err, sizeof err), 0);
    check_round_trip(&f, a, b);
    st_free(&f);

    /* Reading: missing file, directory, garbage file. */
    assert_int_equal(st_read_file(missing, &f, err, sizeof err), VAE_ERR_IO);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(st_read_file(sub, &f, err, sizeof err), VAE_ERR_IO);
    char junk[256];
    snprintf(junk, sizeof junk, "%s/junk", dir);
    assert_int_equal(file_io_write_atomic(junk, bytes, 3, err, sizeof err), VAE_OK);
    assert_int_equal(st_read_file(junk, &f, err, sizeof err), VAE_ERR_FORMAT);
    assert_non_null(strstr(err, junk));
    assert_null(f.owned_buf);
    st_free(&f);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(unlink(junk), 0);
    assert_int_equal(rmdir(sub), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st_rejects),
        cmocka_unit_test(test_st_reference_file),  cmocka_unit_test(test_st_round_trip_mem),
        cmocka_unit_test(test_st_round_trip_file), cmocka_unit_test(test_st_write_other_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
