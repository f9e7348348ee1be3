/* registry_pg_int: what the PostgreSQL backend's files share; nothing else
 * includes it.
 *
 *     registry_pg.c         connections, parameters, transactions,
 *                           migrations, the listener thread, leases
 *     registry_pg_models.c  models, checkpoint versions, blobs, aliases
 *     registry_pg_jobs.c    training jobs, their events and resume state
 *
 * A public call that writes locks p->mu for its whole duration; what must
 * see one state of the database runs between reg_pg_begin and
 * reg_pg_finish (commit on REGISTRY_OK, else roll back), as in the SQLite
 * backend:
 *
 *     pthread_mutex_lock(&p->mu);
 *     int status = reg_pg_begin(p, err, errlen);
 *     if (!status) status = reg_pg_finish(p, thing_locked(p, ...), err, errlen);
 *     pthread_mutex_unlock(&p->mu);
 *
 * Reads take no p->mu: they run on read connections of their own
 * (reg_pg_query_locked, reg_pg_read_begin below), as SQLite's readers.
 *
 * Statements are sent with their parameters (reg_pg_params), never with
 * values spliced into SQL text.
 */
#ifndef REGISTRY_PG_INT_H
#define REGISTRY_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "server/registry_pg.h"

/* Read connections a registry opens at most (see read_conns). */
#define REG_PG_READ_CONNS 4
/* Blob connections a registry opens at most (see blob_conns). One: on 2
 * cores, /healthz p99 under 16 downloads (scripts/bench-downloads.sh,
 * 8 MiB/s each) was 1.5-4.6 ms with one, 3.2-8.9 ms with two, and worse
 * with four, at the same MB/s: pieces fetched side by side put more
 * database backends and receiving threads beside the polling threads,
 * while one connection already keeps up, the next piece being prefetched.
 * More would pay with a database far away (each piece a round trip). */
#define REG_PG_BLOB_CONNS 1

struct registry_pg {
    pthread_mutex_t mu;
    PGconn *conn;             /* owned; the calls' connection */
    char *url;                /* owned; handed to libpq only, never printed */
    char shown[256];          /* the URL without its password, for messages */
    char owner[128];          /* this process's name on the leases it holds */
    int lease_s;              /* atomic: seconds a claim holds a job unrenewed */
    char default_model[128];  /* "" = none; under read_mu (only reads use it) */
    uint64_t generation;      /* atomic */
    int reachable;            /* atomic: the listener's connection is up */
    int stopping;             /* atomic: the listener ends */
    int listening;            /* atomic: the listener has been listening once */
    int notify;               /* under mu: the open transaction changed models */
    int notify_jobs;          /* under mu: ... queued a job */
    uint64_t jobs_generation; /* atomic: bumped when any replica queues a job */
    int in_tx;                /* under mu */
    pthread_t listener;
    int listener_started;
    /* An upload's bytes go in on a connection of their own before p->mu is
     * taken (reg_pg_stage_blob), so other calls do not wait for them. */
    pthread_mutex_t stage_mu;
    PGconn *stage_conn;       /* owned; under stage_mu; opened on first use */
    /* A download's bytes are read on connections of their own, so a
     * download and a write do not wait for each other (reg_pg_query_blob):
     * up to REG_PG_BLOB_CONNS, each opened when pieces first overlap that
     * much. */
    pthread_mutex_t blob_mu[REG_PG_BLOB_CONNS];
    PGconn *blob_conns[REG_PG_BLOB_CONNS]; /* owned; each under its blob_mu; NULL until used */
    /* Reads (reg_pg_query_locked's one statement, reg_pg_read_begin's
     * transaction) run on read connections, so a write that waits holds
     * none up: up to REG_PG_READ_CONNS of them, each opened when reads
     * first overlap that much. read_mu is held only to take or give one
     * back; a read waits for others only when all are out. */
    pthread_mutex_t read_mu;
    pthread_cond_t read_cv;   /* a read connection was given back */
    PGconn *read_conns[REG_PG_READ_CONNS]; /* owned; NULL until first used */
    int read_busy[REG_PG_READ_CONNS];      /* under read_mu: taken by a read */
    int read_only;            /* registry_open_read_only: no migration, no
                               * listener; ensure_conn makes every session
                               * READ ONLY */
};

#define REG_PG_MAX_PARAMS 12

/* The parameters of one statement: text (NULL = SQL NULL), integers or
 * bytes. Pointers are the caller's until the statement has run. */
typedef struct {
    int n;
    const char *vals[REG_PG_MAX_PARAMS];
    int lens[REG_PG_MAX_PARAMS];
    int fmts[REG_PG_MAX_PARAMS];
    char nums[REG_PG_MAX_PARAMS][24];
} reg_pg_params;

void reg_pg_text(reg_pg_params *ps, const char *s);
void reg_pg_int(reg_pg_params *ps, int64_t v);
void reg_pg_bytes(reg_pg_params *ps, const void *data, size_t len);

/* Runs sql with ps (may be NULL); *res (owned by the caller: PQclear) holds
 * the rows, or is NULL on failure. binary: the results come as bytes (a
 * bytea column) rather than text. On failure err says what and why, and the
 * status is REGISTRY_ERR_UNAVAILABLE when the connection is gone,
 * REGISTRY_ERR_ARG for a value PostgreSQL refused (class 22: e.g. JSON that
 * is not), REGISTRY_ERR_DB otherwise. */
int reg_pg_query(registry_pg *p, const char *sql, const reg_pg_params *ps, int binary,
                 PGresult **res, char *err, size_t errlen, const char *what);
/* reg_pg_query on conn, one of p's connections (a reader's). */
int reg_pg_query_on(registry_pg *p, PGconn *conn, const char *sql, const reg_pg_params *ps,
                    int binary, PGresult **res, char *err, size_t errlen, const char *what);
/* reg_pg_query as one call of its own: on a read connection (not p->mu),
 * after reconnecting when it broke (no transaction: one statement sees one
 * state, every commit before it). */
int reg_pg_query_locked(registry_pg *p, const char *sql, const reg_pg_params *ps, int binary,
                        PGresult **res, char *err, size_t errlen, const char *what);
/* A read that needs several statements to see one state (resolve: the
 * model, then its alias, then the version) runs them on a read connection
 * in one REPEATABLE READ, READ ONLY transaction: it waits for no write (a
 * read-only snapshot takes no row lock) and no write waits for it.
 *
 *     reg_pg_reader rd;
 *     int status = reg_pg_read_begin(p, &rd, err, errlen);
 *     if (!status)
 *         status = reg_pg_read_finish(p, &rd, thing(p, rd.conn, ...), err, errlen);
 *
 * rd.default_model is the registry's default model as it was at begin. */
typedef struct {
    PGconn *conn;             /* p's, lent until reg_pg_read_finish */
    int slot;
    char default_model[128];
} reg_pg_reader;
int reg_pg_read_begin(registry_pg *p, reg_pg_reader *rd, char *err, size_t errlen);
/* Commits when status is REGISTRY_OK, else rolls back, and gives the
 * connection back; returns status, or the commit's failure. */
int reg_pg_read_finish(registry_pg *p, reg_pg_reader *rd, int status, char *err, size_t errlen);
/* reg_pg_query_locked on a blob connection (binary results): the first
 * idle one, or the first busy one's turn when all are busy; never p->mu. */
int reg_pg_query_blob(registry_pg *p, const char *sql, const reg_pg_params *ps, PGresult **res,
                      char *err, size_t errlen, const char *what);
/* The same for a statement whose rows are not needed. */
int reg_pg_exec(registry_pg *p, const char *sql, const reg_pg_params *ps, char *err,
                size_t errlen, const char *what);
/* *changed (may be NULL): rows the statement touched. */
int reg_pg_exec_n(registry_pg *p, const char *sql, const reg_pg_params *ps, int64_t *changed,
                  char *err, size_t errlen, const char *what);

int64_t reg_pg_int_at(const PGresult *res, int row, int col);   /* NULL reads 0 */
void reg_pg_copy_at(const PGresult *res, int row, int col, char *dst, size_t size);
/* The first n columns of row as text into col (NULL for SQL NULL), for
 * registry_int.h's row readers; valid until res is cleared. */
void reg_pg_row_text(const PGresult *res, int row, int n, const char **col);
/* A malloc'd copy (caller owns), NULL for SQL NULL; *oom set when it failed. */
char *reg_pg_dup_at(const PGresult *res, int row, int col, int *oom);

/* Opens a transaction (reconnecting first when the connection broke). */
int reg_pg_begin(registry_pg *p, char *err, size_t errlen);
/* Commits when status is REGISTRY_OK (with NOTIFY vaed_registry when the
 * transaction changed models), else rolls back; returns status or the
 * commit's failure. */
int reg_pg_finish(registry_pg *p, int status, char *err, size_t errlen);
/* Marks the open transaction as one that changes models: other replicas
 * drop what they resolved when it commits. */
void reg_pg_mark_models_changed(registry_pg *p);
/* ... as one that queues a job: idle workers everywhere look at once. */
void reg_pg_mark_job_queued(registry_pg *p);
/* Reconnects when the connection is broken; REGISTRY_ERR_UNAVAILABLE when it
 * cannot. */
int reg_pg_ensure(registry_pg *p, char *err, size_t errlen);

/* Writes a put's bytes into blobs, committed, on the staging connection
 * and without p->mu, before the put takes it: the put then finds the row and
 * only locks it (reg_pg_put_in_tx sends the bytes itself when the row is not
 * there: staging failed, or another replica collected it meanwhile). After a
 * failed put, reg_pg_collect_blob drops the bytes unless a version names
 * them; reg_pg_open drops every such orphan (a crash between the two). */
void reg_pg_stage_blob(registry_pg *p, const uint8_t *blob, size_t len, const char *sha);
void reg_pg_collect_blob(registry_pg *p, const char *sha);

/* From registry_pg_models.c, for a job's result (registry_pg_jobs.c): the
 * body of a put, inside the caller's transaction. */
int reg_pg_put_in_tx(registry_pg *p, const char *model, const uint8_t *blob, size_t len,
                     const char *sha, const char *config_json, const char *metrics_json,
                     const char *source, registry_checkpoint_info *out, int *created, char *err,
                     size_t errlen);

#endif
