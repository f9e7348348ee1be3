/* jobs_pool: worker threads that run training jobs queued in the registry.
 * See jobs_pool.h.
 *
 * One file: the job directories, the events, what a worker does with a job
 * (run_job: a train_run and its events) and the workers. The runner shares
 * the pool's lock, slots and stop mode, and now that the JSON is jobs_record's
 * and the training train_run's it is short; apart, it would need the pool's
 * insides in a private header.
 *
 * Locks: the pool mutex guards the worker slots (which job each runs, its
 * cancel flag) and the stop state; it is taken before the registry's own
 * lock (claiming a job, cancelling a queued one, waiting for events) and
 * never the other way round, so the two cannot deadlock. A job is claimed and
 * a queued job cancelled under the pool mutex, so a cancel never misses a job
 * that is just starting.
 */
#include "server/jobs_pool.h"

#include "engine/file_io.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "engine/util.h"
#include "server/data_sets.h"
#include "engine/checkpoint.h"
#include "server/jobs_ranks.h"
#include "server/jobs_record.h"
#include "server/jobs_spec.h"
#include "server/metrics.h"
#include "server/train_run.h"

typedef struct {
    int64_t job_id;      /* 0 while idle */
    atomic_int cancel;   /* read by the trainer before every step, set under mu */
    int user_cancel;     /* the cancel came from jobs_pool_cancel */
    int finishing;       /* registering its model: a cancel is too late (409) */
} worker_slot;

typedef struct {
    struct jobs_pool *pool;
    int index;
} worker_arg;

struct jobs_pool {
    registry *reg;                  /* borrowed */
    char data_dir[PATH_MAX - 64]; /* room for /jobs/ID/resume.safetensors */
    char data_root[PATH_MAX];
    /* realpath of each at start ("" when it did not resolve then), for
     * jobs_pool_hide_paths: GET /jobs runs it on every job it lists */
    char data_dir_real[PATH_MAX], data_root_real[PATH_MAX];
    size_t mem_limit;
    double progress_interval_s;
    int nice;
    void (*on_event)(void *ctx, const jobs_event *e);
    void *on_event_ctx;
    int confine_data;
    int max_queued;
    char mpi_hostfile[PATH_MAX];    /* "" = none: jobs of ranks > 1 refused */
    char vaed_path[PATH_MAX];

    /* mu is never held across registry I/O: a cancel, a submission or an
     * announcement would wait behind a locked database file. What the lock
     * used to exclude by being held, claiming and cancelling exclude as
     * counts: a cancel of a job no worker runs writes the registry while no
     * claim can start (cancelling > 0) and none is under way (claiming == 0),
     * so the job cannot start running between its check and its write. */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;         /* a job was queued, or the pool is stopping */
    pthread_cond_t events_cv;       /* an event was stored */
    pthread_cond_t gate_cv;         /* claiming or cancelling went down, or stopping */
    int claiming;                   /* workers in registry_claim_next_job */
    int cancelling;                 /* cancels between their check and their write */
    uint64_t submitted;             /* jobs inserted here: a claim that found none waits for more */
    pthread_mutex_t submit_mu;      /* --max-queued-jobs: a count and its insert, one at a time */
    int stopping;
    jobs_pool_stop_mode stop_mode;
    int joined;
    int n_workers;
    pthread_t *threads;             /* owned; n_workers */
    worker_arg *args;               /* owned; n_workers */
    worker_slot *slots;             /* owned; n_workers */
};

static jobs_pool_status from_registry(int rc)
{
    switch (rc) {
    case REGISTRY_OK: return JOBS_POOL_OK;
    case REGISTRY_ERR_NOT_FOUND: return JOBS_POOL_ERR_NOT_FOUND;
    case REGISTRY_ERR_CONFLICT: return JOBS_POOL_ERR_CONFLICT;
    case REGISTRY_ERR_ARG: return JOBS_POOL_ERR_INVALID;
    case REGISTRY_ERR_NOMEM: return JOBS_POOL_ERR_NOMEM;
    case REGISTRY_ERR_UNAVAILABLE: return JOBS_POOL_ERR_UNAVAILABLE;
    default: return JOBS_POOL_ERR_DB;
    }
}

/* ---------- files ---------- */

static void job_dir(const jobs_pool *p, int64_t id, char *out, size_t size)
{
    snprintf(out, size, "%s/jobs/%" PRId64, p->data_dir, id);
}

static void resume_path(const jobs_pool *p, int64_t id, char *out, size_t size)
{
    snprintf(out, size, "%s/jobs/%" PRId64 "/resume.safetensors", p->data_dir, id);
}

/* Removes DATA_DIR/jobs/ID and what is in it (the resume file, and a
 * temporary file a crash may have left beside it). */
static void remove_job_dir(const jobs_pool *p, int64_t id)
{
    char dir[PATH_MAX], path[PATH_MAX + 260];
    job_dir(p, id, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ---------- events ---------- */

/* Wakes event waiters, then tells the observer (outside the lock, so it may
 * call jobs_pool_stop or jobs_pool_cancel). */
static void announce(jobs_pool *p, const jobs_event *e)
{
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->events_cv);
    pthread_mutex_unlock(&p->mu);
    if (p->on_event) p->on_event(p->on_event_ctx, e);
}

static void announce_state(jobs_pool *p, int64_t id, jobs_state state)
{
    jobs_event e = {.job_id = id, .type = JOBS_EVENT_STATE, .state = state, .images_per_s = NAN};
    announce(p, &e);
}

/* A progress or epoch event: where pr says the trainer stands. */
static void announce_progress(jobs_pool *p, int64_t id, jobs_event_type type,
                              const trainer_progress *pr)
{
    jobs_event e = {.job_id = id, .type = type, .state = JOBS_STATE_RUNNING, .epoch = pr->epoch,
                    .epochs = pr->epochs, .images_per_s = pr->images_per_s};
    if (type == JOBS_EVENT_PROGRESS) {
        e.step = pr->step;
        e.steps = pr->steps;
    }
    announce(p, &e);
}

/* A state transition with its event; logs when it fails (a worker has no
 * one else to tell). */
static int transition(jobs_pool *p, int64_t id, jobs_state to, const char *note)
{
    char err[512];
    int rc = registry_set_job_state(p->reg, id, to, note, err, sizeof err);
    if (rc) {
        fprintf(stderr, "vaed: job %" PRId64 ": %s\n", id, err);
        return rc;
    }
    announce_state(p, id, to);
    return 0;
}

/* ---------- one job ---------- */

typedef struct {
    jobs_pool *pool;
    worker_slot *slot;
    int64_t id;
    jobs_spec spec;
    train_run *run;                /* owned */
    trainer_progress last;         /* the newest progress */
    double last_report;            /* util_mono_s() of the last progress event */
    char err[512];
} job_run;

/* After every step: a progress event at most every progress_interval_s. */
static void on_progress(void *ctx, const trainer_progress *pr)
{
    job_run *j = ctx;
    j->last = *pr;
    double now = util_mono_s();
    if (now - j->last_report < j->pool->progress_interval_s) return;
    j->last_report = now;
    char *pj = jobs_record_progress_json(pr); /* owned: freed below */
    if (!pj) return;
    char err[256];
    if (registry_set_job_progress(j->pool->reg, j->id, pj, NULL, JOBS_EVENT_PROGRESS, pj, NULL,
                                  err, sizeof err) == REGISTRY_OK)
        announce_progress(j->pool, j->id, JOBS_EVENT_PROGRESS, pr);
    free(pj);
}

/* A shared registry's replicas share no disk: the resume file just written
 * goes to the database too, for whichever replica runs the job next. */
static void share_resume(jobs_pool *p, int64_t id)
{
    if (!registry_is_shared(p->reg)) return;
    char path[PATH_MAX], err[256];
    resume_path(p, id, path, sizeof path);
    uint8_t *bytes = NULL; /* owned: freed below */
    size_t len = 0;
    if (file_io_read_all(path, (size_t)1 << 30, &bytes, &len, err, sizeof err) != VAE_OK ||
        registry_put_job_resume(p->reg, id, bytes, len, err, sizeof err) != REGISTRY_OK)
        fprintf(stderr, "vaed: job %" PRId64 ": resume state not shared: %s\n", id, err);
    free(bytes);
}

/* The resume state another replica shared, as this replica's resume file
 * (when there is none here). */
static void fetch_resume(jobs_pool *p, int64_t id, const char *path)
{
    if (!registry_is_shared(p->reg) || access(path, F_OK) == 0) return;
    uint8_t *bytes = NULL; /* owned: freed below */
    size_t len = 0;
    char err[256];
    int rc = registry_get_job_resume(p->reg, id, &bytes, &len, err, sizeof err);
    if (rc == REGISTRY_OK && file_io_write_atomic(path, bytes, len, err, sizeof err) != VAE_OK)
        rc = REGISTRY_ERR_DB;
    if (rc != REGISTRY_OK && rc != REGISTRY_ERR_NOT_FOUND)
        fprintf(stderr, "vaed: job %" PRId64 ": no shared resume state: %s\n", id, err);
    free(bytes);
}

/* After every epoch (its resume file written): the job's progress and
 * metrics, and an epoch event. */
static void on_epoch(void *ctx, const trainer_epoch_metrics *ms, int n)
{
    job_run *j = ctx;
    jobs_pool *p = j->pool;
    j->last.step = j->last.steps;
    char *pj = jobs_record_progress_json(&j->last); /* owned */
    char *jm = jobs_record_epochs_json(ms, n);       /* owned */
    char *ej = jobs_record_epoch_json(&ms[n - 1]);   /* owned */
    char err[256];
    if (pj && jm && ej &&
        registry_set_job_progress(p->reg, j->id, pj, jm, JOBS_EVENT_EPOCH, ej, NULL, err,
                                  sizeof err) == REGISTRY_OK) {
        trainer_progress done = j->last;
        done.epoch = ms[n - 1].epoch;
        done.images_per_s = ms[n - 1].images_per_s;
        announce_progress(p, j->id, JOBS_EVENT_EPOCH, &done);
    }
    free(pj);
    free(jm);
    free(ej);
    share_resume(p, j->id);
}

/* After a cancelled epoch: a user's cancel, or the pool stopping. */
static void stop_job(job_run *j)
{
    jobs_pool *p = j->pool;
    pthread_mutex_lock(&p->mu);
    int user = j->slot->user_cancel;
    jobs_pool_stop_mode mode = p->stop_mode;
    pthread_mutex_unlock(&p->mu);
    if (user) {
        if (transition(p, j->id, JOBS_STATE_CANCELLED, NULL) == 0) remove_job_dir(p, j->id);
        return;
    }
    if (mode == JOBS_POOL_STOP_ABANDON) return; /* as if the process died here */
    /* ranks (no run here) kept their position themselves */
    if (j->run && train_run_save_resume(j->run, j->err, sizeof j->err))
        fprintf(stderr, "vaed: job %" PRId64 ": %s; it resumes from its last epoch\n", j->id,
                j->err);
    transition(p, j->id, JOBS_STATE_QUEUED, "interrupted");
}

/* Before any worker starts: the temporary files a crash left beside the
 * jobs' resume files (DATA_DIR/jobs/ID/), which would otherwise stay for
 * ever. */
static void remove_stale_temps(const jobs_pool *p)
{
    char jobs[PATH_MAX];
    snprintf(jobs, sizeof jobs, "%s/jobs", p->data_dir);
    DIR *d = opendir(jobs);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[PATH_MAX], why[256];
        int removed = 0;
        if (snprintf(dir, sizeof dir, "%s/%s", jobs, e->d_name) >= (int)sizeof dir) continue;
        if (file_io_remove_stale_temps(dir, &removed, why, sizeof why))
            fprintf(stderr, "vaed: %s\n", why);
        if (removed)
            fprintf(stderr, "vaed: removed %d temporary file(s) a crash left in %s\n", removed,
                    dir);
    }
    closedir(d);
}

/* dir as data_sets_strip_dir strips it, its realpath taken once at start
 * when it resolved then. */
static void hide_dir(char *text, const char *dir, const char *real)
{
    if (*real)
        data_sets_strip_dir_as(text, dir, real);
    else
        data_sets_strip_dir(text, dir);
}

void jobs_pool_hide_paths(const jobs_pool *p, char *text)
{
    hide_dir(text, p->data_root, p->data_root_real);
    hide_dir(text, p->data_dir, p->data_dir_real);
}

static void fail_job(job_run *j)
{
    jobs_pool_hide_paths(j->pool, j->err);
    if (transition(j->pool, j->id, JOBS_STATE_FAILED, j->err) == 0) remove_job_dir(j->pool, j->id);
}

/* A resumed job's metrics: the epochs its resume file restored. */
static void on_resumed(void *ctx, const trainer_epoch_metrics *ms, int n)
{
    job_run *j = ctx;
    char *jm = jobs_record_epochs_json(ms, n); /* owned: freed below */
    if (jm)
        registry_set_job_progress(j->pool->reg, j->id, NULL, jm, JOBS_EVENT_EPOCH, NULL, NULL,
                                  NULL, 0);
    free(jm);
}

/* 1 when the job was cancelled by its user after its last step; else it is
 * finishing from here, and a cancel is refused. */
static int cancelled_at_the_end(job_run *j)
{
    jobs_pool *p = j->pool;
    pthread_mutex_lock(&p->mu);
    int cancelled = j->slot->user_cancel;
    j->slot->finishing = !cancelled;
    pthread_mutex_unlock(&p->mu);
    return cancelled;
}

/* The checkpoint the ranks wrote at path becomes the job's result, with
 * the per-epoch records of history (n epochs). */
static int register_file(job_run *j, const char *path, const trainer_epoch_metrics *history,
                         int n)
{
    uint8_t *blob = NULL;  /* owned: freed below */
    char *metrics = NULL;  /* owned: freed below */
    char *records = NULL;  /* owned: freed below */
    size_t len = 0;
    vae_model m = {0};
    char cfg_json[4096], err[384];
    int rc = -1;
    if (file_io_read_all(path, SIZE_MAX, &blob, &len, err, sizeof err) ||
        ckpt_load_mem(&m, blob, len, &metrics, err, sizeof err)) {
        util_set_err(j->err, sizeof j->err, "the ranks' checkpoint: %s", err);
    } else if (ckpt_config_to_json(&m.cfg, cfg_json, sizeof cfg_json) < 0 ||
               !(records = jobs_record_epochs_json(history, n))) {
        util_set_err(j->err, sizeof j->err, "out of memory registering the model");
    } else if (registry_succeed_job(j->pool->reg, j->id, j->spec.model, blob, len, cfg_json,
                                    metrics, records, NULL, err, sizeof err)) {
        util_set_err(j->err, sizeof j->err, "registering the model: %s", err);
    } else {
        rc = 0;
    }
    vae_free(&m);
    free(blob);
    free(metrics);
    free(records);
    return rc;
}

/* A job of "ranks" N > 1: `vaed train` as N ranks under mpirun on the
 * hostfile's hosts (jobs_ranks.h), its events through the callbacks a
 * train_run calls here; rank 0 keeps the resume file and writes the
 * checkpoint, which is registered here as a local job's is. */
static void run_ranks(job_run *j, const char *config_json)
{
    jobs_pool *p = j->pool;
    char dir[PATH_MAX], resume[PATH_MAX], spec[PATH_MAX + 16], out[PATH_MAX + 24],
        log[PATH_MAX + 16];
    job_dir(p, j->id, dir, sizeof dir);
    resume_path(p, j->id, resume, sizeof resume);
    snprintf(spec, sizeof spec, "%s/spec.json", dir);
    snprintf(out, sizeof out, "%s/result.safetensors", dir);
    snprintf(log, sizeof log, "%s/ranks.log", dir);
    trainer_epoch_metrics *history = NULL; /* owned: freed below */
    int n = 0;
    if (file_io_write_atomic(spec, (const uint8_t *)config_json, strlen(config_json), j->err,
                             sizeof j->err)) {
        fail_job(j);
        return;
    }
    jobs_ranks_options o = {.hostfile = p->mpi_hostfile, .ranks = j->spec.ranks,
                            .vaed = p->vaed_path, .spec_path = spec, .data_root = p->data_root,
                            .resume_path = resume, .out_path = out, .log_path = log,
                            .on_progress = on_progress, .on_epoch = on_epoch,
                            .on_resumed = on_resumed, .ctx = j, .cancel = &j->slot->cancel};
    jobs_ranks_status st = jobs_ranks_run(&o, &history, &n, j->err, sizeof j->err);
    if (st == JOBS_RANKS_CANCELLED || (st == JOBS_RANKS_OK && cancelled_at_the_end(j)))
        stop_job(j);
    else if (st || register_file(j, out, history, n))
        fail_job(j);
    else {
        announce_state(p, j->id, JOBS_STATE_SUCCEEDED);
        remove_job_dir(p, j->id);
    }
    free(history);
}

/* The job's spec through the training pipeline (train_run), with events;
 * its state in DATA_DIR/jobs/ID/resume.safetensors, keyed to the spec. */
static void run_job(jobs_pool *p, worker_slot *slot, int64_t id, const char *config_json)
{
    job_run *j = calloc(1, sizeof *j); /* owned: freed at end */
    if (!j) {
        char err[64] = "out of memory starting the job";
        if (registry_set_job_state(p->reg, id, JOBS_STATE_FAILED, err, err, sizeof err) == 0)
            announce_state(p, id, JOBS_STATE_FAILED);
        return;
    }
    j->pool = p;
    j->slot = slot;
    j->id = id;
    j->last_report = util_mono_s();
    char dir[PATH_MAX], path[PATH_MAX];
    job_dir(p, id, dir, sizeof dir);
    resume_path(p, id, path, sizeof path);
    if ((p->confine_data ? jobs_spec_parse_confined
                         : jobs_spec_parse)(config_json, strlen(config_json), p->data_root,
                                           &j->spec, j->err, sizeof j->err) ||
        file_io_make_dirs(dir, j->err, sizeof j->err)) {
        fail_job(j);
        goto end;
    }
    fetch_resume(p, id, path);
    if (j->spec.ranks > 1) {
        run_ranks(j, config_json);
        goto end;
    }
    train_run_options o;
    train_run_options_default(&o);
    trainer_meta meta = {"job_config", config_json};
    o.data = j->spec.data;
    o.data_root = p->data_root;
    o.klass = j->spec.klass;
    o.limit = j->spec.limit;
    o.cfg = j->spec.cfg;
    o.conditional = j->spec.conditional;
    o.resume_path = path;
    o.meta = &meta;
    o.n_meta = 1;
    o.on_progress = on_progress;
    o.on_epoch = on_epoch;
    o.ctx = j;
    o.cancel = &slot->cancel;
    if (train_run_new(&o, &j->run, j->err, sizeof j->err)) {
        fail_job(j);
        goto end;
    }
    if (train_run_get_info(j->run)->resumed) {
        int n;
        const trainer_epoch_metrics *ms = train_run_history(j->run, &n);
        on_resumed(j, ms, n);
    }
    train_run_status st = train_run_epochs(j->run, j->err, sizeof j->err);
    if (st == TRAIN_RUN_ERR_CANCELLED) {
        stop_job(j);
        goto end;
    }
    if (!st) {
        train_run_evaluate(j->run);
        /* A cancel that came after the last step (while the trainer no longer
         * looked) was answered as accepted: the job ends cancelled. From
         * here the model is committed, and a cancel is refused instead. */
        if (cancelled_at_the_end(j)) {
            stop_job(j);
            goto end;
        }
        char err[384];
        st = train_run_register(j->run, p->reg, j->spec.model, id, NULL, err, sizeof err);
        if (st == TRAIN_RUN_ERR_REGISTRY)
            util_set_err(j->err, sizeof j->err, "registering the model: %s", err);
        else if (st)
            util_set_err(j->err, sizeof j->err, "%s", err);
    }
    if (st) {
        fail_job(j);
        goto end;
    }
    announce_state(p, id, JOBS_STATE_SUCCEEDED);
    remove_job_dir(p, id);
end:
    train_run_free(j->run);
    free(j);
}

/* ---------- workers ---------- */

/* CLOCK_MONOTONIC now + ms, for the pool's condition variables. */
static struct timespec mono_after_ms(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void *worker_main(void *arg)
{
    worker_arg *a = arg;
    jobs_pool *p = a->pool;
    worker_slot *slot = &p->slots[a->index];
    if (p->nice > 0) {
        /* On Linux a thread id names one thread: only this worker is lowered. */
        id_t tid = (id_t)gettid();
        errno = 0;
        int cur = getpriority(PRIO_PROCESS, tid);
        if (errno == 0) setpriority(PRIO_PROCESS, tid, cur + p->nice);
    }
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        int64_t id = 0;
        char *config = NULL; /* owned: freed after the job */
        char err[256];
        while (p->cancelling && !p->stopping)
            pthread_cond_wait(&p->gate_cv, &p->mu);
        if (p->stopping)
            break;
        /* read before the claim: a job queued after it moves these */
        uint64_t queued = registry_jobs_generation(p->reg);
        uint64_t submitted = p->submitted;
        p->claiming++;
        pthread_mutex_unlock(&p->mu);
        int rc = registry_claim_next_job(p->reg, &id, &config, err, sizeof err);
        pthread_mutex_lock(&p->mu);
        p->claiming--;
        if (rc == REGISTRY_OK) {
            slot->job_id = id; /* before a cancel, woken below, looks at the slots */
            slot->cancel = 0;
            slot->user_cancel = 0;
            slot->finishing = 0;
        }
        pthread_cond_broadcast(&p->gate_cv);
        if (rc == REGISTRY_ERR_NOT_FOUND) {
            if (!registry_is_shared(p->reg)) {
                while (!p->stopping && submitted == p->submitted)
                    pthread_cond_wait(&p->work_cv, &p->mu);
                continue;
            }
            /* Other replicas queue jobs too: look again as soon as one is
             * announced, and every second (a dead replica's lease runs out
             * without a word). */
            for (int i = 0; i < 10 && !p->stopping && queued == registry_jobs_generation(p->reg);
                 i++) {
                struct timespec ts = mono_after_ms(100);
                if (pthread_cond_timedwait(&p->work_cv, &p->mu, &ts) == 0) break;
            }
            continue;
        }
        if (rc) {
            /* the database is busy or failing: try again in a while */
            fprintf(stderr, "vaed: job queue: %s\n", err);
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&p->work_cv, &p->mu, &ts);
            continue;
        }
        if (registry_is_shared(p->reg))
            fprintf(stderr, "vaed: job %" PRId64 " runs on this replica\n", id);
        pthread_mutex_unlock(&p->mu);
        announce_state(p, id, JOBS_STATE_RUNNING);
        run_job(p, slot, id, config);
        free(config);
        pthread_mutex_lock(&p->mu);
        slot->job_id = 0;
        slot->cancel = 0;
        slot->user_cancel = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

void jobs_pool_options_default(jobs_pool_options *o)
{
    memset(o, 0, sizeof *o);
    o->workers = 1;
    o->progress_interval_s = 1.0;
    o->nice = 10;
}

jobs_pool_status jobs_pool_new(registry *reg, const jobs_pool_options *o, jobs_pool **out,
                               char *err, size_t errlen)
{
    *out = NULL;
    if (!reg || !o || !o->data_dir || !*o->data_dir || o->workers < 0 || o->workers > 256) {
        util_set_err(err, errlen, "job pool: a registry, a data dir and 0..256 workers are needed");
        return JOBS_POOL_ERR_INVALID;
    }
    const char *root = o->data_root ? o->data_root : data_sets_root();
    if (strlen(o->data_dir) >= PATH_MAX - 64 || strlen(root) >= PATH_MAX - 64) {
        util_set_err(err, errlen, "job pool: path too long");
        return JOBS_POOL_ERR_INVALID;
    }
    int requeued = 0;
    char rerr[256];
    int rc = registry_requeue_running_jobs(reg, &requeued, rerr, sizeof rerr);
    if (rc) {
        util_set_err(err, errlen, "job pool: %s", rerr);
        return from_registry(rc);
    }
    if (requeued)
        fprintf(stderr, "vaed: %d interrupted job%s queued to resume\n", requeued,
                requeued == 1 ? "" : "s");
    jobs_pool *p = calloc(1, sizeof *p); /* owned by the caller via *out */
    if (!p) goto nomem;
    p->reg = reg;
    snprintf(p->data_dir, sizeof p->data_dir, "%s", o->data_dir);
    snprintf(p->data_root, sizeof p->data_root, "%s", root);
    if (!realpath(p->data_dir, p->data_dir_real)) p->data_dir_real[0] = '\0';
    if (!realpath(p->data_root, p->data_root_real)) p->data_root_real[0] = '\0';
    p->mem_limit = o->job_mem_limit;
    p->progress_interval_s = o->progress_interval_s >= 0 ? o->progress_interval_s : 1.0;
    p->nice = o->nice;
    p->on_event = o->on_event;
    p->on_event_ctx = o->on_event_ctx;
    p->confine_data = o->confine_data;
    p->max_queued = o->max_queued;
    if (o->mpi_hostfile) snprintf(p->mpi_hostfile, sizeof p->mpi_hostfile, "%s", o->mpi_hostfile);
    if (o->vaed_path) {
        snprintf(p->vaed_path, sizeof p->vaed_path, "%s", o->vaed_path);
    } else {
        ssize_t n = readlink("/proc/self/exe", p->vaed_path, sizeof p->vaed_path - 1);
        p->vaed_path[n > 0 ? n : 0] = '\0';
    }
    remove_stale_temps(p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->submit_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work_cv, &ca);
    pthread_cond_init(&p->events_cv, &ca);
    pthread_cond_init(&p->gate_cv, &ca);
    pthread_condattr_destroy(&ca);
    int n = o->workers;
    if (n > 0) {
        p->threads = calloc((size_t)n, sizeof *p->threads);
        p->args = calloc((size_t)n, sizeof *p->args);
        p->slots = calloc((size_t)n, sizeof *p->slots);
        if (!p->threads || !p->args || !p->slots) {
            jobs_pool_free(p);
            goto nomem;
        }
    }
    for (int i = 0; i < n; i++) {
        p->args[i] = (worker_arg){.pool = p, .index = i};
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) {
            util_set_err(err, errlen, "job pool: cannot start worker %d", i + 1);
            jobs_pool_free(p);
            return JOBS_POOL_ERR_NOMEM;
        }
        p->n_workers++;
    }
    *out = p;
    return JOBS_POOL_OK;
nomem:
    util_set_err(err, errlen, "job pool: out of memory");
    return JOBS_POOL_ERR_NOMEM;
}

void jobs_pool_stop(jobs_pool *p, jobs_pool_stop_mode mode)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    if (!p->stopping) {
        p->stopping = 1;
        p->stop_mode = mode;
        for (int i = 0; i < p->n_workers; i++)
            if (p->slots[i].job_id) p->slots[i].cancel = 1;
    }
    pthread_cond_broadcast(&p->work_cv);
    pthread_cond_broadcast(&p->events_cv);
    pthread_cond_broadcast(&p->gate_cv);
    pthread_mutex_unlock(&p->mu);
}

void jobs_pool_shutdown(jobs_pool *p, jobs_pool_stop_mode mode)
{
    if (!p) return;
    jobs_pool_stop(p, mode);
    pthread_mutex_lock(&p->mu);
    int join = !p->joined;
    p->joined = 1;
    pthread_mutex_unlock(&p->mu);
    if (!join) return;
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
}

void jobs_pool_free(jobs_pool *p)
{
    if (!p) return;
    jobs_pool_shutdown(p, JOBS_POOL_STOP_CHECKPOINT);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->events_cv);
    pthread_cond_destroy(&p->gate_cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->submit_mu);
    free(p->threads);
    free(p->args);
    free(p->slots);
    free(p);
}

/* ---------- requests ---------- */

jobs_pool_status jobs_pool_submit(jobs_pool *p, const char *json, size_t len, int64_t *id,
                                  char *err, size_t errlen)
{
    *id = 0;
    pthread_mutex_lock(&p->mu);
    int stopping = p->stopping;
    pthread_mutex_unlock(&p->mu);
    if (stopping) {
        util_set_err(err, errlen, "the server is shutting down; no new jobs");
        return JOBS_POOL_ERR_STOPPING;
    }
    jobs_spec *s = malloc(sizeof *s); /* owned: freed below (PATH_MAX is big for a stack) */
    if (!s) {
        util_set_err(err, errlen, "out of memory");
        return JOBS_POOL_ERR_NOMEM;
    }
    jobs_pool_status status = JOBS_POOL_OK;
    char *canonical = NULL; /* owned: freed below */
    if ((p->confine_data ? jobs_spec_parse_confined : jobs_spec_parse)(json, len, p->data_root,
                                                                      s, err, errlen)) {
        status = JOBS_POOL_ERR_INVALID;
        goto end;
    }
    if (s->ranks > 1 && !p->mpi_hostfile[0]) {
        util_set_err(err, errlen,
                     "\"ranks\": %d needs a daemon started with --mpi-hostfile FILE (the hosts "
                     "mpirun runs the ranks on); this one has none",
                     s->ranks);
        status = JOBS_POOL_ERR_INVALID;
        goto end;
    }
    if (p->mem_limit && s->mem_bytes > p->mem_limit) {
        util_set_err(err, errlen,
                     "the job needs an estimated %zu MiB (parameters, gradients, Adam state, "
                     "activations and %d+%d images as floats); the limit (--job-mem-mb) is %zu MiB",
                     (s->mem_bytes + (1u << 20) - 1) >> 20, s->n_used, s->n_test,
                     p->mem_limit >> 20);
        metrics_count_refusal(METRICS_LIMIT_JOB_MEMORY);
        status = JOBS_POOL_ERR_INVALID;
        goto end;
    }
    if (!(canonical = jobs_spec_to_json(s))) {
        util_set_err(err, errlen, "out of memory");
        status = JOBS_POOL_ERR_NOMEM;
        goto end;
    }
    pthread_mutex_lock(&p->mu);
    int stopped = p->stopping;
    pthread_mutex_unlock(&p->mu);
    if (stopped) {
        util_set_err(err, errlen, "the server is shutting down; no new jobs");
        status = JOBS_POOL_ERR_STOPPING;
        goto end;
    }
    /* Only submissions wait here (on the registry's I/O threads): workers,
     * cancels and events take mu, never this. */
    pthread_mutex_lock(&p->submit_mu);
    int64_t counts[JOBS_STATE_COUNT];
    if (p->max_queued && registry_count_jobs(p->reg, counts, err, errlen) == REGISTRY_OK &&
        counts[JOBS_STATE_QUEUED] >= p->max_queued) {
        pthread_mutex_unlock(&p->submit_mu);
        util_set_err(err, errlen,
                     "%lld jobs are queued already, as many as the server keeps waiting "
                     "(--max-queued-jobs): submit again when some have run",
                     (long long)counts[JOBS_STATE_QUEUED]);
        metrics_count_refusal(METRICS_LIMIT_QUEUED_JOBS);
        status = JOBS_POOL_ERR_FULL;
        goto end;
    }
    int rc = registry_insert_job(p->reg, canonical, id, err, errlen);
    pthread_mutex_unlock(&p->submit_mu);
    if (rc == REGISTRY_OK) {
        pthread_mutex_lock(&p->mu);
        p->submitted++;
        pthread_cond_signal(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
    }
    status = from_registry(rc);
    if (rc == REGISTRY_OK) announce_state(p, *id, JOBS_STATE_QUEUED);
end:
    if (status != JOBS_POOL_OK) jobs_pool_hide_paths(p, err);
    free(canonical);
    free(s);
    return status;
}

/* The slot running job id, or -1; under mu. */
static int slot_of(const jobs_pool *p, int64_t id)
{
    for (int i = 0; i < p->n_workers; i++)
        if (p->slots[i].job_id == id) return i;
    return -1;
}

/* Ends a cancel's hold on claims (see struct jobs_pool); under mu. */
static void cancel_done(jobs_pool *p)
{
    p->cancelling--;
    pthread_cond_broadcast(&p->gate_cv);
}

jobs_pool_status jobs_pool_cancel(jobs_pool *p, int64_t id, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    p->cancelling++; /* no claim starts from here */
    while (p->claiming) pthread_cond_wait(&p->gate_cv, &p->mu);
    int was_running = slot_of(p, id) >= 0;
    pthread_mutex_unlock(&p->mu);
    /* Its worker may have finished it and not yet let go of it: the state,
     * read without mu (a worker ends a job without it anyway). */
    jobs_state state = JOBS_STATE_RUNNING;
    int64_t seq;
    int final = was_running &&
                registry_get_job_last_seq(p->reg, id, &seq, &state, NULL, 0) == REGISTRY_OK &&
                jobs_state_is_final(state);
    pthread_mutex_lock(&p->mu);
    int i = slot_of(p, id);
    if (i >= 0) {
        int finishing = p->slots[i].finishing;
        if (!final && !finishing) {
            p->slots[i].user_cancel = 1;
            p->slots[i].cancel = 1;
        }
        cancel_done(p);
        pthread_mutex_unlock(&p->mu);
        if (final)
            util_set_err(err, errlen, "job %" PRId64 " is %s; it cannot become cancelled", id,
                         jobs_state_name(state));
        else if (finishing)
            util_set_err(err, errlen,
                         "job %" PRId64 " has finished training and is registering its "
                         "model; it can no longer be cancelled",
                         id);
        return final || finishing ? JOBS_POOL_ERR_CONFLICT : JOBS_POOL_OK;
    }
    pthread_mutex_unlock(&p->mu);
    /* Not running here, and no worker can claim it while cancelling > 0; a
     * job whose worker let go of it meanwhile is final (the write's 409). */
    int rc = registry_set_job_state(p->reg, id, JOBS_STATE_CANCELLED, NULL, err, errlen);
    pthread_mutex_lock(&p->mu);
    cancel_done(p);
    pthread_mutex_unlock(&p->mu);
    if (rc) return from_registry(rc);
    remove_job_dir(p, id); /* an interrupted job's mid-epoch state */
    announce_state(p, id, JOBS_STATE_CANCELLED);
    return JOBS_POOL_OK;
}

jobs_pool_status jobs_pool_get_job(jobs_pool *p, int64_t id, registry_job *out, char *err,
                                   size_t errlen)
{
    return from_registry(registry_get_job(p->reg, id, out, err, errlen));
}

jobs_pool_status jobs_pool_list_jobs(jobs_pool *p, const jobs_state *only, int64_t after_id,
                                     int limit, registry_job **list, size_t *count, char *err,
                                     size_t errlen)
{
    return from_registry(
        registry_list_jobs(p->reg, only, after_id, limit, list, count, err, errlen));
}

jobs_pool_status jobs_pool_prune(jobs_pool *p, double max_age_s, int64_t *deleted, char *err,
                                 size_t errlen)
{
    time_t cutoff = time(NULL) - (time_t)max_age_s;
    struct tm tm;
    char iso[32];
    gmtime_r(&cutoff, &tm);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return from_registry(registry_prune_jobs(p->reg, iso, deleted, err, errlen));
}

jobs_pool_status jobs_pool_count_jobs(jobs_pool *p, int64_t counts[JOBS_STATE_COUNT], char *err,
                                      size_t errlen)
{
    return from_registry(registry_count_jobs(p->reg, counts, err, errlen));
}

int jobs_pool_wait_events(jobs_pool *p, int64_t id, int64_t after_seq, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (timeout_ms < 0) timeout_ms = 0;
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int result = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        /* Checked under the pool lock: an event stored after this check is
         * announced only once we wait, so its wake-up is not lost. */
        int64_t seq = 0;
        int rc = registry_get_job_last_seq(p->reg, id, &seq, NULL, NULL, 0);
        if (rc == REGISTRY_ERR_NOT_FOUND) {
            result = -1;
            break;
        }
        if (rc == REGISTRY_OK && seq > after_seq) {
            result = 1;
            break;
        }
        if (p->stopping) break;
        /* A shared registry's events may come from another replica, which
         * signals no one here: wake at least every 250 ms to look. */
        struct timespec until = deadline;
        if (registry_is_shared(p->reg)) {
            struct timespec soon = mono_after_ms(250);
            if (soon.tv_sec < until.tv_sec ||
                (soon.tv_sec == until.tv_sec && soon.tv_nsec < until.tv_nsec))
                until = soon;
        }
        if (pthread_cond_timedwait(&p->events_cv, &p->mu, &until) == ETIMEDOUT) {
            if (until.tv_sec != deadline.tv_sec || until.tv_nsec != deadline.tv_nsec)
                continue; /* only a look, not the deadline */
            rc = registry_get_job_last_seq(p->reg, id, &seq, NULL, NULL, 0);
            result = rc == REGISTRY_OK && seq > after_seq ? 1 : 0;
            break;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return result;
}

jobs_pool_status jobs_pool_events_after(jobs_pool *p, int64_t id, int64_t after_seq, int max,
                                        registry_job_event **list, size_t *count, char *err,
                                        size_t errlen)
{
    int64_t seq;
    int rc = registry_get_job_last_seq(p->reg, id, &seq, NULL, err, errlen);
    if (rc == REGISTRY_OK)
        rc = registry_list_job_events(p->reg, id, after_seq, max, list, count, err, errlen);
    else {
        *list = NULL;
        *count = 0;
    }
    return from_registry(rc);
}
