/* registry_copy: a whole registry from one backend into another (SQLite
 * file to PostgreSQL and back, or file to file), row for row: ids, version
 * numbers, timestamps, aliases (set by hand or not), metrics, jobs and their
 * events come out as they went in. See registry_copy_all in registry.h.
 *
 * Both schemas have the same tables with the same columns (schema/ and
 * schema/pg/), so one list of tables drives a reader and a writer per
 * backend; values travel as text (NULL kept), checkpoint bytes as bytes.
 * The source is read in one snapshot, the destination written in one
 * transaction: a failed copy leaves the destination as it was. */
#include "server/registry.h"

#include "engine/util.h"
#include "server/registry_int.h"
#include "server/registry_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    const char *columns;   /* in both schemas */
    int n_columns;
    int blob_column;       /* -1: none */
    const char *order;
    size_t *count;         /* where the rows copied are counted */
} copy_table;

/* One row on its way: vals[i] NULL for SQL NULL; lens only for the blob. */
typedef struct {
    const char *vals[12];
    int lens[12];
} copy_row;

/* ---- writers ---- */

static int insert_sql(const copy_table *t, int pg, char *sql, size_t size)
{
    int n = snprintf(sql, size, "INSERT INTO %s (%s) VALUES (", t->name, t->columns);
    for (int i = 0; i < t->n_columns && n < (int)size; i++)
        n += snprintf(sql + n, size - (size_t)n, pg ? "%s$%d" : "%s?%d", i ? ", " : "", i + 1);
    n += snprintf(sql + n, size - (size_t)n, ")");
    return n < (int)size ? 0 : -1;
}

static int write_row(registry *to, const copy_table *t, sqlite3_stmt *st, const copy_row *row,
                     char *err, size_t errlen)
{
    if (to->pg) {
        char sql[512];
        insert_sql(t, 1, sql, sizeof sql);
        reg_pg_params ps = {0};
        for (int i = 0; i < t->n_columns; i++) {
            if (i == t->blob_column)
                reg_pg_bytes(&ps, row->vals[i], (size_t)row->lens[i]);
            else
                reg_pg_text(&ps, row->vals[i]);
        }
        return reg_pg_exec(to->pg, sql, &ps, err, errlen, t->name);
    }
    for (int i = 0; i < t->n_columns; i++) {
        if (!row->vals[i])
            sqlite3_bind_null(st, i + 1);
        else if (i == t->blob_column)
            sqlite3_bind_blob(st, i + 1, row->vals[i], row->lens[i], SQLITE_STATIC);
        else
            sqlite3_bind_text(st, i + 1, row->vals[i], -1, SQLITE_STATIC);
    }
    int rc = sqlite3_step(st);
    reg_done(st);
    return rc == SQLITE_DONE ? REGISTRY_OK : reg_db_fail(to, err, errlen, t->name);
}

/* ---- readers: every row of t from `from`, each handed to write_row ---- */

static int copy_from_sqlite(registry *from, registry *to, const copy_table *t, sqlite3_stmt *ins,
                            char *err, size_t errlen)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY %s", t->columns, t->name, t->order);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(from->db, sql, -1, &st, NULL) != SQLITE_OK)
        return reg_db_fail(from, err, errlen, t->name);
    int status = REGISTRY_OK, rc;
    while (!status && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        copy_row row = {0};
        for (int i = 0; i < t->n_columns; i++) {
            if (sqlite3_column_type(st, i) == SQLITE_NULL)
                continue;
            if (i == t->blob_column) {
                row.vals[i] = sqlite3_column_blob(st, i);
                row.lens[i] = sqlite3_column_bytes(st, i);
                if (!row.vals[i])
                    row.vals[i] = ""; /* an empty blob is not NULL */
            } else {
                row.vals[i] = (const char *)sqlite3_column_text(st, i);
            }
        }
        if (!(status = write_row(to, t, ins, &row, err, errlen)))
            (*t->count)++;
    }
    if (!status && rc != SQLITE_DONE)
        status = reg_db_fail(from, err, errlen, t->name);
    sqlite3_finalize(st);
    return status;
}

/* The columns as text, the blob as bytes (binary results: text columns then
 * arrive as their bytes, which is the same thing). */
static void pg_select(const copy_table *t, const char *where, char *sql, size_t size)
{
    int n = snprintf(sql, size, "SELECT ");
    char cols[256];
    snprintf(cols, sizeof cols, "%s", t->columns);
    int i = 0;
    char *save = NULL;
    for (char *c = strtok_r(cols, ", ", &save); c; c = strtok_r(NULL, ", ", &save), i++)
        n += snprintf(sql + n, size - (size_t)n, i == t->blob_column ? "%s%s" : "%s%s::text",
                      i ? ", " : "", c);
    snprintf(sql + n, size - (size_t)n, " FROM %s %s ORDER BY %s", t->name, where, t->order);
}

static int copy_pg_rows(registry *to, const copy_table *t, sqlite3_stmt *ins, PGresult *res,
                        char *err, size_t errlen)
{
    int status = REGISTRY_OK;
    for (int r = 0; r < PQntuples(res) && !status; r++) {
        copy_row row = {0};
        /* binary results are not NUL-terminated: copies that are */
        char *owned[12] = {0};
        for (int i = 0; i < t->n_columns && !status; i++) {
            if (PQgetisnull(res, r, i))
                continue;
            int len = PQgetlength(res, r, i);
            if (i == t->blob_column) {
                row.vals[i] = PQgetvalue(res, r, i);
                row.lens[i] = len;
                continue;
            }
            owned[i] = malloc((size_t)len + 1);
            if (!owned[i]) {
                util_set_err(err, errlen, "registry copy: out of memory");
                status = REGISTRY_ERR_NOMEM;
                break;
            }
            memcpy(owned[i], PQgetvalue(res, r, i), (size_t)len);
            owned[i][len] = '\0';
            row.vals[i] = owned[i];
        }
        if (!status && !(status = write_row(to, t, ins, &row, err, errlen)))
            (*t->count)++;
        for (int i = 0; i < 12; i++)
            free(owned[i]);
    }
    return status;
}

static int copy_from_pg(registry *from, registry *to, const copy_table *t, sqlite3_stmt *ins,
                        char *err, size_t errlen)
{
    char sql[768];
    PGresult *res = NULL;
    if (t->blob_column < 0) {
        pg_select(t, "", sql, sizeof sql);
        int status = reg_pg_query(from->pg, sql, NULL, 1, &res, err, errlen, t->name);
        if (!status)
            status = copy_pg_rows(to, t, ins, res, err, errlen);
        PQclear(res);
        return status;
    }
    /* Checkpoint bytes one blob at a time: the registry need not fit in
     * memory. */
    PGresult *keys = NULL;
    int status = reg_pg_query(from->pg, "SELECT sha256 FROM blobs ORDER BY sha256", NULL, 0, &keys,
                              err, errlen, t->name);
    pg_select(t, "WHERE sha256 = $1", sql, sizeof sql);
    for (int k = 0; !status && k < PQntuples(keys); k++) {
        reg_pg_params ps = {0};
        reg_pg_text(&ps, PQgetvalue(keys, k, 0));
        status = reg_pg_query(from->pg, sql, &ps, 1, &res, err, errlen, t->name);
        if (!status)
            status = copy_pg_rows(to, t, ins, res, err, errlen);
        PQclear(res);
        res = NULL;
    }
    PQclear(keys);
    return status;
}

/* ---- the copy ---- */

static int is_empty(registry *r, char *err, size_t errlen)
{
    registry_model_info *models = NULL;
    size_t n_models = 0, n_jobs = 0;
    registry_job *jobs = NULL;
    int status = registry_list_models(r, &models, &n_models, err, errlen);
    registry_free_models(models);
    if (!status)
        status = registry_list_jobs(r, NULL, 0, 1, &jobs, &n_jobs, err, errlen);
    registry_free_jobs(jobs, n_jobs);
    if (!status && (n_models || n_jobs)) {
        util_set_err(err, errlen, "the destination registry is not empty (%zu model(s)%s): "
                                  "copy into a new one",
                     n_models, n_jobs ? ", jobs" : "");
        status = REGISTRY_ERR_CONFLICT;
    }
    return status;
}

static int begin(registry *r, int write, char *err, size_t errlen)
{
    if (!r->pg)
        return reg_exec(r, write ? S_BEGIN_WRITE : S_BEGIN_READ, err, errlen);
    int status = reg_pg_begin(r->pg, err, errlen);
    if (!status && !write &&
        (status = reg_pg_exec(r->pg, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", NULL,
                              err, errlen, "a snapshot")))
        reg_pg_finish(r->pg, status, err, errlen); /* rolls back */
    return status;
}

static int finish(registry *r, int status, char *err, size_t errlen)
{
    if (r->pg) {
        if (!status)
            reg_pg_mark_models_changed(r->pg);
        return reg_pg_finish(r->pg, status, err, errlen);
    }
    return reg_finish(r, status, err, errlen);
}

/* PostgreSQL's identity columns go on after the ids copied in. */
static int advance_ids(registry *to, char *err, size_t errlen)
{
    static const char *const tables[] = {"models", "checkpoints", "jobs"};
    for (int i = 0; i < 3; i++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT setval(pg_get_serial_sequence('%s', 'id'), "
                 "COALESCE((SELECT MAX(id) FROM %s), 0) + 1, false)",
                 tables[i], tables[i]);
        int status = reg_pg_exec(to->pg, sql, NULL, err, errlen, "numbering ids");
        if (status)
            return status;
    }
    return REGISTRY_OK;
}

static int copy_locked(registry *from, registry *to, registry_copy_counts *c, char *err,
                       size_t errlen)
{
    size_t events = 0, aliases = 0;
    const copy_table tables[] = {
        {"models", "id, name, description, created_at, updated_at, next_version", 6, -1, "id",
         &c->models},
        {"blobs", "sha256, size, data", 3, 2, "sha256", &c->blobs},
        {"checkpoints",
         "id, model_id, version, sha256, size, config, metrics, source, created_at", 9, -1, "id",
         &c->checkpoints},
        {"aliases", "model_id, alias, version, set_by_hand", 4, -1, "model_id, alias", &aliases},
        {"jobs",
         "id, state, config, progress, metrics, result_model, result_version, error, "
         "created_at, started_at, finished_at",
         11, -1, "id", &c->jobs},
        {"job_events", "job_id, seq, type, data, created_at", 5, -1, "job_id, seq", &events},
    };
    int status = REGISTRY_OK;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0] && !status; i++) {
        const copy_table *t = &tables[i];
        sqlite3_stmt *ins = NULL;
        if (!to->pg) {
            char sql[512];
            insert_sql(t, 0, sql, sizeof sql);
            if (sqlite3_prepare_v2(to->db, sql, -1, &ins, NULL) != SQLITE_OK) {
                status = reg_db_fail(to, err, errlen, t->name);
                break;
            }
        }
        status = from->pg ? copy_from_pg(from, to, t, ins, err, errlen)
                          : copy_from_sqlite(from, to, t, ins, err, errlen);
        sqlite3_finalize(ins);
    }
    c->aliases = aliases;
    c->events = events;
    if (!status && to->pg)
        status = advance_ids(to, err, errlen);
    return status;
}

registry_status registry_copy_all(registry *from, registry *to, registry_copy_counts *counts,
                                  char *err, size_t errlen)
{
    registry_copy_counts scratch;
    registry_copy_counts *c = counts ? counts : &scratch;
    memset(c, 0, sizeof *c);
    if (from == to) {
        util_set_err(err, errlen, "registry copy: the source is the destination");
        return REGISTRY_ERR_ARG;
    }
    int status = is_empty(to, err, errlen);
    if (status)
        return status;
    pthread_mutex_t *fm = from->pg ? &from->pg->mu : &from->mu;
    pthread_mutex_t *tm = to->pg ? &to->pg->mu : &to->mu;
    pthread_mutex_lock(fm);
    pthread_mutex_lock(tm);
    status = begin(from, 0, err, errlen);
    if (!status) {
        status = begin(to, 1, err, errlen);
        if (!status)
            status = finish(to, copy_locked(from, to, c, err, errlen), err, errlen);
        /* only read: a failure to end the snapshot loses nothing */
        char scratch_err[128];
        finish(from, REGISTRY_ERR_ARG, scratch_err, sizeof scratch_err);
    }
    if (!status && !to->pg)
        __atomic_add_fetch(&to->generation, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(tm);
    pthread_mutex_unlock(fm);
    if (status)
        memset(c, 0, sizeof *c);
    return status;
}
