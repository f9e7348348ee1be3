/* schema/openapi.yaml and the server's route table (routes.c) agree: each
 * route's path (with "*" segments written {name}) is a key under `paths:`,
 * and its method a key under that path; and each documented path and method
 * is a route, so an endpoint dropped from the table (or documented and never
 * built) fails too. Tests run from the repository root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/routes.h"

#define MAX_PATHS 128

typedef struct {
    char path[256];    /* with {x} segments turned into "*" */
    char methods[128]; /* " get post " */
} doc_path;

static int n_paths;
static doc_path paths[MAX_PATHS];

/* "/models/{name}/versions/{v}" -> "/models/x/versions/x" */
static void normalise(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 2 < outlen; p++) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            if (close) {
                out[o++] = '*';
                p = close;
                continue;
            }
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

/* Reads the keys of `paths:` (two-space indent) and their methods (four). */
static int load_yaml(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return -1;
    char line[1024];
    int in_paths = 0;
    n_paths = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!strcmp(line, "paths:")) {
            in_paths = 1;
            continue;
        }
        if (!in_paths || !line[0] || line[0] == '#')
            continue;
        if (line[0] != ' ') {
            in_paths = 0; /* the next top-level key */
            continue;
        }
        size_t len = strlen(line);
        if (!strncmp(line, "  /", 3) && line[len - 1] == ':' && n_paths < MAX_PATHS) {
            line[len - 1] = '\0';
            normalise(line + 2, paths[n_paths].path, sizeof paths[n_paths].path);
            strcpy(paths[n_paths].methods, " ");
            n_paths++;
        } else if (n_paths && !strncmp(line, "    ", 4) && line[4] != ' ' && line[len - 1] == ':') {
            static const char *const verbs[] = {"get", "put", "post", "delete", "patch", "head"};
            line[len - 1] = '\0';
            for (size_t v = 0; v < sizeof verbs / sizeof verbs[0]; v++)
                if (!strcmp(line + 4, verbs[v])) {
                    strcat(paths[n_paths - 1].methods, verbs[v]);
                    strcat(paths[n_paths - 1].methods, " ");
                }
        }
    }
    fclose(f);
    return 0;
}

static void test_normalise(void **state)
{
    (void)state;
    char out[64];
    normalise("/models/{name}/versions/{v}/file", out, sizeof out);
    assert_string_equal(out, "/models/*/versions/*/file");
}

static void test_every_route_documented(void **state)
{
    (void)state;
    assert_int_equal(load_yaml("schema/openapi.yaml"), 0);
    assert_true(n_paths >= 10);
    size_t n = routes_count();
    assert_true(n >= 8);
    const char *method, *path;
    assert_int_equal(routes_at(n, &method, &path), -1);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(routes_at(i, &method, &path), 0);
        char want[16] = " ";
        for (size_t k = 0; method[k] && k < 10; k++)
            want[k + 1] = (char)(method[k] | 0x20);
        strcat(want, " ");
        int found = 0;
        for (int p = 0; p < n_paths; p++)
            if (!strcmp(paths[p].path, path)) {
                found = 1;
                if (!strstr(paths[p].methods, want))
                    fail_msg("schema/openapi.yaml: %s lacks method %s", path, method);
            }
        if (!found)
            fail_msg("schema/openapi.yaml does not document route %s %s", method, path);
    }
}

static void test_every_documented_route_exists(void **state)
{
    (void)state;
    assert_int_equal(load_yaml("schema/openapi.yaml"), 0);
    int checked = 0;
    for (int p = 0; p < n_paths; p++) {
        /* " get post " -> each method in turn */
        char methods[sizeof paths[p].methods];
        snprintf(methods, sizeof methods, "%s", paths[p].methods);
        for (char *m = strtok(methods, " "); m; m = strtok(NULL, " ")) {
            int found = 0;
            const char *method, *path;
            for (size_t i = 0; routes_at(i, &method, &path) == 0; i++)
                found |= !strcmp(path, paths[p].path) && !strcasecmp(method, m);
            if (!found)
                fail_msg("schema/openapi.yaml documents %s %s, which no route serves", m,
                         paths[p].path);
            checked++;
        }
    }
    assert_int_equal(checked, (int)routes_count());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_every_route_documented),
        cmocka_unit_test(test_every_documented_route_exists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
