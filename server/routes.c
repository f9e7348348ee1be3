#include "server/routes.h"

#include <stdio.h>
#include <string.h>

#include "server/api_data.h"
#include "server/api_explore.h"
#include "server/api_infer.h"
#include "server/api_jobs.h"
#include "server/api_models.h"
#include "server/api_ops.h"
#include "server/api_score.h"
#include "server/api_ui.h"

static const routes_entry routes[] = {
    {"GET", "/", api_ui_index, 0},
    {"GET", "/ui/*", api_ui_asset, 0},
    {"GET", "/healthz", api_ops_healthz, 0},
    {"GET", "/readyz", api_ops_readyz, 0},
    {"GET", "/metrics", api_ops_metrics, 0},
    {"GET", "/openapi.yaml", api_ops_openapi, 0},
    {"POST", "/sample", api_infer_sample, ROUTES_OPEN | ROUTES_NO_BODY},
    {"POST", "/encode", api_infer_encode, ROUTES_OPEN},
    {"POST", "/decode", api_infer_decode, ROUTES_OPEN},
    {"POST", "/interpolate", api_infer_interpolate_post, ROUTES_OPEN},
    {"GET", "/interpolate", api_infer_interpolate_get, 0},
    {"POST", "/score", api_score_post, ROUTES_OPEN},
    {"GET", "/score", api_score_get, 0},
    {"GET", "/reconstruct", api_explore_reconstruct_get, 0},
    {"POST", "/reconstruct", api_explore_reconstruct_post, ROUTES_OPEN},
    {"GET", "/traverse", api_explore_traverse, 0},
    {"GET", "/latent-map", api_explore_latent_map, 0},
    {"GET", "/data/*/*", api_data_sheet, 0},
    {"GET", "/data/*/*/*", api_data_image, 0},
    {"GET", "/models", api_models_list, 0},
    {"GET", "/models/*", api_models_get, 0},
    {"POST", "/models/*/checkpoints", api_models_post_checkpoint, ROUTES_UPLOAD},
    {"GET", "/models/*/versions/*", api_models_get_version, 0},
    {"DELETE", "/models/*/versions/*", api_models_delete_version, 0},
    {"GET", "/models/*/versions/*/file", api_models_get_version_file, 0},
    {"PUT", "/models/*/aliases/*", api_models_put_alias, ROUTES_SMALL_BODY},
    {"DELETE", "/models/*/aliases/*", api_models_delete_alias, 0},
    {"POST", "/jobs", api_jobs_submit, ROUTES_SMALL_BODY},
    {"GET", "/jobs", api_jobs_list, 0},
    {"GET", "/jobs/*", api_jobs_get, 0},
    {"GET", "/jobs/*/events", api_jobs_events, 0},
    {"POST", "/jobs/*/cancel", api_jobs_cancel, ROUTES_NO_BODY},
};

#define N_ROUTES (sizeof routes / sizeof routes[0])

size_t routes_count(void)
{
    return N_ROUTES;
}

int routes_at(size_t i, const char **method, const char **path)
{
    if (i >= N_ROUTES)
        return -1;
    *method = routes[i].method;
    *path = routes[i].path;
    return 0;
}

/* Matches path against pattern; on success copies the "*" segments into req
 * (when req is not NULL). */
static int route_match(const char *pattern, const char *path, http_request *req)
{
    char params[HTTP_MAX_PARAMS][HTTP_PARAM_MAX];
    int n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        int wildcard = *p == '*' && (p == pattern || p[-1] == '/') && (p[1] == '/' || !p[1]);
        if (wildcard) {
            size_t len = strcspn(s, "/");
            if (len == 0 || len >= HTTP_PARAM_MAX || n >= HTTP_MAX_PARAMS)
                return 0;
            memcpy(params[n], s, len);
            params[n][len] = '\0';
            n++;
            p++;
            s += len;
        } else if (*p == *s) {
            p++;
            s++;
        } else {
            return 0;
        }
    }
    if (*p || *s)
        return 0;
    if (req) {
        req->n_params = n;
        memcpy(req->params, params, sizeof params[0] * (size_t)n);
    }
    return 1;
}

/* HEAD is answered by every GET route; MHD leaves out the body. */
static int method_matches(const char *route_method, const char *method)
{
    return !strcmp(route_method, method) ||
           (!strcmp(route_method, "GET") && !strcmp(method, "HEAD"));
}

const routes_entry *routes_find(const char *method, const char *path, http_request *req)
{
    for (size_t i = 0; i < N_ROUTES; i++)
        if (method_matches(routes[i].method, method) && route_match(routes[i].path, path, req))
            return &routes[i];
    return NULL;
}

int routes_allowed(const char *path, char *allow, size_t allow_len)
{
    int known = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < N_ROUTES; i++) {
        if (!route_match(routes[i].path, path, NULL))
            continue;
        known = 1;
        size_t used = strlen(allow);
        snprintf(allow + used, allow_len - used, "%s%s%s", used ? ", " : "", routes[i].method,
                 strcmp(routes[i].method, "GET") ? "" : ", HEAD");
    }
    return known;
}

int routes_need_token(const routes_entry *r)
{
    return r && strcmp(r->method, "GET") && !(r->flags & ROUTES_OPEN);
}

int routes_take_body(const routes_entry *r)
{
    return r && strcmp(r->method, "GET") && strcmp(r->method, "DELETE") &&
           !(r->flags & ROUTES_NO_BODY);
}
