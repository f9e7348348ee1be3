/* registry_pg_models: models, checkpoint versions, blobs and aliases on
 * PostgreSQL; the same answers as registry_models.c on SQLite. See
 * registry_pg.h.
 *
 * SQLite serialises writers (BEGIN IMMEDIATE); here two replicas may put to
 * one model at once, so a write first locks the model's row (FOR UPDATE):
 * the same bytes put twice at once still make one version, and numbers are
 * handed out in order. */
#include "server/registry_pg.h"

#include "engine/util.h"
#include "server/registry_int.h"
#include "server/registry_pg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- lookups ----
 * Each runs on c: p->conn inside a write (p->mu held), a reader's
 * connection inside a read (reg_pg_read_begin). */

/* The id of a model by name (lock: its row is locked until the transaction
 * ends); REGISTRY_ERR_NOT_FOUND when absent. */
static int model_id(registry_pg *p, PGconn *c, const char *name, int lock, int64_t *id,
                    char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_text(&ps, name);
    PGresult *res = NULL;
    int status = reg_pg_query_on(p, c,
                              lock ? "SELECT id FROM models WHERE name = $1 FOR UPDATE"
                                   : "SELECT id FROM models WHERE name = $1",
                              &ps, 0, &res, err, errlen, "looking up a model");
    if (status)
        return status;
    int found = PQntuples(res) == 1;
    if (found)
        *id = reg_pg_int_at(res, 0, 0);
    PQclear(res);
    if (found)
        return REGISTRY_OK;
    util_set_err(err, errlen, "no model \"%s\" in the registry", name);
    return REGISTRY_ERR_NOT_FOUND;
}

/* model (NULL: the reader's default model, else the most recently updated
 * one holding a version), its name into name. */
static int find_model(registry_pg *p, const reg_pg_reader *rd, const char *model, char name[128],
                      int64_t *id, char *err, size_t errlen)
{
    if (!model && rd->default_model[0])
        model = rd->default_model;
    if (model) {
        int status = reg_check_model_arg(model, err, errlen);
        if (status)
            return status;
        reg_copy_str(name, 128, model);
        return model_id(p, rd->conn, name, 0, id, err, errlen);
    }
    PGresult *res = NULL;
    int status = reg_pg_query_on(p, rd->conn,
                              "SELECT m.id, m.name FROM models m WHERE EXISTS "
                              "(SELECT 1 FROM checkpoints c WHERE c.model_id = m.id) "
                              "ORDER BY m.updated_at DESC, m.id DESC LIMIT 1",
                              NULL, 0, &res, err, errlen, "finding the default model");
    if (status)
        return status;
    int found = PQntuples(res) == 1;
    if (found) {
        *id = reg_pg_int_at(res, 0, 0);
        reg_pg_copy_at(res, 0, 1, name, 128);
    }
    PQclear(res);
    if (found)
        return REGISTRY_OK;
    util_set_err(err, errlen, "no model in the registry");
    return REGISTRY_ERR_NOT_FOUND;
}

static int read_checkpoint_row(const PGresult *res, int row, registry_checkpoint_info *info,
                               char **config_json, char **metrics_json)
{
    const char *col[CKPT_N_COLUMNS];
    reg_pg_row_text(res, row, CKPT_N_COLUMNS, col);
    return reg_checkpoint_row(col, info, config_json, metrics_json);
}

static int get_checkpoint(registry_pg *p, PGconn *c, int64_t id, const char *name,
                          int64_t version, registry_checkpoint_info *info, char **config_json,
                          char **metrics_json, char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_int(&ps, version);
    PGresult *res = NULL;
    int status = reg_pg_query_on(p, c, CKPT_COLUMNS "WHERE c.model_id = $1 AND c.version = $2", &ps, 0,
                              &res, err, errlen, "reading a checkpoint");
    if (status)
        return status;
    int found = PQntuples(res) == 1;
    if (found && (status = read_checkpoint_row(res, 0, info, config_json, metrics_json)))
        util_set_err(err, errlen, "registry: out of memory");
    PQclear(res);
    if (found)
        return status;
    util_set_err(err, errlen, "model \"%s\" has no version %" PRId64, name, version);
    return REGISTRY_ERR_NOT_FOUND;
}

/* One bigint of the first row, or *found = 0 (for "no row" or NULL). */
static int query_int(registry_pg *p, PGconn *c, const char *sql, const reg_pg_params *ps,
                     int64_t *out, int *found, char *err, size_t errlen, const char *what)
{
    PGresult *res = NULL;
    int status = reg_pg_query_on(p, c, sql, ps, 0, &res, err, errlen, what);
    if (status)
        return status;
    *found = PQntuples(res) >= 1 && !PQgetisnull(res, 0, 0);
    *out = *found ? reg_pg_int_at(res, 0, 0) : 0;
    PQclear(res);
    return REGISTRY_OK;
}

static int alias_version(registry_pg *p, PGconn *c, int64_t id, const char *name,
                         const char *alias, int64_t *version, char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, alias);
    int found = 0;
    int status = query_int(p, c, "SELECT version FROM aliases WHERE model_id = $1 AND alias = $2",
                           &ps, version, &found, err, errlen, "reading an alias");
    if (status || found)
        return status;
    if (strcmp(alias, "latest") == 0)
        util_set_err(err, errlen, "model \"%s\" has no versions", name);
    else
        util_set_err(err, errlen, "model \"%s\" has no alias \"%.64s\"", name, alias);
    return REGISTRY_ERR_NOT_FOUND;
}

static int max_version_except(registry_pg *p, int64_t id, int64_t except, int64_t *out,
                              char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_int(&ps, except);
    int found = 0;
    return query_int(p, p->conn,
                     "SELECT MAX(version) FROM checkpoints WHERE model_id = $1 AND version <> $2",
                     &ps, out, &found, err, errlen, "reading versions");
}

/* Points 'latest' at version, following again; version 0 removes it. */
static int latest_auto(registry_pg *p, int64_t id, int64_t version, char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    if (version <= 0)
        return reg_pg_exec(p, "DELETE FROM aliases WHERE model_id = $1 AND alias = 'latest'", &ps,
                           err, errlen, "updating 'latest'");
    reg_pg_int(&ps, version);
    return reg_pg_exec(p,
                       "INSERT INTO aliases (model_id, alias, version, set_by_hand) "
                       "VALUES ($1, 'latest', $2, 0) ON CONFLICT (model_id, alias) "
                       "DO UPDATE SET version = excluded.version, set_by_hand = 0",
                       &ps, err, errlen, "updating 'latest'");
}

/* ---- put ---- */

int reg_pg_put_in_tx(registry_pg *p, const char *model, const uint8_t *blob, size_t len,
                     const char *sha, const char *config_json, const char *metrics_json,
                     const char *source, registry_checkpoint_info *out, int *created, char *err,
                     size_t errlen)
{
    /* libpq takes a parameter's length as an int (reg_pg_bytes): checked
     * here, where a put and a job's result both pass. */
    if (len > INT32_MAX) {
        util_set_err(err, errlen, "checkpoint of %zu bytes is more than the registry can store",
                     len);
        return REGISTRY_ERR_ARG;
    }
    char now[32];
    reg_now_iso(now);
    reg_pg_params ps = {0};
    reg_pg_text(&ps, model);
    reg_pg_text(&ps, now);
    int status = reg_pg_exec(p,
                             "INSERT INTO models (name, created_at, updated_at) "
                             "VALUES ($1, $2, $2) ON CONFLICT (name) DO NOTHING",
                             &ps, err, errlen, "creating the model");
    int64_t id = 0;
    if (!status)
        status = model_id(p, p->conn, model, 1, &id, err, errlen);
    if (status)
        return status;

    /* The same bytes again: the version that already holds them. */
    ps = (reg_pg_params){0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, sha);
    int64_t existing = 0;
    int found = 0;
    status = query_int(p, p->conn,
                       "SELECT version FROM checkpoints WHERE model_id = $1 AND sha256 = $2 "
                       "ORDER BY version LIMIT 1",
                       &ps, &existing, &found, err, errlen, "looking up the bytes");
    if (status)
        return status;
    if (found) {
        status = get_checkpoint(p, p->conn, id, model, existing, out, NULL, NULL, err, errlen);
        if (status == REGISTRY_OK)
            *created = 0;
        return status;
    }

    /* The bytes are there (staged, or another version's): the row is
     * locked until commit, so a delete elsewhere cannot collect them under
     * the new version. Else they go in now, locked the same way (DO UPDATE
     * rather than NOTHING). */
    ps = (reg_pg_params){0};
    reg_pg_text(&ps, sha);
    int64_t there = 0;
    if ((status = reg_pg_exec_n(p, "UPDATE blobs SET size = size WHERE sha256 = $1", &ps, &there,
                                err, errlen, "locking the bytes")))
        return status;
    ps = (reg_pg_params){0};
    reg_pg_text(&ps, sha);
    reg_pg_int(&ps, (int64_t)len);
    reg_pg_bytes(&ps, blob, len);
    if (!there && (status = reg_pg_exec(p,
                                        "INSERT INTO blobs (sha256, size, data) "
                                        "VALUES ($1, $2, $3) "
                                        "ON CONFLICT (sha256) DO UPDATE SET size = excluded.size",
                                        &ps, err, errlen, "storing the bytes")))
        return status;

    ps = (reg_pg_params){0};
    reg_pg_int(&ps, id);
    int64_t version = 0;
    status = query_int(p, p->conn,
                       "UPDATE models SET next_version = 1 + GREATEST(next_version, "
                       "COALESCE((SELECT MAX(version) FROM checkpoints WHERE model_id = $1), 0) "
                       "+ 1) WHERE id = $1 RETURNING next_version - 1",
                       &ps, &version, &found, err, errlen, "numbering the version");
    if (status)
        return status;

    ps = (reg_pg_params){0};
    reg_pg_int(&ps, id);
    reg_pg_int(&ps, version);
    reg_pg_text(&ps, sha);
    reg_pg_int(&ps, (int64_t)len);
    reg_pg_text(&ps, config_json);
    reg_pg_text(&ps, metrics_json);
    reg_pg_text(&ps, source);
    reg_pg_text(&ps, now);
    status = reg_pg_exec(p,
                         "INSERT INTO checkpoints (model_id, version, sha256, size, config, "
                         "metrics, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                         &ps, err, errlen, "storing the version");
    if (status == REGISTRY_ERR_ARG)
        util_set_err(err, errlen, "checkpoint config or metrics is not valid JSON");
    if (status)
        return status;

    ps = (reg_pg_params){0};
    reg_pg_int(&ps, id);
    reg_pg_int(&ps, version);
    if ((status = reg_pg_exec(p,
                              "INSERT INTO aliases (model_id, alias, version, set_by_hand) "
                              "VALUES ($1, 'latest', $2, 0) ON CONFLICT (model_id, alias) "
                              "DO UPDATE SET version = excluded.version "
                              "WHERE aliases.set_by_hand = 0",
                              &ps, err, errlen, "updating 'latest'")))
        return status;

    ps = (reg_pg_params){0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, now);
    if ((status = reg_pg_exec(p, "UPDATE models SET updated_at = $2 WHERE id = $1", &ps, err,
                              errlen, "updating the model")))
        return status;

    reg_pg_mark_models_changed(p);
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

registry_status reg_pg_put_checkpoint(registry_pg *p, const char *model, const uint8_t *blob,
                                      size_t len, const char *sha, const char *config_json,
                                      const char *metrics_json, const char *source,
                                      registry_checkpoint_info *out, int *created, char *err,
                                      size_t errlen)
{
    reg_pg_stage_blob(p, blob, len, sha);
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p,
                               reg_pg_put_in_tx(p, model, blob, len, sha, config_json,
                                                metrics_json, source, out, created, err, errlen),
                               err, errlen);
    pthread_mutex_unlock(&p->mu);
    if (status) {
        *created = 0;
        reg_pg_collect_blob(p, sha);
    }
    return status;
}

/* ---- resolve and read ---- */

static int resolve_version(registry_pg *p, PGconn *c, int64_t id, const char *name,
                           const char *version_or_alias, int64_t *version, char *err,
                           size_t errlen)
{
    const char *v = version_or_alias ? version_or_alias : "latest";
    int status = reg_parse_version(name, v, version, err, errlen);
    if (status || *version)
        return status;
    return alias_version(p, c, id, name, v, version, err, errlen);
}

registry_status reg_pg_resolve(registry_pg *p, const char *model, const char *version_or_alias,
                               registry_checkpoint_info *out, char *err, size_t errlen)
{
    reg_pg_reader rd;
    int status = reg_pg_read_begin(p, &rd, err, errlen);
    if (!status) {
        char name[128];
        int64_t id = 0, version = 0;
        int s = find_model(p, &rd, model, name, &id, err, errlen);
        if (!s)
            s = resolve_version(p, rd.conn, id, name, version_or_alias, &version, err, errlen);
        if (!s)
            s = get_checkpoint(p, rd.conn, id, name, version, out, NULL, NULL, err, errlen);
        status = reg_pg_read_finish(p, &rd, s, err, errlen);
    }
    return status;
}

registry_status reg_pg_fetch_piece(registry_pg *p, const char *sha256, size_t offset, size_t len,
                                   void **handle, const uint8_t **bytes, size_t *n,
                                   size_t *total, char *err, size_t errlen)
{
    *handle = NULL;
    *bytes = NULL;
    *n = *total = 0;
    /* A bytea is at most 1 GB: positions and lengths fit an integer. */
    if (offset > INT32_MAX - 1)
        offset = INT32_MAX - 1;
    if (len > (size_t)INT32_MAX - offset)
        len = (size_t)INT32_MAX - offset;
    reg_pg_params ps = {0};
    reg_pg_text(&ps, sha256);
    reg_pg_int(&ps, (int64_t)offset + 1); /* SQL counts from 1 */
    reg_pg_int(&ps, (int64_t)len);
    PGresult *res = NULL; /* owned by the caller via *handle */
    int status = reg_pg_query_blob(p,
                                   "SELECT octet_length(data)::text, "
                                   "substring(data FROM $2::integer FOR $3::integer) "
                                   "FROM blobs WHERE sha256 = $1",
                                   &ps, &res, err, errlen, "reading checkpoint bytes");
    if (status)
        return status;
    if (PQntuples(res) != 1) {
        PQclear(res);
        util_set_err(err, errlen, "no checkpoint bytes with sha256 %.64s", sha256);
        return REGISTRY_ERR_NOT_FOUND;
    }
    *handle = res;
    *total = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    *bytes = (const uint8_t *)PQgetvalue(res, 0, 1);
    *n = (size_t)PQgetlength(res, 0, 1);
    return REGISTRY_OK;
}

void reg_pg_release_blob(void *handle)
{
    PQclear(handle);
}

int64_t reg_pg_count_checkpoints(registry_pg *p)
{
    char err[256];
    int64_t n = -1;
    PGresult *res = NULL;
    if (!reg_pg_query_locked(p, "SELECT COUNT(*) FROM checkpoints", NULL, 0, &res, err,
                             sizeof err, "counting checkpoints") &&
        PQntuples(res) == 1)
        n = reg_pg_int_at(res, 0, 0);
    PQclear(res);
    return n;
}

registry_status reg_pg_list_models(registry_pg *p, registry_model_info **models, size_t *count,
                                   char *err, size_t errlen)
{
    *models = NULL;
    *count = 0;
    PGresult *res = NULL;
    int status = reg_pg_query_locked(p,
                                     "SELECT m.name, m.created_at, m.updated_at, "
                                     "(SELECT COUNT(*) FROM checkpoints c "
                                     "WHERE c.model_id = m.id), "
                                     "COALESCE((SELECT a.version FROM aliases a "
                                     "WHERE a.model_id = m.id AND a.alias = 'latest'), 0) "
                                     "FROM models m ORDER BY m.name COLLATE \"C\"",
                                     NULL, 0, &res, err, errlen, "listing models");
    if (status)
        return status;
    int n = PQntuples(res);
    registry_model_info *list = n ? calloc((size_t)n, sizeof *list) : NULL; /* owned: to *models */
    if (n && !list) {
        PQclear(res);
        util_set_err(err, errlen, "registry: out of memory");
        return REGISTRY_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        const char *col[5];
        reg_pg_row_text(res, i, 5, col);
        reg_model_row(col, &list[i]);
    }
    PQclear(res);
    *models = list;
    *count = (size_t)n;
    return REGISTRY_OK;
}

registry_status reg_pg_get_checkpoint(registry_pg *p, const char *model, int64_t version,
                                      registry_checkpoint *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    reg_pg_reader rd;
    int status = reg_pg_read_begin(p, &rd, err, errlen);
    if (!status) {
        char name[128];
        int64_t id = 0;
        int s = find_model(p, &rd, model, name, &id, err, errlen);
        if (!s)
            s = get_checkpoint(p, rd.conn, id, name, version, &out->info, &out->config_json,
                               &out->metrics_json, err, errlen);
        status = reg_pg_read_finish(p, &rd, s, err, errlen);
    }
    if (status)
        registry_free_checkpoint(out);
    return status;
}

/* The rows of sql, whose $1 is the id of model (NULL: the default model),
 * in one read transaction with the lookup. *res owned by the caller. */
static int query_model_rows(registry_pg *p, const char *model, const char *sql, PGresult **res,
                            char *err, size_t errlen, const char *what)
{
    *res = NULL;
    reg_pg_reader rd;
    int status = reg_pg_read_begin(p, &rd, err, errlen);
    if (!status) {
        char name[128];
        int64_t id = 0;
        int s = find_model(p, &rd, model, name, &id, err, errlen);
        reg_pg_params ps = {0};
        reg_pg_int(&ps, id);
        if (!s)
            s = reg_pg_query_on(p, rd.conn, sql, &ps, 0, res, err, errlen, what);
        status = reg_pg_read_finish(p, &rd, s, err, errlen);
    }
    if (status) {
        PQclear(*res);
        *res = NULL;
    }
    return status;
}

registry_status reg_pg_list_checkpoints(registry_pg *p, const char *model,
                                        registry_checkpoint **list, size_t *count, char *err,
                                        size_t errlen)
{
    *list = NULL;
    *count = 0;
    PGresult *res = NULL;
    int status = query_model_rows(p, model,
                                  CKPT_COLUMNS "WHERE c.model_id = $1 ORDER BY c.version", &res,
                                  err, errlen, "listing versions");
    if (status)
        return status;
    int n = PQntuples(res);
    registry_checkpoint *c = n ? calloc((size_t)n, sizeof *c) : NULL; /* owned: to *list */
    if (n && !c)
        status = REGISTRY_ERR_NOMEM;
    for (int i = 0; i < n && !status; i++)
        status = read_checkpoint_row(res, i, &c[i].info, &c[i].config_json, &c[i].metrics_json);
    PQclear(res);
    if (status) {
        registry_free_checkpoints(c, (size_t)n);
        util_set_err(err, errlen, "registry: out of memory");
        return REGISTRY_ERR_NOMEM;
    }
    *list = c;
    *count = (size_t)n;
    return REGISTRY_OK;
}

registry_status reg_pg_list_aliases(registry_pg *p, const char *model,
                                    registry_alias_info **aliases, size_t *count, char *err,
                                    size_t errlen)
{
    *aliases = NULL;
    *count = 0;
    PGresult *res = NULL;
    int status = query_model_rows(p, model,
                                  "SELECT alias, version, set_by_hand FROM aliases "
                                  "WHERE model_id = $1 ORDER BY alias COLLATE \"C\"",
                                  &res, err, errlen, "listing aliases");
    if (status)
        return status;
    int n = PQntuples(res);
    registry_alias_info *a = n ? calloc((size_t)n, sizeof *a) : NULL; /* owned: to *aliases */
    if (n && !a) {
        PQclear(res);
        util_set_err(err, errlen, "registry: out of memory");
        return REGISTRY_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        const char *col[3];
        reg_pg_row_text(res, i, 3, col);
        reg_alias_row(col, &a[i]);
    }
    PQclear(res);
    *aliases = a;
    *count = (size_t)n;
    return REGISTRY_OK;
}

/* ---- aliases and deletion ---- */

static int set_alias_locked(registry_pg *p, const char *model, const char *alias,
                            int64_t version, char *err, size_t errlen)
{
    int64_t id = 0;
    registry_checkpoint_info info;
    int status = model_id(p, p->conn, model, 1, &id, err, errlen);
    if (!status)
        status = get_checkpoint(p, p->conn, id, model, version, &info, NULL, NULL, err,
                                errlen);
    if (status)
        return status;
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, alias);
    reg_pg_int(&ps, version);
    reg_pg_mark_models_changed(p);
    return reg_pg_exec(p,
                       "INSERT INTO aliases (model_id, alias, version, set_by_hand) "
                       "VALUES ($1, $2, $3, 1) ON CONFLICT (model_id, alias) "
                       "DO UPDATE SET version = excluded.version, set_by_hand = 1",
                       &ps, err, errlen, "setting an alias");
}

registry_status reg_pg_set_alias(registry_pg *p, const char *model, const char *alias,
                                 int64_t version, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p, set_alias_locked(p, model, alias, version, err, errlen), err,
                               errlen);
    pthread_mutex_unlock(&p->mu);
    return status;
}

static int delete_alias_locked(registry_pg *p, const char *model, const char *alias, char *err,
                               size_t errlen)
{
    int64_t id = 0;
    int status = model_id(p, p->conn, model, 1, &id, err, errlen);
    if (status)
        return status;
    reg_pg_mark_models_changed(p);
    if (strcmp(alias, "latest") == 0) {
        int64_t highest = 0;
        status = max_version_except(p, id, 0, &highest, err, errlen);
        return status ? status : latest_auto(p, id, highest, err, errlen);
    }
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, alias);
    int64_t changed = 0;
    status = reg_pg_exec_n(p, "DELETE FROM aliases WHERE model_id = $1 AND alias = $2", &ps,
                           &changed, err, errlen, "deleting an alias");
    if (!status && changed == 0) {
        util_set_err(err, errlen, "model \"%s\" has no alias \"%s\"", model, alias);
        return REGISTRY_ERR_NOT_FOUND;
    }
    return status;
}

registry_status reg_pg_delete_alias(registry_pg *p, const char *model, const char *alias,
                                    char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p, delete_alias_locked(p, model, alias, err, errlen), err, errlen);
    pthread_mutex_unlock(&p->mu);
    return status;
}

static int delete_version_locked(registry_pg *p, const char *model, int64_t version, char *err,
                                 size_t errlen)
{
    int64_t id = 0;
    registry_checkpoint_info info;
    int status = model_id(p, p->conn, model, 1, &id, err, errlen);
    if (!status)
        status = get_checkpoint(p, p->conn, id, model, version, &info, NULL, NULL, err,
                                errlen);
    if (status)
        return status;

    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_int(&ps, version);
    PGresult *res = NULL;
    if ((status = reg_pg_query(p,
                               "SELECT alias FROM aliases WHERE model_id = $1 AND version = $2 "
                               "AND alias <> 'latest' ORDER BY alias COLLATE \"C\" LIMIT 1",
                               &ps, 0, &res, err, errlen, "reading aliases")))
        return status;
    if (PQntuples(res) == 1) {
        util_set_err(err, errlen,
                     "version %" PRId64 " of model \"%s\" is aliased as \"%s\"; move or delete "
                     "the alias first",
                     version, model, PQgetvalue(res, 0, 0));
        PQclear(res);
        return REGISTRY_ERR_CONFLICT;
    }
    PQclear(res);

    int64_t latest = 0;
    status = alias_version(p, p->conn, id, model, "latest", &latest, err, errlen);
    if (status == REGISTRY_OK && latest == version) {
        int64_t highest = 0;
        status = max_version_except(p, id, version, &highest, err, errlen);
        if (!status)
            status = latest_auto(p, id, highest, err, errlen);
    } else if (status == REGISTRY_ERR_NOT_FOUND) {
        status = REGISTRY_OK;
    }
    if (status)
        return status;
    if ((status = reg_pg_exec(p, "DELETE FROM checkpoints WHERE model_id = $1 AND version = $2",
                              &ps, err, errlen, "deleting a version")))
        return status;
    reg_pg_mark_models_changed(p);
    ps = (reg_pg_params){0};
    reg_pg_text(&ps, info.sha256);
    return reg_pg_exec(p,
                       "DELETE FROM blobs WHERE sha256 = $1 "
                       "AND NOT EXISTS (SELECT 1 FROM checkpoints WHERE sha256 = $1)",
                       &ps, err, errlen, "deleting checkpoint bytes");
}

registry_status reg_pg_delete_version(registry_pg *p, const char *model, int64_t version,
                                      char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p, delete_version_locked(p, model, version, err, errlen), err,
                               errlen);
    pthread_mutex_unlock(&p->mu);
    return status;
}
