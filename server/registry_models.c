/* registry_models: models, their checkpoint versions, the blobs that hold
 * the bytes, and aliases. See registry.h; the SQL is in registry.c's table. */
#include "server/registry.h"

#include "server/registry_int.h"
#include "server/sha256.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/json_strict.h"

/* 0 when text is not JSON (json_strict's reading, stricter than SQLite's
 * json_valid); 1 when it is, or when there is no memory to tell (or no text). */
static int json_text_ok(const char *text)
{
    if (!text)
        return 1;
    json_strict_value v; /* owned: freed below */
    char jerr[64];
    vae_status s = json_strict_parse(text, strlen(text), 64, &v, jerr, sizeof jerr);
    json_strict_free(&v);
    return s != VAE_ERR_FORMAT;
}

/* ---- lookups (lock held) ---- */

/* The id of a model by name; REGISTRY_ERR_NOT_FOUND when absent. */
static int model_id(registry *r, const char *name, int64_t *id, char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, S_MODEL_ID);
    if (!st)
        return reg_db_fail(r, err, errlen, "looking up a model");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    reg_done(st);
    if (rc == SQLITE_ROW)
        return REGISTRY_OK;
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "looking up a model");
    util_set_err(err, errlen, "no model \"%s\" in the registry", name);
    return REGISTRY_ERR_NOT_FOUND;
}

/* Which model a request means: model, or (NULL) the default model, the only
 * one, or the most recently updated. Fills name (128 bytes) and id. */
static int find_model(registry *r, const char *model, char name[128], int64_t *id, char *err,
                      size_t errlen)
{
    if (!model && r->default_model[0])
        model = r->default_model;
    if (model) {
        int status = reg_check_model_arg(model, err, errlen);
        if (status)
            return status;
        reg_copy_str(name, 128, model);
        return model_id(r, name, id, err, errlen);
    }
    sqlite3_stmt *st = reg_stmt(r, S_MODEL_DEFAULT);
    if (!st)
        return reg_db_fail(r, err, errlen, "finding the default model");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        reg_copy_col(st, 0, name, 128);
    reg_done(st);
    if (rc == SQLITE_DONE) {
        util_set_err(err, errlen, "no model in the registry");
        return REGISTRY_ERR_NOT_FOUND;
    }
    if (rc != SQLITE_ROW)
        return reg_db_fail(r, err, errlen, "finding the default model");
    return model_id(r, name, id, err, errlen);
}

/* Fills info (and, when not NULL, the JSON columns, malloc'd) from a row of
 * CKPT_COLUMNS. */
static int read_checkpoint_row(sqlite3_stmt *st, registry_checkpoint_info *info,
                               char **config_json, char **metrics_json)
{
    const char *col[CKPT_N_COLUMNS];
    int status = reg_row_text(st, CKPT_N_COLUMNS, col);
    int read = reg_checkpoint_row(col, info, config_json, metrics_json);
    return status ? status : read;
}

static int get_checkpoint(registry *r, int64_t id, const char *name, int64_t version,
                          registry_checkpoint_info *info, char **config_json,
                          char **metrics_json, char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, S_CKPT_GET);
    if (!st)
        return reg_db_fail(r, err, errlen, "reading a checkpoint");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, version);
    int rc = sqlite3_step(st);
    int status = REGISTRY_OK;
    if (rc == SQLITE_ROW) {
        status = read_checkpoint_row(st, info, config_json, metrics_json);
        if (status)
            util_set_err(err, errlen, "registry: out of memory");
    }
    reg_done(st);
    if (rc == SQLITE_ROW)
        return status;
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "reading a checkpoint");
    util_set_err(err, errlen, "model \"%s\" has no version %" PRId64, name, version);
    return REGISTRY_ERR_NOT_FOUND;
}

/* The version an alias points at; REGISTRY_ERR_NOT_FOUND when unset. */
static int alias_version(registry *r, int64_t id, const char *name, const char *alias,
                         int64_t *version, char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, S_ALIAS_GET);
    if (!st)
        return reg_db_fail(r, err, errlen, "reading an alias");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int64(st, 0);
    reg_done(st);
    if (rc == SQLITE_ROW)
        return REGISTRY_OK;
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "reading an alias");
    if (strcmp(alias, "latest") == 0)
        util_set_err(err, errlen, "model \"%s\" has no versions", name);
    else
        util_set_err(err, errlen, "model \"%s\" has no alias \"%.64s\"", name, alias);
    return REGISTRY_ERR_NOT_FOUND;
}

/* The highest version of a model other than except (0 when none). */
static int max_version_except(registry *r, int64_t id, int64_t except, int64_t *out,
                              char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, S_CKPT_MAX_EXCEPT);
    if (!st)
        return reg_db_fail(r, err, errlen, "reading versions");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, except);
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0; /* NULL reads as 0 */
    reg_done(st);
    if (rc != SQLITE_ROW)
        return reg_db_fail(r, err, errlen, "reading versions");
    return REGISTRY_OK;
}

/* Points 'latest' at version, following again; version 0 removes it. */
static int latest_auto(registry *r, int64_t id, int64_t version, char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, version > 0 ? S_LATEST_AUTO : S_ALIAS_DELETE);
    if (!st)
        return reg_db_fail(r, err, errlen, "updating 'latest'");
    sqlite3_bind_int64(st, 1, id);
    if (version > 0)
        sqlite3_bind_int64(st, 2, version);
    else
        sqlite3_bind_text(st, 2, "latest", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    reg_done(st);
    return rc == SQLITE_DONE ? REGISTRY_OK : reg_db_fail(r, err, errlen, "updating 'latest'");
}

/* ---- put ---- */

/* The body of a put, inside the caller's write transaction (a job's result is
 * put in the same transaction that marks the job succeeded). */
int reg_put_in_tx(registry *r, const char *model, const uint8_t *blob, size_t len,
                  const char *sha, const char *config_json, const char *metrics_json,
                  const char *source, registry_checkpoint_info *out, int *created,
                  char *err, size_t errlen)
{
    char now[32];
    reg_now_iso(now);
    int status;

    sqlite3_stmt *st = reg_stmt(r, S_MODEL_INSERT);
    if (!st)
        return reg_db_fail(r, err, errlen, "creating the model");
    sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    reg_done(st);
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "creating the model");
    int64_t id = 0;
    if ((status = model_id(r, model, &id, err, errlen)))
        return status;

    /* The same bytes again: the version that already holds them. */
    st = reg_stmt(r, S_CKPT_BY_SHA);
    if (!st)
        return reg_db_fail(r, err, errlen, "looking up the bytes");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, sha, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    int64_t existing = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    reg_done(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "looking up the bytes");
    if (existing) {
        status = get_checkpoint(r, id, model, existing, out, NULL, NULL, err, errlen);
        if (status == REGISTRY_OK)
            *created = 0;
        return status;
    }

    st = reg_stmt(r, S_BLOB_INSERT);
    if (!st)
        return reg_db_fail(r, err, errlen, "storing the bytes");
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)len);
    sqlite3_bind_blob64(st, 3, blob, (sqlite3_uint64)len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    reg_done(st);
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "storing the bytes");

    st = reg_stmt(r, S_CKPT_NEXT_VERSION);
    if (!st)
        return reg_db_fail(r, err, errlen, "numbering the version");
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    reg_done(st);
    if (rc != SQLITE_ROW)
        return reg_db_fail(r, err, errlen, "numbering the version");

    st = reg_stmt(r, S_CKPT_INSERT);
    if (!st)
        return reg_db_fail(r, err, errlen, "storing the version");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, version);
    sqlite3_bind_text(st, 3, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)len);
    if (config_json)
        sqlite3_bind_text(st, 5, config_json, -1, SQLITE_STATIC);
    if (metrics_json)
        sqlite3_bind_text(st, 6, metrics_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, now, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    reg_done(st);
    if (rc == SQLITE_CONSTRAINT_CHECK) {
        /* json_valid() also says no when SQLite has no memory to parse with
         * (test_faults found it): only JSON that is not JSON is the caller's. */
        if (json_text_ok(config_json) && json_text_ok(metrics_json)) {
            util_set_err(err, errlen, "out of memory checking the checkpoint's config and metrics");
            return REGISTRY_ERR_NOMEM;
        }
        util_set_err(err, errlen, "checkpoint config or metrics is not valid JSON");
        return REGISTRY_ERR_ARG;
    }
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "storing the version");

    st = reg_stmt(r, S_LATEST_FOLLOW);
    if (!st)
        return reg_db_fail(r, err, errlen, "updating 'latest'");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, version);
    rc = sqlite3_step(st);
    reg_done(st);
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "updating 'latest'");

    st = reg_stmt(r, S_MODEL_TOUCH);
    if (!st)
        return reg_db_fail(r, err, errlen, "updating the model");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    reg_done(st);
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "updating the model");

    memset(out, 0, sizeof *out);
    reg_copy_str(out->model, sizeof out->model, model);
    out->version = version;
    reg_copy_str(out->sha256, sizeof out->sha256, sha);
    out->size = (int64_t)len;
    reg_copy_str(out->created_at, sizeof out->created_at, now);
    reg_copy_str(out->source, sizeof out->source, source);
    *created = 1;
    return REGISTRY_OK;
}

static int put_locked(registry *r, const char *model, const uint8_t *blob, size_t len,
                      const char *sha, const char *config_json, const char *metrics_json,
                      const char *source, registry_checkpoint_info *out, int *created,
                      char *err, size_t errlen)
{
    int status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (status)
        return status;
    status = reg_finish(r,
                        reg_put_in_tx(r, model, blob, len, sha, config_json, metrics_json, source,
                                      out, created, err, errlen),
                        err, errlen);
    if (status)
        *created = 0; /* nothing was stored after all */
    return status;
}

/* A connection to the registry's file of its own, for work without the
 * registry's lock: its statements are its own, and WAL lets it read while
 * r->db writes and write while r->db reads. NULL when it does not open. */
static sqlite3 *side_connection(registry *r)
{
    sqlite3 *db = NULL; /* owned by the caller: sqlite3_close */
    if (sqlite3_open_v2(r->path, &db, reg_open_flags(r), NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 60000); /* as r->db's: a staged upload may hold the write lock */
    return db;
}

/* Writes the bytes of a put into blobs on a side connection, committed
 * (fsync'd) before the registry's lock is taken: the put then finds them
 * there and writes only its small rows under the lock, so a write of
 * hundreds of MB does not hold every request that reads the registry.
 * Bytes written and then not named by a version (the put failed, or a crash
 * came between) are collected: by the put, and at the next open
 * (S_BLOB_ORPHANS); one collected meanwhile is written again by the put.
 * Best effort: on any failure the put writes the bytes itself. */
void reg_stage_blob(registry *r, const uint8_t *blob, size_t len, const char *sha)
{
    if (!strcmp(r->path, ":memory:") || r->read_only)
        return; /* a side connection would see another database; or could not write */
    sqlite3 *db = side_connection(r); /* owned: closed below */
    sqlite3_stmt *st = NULL;
    if (db && sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, reg_sql(S_BLOB_INSERT), -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)len);
        sqlite3_bind_blob64(st, 3, blob, (sqlite3_uint64)len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            fprintf(stderr, "vaed: registry: staging %zu bytes: %s\n", len, sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Drops the bytes of a failed put unless a version names them. */
void reg_collect_blob_locked(registry *r, const char *sha)
{
    sqlite3_stmt *st = reg_stmt(r, S_BLOB_COLLECT);
    if (!st)
        return;
    sqlite3_bind_text(st, 1, sha, -1, SQLITE_STATIC);
    sqlite3_step(st);
    reg_done(st);
}

registry_status registry_put_checkpoint(registry *r, const char *model, const uint8_t *blob,
                                        size_t len, const char *expected_sha256,
                                        const char *config_json, const char *metrics_json,
                                        const char *source, registry_checkpoint_info *out,
                                        int *created, char *err, size_t errlen)
{
    registry_checkpoint_info scratch;
    int scratch_created;
    if (!out)
        out = &scratch;
    if (!created)
        created = &scratch_created;
    *created = 0;
    if (!registry_valid_name(model)) {
        util_set_err(err, errlen, "invalid model name \"%.64s\": use 1-64 of A-Z a-z 0-9 . _ -, "
                             "not starting with . or -",
                     model ? model : "");
        return REGISTRY_ERR_ARG;
    }
    if (!blob || len == 0) {
        util_set_err(err, errlen, "empty checkpoint");
        return REGISTRY_ERR_ARG;
    }
    if (!source)
        source = "upload";
    if (!*source || strlen(source) >= sizeof out->source) {
        util_set_err(err, errlen, "checkpoint source must be 1-%zu characters",
                     sizeof out->source - 1);
        return REGISTRY_ERR_ARG;
    }
    /* Hashing is the slow part of a put: done before taking the lock. */
    char sha[65];
    sha256_hex(blob, len, sha);
    if (expected_sha256 && strcasecmp(expected_sha256, sha) != 0) {
        util_set_err(err, errlen, "sha256 %.64s does not match the bytes (%s)", expected_sha256,
                     sha);
        return REGISTRY_ERR_ARG;
    }
    if (r->pg)
        return reg_pg_put_checkpoint(r->pg, model, blob, len, sha, config_json, metrics_json,
                                     source, out, created, err, errlen);
    reg_stage_blob(r, blob, len, sha);
    pthread_mutex_lock(&r->mu);
    int status = put_locked(r, model, blob, len, sha, config_json, metrics_json, source, out,
                            created, err, errlen);
    if (status)
        reg_collect_blob_locked(r, sha);
    pthread_mutex_unlock(&r->mu);
    return status;
}

/* ---- resolve and read ---- */

int reg_parse_version(const char *name, const char *v, int64_t *version, char *err,
                      size_t errlen)
{
    *version = 0;
    if (reg_all_digits(v)) {
        if (strlen(v) > 18) {
            util_set_err(err, errlen, "model \"%s\" has no version %.64s", name, v);
            return REGISTRY_ERR_NOT_FOUND;
        }
        *version = strtoll(v, NULL, 10);
        return REGISTRY_OK;
    }
    if (!registry_valid_alias(v)) {
        util_set_err(err, errlen, "invalid version or alias \"%.64s\"", v);
        return REGISTRY_ERR_ARG;
    }
    return REGISTRY_OK;
}

/* version_or_alias: NULL = "latest", digits = a version number, else an alias. */
static int resolve_version(registry *r, int64_t id, const char *name,
                           const char *version_or_alias, int64_t *version, char *err,
                           size_t errlen)
{
    const char *v = version_or_alias ? version_or_alias : "latest";
    int status = reg_parse_version(name, v, version, err, errlen);
    if (status || *version)
        return status;
    return alias_version(r, id, name, v, version, err, errlen);
}

static int resolve_locked(registry *r, const char *model, const char *version_or_alias,
                          registry_checkpoint_info *out, char *err, size_t errlen)
{
    int status = reg_exec(r, S_BEGIN_READ, err, errlen);
    if (status)
        return status;
    char name[128];
    int64_t id = 0, version = 0;
    status = find_model(r, model, name, &id, err, errlen);
    if (!status)
        status = resolve_version(r, id, name, version_or_alias, &version, err, errlen);
    if (!status)
        status = get_checkpoint(r, id, name, version, out, NULL, NULL, err, errlen);
    return reg_finish(r, status, err, errlen);
}

registry_status registry_resolve(registry *reg, const char *model, const char *version_or_alias,
                                 registry_checkpoint_info *out, char *err, size_t errlen)
{
    if (reg->pg)
        return reg_pg_resolve(reg->pg, model, version_or_alias, out, err, errlen);
    registry *r = reg_read_begin(reg);
    int status = resolve_locked(r, model, version_or_alias, out, err, errlen);
    reg_read_end(reg, r);
    return status;
}

/* One piece of a PostgreSQL blob: the PGresult holding bytes [at, at + len). */
typedef struct {
    void *res;              /* owned; NULL when the slot is empty */
    const uint8_t *bytes;   /* in res */
    size_t at, len;
} blob_piece;

struct registry_blob {
    registry *owner;        /* whose blob connections db goes back to */
    sqlite3 *db;            /* owned: this blob's connection, inside a read transaction */
    sqlite3_blob *handle;   /* owned */
    registry_pg *pg;        /* borrowed: the PostgreSQL backend, which reads in pieces */
    char sha256[65];        /* PostgreSQL: what each piece's statement names */
    /* PostgreSQL: at most two pieces (the one being read and the next,
     * prefetched); mu guards them, so a fetch on one thread can install a
     * piece while another thread reads; it is held to look or copy, never
     * across a statement. */
    pthread_mutex_t mu;
    int has_mu;
    blob_piece pieces[2];
    size_t read_at;         /* under mu: where the last read began */
    size_t size;
};

size_t registry_blob_size(const registry_blob *b)
{
    return b->size;
}

void registry_blob_close(registry_blob *b)
{
    if (!b)
        return;
    for (int i = 0; i < 2; i++)
        reg_pg_release_blob(b->pieces[i].res);
    if (b->has_mu)
        pthread_mutex_destroy(&b->mu);
    sqlite3_blob_close(b->handle);
    if (b->db && !sqlite3_get_autocommit(b->db))
        sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL);
    reg_blob_conn_put(b->owner, b->db);
    free(b);
}

/* The slot holding offset, or -1; under b->mu. */
static int piece_holding(const registry_blob *b, size_t offset)
{
    for (int i = 0; i < 2; i++) {
        const blob_piece *pc = &b->pieces[i];
        if (pc->res && offset >= pc->at && offset < pc->at + pc->len)
            return i;
    }
    return -1;
}

size_t registry_blob_available(const registry_blob *b, size_t offset)
{
    if (offset >= b->size)
        return 0;
    if (!b->pg)
        return b->size - offset;
    registry_blob *m = (registry_blob *)b; /* the lock only: nothing changes */
    pthread_mutex_lock(&m->mu);
    int i = piece_holding(b, offset);
    size_t n = i < 0 ? 0 : b->pieces[i].at + b->pieces[i].len - offset;
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* Brings in the piece holding offset. keep: the piece being read (read_at)
 * stays, the other slot is replaced (two pieces held: a prefetch); else
 * every piece goes first, before the statement (one held). */
static registry_status blob_fetch(registry_blob *b, size_t offset, int keep, char *err,
                                  size_t errlen)
{
    if (!b->pg || registry_blob_available(b, offset))
        return REGISTRY_OK;
    if (offset >= b->size) {
        util_set_err(err, errlen, "read at %zu past the %zu bytes of the checkpoint", offset,
                     b->size);
        return REGISTRY_ERR_ARG;
    }
    blob_piece old[2] = {{0}}; /* released after the lock */
    pthread_mutex_lock(&b->mu);
    int reading = keep ? piece_holding(b, b->read_at) : -1;
    for (int i = 0; i < 2; i++)
        if (i != reading) {
            old[i] = b->pieces[i];
            memset(&b->pieces[i], 0, sizeof b->pieces[i]);
        }
    pthread_mutex_unlock(&b->mu);
    for (int i = 0; i < 2; i++)
        reg_pg_release_blob(old[i].res);
    size_t at = offset - offset % REGISTRY_BLOB_PIECE;
    size_t want = b->size - at < REGISTRY_BLOB_PIECE ? b->size - at : REGISTRY_BLOB_PIECE;
    size_t n = 0, total = 0;
    blob_piece pc = {.at = at};
    int status = reg_pg_fetch_piece(b->pg, b->sha256, at, want, &pc.res, &pc.bytes, &n, &total,
                                    err, errlen);
    if (status == REGISTRY_ERR_NOT_FOUND)
        util_set_err(err, errlen, "the checkpoint bytes %.64s were deleted while being read",
                     b->sha256);
    if (!status && (total != b->size || n != want)) {
        util_set_err(err, errlen, "the checkpoint bytes %.64s changed size while being read",
                     b->sha256);
        status = REGISTRY_ERR_DB;
    }
    if (status) {
        reg_pg_release_blob(pc.res);
        return status;
    }
    pc.len = n;
    pthread_mutex_lock(&b->mu);
    int slot = b->pieces[0].res ? 1 : 0; /* the one emptied above */
    b->pieces[slot] = pc;
    pthread_mutex_unlock(&b->mu);
    return REGISTRY_OK;
}

registry_status registry_blob_fetch(registry_blob *b, size_t offset, char *err, size_t errlen)
{
    return blob_fetch(b, offset, 0, err, errlen);
}

registry_status registry_blob_prefetch(registry_blob *b, size_t offset, char *err, size_t errlen)
{
    return blob_fetch(b, offset, 1, err, errlen);
}

/* The PostgreSQL side of registry_blob_open: the first piece, and the size. */
static registry_status blob_open_pg(registry_blob *b, const char *sha256, char *err,
                                    size_t errlen)
{
    snprintf(b->sha256, sizeof b->sha256, "%.64s", sha256);
    size_t n = 0;
    blob_piece *pc = &b->pieces[0];
    int status = reg_pg_fetch_piece(b->pg, b->sha256, 0, REGISTRY_BLOB_PIECE, &pc->res,
                                    &pc->bytes, &n, &b->size, err, errlen);
    if (!status && n != (b->size < REGISTRY_BLOB_PIECE ? b->size : REGISTRY_BLOB_PIECE)) {
        util_set_err(err, errlen, "the checkpoint bytes %.64s are shorter than they say",
                     b->sha256);
        status = REGISTRY_ERR_DB;
    }
    pc->len = n;
    return status;
}

registry_status registry_blob_open(registry *r, const char *sha256, registry_blob **out,
                                   size_t *size, char *err, size_t errlen)
{
    *out = NULL;
    *size = 0;
    if (!sha256) {
        util_set_err(err, errlen, "no sha256 given");
        return REGISTRY_ERR_ARG;
    }
    registry_blob *b = calloc(1, sizeof *b); /* owned by the caller via *out */
    if (!b) {
        util_set_err(err, errlen, "out of memory opening checkpoint bytes");
        return REGISTRY_ERR_NOMEM;
    }
    int status = REGISTRY_ERR_DB;
    if (r->pg) {
        b->pg = r->pg;
        pthread_mutex_init(&b->mu, NULL);
        b->has_mu = 1;
        if ((status = blob_open_pg(b, sha256, err, errlen))) {
            registry_blob_close(b);
            return status;
        }
        *out = b;
        *size = b->size;
        return REGISTRY_OK;
    }
    sqlite3_stmt *st = NULL;
    /* One of the registry's blob connections, opened beforehand (the
     * polling thread that serves a download does not open files): every
     * statement here is this connection's, so the registry's lock is never
     * needed. */
    b->owner = r;
    if (!(b->db = reg_blob_conn_get(r)))
        goto fail;
    /* One snapshot from the lookup to the last read. */
    if (sqlite3_exec(b->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(b->db, "SELECT rowid, length(data) FROM blobs WHERE sha256 = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        util_set_err(err, errlen, "no checkpoint bytes with sha256 %.64s", sha256);
        status = REGISTRY_ERR_NOT_FOUND;
        goto fail_quiet;
    }
    if (rc != SQLITE_ROW)
        goto fail;
    sqlite3_int64 rowid = sqlite3_column_int64(st, 0);
    b->size = (size_t)sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_blob_open(b->db, "main", "blobs", "data", rowid, 0, &b->handle) != SQLITE_OK)
        goto fail;
    *out = b;
    *size = b->size;
    return REGISTRY_OK;
fail:
    util_set_err(err, errlen, "reading checkpoint bytes: %s",
                 b->db ? sqlite3_errmsg(b->db) : "cannot open a connection to the registry");
    status = b->db && sqlite3_errcode(b->db) == SQLITE_NOMEM ? REGISTRY_ERR_NOMEM : REGISTRY_ERR_DB;
fail_quiet:
    sqlite3_finalize(st);
    registry_blob_close(b);
    return status;
}

registry_status registry_blob_read(registry_blob *b, size_t offset, void *buf, size_t len,
                                   char *err, size_t errlen)
{
    if (offset > b->size || len > b->size - offset || len > INT32_MAX) {
        util_set_err(err, errlen, "read of %zu bytes at %zu past the %zu of the checkpoint", len,
                     offset, b->size);
        return REGISTRY_ERR_ARG;
    }
    if (b->pg) {
        for (uint8_t *to = buf; len;) {
            /* Copied under the lock: a prefetch may replace the other piece. */
            pthread_mutex_lock(&b->mu);
            int i = piece_holding(b, offset);
            size_t n = 0;
            if (i >= 0) {
                const blob_piece *pc = &b->pieces[i];
                n = pc->at + pc->len - offset;
                n = n < len ? n : len;
                memcpy(to, pc->bytes + (offset - pc->at), n);
                b->read_at = offset;
            }
            pthread_mutex_unlock(&b->mu);
            if (!n) {
                int status = registry_blob_fetch(b, offset, err, errlen);
                if (status)
                    return status;
            }
            to += n;
            offset += n;
            len -= n;
        }
        return REGISTRY_OK;
    }
    if (len && sqlite3_blob_read(b->handle, buf, (int)len, (int)offset) != SQLITE_OK) {
        util_set_err(err, errlen, "reading checkpoint bytes: %s", sqlite3_errmsg(b->db));
        return REGISTRY_ERR_DB;
    }
    return REGISTRY_OK;
}

registry_status registry_get_blob(registry *r, const char *sha256, uint8_t **blob, size_t *len,
                                  char *err, size_t errlen)
{
    *blob = NULL;
    *len = 0;
    /* PostgreSQL too: piece by piece into the copy, so a load holds the
     * checkpoint once (and a piece), not libpq's copy beside it. */
    registry_blob *b = NULL; /* owned here */
    size_t n = 0;
    int status = registry_blob_open(r, sha256, &b, &n, err, errlen);
    if (status)
        return status;
    uint8_t *copy = malloc(n ? n : 1); /* owned by the caller via *blob */
    if (!copy) {
        util_set_err(err, errlen, "out of memory reading %zu bytes of checkpoint", n);
        status = REGISTRY_ERR_NOMEM;
    } else {
        status = registry_blob_read(b, 0, copy, n, err, errlen);
    }
    registry_blob_close(b);
    if (status) {
        free(copy);
        return status;
    }
    *blob = copy;
    *len = n;
    return REGISTRY_OK;
}

int64_t registry_count_checkpoints(registry *reg)
{
    if (reg->pg)
        return reg_pg_count_checkpoints(reg->pg);
    registry *r = reg_read_begin(reg);
    int64_t n = -1;
    sqlite3_stmt *st = reg_stmt(r, S_CKPT_COUNT);
    if (st && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    reg_done(st);
    reg_read_end(reg, r);
    return n;
}

void registry_free_models(registry_model_info *models)
{
    free(models);
}

registry_status registry_list_models(registry *reg, registry_model_info **models, size_t *count,
                                     char *err, size_t errlen)
{
    if (reg->pg)
        return reg_pg_list_models(reg->pg, models, count, err, errlen);
    *models = NULL;
    *count = 0;
    reg_rows rows = {.size = sizeof(registry_model_info)};
    int status = REGISTRY_OK;
    registry *r = reg_read_begin(reg);
    sqlite3_stmt *st = reg_stmt(r, S_MODELS_LIST);
    if (!st) {
        status = reg_db_fail(r, err, errlen, "listing models");
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        registry_model_info *m = reg_rows_push(&rows);
        if (!m) {
            util_set_err(err, errlen, "registry: out of memory");
            status = REGISTRY_ERR_NOMEM;
            break;
        }
        const char *col[5];
        if ((status = reg_row_text(st, 5, col))) {
            util_set_err(err, errlen, "registry: out of memory");
            break;
        }
        reg_model_row(col, m);
    }
    if (status == REGISTRY_OK && rc != SQLITE_DONE)
        status = reg_db_fail(r, err, errlen, "listing models");
    reg_done(st);
out:
    reg_read_end(reg, r);
    if (status) {
        free(rows.items);
        return status;
    }
    *models = rows.items;
    *count = rows.n;
    return REGISTRY_OK;
}

void registry_free_checkpoint(registry_checkpoint *c)
{
    if (!c)
        return;
    free(c->config_json);
    free(c->metrics_json);
    c->config_json = c->metrics_json = NULL;
}

void registry_free_checkpoints(registry_checkpoint *list, size_t count)
{
    if (!list)
        return;
    for (size_t i = 0; i < count; i++)
        registry_free_checkpoint(&list[i]);
    free(list);
}

registry_status registry_get_checkpoint(registry *reg, const char *model, int64_t version,
                                        registry_checkpoint *out, char *err, size_t errlen)
{
    if (reg->pg)
        return reg_pg_get_checkpoint(reg->pg, model, version, out, err, errlen);
    memset(out, 0, sizeof *out);
    registry *r = reg_read_begin(reg);
    int status = reg_exec(r, S_BEGIN_READ, err, errlen);
    if (!status) {
        char name[128];
        int64_t id = 0;
        status = find_model(r, model, name, &id, err, errlen);
        if (!status)
            status = get_checkpoint(r, id, name, version, &out->info, &out->config_json,
                                    &out->metrics_json, err, errlen);
        status = reg_finish(r, status, err, errlen);
    }
    reg_read_end(reg, r);
    if (status)
        registry_free_checkpoint(out);
    return status;
}

static int list_checkpoints_locked(registry *r, const char *model, reg_rows *rows, char *err,
                                   size_t errlen)
{
    char name[128];
    int64_t id = 0;
    int status = find_model(r, model, name, &id, err, errlen);
    if (status)
        return status;
    sqlite3_stmt *st = reg_stmt(r, S_CKPT_LIST);
    if (!st)
        return reg_db_fail(r, err, errlen, "listing versions");
    sqlite3_bind_int64(st, 1, id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        registry_checkpoint *c = reg_rows_push(rows);
        if (!c) {
            status = REGISTRY_ERR_NOMEM;
            break;
        }
        if ((status = read_checkpoint_row(st, &c->info, &c->config_json, &c->metrics_json)))
            break;
    }
    if (status == REGISTRY_ERR_NOMEM)
        util_set_err(err, errlen, "registry: out of memory");
    else if (rc != SQLITE_DONE)
        status = reg_db_fail(r, err, errlen, "listing versions");
    reg_done(st);
    return status;
}

registry_status registry_list_checkpoints(registry *reg, const char *model,
                                          registry_checkpoint **list, size_t *count, char *err,
                                          size_t errlen)
{
    if (reg->pg)
        return reg_pg_list_checkpoints(reg->pg, model, list, count, err, errlen);
    *list = NULL;
    *count = 0;
    reg_rows rows = {.size = sizeof(registry_checkpoint)};
    registry *r = reg_read_begin(reg);
    int status = reg_exec(r, S_BEGIN_READ, err, errlen);
    if (!status)
        status = reg_finish(r, list_checkpoints_locked(r, model, &rows, err, errlen), err, errlen);
    reg_read_end(reg, r);
    if (status) {
        registry_free_checkpoints(rows.items, rows.n);
        return status;
    }
    *list = rows.items;
    *count = rows.n;
    return REGISTRY_OK;
}

static int list_aliases_locked(registry *r, const char *model, reg_rows *rows, char *err,
                               size_t errlen)
{
    char name[128];
    int64_t id = 0;
    int status = find_model(r, model, name, &id, err, errlen);
    if (status)
        return status;
    sqlite3_stmt *st = reg_stmt(r, S_ALIAS_LIST);
    if (!st)
        return reg_db_fail(r, err, errlen, "listing aliases");
    sqlite3_bind_int64(st, 1, id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        registry_alias_info *a = reg_rows_push(rows);
        if (!a) {
            status = REGISTRY_ERR_NOMEM;
            util_set_err(err, errlen, "registry: out of memory");
            break;
        }
        const char *col[3];
        if ((status = reg_row_text(st, 3, col))) {
            util_set_err(err, errlen, "registry: out of memory");
            break;
        }
        reg_alias_row(col, a);
    }
    if (status == REGISTRY_OK && rc != SQLITE_DONE)
        status = reg_db_fail(r, err, errlen, "listing aliases");
    reg_done(st);
    return status;
}

registry_status registry_list_aliases(registry *reg, const char *model, registry_alias_info **aliases,
                                      size_t *count, char *err, size_t errlen)
{
    if (reg->pg)
        return reg_pg_list_aliases(reg->pg, model, aliases, count, err, errlen);
    *aliases = NULL;
    *count = 0;
    reg_rows rows = {.size = sizeof(registry_alias_info)};
    registry *r = reg_read_begin(reg);
    int status = reg_exec(r, S_BEGIN_READ, err, errlen);
    if (!status)
        status = reg_finish(r, list_aliases_locked(r, model, &rows, err, errlen), err, errlen);
    reg_read_end(reg, r);
    if (status) {
        free(rows.items);
        return status;
    }
    *aliases = rows.items;
    *count = rows.n;
    return REGISTRY_OK;
}

/* ---- aliases and deletion ---- */

static int set_alias_locked(registry *r, const char *model, const char *alias,
                            int64_t version, char *err, size_t errlen)
{
    int64_t id = 0;
    registry_checkpoint_info info;
    int status = model_id(r, model, &id, err, errlen);
    if (!status)
        status = get_checkpoint(r, id, model, version, &info, NULL, NULL, err, errlen);
    if (status)
        return status;
    sqlite3_stmt *st = reg_stmt(r, S_ALIAS_SET);
    if (!st)
        return reg_db_fail(r, err, errlen, "setting an alias");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, version);
    int rc = sqlite3_step(st);
    reg_done(st);
    return rc == SQLITE_DONE ? REGISTRY_OK : reg_db_fail(r, err, errlen, "setting an alias");
}

registry_status registry_set_alias(registry *r, const char *model, const char *alias,
                                   int64_t version, char *err, size_t errlen)
{
    int status = reg_check_model_arg(model, err, errlen);
    if (status)
        return status;
    if (!registry_valid_alias(alias)) {
        util_set_err(err, errlen,
                     "invalid alias \"%.64s\": use 1-64 of A-Z a-z 0-9 . _ -, not starting with "
                     ". or -, not all digits",
                     alias ? alias : "");
        return REGISTRY_ERR_ARG;
    }
    if (r->pg)
        return reg_pg_set_alias(r->pg, model, alias, version, err, errlen);
    pthread_mutex_lock(&r->mu);
    status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r, set_alias_locked(r, model, alias, version, err, errlen), err,
                            errlen);
    pthread_mutex_unlock(&r->mu);
    return status;
}

static int delete_alias_locked(registry *r, const char *model, const char *alias, char *err,
                               size_t errlen)
{
    int64_t id = 0;
    int status = model_id(r, model, &id, err, errlen);
    if (status)
        return status;
    if (strcmp(alias, "latest") == 0) {
        /* Not a deletion: 'latest' goes back to following new versions. */
        int64_t highest = 0;
        status = max_version_except(r, id, 0, &highest, err, errlen);
        return status ? status : latest_auto(r, id, highest, err, errlen);
    }
    sqlite3_stmt *st = reg_stmt(r, S_ALIAS_DELETE);
    if (!st)
        return reg_db_fail(r, err, errlen, "deleting an alias");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    reg_done(st);
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "deleting an alias");
    if (sqlite3_changes(r->db) == 0) {
        util_set_err(err, errlen, "model \"%s\" has no alias \"%s\"", model, alias);
        return REGISTRY_ERR_NOT_FOUND;
    }
    return REGISTRY_OK;
}

registry_status registry_delete_alias(registry *r, const char *model, const char *alias, char *err,
                                      size_t errlen)
{
    int status = reg_check_model_arg(model, err, errlen);
    if (status)
        return status;
    if (!registry_valid_alias(alias)) {
        util_set_err(err, errlen, "invalid alias \"%.64s\"", alias ? alias : "");
        return REGISTRY_ERR_ARG;
    }
    if (r->pg)
        return reg_pg_delete_alias(r->pg, model, alias, err, errlen);
    pthread_mutex_lock(&r->mu);
    status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r, delete_alias_locked(r, model, alias, err, errlen), err, errlen);
    pthread_mutex_unlock(&r->mu);
    return status;
}

static int delete_version_locked(registry *r, const char *model, int64_t version, char *err,
                                 size_t errlen)
{
    int64_t id = 0;
    registry_checkpoint_info info;
    int status = model_id(r, model, &id, err, errlen);
    if (!status)
        status = get_checkpoint(r, id, model, version, &info, NULL, NULL, err, errlen);
    if (status)
        return status;

    sqlite3_stmt *st = reg_stmt(r, S_ALIAS_OTHER_AT);
    if (!st)
        return reg_db_fail(r, err, errlen, "reading aliases");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, version);
    int rc = sqlite3_step(st);
    char alias[128] = "";
    if (rc == SQLITE_ROW)
        reg_copy_col(st, 0, alias, sizeof alias);
    reg_done(st);
    if (rc == SQLITE_ROW) {
        util_set_err(err, errlen,
                     "version %" PRId64 " of model \"%s\" is aliased as \"%s\"; move or delete "
                     "the alias first",
                     version, model, alias);
        return REGISTRY_ERR_CONFLICT;
    }
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "reading aliases");

    /* 'latest' (followed or set by hand) must leave the version before it goes. */
    int64_t latest = 0;
    status = alias_version(r, id, model, "latest", &latest, err, errlen);
    if (status == REGISTRY_OK && latest == version) {
        int64_t highest = 0;
        status = max_version_except(r, id, version, &highest, err, errlen);
        if (!status)
            status = latest_auto(r, id, highest, err, errlen);
    } else if (status == REGISTRY_ERR_NOT_FOUND) {
        status = REGISTRY_OK;
    }
    if (status)
        return status;

    st = reg_stmt(r, S_CKPT_DELETE);
    if (!st)
        return reg_db_fail(r, err, errlen, "deleting a version");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, version);
    rc = sqlite3_step(st);
    reg_done(st);
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "deleting a version");

    st = reg_stmt(r, S_BLOB_COLLECT);
    if (!st)
        return reg_db_fail(r, err, errlen, "deleting checkpoint bytes");
    sqlite3_bind_text(st, 1, info.sha256, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    reg_done(st);
    return rc == SQLITE_DONE ? REGISTRY_OK
                             : reg_db_fail(r, err, errlen, "deleting checkpoint bytes");
}

registry_status registry_delete_version(registry *r, const char *model, int64_t version, char *err,
                                        size_t errlen)
{
    int status = reg_check_model_arg(model, err, errlen);
    if (status)
        return status;
    if (r->pg)
        return reg_pg_delete_version(r->pg, model, version, err, errlen);
    pthread_mutex_lock(&r->mu);
    status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r, delete_version_locked(r, model, version, err, errlen), err, errlen);
    pthread_mutex_unlock(&r->mu);
    return status;
}
