/* api_models: the model registry over HTTP.
 *
 * Rows of the route table (routes.c; "*" there is one path segment, written
 * {name}, {v}, {alias} here):
 *
 *     GET    /models                           api_models_list
 *     GET    /models/{name}                    api_models_get
 *     POST   /models/{name}/checkpoints        api_models_post_checkpoint   (ROUTES_UPLOAD)
 *     GET    /models/{name}/versions/{v}       api_models_get_version       ({v}: number or alias)
 *     GET    /models/{name}/versions/{v}/file  api_models_get_version_file
 *     DELETE /models/{name}/versions/{v}       api_models_delete_version    ({v}: a number)
 *     PUT    /models/{name}/aliases/{alias}    api_models_put_alias         (body {"version": N})
 *     DELETE /models/{name}/aliases/{alias}    api_models_delete_alias
 *
 * A checkpoint becomes visible in one registry transaction, after the whole
 * body is in, its sha256 agrees with X-Content-SHA256 when given, and
 * ckpt_load_mem has accepted it (layout, dtype, config against shapes,
 * finite values). Its headers are checked on the polling thread; the
 * hashing, the validation and the commit (synchronous=FULL: an fsync) run on
 * the uploads pool (http_ctx.uploads, one thread), with the connection
 * suspended meanwhile, so a large upload never stalls other requests.
 *
 * What waits for the registry's database runs on the registry's I/O pool
 * (http_ctx.registry_io), the connection suspended: a download's lookup
 * and its first piece, each later piece of a PostgreSQL checkpoint (pieces
 * of REGISTRY_BLOB_PIECE, the next prefetched while one is sent: a download
 * holds one or two, whatever the checkpoint's size, and all downloads
 * together at most 16 MiB of prefetched ones; SQLite's pieces are read from
 * the file where MHD asks for them),
 * and every write (alias PUT and DELETE, version DELETE: a commit is an
 * fsync, and may wait for another process's lock). A checkpoint deleted
 * during its PostgreSQL download ends the response short (the connection
 * closes before Content-Length); no byte of anything else is sent.
 *
 * Authorisation is decided by the transport (http_server.c, api_auth.h)
 * before the body is read; these handlers do not look at tokens.
 */
#ifndef API_MODELS_H
#define API_MODELS_H

#include <microhttpd.h>

#include "server/http_request.h"

enum MHD_Result api_models_list(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_models_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_models_post_checkpoint(http_ctx *ctx, struct MHD_Connection *c,
                                           http_request *req);
enum MHD_Result api_models_get_version(http_ctx *ctx, struct MHD_Connection *c,
                                       http_request *req);
enum MHD_Result api_models_get_version_file(http_ctx *ctx, struct MHD_Connection *c,
                                            http_request *req);
enum MHD_Result api_models_delete_version(http_ctx *ctx, struct MHD_Connection *c,
                                          http_request *req);
enum MHD_Result api_models_put_alias(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_models_delete_alias(http_ctx *ctx, struct MHD_Connection *c,
                                        http_request *req);

#endif
