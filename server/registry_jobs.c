/* registry_jobs: the job queue and its events. See registry.h; the SQL is in
 * registry.c's table. */
#include "server/registry.h"

#include "server/registry_int.h"
#include "server/sha256.h"

#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- training jobs ---- */

static jobs_state state_col(sqlite3_stmt *st, int col)
{
    return reg_state_text((const char *)sqlite3_column_text(st, col));
}

static int valid_state(jobs_state s)
{
    return jobs_state_name(s) != NULL;
}

/* The state of job id. */
static int job_state_locked(registry *r, int64_t id, jobs_state *state, char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, S_JOB_STATE);
    if (!st)
        return reg_db_fail(r, err, errlen, "reading a job");
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *state = state_col(st, 0);
    reg_done(st);
    if (rc == SQLITE_ROW)
        return REGISTRY_OK;
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "reading a job");
    util_set_err(err, errlen, "no job %" PRId64, id);
    return REGISTRY_ERR_NOT_FOUND;
}

/* Appends a state event for job id (error / reason may be NULL). */
static int job_state_event_locked(registry *r, int64_t id, jobs_state state, const char *error,
                                  const char *reason, const char *now, char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, S_JOB_STATE_EVENT);
    if (!st)
        return reg_db_fail(r, err, errlen, "recording a job event");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, jobs_state_name(state), -1, SQLITE_STATIC);
    if (error)
        sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
    if (reason)
        sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, now, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    reg_done(st);
    return rc == SQLITE_DONE ? REGISTRY_OK : reg_db_fail(r, err, errlen, "recording a job event");
}

/* Checks and makes one transition, with its event (inside a transaction). */
static int job_set_state_locked(registry *r, int64_t id, jobs_state to, const char *note,
                                char *err, size_t errlen)
{
    char now[32];
    jobs_state from;
    int status = job_state_locked(r, id, &from, err, errlen);
    if (status)
        return status;
    if (!jobs_state_can_become(from, to)) {
        util_set_err(err, errlen, "job %" PRId64 " is %s; it cannot become %s", id,
                     jobs_state_name(from), jobs_state_name(to));
        return REGISTRY_ERR_CONFLICT;
    }
    reg_now_iso(now);
    const char *error = to == JOBS_STATE_FAILED ? (note ? note : "failed") : NULL;
    const char *reason = to == JOBS_STATE_QUEUED ? note : NULL;
    sqlite3_stmt *st = reg_stmt(r, S_JOB_UPDATE_STATE);
    if (!st)
        return reg_db_fail(r, err, errlen, "updating a job");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, jobs_state_name(to), -1, SQLITE_STATIC);
    if (error)
        sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    reg_done(st);
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "updating a job");
    return job_state_event_locked(r, id, to, error, reason, now, err, errlen);
}

registry_status registry_insert_job(registry *r, const char *config_json, int64_t *id, char *err,
                                    size_t errlen)
{
    *id = 0;
    if (!config_json) {
        util_set_err(err, errlen, "a job needs a config");
        return REGISTRY_ERR_ARG;
    }
    if (r->pg)
        return reg_pg_insert_job(r->pg, config_json, id, err, errlen);
    char now[32];
    reg_now_iso(now);
    pthread_mutex_lock(&r->mu);
    int status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (status)
        goto out;
    sqlite3_stmt *st = reg_stmt(r, S_JOB_INSERT);
    if (!st) {
        status = reg_finish(r, reg_db_fail(r, err, errlen, "adding a job"), err, errlen);
        goto out;
    }
    sqlite3_bind_text(st, 1, config_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    reg_done(st);
    if (rc == SQLITE_CONSTRAINT_CHECK) {
        util_set_err(err, errlen, "job config is not valid JSON");
        status = reg_finish(r, REGISTRY_ERR_ARG, err, errlen);
        goto out;
    }
    if (rc != SQLITE_DONE) {
        status = reg_finish(r, reg_db_fail(r, err, errlen, "adding a job"), err, errlen);
        goto out;
    }
    int64_t new_id = sqlite3_last_insert_rowid(r->db);
    status = job_state_event_locked(r, new_id, JOBS_STATE_QUEUED, NULL, NULL, now, err, errlen);
    status = reg_finish(r, status, err, errlen);
    if (!status)
        *id = new_id;
out:
    pthread_mutex_unlock(&r->mu);
    return status;
}

static int claim_locked(registry *r, int64_t *id, char **config_json, char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, S_JOB_NEXT_QUEUED);
    if (!st)
        return reg_db_fail(r, err, errlen, "reading the job queue");
    int rc = sqlite3_step(st);
    int oom = 0;
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        *config_json = reg_dup_col(st, 1, &oom);
    }
    reg_done(st);
    if (rc == SQLITE_DONE) {
        util_set_err(err, errlen, "no job is queued");
        return REGISTRY_ERR_NOT_FOUND;
    }
    if (rc != SQLITE_ROW)
        return reg_db_fail(r, err, errlen, "reading the job queue");
    if (oom || !*config_json) {
        util_set_err(err, errlen, "registry: out of memory");
        return REGISTRY_ERR_NOMEM;
    }
    return job_set_state_locked(r, *id, JOBS_STATE_RUNNING, NULL, err, errlen);
}

registry_status registry_claim_next_job(registry *r, int64_t *id, char **config_json, char *err,
                                        size_t errlen)
{
    *id = 0;
    *config_json = NULL;
    if (r->pg)
        return reg_pg_claim_next_job(r->pg, id, config_json, err, errlen);
    char *config = NULL; /* owned here until handed to *config_json */
    int64_t job = 0;
    pthread_mutex_lock(&r->mu);
    int status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r, claim_locked(r, &job, &config, err, errlen), err, errlen);
    pthread_mutex_unlock(&r->mu);
    if (status) {
        free(config);
        return status;
    }
    *id = job;
    *config_json = config;
    return REGISTRY_OK;
}

registry_status registry_set_job_state(registry *r, int64_t id, jobs_state to, const char *note,
                                       char *err, size_t errlen)
{
    if (!valid_state(to)) {
        util_set_err(err, errlen, "unknown job state %d", (int)to);
        return REGISTRY_ERR_ARG;
    }
    if (r->pg)
        return reg_pg_set_job_state(r->pg, id, to, note, err, errlen);
    pthread_mutex_lock(&r->mu);
    int status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r, job_set_state_locked(r, id, to, note, err, errlen), err, errlen);
    pthread_mutex_unlock(&r->mu);
    return status;
}

static int append_event_locked(registry *r, int64_t id, jobs_event_type type,
                               const char *data_json, int64_t *seq, char *err, size_t errlen)
{
    char now[32];
    reg_now_iso(now);
    sqlite3_stmt *st = reg_stmt(r, S_JOB_EVENT_ADD);
    if (!st)
        return reg_db_fail(r, err, errlen, "recording a job event");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, jobs_event_type_name(type), -1, SQLITE_STATIC);
    if (data_json)
        sqlite3_bind_text(st, 3, data_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    reg_done(st);
    if (rc == SQLITE_CONSTRAINT_CHECK) {
        util_set_err(err, errlen, "job event data is not valid JSON");
        return REGISTRY_ERR_ARG;
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        util_set_err(err, errlen, "no job %" PRId64, id);
        return REGISTRY_ERR_NOT_FOUND;
    }
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "recording a job event");
    if (seq)
        *seq = n;
    if (type != JOBS_EVENT_PROGRESS)
        return REGISTRY_OK;
    /* A running job reports progress about once a second: only the recent
     * ones are kept, so that a long job's events stay bounded. */
    if (!(st = reg_stmt(r, S_JOB_EVENTS_PRUNE)))
        return reg_db_fail(r, err, errlen, "pruning job events");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, n);
    sqlite3_bind_int64(st, 3, REGISTRY_JOB_PROGRESS_KEPT);
    rc = sqlite3_step(st);
    reg_done(st);
    return rc == SQLITE_DONE ? REGISTRY_OK : reg_db_fail(r, err, errlen, "pruning job events");
}

static int check_event_type(jobs_event_type type, char *err, size_t errlen)
{
    if (jobs_event_type_name(type))
        return REGISTRY_OK;
    util_set_err(err, errlen, "unknown job event type %d", (int)type);
    return REGISTRY_ERR_ARG;
}

registry_status registry_append_job_event(registry *r, int64_t id, jobs_event_type type,
                                          const char *data_json, int64_t *seq, char *err,
                                          size_t errlen)
{
    int status = check_event_type(type, err, errlen);
    if (status)
        return status;
    if (r->pg)
        return reg_pg_append_job_event(r->pg, id, type, data_json, seq, err, errlen);
    pthread_mutex_lock(&r->mu);
    status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r, append_event_locked(r, id, type, data_json, seq, err, errlen), err,
                            errlen);
    pthread_mutex_unlock(&r->mu);
    return status;
}

static int set_progress_locked(registry *r, int64_t id, const char *progress_json,
                               const char *metrics_json, jobs_event_type event_type,
                               const char *event_json, int64_t *seq, char *err, size_t errlen)
{
    sqlite3_stmt *st = reg_stmt(r, S_JOB_SET_PROGRESS);
    if (!st)
        return reg_db_fail(r, err, errlen, "updating a job");
    sqlite3_bind_int64(st, 1, id);
    if (progress_json)
        sqlite3_bind_text(st, 2, progress_json, -1, SQLITE_STATIC);
    if (metrics_json)
        sqlite3_bind_text(st, 3, metrics_json, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    reg_done(st);
    if (rc == SQLITE_CONSTRAINT_CHECK) {
        util_set_err(err, errlen, "job progress or metrics is not valid JSON");
        return REGISTRY_ERR_ARG;
    }
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "updating a job");
    if (sqlite3_changes(r->db) == 0) {
        jobs_state state;
        int status = job_state_locked(r, id, &state, err, errlen);
        if (status)
            return status;
        util_set_err(err, errlen, "job %" PRId64 " is %s, not running", id, jobs_state_name(state));
        return REGISTRY_ERR_CONFLICT;
    }
    if (!event_json)
        return REGISTRY_OK;
    return append_event_locked(r, id, event_type, event_json, seq, err, errlen);
}

registry_status registry_set_job_progress(registry *r, int64_t id, const char *progress_json,
                                          const char *metrics_json, jobs_event_type event_type,
                                          const char *event_json, int64_t *seq, char *err,
                                          size_t errlen)
{
    if (event_json) {
        int status = check_event_type(event_type, err, errlen);
        if (status)
            return status;
    }
    if (r->pg)
        return reg_pg_set_job_progress(r->pg, id, progress_json, metrics_json, event_type,
                                       event_json, seq, err, errlen);
    pthread_mutex_lock(&r->mu);
    int status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r,
                            set_progress_locked(r, id, progress_json, metrics_json, event_type,
                                                event_json, seq, err, errlen),
                            err, errlen);
    pthread_mutex_unlock(&r->mu);
    return status;
}

static int succeed_locked(registry *r, int64_t id, const char *model, const uint8_t *blob,
                          size_t len, const char *sha, const char *config_json,
                          const char *ckpt_metrics_json, const char *metrics_json,
                          registry_checkpoint_info *out, char *err, size_t errlen)
{
    char source[64], now[32];
    jobs_state state;
    int status = job_state_locked(r, id, &state, err, errlen);
    if (status)
        return status;
    if (state != JOBS_STATE_RUNNING) {
        util_set_err(err, errlen, "job %" PRId64 " is %s; it cannot become succeeded", id,
                     jobs_state_name(state));
        return REGISTRY_ERR_CONFLICT;
    }
    snprintf(source, sizeof source, "job:%" PRId64, id);
    int created = 0;
    status = reg_put_in_tx(r, model, blob, len, sha, config_json, ckpt_metrics_json, source, out,
                           &created, err, errlen);
    if (status)
        return status;
    reg_now_iso(now);
    sqlite3_stmt *st = reg_stmt(r, S_JOB_SUCCEED);
    if (!st)
        return reg_db_fail(r, err, errlen, "updating a job");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, out->model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, out->version);
    if (metrics_json)
        sqlite3_bind_text(st, 4, metrics_json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, now, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    reg_done(st);
    if (rc == SQLITE_CONSTRAINT_CHECK) {
        util_set_err(err, errlen, "job metrics is not valid JSON");
        return REGISTRY_ERR_ARG;
    }
    if (rc != SQLITE_DONE)
        return reg_db_fail(r, err, errlen, "updating a job");
    st = reg_stmt(r, S_JOB_RESULT_EVENT);
    if (!st)
        return reg_db_fail(r, err, errlen, "recording a job event");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, out->model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, out->version);
    sqlite3_bind_text(st, 4, now, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    reg_done(st);
    return rc == SQLITE_DONE ? REGISTRY_OK : reg_db_fail(r, err, errlen, "recording a job event");
}

registry_status registry_succeed_job(registry *r, int64_t id, const char *model,
                                     const uint8_t *blob, size_t len, const char *config_json,
                                     const char *ckpt_metrics_json, const char *metrics_json,
                                     registry_checkpoint_info *out, char *err, size_t errlen)
{
    registry_checkpoint_info scratch;
    if (!out)
        out = &scratch;
    int status = reg_check_model_arg(model, err, errlen);
    if (status)
        return status;
    if (!blob || len == 0) {
        util_set_err(err, errlen, "empty checkpoint");
        return REGISTRY_ERR_ARG;
    }
    char sha[65];
    sha256_hex(blob, len, sha);
    if (r->pg)
        return reg_pg_succeed_job(r->pg, id, model, blob, len, sha, config_json,
                                  ckpt_metrics_json, metrics_json, out, err, errlen);
    reg_stage_blob(r, blob, len, sha);
    pthread_mutex_lock(&r->mu);
    status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r,
                            succeed_locked(r, id, model, blob, len, sha, config_json,
                                           ckpt_metrics_json, metrics_json, out, err, errlen),
                            err, errlen);
    if (status)
        reg_collect_blob_locked(r, sha);
    pthread_mutex_unlock(&r->mu);
    return status;
}

static int requeue_locked(registry *r, int *count, char *err, size_t errlen)
{
    /* Collect first: the ids are updated while the select would still run. */
    int64_t ids[64];
    for (;;) {
        int n = 0;
        sqlite3_stmt *st = reg_stmt(r, S_JOB_RUNNING_IDS);
        if (!st)
            return reg_db_fail(r, err, errlen, "reading running jobs");
        int rc;
        while (n < 64 && (rc = sqlite3_step(st)) == SQLITE_ROW)
            ids[n++] = sqlite3_column_int64(st, 0);
        reg_done(st);
        if (n < 64 && rc != SQLITE_DONE)
            return reg_db_fail(r, err, errlen, "reading running jobs");
        for (int i = 0; i < n; i++) {
            int status =
                job_set_state_locked(r, ids[i], JOBS_STATE_QUEUED, "restarted", err, errlen);
            if (status)
                return status;
        }
        *count += n;
        if (n < 64)
            return REGISTRY_OK;
    }
}

registry_status registry_requeue_running_jobs(registry *r, int *count, char *err, size_t errlen)
{
    if (r->pg)
        return reg_pg_requeue_running_jobs(r->pg, count, err, errlen);
    int n = 0;
    pthread_mutex_lock(&r->mu);
    int status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status)
        status = reg_finish(r, requeue_locked(r, &n, err, errlen), err, errlen);
    pthread_mutex_unlock(&r->mu);
    if (count)
        *count = status ? 0 : n;
    return status;
}

void registry_free_job(registry_job *j)
{
    if (!j)
        return;
    free(j->config_json);
    free(j->progress_json);
    free(j->metrics_json);
    free(j->error);
    j->config_json = j->progress_json = j->metrics_json = j->error = NULL;
}

void registry_free_jobs(registry_job *list, size_t count)
{
    if (!list)
        return;
    for (size_t i = 0; i < count; i++)
        registry_free_job(&list[i]);
    free(list);
}

/* Fills j from a row of JOB_COLUMNS (j zeroed by the caller). */
static int read_job_row(sqlite3_stmt *st, registry_job *j)
{
    const char *col[JOB_N_COLUMNS];
    int status = reg_row_text(st, JOB_N_COLUMNS, col);
    int read = reg_job_row(col, j);
    return status ? status : read;
}

registry_status registry_get_job(registry *reg, int64_t id, registry_job *out, char *err,
                                 size_t errlen)
{
    if (reg->pg)
        return reg_pg_get_job(reg->pg, id, out, err, errlen);
    memset(out, 0, sizeof *out);
    registry *r = reg_read_begin(reg);
    int status = REGISTRY_OK;
    sqlite3_stmt *st = reg_stmt(r, S_JOB_GET);
    if (!st) {
        status = reg_db_fail(r, err, errlen, "reading a job");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if ((status = read_job_row(st, out)))
            util_set_err(err, errlen, "registry: out of memory");
    } else if (rc == SQLITE_DONE) {
        util_set_err(err, errlen, "no job %" PRId64, id);
        status = REGISTRY_ERR_NOT_FOUND;
    } else {
        status = reg_db_fail(r, err, errlen, "reading a job");
    }
    reg_done(st);
out:
    reg_read_end(reg, r);
    if (status)
        registry_free_job(out);
    return status;
}

registry_status registry_list_jobs(registry *reg, const jobs_state *only, int64_t after_id,
                                   int limit, registry_job **list, size_t *count, char *err,
                                   size_t errlen)
{
    *list = NULL;
    *count = 0;
    if (only && !valid_state(*only)) {
        util_set_err(err, errlen, "unknown job state %d", (int)*only);
        return REGISTRY_ERR_ARG;
    }
    if (reg->pg)
        return reg_pg_list_jobs(reg->pg, only, after_id, limit, list, count, err, errlen);
    reg_rows rows = {.size = sizeof(registry_job)};
    int status = REGISTRY_OK;
    registry *r = reg_read_begin(reg);
    sqlite3_stmt *st = reg_stmt(r, only ? S_JOB_LIST_STATE : S_JOB_LIST);
    if (!st) {
        status = reg_db_fail(r, err, errlen, "listing jobs");
        goto out;
    }
    if (only)
        sqlite3_bind_text(st, 1, jobs_state_name(*only), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after_id);
    sqlite3_bind_int(st, 3, limit > 0 ? limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        registry_job *j = reg_rows_push(&rows);
        if (!j) {
            status = REGISTRY_ERR_NOMEM;
            break;
        }
        if ((status = read_job_row(st, j)))
            break;
    }
    if (status == REGISTRY_ERR_NOMEM)
        util_set_err(err, errlen, "registry: out of memory");
    else if (rc != SQLITE_DONE)
        status = reg_db_fail(r, err, errlen, "listing jobs");
    reg_done(st);
out:
    reg_read_end(reg, r);
    if (status) {
        registry_free_jobs(rows.items, rows.n);
        return status;
    }
    *list = rows.items;
    *count = rows.n;
    return REGISTRY_OK;
}

registry_status registry_prune_jobs(registry *r, const char *before_iso, int64_t *deleted,
                                    char *err, size_t errlen)
{
    if (deleted)
        *deleted = 0;
    if (r->pg)
        return reg_pg_prune_jobs(r->pg, before_iso, deleted, err, errlen);
    pthread_mutex_lock(&r->mu);
    int status = reg_exec(r, S_BEGIN_WRITE, err, errlen);
    if (!status) {
        sqlite3_stmt *st = reg_stmt(r, S_JOB_PRUNE);
        if (st)
            sqlite3_bind_text(st, 1, before_iso, -1, SQLITE_STATIC);
        if (!st || sqlite3_step(st) != SQLITE_DONE)
            status = reg_db_fail(r, err, errlen, "deleting old jobs");
        else if (deleted)
            *deleted = sqlite3_changes(r->db);
        reg_done(st);
        status = reg_finish(r, status, err, errlen);
    }
    pthread_mutex_unlock(&r->mu);
    return status;
}

registry_status registry_count_jobs(registry *reg, int64_t counts[JOBS_STATE_COUNT], char *err,
                                    size_t errlen)
{
    for (int i = 0; i < JOBS_STATE_COUNT; i++)
        counts[i] = 0;
    if (reg->pg)
        return reg_pg_count_jobs(reg->pg, counts, err, errlen);
    registry *r = reg_read_begin(reg);
    int status = REGISTRY_OK, rc = SQLITE_DONE;
    sqlite3_stmt *st = reg_stmt(r, S_JOB_COUNT_BY_STATE);
    if (st)
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            counts[state_col(st, 0)] = sqlite3_column_int64(st, 1);
    if (!st || rc != SQLITE_DONE)
        status = reg_db_fail(r, err, errlen, "counting jobs");
    reg_done(st);
    reg_read_end(reg, r);
    return status;
}

registry_status registry_get_job_last_seq(registry *reg, int64_t id, int64_t *seq, jobs_state *state,
                                          char *err, size_t errlen)
{
    *seq = 0;
    if (reg->pg)
        return reg_pg_get_job_last_seq(reg->pg, id, seq, state, err, errlen);
    registry *r = reg_read_begin(reg);
    int status = REGISTRY_OK;
    sqlite3_stmt *st = reg_stmt(r, S_JOB_LAST_SEQ);
    if (!st) {
        status = reg_db_fail(r, err, errlen, "reading job events");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (state)
            *state = state_col(st, 0);
        *seq = sqlite3_column_int64(st, 1);
    } else if (rc == SQLITE_DONE) {
        util_set_err(err, errlen, "no job %" PRId64, id);
        status = REGISTRY_ERR_NOT_FOUND;
    } else {
        status = reg_db_fail(r, err, errlen, "reading job events");
    }
    reg_done(st);
out:
    reg_read_end(reg, r);
    return status;
}

void registry_free_job_events(registry_job_event *list, size_t count)
{
    if (!list)
        return;
    for (size_t i = 0; i < count; i++)
        free(list[i].data_json);
    free(list);
}

registry_status registry_list_job_events(registry *reg, int64_t id, int64_t after_seq, int max,
                                         registry_job_event **list, size_t *count, char *err,
                                         size_t errlen)
{
    *list = NULL;
    *count = 0;
    if (max <= 0) {
        util_set_err(err, errlen, "max must be positive");
        return REGISTRY_ERR_ARG;
    }
    if (reg->pg)
        return reg_pg_list_job_events(reg->pg, id, after_seq, max, list, count, err, errlen);
    reg_rows rows = {.size = sizeof(registry_job_event)};
    int status = REGISTRY_OK;
    registry *r = reg_read_begin(reg);
    sqlite3_stmt *st = reg_stmt(r, S_JOB_EVENTS_AFTER);
    if (!st) {
        status = reg_db_fail(r, err, errlen, "reading job events");
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, after_seq);
    sqlite3_bind_int(st, 3, max);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        registry_job_event *e = reg_rows_push(&rows);
        const char *col[5];
        if (!e || reg_row_text(st, 5, col) || reg_job_event_row(col, e)) {
            status = REGISTRY_ERR_NOMEM;
            util_set_err(err, errlen, "registry: out of memory");
            break;
        }
    }
    if (status == REGISTRY_OK && rc != SQLITE_DONE)
        status = reg_db_fail(r, err, errlen, "reading job events");
    reg_done(st);
out:
    reg_read_end(reg, r);
    if (status || rows.n == 0) {
        registry_free_job_events(rows.items, rows.n);
        return status;
    }
    *list = rows.items;
    *count = rows.n;
    return REGISTRY_OK;
}
