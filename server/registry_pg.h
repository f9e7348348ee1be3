/* registry_pg: the PostgreSQL backend of the registry, for many vaed
 * replicas sharing one database. Only registry*.c include it: every public
 * registry_* call of registry.h, on a registry opened with a
 * postgresql:// URL, hands over to the reg_pg_* call of the same name and
 * arguments here (registry->pg), so callers never know which backend runs.
 *
 *     registry_pg *p;
 *     reg_pg_open("postgresql://vaed@db:5432/vaed?sslmode=require", &p, err, sizeof err);
 *     ... reg_pg_put_checkpoint(p, ...) ...
 *     reg_pg_close(p);
 *
 * The URL goes to libpq as it is (so sslmode, connect_timeout and every
 * other libpq parameter pass through); its password is never written into a
 * message (registry_redact_url). Migrations are schema/pg/, applied in one
 * transaction under an advisory lock, so replicas that start together
 * migrate once. Writes to models send NOTIFY vaed_registry; a listener
 * thread on a second connection bumps the generation when any replica's
 * notification arrives, renews the leases of the jobs this process holds
 * and notices when the database goes away (reg_pg_reachable) and comes back.
 *
 * One connection for the writes, under one mutex, as the SQLite backend;
 * reads run on a few connections of their own (in a read-only transaction
 * when they need several statements), so a write that waits for another
 * replica's lock holds no read up. A call that finds its connection broken
 * resets it first; one that loses it midway answers
 * REGISTRY_ERR_UNAVAILABLE and the next call reconnects.
 */
#ifndef REGISTRY_PG_H
#define REGISTRY_PG_H

#include "server/registry.h"

typedef struct registry_pg registry_pg;

/* Whether path names a PostgreSQL database (postgresql:// or postgres://). */
int reg_pg_is_url(const char *path);

/* read_only (registry_open_read_only): no migration, no orphan sweep, no
 * listener; every session of p is SET ... READ ONLY after each (re)connect,
 * so the server refuses any write; the schema must be this binary's. */
registry_status reg_pg_open(const char *url, int read_only, registry_pg **out, char *err,
                            size_t errlen);
void reg_pg_close(registry_pg *p);
int reg_pg_schema_version(registry_pg *p);
int reg_pg_reachable(registry_pg *p);
void reg_pg_set_job_lease(registry_pg *p, int seconds);
uint64_t reg_pg_generation(registry_pg *p);
uint64_t reg_pg_jobs_generation(registry_pg *p);
void reg_pg_set_default_model(registry_pg *p, const char *model);
int64_t reg_pg_count_checkpoints(registry_pg *p);

registry_status reg_pg_put_checkpoint(registry_pg *p, const char *model, const uint8_t *blob,
                                      size_t len, const char *sha, const char *config_json,
                                      const char *metrics_json, const char *source,
                                      registry_checkpoint_info *out, int *created, char *err,
                                      size_t errlen);
registry_status reg_pg_resolve(registry_pg *p, const char *model, const char *version_or_alias,
                               registry_checkpoint_info *out, char *err, size_t errlen);
/* At most len bytes of the blob from offset, where libpq received them,
 * not copied: *bytes (*n of them: len, or what is left past offset) stay
 * valid until reg_pg_release_blob(*handle), the caller's; *total is the
 * whole blob's size. One statement on the blob connection: a slice of the
 * stored value, read without the rest of it (schema/pg/002). */
registry_status reg_pg_fetch_piece(registry_pg *p, const char *sha256, size_t offset, size_t len,
                                   void **handle, const uint8_t **bytes, size_t *n,
                                   size_t *total, char *err, size_t errlen);
void reg_pg_release_blob(void *handle);
registry_status reg_pg_list_models(registry_pg *p, registry_model_info **models, size_t *count,
                                   char *err, size_t errlen);
registry_status reg_pg_get_checkpoint(registry_pg *p, const char *model, int64_t version,
                                      registry_checkpoint *out, char *err, size_t errlen);
registry_status reg_pg_list_checkpoints(registry_pg *p, const char *model,
                                        registry_checkpoint **list, size_t *count, char *err,
                                        size_t errlen);
registry_status reg_pg_list_aliases(registry_pg *p, const char *model,
                                    registry_alias_info **aliases, size_t *count, char *err,
                                    size_t errlen);
registry_status reg_pg_set_alias(registry_pg *p, const char *model, const char *alias,
                                 int64_t version, char *err, size_t errlen);
registry_status reg_pg_delete_alias(registry_pg *p, const char *model, const char *alias,
                                    char *err, size_t errlen);
registry_status reg_pg_delete_version(registry_pg *p, const char *model, int64_t version,
                                      char *err, size_t errlen);

registry_status reg_pg_insert_job(registry_pg *p, const char *config_json, int64_t *id,
                                  char *err, size_t errlen);
registry_status reg_pg_claim_next_job(registry_pg *p, int64_t *id, char **config_json,
                                      char *err, size_t errlen);
registry_status reg_pg_set_job_state(registry_pg *p, int64_t id, jobs_state to,
                                     const char *note, char *err, size_t errlen);
registry_status reg_pg_set_job_progress(registry_pg *p, int64_t id, const char *progress_json,
                                        const char *metrics_json, jobs_event_type event_type,
                                        const char *event_json, int64_t *seq, char *err,
                                        size_t errlen);
registry_status reg_pg_append_job_event(registry_pg *p, int64_t id, jobs_event_type type,
                                        const char *data_json, int64_t *seq, char *err,
                                        size_t errlen);
registry_status reg_pg_succeed_job(registry_pg *p, int64_t id, const char *model,
                                   const uint8_t *blob, size_t len, const char *sha,
                                   const char *config_json, const char *ckpt_metrics_json,
                                   const char *metrics_json, registry_checkpoint_info *out,
                                   char *err, size_t errlen);
registry_status reg_pg_requeue_running_jobs(registry_pg *p, int *count, char *err,
                                            size_t errlen);
registry_status reg_pg_get_job(registry_pg *p, int64_t id, registry_job *out, char *err,
                               size_t errlen);
registry_status reg_pg_list_jobs(registry_pg *p, const jobs_state *only, int64_t after_id,
                                 int limit, registry_job **list, size_t *count, char *err,
                                 size_t errlen);
registry_status reg_pg_prune_jobs(registry_pg *p, const char *before_iso, int64_t *deleted,
                                  char *err, size_t errlen);
registry_status reg_pg_count_jobs(registry_pg *p, int64_t counts[JOBS_STATE_COUNT], char *err,
                                  size_t errlen);
registry_status reg_pg_get_job_last_seq(registry_pg *p, int64_t id, int64_t *seq,
                                        jobs_state *state, char *err, size_t errlen);
registry_status reg_pg_list_job_events(registry_pg *p, int64_t id, int64_t after_seq, int max,
                                       registry_job_event **list, size_t *count, char *err,
                                       size_t errlen);
registry_status reg_pg_put_job_resume(registry_pg *p, int64_t id, const uint8_t *data,
                                      size_t len, char *err, size_t errlen);
registry_status reg_pg_get_job_resume(registry_pg *p, int64_t id, uint8_t **data, size_t *len,
                                      char *err, size_t errlen);

#endif
