/* Black-box tests of the registry over HTTP: uploads (validation, sha256,
 * idempotent retries, caps, content type), listing, versions, files with
 * ETags, aliases, deletion, bearer-token access, concurrent uploads, and
 * integrity when a client disconnects or the daemon is killed mid-upload. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/harness.h"

#define TOKEN "registry-test-token-0123456789"

typedef struct {
    char dir[HARNESS_PATH_MAX];
    harness_daemon daemon;
    int port;
} fixture;

static fixture fx;

static int teardown(void **state);

static int setup(void **state)
{
    memset(&fx, 0, sizeof fx);
    unsetenv("VAED_TOKEN");
    if (harness_tmpdir(fx.dir, sizeof fx.dir))
        goto fail;
    char token_path[HARNESS_PATH_MAX + 16];
    snprintf(token_path, sizeof token_path, "%s/token", fx.dir);
    FILE *f = fopen(token_path, "w");
    if (!f)
        goto fail;
    fprintf(f, "%s\n", TOKEN);
    fclose(f);
    char data_dir[HARNESS_PATH_MAX + 16];
    snprintf(data_dir, sizeof data_dir, "%s/data", fx.dir);
    const char *const args[] = {"--token-file", token_path, NULL};
    fx.port = harness_daemon_start(&fx.daemon, data_dir, args);
    if (fx.port < 0)
        goto fail;
    *state = &fx;
    return 0;
fail:
    teardown(state);
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (fx.daemon.pid > 0) /* a clean exit: no leak or sanitizer report in the daemon */
        rc = harness_daemon_stop(&fx.daemon);
    if (fx.dir[0])
        harness_rm_rf(fx.dir);
    return rc ? -1 : 0;
}

/* ---- helpers ---- */

static uint8_t *model_bytes(uint64_t seed, size_t *len)
{
    uint8_t *b = NULL;
    char err[256];
    if (harness_model_bytes(NULL, seed, &b, len, err, sizeof err))
        fail_msg("model bytes: %s", err);
    return b;
}

/* POST bytes as a checkpoint of model; token NULL sends no Authorization;
 * sha NULL sends no X-Content-SHA256. */
static void post_checkpoint(int port, const char *model, const void *bytes, size_t len,
                            const char *token, const char *sha, const char *ctype,
                            harness_response *r)
{
    char path[256], auth[256], sha_h[128], ct[128];
    snprintf(path, sizeof path, "/models/%s/checkpoints", model);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
    snprintf(sha_h, sizeof sha_h, "X-Content-SHA256: %s", sha ? sha : "");
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "application/octet-stream");
    const char *headers[4];
    int n = 0;
    headers[n++] = ct;
    if (token)
        headers[n++] = auth;
    if (sha)
        headers[n++] = sha_h;
    headers[n] = NULL;
    assert_int_equal(harness_request(port, "POST", path, headers, bytes ? bytes : "", len, r), 0);
}

/* Posts and expects status; returns the version in the answer. */
static int64_t post_ok(int port, const char *model, const void *bytes, size_t len, int status)
{
    harness_response r;
    char sha[65];
    harness_sha256_hex(bytes, len, sha);
    post_checkpoint(port, model, bytes, len, TOKEN, sha, NULL, &r);
    if (r.status != status)
        fail_msg("POST %s: %d %.*s", model, r.status, (int)r.body_len, (const char *)r.body);
    cJSON *root = harness_json(&r);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "sha256");
    const cJSON *z = cJSON_GetObjectItemCaseSensitive(root, "size");
    assert_true(cJSON_IsNumber(v));
    assert_true(cJSON_IsString(m));
    assert_string_equal(m->valuestring, model);
    assert_true(cJSON_IsString(s));
    assert_string_equal(s->valuestring, sha);
    assert_true(cJSON_IsNumber(z));
    assert_int_equal((size_t)z->valuedouble, len);
    int64_t version = (int64_t)v->valuedouble;
    cJSON_Delete(root);
    harness_response_free(&r);
    return version;
}

static void request_auth(int port, const char *method, const char *path, const char *body,
                         harness_response *r)
{
    const char *const headers[] = {"Authorization: Bearer " TOKEN,
                                   body ? "Content-Type: application/json" : NULL, NULL};
    assert_int_equal(
        harness_request(port, method, path, headers, body, body ? strlen(body) : 0, r), 0);
}

static cJSON *get_json(int port, const char *path, int status)
{
    harness_response r;
    assert_int_equal(harness_request(port, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status != status)
        fail_msg("GET %s: %d %.*s", path, r.status, (int)r.body_len, (const char *)r.body);
    cJSON *root = harness_json(&r);
    assert_non_null(root);
    harness_response_free(&r);
    return root;
}

static int64_t json_int(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    assert_true(cJSON_IsNumber(v));
    return (int64_t)v->valuedouble;
}

static int64_t db_int(const char *data_dir, const char *sql)
{
    char path[HARNESS_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/registry.db", data_dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "db_int %s: %s\n", sql, db ? sqlite3_errmsg(db) : "no db");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int connect_local(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void send_bytes(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len) {
        ssize_t n = send(fd, c, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        c += n;
        len -= (size_t)n;
    }
}

/* ---- uploads ---- */

static void test_upload_and_retry(void **state)
{
    (void)state;
    size_t len;
    uint8_t *a = model_bytes(11, &len);
    assert_int_equal(post_ok(fx.port, "digits", a, len, 201), 1);
    /* A CI retry of the same bytes: the existing version, 200. */
    assert_int_equal(post_ok(fx.port, "digits", a, len, 200), 1);
    /* No X-Content-SHA256 is fine too. */
    harness_response r;
    post_checkpoint(fx.port, "digits", a, len, TOKEN, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    size_t len_b;
    uint8_t *b = model_bytes(12, &len_b);
    assert_int_equal(post_ok(fx.port, "digits", b, len_b, 201), 2);
    free(a);
    free(b);
}

static void test_flipped_byte_fails_sha(void **state)
{
    (void)state;
    size_t len;
    uint8_t *a = model_bytes(21, &len);
    char sha[65];
    harness_sha256_hex(a, len, sha);
    a[len / 2] ^= 0x01;
    harness_response r;
    post_checkpoint(fx.port, "flip", a, len, TOKEN, sha, NULL, &r);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    assert_non_null(strstr((const char *)r.body, "sha256"));
    harness_response_free(&r);
    post_checkpoint(fx.port, "flip", a, len, TOKEN, "xyz", NULL, &r);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);
    cJSON *m = get_json(fx.port, "/models/flip", 404);
    cJSON_Delete(m);
    free(a);
}

static void expect_rejected(const char *what, const void *bytes, size_t len)
{
    harness_response r;
    post_checkpoint(fx.port, "rejects", bytes, len, TOKEN, NULL, NULL, &r);
    if (!harness_expect_error(&r, 422, "invalid_checkpoint"))
        fail_msg("%s was not refused with 422", what);
    harness_response_free(&r);
}

/* Replaces the first occurrence of from (same length as to) in buf. */
static void patch(uint8_t *buf, size_t len, const char *from, const char *to)
{
    size_t n = strlen(from);
    assert_int_equal(n, strlen(to));
    uint8_t *p = memmem(buf, len, from, n);
    assert_non_null(p);
    memcpy(p, to, n);
}

static void test_invalid_files_422(void **state)
{
    (void)state;
    size_t len;
    uint8_t *good = model_bytes(31, &len);
    uint8_t *b = malloc(len);
    assert_non_null(b);

    expect_rejected("a truncated file", good, len - 100);
    expect_rejected("a file cut inside its header", good, 200);

    memcpy(b, good, len);
    uint64_t huge = (uint64_t)len * 4;
    memcpy(b, &huge, 8); /* header length past the end of the file */
    expect_rejected("a header length past the end", b, len);

    memcpy(b, good, len);
    patch(b, len, "{\"__metadata__\"", "[\"__metadata__\"");
    expect_rejected("a header that is not JSON", b, len);

    memcpy(b, good, len);
    patch(b, len, "\"dtype\":\"F32\"", "\"dtype\":\"I32\"");
    expect_rejected("a tensor of dtype I32", b, len);

    memcpy(b, good, len);
    patch(b, len, "\\\"latent\\\":4", "\\\"latent\\\":5");
    expect_rejected("a config that disagrees with the shapes", b, len);

    memcpy(b, good, len);
    uint32_t nan_bits = 0x7fc00000u;
    memcpy(b + len - 4, &nan_bits, 4);
    expect_rejected("a NaN weight", b, len);

    const char text[] = "this is not a safetensors file at all, just text";
    expect_rejected("text", text, sizeof text - 1);
    expect_rejected("an empty body", NULL, 0);

    cJSON *m = get_json(fx.port, "/models/rejects", 404);
    cJSON_Delete(m);
    free(b);
    free(good);
}

static void test_content_type_415(void **state)
{
    (void)state;
    size_t len;
    uint8_t *a = model_bytes(41, &len);
    harness_response r;
    post_checkpoint(fx.port, "ctype", a, len, TOKEN, NULL, "application/json", &r);
    assert_true(harness_expect_error(&r, 415, "unsupported_media_type"));
    harness_response_free(&r);
    /* Parameters after the type are fine. */
    post_checkpoint(fx.port, "ctype", a, len, TOKEN, NULL, "application/octet-stream; x=1", &r);
    assert_int_equal(r.status, 201);
    harness_response_free(&r);
    free(a);
}

static void test_invalid_model_name(void **state)
{
    (void)state;
    size_t len;
    uint8_t *a = model_bytes(42, &len);
    harness_response r;
    post_checkpoint(fx.port, ".hidden", a, len, TOKEN, NULL, NULL, &r);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);
    free(a);
}

/* ---- reading ---- */

static void test_list_and_get(void **state)
{
    (void)state;
    /* digits has versions 1 and 2 (test_upload_and_retry). */
    cJSON *root = get_json(fx.port, "/models", 200);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    assert_true(cJSON_IsArray(models));
    int found = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, models)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
        assert_true(cJSON_IsString(name));
        if (!strcmp(name->valuestring, "digits")) {
            found = 1;
            assert_int_equal(json_int(m, "versions"), 2);
            assert_int_equal(json_int(m, "latest_version"), 2);
        }
    }
    assert_true(found);
    cJSON_Delete(root);

    root = get_json(fx.port, "/models/digits", 200);
    const cJSON *versions = cJSON_GetObjectItemCaseSensitive(root, "versions");
    assert_int_equal(cJSON_GetArraySize(versions), 2);
    assert_int_equal(json_int(cJSON_GetArrayItem(versions, 0), "version"), 1);
    assert_int_equal(json_int(cJSON_GetArrayItem(versions, 1), "version"), 2);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(versions, 0), "metrics"));
    const cJSON *aliases = cJSON_GetObjectItemCaseSensitive(root, "aliases");
    assert_int_equal(json_int(aliases, "latest"), 2);
    cJSON_Delete(root);

    /* By number and by alias. */
    root = get_json(fx.port, "/models/digits/versions/1", 200);
    assert_int_equal(json_int(root, "version"), 1);
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(root, "config");
    assert_true(cJSON_IsObject(config));
    assert_int_equal(json_int(config, "latent"), 4);
    cJSON_Delete(root);
    root = get_json(fx.port, "/models/digits/versions/latest", 200);
    assert_int_equal(json_int(root, "version"), 2);
    cJSON_Delete(root);

    cJSON_Delete(get_json(fx.port, "/models/nope", 404));
    cJSON_Delete(get_json(fx.port, "/models/digits/versions/9", 404));
    cJSON_Delete(get_json(fx.port, "/models/digits/versions/nosuchalias", 404));
}

static void test_file_etag(void **state)
{
    (void)state;
    size_t len;
    uint8_t *b = model_bytes(12, &len); /* digits version 2 */
    char sha[65], etag[70], inm[96];
    harness_sha256_hex(b, len, sha);
    snprintf(etag, sizeof etag, "\"%s\"", sha);

    harness_response r;
    assert_int_equal(
        harness_request(fx.port, "GET", "/models/digits/versions/2/file", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, len);
    assert_memory_equal(r.body, b, len);
    assert_non_null(harness_header(&r, "ETag"));
    assert_string_equal(harness_header(&r, "ETag"), etag);
    assert_string_equal(harness_header(&r, "Content-Type"), "application/octet-stream");
    harness_response_free(&r);

    snprintf(inm, sizeof inm, "If-None-Match: \"0000\", %s", etag);
    const char *const h[] = {inm, NULL};
    assert_int_equal(
        harness_request(fx.port, "GET", "/models/digits/versions/latest/file", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(harness_header(&r, "ETag"), etag);
    harness_response_free(&r);

    /* Another version's tag: the bytes. */
    assert_int_equal(
        harness_request(fx.port, "GET", "/models/digits/versions/1/file", h, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_false(r.body_len == len && !memcmp(r.body, b, len));
    harness_response_free(&r);
    free(b);
}

/* ---- aliases, deletion, inference by version ---- */

static void test_aliases_and_delete(void **state)
{
    (void)state;
    size_t len;
    uint8_t *a = model_bytes(51, &len), *b = model_bytes(52, &len), *c = model_bytes(53, &len);
    assert_int_equal(post_ok(fx.port, "life", a, len, 201), 1);
    assert_int_equal(post_ok(fx.port, "life", b, len, 201), 2);
    assert_int_equal(post_ok(fx.port, "life", c, len, 201), 3);

    harness_response r;
    request_auth(fx.port, "PUT", "/models/life/aliases/prod", "{\"version\": 1}", &r);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    cJSON *root = get_json(fx.port, "/models/life/versions/prod", 200);
    assert_int_equal(json_int(root, "version"), 1);
    cJSON_Delete(root);

    /* Inference picks a version by number or alias. */
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=1&model=life&version=prod",
                                     NULL, NULL, 0, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(harness_header(&r, "X-Model-Version"), "1");
    harness_response_free(&r);

    request_auth(fx.port, "PUT", "/models/life/aliases/prod", "{\"version\": 9}", &r);
    assert_true(harness_expect_error(&r, 404, "model_not_found"));
    harness_response_free(&r);
    request_auth(fx.port, "PUT", "/models/life/aliases/prod", "{\"v\": 1}", &r);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);
    request_auth(fx.port, "PUT", "/models/life/aliases/123", "{\"version\": 1}", &r);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);

    /* 409 while an alias other than latest points at it. */
    request_auth(fx.port, "DELETE", "/models/life/versions/1", NULL, &r);
    assert_true(harness_expect_error(&r, 409, "conflict"));
    harness_response_free(&r);
    request_auth(fx.port, "DELETE", "/models/life/aliases/prod", NULL, &r);
    assert_int_equal(r.status, 204);
    harness_response_free(&r);
    request_auth(fx.port, "DELETE", "/models/life/aliases/prod", NULL, &r);
    assert_true(harness_expect_error(&r, 404, "model_not_found"));
    harness_response_free(&r);
    request_auth(fx.port, "DELETE", "/models/life/versions/1", NULL, &r);
    assert_int_equal(r.status, 204);
    harness_response_free(&r);
    cJSON_Delete(get_json(fx.port, "/models/life/versions/1", 404));

    /* 'latest' may be deleted: it is a pointer at the highest version. */
    request_auth(fx.port, "DELETE", "/models/life/versions/3", NULL, &r);
    assert_int_equal(r.status, 204);
    harness_response_free(&r);
    root = get_json(fx.port, "/models/life/versions/latest", 200);
    assert_int_equal(json_int(root, "version"), 2);
    cJSON_Delete(root);
    /* Numbers are never reused: the next is 4, not 3. */
    assert_int_equal(post_ok(fx.port, "life", c, len, 201), 4);

    request_auth(fx.port, "DELETE", "/models/life/versions/latest", NULL, &r);
    assert_true(harness_expect_error(&r, 400, "bad_request"));
    harness_response_free(&r);
    request_auth(fx.port, "DELETE", "/models/life/versions/77", NULL, &r);
    assert_true(harness_expect_error(&r, 404, "model_not_found"));
    harness_response_free(&r);
    free(a);
    free(b);
    free(c);
}

/* ---- access ---- */

static void test_auth(void **state)
{
    (void)state;
    size_t len;
    uint8_t *a = model_bytes(61, &len);
    harness_response r;
    post_checkpoint(fx.port, "auth", a, len, NULL, NULL, NULL, &r);
    assert_true(harness_expect_error(&r, 401, "unauthorized"));
    assert_non_null(harness_header(&r, "WWW-Authenticate"));
    assert_string_equal(harness_header(&r, "WWW-Authenticate"), "Bearer");
    harness_response_free(&r);
    post_checkpoint(fx.port, "auth", a, len, "registry-test-token-0123456788", NULL, NULL, &r);
    assert_true(harness_expect_error(&r, 401, "unauthorized"));
    harness_response_free(&r);
    post_checkpoint(fx.port, "auth", a, len, TOKEN "x", NULL, NULL, &r);
    assert_true(harness_expect_error(&r, 401, "unauthorized"));
    harness_response_free(&r);
    const char *const basic[] = {"Authorization: Basic " TOKEN, NULL};
    assert_int_equal(
        harness_request(fx.port, "DELETE", "/models/digits/versions/1", basic, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 401, "unauthorized"));
    harness_response_free(&r);
    assert_int_equal(harness_request(fx.port, "PUT", "/models/digits/aliases/x", NULL,
                                     "{\"version\":1}", 13, &r),
                     0);
    assert_true(harness_expect_error(&r, 401, "unauthorized"));
    harness_response_free(&r);
    cJSON_Delete(get_json(fx.port, "/models/auth", 404)); /* nothing was stored */

    /* Reads and computations stay open. */
    cJSON_Delete(get_json(fx.port, "/models", 200));
    cJSON_Delete(get_json(fx.port, "/models/digits/versions/1", 200));
    assert_int_equal(harness_request(fx.port, "POST", "/sample?n=1&model=digits", NULL, NULL, 0,
                                     &r),
                     0);
    assert_int_equal(r.status, 200);
    harness_response_free(&r);
    free(a);
}

static void test_non_loopback_needs_token(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    harness_daemon d;
    const char *const args[] = {"--listen", "0.0.0.0:0", NULL};
    assert_true(harness_daemon_start(&d, dir, args) < 0); /* exited before listening */
    char *log = harness_daemon_log(&d);
    assert_non_null(log);
    assert_non_null(strstr(log, "without a token"));
    free(log);
    harness_rm_rf(dir);
}

/* ---- concurrency ---- */

typedef struct {
    int port;
    char model[32];
    uint8_t *bytes;
    size_t len;
    int status;
    int64_t version;
} upload_job;

static void *upload_thread(void *arg)
{
    upload_job *job = arg;
    char path[128];
    snprintf(path, sizeof path, "/models/%s/checkpoints", job->model);
    const char *const headers[] = {"Authorization: Bearer " TOKEN,
                                   "Content-Type: application/octet-stream", NULL};
    harness_response r;
    if (harness_request(job->port, "POST", path, headers, job->bytes, job->len, &r) == 0) {
        job->status = r.status;
        cJSON *root = harness_json(&r);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
        job->version = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
        cJSON_Delete(root);
    }
    harness_response_free(&r);
    return NULL;
}

static void test_concurrent_uploads(void **state)
{
    (void)state;
    enum { N = 8, SHARED = 6 };
    upload_job jobs[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].port = fx.port;
        if (i < SHARED)
            snprintf(jobs[i].model, sizeof jobs[i].model, "together");
        else
            snprintf(jobs[i].model, sizeof jobs[i].model, "alone%d", i);
        jobs[i].bytes = model_bytes(100 + (uint64_t)i, &jobs[i].len);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, upload_thread, &jobs[i]), 0);
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);
    int seen[SHARED + 1] = {0};
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].status, 201);
        if (i < SHARED) {
            assert_true(jobs[i].version >= 1 && jobs[i].version <= SHARED);
            seen[jobs[i].version]++;
        } else {
            assert_int_equal(jobs[i].version, 1);
        }
        free(jobs[i].bytes);
    }
    for (int v = 1; v <= SHARED; v++)
        assert_int_equal(seen[v], 1); /* distinct and gap-free */
    cJSON *root = get_json(fx.port, "/models/together", 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "versions")),
                     SHARED);
    cJSON_Delete(root);
}

/* A request holding a model while its version is deleted still completes. */
typedef struct {
    int port;
    int ok, gone, other;
} sample_job;

static void *sample_thread(void *arg)
{
    sample_job *job = arg;
    for (int i = 0; i < 12; i++) {
        harness_response r;
        if (harness_request(job->port, "POST", "/sample?n=256&seed=1&model=held&version=1", NULL,
                            NULL, 0, &r) == 0) {
            if (r.status == 200)
                job->ok++;
            else if (r.status == 404)
                job->gone++;
            else
                job->other++;
        } else {
            job->other++;
        }
        harness_response_free(&r);
    }
    return NULL;
}

static void test_delete_while_in_use(void **state)
{
    (void)state;
    size_t len;
    uint8_t *a = model_bytes(71, &len), *b = model_bytes(72, &len);
    assert_int_equal(post_ok(fx.port, "held", a, len, 201), 1);
    assert_int_equal(post_ok(fx.port, "held", b, len, 201), 2);
    sample_job jobs[2] = {{.port = fx.port}, {.port = fx.port}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, sample_thread, &jobs[i]), 0);
    harness_sleep_ms(30);
    harness_response r;
    request_auth(fx.port, "DELETE", "/models/held/versions/1", NULL, &r);
    assert_int_equal(r.status, 204);
    harness_response_free(&r);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(jobs[i].other, 0);
        assert_int_equal(jobs[i].ok + jobs[i].gone, 12);
    }
    /* The daemon is fine (and exits 0 under ASan at teardown). */
    cJSON_Delete(get_json(fx.port, "/models/held/versions/latest", 200));
    free(a);
    free(b);
}

/* ---- caps ---- */

static void test_upload_caps(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    harness_daemon d;
    /* Bodies of other routes capped at 1 MiB; uploads at 2 MiB. */
    const char *const args[] = {"--max-body-mb", "1", "--max-upload", "2", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);

    /* Declared over the cap: refused before a byte of the body. */
    harness_response r;
    const char *const big[] = {"Content-Type: application/octet-stream",
                               "Content-Length: 3000000", NULL};
    assert_int_equal(harness_request(port, "POST", "/models/x/checkpoints", big, NULL, 0, &r), 0);
    assert_true(harness_expect_error(&r, 413, "payload_too_large"));
    harness_response_free(&r);

    /* Over max_body but under max_upload: an upload takes it. */
    vae_config cfg;
    harness_small_config(&cfg);
    cfg.hidden[0] = 300; /* 784 * 300 floats each way: about 1.9 MB */
    uint8_t *bytes = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(harness_model_bytes(&cfg, 5, &bytes, &len, err, sizeof err), 0);
    assert_true(len > ((size_t)1 << 20) && len <= ((size_t)2 << 20));
    post_checkpoint(port, "big", bytes, len, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    harness_response_free(&r);
    /* The same size to another route: its own cap. */
    assert_int_equal(harness_request(port, "POST", "/sample?n=1", NULL, bytes, len, &r), 0);
    assert_true(harness_expect_error(&r, 413, "payload_too_large"));
    harness_response_free(&r);
    free(bytes);

    /* Chunked, so no length is declared: counted, refused past the cap. */
    size_t body_len = (size_t)5 << 19; /* 2.5 MiB */
    char *framed = malloc(body_len + 64);
    assert_non_null(framed);
    int head = snprintf(framed, 64, "%zx\r\n", body_len);
    memset(framed + head, 'x', body_len);
    memcpy(framed + head + body_len, "\r\n0\r\n\r\n", 7);
    const char *const chunked[] = {"Content-Type: application/octet-stream",
                                   "Transfer-Encoding: chunked", NULL};
    assert_int_equal(harness_request(port, "POST", "/models/x/checkpoints", chunked, framed,
                                     (size_t)head + body_len + 7, &r),
                     0);
    assert_true(harness_expect_error(&r, 413, "payload_too_large"));
    harness_response_free(&r);
    free(framed);

    assert_int_equal(harness_daemon_stop(&d), 0);
    assert_int_equal(db_int(dir, "SELECT COUNT(*) FROM checkpoints"), 1);
    harness_rm_rf(dir);
}

/* ---- a large upload stalls nothing ---- */

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

typedef struct {
    int port;
    const uint8_t *bytes;
    size_t len;
    int64_t sent, done; /* ns: when the last byte went out, when the answer came (atomic) */
    int status;
} big_upload;

/* Sends the whole upload, notes the time, then waits for the answer. */
static void *big_upload_thread(void *arg)
{
    big_upload *u = arg;
    int fd = connect_local(u->port);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /models/huge/checkpoints HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     u->len);
    send_bytes(fd, head, (size_t)n);
    send_bytes(fd, u->bytes, u->len);
    __atomic_store_n(&u->sent, now_ns(), __ATOMIC_RELEASE);
    char answer[64] = "";
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, answer + got, sizeof answer - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got >= 12)
            break;
    }
    answer[got] = '\0';
    u->status = got >= 12 ? atoi(answer + 9) : 0;
    __atomic_store_n(&u->done, now_ns(), __ATOMIC_RELEASE);
    close(fd);
    return NULL;
}

/* With one polling thread, a 50 MB upload is hashed, checked and committed
 * (seconds) while /healthz keeps answering in well under half that time:
 * the work runs off the polling thread. (Done there, every /healthz sent
 * meanwhile waits for all of it.) */
static void test_big_upload_does_not_stall(void **state)
{
    (void)state;
    vae_config cfg;
    harness_small_config(&cfg);
    cfg.hidden[0] = 8192; /* 784 x 8192 floats each way: about 50 MB */
    uint8_t *bytes = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(harness_model_bytes(&cfg, 9, &bytes, &len, err, sizeof err), 0);
    assert_true(len > ((size_t)40 << 20) && len < ((size_t)256 << 20));
    char dir[HARNESS_PATH_MAX];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    harness_daemon d;
    const char *const args[] = {"--threads", "1", NULL};
    int port = harness_daemon_start(&d, dir, args);
    assert_true(port > 0);

    big_upload u = {.port = port, .bytes = bytes, .len = len};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, big_upload_thread, &u), 0);
    while (!__atomic_load_n(&u.sent, __ATOMIC_ACQUIRE))
        harness_sleep_ms(1);
    int64_t worst = 0;
    int during = 0; /* /healthz answered while the upload was being processed */
    while (!__atomic_load_n(&u.done, __ATOMIC_ACQUIRE)) {
        int64_t t0 = now_ns();
        harness_response r;
        assert_int_equal(harness_request(port, "GET", "/healthz", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        harness_response_free(&r);
        int64_t t1 = now_ns();
        int64_t done = __atomic_load_n(&u.done, __ATOMIC_ACQUIRE);
        if (!done || t1 < done)
            during++;
        if ((!done || t0 < done) && t1 - t0 > worst)
            worst = t1 - t0; /* asked while the upload was still being processed */
        harness_sleep_ms(5);
    }
    pthread_join(t, NULL);
    assert_int_equal(u.status, 201);
    int64_t window = u.done - u.sent;
    if (during < 3 || worst > window / 2)
        fail_msg("the upload took %.3f s after its last byte; %d /healthz answered meanwhile, "
                 "the slowest in %.3f s",
                 1e-9 * (double)window, during, 1e-9 * (double)worst);
    fprintf(stderr, "big upload: %.3f s after its last byte, %d /healthz meanwhile, slowest %.4f s\n",
            1e-9 * (double)window, during, 1e-9 * (double)worst);
    cJSON *root = get_json(port, "/models/huge/versions/1", 200);
    cJSON_Delete(root);
    free(bytes);
    assert_int_equal(harness_daemon_stop(&d), 0);
    harness_rm_rf(dir);
}

/* ---- integrity ---- */

/* Sends the headers and part of a declared body of total bytes; returns the
 * socket, still open. */
static int start_partial_upload(int port, const char *model, size_t total, const uint8_t *bytes,
                                size_t sent)
{
    int fd = connect_local(port);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /models/%s/checkpoints HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Authorization: Bearer " TOKEN "\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                     model, total);
    send_bytes(fd, head, (size_t)n);
    send_bytes(fd, bytes, sent);
    return fd;
}

static void test_disconnect_leaves_nothing(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    harness_daemon d;
    int port = harness_daemon_start(&d, dir, NULL);
    assert_true(port > 0);
    size_t len;
    uint8_t *a = model_bytes(81, &len);
    int fd = connect_local(port);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /models/ghost/checkpoints HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                     len);
    send_bytes(fd, head, (size_t)n);
    send_bytes(fd, a, len / 2);
    harness_sleep_ms(100);
    close(fd);
    harness_sleep_ms(200);
    cJSON_Delete(get_json(port, "/models/ghost", 404));
    /* The daemon goes on taking uploads. */
    harness_response r;
    post_checkpoint(port, "ghost2", a, len, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 201);
    harness_response_free(&r);
    assert_int_equal(harness_daemon_stop(&d), 0);
    assert_int_equal(db_int(dir, "SELECT COUNT(*) FROM checkpoints"), 1);
    assert_int_equal(db_int(dir, "SELECT COUNT(*) FROM blobs"), 1);
    assert_int_equal(db_int(dir, "SELECT COUNT(*) FROM models WHERE name = 'ghost'"), 0);
    free(a);
    harness_rm_rf(dir);
}

static void test_kill9_mid_upload(void **state)
{
    (void)state;
    char dir[HARNESS_PATH_MAX];
    assert_int_equal(harness_tmpdir(dir, sizeof dir), 0);
    harness_daemon d;
    int port = harness_daemon_start(&d, dir, NULL);
    assert_true(port > 0);
    size_t len;
    uint8_t *a = model_bytes(91, &len);
    assert_int_equal(post_ok(port, "kept", a, len, 201), 1);

    /* 20 MB declared, sent slowly; the daemon dies with half of it in. */
    size_t total = (size_t)20 << 20, chunk = (size_t)1 << 20;
    uint8_t *junk = calloc(1, chunk);
    assert_non_null(junk);
    int fd = start_partial_upload(port, "partial", total, junk, chunk);
    for (int i = 0; i < 9; i++) {
        send_bytes(fd, junk, chunk);
        harness_sleep_ms(20);
    }
    assert_int_equal(harness_daemon_kill9(&d), 128 + 9);
    close(fd);

    port = harness_daemon_start(&d, dir, NULL);
    assert_true(port > 0);
    cJSON_Delete(get_json(port, "/models/partial", 404));
    cJSON *root = get_json(port, "/models/kept/versions/1", 200);
    cJSON_Delete(root);
    assert_int_equal(harness_daemon_stop(&d), 0);

    char path[HARNESS_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/registry.db", dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_int_equal(db_int(dir, "SELECT COUNT(*) FROM checkpoints"), 1);
    assert_int_equal(db_int(dir, "SELECT COUNT(*) FROM blobs"), 1);
    free(junk);
    free(a);
    harness_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upload_and_retry),
        cmocka_unit_test(test_flipped_byte_fails_sha),
        cmocka_unit_test(test_invalid_files_422),
        cmocka_unit_test(test_content_type_415),
        cmocka_unit_test(test_invalid_model_name),
        cmocka_unit_test(test_list_and_get),
        cmocka_unit_test(test_file_etag),
        cmocka_unit_test(test_aliases_and_delete),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_non_loopback_needs_token),
        cmocka_unit_test(test_concurrent_uploads),
        cmocka_unit_test(test_delete_while_in_use),
        cmocka_unit_test(test_upload_caps),
        cmocka_unit_test(test_big_upload_does_not_stall),
        cmocka_unit_test(test_disconnect_leaves_nothing),
        cmocka_unit_test(test_kill9_mid_upload),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
