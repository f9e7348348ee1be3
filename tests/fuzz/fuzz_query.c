/* fuzz_query: query strings and data references, through the daemon
 * (fuzz_env) so that libmicrohttpd splits and decodes them as it does for a
 * client, and each handler's parameter parsing (http_query_*, ?format=,
 * Accept, the DATASET:SPLIT:INDEX references of GET /interpolate) reads
 * them.
 *
 * Input: one byte picking the endpoint, one picking the Accept header, then
 * the query string. Bytes that cannot stand in a request line (controls,
 * space, '#', non-ASCII) are sent percent-encoded, the rest as they are, so
 * '&', '=' and '%' keep their meaning. The checks are fuzz_http's. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tests/fuzz/fuzz_env.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const char *method, *path, *body;
} endpoint;

/* A 28x28 image of zeros, as an /encode body. */
static const char *encode_body(void)
{
    static char body[4096];
    if (!body[0]) {
        size_t n = (size_t)snprintf(body, sizeof body, "{\"x\": [[");
        for (int i = 0; i < 784; i++)
            n += (size_t)snprintf(body + n, sizeof body - n, i ? ",0" : "0");
        snprintf(body + n, sizeof body - n, "]]}");
    }
    return body;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const endpoint endpoints[] = {
        {"GET", "/interpolate", NULL},
        {"POST", "/sample", NULL},
        {"POST", "/decode", "{\"z\": [[0.5, -1, 0, 2]]}"},
        {"POST", "/encode", NULL},
        {"GET", "/jobs", NULL},
        {"GET", "/models/digits", NULL},
        {"HEAD", "/interpolate", NULL},
        {"GET", "/models/digits/versions/latest/file", NULL},
    };
    static const char *const accepts[] = {
        NULL, "*/*", "image/png", "application/json", "application/x-npy",
        "application/json;q=0.5, image/png;q=0.9", "text/html", "application/*;q=0",
    };
    if (size < 2)
        return 0;
    const endpoint *e = &endpoints[data[0] % (sizeof endpoints / sizeof endpoints[0])];
    const char *accept = accepts[data[1] % (sizeof accepts / sizeof accepts[0])];
    const char *body = e->body ? e->body : (!strcmp(e->path, "/encode") ? encode_body() : NULL);
    data += 2;
    size -= 2;

    static char req[65536 + 4096];
    size_t n = (size_t)snprintf(req, 1024, "%s %s?", e->method, e->path);
    for (size_t i = 0; i < size && n + 8 < 65536; i++) {
        uint8_t c = data[i];
        if (c <= 0x20 || c >= 0x7f || c == '#')
            n += (size_t)snprintf(req + n, 4, "%%%02X", c);
        else
            req[n++] = (char)c;
    }
    n += (size_t)snprintf(req + n, sizeof req - n,
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                          "Authorization: Bearer " FUZZ_ENV_TOKEN "\r\n");
    if (accept)
        n += (size_t)snprintf(req + n, sizeof req - n, "Accept: %s\r\n", accept);
    if (body)
        n += (size_t)snprintf(req + n, sizeof req - n,
                              "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                              strlen(body), body);
    else
        n += (size_t)snprintf(req + n, sizeof req - n, "\r\n");
    fuzz_env_reply r;
    fuzz_env_exchange(req, n, &r);
    fuzz_env_check_reply(&r, !strcmp(e->method, "HEAD"));
    fuzz_env_reply_free(&r);
    return 0;
}
