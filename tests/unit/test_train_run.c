/* Unit tests for server/train_run.c, the pipeline of `vaed train` and of
 * jobs, on a small IDX data set (300 images of 8x8 with labels) in a
 * mkdtemp() directory: a run to a file and to the registry, a run stopped
 * mid-epoch and resumed to the same bytes, resume files of other runs
 * refused, and what is left once the run is evaluated. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/registry.h"
#include "server/train_run.h"
#include "tests/lib/harness.h"

typedef struct {
    char dir[HARNESS_PATH_MAX];
    char images[HARNESS_PATH_MAX + 32];
    char bare[HARNESS_PATH_MAX + 32]; /* the same images, no labels beside */
} fixture;

static void put_be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

/* 300 8x8 images: blobs whose position depends on the label, plus noise. */
static int write_idx(const char *images, const char *labels)
{
    FILE *im = fopen(images, "wb"), *lb = labels ? fopen(labels, "wb") : NULL;
    if (!im || (labels && !lb)) return -1;
    put_be32(im, 0x803);
    put_be32(im, 300);
    put_be32(im, 8);
    put_be32(im, 8);
    if (lb) {
        put_be32(lb, 0x801);
        put_be32(lb, 300);
    }
    uint32_t x = 12345;
    for (int i = 0; i < 300; i++) {
        int k = i % 10;
        if (lb) fputc(k, lb);
        for (int p = 0; p < 64; p++) {
            x = x * 1103515245u + 12345u;
            int r = p / 8, c = p % 8, on = (r - k % 6) * (r - k % 6) + (c - k / 2) * (c - k / 2) < 5;
            fputc(on ? 200 + (int)(x >> 28) : (int)(x >> 27), im);
        }
    }
    fclose(im);
    if (lb) fclose(lb);
    return 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || harness_tmpdir(f->dir, sizeof f->dir)) return -1;
    char labels[HARNESS_PATH_MAX + 32];
    snprintf(f->images, sizeof f->images, "%s/d-images-idx3-ubyte", f->dir);
    snprintf(labels, sizeof labels, "%s/d-labels-idx1-ubyte", f->dir);
    snprintf(f->bare, sizeof f->bare, "%s/bare.idx", f->dir);
    if (write_idx(f->images, labels) || write_idx(f->bare, NULL)) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    harness_rm_rf(f->dir);
    free(f);
    return 0;
}

static void options(const fixture *f, train_run_options *o)
{
    train_run_options_default(o);
    o->data = f->images;
    o->cfg.n_hidden = 1;
    o->cfg.hidden[0] = 16;
    o->cfg.latent = 2;
    o->cfg.batch = 32;
    o->cfg.epochs = 3;
}

/* Reads a whole file; the caller frees. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *len = (size_t)n;
    return b;
}

/* The whole pipeline with o to path; the number of epoch callbacks in *epochs. */
typedef struct {
    int epochs;           /* on_epoch calls */
    int last_n_done;
    int stop_epoch, stop_step; /* set *cancel at this progress (0: never) */
    int stop_after_epoch;      /* set *cancel once this epoch is done (0: never) */
    atomic_int cancel;
} watcher;

static void on_progress(void *ctx, const trainer_progress *p)
{
    watcher *w = ctx;
    if (w->stop_epoch && p->epoch == w->stop_epoch && p->step == w->stop_step) w->cancel = 1;
}

static void on_epoch(void *ctx, const trainer_epoch_metrics *history, int n_done)
{
    watcher *w = ctx;
    assert_int_equal(history[n_done - 1].epoch, n_done);
    w->epochs++;
    w->last_n_done = n_done;
    if (w->stop_after_epoch == n_done) w->cancel = 1;
}

static void run_to_file(train_run_options *o, watcher *w, const char *path)
{
    o->on_progress = on_progress;
    o->on_epoch = on_epoch;
    o->ctx = w;
    o->cancel = &w->cancel;
    train_run *run = NULL;
    char err[512] = "";
    if (train_run_new(o, &run, err, sizeof err)) fail_msg("train_run_new: %s", err);
    assert_int_equal(train_run_epochs(run, err, sizeof err), TRAIN_RUN_OK);
    assert_non_null(train_run_evaluate(run));
    assert_int_equal(train_run_write_file(run, path, err, sizeof err), TRAIN_RUN_OK);
    train_run_free(run);
}

static void test_run_to_a_file_and_the_registry(void **state)
{
    fixture *f = *state;
    train_run_options o;
    options(f, &o);
    watcher w = {0};
    o.on_epoch = on_epoch;
    o.ctx = &w;
    train_run *run = NULL;
    char err[512] = "";
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_OK);
    const train_run_info *info = train_run_get_info(run);
    assert_int_equal(info->n_train, 300);
    assert_int_equal(info->n_test, 0); /* a path has no test split */
    assert_false(info->resumed);
    assert_int_equal(train_run_model(run)->cfg.height, 8); /* the data's shape */
    assert_int_equal(train_run_epochs(run, err, sizeof err), TRAIN_RUN_OK);
    assert_int_equal(w.epochs, 3);
    const eval_result *er = train_run_evaluate(run);
    assert_non_null(er);
    assert_int_equal(er->iwae_k, 64);
    assert_int_equal(er->iwae_n, 256); /* the training images' first 256 */
    char path[HARNESS_PATH_MAX + 32], db[HARNESS_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/m.safetensors", f->dir);
    assert_int_equal(train_run_write_file(run, path, err, sizeof err), TRAIN_RUN_OK);
    snprintf(db, sizeof db, "%s/registry.db", f->dir);
    registry *reg = NULL;
    assert_int_equal(registry_open(db, &reg, err, sizeof err), REGISTRY_OK);
    registry_checkpoint_info ci;
    assert_int_equal(train_run_register(run, reg, "digits", 0, &ci, err, sizeof err),
                     TRAIN_RUN_OK);
    assert_int_equal(ci.version, 1);
    assert_string_equal(ci.source, "train");
    /* the file and the registered version are the same bytes */
    size_t len = 0, blen = 0;
    uint8_t *file = slurp(path, &len), *blob = NULL;
    assert_non_null(file);
    assert_int_equal(registry_get_blob(reg, ci.sha256, &blob, &blen, err, sizeof err),
                     REGISTRY_OK);
    assert_int_equal(len, blen);
    assert_memory_equal(file, blob, len);
    free(file);
    free(blob);
    registry_checkpoint c;
    assert_int_equal(registry_get_checkpoint(reg, "digits", 1, &c, err, sizeof err), REGISTRY_OK);
    assert_non_null(strstr(c.metrics_json, "\"epochs\":3"));
    assert_non_null(strstr(c.metrics_json, "\"iwae_k\":64,\"iwae_images\":256"));
    registry_free_checkpoint(&c);
    /* a job id that is not a running job: the registry refuses, nothing stored */
    assert_int_equal(train_run_register(run, reg, "digits", 99, NULL, err, sizeof err),
                     TRAIN_RUN_ERR_REGISTRY);
    assert_int_equal(registry_count_checkpoints(reg), 1);
    registry_close(reg);
    train_run_free(run);
}

/* Runs o (resume_path set) stopped where w says, saves, runs it again to the
 * end into path; checks where it stopped (epochs done, next step). */
static void stop_and_resume(train_run_options *o, watcher *w, int epochs_done, int next_step,
                            const char *path)
{
    o->on_progress = on_progress;
    o->on_epoch = on_epoch;
    o->ctx = w;
    o->cancel = &w->cancel;
    train_run *run = NULL;
    char err[512] = "";
    assert_int_equal(train_run_new(o, &run, err, sizeof err), TRAIN_RUN_OK);
    assert_int_equal(train_run_epochs(run, err, sizeof err), TRAIN_RUN_ERR_CANCELLED);
    assert_int_equal(w->epochs, epochs_done);
    trainer_position at;
    train_run_get_position(run, &at);
    assert_int_equal(at.epochs_done, epochs_done);
    assert_int_equal(at.next_step, next_step);
    assert_int_equal(train_run_save_resume(run, err, sizeof err), TRAIN_RUN_OK);
    train_run_free(run);

    /* again: it continues there, and runs the epochs still to do */
    watcher again = {0};
    o->ctx = &again;
    o->cancel = &again.cancel;
    assert_int_equal(train_run_new(o, &run, err, sizeof err), TRAIN_RUN_OK);
    const train_run_info *info = train_run_get_info(run);
    assert_true(info->resumed);
    assert_int_equal(info->epochs_done, epochs_done);
    assert_int_equal(info->position.next_step, next_step);
    int n;
    train_run_history(run, &n);
    assert_int_equal(n, epochs_done);
    assert_int_equal(train_run_epochs(run, err, sizeof err), TRAIN_RUN_OK);
    assert_int_equal(again.epochs, o->cfg.epochs - epochs_done);
    assert_int_equal(again.last_n_done, o->cfg.epochs);
    train_run_evaluate(run);
    assert_int_equal(train_run_write_file(run, path, err, sizeof err), TRAIN_RUN_OK);
    train_run_free(run);
}

/* what: which run, for the failure message */
static void assert_same_file(const char *a, const char *b, const char *what)
{
    size_t la, lb;
    uint8_t *ba = slurp(a, &la), *bb = slurp(b, &lb);
    assert_non_null(ba);
    assert_non_null(bb);
    if (la != lb || memcmp(ba, bb, la) != 0)
        fail_msg("%s: the resumed run's checkpoint differs from the uninterrupted one's", what);
    free(ba);
    free(bb);
}

/* Stopped mid-epoch, and stopped between two epochs (the flag set while one
 * ends: the next one must not count as started), a run resumes to the bytes
 * of one never stopped. */
static void test_stopped_runs_resume_to_the_same_bytes(void **state)
{
    fixture *f = *state;
    char a[HARNESS_PATH_MAX + 32], b[HARNESS_PATH_MAX + 32], resume[HARNESS_PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/a.safetensors", f->dir);
    snprintf(b, sizeof b, "%s/b.safetensors", f->dir);
    snprintf(resume, sizeof resume, "%s/run.resume", f->dir);
    train_run_options o;
    options(f, &o);
    watcher plain = {0};
    run_to_file(&o, &plain, a);

    const trainer_meta meta[] = {{"data", f->images}, {"seed", "1"}};
    options(f, &o);
    o.resume_path = resume;
    o.meta = meta;
    o.n_meta = 2;
    watcher mid = {.stop_epoch = 2, .stop_step = 3}; /* before step 4 of epoch 2 */
    stop_and_resume(&o, &mid, 1, 3, b);
    assert_same_file(a, b, "stopped mid-epoch");
    assert_int_equal(access(resume, F_OK), 0);
    unlink(resume);
    unlink(b);

    options(f, &o);
    o.resume_path = resume;
    o.meta = meta;
    o.n_meta = 2;
    watcher between = {.stop_after_epoch = 1};
    stop_and_resume(&o, &between, 1, 0, b);
    assert_same_file(a, b, "stopped between epochs");
}

static void test_resume_files_of_other_runs_are_refused(void **state)
{
    fixture *f = *state;
    char resume[HARNESS_PATH_MAX + 32];
    snprintf(resume, sizeof resume, "%s/run.resume", f->dir);
    const trainer_meta meta[] = {{"limit", "0"}};
    train_run_options o;
    options(f, &o);
    o.resume_path = resume;
    o.meta = meta;
    o.n_meta = 1;
    o.cfg.epochs = 1;
    train_run *run = NULL;
    char err[512] = "";
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_OK);
    assert_int_equal(train_run_epochs(run, err, sizeof err), TRAIN_RUN_OK); /* saved after it */
    train_run_free(run);
    size_t len0;
    uint8_t *before = slurp(resume, &len0);
    assert_non_null(before);

    const trainer_meta other[] = {{"limit", "100"}};
    o.meta = other;
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_ERR_RESUME);
    assert_null(run);
    assert_non_null(strstr(err, "belongs to another run"));
    o.meta = meta;
    o.cfg.latent = 3; /* another model */
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_ERR_RESUME);
    assert_non_null(strstr(err, "belongs to another run"));
    size_t len1;
    uint8_t *after = slurp(resume, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0); /* left as it was */
    free(before);
    free(after);
}

static void test_after_the_evaluation(void **state)
{
    fixture *f = *state;
    char resume[HARNESS_PATH_MAX + 32];
    snprintf(resume, sizeof resume, "%s/r", f->dir);
    train_run_options o;
    options(f, &o);
    o.resume_path = resume;
    train_run *run = NULL;
    char err[512] = "";
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_OK);
    assert_int_equal(train_run_epochs(run, err, sizeof err), TRAIN_RUN_OK);
    int n;
    double loss = train_run_history(run, &n)[2].train_loss;
    const eval_result *er = train_run_evaluate(run);
    assert_non_null(er);
    assert_ptr_equal(train_run_evaluate(run), er); /* once */
    /* the trainer is gone: its history stays, nothing more to train or save */
    const trainer_epoch_metrics *h = train_run_history(run, &n);
    assert_int_equal(n, 3);
    assert_true(h[2].train_loss == loss);
    trainer_position at;
    train_run_get_position(run, &at);
    assert_int_equal(at.epochs_done, 3);
    assert_int_equal(train_run_save_resume(run, err, sizeof err), TRAIN_RUN_ERR_ARG);
    assert_int_equal(train_run_epochs(run, err, sizeof err), TRAIN_RUN_ERR_ARG);
    train_run_free(run);
}

static void test_refusals(void **state)
{
    fixture *f = *state;
    train_run_options o;
    train_run *run = NULL;
    char err[512] = "";
    options(f, &o);
    o.val_split = 1.0;
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_ERR_ARG);
    options(f, &o);
    o.data = f->bare;
    o.klass = 3; /* no labels */
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_ERR_ARG);
    assert_non_null(strstr(err, "class 3"));
    options(f, &o);
    o.data = "/nonexistent/x-images-idx3-ubyte";
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_ERR_ARG);
    assert_null(run);
    /* class, limit and a held-out split choose the images */
    options(f, &o);
    o.klass = 4;
    o.val_split = 0.2;
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_OK);
    const train_run_info *info = train_run_get_info(run);
    /* the 30 images of label 4, in both parts of the split */
    assert_int_equal(info->n_train + info->n_test, 30);
    assert_true(info->n_train > info->n_test && info->n_test > 0);
    train_run_free(run);
    options(f, &o);
    o.limit = 50;
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_OK);
    assert_int_equal(train_run_get_info(run)->n_train, 50);
    train_run_free(run);
}

/* A conditional run counts the data's classes (labels 0..9: 10, whatever
 * the class and limit), refuses data without labels, resumes mid-epoch to
 * the bytes of a run never stopped, and its resume file is another run's
 * to an unconditional one. */
static void test_conditional_runs(void **state)
{
    fixture *f = *state;
    train_run_options o;
    train_run *run = NULL;
    char err[512] = "";
    options(f, &o);
    o.conditional = 1;
    o.limit = 7; /* labels 0..6 only in the training images left */
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_OK);
    assert_int_equal(train_run_model(run)->cfg.n_classes, 10);
    train_run_free(run);
    options(f, &o);
    o.conditional = 1;
    o.data = f->bare;
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_ERR_ARG);
    assert_null(run);
    assert_non_null(strstr(err, "a conditional model needs a label for every image"));
    assert_non_null(strstr(err, f->bare));

    char a[HARNESS_PATH_MAX + 32], b[HARNESS_PATH_MAX + 32], resume[HARNESS_PATH_MAX + 32];
    snprintf(a, sizeof a, "%s/ca.safetensors", f->dir);
    snprintf(b, sizeof b, "%s/cb.safetensors", f->dir);
    snprintf(resume, sizeof resume, "%s/c.resume", f->dir);
    options(f, &o);
    o.conditional = 1;
    watcher plain = {0};
    run_to_file(&o, &plain, a);
    const trainer_meta meta[] = {{"data", f->images}};
    options(f, &o);
    o.conditional = 1;
    o.resume_path = resume;
    o.meta = meta;
    o.n_meta = 1;
    watcher mid = {.stop_epoch = 2, .stop_step = 5};
    stop_and_resume(&o, &mid, 1, 5, b);
    assert_same_file(a, b, "conditional, stopped mid-epoch");
    o.conditional = 0; /* the resume file is still there: another model */
    o.ctx = NULL;
    o.on_epoch = NULL;
    o.on_progress = NULL;
    o.cancel = NULL;
    assert_int_equal(train_run_new(&o, &run, err, sizeof err), TRAIN_RUN_ERR_RESUME);
    assert_non_null(strstr(err, "belongs to another run"));
}

int main(void)
{
    openblas_set_num_threads(1); /* exact resume needs one BLAS thread */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_run_to_a_file_and_the_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stopped_runs_resume_to_the_same_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resume_files_of_other_runs_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_after_the_evaluation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conditional_runs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
