/* Unit tests for server/model_cache.c: real checkpoints in a real registry. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"
#include "engine/vae.h"
#include "server/model_cache.h"
#include "server/registry.h"
#include "tests/lib/harness.h"

typedef struct {
    char dir[64];
    registry *reg;
    vae_model a, b;   /* the models stored as "a" and "b" */
    size_t bytes_a;   /* what the cache counts for one of them */
} fixture;

static void make_model(vae_model *m, uint64_t seed)
{
    vae_config cfg;
    vae_config_default(&cfg);
    cfg.n_hidden = 1;
    cfg.hidden[0] = 16;
    cfg.latent = 4;
    char err[256] = "";
    int rc = vae_init(m, &cfg, seed, err, sizeof err);
    if (rc)
        print_error("vae_init: %s\n", err);
    assert_int_equal(rc, VAE_OK);
}

static void put_model(registry *r, const char *name, const vae_model *m)
{
    uint8_t *blob = NULL;
    size_t len = 0;
    char err[256] = "";
    int rc = ckpt_save_mem(m, NULL, &blob, &len, err, sizeof err);
    if (rc)
        print_error("ckpt_save_mem: %s\n", err);
    assert_int_equal(rc, VAE_OK);
    registry_checkpoint_info info;
    int created = 0;
    rc = registry_put_checkpoint(r, name, blob, len, NULL, NULL, NULL, "upload", &info, &created,
                                 err, sizeof err);
    free(blob);
    if (rc)
        print_error("put: %s\n", err);
    assert_int_equal(rc, REGISTRY_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    if (harness_tmpdir(f->dir, sizeof f->dir) != 0) {
        free(f);
        return -1;
    }
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/registry.db", f->dir);
    if (registry_open(path, &f->reg, err, sizeof err)) {
        print_error("registry_open: %s\n", err);
        return -1;
    }
    make_model(&f->a, 1);
    make_model(&f->b, 2);
    put_model(f->reg, "a", &f->a);
    put_model(f->reg, "b", &f->b);
    f->bytes_a = model_cache_entry_bytes(&f->a);
    assert_true(f->bytes_a > f->a.n_params * sizeof(float));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    registry_close(f->reg);
    vae_free(&f->a);
    vae_free(&f->b);
    harness_rm_rf(f->dir);
    free(f);
    return 0;
}

/* What the last acquire_ok resolved its names to. */
static registry_checkpoint_info last;

static model_handle *acquire_ok(model_cache *c, registry *r, const char *model, const char *v)
{
    model_handle *h = NULL;
    char err[256] = "";
    int rc = model_cache_acquire(c, r, model, v, &h, &last, err, sizeof err);
    if (rc)
        print_error("acquire: %s\n", err);
    assert_int_equal(rc, MODEL_CACHE_OK);
    assert_non_null(h);
    return h;
}

static void assert_same_params(const vae_model *got, const vae_model *want)
{
    assert_int_equal(got->n_params, want->n_params);
    assert_memory_equal(got->params, want->params, want->n_params * sizeof(float));
}

static void test_acquire_shares(void **state)
{
    fixture *f = *state;
    model_cache *c = model_cache_new(0);
    assert_non_null(c);
    model_handle *h1 = acquire_ok(c, f->reg, "a", NULL);
    model_handle *h2 = acquire_ok(c, f->reg, "a", "1");
    assert_ptr_equal(h1, h2);
    assert_int_equal(model_cache_handle_refs(c, h1), 2);
    assert_string_equal(last.model, "a");
    assert_int_equal(last.version, 1);
    assert_same_params(&h1->model, &f->a);
    assert_int_equal(h1->model.cfg.latent, 4);
    assert_int_equal(model_cache_count(c), 1);
    assert_int_equal(model_cache_bytes(c), f->bytes_a);
    model_cache_release(c, h1);
    model_cache_release(c, h2);
    assert_int_equal(model_cache_handle_refs(c, h1), 0);
    /* Still cached after the last release. */
    assert_int_equal(model_cache_count(c), 1);
    model_handle *h3 = acquire_ok(c, f->reg, "a", "latest");
    assert_ptr_equal(h3, h1);
    model_cache_release(c, h3);

    /* The default model: "b", the most recently updated. */
    model_handle *hb = acquire_ok(c, f->reg, NULL, NULL);
    assert_string_equal(last.model, "b");
    assert_same_params(&hb->model, &f->b);
    assert_int_equal(model_cache_count(c), 2);
    assert_int_equal(model_cache_bytes(c), 2 * f->bytes_a);
    model_cache_release(c, hb);
    model_cache_free(c);
}

static void test_same_bytes_one_entry(void **state)
{
    fixture *f = *state;
    put_model(f->reg, "a-copy", &f->a);
    model_cache *c = model_cache_new(0);
    model_handle *h1 = acquire_ok(c, f->reg, "a", NULL);
    model_handle *h2 = acquire_ok(c, f->reg, "a-copy", NULL);
    assert_ptr_equal(h1, h2);
    assert_int_equal(model_cache_count(c), 1);
    assert_int_equal(model_cache_loads(c), 1);
    /* Each caller is told the name it asked for, not the first loader's. */
    assert_string_equal(last.model, "a-copy");
    assert_int_equal(last.version, 1);
    model_cache_release(c, acquire_ok(c, f->reg, "a", "1"));
    assert_string_equal(last.model, "a");
    model_cache_release(c, h1);
    registry_checkpoint_info info;
    model_handle *h3 = NULL;
    assert_true(model_cache_acquire_loaded(c, f->reg, "a-copy", NULL, &h3, &info));
    assert_ptr_equal(h3, h1);
    assert_string_equal(info.model, "a-copy");
    model_cache_release(c, h3);
    model_cache_release(c, h1);
    model_cache_release(c, h2);
    model_cache_free(c);
}

static void test_errors(void **state)
{
    fixture *f = *state;
    model_cache *c = model_cache_new(0);
    model_handle *h = (model_handle *)1;
    char err[256] = "";
    assert_int_equal(model_cache_acquire(c, f->reg, "missing", NULL, &h, NULL, err, sizeof err),
                     MODEL_CACHE_ERR_NOT_FOUND);
    assert_null(h);
    assert_non_null(strstr(err, "missing"));
    assert_int_equal(model_cache_acquire(c, f->reg, "a", "7", &h, NULL, err, sizeof err),
                     MODEL_CACHE_ERR_NOT_FOUND);
    assert_string_equal(err, "model \"a\" has no version 7");
    assert_int_equal(model_cache_acquire(c, f->reg, "a", "prod", &h, NULL, err, sizeof err),
                     MODEL_CACHE_ERR_NOT_FOUND);

    /* Bytes in the registry that are no checkpoint. */
    registry_checkpoint_info info;
    int created;
    const char *junk = "this is not a safetensors file";
    assert_int_equal(registry_put_checkpoint(f->reg, "junk", (const uint8_t *)junk,
                                             strlen(junk), NULL, NULL, NULL, NULL, &info,
                                             &created, err, sizeof err),
                     REGISTRY_OK);
    assert_int_equal(model_cache_acquire(c, f->reg, "junk", NULL, &h, NULL, err, sizeof err),
                     MODEL_CACHE_ERR_LOAD);
    assert_null(h);
    assert_non_null(strstr(err, "junk"));
    assert_int_equal(model_cache_count(c), 0);
    assert_int_equal(model_cache_bytes(c), 0);
    model_cache_free(c);

    /* An empty registry. */
    char path[160];
    snprintf(path, sizeof path, "%s/empty.db", f->dir);
    registry *empty = NULL;
    assert_int_equal(registry_open(path, &empty, err, sizeof err), REGISTRY_OK);
    c = model_cache_new(0);
    assert_int_equal(model_cache_acquire(c, empty, NULL, NULL, &h, NULL, err, sizeof err),
                     MODEL_CACHE_ERR_NO_MODEL);
    assert_string_equal(err, "no model in the registry");
    model_cache_free(c);
    registry_close(empty);
}

static void test_budget_evicts_lru(void **state)
{
    fixture *f = *state;
    /* Room for one model, not two. */
    model_cache *c = model_cache_new(f->bytes_a + f->bytes_a / 2);
    model_handle *ha = acquire_ok(c, f->reg, "a", NULL);
    model_cache_release(c, ha);
    model_handle *hb = acquire_ok(c, f->reg, "b", NULL);
    assert_int_equal(model_cache_count(c), 1);
    assert_int_equal(model_cache_bytes(c), f->bytes_a);
    assert_string_equal(last.model, "b");
    assert_int_equal(model_cache_handle_evicted(c, hb), 0);
    model_cache_release(c, hb);
    /* "a" loads again (and pushes "b" out). */
    ha = acquire_ok(c, f->reg, "a", NULL);
    assert_same_params(&ha->model, &f->a);
    assert_int_equal(model_cache_count(c), 1);
    model_cache_release(c, ha);

    /* Least recently used goes first: with room for two, touching "a"
     * makes "b" the one to go when "c" arrives. */
    model_cache_free(c);
    c = model_cache_new(2 * f->bytes_a + f->bytes_a / 2);
    vae_model third;
    make_model(&third, 3);
    put_model(f->reg, "c", &third);
    model_cache_release(c, acquire_ok(c, f->reg, "a", NULL));
    model_cache_release(c, acquire_ok(c, f->reg, "b", NULL));
    model_handle *pa = acquire_ok(c, f->reg, "a", NULL);
    model_cache_release(c, pa);
    model_handle *hc = acquire_ok(c, f->reg, "c", NULL);
    assert_int_equal(model_cache_count(c), 2);
    model_handle *again = acquire_ok(c, f->reg, "a", NULL);
    /* "a" was still cached: the same entry. */
    assert_ptr_equal(again, pa);
    assert_int_equal(model_cache_handle_refs(c, again), 1);
    assert_int_equal(model_cache_count(c), 2);
    model_cache_release(c, again);
    model_cache_release(c, hc);
    vae_free(&third);
    model_cache_free(c);
}

static void test_evicted_while_held(void **state)
{
    fixture *f = *state;
    model_cache *c = model_cache_new(f->bytes_a + f->bytes_a / 2);
    model_handle *ha = acquire_ok(c, f->reg, "a", NULL);
    model_handle *hb = acquire_ok(c, f->reg, "b", NULL);
    /* Both held, over budget: "a" (least recently used) leaves the cache
     * but stays valid for its holder. */
    assert_int_equal(model_cache_handle_evicted(c, ha), 1);
    assert_int_equal(model_cache_handle_evicted(c, hb), 0);
    assert_int_equal(model_cache_count(c), 1);
    assert_int_equal(model_cache_bytes(c), f->bytes_a);
    assert_same_params(&ha->model, &f->a); /* ASan: not freed yet */

    /* A new request for "a" gets a fresh entry, not the evicted one. */
    model_handle *ha2 = acquire_ok(c, f->reg, "a", NULL);
    assert_ptr_not_equal(ha2, ha);
    assert_same_params(&ha2->model, &f->a);
    model_cache_release(c, ha);  /* frees the evicted one (ASan checks for a leak) */
    model_cache_release(c, ha2);
    model_cache_release(c, hb);
    assert_true(model_cache_bytes(c) <= f->bytes_a + f->bytes_a / 2);
    model_cache_free(c);
}

/* DELETE /models/a/versions/1 while a request holds the model: the registry
 * forgets the version, the cache evicts the entry, and the holder's model
 * stays valid until its release (ASan would see a use after free). */
static void test_deleted_while_held(void **state)
{
    fixture *f = *state;
    model_cache *c = model_cache_new(f->bytes_a + f->bytes_a / 2);
    model_handle *ha = acquire_ok(c, f->reg, "a", "1");
    char err[256] = "";
    assert_int_equal(registry_delete_version(f->reg, "a", 1, err, sizeof err), REGISTRY_OK);
    model_handle *gone = NULL;
    assert_int_equal(model_cache_acquire(c, f->reg, "a", "1", &gone, NULL, err, sizeof err),
                     MODEL_CACHE_ERR_NOT_FOUND);
    assert_null(gone);
    model_handle *hb = acquire_ok(c, f->reg, "b", NULL); /* over budget: evicts "a" */
    assert_int_equal(model_cache_handle_evicted(c, ha), 1);
    assert_same_params(&ha->model, &f->a);
    model_cache_release(c, ha); /* the last holder: freed now */
    assert_int_equal(model_cache_count(c), 1);
    model_cache_release(c, hb);
    model_cache_free(c);
}

/* A DELETE forgets the entry at once; its holder keeps a working model until
 * it releases it, and the bytes no longer count against the budget. */
static void test_forget_while_held(void **state)
{
    fixture *f = *state;
    model_cache *c = model_cache_new(0);
    model_handle *ha = acquire_ok(c, f->reg, "a", "1");
    size_t before = model_cache_bytes(c);
    assert_true(before > 0);
    char sha[65];
    memcpy(sha, ha->sha256, sizeof sha);
    model_cache_forget(c, sha);
    assert_int_equal(model_cache_bytes(c), 0);
    assert_int_equal(model_cache_count(c), 0);
    assert_same_params(&ha->model, &f->a);
    model_handle *again = acquire_ok(c, f->reg, "a", "1"); /* loaded anew */
    assert_ptr_not_equal(again, ha);
    model_cache_release(c, ha); /* freed here (ASan would see a leak or a double free) */
    model_cache_release(c, again);
    model_cache_forget(c, sha);  /* unheld: freed now */
    model_cache_forget(c, "0000"); /* unknown: nothing */
    assert_int_equal(model_cache_count(c), 0);
    model_cache_free(c);
}

/* The cache remembers what a (model, version) resolved to only until the
 * registry changes: a new version, an alias, a delete are seen at once. */
static void test_resolution_follows_registry(void **state)
{
    fixture *f = *state;
    model_cache *c = model_cache_new(0);
    registry_checkpoint_info seen;
    assert_false(model_cache_peek_resolved(c, f->reg, "a", NULL, &seen));
    model_handle *h = acquire_ok(c, f->reg, "a", NULL);
    assert_int_equal(last.version, 1);
    model_cache_release(c, h);
    /* Remembered: known without the registry. */
    assert_true(model_cache_peek_resolved(c, f->reg, "a", NULL, &seen));
    assert_int_equal(seen.version, 1);
    h = acquire_ok(c, f->reg, "a", NULL);
    assert_int_equal(last.version, 1);
    model_cache_release(c, h);
    put_model(f->reg, "a", &f->b); /* version 2 moves latest */
    assert_false(model_cache_peek_resolved(c, f->reg, "a", NULL, &seen));
    h = acquire_ok(c, f->reg, "a", NULL);
    assert_int_equal(last.version, 2);
    assert_same_params(&h->model, &f->b);
    model_cache_release(c, h);
    char err[256] = "";
    assert_int_equal(registry_set_alias(f->reg, "a", "prod", 1, err, sizeof err), REGISTRY_OK);
    h = acquire_ok(c, f->reg, "a", "prod");
    assert_same_params(&h->model, &f->a);
    model_cache_release(c, h);
    assert_int_equal(registry_set_alias(f->reg, "a", "prod", 2, err, sizeof err), REGISTRY_OK);
    assert_false(model_cache_peek_resolved(c, f->reg, "a", "prod", &seen));
    h = acquire_ok(c, f->reg, "a", "prod");
    assert_same_params(&h->model, &f->b);
    model_cache_release(c, h);
    /* The alias and then version 2 deleted: "prod" is gone, latest is 1 again. */
    assert_int_equal(registry_delete_alias(f->reg, "a", "prod", err, sizeof err), REGISTRY_OK);
    assert_int_equal(model_cache_acquire(c, f->reg, "a", "prod", &h, NULL, err, sizeof err),
                     MODEL_CACHE_ERR_NOT_FOUND);
    assert_int_equal(registry_delete_version(f->reg, "a", 2, err, sizeof err), REGISTRY_OK);
    h = acquire_ok(c, f->reg, "a", NULL);
    assert_int_equal(last.version, 1);
    assert_same_params(&h->model, &f->a);
    model_cache_release(c, h);
    model_cache_free(c);
}

typedef struct {
    model_cache *cache;
    registry *reg;
    model_handle *got;
    int failed;
} acquire_job;

static void *acquire_thread(void *arg)
{
    acquire_job *job = arg;
    char err[256];
    if (model_cache_acquire(job->cache, job->reg, "a", NULL, &job->got, NULL, err, sizeof err))
        job->failed = 1;
    return NULL;
}

static void test_concurrent_load(void **state)
{
    fixture *f = *state;
    enum { N = 8 };
    for (int round = 0; round < 5; round++) {
        model_cache *c = model_cache_new(0);
        pthread_t threads[N];
        acquire_job jobs[N];
        for (int i = 0; i < N; i++) {
            jobs[i] = (acquire_job){.cache = c, .reg = f->reg};
            assert_int_equal(pthread_create(&threads[i], NULL, acquire_thread, &jobs[i]), 0);
        }
        for (int i = 0; i < N; i++)
            pthread_join(threads[i], NULL);
        /* However the loads raced, one entry, shared by all. */
        assert_int_equal(model_cache_count(c), 1);
        for (int i = 0; i < N; i++) {
            assert_int_equal(jobs[i].failed, 0);
            assert_ptr_equal(jobs[i].got, jobs[0].got);
        }
        assert_int_equal(model_cache_handle_refs(c, jobs[0].got), N);
        assert_int_equal(model_cache_loads(c), 1); /* the others waited for the one load */
        for (int i = 0; i < N; i++)
            model_cache_release(c, jobs[i].got);
        model_cache_free(c);
    }
}

/* A model larger than the whole budget stays loaded, alone, rather than
 * leaving at once and loading again on every request. */
static void test_oversized_model_stays(void **state)
{
    fixture *f = *state;
    model_cache *c = model_cache_new(1);
    for (int i = 0; i < 3; i++)
        model_cache_release(c, acquire_ok(c, f->reg, "a", NULL));
    assert_int_equal(model_cache_loads(c), 1);
    assert_int_equal(model_cache_count(c), 1);
    /* Another one takes its place. */
    model_cache_release(c, acquire_ok(c, f->reg, "b", NULL));
    assert_int_equal(model_cache_count(c), 1);
    model_cache_release(c, acquire_ok(c, f->reg, "b", NULL));
    assert_int_equal(model_cache_loads(c), 2);
    model_cache_free(c);
}

/* The polling-thread path never loads and never asks the registry. */
static void test_acquire_loaded_only(void **state)
{
    fixture *f = *state;
    model_cache *c = model_cache_new(0);
    model_handle *h = NULL;
    registry_checkpoint_info info;
    assert_false(model_cache_acquire_loaded(c, f->reg, "a", NULL, &h, &info));
    assert_null(h);
    assert_int_equal(model_cache_loads(c), 0);
    model_cache_release(c, acquire_ok(c, f->reg, "a", NULL));
    assert_true(model_cache_acquire_loaded(c, f->reg, "a", NULL, &h, &info));
    assert_int_equal(info.version, 1);
    model_cache_release(c, h);
    put_model(f->reg, "a", &f->b); /* the registry moved: resolve again, elsewhere */
    assert_false(model_cache_acquire_loaded(c, f->reg, "a", NULL, &h, &info));
    model_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acquire_shares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_bytes_one_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_evicts_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evicted_while_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_while_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_while_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolution_follows_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_model_stays, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acquire_loaded_only, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
