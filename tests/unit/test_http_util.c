/* http_util: the error table is total (every http_error has a 4xx/5xx status
 * and its own code; anything else reads as 500 internal), each service's
 * status maps to an http_error for every value it has (OK to HTTP_ERR_NONE,
 * every error to a real one) with the documented rows, Accept q values and
 * format negotiation, the strict number parsers, and If-None-Match
 * matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "server/http_util.h"

static void test_error_table_is_total(void **state)
{
    (void)state;
    for (int e = 0; e < HTTP_ERR_COUNT; e++) {
        unsigned status = http_error_status((http_error)e);
        const char *code = http_error_code((http_error)e);
        if (status < 400 || status > 599)
            fail_msg("http_error %d has status %u", e, status);
        if (!code || !*code)
            fail_msg("http_error %d has no code", e);
        for (int f = 0; f < e; f++)
            if (!strcmp(code, http_error_code((http_error)f)))
                fail_msg("http_error %d and %d share the code %s", f, e, code);
    }
    assert_int_equal(http_error_status(HTTP_ERR_NONE), 500);
    assert_string_equal(http_error_code(HTTP_ERR_NONE), "internal");
    assert_int_equal(http_error_status(HTTP_ERR_COUNT), 500);
    assert_int_equal(http_error_status((http_error)1000), 500);
    /* A few rows clients depend on. */
    assert_int_equal(http_error_status(HTTP_ERR_PAYLOAD_TOO_LARGE), 413);
    assert_string_equal(http_error_code(HTTP_ERR_PAYLOAD_TOO_LARGE), "payload_too_large");
    assert_int_equal(http_error_status(HTTP_ERR_TOO_MANY_REQUESTS), 429);
    assert_int_equal(http_error_status(HTTP_ERR_MODEL_NOT_FOUND), 404);
    assert_string_equal(http_error_code(HTTP_ERR_MODEL_NOT_FOUND), "model_not_found");
    assert_int_equal(http_error_status(HTTP_ERR_INVALID_CHECKPOINT), 422);
    assert_int_equal(http_error_status(HTTP_ERR_NO_MODEL), 503);
}

/* OK gives HTTP_ERR_NONE, every error a real http_error. The switches in
 * http_util.c have no default, so a value a service adds without a row is a
 * build error; these loops check what each row says. */
static void check_error(int value, http_error e, int is_ok, const char *what)
{
    if (is_ok ? e != HTTP_ERR_NONE : (e < 0 || e >= HTTP_ERR_COUNT))
        fail_msg("%s %d maps to http_error %d", what, value, e);
}

static void test_service_tables(void **state)
{
    (void)state;
    for (int s = REGISTRY_OK; s <= REGISTRY_ERR_NOMEM; s++)
        check_error(s, http_error_from_registry((registry_status)s), s == REGISTRY_OK, "registry");
    for (int s = MODEL_CACHE_OK; s <= MODEL_CACHE_ERR_NOMEM; s++)
        check_error(s, http_error_from_model_cache((model_cache_status)s), s == MODEL_CACHE_OK,
                    "model_cache");
    for (int s = VAE_OK; s <= VAE_ERR_TOO_MANY; s++)
        check_error(s, http_error_from_vae((vae_status)s), s == VAE_OK, "vae");
    for (int s = JOBS_POOL_OK; s <= JOBS_POOL_ERR_NOMEM; s++)
        check_error(s, http_error_from_jobs((jobs_pool_status)s), s == JOBS_POOL_OK, "jobs_pool");
    for (int s = DATA_CACHE_OK; s <= DATA_CACHE_ERR_LOAD; s++)
        check_error(s, http_error_from_data_cache((data_cache_status)s), s == DATA_CACHE_OK,
                    "data_cache");

    assert_int_equal(http_error_from_registry(REGISTRY_ERR_NOT_FOUND), HTTP_ERR_MODEL_NOT_FOUND);
    assert_int_equal(http_error_from_registry(REGISTRY_ERR_CONFLICT), HTTP_ERR_CONFLICT);
    assert_int_equal(http_error_from_registry(REGISTRY_ERR_ARG), HTTP_ERR_BAD_REQUEST);
    assert_int_equal(http_error_from_registry(REGISTRY_ERR_NOMEM), HTTP_ERR_UNAVAILABLE);
    assert_int_equal(http_error_from_registry(REGISTRY_ERR_DB), HTTP_ERR_INTERNAL);

    assert_int_equal(http_error_from_model_cache(MODEL_CACHE_ERR_NOT_FOUND),
                     HTTP_ERR_MODEL_NOT_FOUND);
    assert_int_equal(http_error_from_model_cache(MODEL_CACHE_ERR_NO_MODEL), HTTP_ERR_NO_MODEL);
    assert_int_equal(http_error_from_model_cache(MODEL_CACHE_ERR_LOAD), HTTP_ERR_INTERNAL);
    assert_int_equal(http_error_from_model_cache(MODEL_CACHE_ERR_NOMEM), HTTP_ERR_UNAVAILABLE);

    assert_int_equal(http_error_from_vae(VAE_ERR_FORMAT), HTTP_ERR_INVALID_CHECKPOINT);
    assert_int_equal(http_error_from_vae(VAE_ERR_ARG), HTTP_ERR_INVALID_CHECKPOINT);
    assert_int_equal(http_error_from_vae(VAE_ERR_NONFINITE), HTTP_ERR_INVALID_CHECKPOINT);
    assert_int_equal(http_error_from_vae(VAE_ERR_NOMEM), HTTP_ERR_UNAVAILABLE);

    /* What POST /jobs and the other job routes have always answered. */
    assert_int_equal(http_error_from_jobs(JOBS_POOL_ERR_INVALID), HTTP_ERR_UNPROCESSABLE);
    assert_int_equal(http_error_from_jobs(JOBS_POOL_ERR_NOT_FOUND), HTTP_ERR_NOT_FOUND);
    assert_int_equal(http_error_from_jobs(JOBS_POOL_ERR_CONFLICT), HTTP_ERR_CONFLICT);
    assert_int_equal(http_error_from_jobs(JOBS_POOL_ERR_STOPPING), HTTP_ERR_UNAVAILABLE);
    assert_int_equal(http_error_from_jobs(JOBS_POOL_ERR_NOMEM), HTTP_ERR_UNAVAILABLE);
    assert_int_equal(http_error_from_jobs(JOBS_POOL_ERR_DB), HTTP_ERR_INTERNAL);
    assert_int_equal(http_error_from_jobs(JOBS_POOL_ERR_IO), HTTP_ERR_INTERNAL);

    assert_int_equal(http_error_from_data_cache(DATA_CACHE_ERR_FULL), HTTP_ERR_UNAVAILABLE);
    assert_int_equal(http_error_from_data_cache(DATA_CACHE_ERR_LOAD), HTTP_ERR_NOT_FOUND);
}

static void test_accept_q(void **state)
{
    (void)state;
    static const struct {
        const char *accept, *mime;
        double q;
    } cases[] = {
        {"image/png", "image/png", 1.0},
        {"IMAGE/PNG", "image/png", 1.0},
        {"image/*;q=0.5", "image/png", 0.5},
        {"image/*;q=0.5", "application/json", 0.0},
        {"*/*;q=0.1, image/png;q=0.8", "image/png", 0.8},
        {"image/png;q=0.8, */*;q=0.1", "image/png", 0.8},
        {"*/*;q=0.1, image/png;q=0.8", "application/x-npy", 0.1},
        {"image/*;q=0.3, image/png;q=0", "image/png", 0.0},
        {"image/png; level=1; q=0.3", "image/png", 0.3},
        {"image/png;Q=0.25", "image/png", 0.25},
        {"image/png;q=abc", "image/png", 0.0},
        {"image/png;q=1.5", "image/png", 0.0},
        {"image/png;q=-0.5", "image/png", 0.0},
        {"text/html, application/xhtml+xml", "image/png", 0.0},
        {"  application/json  ,image/png", "application/json", 1.0},
        {"application/jsonx", "application/json", 0.0},
        {"", "image/png", 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double q = http_accept_q(cases[i].accept, cases[i].mime);
        if (q != cases[i].q)
            fail_msg("Accept \"%s\", %s: q %g, expected %g", cases[i].accept, cases[i].mime, q,
                     cases[i].q);
    }
}

static void test_format_choose(void **state)
{
    (void)state;
    char msg[HTTP_MESSAGE_MAX];
    http_format f = HTTP_FORMAT_COUNT;
    assert_int_equal(http_format_choose(NULL, NULL, HTTP_OFFER_IMAGES, &f, msg, sizeof msg),
                     HTTP_ERR_NONE);
    assert_int_equal(f, HTTP_FORMAT_PNG);
    assert_int_equal(http_format_choose(NULL, "", HTTP_OFFER_JSON, &f, msg, sizeof msg),
                     HTTP_ERR_NONE);
    assert_int_equal(f, HTTP_FORMAT_JSON);
    assert_int_equal(http_format_choose("npy", "image/png", HTTP_OFFER_IMAGES, &f, msg, sizeof msg),
                     HTTP_ERR_NONE);
    assert_int_equal(f, HTTP_FORMAT_NPY);
    assert_int_equal(http_format_choose(NULL, "application/x-npy, image/png;q=0.5",
                                        HTTP_OFFER_IMAGES, &f, msg, sizeof msg),
                     HTTP_ERR_NONE);
    assert_int_equal(f, HTTP_FORMAT_NPY);
    /* A tie goes to the first offered. */
    assert_int_equal(http_format_choose(NULL, "application/json, application/x-npy",
                                        HTTP_OFFER_IMAGES, &f, msg, sizeof msg),
                     HTTP_ERR_NONE);
    assert_int_equal(f, HTTP_FORMAT_JSON);

    assert_int_equal(http_format_choose("png", NULL, HTTP_OFFER_JSON, &f, msg, sizeof msg),
                     HTTP_ERR_BAD_REQUEST);
    assert_string_equal(msg, "parameter 'format' must be json");
    assert_int_equal(http_format_choose("gif", NULL, HTTP_OFFER_IMAGES, &f, msg, sizeof msg),
                     HTTP_ERR_BAD_REQUEST);
    assert_string_equal(msg, "parameter 'format' must be png, json or npy");
    assert_int_equal(http_format_choose(NULL, "text/html", HTTP_OFFER_IMAGES, &f, msg, sizeof msg),
                     HTTP_ERR_NOT_ACCEPTABLE);
    assert_string_equal(msg, "the Accept header excludes every format this endpoint offers "
                             "(image/png, application/json, application/x-npy)");
    assert_int_equal(http_format_choose(NULL, "image/png;q=0", HTTP_OFFER_JSON, &f, msg,
                                        sizeof msg),
                     HTTP_ERR_NOT_ACCEPTABLE);
    assert_string_equal(http_format_name(HTTP_FORMAT_NPY), "npy");
    assert_string_equal(http_format_mime(HTTP_FORMAT_PNG), "image/png");
}

static void test_strict_parsers(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "1a", "0x10", "1.0", "1e3",
                                      "18446744073709551616", "99999999999999999999"};
    uint64_t u = 7;
    int64_t i = 7;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        if (!http_parse_u64(bad[k], &u) || u != 7)
            fail_msg("http_parse_u64 took \"%s\"", bad[k]);
        if (!http_parse_i64(bad[k], &i) || i != 7)
            fail_msg("http_parse_i64 took \"%s\"", bad[k]);
    }
    assert_int_equal(http_parse_u64(NULL, &u), -1);
    assert_int_equal(http_parse_u64("0", &u), 0);
    assert_true(u == 0);
    assert_int_equal(http_parse_u64("0042", &u), 0);
    assert_true(u == 42);
    assert_int_equal(http_parse_u64("18446744073709551615", &u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(http_parse_i64("9223372036854775807", &i), 0);
    assert_true(i == INT64_MAX);
    i = 7;
    assert_int_equal(http_parse_i64("9223372036854775808", &i), -1);
    assert_true(i == 7);
}

static void test_etag_listed(void **state)
{
    (void)state;
    const char *tag = "\"abc\"";
    static const struct {
        const char *inm;
        int listed;
    } cases[] = {
        {"\"abc\"", 1},
        {"W/\"abc\"", 1},
        {"*", 1},
        {" * ", 1},
        {"\"x\", \"abc\"", 1},
        {" , ,\"abc\"\t", 1},
        {"\"x\",W/\"abc\"", 1},
        {"\"abcd\"", 0},
        {"\"ab\"", 0},
        {"abc", 0},
        {"W/abc", 0},
        {"", 0},
        {"**", 0},
        {"\"x\", \"y\"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (http_etag_listed(cases[i].inm, tag) != cases[i].listed)
            fail_msg("If-None-Match \"%s\": listed should be %d", cases[i].inm, cases[i].listed);
}


/* The names a tokenless daemon answers to, and the ones a rebinding page or
 * a foreign page sends. */
static void test_local_host_and_origin(void **state)
{
    (void)state;
    static const char *const local[] = {"localhost", "LOCALHOST:8080", "127.0.0.1",
                                        "127.0.0.1:8080", "127.1.2.3:1", "[::1]", "[::1]:8080",
                                        "vaed.lan:8080", "Vaed.LAN"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        if (!http_host_is_local(local[i], "vaed.lan"))
            fail_msg("Host %s was refused", local[i]);
    static const char *const foreign[] = {"attacker.example", "attacker.example:8080",
                                          "localhost.attacker.example", "127.0.0.1.nip.io",
                                          "128.0.0.1", "127.0.0", "127.0.0.1.", "127.0.0.256",
                                          "localhost:", "localhost:80x", ":8080", "",
                                          "vaed.lan.evil", "[::2]", "0x7f.0.0.1", "1270.0.0.1"};
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++)
        if (http_host_is_local(foreign[i], "vaed.lan"))
            fail_msg("Host %s was accepted", foreign[i]);
    assert_false(http_host_is_local(NULL, NULL));
    assert_false(http_host_is_local("vaed.lan", NULL));
    assert_false(http_host_is_local("vaed.lan", ""));

    assert_true(http_origin_is_local("http://localhost:8080", NULL));
    assert_true(http_origin_is_local("https://127.0.0.1", NULL));
    assert_true(http_origin_is_local("http://vaed.lan:8080", "vaed.lan"));
    assert_false(http_origin_is_local("null", NULL));
    assert_false(http_origin_is_local("http://attacker.example", NULL));
    assert_false(http_origin_is_local("http://localhost:8080/x", NULL));
    assert_false(http_origin_is_local("file://localhost", NULL));
    assert_false(http_origin_is_local("localhost", NULL));
    assert_false(http_origin_is_local(NULL, NULL));
}

/* The budget of answers held: a reservation past max is refused and
 * leaves nothing behind, an empty budget takes any one, a response turns
 * its reservation into its real size and gives it back when destroyed. */
static void test_answer_budget(void **state)
{
    (void)state;
    http_budget b = {.max = 100};
    assert_int_equal(http_budget_reserve(&b, 150), 0); /* empty: admitted whole */
    assert_int_equal(http_budget_reserve(&b, 1), -1);
    assert_int_equal(http_budget_held(&b), 150);
    http_budget_release(&b, 150);
    assert_int_equal(http_budget_reserve(&b, 60), 0);
    assert_int_equal(http_budget_reserve(&b, 41), -1);
    assert_int_equal(http_budget_held(&b), 60);
    /* the estimate (60) becomes the answer's 10 bytes, then 0 */
    char *buf = malloc(10);
    assert_non_null(buf);
    memset(buf, 'a', 10);
    struct MHD_Response *r = http_budget_response(&b, 60, buf, 10);
    assert_non_null(r);
    assert_int_equal(http_budget_held(&b), 10);
    assert_int_equal(http_budget_reserve(&b, 90), 0);
    http_budget_release(&b, 90);
    MHD_destroy_response(r);
    assert_int_equal(http_budget_held(&b), 0);
    /* an answer larger than its estimate holds all of it */
    assert_int_equal(http_budget_reserve(&b, 5), 0);
    buf = malloc(200);
    assert_non_null(buf);
    r = http_budget_response(&b, 5, buf, 200);
    assert_non_null(r);
    assert_int_equal(http_budget_held(&b), 200);
    MHD_destroy_response(r);
    assert_int_equal(http_budget_held(&b), 0);
    /* no budget: everything passes, nothing is counted */
    assert_int_equal(http_budget_reserve(NULL, 1u << 30), 0);
    assert_int_equal(http_budget_held(NULL), 0);
    assert_int_equal(http_error_status(HTTP_ERR_ANSWERS_HELD), 503);
    assert_string_equal(http_error_code(HTTP_ERR_ANSWERS_HELD), "answers_held");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table_is_total),
        cmocka_unit_test(test_service_tables),
        cmocka_unit_test(test_accept_q),
        cmocka_unit_test(test_format_choose),
        cmocka_unit_test(test_strict_parsers),
        cmocka_unit_test(test_etag_listed),
        cmocka_unit_test(test_local_host_and_origin),
        cmocka_unit_test(test_answer_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
