/* registry: the database of models, checkpoint versions, aliases and
 * training jobs: an embedded SQLite file (the default), or a PostgreSQL
 * database that many vaed replicas share (server/registry_pg.h).
 *
 *     registry *r;
 *     if (registry_open("var/registry.db", &r, err, sizeof err)) ...   // applies schema/
 *     registry_put_checkpoint(r, "digits", blob, len, &put, &created, err, sizeof err);
 *     registry_resolve(r, NULL, NULL, &info, err, sizeof err);  // default model, latest
 *     registry_get_blob(r, info.sha256, &blob, &len, err, sizeof err);   // caller frees
 *     registry_insert_job(r, spec_json, &id, err, sizeof err);            // a queued job
 *     registry_set_job_state(r, id, JOBS_STATE_CANCELLED, NULL, err, sizeof err);
 *     registry_close(r);
 *
 * registry_open_read_only opens an existing registry to look at without
 * changing it (vaed registry list/export): no migration, nothing created.
 *
 * All SQL of vaed lives here, in prepared statements. Migrations are the
 * numbered files of schema/, compiled into the binary and applied in order by
 * PRAGMA user_version. WAL, busy_timeout and foreign keys are on. Checkpoint
 * bytes are stored once per sha256 as a blob, so a version becomes visible
 * exactly when its transaction commits. A registry may be used from many
 * threads: each write takes the registry's lock; reads run on connections
 * of their own (a few: SQLite's opened with the registry, PostgreSQL's as
 * reads first overlap), so they never wait for a write's commit, nor for
 * another process's lock that a write waits on. An upload's bytes are written before the lock is taken,
 * on both backends.
 *
 * Opened with a postgresql:// URL instead of a path, the same calls run on
 * PostgreSQL (registry_pg.h says how): one database for every replica, its
 * job queue claimed with leases, changes seen by every replica's
 * registry_generation within a second. registry_is_shared tells the two
 * apart for the few callers that must (a worker polls a queue others fill).
 */
#ifndef REGISTRY_H
#define REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "server/jobs.h"

typedef enum {
    REGISTRY_OK = 0,
    REGISTRY_ERR_DB,        /* SQLite failed */
    REGISTRY_ERR_NOT_FOUND, /* no such model / version / alias */
    REGISTRY_ERR_CONFLICT,  /* e.g. deleting a version an alias points at */
    REGISTRY_ERR_ARG,       /* bad name or value */
    REGISTRY_ERR_NOMEM,
    REGISTRY_ERR_UNAVAILABLE, /* the database server cannot be reached now: try again */
    REGISTRY_ERR_FULL         /* the disk is full (SQLITE_FULL): nothing was written */
} registry_status;

typedef struct registry registry;

typedef struct {
    char model[128];
    int64_t version;
    char sha256[65];          /* hex */
    int64_t size;
    char created_at[32];      /* ISO 8601 UTC */
    char source[64];          /* "upload", "train", "job:ID" */
} registry_checkpoint_info;

/* Opens (creating when absent) and migrates the database at path, or the
 * PostgreSQL database of a postgresql:// (or postgres://) URL, whose libpq
 * parameters (sslmode, ...) pass through as they are. */
registry_status registry_open(const char *path, registry **out, char *err, size_t errlen);
/* Opens an existing registry to read it, changing nothing, for a look at
 * a database that may be someone else's, or one that older replicas share
 * (vaed registry list and export, copy's source): no migration, no orphan
 * sweep. A file: nothing is created (not even its directory), every
 * connection is SQLITE_OPEN_READONLY, its journal mode stays as it is.
 * PostgreSQL: no listener (no LISTEN; registry_reachable stays 1), and each
 * session is READ ONLY from its (re)connect on, so the server refuses every
 * write. Either way a write through the registry fails cleanly with
 * REGISTRY_ERR_DB.
 *   REGISTRY_ERR_NOT_FOUND  no file at path ("no registry at PATH")
 *   REGISTRY_ERR_ARG        not a vaed registry: "... (no models table)"
 *   REGISTRY_ERR_CONFLICT   its schema version is not this binary's
 *                           (newer: use a newer vaed; older: a read does not
 *                           upgrade it: `vaed serve` or `vaed registry
 *                           import` on it once)
 * and registry_open's other failures. */
registry_status registry_open_read_only(const char *path, registry **out, char *err,
                                        size_t errlen);
/* 1 on PostgreSQL: other processes change the registry and fill the queue. */
int registry_is_shared(registry *r);
/* A shared registry: a number that changes when any replica queues a job
 * (0 for a file). An idle worker looks at the queue when it moves. */
uint64_t registry_jobs_generation(registry *r);
/* 0 while a shared registry's database cannot be reached; always 1 for a
 * file. No lock, no query: the listener thread keeps it. */
int registry_reachable(registry *r);
/* Seconds a claimed job stays this process's without renewal (shared
 * registry; default 30): after a crash, another replica claims the job once
 * that much time has passed. */
void registry_set_job_lease(registry *r, int seconds);
/* url with its password (user:PASSWORD@ or password=) replaced by ***, for
 * anything printed. */
void registry_redact_url(const char *url, char *out, size_t outlen);
void registry_close(registry *r);
int registry_schema_version(registry *r);

/* Model names: 1-64 chars of [A-Za-z0-9._-], not starting with '.' or '-'. */
int registry_valid_name(const char *name);

/* Stores blob as the next version of model (creating the model). When the
 * same bytes are already a version of that model, returns it with
 * *created = 0 and stores nothing. config_json and metrics_json may be NULL.
 * The 'latest' alias follows the new version unless it was set by hand. */
registry_status registry_put_checkpoint(registry *r, const char *model, const uint8_t *blob,
                                        size_t len, const char *expected_sha256,
                                        const char *config_json, const char *metrics_json,
                                        const char *source, registry_checkpoint_info *out,
                                        int *created, char *err, size_t errlen);
/* Resolves model (NULL: the default model, the only one, or the most recently
 * updated) and version_or_alias (NULL: "latest"; digits: a version number). */
registry_status registry_resolve(registry *r, const char *model, const char *version_or_alias,
                                 registry_checkpoint_info *out, char *err, size_t errlen);
/* The stored bytes of a checkpoint, *blob owned by the caller (free()).
 * Read through a registry_blob: the registry's lock is not held, and on
 * PostgreSQL the bytes come in pieces straight into *blob. */
registry_status registry_get_blob(registry *r, const char *sha256, uint8_t **blob, size_t *len,
                                  char *err, size_t errlen);

/* The bytes of a checkpoint read in pieces, for a download streamed to a
 * client or a load. SQLite: on a connection of the blob's own (one of those
 * the registry opened beforehand, given back at close; a new one only when
 * more blobs are open at once); opening and reading never take the
 * registry's lock (nor wait for a write: WAL), and what is read is the blob
 * as it was when opened, even if it is deleted meanwhile. PostgreSQL: one
 * piece of REGISTRY_BLOB_PIECE bytes at a time is held (two with a
 * prefetch), fetched by its own statement (a blob connection, not the
 * registry's lock), so a blob costs a piece or two of memory whatever its
 * size; a blob deleted after the open fails
 * the next fetch with REGISTRY_ERR_NOT_FOUND (bytes never change under one
 * sha256, so what was read before is still right). Close every blob before
 * registry_close.
 *
 *     registry_blob *b; size_t size;
 *     if (registry_blob_open(reg, sha256, &b, &size, err, sizeof err)) ...
 *     registry_blob_read(b, offset, buf, n, err, sizeof err);   // offset + n <= size
 *     registry_blob_close(b);                                    // the caller's
 *
 * A reader that must not wait for the database (a polling thread) asks
 * first: registry_blob_available(b, offset) is how many bytes from offset
 * registry_blob_read returns without a query (SQLite: all that is left, a
 * local file; PostgreSQL: the rest of the piece held, 0 when offset is not
 * in it), and registry_blob_fetch(b, offset), elsewhere, brings in the
 * piece holding offset (dropping what is held: one piece).
 * registry_blob_prefetch(b, offset) brings it in beside the piece where the
 * last read began (two held, at most), so a reader can go on reading while
 * the next piece comes. registry_blob_open of a PostgreSQL blob fetches its
 * first piece; so it waits for the database too.
 *
 * One fetch or prefetch at a time per blob, and one reader; a fetch may run
 * on another thread beside the reader's available and read calls.
 * REGISTRY_ERR_NOT_FOUND when no bytes have that sha256. */
typedef struct registry_blob registry_blob;
#define REGISTRY_BLOB_PIECE ((size_t)1 << 20)
registry_status registry_blob_open(registry *r, const char *sha256, registry_blob **out,
                                   size_t *size, char *err, size_t errlen);
registry_status registry_blob_read(registry_blob *b, size_t offset, void *buf, size_t len,
                                   char *err, size_t errlen);
size_t registry_blob_available(const registry_blob *b, size_t offset);
registry_status registry_blob_fetch(registry_blob *b, size_t offset, char *err, size_t errlen);
registry_status registry_blob_prefetch(registry_blob *b, size_t offset, char *err, size_t errlen);
size_t registry_blob_size(const registry_blob *b);
void registry_blob_close(registry_blob *b);
int64_t registry_count_checkpoints(registry *r);
/* The largest checkpoint the registry can store: SQLite's length limit on
 * one value (SQLITE_LIMIT_LENGTH, 10^9 bytes by default). */
int64_t registry_max_blob_bytes(registry *r);
/* A number that changes whenever a write commits (or the default model
 * changes): a caller may keep what it resolved while this stays the same. */
uint64_t registry_generation(registry *r);
/* The model used when a request names none (NULL clears it). */
void registry_set_default_model(registry *r, const char *model);

/* ---- listing, aliases, deletion ----
 * Reading calls take model NULL to mean the default model (as in
 * registry_resolve); calls that change the registry need a name. */

typedef struct {
    char name[128];
    int64_t n_versions;
    int64_t latest_version;   /* what 'latest' points at; 0 when no versions */
    char created_at[32];
    char updated_at[32];      /* when its newest version was put */
} registry_model_info;

/* All models by name. *models is an array of *count entries owned by the
 * caller: free it with registry_free_models (NULL when *count is 0). */
registry_status registry_list_models(registry *r, registry_model_info **models, size_t *count,
                                     char *err, size_t errlen);
void registry_free_models(registry_model_info *models);

/* One version with its JSON. config_json and metrics_json are malloc'd, owned
 * by the struct (NULL when absent); registry_free_checkpoint frees them. */
typedef struct {
    registry_checkpoint_info info;
    char *config_json;
    char *metrics_json;
} registry_checkpoint;

void registry_free_checkpoint(registry_checkpoint *c);
/* The metadata of version of model (not the bytes); free with
 * registry_free_checkpoint. */
registry_status registry_get_checkpoint(registry *r, const char *model, int64_t version,
                                        registry_checkpoint *out, char *err, size_t errlen);
/* Every version of model, oldest first. *list (an array of *count) is owned by
 * the caller: free it with registry_free_checkpoints. */
registry_status registry_list_checkpoints(registry *r, const char *model,
                                          registry_checkpoint **list, size_t *count, char *err,
                                          size_t errlen);
void registry_free_checkpoints(registry_checkpoint *list, size_t count);

typedef struct {
    char alias[128];
    int64_t version;
    int set_by_hand;          /* for 'latest': 0 while it follows new versions */
} registry_alias_info;

/* The aliases of model by name. *aliases owned by the caller: free(). */
registry_status registry_list_aliases(registry *r, const char *model, registry_alias_info **aliases,
                                      size_t *count, char *err, size_t errlen);
/* Alias names are valid model names that are not all digits. Setting 'latest'
 * by hand stops it following new versions; deleting it makes it follow again
 * (it goes back to the highest version). */
int registry_valid_alias(const char *alias);
registry_status registry_set_alias(registry *r, const char *model, const char *alias,
                                   int64_t version, char *err, size_t errlen);
registry_status registry_delete_alias(registry *r, const char *model, const char *alias, char *err,
                                      size_t errlen);
/* Deletes a version: REGISTRY_ERR_CONFLICT while an alias other than 'latest'
 * points at it. 'latest' moves to the highest remaining version. The bytes go
 * when no other version holds them. The model stays, with no versions. */
registry_status registry_delete_version(registry *r, const char *model, int64_t version, char *err,
                                        size_t errlen);

/* ---- the job queue and its events ----
 * States and event types are native (server/jobs.h); the columns hold their
 * names. Every transition (jobs_state_can_become) is one transaction that
 * also appends a "state" event whose data is {"state": S} (plus "error", or
 * "result": {"model", "version"}, or "reason"). Events of a job are numbered
 * 1, 2, 3 ... in the order they were appended. */

typedef struct {
    int64_t id;
    jobs_state state;
    char *config_json;        /* owned; the job spec as submitted (normalised) */
    char *progress_json;      /* owned; NULL until the job reports progress */
    char *metrics_json;       /* owned; NULL or a JSON array, one object per epoch */
    char result_model[128];   /* "" until succeeded */
    int64_t result_version;   /* 0 until succeeded */
    char *error;              /* owned; NULL unless failed */
    char created_at[32];
    char started_at[32];      /* "" when never started */
    char finished_at[32];     /* "" until a final state */
} registry_job;

typedef struct {
    int64_t seq;
    jobs_event_type type;
    jobs_state state;         /* JOBS_EVENT_STATE: the state the event records */
    char *data_json;          /* owned; NULL when the event has no data */
    char created_at[32];
} registry_job_event;

/* Adds a queued job (and its first state event); *id is its number. */
registry_status registry_insert_job(registry *r, const char *config_json, int64_t *id, char *err,
                                    size_t errlen);
/* Takes the oldest queued job and makes it running, in one transaction.
 * REGISTRY_ERR_NOT_FOUND when none is queued. *config_json (malloc'd) is owned
 * by the caller. */
registry_status registry_claim_next_job(registry *r, int64_t *id, char **config_json, char *err,
                                        size_t errlen);
/* Moves job id to state to; note is the error for "failed", the reason for
 * "queued" (e.g. "interrupted"), ignored otherwise (may be NULL).
 * REGISTRY_ERR_CONFLICT, saying the current state, when the transition is not
 * allowed; REGISTRY_ERR_NOT_FOUND when there is no such job. */
registry_status registry_set_job_state(registry *r, int64_t id, jobs_state to, const char *note,
                                       char *err, size_t errlen);
/* Stores progress_json and metrics_json (each kept as it was when NULL) on a
 * running job and, when event_json is not NULL, appends an event_type event
 * with event_json as data, in one transaction. *seq (may be NULL) receives
 * the event's number. REGISTRY_ERR_CONFLICT when the job is not running. */
registry_status registry_set_job_progress(registry *r, int64_t id, const char *progress_json,
                                          const char *metrics_json, jobs_event_type event_type,
                                          const char *event_json, int64_t *seq, char *err,
                                          size_t errlen);
registry_status registry_append_job_event(registry *r, int64_t id, jobs_event_type type,
                                          const char *data_json, int64_t *seq, char *err,
                                          size_t errlen);
/* Finishes a running job: blob becomes the next version of model (as
 * registry_put_checkpoint, source "job:ID") and the job 'succeeded' with that
 * result and metrics_json (per epoch), all in one transaction. */
registry_status registry_succeed_job(registry *r, int64_t id, const char *model,
                                     const uint8_t *blob, size_t len, const char *config_json,
                                     const char *ckpt_metrics_json, const char *metrics_json,
                                     registry_checkpoint_info *out, char *err, size_t errlen);
/* Every job found 'running' (left so by a crash) back to 'queued', with a
 * state event {"state":"queued","reason":"restarted"}; *count may be NULL. */
registry_status registry_requeue_running_jobs(registry *r, int *count, char *err, size_t errlen);
/* One job; free with registry_free_job. */
registry_status registry_get_job(registry *r, int64_t id, registry_job *out, char *err,
                                 size_t errlen);
void registry_free_job(registry_job *j);
/* Jobs in submission order, only those in *only when only is not NULL, and
 * only ids after after_id, at most limit of them (limit <= 0: all). *list
 * (an array of *count) is owned by the caller: registry_free_jobs. */
registry_status registry_list_jobs(registry *r, const jobs_state *only, int64_t after_id,
                                   int limit, registry_job **list, size_t *count, char *err,
                                   size_t errlen);
/* Deletes the jobs that finished (succeeded, failed, cancelled) before
 * before_iso (ISO 8601 UTC, as registry timestamps are written), with their
 * events; *deleted (may be NULL) counts them. */
registry_status registry_prune_jobs(registry *r, const char *before_iso, int64_t *deleted,
                                    char *err, size_t errlen);
void registry_free_jobs(registry_job *list, size_t count);
/* How many jobs are in each state, counted in the state index (no row is
 * read): counts[s] for every jobs_state s. */
registry_status registry_count_jobs(registry *r, int64_t counts[JOBS_STATE_COUNT], char *err,
                                    size_t errlen);
/* The number of job id's newest event (0 when none) and the job's state
 * (state may be NULL). */
registry_status registry_get_job_last_seq(registry *r, int64_t id, int64_t *seq, jobs_state *state,
                                          char *err, size_t errlen);
/* Progress events are kept only while they are among a job's last
 * REGISTRY_JOB_PROGRESS_KEPT events (seq within that many of the newest);
 * "state" and "epoch" events are always kept. A client replaying from an
 * older seq gets the events still there, in order. */
#define REGISTRY_JOB_PROGRESS_KEPT 256
/* At most max (> 0) events of job id with seq > after_seq, oldest first.
 * *list is owned by the caller: registry_free_job_events. */
registry_status registry_list_job_events(registry *r, int64_t id, int64_t after_seq, int max,
                                         registry_job_event **list, size_t *count, char *err,
                                         size_t errlen);
void registry_free_job_events(registry_job_event *list, size_t count);

/* A job's resume state kept in a shared registry, so whichever replica runs
 * the job next continues it (a SQLite registry's jobs keep theirs on disk:
 * REGISTRY_ERR_ARG / _NOT_FOUND). *data owned by the caller (free()). */
registry_status registry_put_job_resume(registry *r, int64_t id, const uint8_t *data, size_t len,
                                        char *err, size_t errlen);
registry_status registry_get_job_resume(registry *r, int64_t id, uint8_t **data, size_t *len,
                                        char *err, size_t errlen);

/* ---- moving a registry (registry_copy.c) ---- */

typedef struct {
    size_t models, blobs, checkpoints, aliases, jobs, events;
} registry_copy_counts;

/* Everything in from (models, versions and their bytes, aliases, metrics,
 * jobs and their events; ids, numbers and timestamps as they are) into to,
 * which must be empty (REGISTRY_ERR_CONFLICT): a SQLite file into
 * PostgreSQL, or back. One snapshot of from, one transaction in to: on
 * failure to is left empty. A PostgreSQL registry's shared resume state is
 * not copied (a SQLite registry keeps it on disk): such jobs start over.
 * counts (may be NULL) says how many rows of each went. */
registry_status registry_copy_all(registry *from, registry *to, registry_copy_counts *counts,
                                  char *err, size_t errlen);

#endif
