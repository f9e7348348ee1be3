/* api_models: registry endpoints. Each handler parses its path parameters
 * into native values first, calls the registry, and builds JSON only at the
 * end, under one root freed (or handed to http_send_json) in one place. The
 * work is a function returning an http_error and a message; the handler
 * sends its result, or the error, once. */
#include "server/api_models.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/checkpoint.h"
#include "engine/vae.h"
#include "server/compute_pool.h"
#include "server/http_server.h"
#include "server/http_util.h"
#include "server/model_cache.h"
#include "server/registry.h"

/* ---- small helpers ---------------------------------------------------- */

/* The error of a registry status, with the registry's message (why) as the
 * error's. */
static http_error registry_error(int status, const char *why, char *msg, size_t msglen)
{
    if (status != REGISTRY_OK)
        snprintf(msg, msglen, "%s", why);
    return http_error_from_registry(status);
}

static http_error nomem(char *msg, size_t msglen)
{
    snprintf(msg, msglen, "out of memory building the response");
    return HTTP_ERR_UNAVAILABLE;
}

/* The one answer of a handler: the error e with msg, or root as JSON with
 * status. Takes root. */
static enum MHD_Result reply_json(struct MHD_Connection *c, http_error e, const char *msg,
                                  unsigned int status, cJSON *root)
{
    if (e != HTTP_ERR_NONE) {
        cJSON_Delete(root);
        return http_send_error(c, e, "%s", msg);
    }
    return http_send_json(c, status, root);
}

/* The work of a handler that answers JSON: *out (taken) or an error. */
typedef http_error (*json_work)(http_ctx *ctx, const http_request *req, cJSON **out, char *msg,
                                size_t msglen);

/* Runs work and sends its one answer: a 200 with the JSON, or the error. */
static enum MHD_Result serve_json(http_ctx *ctx, struct MHD_Connection *c, const http_request *req,
                                  json_work work)
{
    char msg[HTTP_MESSAGE_MAX];
    cJSON *root = NULL;
    http_error e = work(ctx, req, &root, msg, sizeof msg);
    return reply_json(c, e, msg, MHD_HTTP_OK, root);
}

/* The model name of the route's first "*" into *name. */
static http_error model_param(const http_request *req, const char **name, char *msg,
                              size_t msglen)
{
    *name = req->n_params > 0 ? req->params[0] : "";
    if (registry_valid_name(*name))
        return HTTP_ERR_NONE;
    snprintf(msg, msglen,
             "invalid model name: use 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -");
    return HTTP_ERR_BAD_REQUEST;
}

/* The alias of the route's second "*". */
static http_error alias_param(const http_request *req, char *msg, size_t msglen)
{
    if (registry_valid_alias(req->params[1]))
        return HTTP_ERR_NONE;
    snprintf(msg, msglen,
             "invalid alias: use 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -, not all "
             "digits");
    return HTTP_ERR_BAD_REQUEST;
}

/* A version number path segment: 1 ... 2^53 (JSON-safe). */
static int parse_version_number(const char *s, int64_t *out)
{
    int64_t v;
    if (http_parse_i64(s, &v) || v < 1 || v > ((int64_t)1 << 53))
        return -1;
    *out = v;
    return 0;
}

/* Parses stored JSON text into a node (NULL text: JSON null). Text that does
 * not parse (the schema checks json_valid, so only on a corrupt file) is
 * kept as a string rather than lost. */
static cJSON *stored_json(const char *text)
{
    if (!text)
        return cJSON_CreateNull();
    cJSON *node = cJSON_ParseWithLengthOpts(text, strlen(text), NULL, 0);
    return node ? node : cJSON_CreateString(text);
}

/* Adds the fields of a checkpoint info to obj; 0 or -1 when out of memory. */
static int add_info(cJSON *obj, const registry_checkpoint_info *info, int with_model)
{
    if (with_model && !cJSON_AddStringToObject(obj, "model", info->model))
        return -1;
    if (!cJSON_AddNumberToObject(obj, "version", (double)info->version) ||
        !cJSON_AddStringToObject(obj, "sha256", info->sha256) ||
        !cJSON_AddNumberToObject(obj, "size", (double)info->size) ||
        !cJSON_AddStringToObject(obj, "created_at", info->created_at) ||
        !cJSON_AddStringToObject(obj, "source", info->source))
        return -1;
    return 0;
}

static int add_json(cJSON *obj, const char *key, const char *text)
{
    cJSON *node = stored_json(text); /* owned: handed to obj */
    if (!node)
        return -1;
    if (!cJSON_AddItemToObject(obj, key, node)) {
        cJSON_Delete(node);
        return -1;
    }
    return 0;
}

/* The error e with msg, or an empty body with status (204). */
static enum MHD_Result reply_empty(struct MHD_Connection *c, http_error e, const char *msg,
                                   unsigned int status)
{
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"",
                                                                MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- GET /models ------------------------------------------------------ */

static http_error models_list(http_ctx *ctx, const http_request *req, cJSON **out, char *msg,
                              size_t msglen)
{
    (void)req;
    char why[256] = "";
    registry_model_info *models = NULL; /* owned: freed below */
    size_t n = 0;
    http_error e =
        registry_error(registry_list_models(ctx->reg, &models, &n, why, sizeof why), why, msg,
                       msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    cJSON *root = cJSON_CreateObject(); /* owned: handed to *out */
    cJSON *list = cJSON_AddArrayToObject(root, "models");
    int bad = !list;
    for (size_t i = 0; i < n && !bad; i++) {
        cJSON *m = cJSON_CreateObject();
        bad = !m || !cJSON_AddItemToArray(list, m);
        if (bad) {
            cJSON_Delete(m);
            break;
        }
        bad = !cJSON_AddStringToObject(m, "name", models[i].name) ||
              !cJSON_AddNumberToObject(m, "versions", (double)models[i].n_versions) ||
              !cJSON_AddNumberToObject(m, "latest_version", (double)models[i].latest_version) ||
              !cJSON_AddStringToObject(m, "created_at", models[i].created_at) ||
              !cJSON_AddStringToObject(m, "updated_at", models[i].updated_at);
    }
    registry_free_models(models);
    if (bad) {
        cJSON_Delete(root);
        return nomem(msg, msglen);
    }
    *out = root;
    return HTTP_ERR_NONE;
}

enum MHD_Result api_models_list(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return serve_json(ctx, c, req, models_list);
}

/* ---- GET /models/{name} ----------------------------------------------- */

static http_error model_get(http_ctx *ctx, const http_request *req, cJSON **out, char *msg,
                            size_t msglen)
{
    const char *name;
    http_error e = model_param(req, &name, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    char why[256] = "";
    registry_model_info *models = NULL;   /* owned: freed at end */
    registry_checkpoint *versions = NULL; /* owned: freed at end */
    registry_alias_info *aliases = NULL;  /* owned: freed at end */
    size_t n_models = 0, n_versions = 0, n_aliases = 0;
    cJSON *root = NULL;                   /* owned: handed to *out */
    const registry_model_info *model = NULL;

    int status = registry_list_models(ctx->reg, &models, &n_models, why, sizeof why);
    for (size_t i = 0; !status && i < n_models; i++)
        if (!strcmp(models[i].name, name))
            model = &models[i];
    if (!status && !model) {
        snprintf(why, sizeof why, "no model \"%.64s\" in the registry", name);
        status = REGISTRY_ERR_NOT_FOUND;
    }
    if (!status)
        status = registry_list_checkpoints(ctx->reg, name, &versions, &n_versions, why,
                                           sizeof why);
    if (!status)
        status = registry_list_aliases(ctx->reg, name, &aliases, &n_aliases, why, sizeof why);
    if ((e = registry_error(status, why, msg, msglen)) != HTTP_ERR_NONE)
        goto end;

    root = cJSON_CreateObject();
    int bad = !root || !cJSON_AddStringToObject(root, "name", model->name) ||
              !cJSON_AddStringToObject(root, "created_at", model->created_at) ||
              !cJSON_AddStringToObject(root, "updated_at", model->updated_at) ||
              !cJSON_AddNumberToObject(root, "latest_version", (double)model->latest_version);
    cJSON *alias_obj = bad ? NULL : cJSON_AddObjectToObject(root, "aliases");
    bad |= !alias_obj;
    for (size_t i = 0; i < n_aliases && !bad; i++)
        bad = !cJSON_AddNumberToObject(alias_obj, aliases[i].alias, (double)aliases[i].version);
    cJSON *list = bad ? NULL : cJSON_AddArrayToObject(root, "versions");
    bad |= !list;
    for (size_t i = 0; i < n_versions && !bad; i++) {
        cJSON *v = cJSON_CreateObject();
        if (!v || !cJSON_AddItemToArray(list, v)) {
            cJSON_Delete(v);
            bad = 1;
            break;
        }
        bad = add_info(v, &versions[i].info, 0) || add_json(v, "metrics", versions[i].metrics_json);
    }
    if (bad) {
        cJSON_Delete(root);
        root = NULL;
        e = nomem(msg, msglen);
    }
    *out = root;
end:
    registry_free_models(models);
    registry_free_checkpoints(versions, n_versions);
    free(aliases);
    return e;
}

enum MHD_Result api_models_get(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return serve_json(ctx, c, req, model_get);
}

/* ---- GET /models/{name}/versions/{v} ---------------------------------- */

/* The route's model and version-or-alias, resolved into info. */
static http_error resolve_params(http_ctx *ctx, const http_request *req,
                                 registry_checkpoint_info *info, char *msg, size_t msglen)
{
    const char *name;
    http_error e = model_param(req, &name, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    char why[256] = "";
    int status = registry_resolve(ctx->reg, name, req->params[1], info, why, sizeof why);
    return registry_error(status, why, msg, msglen);
}

static http_error version_get(http_ctx *ctx, const http_request *req, cJSON **out, char *msg,
                              size_t msglen)
{
    registry_checkpoint_info info;
    http_error e = resolve_params(ctx, req, &info, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    char why[256] = "";
    registry_checkpoint ck;              /* owned: freed below */
    registry_alias_info *aliases = NULL; /* owned: freed below */
    size_t n_aliases = 0;
    int status = registry_get_checkpoint(ctx->reg, info.model, info.version, &ck, why, sizeof why);
    if ((e = registry_error(status, why, msg, msglen)) != HTTP_ERR_NONE)
        return e;
    status = registry_list_aliases(ctx->reg, info.model, &aliases, &n_aliases, why, sizeof why);
    if ((e = registry_error(status, why, msg, msglen)) != HTTP_ERR_NONE) {
        registry_free_checkpoint(&ck);
        return e;
    }
    cJSON *root = cJSON_CreateObject(); /* owned: handed to *out */
    int bad = !root || add_info(root, &ck.info, 1);
    cJSON *names = bad ? NULL : cJSON_AddArrayToObject(root, "aliases");
    bad |= !names;
    for (size_t i = 0; i < n_aliases && !bad; i++) {
        if (aliases[i].version != ck.info.version)
            continue;
        cJSON *s = cJSON_CreateString(aliases[i].alias);
        if (!s || !cJSON_AddItemToArray(names, s)) {
            cJSON_Delete(s);
            bad = 1;
        }
    }
    bad = bad || add_json(root, "config", ck.config_json) ||
          add_json(root, "metrics", ck.metrics_json);
    registry_free_checkpoint(&ck);
    free(aliases);
    if (bad) {
        cJSON_Delete(root);
        return nomem(msg, msglen);
    }
    *out = root;
    return HTTP_ERR_NONE;
}

enum MHD_Result api_models_get_version(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    return serve_json(ctx, c, req, version_get);
}

/* ---- GET /models/{name}/versions/{v}/file ----------------------------- */

/* MHD asks for the next piece of a download: at most max bytes at pos. */
static ssize_t blob_read_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    registry_blob *b = cls;
    size_t size = registry_blob_size(b);
    if (pos >= size)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = size - (size_t)pos < max ? size - (size_t)pos : max;
    char why[256];
    if (registry_blob_read(b, (size_t)pos, buf, n, why, sizeof why) == REGISTRY_OK)
        return (ssize_t)n;
    fprintf(stderr, "vaed: download: %s\n", why);
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void blob_free_cb(void *cls)
{
    registry_blob_close(cls);
}

/* The file's response in *resp (the caller's; NULL when out of memory) with
 * its status: 304 when the client's copy is these bytes, else the bytes. */
static http_error version_file(http_ctx *ctx, struct MHD_Connection *c, const http_request *req,
                               struct MHD_Response **resp, unsigned int *code, char *msg,
                               size_t msglen)
{
    registry_checkpoint_info info;
    *resp = NULL;
    http_error e = resolve_params(ctx, req, &info, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    char etag[70], version_str[32], disposition[200];
    snprintf(etag, sizeof etag, "\"%s\"", info.sha256);
    snprintf(version_str, sizeof version_str, "%" PRId64, info.version);
    snprintf(disposition, sizeof disposition, "attachment; filename=\"%s-v%" PRId64 ".safetensors\"",
             info.model, info.version);

    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    struct MHD_Response *r = NULL; /* owned: handed to *resp */
    *code = MHD_HTTP_OK;
    if (inm && http_etag_listed(inm, etag)) {
        /* Not modified: the client's copy is these bytes; nothing to read. */
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        *code = MHD_HTTP_NOT_MODIFIED;
    } else {
        /* Streamed: each piece is read from the registry as the client takes
         * it, on the blob's own connection (no lock, no copy of the whole). */
        char why[256] = "";
        registry_blob *blob = NULL; /* owned: handed to the response */
        size_t len = 0;
        int status = registry_blob_open(ctx->reg, info.sha256, &blob, &len, why, sizeof why);
        if ((e = registry_error(status, why, msg, msglen)) != HTTP_ERR_NONE)
            return e;
        r = MHD_create_response_from_callback(len, 64 * 1024, blob_read_cb, blob, blob_free_cb);
        if (!r) {
            registry_blob_close(blob);
            return HTTP_ERR_NONE;
        }
        if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                    "application/octet-stream") != MHD_YES ||
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition) !=
                MHD_YES) {
            MHD_destroy_response(r);
            return HTTP_ERR_NONE;
        }
    }
    if (!r)
        return HTTP_ERR_NONE;
    /* The bytes of a version never change, so the tag is the content hash. */
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag) != MHD_YES ||
        MHD_add_response_header(r, "X-Model", info.model) != MHD_YES ||
        MHD_add_response_header(r, "X-Model-Version", version_str) != MHD_YES) {
        MHD_destroy_response(r);
        return HTTP_ERR_NONE;
    }
    *resp = r;
    return HTTP_ERR_NONE;
}

enum MHD_Result api_models_get_version_file(http_ctx *ctx, struct MHD_Connection *c,
                                            http_request *req)
{
    char msg[HTTP_MESSAGE_MAX];
    struct MHD_Response *resp = NULL; /* owned: destroyed after queueing */
    unsigned int code = MHD_HTTP_OK;
    http_error e = version_file(ctx, c, req, &resp, &code, msg, sizeof msg);
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    if (!resp)
        return MHD_NO; /* out of memory building it: drop the connection */
    enum MHD_Result ret = MHD_queue_response(c, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- POST /models/{name}/checkpoints ---------------------------------- */

static int is_sha256_hex(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return 0;
    return 1;
}

/* The upload's headers: what can be refused before a byte is hashed. */
static http_error upload_params(http_ctx *ctx, struct MHD_Connection *c, const http_request *req,
                                const char **name, const char **claimed, char *msg,
                                size_t msglen)
{
    http_error e = model_param(req, name, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    const char *ctype =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!http_body_type_accepted(c, "application/octet-stream", ctx->opts->token != NULL)) {
        snprintf(msg, msglen,
                 "a checkpoint upload is the safetensors file itself, sent with Content-Type: "
                 "application/octet-stream (got %.64s)",
                 ctype ? ctype : "none");
        return HTTP_ERR_UNSUPPORTED_MEDIA;
    }
    *claimed = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Content-SHA256");
    if (*claimed && !is_sha256_hex(*claimed)) {
        snprintf(msg, msglen, "X-Content-SHA256 must be 64 hexadecimal digits");
        return HTTP_ERR_BAD_REQUEST;
    }
    if (req->body_len == 0) {
        snprintf(msg, msglen, "the body is empty; expected a safetensors checkpoint");
        return HTTP_ERR_INVALID_CHECKPOINT;
    }
    return HTTP_ERR_NONE;
}

/* Validates and stores the body as the next version of name: info and
 * created (0 when these bytes were stored already) say what it became. The
 * registry hashes the bytes, once, and checks them against claimed. */
static http_error upload_store(http_ctx *ctx, const char *name, const uint8_t *body, size_t len,
                               const char *claimed, registry_checkpoint_info *info, int *created,
                               char *msg, size_t msglen)
{
    /* Validate everything before the registry sees a byte. */
    char why[256] = "";
    vae_model m;             /* owned: freed below */
    char *metrics = NULL;    /* owned: freed below */
    memset(&m, 0, sizeof m); /* vae_free is safe on it whatever the load did */
    st_limits limits = {ctx->opts->max_header, ctx->opts->max_header_values};
    int rc = ckpt_load_mem_limited(&m, body, len, &limits, &metrics, why, sizeof why);
    if (rc != VAE_OK) {
        vae_free(&m);
        free(metrics);
        if (rc == VAE_ERR_TOO_LARGE || rc == VAE_ERR_TOO_MANY) /* still a 422, but a bound's */
            metrics_count_refusal(rc == VAE_ERR_TOO_LARGE ? METRICS_LIMIT_HEADER_SIZE
                                                          : METRICS_LIMIT_HEADER_VALUES);
        http_error e = http_error_from_vae(rc);
        if (rc == VAE_ERR_NOMEM)
            snprintf(msg, msglen, "out of memory checking the upload");
        else
            snprintf(msg, msglen, "not a valid checkpoint: %s", why);
        return e;
    }
    char config[8192];
    int config_len = ckpt_config_to_json(&m.cfg, config, sizeof config);
    vae_free(&m);
    if (config_len < 0) {
        free(metrics);
        snprintf(msg, msglen, "the checkpoint's config does not fit");
        return HTTP_ERR_INTERNAL;
    }

    int status = registry_put_checkpoint(ctx->reg, name, body, len, claimed, config, metrics,
                                         "upload", info, created, why, sizeof why);
    free(metrics);
    if (status == REGISTRY_ERR_ARG && claimed && strstr(why, "does not match")) {
        snprintf(msg, msglen,
                 "the body's sha256 is not the %.64s of X-Content-SHA256: the file was damaged "
                 "or cut short on the way (%s)",
                 claimed, why);
        return HTTP_ERR_BAD_REQUEST;
    }
    if (status == REGISTRY_ERR_ARG) { /* the upload's own fault, e.g. metrics that are not JSON */
        snprintf(msg, msglen, "%s", why);
        return HTTP_ERR_INVALID_CHECKPOINT;
    }
    return registry_error(status, why, msg, msglen);
}

/* The 201 (or 200 for bytes already stored: a retried upload is not a new
 * version) with Location. */
static enum MHD_Result upload_reply(struct MHD_Connection *c, const registry_checkpoint_info *info,
                                    int created)
{
    char msg[HTTP_MESSAGE_MAX];
    cJSON *root = cJSON_CreateObject(); /* owned: freed below */
    if (!root || !cJSON_AddStringToObject(root, "model", info->model) ||
        !cJSON_AddNumberToObject(root, "version", (double)info->version) ||
        !cJSON_AddStringToObject(root, "sha256", info->sha256) ||
        !cJSON_AddNumberToObject(root, "size", (double)info->size) ||
        !cJSON_AddBoolToObject(root, "created", created)) {
        cJSON_Delete(root);
        return http_send_error(c, nomem(msg, sizeof msg), "%s", msg);
    }
    char *text = cJSON_PrintUnformatted(root); /* owned: handed to the response */
    cJSON_Delete(root);
    if (!text)
        return http_send_error(c, nomem(msg, sizeof msg), "%s", msg);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer_with_free_callback(strlen(text), text, free);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    char location[256];
    snprintf(location, sizeof location, "/models/%s/versions/%" PRId64, info->model,
             info->version);
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") ==
            MHD_YES &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location) == MHD_YES)
        ret = MHD_queue_response(c, created ? MHD_HTTP_CREATED : MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* An upload between its admission and its answer. */
typedef struct {
    compute_task task; /* first: the uploads pool's view */
    http_ctx *ctx;
    const http_request *req;        /* borrowed: the body lives as long as the request */
    char claimed[65];               /* X-Content-SHA256, "" when absent */
    http_error e;                   /* what upload_store said */
    char msg[HTTP_MESSAGE_MAX];
    registry_checkpoint_info info;
    int created;
} upload_work;

static void upload_run(compute_task *t)
{
    upload_work *w = (upload_work *)t;
    w->e = upload_store(w->ctx, w->req->params[0], (const uint8_t *)w->req->body,
                        w->req->body_len, w->claimed[0] ? w->claimed : NULL, &w->info,
                        &w->created, w->msg, sizeof w->msg);
}

/* The headers are checked here, on the polling thread; the hashing,
 * validation and the fsync'd commit run on the uploads thread (a 256 MiB
 * file takes seconds), and the second call answers. */
enum MHD_Result api_models_post_checkpoint(http_ctx *ctx, struct MHD_Connection *c,
                                           http_request *req)
{
    upload_work *w = req->work;
    if (w) {
        if (w->e != HTTP_ERR_NONE)
            return http_send_error(c, w->e, "%s", w->msg);
        return upload_reply(c, &w->info, w->created);
    }
    char msg[HTTP_MESSAGE_MAX];
    const char *name = NULL, *claimed = NULL;
    http_error e = upload_params(ctx, c, req, &name, &claimed, msg, sizeof msg);
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    w = calloc(1, sizeof *w); /* owned by req: freed by work_free */
    if (!w)
        return MHD_NO;
    w->task.run = upload_run;
    w->task.conn = c;
    w->ctx = ctx;
    w->req = req;
    snprintf(w->claimed, sizeof w->claimed, "%s", claimed ? claimed : "");
    req->work = w;
    req->work_free = free;
    return compute_pool_admit(ctx->uploads, &w->task);
}

/* ---- DELETE /models/{name}/versions/{v} ------------------------------- */

static http_error version_delete(http_ctx *ctx, const http_request *req, char *msg,
                                 size_t msglen)
{
    const char *name;
    http_error e = model_param(req, &name, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    int64_t version;
    if (parse_version_number(req->params[1], &version)) {
        snprintf(msg, msglen, "a version to delete is named by its number, not an alias");
        return HTTP_ERR_BAD_REQUEST;
    }
    /* Requests holding this model keep their model_cache handle: the cache
     * frees a model only on its last release, whatever the registry does. */
    char why[256] = "";
    registry_checkpoint gone = {0};
    int status = registry_get_checkpoint(ctx->reg, name, version, &gone, why, sizeof why);
    if (!status)
        status = registry_delete_version(ctx->reg, name, version, why, sizeof why);
    if (!status)
        model_cache_forget(ctx->cache, gone.info.sha256);
    registry_free_checkpoint(&gone);
    return registry_error(status, why, msg, msglen);
}

enum MHD_Result api_models_delete_version(http_ctx *ctx, struct MHD_Connection *c,
                                          http_request *req)
{
    char msg[HTTP_MESSAGE_MAX];
    http_error e = version_delete(ctx, req, msg, sizeof msg);
    return reply_empty(c, e, msg, MHD_HTTP_NO_CONTENT);
}

/* ---- PUT and DELETE /models/{name}/aliases/{alias} -------------------- */

static http_error alias_put(http_ctx *ctx, struct MHD_Connection *c, const http_request *req,
                            cJSON **out, char *msg, size_t msglen)
{
    const char *name;
    http_error e = model_param(req, &name, msg, msglen);
    if (e == HTTP_ERR_NONE)
        e = alias_param(req, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    /* JSON by its type: a page of another site cannot send that unasked. */
    if (!http_body_type_accepted(c, "application/json", ctx->opts->token != NULL)) {
        snprintf(msg, msglen,
                 "the body is JSON, {\"version\": N}: send Content-Type: application/json");
        return HTTP_ERR_UNSUPPORTED_MEDIA;
    }
    const char *alias = req->params[1];
    cJSON *body = req->body ? cJSON_ParseWithLengthOpts(req->body, req->body_len, NULL, 0)
                            : NULL; /* owned: freed below */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "version");
    int64_t version = 0;
    int ok = 0;
    if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= (double)((int64_t)1 << 53) &&
        v->valuedouble == (double)(int64_t)v->valuedouble) {
        version = (int64_t)v->valuedouble;
        ok = 1;
    } else if (cJSON_IsString(v) && !parse_version_number(v->valuestring, &version)) {
        ok = 1;
    }
    cJSON_Delete(body);
    if (!ok) {
        snprintf(msg, msglen, "the body must be {\"version\": N} with N a version number");
        return HTTP_ERR_BAD_REQUEST;
    }
    char why[256] = "";
    int status = registry_set_alias(ctx->reg, name, alias, version, why, sizeof why);
    if ((e = registry_error(status, why, msg, msglen)) != HTTP_ERR_NONE)
        return e;
    cJSON *root = cJSON_CreateObject(); /* owned: handed to *out */
    if (root && (!cJSON_AddStringToObject(root, "model", name) ||
                 !cJSON_AddStringToObject(root, "alias", alias) ||
                 !cJSON_AddNumberToObject(root, "version", (double)version))) {
        cJSON_Delete(root);
        root = NULL; /* sent as nothing: the connection drops */
    }
    *out = root;
    return HTTP_ERR_NONE;
}

enum MHD_Result api_models_put_alias(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    char msg[HTTP_MESSAGE_MAX];
    cJSON *root = NULL;
    http_error e = alias_put(ctx, c, req, &root, msg, sizeof msg);
    return reply_json(c, e, msg, MHD_HTTP_OK, root);
}

static http_error alias_delete(http_ctx *ctx, const http_request *req, char *msg, size_t msglen)
{
    const char *name;
    http_error e = model_param(req, &name, msg, msglen);
    if (e == HTTP_ERR_NONE)
        e = alias_param(req, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    char why[256] = "";
    int status = registry_delete_alias(ctx->reg, name, req->params[1], why, sizeof why);
    return registry_error(status, why, msg, msglen);
}

enum MHD_Result api_models_delete_alias(http_ctx *ctx, struct MHD_Connection *c,
                                        http_request *req)
{
    char msg[HTTP_MESSAGE_MAX];
    http_error e = alias_delete(ctx, req, msg, sizeof msg);
    return reply_empty(c, e, msg, MHD_HTTP_NO_CONTENT);
}
