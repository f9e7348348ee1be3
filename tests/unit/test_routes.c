/* routes: how a request finds its row — exact paths, "*" segments captured
 * in order, HEAD answered by GET rows, no match across a "/" or on an empty
 * or overlong segment — the Allow list of a known path, and which rows need
 * the token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "server/routes.h"

static const routes_entry *find(const char *method, const char *path, http_request *req)
{
    memset(req, 0, sizeof *req);
    return routes_find(method, path, req);
}

static void test_find(void **state)
{
    (void)state;
    http_request req;
    const routes_entry *r = find("GET", "/healthz", &req);
    assert_non_null(r);
    assert_string_equal(r->path, "/healthz");
    assert_int_equal(req.n_params, 0);

    r = find("GET", "/models/digits/versions/prod/file", &req);
    assert_non_null(r);
    assert_string_equal(r->path, "/models/*/versions/*/file");
    assert_int_equal(req.n_params, 2);
    assert_string_equal(req.params[0], "digits");
    assert_string_equal(req.params[1], "prod");

    /* The method picks among rows of one path. */
    r = find("DELETE", "/models/digits/versions/3", &req);
    assert_non_null(r);
    assert_string_equal(r->method, "DELETE");
    assert_string_equal(r->path, "/models/*/versions/*");
    r = find("HEAD", "/models/digits/versions/3", &req);
    assert_non_null(r);
    assert_string_equal(r->method, "GET");
    assert_string_equal(find("GET", "/interpolate", &req)->method, "GET");
    assert_string_equal(find("POST", "/interpolate", &req)->method, "POST");

    /* No match: another method, a "*" across "/", empty or missing segments,
     * a trailing slash, a prefix. */
    assert_null(find("POST", "/healthz", &req));
    assert_null(find("HEAD", "/sample", &req));
    assert_null(find("GET", "/models/a/b", &req));
    assert_null(find("GET", "/models//versions/1", &req));
    assert_null(find("GET", "/models/", &req));
    assert_null(find("GET", "/healthz/", &req));
    assert_null(find("GET", "/health", &req));
    assert_null(find("GET", "", &req));

    /* A segment longer than a parameter may hold matches nothing. */
    char path[HTTP_PARAM_MAX + 32];
    strcpy(path, "/models/");
    memset(path + 8, 'a', HTTP_PARAM_MAX);
    path[8 + HTTP_PARAM_MAX] = '\0';
    assert_null(find("GET", path, &req));
    path[8 + HTTP_PARAM_MAX - 1] = '\0'; /* HTTP_PARAM_MAX - 1 bytes fit */
    assert_non_null(find("GET", path, &req));
    assert_int_equal(strlen(req.params[0]), HTTP_PARAM_MAX - 1);
}

static void test_allowed(void **state)
{
    (void)state;
    char allow[ROUTES_ALLOW_MAX];
    assert_true(routes_allowed("/sample", allow, sizeof allow));
    assert_string_equal(allow, "POST");
    assert_true(routes_allowed("/interpolate", allow, sizeof allow));
    assert_string_equal(allow, "POST, GET, HEAD");
    assert_true(routes_allowed("/models/x/versions/1", allow, sizeof allow));
    assert_string_equal(allow, "GET, HEAD, DELETE");
    assert_false(routes_allowed("/nope", allow, sizeof allow));
    assert_string_equal(allow, "");
}

static void test_flags(void **state)
{
    (void)state;
    http_request req;
    assert_false(routes_need_token(find("GET", "/models", &req)));
    assert_false(routes_need_token(find("POST", "/sample", &req)));
    assert_false(routes_need_token(find("POST", "/encode", &req)));
    assert_true(routes_need_token(find("POST", "/models/m/checkpoints", &req)));
    assert_true(routes_need_token(find("PUT", "/models/m/aliases/a", &req)));
    assert_true(routes_need_token(find("DELETE", "/models/m/versions/1", &req)));
    assert_true(routes_need_token(find("POST", "/jobs", &req)));
    assert_false(routes_need_token(NULL));
    assert_true(find("POST", "/models/m/checkpoints", &req)->flags & ROUTES_UPLOAD);
    assert_false(find("POST", "/encode", &req)->flags & ROUTES_UPLOAD);
    /* Every row is reachable (no earlier row shadows it) and has a handler. */
    const char *method, *pattern;
    for (size_t i = 0; routes_at(i, &method, &pattern) == 0; i++) {
        char path[128];
        size_t n = 0;
        for (const char *p = pattern; *p && n + 2 < sizeof path; p++)
            path[n++] = *p == '*' ? 'x' : *p;
        path[n] = '\0';
        const routes_entry *r = find(method, path, &req);
        if (!r || strcmp(r->path, pattern) || strcmp(r->method, method) || !r->handler)
            fail_msg("%s %s does not reach its own row", method, path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
