/* registry_pg_jobs: the job queue shared by every replica, its events and
 * the jobs' resume state, on PostgreSQL. See registry_pg.h.
 *
 * A worker claims the oldest queued job with FOR UPDATE SKIP LOCKED (two
 * replicas claiming at once take two different jobs, neither waits) and
 * holds it under a lease: lease_owner names this process, lease_until is
 * pushed forward by the listener thread (registry_pg.c) while the process
 * lives. A running job whose lease ran out is claimed again by whoever asks
 * next; progress and success are accepted only from the lease's holder, so a
 * replica that lost its job cannot overwrite the new holder's work.
 *
 * Every change to a job row locks it first (FOR UPDATE), so that events of
 * one job are numbered 1, 2, 3 ... without gaps or duplicates whichever
 * replica appends them. */
#include "server/registry_pg.h"

#include "engine/util.h"
#include "server/registry_int.h"
#include "server/registry_pg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_NEXT_SEQ "(SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = $1)"

static jobs_state state_at(const PGresult *res, int row, int col)
{
    return reg_state_text(PQgetvalue(res, row, col));
}

static int lease_seconds(registry_pg *p)
{
    return __atomic_load_n(&p->lease_s, __ATOMIC_RELAXED);
}

/* The state of job id, its row locked until the transaction ends. */
static int job_state_locked(registry_pg *p, int64_t id, jobs_state *state, char *err,
                            size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    PGresult *res = NULL;
    int status = reg_pg_query(p, "SELECT state FROM jobs WHERE id = $1 FOR UPDATE", &ps, 0, &res,
                              err, errlen, "reading a job");
    if (status)
        return status;
    int found = PQntuples(res) == 1;
    if (found)
        *state = state_at(res, 0, 0);
    PQclear(res);
    if (found)
        return REGISTRY_OK;
    util_set_err(err, errlen, "no job %" PRId64, id);
    return REGISTRY_ERR_NOT_FOUND;
}

static int job_state_event_locked(registry_pg *p, int64_t id, jobs_state state, const char *error,
                                  const char *reason, const char *now, char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, jobs_state_name(state));
    reg_pg_text(&ps, error);
    reg_pg_text(&ps, reason);
    reg_pg_text(&ps, now);
    /* The data as SQLite's json_object writes it: no spaces. */
    return reg_pg_exec(p,
                       "INSERT INTO job_events (job_id, seq, type, data, created_at) "
                       "VALUES ($1, " JOB_NEXT_SEQ ", 'state', "
                       "(CASE WHEN $3::text IS NOT NULL "
                       "      THEN format('{\"state\":%s,\"error\":%s}', to_json($2::text), "
                       "                  to_json($3::text)) "
                       "      WHEN $4::text IS NOT NULL "
                       "      THEN format('{\"state\":%s,\"reason\":%s}', to_json($2::text), "
                       "                  to_json($4::text)) "
                       "      ELSE format('{\"state\":%s}', to_json($2::text)) END)::json, $5)",
                       &ps, err, errlen, "recording a job event");
}

/* A finished job is never resumed: its resume state goes. */
static int drop_resume_locked(registry_pg *p, int64_t id, char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    return reg_pg_exec(p, "DELETE FROM job_resume WHERE job_id = $1", &ps, err, errlen,
                       "dropping a job's resume state");
}

/* The transition itself (the caller checked it), with its event. */
static int job_move_locked(registry_pg *p, int64_t id, jobs_state to, const char *note,
                           char *err, size_t errlen)
{
    char now[32];
    reg_now_iso(now);
    const char *error = to == JOBS_STATE_FAILED ? (note ? note : "failed") : NULL;
    const char *reason = to == JOBS_STATE_QUEUED ? note : NULL;
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, jobs_state_name(to));
    reg_pg_text(&ps, error);
    reg_pg_text(&ps, now);
    reg_pg_text(&ps, p->owner);
    reg_pg_int(&ps, lease_seconds(p));
    int status = reg_pg_exec(
        p,
        "UPDATE jobs SET state = $2::text, "
        "error = CASE WHEN $2::text = 'failed' THEN $3::text ELSE error END, "
        "started_at = CASE WHEN $2::text = 'running' THEN COALESCE(started_at, $4::text) "
        "             ELSE started_at END, "
        "finished_at = CASE WHEN $2::text IN ('succeeded', 'failed', 'cancelled') THEN $4::text "
        "              ELSE finished_at END, "
        "lease_owner = CASE WHEN $2::text = 'running' THEN $5::text END, "
        "lease_until = CASE WHEN $2::text = 'running' "
        "              THEN now() + make_interval(secs => $6::int) END "
        "WHERE id = $1",
        &ps, err, errlen, "updating a job");
    if (!status && to == JOBS_STATE_QUEUED)
        reg_pg_mark_job_queued(p);
    if (!status && jobs_state_is_final(to))
        status = drop_resume_locked(p, id, err, errlen);
    return status ? status : job_state_event_locked(p, id, to, error, reason, now, err, errlen);
}

static int job_set_state_locked(registry_pg *p, int64_t id, jobs_state to, const char *note,
                                char *err, size_t errlen)
{
    jobs_state from;
    int status = job_state_locked(p, id, &from, err, errlen);
    if (status)
        return status;
    if (!jobs_state_can_become(from, to)) {
        util_set_err(err, errlen, "job %" PRId64 " is %s; it cannot become %s", id,
                     jobs_state_name(from), jobs_state_name(to));
        return REGISTRY_ERR_CONFLICT;
    }
    return job_move_locked(p, id, to, note, err, errlen);
}

registry_status reg_pg_insert_job(registry_pg *p, const char *config_json, int64_t *id,
                                  char *err, size_t errlen)
{
    char now[32];
    reg_now_iso(now);
    reg_pg_params ps = {0};
    reg_pg_text(&ps, config_json);
    reg_pg_text(&ps, now);
    int64_t new_id = 0;
    PGresult *res = NULL;
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status) {
        int s = reg_pg_query(p,
                             "INSERT INTO jobs (state, config, created_at) "
                             "VALUES ('queued', $1, $2) RETURNING id",
                             &ps, 0, &res, err, errlen, "adding a job");
        if (s == REGISTRY_ERR_ARG)
            util_set_err(err, errlen, "job config is not valid JSON");
        if (!s) {
            reg_pg_mark_job_queued(p);
            new_id = reg_pg_int_at(res, 0, 0);
            s = job_state_event_locked(p, new_id, JOBS_STATE_QUEUED, NULL, NULL, now, err,
                                       errlen);
        }
        PQclear(res);
        status = reg_pg_finish(p, s, err, errlen);
    }
    pthread_mutex_unlock(&p->mu);
    if (!status)
        *id = new_id;
    return status;
}

static int claim_locked(registry_pg *p, int64_t *id, char **config_json, char *err,
                        size_t errlen)
{
    char now[32];
    reg_now_iso(now);
    reg_pg_params ps = {0};
    reg_pg_text(&ps, now);
    reg_pg_text(&ps, p->owner);
    reg_pg_int(&ps, lease_seconds(p));
    PGresult *res = NULL;
    /* A running job whose lease ran out belongs to a replica that died (or
     * lost the database for longer than the lease): it is taken over. */
    int status = reg_pg_query(
        p,
        "WITH c AS (SELECT id, state FROM jobs WHERE state = 'queued' OR (state = 'running' "
        "           AND (lease_until IS NULL OR lease_until < now())) "
        "           ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "UPDATE jobs j SET state = 'running', started_at = COALESCE(j.started_at, $1), "
        "lease_owner = $2, lease_until = now() + make_interval(secs => $3::int) "
        "FROM c WHERE j.id = c.id RETURNING j.id, j.config, c.state",
        &ps, 0, &res, err, errlen, "reading the job queue");
    if (status)
        return status;
    if (PQntuples(res) != 1) {
        PQclear(res);
        util_set_err(err, errlen, "no job is queued");
        return REGISTRY_ERR_NOT_FOUND;
    }
    int oom = 0;
    *id = reg_pg_int_at(res, 0, 0);
    *config_json = reg_pg_dup_at(res, 0, 1, &oom);
    int taken_over = strcmp(PQgetvalue(res, 0, 2), "running") == 0;
    PQclear(res);
    if (oom || !*config_json) {
        util_set_err(err, errlen, "registry: out of memory");
        return REGISTRY_ERR_NOMEM;
    }
    if (taken_over &&
        (status = job_state_event_locked(p, *id, JOBS_STATE_QUEUED, NULL, "lease expired", now,
                                         err, errlen)))
        return status;
    return job_state_event_locked(p, *id, JOBS_STATE_RUNNING, NULL, NULL, now, err, errlen);
}

registry_status reg_pg_claim_next_job(registry_pg *p, int64_t *id, char **config_json,
                                      char *err, size_t errlen)
{
    char *config = NULL; /* owned here until handed to *config_json */
    int64_t job = 0;
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p, claim_locked(p, &job, &config, err, errlen), err, errlen);
    pthread_mutex_unlock(&p->mu);
    if (status) {
        free(config);
        return status;
    }
    *id = job;
    *config_json = config;
    return REGISTRY_OK;
}

registry_status reg_pg_set_job_state(registry_pg *p, int64_t id, jobs_state to,
                                     const char *note, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p, job_set_state_locked(p, id, to, note, err, errlen), err, errlen);
    pthread_mutex_unlock(&p->mu);
    return status;
}

/* The row of job id is locked by the caller. */
static int append_event_locked(registry_pg *p, int64_t id, jobs_event_type type,
                               const char *data_json, int64_t *seq, char *err, size_t errlen)
{
    char now[32];
    reg_now_iso(now);
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, jobs_event_type_name(type));
    reg_pg_text(&ps, data_json);
    reg_pg_text(&ps, now);
    PGresult *res = NULL;
    int status = reg_pg_query(p,
                              "INSERT INTO job_events (job_id, seq, type, data, created_at) "
                              "VALUES ($1, " JOB_NEXT_SEQ ", $2, $3, $4) RETURNING seq",
                              &ps, 0, &res, err, errlen, "recording a job event");
    if (status == REGISTRY_ERR_ARG)
        util_set_err(err, errlen, "job event data is not valid JSON");
    if (status)
        return status;
    int64_t n = reg_pg_int_at(res, 0, 0);
    PQclear(res);
    if (seq)
        *seq = n;
    if (type != JOBS_EVENT_PROGRESS)
        return REGISTRY_OK;
    ps = (reg_pg_params){0};
    reg_pg_int(&ps, id);
    reg_pg_int(&ps, n);
    reg_pg_int(&ps, REGISTRY_JOB_PROGRESS_KEPT);
    return reg_pg_exec(p,
                       "DELETE FROM job_events WHERE job_id = $1 AND type = 'progress' "
                       "AND seq <= $2::bigint - $3::bigint",
                       &ps, err, errlen, "pruning job events");
}

registry_status reg_pg_append_job_event(registry_pg *p, int64_t id, jobs_event_type type,
                                        const char *data_json, int64_t *seq, char *err,
                                        size_t errlen)
{
    jobs_state state;
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status) {
        int s = job_state_locked(p, id, &state, err, errlen);
        if (!s)
            s = append_event_locked(p, id, type, data_json, seq, err, errlen);
        status = reg_pg_finish(p, s, err, errlen);
    }
    pthread_mutex_unlock(&p->mu);
    return status;
}

/* REGISTRY_ERR_CONFLICT unless job id is running under this process's
 * lease (its row locked meanwhile). */
static int check_holder_locked(registry_pg *p, int64_t id, const char *to, char *err,
                               size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    PGresult *res = NULL;
    int status = reg_pg_query(p, "SELECT state, lease_owner FROM jobs WHERE id = $1 FOR UPDATE",
                              &ps, 0, &res, err, errlen, "reading a job");
    if (status)
        return status;
    if (PQntuples(res) != 1) {
        PQclear(res);
        util_set_err(err, errlen, "no job %" PRId64, id);
        return REGISTRY_ERR_NOT_FOUND;
    }
    jobs_state state = state_at(res, 0, 0);
    int mine = !PQgetisnull(res, 0, 1) && strcmp(PQgetvalue(res, 0, 1), p->owner) == 0;
    PQclear(res);
    if (state != JOBS_STATE_RUNNING) {
        if (to)
            util_set_err(err, errlen, "job %" PRId64 " is %s; it cannot become %s", id,
                         jobs_state_name(state), to);
        else
            util_set_err(err, errlen, "job %" PRId64 " is %s, not running", id,
                         jobs_state_name(state));
        return REGISTRY_ERR_CONFLICT;
    }
    if (!mine) {
        util_set_err(err, errlen, "job %" PRId64 " was taken over by another replica (its lease "
                                  "ran out)", id);
        return REGISTRY_ERR_CONFLICT;
    }
    return REGISTRY_OK;
}

static int set_progress_locked(registry_pg *p, int64_t id, const char *progress_json,
                               const char *metrics_json, jobs_event_type event_type,
                               const char *event_json, int64_t *seq, char *err, size_t errlen)
{
    int status = check_holder_locked(p, id, NULL, err, errlen);
    if (status)
        return status;
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, progress_json);
    reg_pg_text(&ps, metrics_json);
    status = reg_pg_exec(p,
                         "UPDATE jobs SET progress = COALESCE($2::json, progress), "
                         "metrics = COALESCE($3::json, metrics) WHERE id = $1",
                         &ps, err, errlen, "updating a job");
    if (status == REGISTRY_ERR_ARG)
        util_set_err(err, errlen, "job progress or metrics is not valid JSON");
    if (status || !event_json)
        return status;
    return append_event_locked(p, id, event_type, event_json, seq, err, errlen);
}

registry_status reg_pg_set_job_progress(registry_pg *p, int64_t id, const char *progress_json,
                                        const char *metrics_json, jobs_event_type event_type,
                                        const char *event_json, int64_t *seq, char *err,
                                        size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p,
                               set_progress_locked(p, id, progress_json, metrics_json, event_type,
                                                   event_json, seq, err, errlen),
                               err, errlen);
    pthread_mutex_unlock(&p->mu);
    return status;
}

static int succeed_locked(registry_pg *p, int64_t id, const char *model, const uint8_t *blob,
                          size_t len, const char *sha, const char *config_json,
                          const char *ckpt_metrics_json, const char *metrics_json,
                          registry_checkpoint_info *out, char *err, size_t errlen)
{
    int status = check_holder_locked(p, id, "succeeded", err, errlen);
    if (status)
        return status;
    char source[64], now[32];
    snprintf(source, sizeof source, "job:%" PRId64, id);
    int created = 0;
    status = reg_pg_put_in_tx(p, model, blob, len, sha, config_json, ckpt_metrics_json, source,
                              out, &created, err, errlen);
    if (status)
        return status;
    reg_now_iso(now);
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, out->model);
    reg_pg_int(&ps, out->version);
    reg_pg_text(&ps, metrics_json);
    reg_pg_text(&ps, now);
    status = reg_pg_exec(p,
                         "UPDATE jobs SET state = 'succeeded', result_model = $2, "
                         "result_version = $3, metrics = COALESCE($4::json, metrics), "
                         "finished_at = $5, lease_owner = NULL, lease_until = NULL "
                         "WHERE id = $1",
                         &ps, err, errlen, "updating a job");
    if (status == REGISTRY_ERR_ARG)
        util_set_err(err, errlen, "job metrics is not valid JSON");
    if (!status)
        status = drop_resume_locked(p, id, err, errlen);
    if (status)
        return status;
    ps = (reg_pg_params){0};
    reg_pg_int(&ps, id);
    reg_pg_text(&ps, out->model);
    reg_pg_int(&ps, out->version);
    reg_pg_text(&ps, now);
    return reg_pg_exec(p,
                       "INSERT INTO job_events (job_id, seq, type, data, created_at) "
                       "VALUES ($1, " JOB_NEXT_SEQ ", 'state', "
                       "format('{\"state\":\"succeeded\",\"result\":{\"model\":%s,\"version\":%s}}', "
                       "to_json($2::text), $3::bigint)::json, $4)",
                       &ps, err, errlen, "recording a job event");
}

registry_status reg_pg_succeed_job(registry_pg *p, int64_t id, const char *model,
                                   const uint8_t *blob, size_t len, const char *sha,
                                   const char *config_json, const char *ckpt_metrics_json,
                                   const char *metrics_json, registry_checkpoint_info *out,
                                   char *err, size_t errlen)
{
    reg_pg_stage_blob(p, blob, len, sha);
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p,
                               succeed_locked(p, id, model, blob, len, sha, config_json,
                                              ckpt_metrics_json, metrics_json, out, err, errlen),
                               err, errlen);
    pthread_mutex_unlock(&p->mu);
    if (status)
        reg_pg_collect_blob(p, sha);
    return status;
}

/* Only jobs no live replica holds (lease run out) go back to the queue:
 * others run elsewhere. */
static int requeue_locked(registry_pg *p, int *count, char *err, size_t errlen)
{
    PGresult *res = NULL;
    int status = reg_pg_query(p,
                              "SELECT id FROM jobs WHERE state = 'running' AND "
                              "(lease_until IS NULL OR lease_until < now()) ORDER BY id "
                              "FOR UPDATE SKIP LOCKED",
                              NULL, 0, &res, err, errlen, "reading running jobs");
    if (status)
        return status;
    int n = PQntuples(res);
    for (int i = 0; i < n && !status; i++)
        status = job_move_locked(p, reg_pg_int_at(res, i, 0), JOBS_STATE_QUEUED, "restarted", err,
                                 errlen);
    PQclear(res);
    if (!status)
        *count = n;
    return status;
}

registry_status reg_pg_requeue_running_jobs(registry_pg *p, int *count, char *err,
                                            size_t errlen)
{
    int n = 0;
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_begin(p, err, errlen);
    if (!status)
        status = reg_pg_finish(p, requeue_locked(p, &n, err, errlen), err, errlen);
    pthread_mutex_unlock(&p->mu);
    if (count)
        *count = status ? 0 : n;
    return status;
}

static int read_job_row(const PGresult *res, int row, registry_job *j)
{
    const char *col[JOB_N_COLUMNS];
    reg_pg_row_text(res, row, JOB_N_COLUMNS, col);
    return reg_job_row(col, j);
}

registry_status reg_pg_get_job(registry_pg *p, int64_t id, registry_job *out, char *err,
                               size_t errlen)
{
    memset(out, 0, sizeof *out);
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    PGresult *res = NULL;
    int status = reg_pg_query_locked(p, JOB_COLUMNS "WHERE id = $1", &ps, 0, &res, err, errlen,
                                     "reading a job");
    if (status)
        return status;
    if (PQntuples(res) != 1) {
        util_set_err(err, errlen, "no job %" PRId64, id);
        status = REGISTRY_ERR_NOT_FOUND;
    } else if ((status = read_job_row(res, 0, out))) {
        util_set_err(err, errlen, "registry: out of memory");
    }
    PQclear(res);
    if (status)
        registry_free_job(out);
    return status;
}

registry_status reg_pg_list_jobs(registry_pg *p, const jobs_state *only, int64_t after_id,
                                 int limit, registry_job **list, size_t *count, char *err,
                                 size_t errlen)
{
    *list = NULL;
    *count = 0;
    reg_pg_params ps = {0};
    reg_pg_text(&ps, only ? jobs_state_name(*only) : NULL);
    reg_pg_int(&ps, after_id);
    if (limit > 0)
        reg_pg_int(&ps, limit);
    else
        reg_pg_text(&ps, NULL); /* LIMIT NULL: all */
    PGresult *res = NULL;
    int status = reg_pg_query_locked(p,
                                     JOB_COLUMNS "WHERE ($1::text IS NULL OR state = $1::text) "
                                                 "AND id > $2 ORDER BY id LIMIT $3::bigint",
                                     &ps, 0, &res, err, errlen, "listing jobs");
    if (status)
        return status;
    int n = PQntuples(res);
    registry_job *jobs = n ? calloc((size_t)n, sizeof *jobs) : NULL; /* owned: to *list */
    if (n && !jobs)
        status = REGISTRY_ERR_NOMEM;
    for (int i = 0; i < n && !status; i++)
        status = read_job_row(res, i, &jobs[i]);
    PQclear(res);
    if (status) {
        registry_free_jobs(jobs, (size_t)n);
        util_set_err(err, errlen, "registry: out of memory");
        return REGISTRY_ERR_NOMEM;
    }
    *list = jobs;
    *count = (size_t)n;
    return REGISTRY_OK;
}

registry_status reg_pg_prune_jobs(registry_pg *p, const char *before_iso, int64_t *deleted,
                                  char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_text(&ps, before_iso);
    int64_t n = 0;
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_ensure(p, err, errlen);
    if (!status)
        status = reg_pg_exec_n(p,
                               "DELETE FROM jobs WHERE state IN ('succeeded', 'failed', "
                               "'cancelled') AND finished_at < $1",
                               &ps, &n, err, errlen, "deleting old jobs");
    pthread_mutex_unlock(&p->mu);
    if (deleted)
        *deleted = status ? 0 : n;
    return status;
}

registry_status reg_pg_count_jobs(registry_pg *p, int64_t counts[JOBS_STATE_COUNT], char *err,
                                  size_t errlen)
{
    PGresult *res = NULL;
    int status = reg_pg_query_locked(p, "SELECT state, COUNT(*) FROM jobs GROUP BY state", NULL,
                                     0, &res, err, errlen, "counting jobs");
    if (status)
        return status;
    for (int i = 0; i < PQntuples(res); i++)
        counts[state_at(res, i, 0)] = reg_pg_int_at(res, i, 1);
    PQclear(res);
    return REGISTRY_OK;
}

registry_status reg_pg_get_job_last_seq(registry_pg *p, int64_t id, int64_t *seq,
                                        jobs_state *state, char *err, size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    PGresult *res = NULL;
    int status = reg_pg_query_locked(p,
                                     "SELECT j.state, (SELECT COALESCE(MAX(e.seq), 0) "
                                     "FROM job_events e WHERE e.job_id = j.id) "
                                     "FROM jobs j WHERE j.id = $1",
                                     &ps, 0, &res, err, errlen, "reading job events");
    if (status)
        return status;
    if (PQntuples(res) != 1) {
        PQclear(res);
        util_set_err(err, errlen, "no job %" PRId64, id);
        return REGISTRY_ERR_NOT_FOUND;
    }
    if (state)
        *state = state_at(res, 0, 0);
    *seq = reg_pg_int_at(res, 0, 1);
    PQclear(res);
    return REGISTRY_OK;
}

registry_status reg_pg_list_job_events(registry_pg *p, int64_t id, int64_t after_seq, int max,
                                       registry_job_event **list, size_t *count, char *err,
                                       size_t errlen)
{
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_int(&ps, after_seq);
    reg_pg_int(&ps, max);
    PGresult *res = NULL;
    int status = reg_pg_query_locked(p,
                                     "SELECT seq, type, data, created_at, "
                                     "CASE WHEN type = 'state' THEN data->>'state' END "
                                     "FROM job_events WHERE job_id = $1 AND seq > $2 "
                                     "ORDER BY seq LIMIT $3",
                                     &ps, 0, &res, err, errlen, "reading job events");
    if (status)
        return status;
    int n = PQntuples(res);
    if (n == 0) {
        PQclear(res);
        return REGISTRY_OK;
    }
    registry_job_event *events = calloc((size_t)n, sizeof *events); /* owned: to *list */
    int oom = !events;
    for (int i = 0; i < n && !oom; i++) {
        const char *col[5];
        reg_pg_row_text(res, i, 5, col);
        oom = reg_job_event_row(col, &events[i]) != REGISTRY_OK;
    }
    PQclear(res);
    if (oom) {
        registry_free_job_events(events, (size_t)n);
        util_set_err(err, errlen, "registry: out of memory");
        return REGISTRY_ERR_NOMEM;
    }
    *list = events;
    *count = (size_t)n;
    return REGISTRY_OK;
}

registry_status reg_pg_put_job_resume(registry_pg *p, int64_t id, const uint8_t *data,
                                      size_t len, char *err, size_t errlen)
{
    if (len > INT32_MAX) {
        util_set_err(err, errlen, "resume state of %zu bytes is too large", len);
        return REGISTRY_ERR_ARG;
    }
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    reg_pg_bytes(&ps, data, len);
    pthread_mutex_lock(&p->mu);
    int status = reg_pg_ensure(p, err, errlen);
    if (!status)
        status = reg_pg_exec(p,
                             "INSERT INTO job_resume (job_id, data) VALUES ($1, $2) "
                             "ON CONFLICT (job_id) DO UPDATE SET data = excluded.data",
                             &ps, err, errlen, "storing a job's resume state");
    pthread_mutex_unlock(&p->mu);
    return status;
}

registry_status reg_pg_get_job_resume(registry_pg *p, int64_t id, uint8_t **data, size_t *len,
                                      char *err, size_t errlen)
{
    *data = NULL;
    *len = 0;
    reg_pg_params ps = {0};
    reg_pg_int(&ps, id);
    PGresult *res = NULL;
    int status = reg_pg_query_locked(p, "SELECT data FROM job_resume WHERE job_id = $1", &ps, 1,
                                     &res, err, errlen, "reading a job's resume state");
    if (status)
        return status;
    if (PQntuples(res) != 1) {
        PQclear(res);
        util_set_err(err, errlen, "job %" PRId64 " has no resume state", id);
        return REGISTRY_ERR_NOT_FOUND;
    }
    size_t n = (size_t)PQgetlength(res, 0, 0);
    uint8_t *copy = malloc(n ? n : 1); /* owned by the caller via *data */
    if (copy)
        memcpy(copy, PQgetvalue(res, 0, 0), n);
    PQclear(res);
    if (!copy) {
        util_set_err(err, errlen, "registry: out of memory");
        return REGISTRY_ERR_NOMEM;
    }
    *data = copy;
    *len = n;
    return REGISTRY_OK;
}
