/* registry_int: what the registry's files share; nothing else includes it.
 *
 *     registry.c         the connection, the table of every SQL statement,
 *                        transactions, migrations, names
 *     registry_models.c  models, checkpoint versions, blobs and aliases
 *     registry_jobs.c    training jobs and their events
 *
 * The reg_ prefix marks what is internal to these files. A public call
 * locks r->mu for its whole duration and takes statements by id (reg_stmt:
 * prepared on first use and kept, so the SQL of every statement stays in
 * registry.c's one table); when it must see one state of the database, it
 * runs between reg_exec(r, S_BEGIN_READ or S_BEGIN_WRITE) and reg_finish,
 * which commits on REGISTRY_OK and rolls back otherwise:
 *
 *     pthread_mutex_lock(&r->mu);
 *     int status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
 *     if (!status) status = reg_finish(r, thing_locked(r, ..., err, errlen), err, errlen);
 *     pthread_mutex_unlock(&r->mu);
 *
 * Functions named *_locked expect the lock held (and usually a transaction).
 *
 * Reads do not take r->mu, which a write holds across its fsync'd commit
 * (and across a wait for another process's write lock): they borrow a
 * reader, a registry struct of its own on a query_only connection to the
 * same file (WAL lets it read beside the writer), and use it as they would
 * r:
 *
 *     registry *rd = reg_read_begin(r);   // waits only for other reads
 *     int status = reg_exec(rd, S_BEGIN_READ, err, errlen);
 *     if (!status) status = reg_finish(rd, thing_locked(rd, ...), err, errlen);
 *     reg_read_end(r, rd);
 *
 * A registry without readers (":memory:", or WAL refused) lends itself,
 * with r->mu held.
 */
#ifndef REGISTRY_INT_H
#define REGISTRY_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/util.h"
#include "server/registry.h"
#include "server/registry_pg.h"

/* The columns of a checkpoint's and a job's row, in the order
 * reg_checkpoint_row and reg_job_row read them: the same SQL on both
 * backends. */
#define CKPT_COLUMNS \
    "SELECT m.name, c.version, c.sha256, c.size, c.created_at, c.source, c.config, c.metrics " \
    "FROM checkpoints c JOIN models m ON m.id = c.model_id "
#define CKPT_N_COLUMNS 8
#define JOB_COLUMNS \
    "SELECT id, state, config, progress, metrics, result_model, result_version, error, " \
    "created_at, started_at, finished_at FROM jobs "
#define JOB_N_COLUMNS 11

/* The statements; their SQL is stmt_sql[] in registry.c. */
enum {
    S_BEGIN_READ,
    S_BEGIN_WRITE,
    S_COMMIT,
    S_ROLLBACK,
    S_MODEL_ID,
    S_MODEL_INSERT,
    S_MODEL_TOUCH,
    S_MODEL_DEFAULT,
    S_MODELS_LIST,
    S_CKPT_BY_SHA,
    S_CKPT_NEXT_VERSION,
    S_CKPT_INSERT,
    S_CKPT_GET,
    S_CKPT_LIST,
    S_CKPT_MAX_EXCEPT,
    S_CKPT_DELETE,
    S_CKPT_COUNT,
    S_BLOB_INSERT,
    S_BLOB_COLLECT,
    S_BLOB_ORPHANS,
    S_ALIAS_GET,
    S_ALIAS_LIST,
    S_ALIAS_SET,
    S_ALIAS_DELETE,
    S_ALIAS_OTHER_AT,
    S_LATEST_FOLLOW,
    S_LATEST_AUTO,
    S_JOB_INSERT,
    S_JOB_STATE,
    S_JOB_UPDATE_STATE,
    S_JOB_NEXT_QUEUED,
    S_JOB_SET_PROGRESS,
    S_JOB_SUCCEED,
    S_JOB_RUNNING_IDS,
    S_JOB_GET,
    S_JOB_LIST,
    S_JOB_LIST_STATE,
    S_JOB_COUNT_BY_STATE,
    S_JOB_LAST_SEQ,
    S_JOB_EVENTS_AFTER,
    S_JOB_EVENT_ADD,
    S_JOB_EVENTS_PRUNE,
    S_JOB_STATE_EVENT,
    S_JOB_RESULT_EVENT,
    S_JOB_PRUNE,
    S_N
};

/* Readers a registry opens (reg_read_begin), and the blob connections it
 * keeps for downloads (registry_blob_open): opened at registry_open, so a
 * polling thread neither opens a connection nor waits for a write. */
#define REG_READERS 4
#define REG_BLOB_CONNS 8

struct registry {
    pthread_mutex_t mu;
    sqlite3 *db;
    sqlite3_stmt *stmts[S_N]; /* owned; prepared on first use */
    char default_model[128];  /* "" = none */
    int in_write;             /* inside a BEGIN IMMEDIATE transaction */
    uint64_t generation;      /* committed writes so far (atomic reads) */
    char *path;               /* owned; the database file, for registry_blob's connections */
    registry_pg *pg;          /* owned; when set, every call goes to the PostgreSQL backend */
    int read_only;            /* registry_open_read_only: every connection SQLITE_OPEN_READONLY */
    /* The read side, under pool_mu (held only to take or give back one):
     * the idle readers (each an owned registry whose db is query_only), the
     * idle blob connections (owned), and default_model for the readers. */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;   /* a reader was given back */
    registry *readers[REG_READERS];
    int n_readers;            /* opened; 0: reads lend r itself */
    int n_idle_readers;       /* readers[0 .. n_idle_readers) are idle */
    sqlite3 *blob_conns[REG_BLOB_CONNS];
    int n_blob_conns;         /* idle ones, blob_conns[0 .. n) */
};

/* The rows a listing collects: items (owned until handed to the caller) holds
 * n of cap elements of size bytes each. */
typedef struct {
    void *items;
    size_t n, cap, size;
} reg_rows;

/* A zeroed element at the end (doubling the room from 16), or NULL when out
 * of memory, with the array as it was. */
void *reg_rows_push(reg_rows *a);

/* err says what failed and SQLite's reason; REGISTRY_ERR_NOMEM or _DB. */
int reg_db_fail(registry *r, char *err, size_t errlen, const char *what);
void reg_copy_str(char *dst, size_t size, const char *src);
/* A text column into dst ("" for NULL). */
void reg_copy_col(sqlite3_stmt *st, int col, char *dst, size_t size);
/* A malloc'd copy of a text column (caller owns), NULL for SQL NULL; *oom is
 * set when the copy could not be made. */
char *reg_dup_col(sqlite3_stmt *st, int col, int *oom);
/* The first n columns of st's row as text into col (NULL for SQL NULL),
 * valid until st steps again; REGISTRY_ERR_NOMEM when SQLite could not make
 * one. */
int reg_row_text(sqlite3_stmt *st, int n, const char **col);

/* A row, each column as text (NULL for SQL NULL), as either backend gives
 * it (reg_row_text, reg_pg_row_text), into the struct; *_json and the
 * job's strings are malloc'd (the struct's); REGISTRY_ERR_NOMEM when a copy
 * could not be made.
 *     reg_checkpoint_row  CKPT_COLUMNS (config_json, metrics_json may be NULL)
 *     reg_model_row       name, created_at, updated_at, versions, latest
 *     reg_alias_row       alias, version, set_by_hand
 *     reg_job_row         JOB_COLUMNS (j zeroed by the caller)
 *     reg_job_event_row   seq, type, data, created_at, a state event's state */
int reg_checkpoint_row(const char *const *col, registry_checkpoint_info *info,
                       char **config_json, char **metrics_json);
void reg_model_row(const char *const *col, registry_model_info *m);
void reg_alias_row(const char *const *col, registry_alias_info *a);
int reg_job_row(const char *const *col, registry_job *j);
int reg_job_event_row(const char *const *col, registry_job_event *e);
/* A state column: its jobs_state (the schema's CHECK allows no other name). */
jobs_state reg_state_text(const char *s);

/* A registry to read with (see the top): a reader, or r with r->mu held;
 * give it back with reg_read_end. */
registry *reg_read_begin(registry *r);
void reg_read_end(registry *r, registry *rd);
/* An idle blob connection of r's (query_only, a small page cache), or a
 * new one when all are out; NULL when none opens. reg_blob_conn_put takes
 * it back (keeping at most REG_BLOB_CONNS idle) or closes it. */
sqlite3 *reg_blob_conn_get(registry *r);
void reg_blob_conn_put(registry *r, sqlite3 *db);

/* The flags of every connection to r's file after the first:
 * SQLITE_OPEN_READONLY for a read-only registry, else READWRITE (never
 * CREATE: the file is there). */
int reg_open_flags(const registry *r);
/* A read-only open's verdict on a database (both backends), into err:
 * REGISTRY_ERR_ARG when missing_table (NULL: none) is missing, "WHERE is
 * not a vaed registry (no T table)"; REGISTRY_ERR_CONFLICT when version is
 * not known (newer: this vaed is too old; older: a read does not migrate). */
int reg_check_read_only_schema(const char *where, const char *missing_table, int version,
                               int known, char *err, size_t errlen);

/* Statement id, prepared on first use; NULL when SQLite refuses it. */
sqlite3_stmt *reg_stmt(registry *r, int id);
/* The SQL of statement id, for a connection other than r->db. */
const char *reg_sql(int id);
/* Readies a kept statement for its next use (and drops its bindings). */
void reg_done(sqlite3_stmt *st);
/* Runs statement id for no row we need (BEGIN, COMMIT ...). */
int reg_exec(registry *r, int id, char *err, size_t errlen);
/* Ends a transaction: commits when status is REGISTRY_OK, else rolls back;
 * returns status, or the commit's failure. */
int reg_finish(registry *r, int status, char *err, size_t errlen);
/* "2026-11-21T23:59:01.123Z" */
void reg_now_iso(char out[32]);
int reg_all_digits(const char *s);

/* REGISTRY_ERR_ARG, with the message every call gives, unless model is a
 * valid name (both backends). */
int reg_check_model_arg(const char *model, char *err, size_t errlen);

/* From registry_models.c (reg_parse_version for both backends). */
/* version_or_alias v of model name: digits give *version; an alias (checked
 * for its form) gives *version 0, for the caller to look up. */
int reg_parse_version(const char *name, const char *v, int64_t *version, char *err,
                      size_t errlen);
/* Writes a put's bytes into blobs on a connection of their own, before the
 * lock is taken (best effort: the put still binds them); after a failed put,
 * reg_collect_blob_locked drops them unless a version names them. */
void reg_stage_blob(registry *r, const uint8_t *blob, size_t len, const char *sha);
void reg_collect_blob_locked(registry *r, const char *sha);
/* The body of a put, inside the caller's write transaction. */
int reg_put_in_tx(registry *r, const char *model, const uint8_t *blob, size_t len,
                  const char *sha, const char *config_json, const char *metrics_json,
                  const char *source, registry_checkpoint_info *out, int *created, char *err,
                  size_t errlen);

#endif
