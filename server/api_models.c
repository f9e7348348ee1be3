/* api_models: registry endpoints. Each handler parses its path parameters
 * into native values first, calls the registry, and builds JSON only at the
 * end, under one root freed (or handed to http_send_json) in one place. The
 * work is a function returning an http_error and a message; the handler
 * sends its result, or the error, once. */
#include "server/api_models.h"

#include <inttypes.h>
#include <pthread.h>
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

/* Hands a handler's work (t its first member) to pool: req owns it from
 * now (work_free), and the handler is called again after the resume. */
static enum MHD_Result admit_work(compute_pool *pool, struct MHD_Connection *c, http_request *req,
                                  compute_task *t, void (*run)(compute_task *t),
                                  void (*work_free)(void *work))
{
    t->run = run;
    t->conn = c;
    req->work = t;
    req->work_free = work_free;
    return compute_pool_admit(pool, t);
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

/* A download under way, owned by its response and by the fetch in flight
 * (refs: the last to let go frees it). Each piece the client takes is read
 * where the registry holds it: SQLite's file on the polling thread (moving
 * bytes), a PostgreSQL piece fetched on the registry's I/O pool, so neither
 * a slow database nor a large checkpoint costs a polling thread. While a
 * piece is sent the next one is prefetched (two held), when the global
 * budget allows (prefetch_reserve); the connection is suspended only when
 * the piece MHD asks for is not in yet. */
typedef struct {
    compute_task task;    /* first: the fetch on ctx->registry_io; its conn stays NULL */
    compute_pool *io;     /* borrowed */
    struct MHD_Connection *conn; /* borrowed: suspended while waiting */
    registry_blob *blob;  /* owned */
    size_t size;
    int refs;             /* atomic: the response's and the fetch's */
    int reserved;         /* holds DOWNLOAD_PIECE_BYTES of the prefetch budget */
    pthread_mutex_t mu;   /* guards what follows; never held across a statement */
    size_t fetch_at;      /* the offset whose piece the task fetches */
    int fetching;         /* the task is queued or running */
    int waiting;          /* the connection is suspended until it is done */
    int failed;           /* a fetch failed (why): the response ends short */
    char why[256];
} download;

/* Bytes of prefetched pieces all downloads may hold beside the one each
 * reads: 16 downloads prefetch; past that a download fetches each piece
 * when it needs it, holding one, so memory stays a piece per download plus
 * this, however many stall. */
#define DOWNLOAD_PREFETCH_BYTES ((size_t)16 << 20)
#define DOWNLOAD_PIECE_BYTES REGISTRY_BLOB_PIECE
static size_t prefetch_held; /* atomic */

static int prefetch_reserve(void)
{
    size_t held = __atomic_add_fetch(&prefetch_held, DOWNLOAD_PIECE_BYTES, __ATOMIC_RELAXED);
    if (held <= DOWNLOAD_PREFETCH_BYTES)
        return 1;
    __atomic_sub_fetch(&prefetch_held, DOWNLOAD_PIECE_BYTES, __ATOMIC_RELAXED);
    return 0;
}

static void download_unref(download *dl)
{
    if (__atomic_sub_fetch(&dl->refs, 1, __ATOMIC_ACQ_REL))
        return;
    if (dl->reserved)
        __atomic_sub_fetch(&prefetch_held, DOWNLOAD_PIECE_BYTES, __ATOMIC_RELAXED);
    registry_blob_close(dl->blob);
    pthread_mutex_destroy(&dl->mu);
    free(dl);
}

static void download_fetch_run(compute_task *t)
{
    download *dl = (download *)t;
    char why[256];
    /* A download that may hold two keeps the piece being sent. */
    int status = dl->reserved ? registry_blob_prefetch(dl->blob, dl->fetch_at, why, sizeof why)
                              : registry_blob_fetch(dl->blob, dl->fetch_at, why, sizeof why);
    pthread_mutex_lock(&dl->mu);
    if (status != REGISTRY_OK && !dl->failed) {
        dl->failed = 1;
        memcpy(dl->why, why, sizeof why);
    }
    dl->fetching = 0;
    int resume = dl->waiting;
    dl->waiting = 0;
    pthread_mutex_unlock(&dl->mu);
    /* Suspended until this: the response (and dl) cannot go meanwhile. */
    if (resume)
        MHD_resume_connection(dl->conn);
    download_unref(dl);
}

/* Queues the fetch of the piece at offset; under dl->mu, none in flight.
 * -1 when the pool is stopping. */
static int download_fetch_start(download *dl, size_t offset)
{
    dl->fetch_at = offset;
    dl->fetching = 1;
    __atomic_add_fetch(&dl->refs, 1, __ATOMIC_ACQ_REL);
    if (compute_pool_continue(dl->io, &dl->task) == 0)
        return 0;
    dl->fetching = 0;
    __atomic_sub_fetch(&dl->refs, 1, __ATOMIC_ACQ_REL); /* the response's is still held */
    return -1;
}

/* MHD asks for the next piece of a download: at most max bytes at pos.
 * Never waits for the database: a piece not yet in is fetched on the pool
 * (or is being prefetched) with the connection suspended, and 0 returned
 * (MHD's pattern for a reader with nothing ready); the fetch's resume
 * brings MHD back here. */
static ssize_t download_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    download *dl = cls;
    if (pos >= dl->size)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = registry_blob_available(dl->blob, (size_t)pos);
    pthread_mutex_lock(&dl->mu);
    if (!n) {
        if (dl->failed) {
            /* With Content-Length sent, the client sees a body cut short
             * (the connection closes), never bytes of something else. */
            pthread_mutex_unlock(&dl->mu);
            fprintf(stderr, "vaed: download: %s\n", dl->why);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        /* A prefetch under way is for this piece (reads go forward). */
        if (!dl->fetching && download_fetch_start(dl, (size_t)pos)) {
            pthread_mutex_unlock(&dl->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the server is stopping */
        }
        /* Under dl->mu, so the fetch's resume comes after the suspend. */
        dl->waiting = 1;
        MHD_suspend_connection(dl->conn);
        pthread_mutex_unlock(&dl->mu);
        return 0;
    }
    pthread_mutex_unlock(&dl->mu);
    n = n < max ? n : max;
    char why[256];
    if (registry_blob_read(dl->blob, (size_t)pos, buf, n, why, sizeof why) != REGISTRY_OK) {
        fprintf(stderr, "vaed: download: %s\n", why);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    /* After the read, which marks this piece as the one a prefetch keeps. */
    size_t next = (size_t)pos - (size_t)pos % DOWNLOAD_PIECE_BYTES + DOWNLOAD_PIECE_BYTES;
    pthread_mutex_lock(&dl->mu);
    if (!dl->fetching && !dl->failed && next < dl->size &&
        !registry_blob_available(dl->blob, next) &&
        (dl->reserved || (dl->reserved = prefetch_reserve())))
        download_fetch_start(dl, next); /* refused while stopping: fetched when needed */
    pthread_mutex_unlock(&dl->mu);
    return (ssize_t)n;
}

static void download_free(void *cls)
{
    download_unref(cls);
}

/* A download between its request and its response: the version resolved
 * and the blob opened (the first piece fetched) on the registry's I/O
 * pool, as both may wait for the database. */
typedef struct {
    compute_task task;        /* first: the I/O pool's view */
    http_ctx *ctx;
    const http_request *req;  /* borrowed */
    char *if_none_match;      /* owned: the header, copied before the suspend; NULL if none */
    http_error e;
    char msg[HTTP_MESSAGE_MAX];
    registry_checkpoint_info info;
    char etag[70];
    int not_modified;
    registry_blob *blob;      /* owned until a response takes it */
    size_t size;
} file_work;

static void file_work_free(void *p)
{
    file_work *w = p;
    registry_blob_close(w->blob);
    free(w->if_none_match);
    free(w);
}

static void file_open_run(compute_task *t)
{
    file_work *w = (file_work *)t;
    w->e = resolve_params(w->ctx, w->req, &w->info, w->msg, sizeof w->msg);
    if (w->e != HTTP_ERR_NONE)
        return;
    snprintf(w->etag, sizeof w->etag, "\"%s\"", w->info.sha256);
    if (w->if_none_match && http_etag_listed(w->if_none_match, w->etag)) {
        w->not_modified = 1; /* the client's copy is these bytes: nothing to read */
        return;
    }
    char why[256] = "";
    int status = registry_blob_open(w->ctx->reg, w->info.sha256, &w->blob, &w->size, why,
                                    sizeof why);
    w->e = registry_error(status, why, w->msg, sizeof w->msg);
}

/* The response of an opened file_work (NULL when out of memory): 304 when
 * the client's copy is these bytes, else the bytes, streamed. */
static struct MHD_Response *file_response(file_work *w)
{
    struct MHD_Response *r = NULL; /* owned: returned */
    if (w->not_modified) {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    } else {
        download *dl = calloc(1, sizeof *dl); /* owned: handed to the response */
        if (!dl)
            return NULL;
        dl->task.run = download_fetch_run;
        dl->conn = w->task.conn;
        dl->refs = 1;
        pthread_mutex_init(&dl->mu, NULL);
        dl->io = w->ctx->registry_io;
        dl->size = w->size;
        dl->blob = w->blob;
        w->blob = NULL;
        /* MHD's buffer is 64 KiB; the registry holds at most a piece. */
        r = MHD_create_response_from_callback(dl->size, 64 * 1024, download_read, dl,
                                              download_free);
        if (!r) {
            download_free(dl);
            return NULL;
        }
        char disposition[200];
        snprintf(disposition, sizeof disposition,
                 "attachment; filename=\"%s-v%" PRId64 ".safetensors\"", w->info.model,
                 w->info.version);
        if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                    "application/octet-stream") != MHD_YES ||
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition) !=
                MHD_YES) {
            MHD_destroy_response(r);
            return NULL;
        }
    }
    if (!r)
        return NULL;
    /* The bytes of a version never change, so the tag is the content hash. */
    char version_str[32];
    snprintf(version_str, sizeof version_str, "%" PRId64, w->info.version);
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, w->etag) != MHD_YES ||
        MHD_add_response_header(r, "X-Model", w->info.model) != MHD_YES ||
        MHD_add_response_header(r, "X-Model-Version", version_str) != MHD_YES) {
        MHD_destroy_response(r);
        return NULL;
    }
    return r;
}

/* First call: the name checked here, the rest admitted to the registry's
 * I/O pool; second call (after the resume): the answer. */
enum MHD_Result api_models_get_version_file(http_ctx *ctx, struct MHD_Connection *c,
                                            http_request *req)
{
    file_work *w = req->work;
    if (w) {
        if (w->e != HTTP_ERR_NONE)
            return http_send_error(c, w->e, "%s", w->msg);
        struct MHD_Response *resp = file_response(w); /* owned: destroyed after queueing */
        if (!resp)
            return MHD_NO; /* out of memory building it: drop the connection */
        enum MHD_Result ret =
            MHD_queue_response(c, w->not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    char msg[HTTP_MESSAGE_MAX];
    const char *name;
    http_error e = model_param(req, &name, msg, sizeof msg);
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    w = calloc(1, sizeof *w); /* owned by req: freed by file_work_free */
    if (!w)
        return MHD_NO;
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (inm && !(w->if_none_match = strdup(inm))) {
        free(w);
        return MHD_NO;
    }
    w->ctx = ctx;
    w->req = req;
    return admit_work(ctx->registry_io, c, req, &w->task, file_open_run, file_work_free);
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
    w->ctx = ctx;
    w->req = req;
    snprintf(w->claimed, sizeof w->claimed, "%s", claimed ? claimed : "");
    return admit_work(ctx->uploads, c, req, &w->task, upload_run, free);
}

/* ---- registry writes: on the registry's I/O pool ---------------------- */

/* A write between its admission and its answer. A commit is an fsync, and
 * may wait for another process's lock on the file (busy_timeout) or for
 * another replica's on PostgreSQL: seconds that must not hold a polling
 * thread, so the write runs on the registry's I/O pool with the
 * connection suspended, as uploads do on theirs. What can be refused
 * (names, the body) is refused first, where the request arrived. */
typedef struct registry_write {
    compute_task task;        /* first: the I/O pool's view */
    http_ctx *ctx;
    const http_request *req;  /* borrowed: its params live as long as the request */
    http_error (*write)(struct registry_write *w); /* on the pool: fills msg */
    int64_t version;          /* what the request names or sets */
    http_error e;
    char msg[HTTP_MESSAGE_MAX];
} registry_write;

static void registry_write_run(compute_task *t)
{
    registry_write *w = (registry_write *)t;
    w->e = w->write(w);
}

/* Admits write(w) with version on the I/O pool; the second call finds
 * req->work done. */
static enum MHD_Result write_admit(http_ctx *ctx, struct MHD_Connection *c, http_request *req,
                                   http_error (*write)(registry_write *w), int64_t version)
{
    registry_write *w = calloc(1, sizeof *w); /* owned by req: freed by work_free */
    if (!w)
        return MHD_NO;
    w->ctx = ctx;
    w->req = req;
    w->write = write;
    w->version = version;
    return admit_work(ctx->registry_io, c, req, &w->task, registry_write_run, free);
}

/* ---- DELETE /models/{name}/versions/{v} ------------------------------- */

static http_error version_delete_params(const http_request *req, int64_t *version, char *msg,
                                        size_t msglen)
{
    const char *name;
    http_error e = model_param(req, &name, msg, msglen);
    if (e != HTTP_ERR_NONE)
        return e;
    if (parse_version_number(req->params[1], version)) {
        snprintf(msg, msglen, "a version to delete is named by its number, not an alias");
        return HTTP_ERR_BAD_REQUEST;
    }
    return HTTP_ERR_NONE;
}

static http_error version_delete(registry_write *w)
{
    /* Requests holding this model keep their model_cache handle: the cache
     * frees a model only on its last release, whatever the registry does. */
    char why[256] = "";
    const char *name = w->req->params[0];
    registry_checkpoint gone = {0};
    int status = registry_get_checkpoint(w->ctx->reg, name, w->version, &gone, why, sizeof why);
    if (!status)
        status = registry_delete_version(w->ctx->reg, name, w->version, why, sizeof why);
    if (!status)
        model_cache_forget(w->ctx->cache, gone.info.sha256);
    registry_free_checkpoint(&gone);
    return registry_error(status, why, w->msg, sizeof w->msg);
}

enum MHD_Result api_models_delete_version(http_ctx *ctx, struct MHD_Connection *c,
                                          http_request *req)
{
    registry_write *w = req->work;
    if (w)
        return reply_empty(c, w->e, w->msg, MHD_HTTP_NO_CONTENT);
    char msg[HTTP_MESSAGE_MAX];
    int64_t version = 0;
    http_error e = version_delete_params(req, &version, msg, sizeof msg);
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    return write_admit(ctx, c, req, version_delete, version);
}

/* ---- PUT and DELETE /models/{name}/aliases/{alias} -------------------- */

/* The PUT's path and body: *version is what the alias is to name. */
static http_error alias_put_params(http_ctx *ctx, struct MHD_Connection *c,
                                   const http_request *req, int64_t *version, char *msg,
                                   size_t msglen)
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
    cJSON *body = req->body ? cJSON_ParseWithLengthOpts(req->body, req->body_len, NULL, 0)
                            : NULL; /* owned: freed below */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "version");
    int ok = 0;
    if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= (double)((int64_t)1 << 53) &&
        v->valuedouble == (double)(int64_t)v->valuedouble) {
        *version = (int64_t)v->valuedouble;
        ok = 1;
    } else if (cJSON_IsString(v) && !parse_version_number(v->valuestring, version)) {
        ok = 1;
    }
    cJSON_Delete(body);
    if (!ok) {
        snprintf(msg, msglen, "the body must be {\"version\": N} with N a version number");
        return HTTP_ERR_BAD_REQUEST;
    }
    return HTTP_ERR_NONE;
}

static http_error alias_set(registry_write *w)
{
    char why[256] = "";
    int status = registry_set_alias(w->ctx->reg, w->req->params[0], w->req->params[1],
                                    w->version, why, sizeof why);
    return registry_error(status, why, w->msg, sizeof w->msg);
}

/* The PUT's answer: what the alias names now. */
static enum MHD_Result alias_put_reply(struct MHD_Connection *c, const registry_write *w)
{
    if (w->e != HTTP_ERR_NONE)
        return http_send_error(c, w->e, "%s", w->msg);
    cJSON *root = cJSON_CreateObject(); /* owned: handed to reply_json */
    if (root && (!cJSON_AddStringToObject(root, "model", w->req->params[0]) ||
                 !cJSON_AddStringToObject(root, "alias", w->req->params[1]) ||
                 !cJSON_AddNumberToObject(root, "version", (double)w->version))) {
        cJSON_Delete(root);
        root = NULL; /* sent as nothing: the connection drops */
    }
    return reply_json(c, HTTP_ERR_NONE, "", MHD_HTTP_OK, root);
}

enum MHD_Result api_models_put_alias(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    registry_write *w = req->work;
    if (w)
        return alias_put_reply(c, w);
    char msg[HTTP_MESSAGE_MAX];
    int64_t version = 0;
    http_error e = alias_put_params(ctx, c, req, &version, msg, sizeof msg);
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    return write_admit(ctx, c, req, alias_set, version);
}

static http_error alias_unset(registry_write *w)
{
    char why[256] = "";
    int status = registry_delete_alias(w->ctx->reg, w->req->params[0], w->req->params[1], why,
                                       sizeof why);
    return registry_error(status, why, w->msg, sizeof w->msg);
}

enum MHD_Result api_models_delete_alias(http_ctx *ctx, struct MHD_Connection *c,
                                        http_request *req)
{
    registry_write *w = req->work;
    if (w)
        return reply_empty(c, w->e, w->msg, MHD_HTTP_NO_CONTENT);
    char msg[HTTP_MESSAGE_MAX];
    const char *name;
    http_error e = model_param(req, &name, msg, sizeof msg);
    if (e == HTTP_ERR_NONE)
        e = alias_param(req, msg, sizeof msg);
    if (e != HTTP_ERR_NONE)
        return http_send_error(c, e, "%s", msg);
    return write_admit(ctx, c, req, alias_unset, 0);
}
