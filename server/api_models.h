/* api_models: the model registry over HTTP, and the bearer-token check.
 *
 * The handlers are rows of the route table in http_server.c ("*" there is
 * one path segment, written {name}, {v}, {alias} here):
 *
 *     GET    /models                           api_models_list
 *     GET    /models/{name}                    api_model_get
 *     POST   /models/{name}/checkpoints        api_checkpoint_post (HTTP_ROUTE_UPLOAD)
 *     GET    /models/{name}/versions/{v}       api_version_get     ({v}: number or alias)
 *     GET    /models/{name}/versions/{v}/file  api_version_file
 *     DELETE /models/{name}/versions/{v}       api_version_delete  ({v}: a number)
 *     PUT    /models/{name}/aliases/{alias}    api_alias_put       (body {"version": N})
 *     DELETE /models/{name}/aliases/{alias}    api_alias_delete
 *
 * A checkpoint becomes visible in one registry transaction, after the whole
 * body is in, its sha256 agrees with X-Content-SHA256 when given, and
 * ckpt_load_mem has accepted it (layout, dtype, config against shapes,
 * finite values).
 *
 * Authorisation is decided by http_server.c, before the body is read, with
 * api_bearer_ok; these handlers do not look at tokens.
 */
#ifndef API_MODELS_H
#define API_MODELS_H

#include <microhttpd.h>

#include "server/http_server.h"

enum MHD_Result api_models_list(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_model_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_checkpoint_post(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_version_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_version_file(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_version_delete(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_alias_put(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_alias_delete(http_ctx *ctx, struct MHD_Connection *c, http_request *req);

/* 1 when authorization (the Authorization header's value, may be NULL) is
 * "Bearer TOKEN" with TOKEN equal to token. The comparison takes the same
 * time wherever the two differ, so timing does not reveal a prefix. */
int api_bearer_ok(const char *token, const char *authorization);
/* Queues 401 unauthorized with WWW-Authenticate: Bearer. */
enum MHD_Result api_send_unauthorized(struct MHD_Connection *c, const char *why);

#endif
