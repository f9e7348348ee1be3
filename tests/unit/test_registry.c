/* Unit tests for server/registry.c on real SQLite files in a mkdtemp() dir,
 * and the same tests (those not about SQLite's file) on the PostgreSQL
 * backend: a throwaway server this test starts (tests/lib/pg_server.h), a
 * fresh database per test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "server/registry.h"
#include "server/sha256.h"
#include "tests/lib/harness.h"
#include "tests/lib/pg_server.h"

extern const char *const vaed_schema_migrations[];
extern const size_t vaed_schema_migration_count;
extern const size_t vaed_pg_schema_migration_count;

typedef struct {
    char dir[64];
    char path[128];           /* a file, or a postgresql:// URL */
} fixture;

static pg_server pg;          /* started by main for the PostgreSQL group */

static int is_pg(const fixture *f)
{
    return strncmp(f->path, "postgresql://", 13) == 0;
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
    /* A subdirectory that does not exist yet: registry_open creates it. */
    snprintf(f->path, sizeof f->path, "%s/var/registry.db", f->dir);
    *state = f;
    return 0;
}

/* The PostgreSQL group: the same tests on a new, empty database. */
static int setup_pg(void **state)
{
    if (setup(state))
        return -1;
    fixture *f = *state;
    char err[256];
    if (pg_server_new_db(&pg, f->path, sizeof f->path, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    harness_rm_rf(f->dir);
    free(f);
    return 0;
}

static registry *open_ok(const fixture *f)
{
    registry *r = NULL;
    char err[256] = "";
    int rc = registry_open(f->path, &r, err, sizeof err);
    if (rc)
        print_error("registry_open: %s\n", err);
    assert_int_equal(rc, REGISTRY_OK);
    assert_non_null(r);
    return r;
}

/* Puts "name-payload" bytes; returns the version. */
static int64_t put(registry *r, const char *model, const char *payload, int expect_created)
{
    registry_checkpoint_info info;
    int created = -1;
    char err[256] = "";
    int rc = registry_put_checkpoint(r, model, (const uint8_t *)payload, strlen(payload), NULL,
                                     "{\"latent\":4}", NULL, "upload", &info, &created, err,
                                     sizeof err);
    if (rc)
        print_error("put: %s\n", err);
    assert_int_equal(rc, REGISTRY_OK);
    assert_int_equal(created, expect_created);
    assert_string_equal(info.model, model);
    return info.version;
}

static int64_t resolve_version(registry *r, const char *model, const char *v)
{
    registry_checkpoint_info info;
    char err[256] = "";
    int rc = registry_resolve(r, model, v, &info, err, sizeof err);
    if (rc)
        print_error("resolve: %s\n", err);
    assert_int_equal(rc, REGISTRY_OK);
    return info.version;
}

/* Runs a query on a second, plain connection and returns its first integer. */
static int64_t query_int(const char *path, const char *sql)
{
    if (strncmp(path, "postgresql://", 13) == 0) {
        PGconn *c = PQconnectdb(path);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        PGresult *res = PQexec(c, sql);
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        assert_int_equal(PQntuples(res), 1);
        int64_t v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        PQfinish(c);
        return v;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_names(void **state)
{
    (void)state;
    assert_true(registry_valid_name("digits"));
    assert_true(registry_valid_name("a.b_c-9"));
    assert_true(registry_valid_name("7"));
    assert_false(registry_valid_name(""));
    assert_false(registry_valid_name(NULL));
    assert_false(registry_valid_name(".hidden"));
    assert_false(registry_valid_name("-x"));
    assert_false(registry_valid_name("a/b"));
    assert_false(registry_valid_name("a b"));
    char long_name[66];
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    assert_false(registry_valid_name(long_name));
    long_name[64] = '\0';
    assert_true(registry_valid_name(long_name));
    assert_true(registry_valid_alias("prod"));
    assert_true(registry_valid_alias("v2"));
    assert_false(registry_valid_alias("42"));
}

static void test_open_creates_schema(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    assert_int_equal(registry_schema_version(r), (int)vaed_schema_migration_count);
    assert_true(vaed_schema_migration_count >= 1);
    assert_int_equal(registry_count_checkpoints(r), 0);
    put(r, "digits", "one", 1);
    registry_close(r);

    assert_int_equal(query_int(f->path, "PRAGMA user_version"), (int64_t)vaed_schema_migration_count);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                                        "AND name IN ('models', 'blobs', 'checkpoints', "
                                        "'aliases', 'jobs', 'job_events')"),
                     6);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);

    /* Reopening migrates nothing and keeps the data. */
    r = open_ok(f);
    assert_int_equal(registry_schema_version(r), (int)vaed_schema_migration_count);
    assert_int_equal(registry_count_checkpoints(r), 1);
    assert_int_equal(resolve_version(r, "digits", NULL), 1);
    registry_close(r);
}

static void test_put_versions(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    assert_int_equal(put(r, "digits", "first", 1), 1);
    assert_int_equal(put(r, "digits", "second", 1), 2);
    assert_int_equal(put(r, "digits", "third", 1), 3);
    /* The same bytes again: the existing version, nothing stored. */
    assert_int_equal(put(r, "digits", "second", 0), 2);
    assert_int_equal(registry_count_checkpoints(r), 3);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 3);
    /* The same bytes in another model: a version there, one blob. */
    assert_int_equal(put(r, "faces", "second", 1), 1);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 3);

    registry_checkpoint_info info;
    char err[256];
    assert_int_equal(registry_resolve(r, "digits", "2", &info, err, sizeof err), REGISTRY_OK);
    char sha[65];
    sha256_hex((const uint8_t *)"second", 6, sha);
    assert_string_equal(info.sha256, sha);
    assert_int_equal(info.size, 6);
    assert_string_equal(info.source, "upload");
    /* "2026-11-21T23:59:01.123Z" */
    assert_int_equal(strlen(info.created_at), 24);
    assert_int_equal(info.created_at[10], 'T');
    assert_int_equal(info.created_at[19], '.');
    assert_int_equal(info.created_at[23], 'Z');

    uint8_t *blob = NULL;
    size_t len = 0;
    assert_int_equal(registry_get_blob(r, sha, &blob, &len, err, sizeof err), REGISTRY_OK);
    assert_int_equal(len, 6);
    assert_memory_equal(blob, "second", 6);
    free(blob);
    assert_int_equal(registry_get_blob(r, "00", &blob, &len, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_null(blob);
    /* ... and in pieces (a download), on either backend. */
    registry_blob *b = NULL;
    char piece[4] = "";
    assert_int_equal(registry_blob_open(r, sha, &b, &len, err, sizeof err), REGISTRY_OK);
    assert_int_equal(len, 6);
    assert_int_equal(registry_blob_read(b, 2, piece, 3, err, sizeof err), REGISTRY_OK);
    assert_memory_equal(piece, "con", 3);
    assert_int_equal(registry_blob_read(b, 4, piece, 3, err, sizeof err), REGISTRY_ERR_ARG);
    registry_blob_close(b);

    /* A caller's sha256 must match the bytes (any case). */
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(sha[i] >= 'a' && sha[i] <= 'f' ? sha[i] - 32 : sha[i]);
    int created = -1;
    assert_int_equal(registry_put_checkpoint(r, "digits", (const uint8_t *)"second", 6, upper,
                                             NULL, NULL, NULL, &info, &created, err, sizeof err),
                     REGISTRY_OK);
    assert_int_equal(created, 0);
    assert_int_equal(info.version, 2);
    assert_int_equal(registry_put_checkpoint(r, "digits", (const uint8_t *)"fourth", 6, sha,
                                             NULL, NULL, NULL, &info, &created, err, sizeof err),
                     REGISTRY_ERR_ARG);
    assert_non_null(strstr(err, "does not match"));
    /* Bad input: nothing stored. */
    assert_int_equal(registry_put_checkpoint(r, "bad/name", (const uint8_t *)"x", 1, NULL, NULL,
                                             NULL, NULL, &info, &created, err, sizeof err),
                     REGISTRY_ERR_ARG);
    assert_int_equal(registry_put_checkpoint(r, "digits", (const uint8_t *)"x", 0, NULL, NULL,
                                             NULL, NULL, &info, &created, err, sizeof err),
                     REGISTRY_ERR_ARG);
    assert_int_equal(registry_put_checkpoint(r, "digits", (const uint8_t *)"fifth", 5, NULL,
                                             "{not json", NULL, NULL, &info, &created, err,
                                             sizeof err),
                     REGISTRY_ERR_ARG);
    assert_non_null(strstr(err, "JSON"));
    assert_int_equal(registry_count_checkpoints(r), 4);
    /* A failed put leaves no gap. */
    assert_int_equal(put(r, "digits", "fifth", 1), 4);
    registry_close(r);
}

static void test_resolve(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    registry_checkpoint_info info;
    char err[256] = "";
    assert_int_equal(registry_resolve(r, NULL, NULL, &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_string_equal(err, "no model in the registry");

    put(r, "alpha", "a1", 1);
    put(r, "alpha", "a2", 1);
    /* The only model. */
    assert_int_equal(registry_resolve(r, NULL, NULL, &info, err, sizeof err), REGISTRY_OK);
    assert_string_equal(info.model, "alpha");
    assert_int_equal(info.version, 2);
    /* timestamps have milliseconds; make sure beta is strictly newer */
    struct timespec pause = {0, 3 * 1000 * 1000};
    nanosleep(&pause, NULL);
    put(r, "beta", "b1", 1);
    /* The most recently updated. */
    assert_int_equal(registry_resolve(r, NULL, NULL, &info, err, sizeof err), REGISTRY_OK);
    assert_string_equal(info.model, "beta");
    nanosleep(&pause, NULL);
    put(r, "alpha", "a3", 1);
    assert_int_equal(registry_resolve(r, NULL, "latest", &info, err, sizeof err), REGISTRY_OK);
    assert_string_equal(info.model, "alpha");
    assert_int_equal(info.version, 3);
    /* The default set by hand wins, until cleared. */
    registry_set_default_model(r, "beta");
    assert_int_equal(registry_resolve(r, NULL, NULL, &info, err, sizeof err), REGISTRY_OK);
    assert_string_equal(info.model, "beta");
    assert_int_equal(registry_resolve(r, NULL, "1", &info, err, sizeof err), REGISTRY_OK);
    assert_string_equal(info.model, "beta");
    registry_set_default_model(r, "gamma");
    assert_int_equal(registry_resolve(r, NULL, NULL, &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "\"gamma\""));
    registry_set_default_model(r, NULL);
    assert_int_equal(registry_resolve(r, NULL, NULL, &info, err, sizeof err), REGISTRY_OK);
    assert_string_equal(info.model, "alpha");

    assert_int_equal(resolve_version(r, "alpha", "1"), 1);
    assert_int_equal(resolve_version(r, "alpha", "002"), 2);
    assert_int_equal(resolve_version(r, "alpha", NULL), 3);
    assert_int_equal(registry_resolve(r, "alpha", "7", &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_string_equal(err, "model \"alpha\" has no version 7");
    assert_int_equal(registry_resolve(r, "alpha", "0", &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_int_equal(registry_resolve(r, "alpha", "99999999999999999999999", &info, err,
                                      sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_int_equal(registry_resolve(r, "alpha", "prod", &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_string_equal(err, "model \"alpha\" has no alias \"prod\"");
    assert_int_equal(registry_resolve(r, "nope", NULL, &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "\"nope\""));
    assert_int_equal(registry_resolve(r, "../etc", NULL, &info, err, sizeof err),
                     REGISTRY_ERR_ARG);
    assert_int_equal(registry_resolve(r, "alpha", "a b", &info, err, sizeof err),
                     REGISTRY_ERR_ARG);
    registry_close(r);
}

static int64_t alias_of(registry *r, const char *model, const char *alias, int *by_hand)
{
    registry_alias_info *list = NULL;
    size_t n = 0;
    char err[256];
    assert_int_equal(registry_list_aliases(r, model, &list, &n, err, sizeof err), REGISTRY_OK);
    int64_t v = -1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].alias, alias) == 0) {
            v = list[i].version;
            if (by_hand)
                *by_hand = list[i].set_by_hand;
        }
    free(list);
    return v;
}

static void test_aliases(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    char err[256];
    put(r, "m", "v1", 1);
    put(r, "m", "v2", 1);
    assert_int_equal(registry_set_alias(r, "m", "prod", 1, err, sizeof err), REGISTRY_OK);
    assert_int_equal(resolve_version(r, "m", "prod"), 1);
    assert_int_equal(registry_set_alias(r, "m", "prod", 2, err, sizeof err), REGISTRY_OK);
    assert_int_equal(resolve_version(r, "m", "prod"), 2);
    assert_int_equal(registry_set_alias(r, "m", "staging", 1, err, sizeof err), REGISTRY_OK);

    assert_int_equal(registry_set_alias(r, "m", "123", 1, err, sizeof err), REGISTRY_ERR_ARG);
    assert_int_equal(registry_set_alias(r, "m", "x/y", 1, err, sizeof err), REGISTRY_ERR_ARG);
    assert_int_equal(registry_set_alias(r, "m", "prod", 9, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_string_equal(err, "model \"m\" has no version 9");
    assert_int_equal(registry_set_alias(r, "none", "prod", 1, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);

    registry_alias_info *list = NULL;
    size_t n = 0;
    assert_int_equal(registry_list_aliases(r, "m", &list, &n, err, sizeof err), REGISTRY_OK);
    assert_int_equal(n, 3);
    assert_string_equal(list[0].alias, "latest");
    assert_int_equal(list[0].version, 2);
    assert_int_equal(list[0].set_by_hand, 0);
    assert_string_equal(list[1].alias, "prod");
    assert_int_equal(list[1].version, 2);
    assert_string_equal(list[2].alias, "staging");
    free(list);

    assert_int_equal(registry_delete_alias(r, "m", "staging", err, sizeof err), REGISTRY_OK);
    assert_int_equal(registry_delete_alias(r, "m", "staging", err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_int_equal(alias_of(r, "m", "staging", NULL), -1);
    registry_checkpoint_info info;
    assert_int_equal(registry_resolve(r, "m", "staging", &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    registry_close(r);
}

static void test_latest_by_hand(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    char err[256];
    put(r, "m", "v1", 1);
    put(r, "m", "v2", 1);
    int by_hand = -1;
    assert_int_equal(alias_of(r, "m", "latest", &by_hand), 2);
    assert_int_equal(by_hand, 0);
    assert_int_equal(registry_set_alias(r, "m", "latest", 1, err, sizeof err), REGISTRY_OK);
    put(r, "m", "v3", 1);
    /* Set by hand: it stays. */
    assert_int_equal(resolve_version(r, "m", NULL), 1);
    assert_int_equal(alias_of(r, "m", "latest", &by_hand), 1);
    assert_int_equal(by_hand, 1);
    /* Deleting it makes it follow again, from the highest version. */
    assert_int_equal(registry_delete_alias(r, "m", "latest", err, sizeof err), REGISTRY_OK);
    assert_int_equal(resolve_version(r, "m", "latest"), 3);
    assert_int_equal(alias_of(r, "m", "latest", &by_hand), 3);
    assert_int_equal(by_hand, 0);
    put(r, "m", "v4", 1);
    assert_int_equal(resolve_version(r, "m", NULL), 4);
    registry_close(r);
}

static void test_delete_version(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    char err[256];
    put(r, "m", "v1", 1);
    put(r, "m", "v2", 1);
    put(r, "m", "v3", 1);
    put(r, "other", "v3", 1); /* shares the bytes of m v3 */
    assert_int_equal(registry_set_alias(r, "m", "prod", 2, err, sizeof err), REGISTRY_OK);

    assert_int_equal(registry_delete_version(r, "m", 2, err, sizeof err), REGISTRY_ERR_CONFLICT);
    assert_non_null(strstr(err, "prod"));
    assert_int_equal(resolve_version(r, "m", "2"), 2);
    assert_int_equal(registry_delete_version(r, "m", 7, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);

    /* Deleting the version 'latest' follows moves it down. */
    assert_int_equal(registry_delete_version(r, "m", 3, err, sizeof err), REGISTRY_OK);
    assert_int_equal(resolve_version(r, "m", NULL), 2);
    registry_checkpoint_info info;
    assert_int_equal(registry_resolve(r, "m", "3", &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    /* Its bytes are still held by "other". */
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 3);
    assert_int_equal(resolve_version(r, "other", NULL), 1);

    /* A version nothing aliases: deleted with its bytes. */
    char sha1[65];
    sha256_hex((const uint8_t *)"v1", 2, sha1);
    assert_int_equal(registry_delete_version(r, "m", 1, err, sizeof err), REGISTRY_OK);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 2);
    uint8_t *blob = NULL;
    size_t len = 0;
    assert_int_equal(registry_get_blob(r, sha1, &blob, &len, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);

    /* 'latest' set by hand on a deleted version moves to the highest left. */
    /* A deleted number is never handed out again: 4, not 3. */
    assert_int_equal(put(r, "m", "v4", 1), 4);
    assert_int_equal(resolve_version(r, "m", NULL), 4);
    assert_int_equal(registry_resolve(r, "m", "3", &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_int_equal(registry_set_alias(r, "m", "latest", 4, err, sizeof err), REGISTRY_OK);
    assert_int_equal(registry_delete_version(r, "m", 4, err, sizeof err), REGISTRY_OK);
    int by_hand = -1;
    assert_int_equal(alias_of(r, "m", "latest", &by_hand), 2);
    assert_int_equal(by_hand, 0);

    /* The last version: the model stays, with no versions. */
    assert_int_equal(registry_delete_alias(r, "m", "prod", err, sizeof err), REGISTRY_OK);
    assert_int_equal(registry_delete_version(r, "m", 2, err, sizeof err), REGISTRY_OK);
    assert_int_equal(registry_resolve(r, "m", NULL, &info, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_string_equal(err, "model \"m\" has no versions");
    /* The default model is one that has versions. */
    assert_int_equal(registry_resolve(r, NULL, NULL, &info, err, sizeof err), REGISTRY_OK);
    assert_string_equal(info.model, "other");
    /* And numbering goes on after the highest number ever issued, 4. */
    assert_int_equal(put(r, "m", "v5", 1), 5);
    assert_int_equal(query_int(f->path, "SELECT next_version FROM models WHERE name = 'm'"), 6);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 2);
    registry_close(r);
}

static void test_lists(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    char err[256];
    registry_model_info *models = NULL;
    size_t n = 99;
    assert_int_equal(registry_list_models(r, &models, &n, err, sizeof err), REGISTRY_OK);
    assert_int_equal(n, 0);
    registry_free_models(models);

    put(r, "zeta", "z1", 1);
    registry_checkpoint_info info;
    int created;
    assert_int_equal(registry_put_checkpoint(r, "alpha", (const uint8_t *)"a1", 2, NULL,
                                             "{\"latent\": 20}", "{\"elbo\": -98.5}", "job:7",
                                             &info, &created, err, sizeof err),
                     REGISTRY_OK);
    put(r, "alpha", "a2", 1);
    assert_int_equal(registry_list_models(r, &models, &n, err, sizeof err), REGISTRY_OK);
    assert_int_equal(n, 2);
    assert_string_equal(models[0].name, "alpha");
    assert_int_equal(models[0].n_versions, 2);
    assert_int_equal(models[0].latest_version, 2);
    assert_int_equal(strlen(models[0].updated_at), 24);
    assert_string_equal(models[1].name, "zeta");
    assert_int_equal(models[1].n_versions, 1);
    registry_free_models(models);

    registry_checkpoint *list = NULL;
    assert_int_equal(registry_list_checkpoints(r, "alpha", &list, &n, err, sizeof err),
                     REGISTRY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].info.version, 1);
    assert_string_equal(list[0].info.source, "job:7");
    assert_string_equal(list[0].config_json, "{\"latent\": 20}");
    assert_string_equal(list[0].metrics_json, "{\"elbo\": -98.5}");
    assert_int_equal(list[1].info.version, 2);
    assert_null(list[1].metrics_json);
    registry_free_checkpoints(list, n);
    assert_int_equal(registry_list_checkpoints(r, "missing", &list, &n, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_null(list);

    registry_checkpoint c;
    assert_int_equal(registry_get_checkpoint(r, "alpha", 1, &c, err, sizeof err), REGISTRY_OK);
    assert_string_equal(c.info.model, "alpha");
    assert_string_equal(c.config_json, "{\"latent\": 20}");
    assert_string_equal(c.metrics_json, "{\"elbo\": -98.5}");
    registry_free_checkpoint(&c);
    assert_int_equal(registry_get_checkpoint(r, "alpha", 5, &c, err, sizeof err),
                     REGISTRY_ERR_NOT_FOUND);
    assert_null(c.config_json);
    /* NULL: the default model (alpha, the most recently updated). */
    assert_int_equal(registry_get_checkpoint(r, NULL, 2, &c, err, sizeof err), REGISTRY_OK);
    assert_string_equal(c.info.model, "alpha");
    registry_free_checkpoint(&c);
    registry_close(r);
}

/* ---- concurrency ---- */

enum { N_THREADS = 8, PUTS_PER_THREAD = 6 };

typedef struct {
    const char *path;
    registry *shared; /* NULL: open a connection of its own */
    int index;
    int failures;
} put_job;

static void *put_thread(void *arg)
{
    put_job *job = arg;
    char err[256];
    registry *r = job->shared;
    if (!r && registry_open(job->path, &r, err, sizeof err) != REGISTRY_OK) {
        fprintf(stderr, "thread %d: open: %s\n", job->index, err);
        job->failures++;
        return NULL;
    }
    const char *model = job->index % 2 ? "odd" : "even";
    for (int i = 0; i < PUTS_PER_THREAD; i++) {
        char payload[64];
        snprintf(payload, sizeof payload, "thread %d put %d", job->index, i);
        registry_checkpoint_info info;
        int created = 0;
        if (registry_put_checkpoint(r, model, (const uint8_t *)payload, strlen(payload), NULL,
                                    NULL, NULL, "train", &info, &created, err,
                                    sizeof err) != REGISTRY_OK ||
            !created) {
            fprintf(stderr, "thread %d: %s\n", job->index, err);
            job->failures++;
        }
    }
    if (!job->shared)
        registry_close(r);
    return NULL;
}

static void check_gap_free(registry *r, const char *model, size_t expect)
{
    registry_checkpoint *list = NULL;
    size_t n = 0;
    char err[256];
    assert_int_equal(registry_list_checkpoints(r, model, &list, &n, err, sizeof err),
                     REGISTRY_OK);
    assert_int_equal(n, expect);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(list[i].info.version, (int64_t)i + 1); /* ordered by version */
    registry_free_checkpoints(list, n);
    assert_int_equal(resolve_version(r, model, NULL), (int64_t)expect);
}

static void test_concurrent_puts(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    pthread_t threads[N_THREADS];
    put_job jobs[N_THREADS];
    /* Half share one registry (its mutex), half have their own connection
     * (SQLite's locks and busy_timeout). */
    for (int i = 0; i < N_THREADS; i++) {
        jobs[i] = (put_job){.path = f->path, .shared = i < N_THREADS / 2 ? r : NULL, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, put_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
    size_t per_model = N_THREADS / 2 * PUTS_PER_THREAD;
    check_gap_free(r, "even", per_model);
    check_gap_free(r, "odd", per_model);
    assert_int_equal(registry_count_checkpoints(r), 2 * per_model);
    registry_close(r);
    if (is_pg(f))
        return; /* PostgreSQL checks its own constraints on every write */

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---- migrations ---- */

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        print_error("%s: %s\n", sql, msg ? msg : "?");
    sqlite3_free(msg);
    assert_int_equal(rc, SQLITE_OK);
}

static void make_dir_of(const fixture *f)
{
    char dir[160];
    snprintf(dir, sizeof dir, "%s/var", f->dir);
    mkdir(dir, 0755);
}

static void test_upgrade_from_v1(void **state)
{
    fixture *f = *state;
    make_dir_of(f);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    exec_ok(db, vaed_schema_migrations[0]);
    exec_ok(db, "PRAGMA user_version = 1");
    exec_ok(db, "INSERT INTO models (name, created_at, updated_at) VALUES "
                "('old', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')");
    sqlite3_close(db);

    registry *r = open_ok(f);
    assert_int_equal(registry_schema_version(r), (int)vaed_schema_migration_count);
    registry_model_info *models = NULL;
    size_t n = 0;
    char err[256];
    assert_int_equal(registry_list_models(r, &models, &n, err, sizeof err), REGISTRY_OK);
    assert_int_equal(n, 1);
    assert_string_equal(models[0].name, "old");
    assert_int_equal(models[0].n_versions, 0);
    registry_free_models(models);
    /* The old model takes versions like any other. */
    assert_int_equal(put(r, "old", "bytes", 1), 1);
    registry_close(r);
    if (vaed_schema_migration_count >= 2)
        assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM sqlite_master "
                                            "WHERE type = 'index' AND name = "
                                            "'checkpoints_by_sha256'"),
                         1);
}

/* A registry of schema 2 whose model has versions 1 and 3: migration 3 makes
 * the next put version 4. */
static void test_upgrade_keeps_numbering(void **state)
{
    fixture *f = *state;
    make_dir_of(f);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    exec_ok(db, vaed_schema_migrations[0]);
    exec_ok(db, vaed_schema_migrations[1]);
    exec_ok(db, "PRAGMA user_version = 2");
    exec_ok(db, "INSERT INTO models (name, created_at, updated_at) VALUES "
                "('old', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');"
                "INSERT INTO blobs VALUES ('" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "', 1, x'00');"
                "INSERT INTO checkpoints (model_id, version, sha256, size, created_at) VALUES "
                "(1, 1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1, "
                "'2026-01-01T00:00:00.000Z'),"
                "(1, 3, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1, "
                "'2026-01-01T00:00:00.000Z')");
    sqlite3_close(db);
    registry *r = open_ok(f);
    assert_int_equal(put(r, "old", "new bytes", 1), 4);
    assert_int_equal(put(r, "fresh", "new bytes", 1), 1);
    registry_close(r);
}

static void test_open_unrelated_table(void **state)
{
    fixture *f = *state;
    make_dir_of(f);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    exec_ok(db, "CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('keep me')");
    sqlite3_close(db);
    registry *r = open_ok(f);
    assert_int_equal(registry_schema_version(r), (int)vaed_schema_migration_count);
    put(r, "m", "x", 1);
    registry_close(r);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM notes"), 1);
}

static void test_refuses_newer_schema(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    registry_close(r);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    exec_ok(db, "PRAGMA user_version = 99");
    sqlite3_close(db);
    char err[256] = "";
    r = (registry *)1;
    assert_int_equal(registry_open(f->path, &r, err, sizeof err), REGISTRY_ERR_DB);
    assert_null(r);
    assert_non_null(strstr(err, "newer"));
    assert_non_null(strstr(err, "99"));
    /* Left as it was. */
    assert_int_equal(query_int(f->path, "PRAGMA user_version"), 99);
}

/* A long job's progress events are pruned to the recent ones; its state and
 * epoch events stay, seq keeps counting, and a replay from any point gets
 * what is left in order. */
static void test_job_progress_events_bounded(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    char err[256] = "";
    int64_t id = 0, seq = 0;
    assert_int_equal(registry_insert_job(r, "{}", &id, err, sizeof err), 0); /* event 1: queued */
    int total = 3 * REGISTRY_JOB_PROGRESS_KEPT, epochs_sent = 0;
    for (int i = 0; i < total; i++) {
        jobs_event_type type = i % 100 == 50 ? JOBS_EVENT_EPOCH : JOBS_EVENT_PROGRESS;
        epochs_sent += i % 100 == 50;
        assert_int_equal(registry_append_job_event(r, id, type, "{}", &seq, err, sizeof err), 0);
        assert_int_equal(seq, i + 2);
    }
    registry_job_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(registry_list_job_events(r, id, 0, 100000, &ev, &n, err, sizeof err), 0);
    int progress = 0, epochs = 0;
    int64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(ev[i].seq > prev);
        prev = ev[i].seq;
        if (ev[i].type == JOBS_EVENT_PROGRESS) {
            progress++;
            assert_true(ev[i].seq > seq - REGISTRY_JOB_PROGRESS_KEPT);
        }
        epochs += ev[i].type == JOBS_EVENT_EPOCH;
    }
    assert_int_equal(ev[0].type, JOBS_EVENT_STATE); /* queued, first of all */
    assert_int_equal(ev[0].state, JOBS_STATE_QUEUED);
    assert_int_equal(epochs, epochs_sent);
    assert_true(progress >= REGISTRY_JOB_PROGRESS_KEPT - epochs_sent - 1);
    assert_true(progress <= REGISTRY_JOB_PROGRESS_KEPT);
    assert_int_equal(prev, seq);
    registry_free_job_events(ev, n);
    registry_close(r);
}

static void test_open_errors(void **state)
{
    fixture *f = *state;
    registry *r = NULL;
    char err[256] = "";
    char path[200];
    /* A directory where the file should be. */
    snprintf(path, sizeof path, "%s", f->dir);
    assert_int_not_equal(registry_open(path, &r, err, sizeof err), REGISTRY_OK);
    assert_null(r);
    assert_true(strlen(err) > 0);
    assert_int_equal(registry_open("", &r, err, sizeof err), REGISTRY_ERR_ARG);
}

/* ---- what a write that waits holds up ---- */

/* A connection of its own to the registry, held open: another process. */
typedef struct {
    sqlite3 *db;
    PGconn *pg;
} other_conn;

static void other_open(const fixture *f, other_conn *o)
{
    memset(o, 0, sizeof *o);
    if (is_pg(f)) {
        o->pg = PQconnectdb(f->path);
        assert_int_equal(PQstatus(o->pg), CONNECTION_OK);
    } else {
        assert_int_equal(sqlite3_open_v2(f->path, &o->db, SQLITE_OPEN_READWRITE, NULL),
                         SQLITE_OK);
    }
}

static void other_exec(other_conn *o, const char *sql)
{
    if (o->pg) {
        PGresult *res = PQexec(o->pg, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            print_error("%s: %s\n", sql, PQerrorMessage(o->pg));
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    } else {
        assert_int_equal(sqlite3_exec(o->db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
}

static void other_close(other_conn *o)
{
    PQfinish(o->pg);
    sqlite3_close(o->db);
}

typedef struct {
    registry *r;
    const char *bytes;
    int status;
    int done; /* atomic */
} held_put;

static void *held_put_thread(void *arg)
{
    held_put *j = arg;
    char err[256];
    int created = 0;
    j->status = registry_put_checkpoint(j->r, "m", (const uint8_t *)j->bytes, strlen(j->bytes),
                                        NULL, NULL, NULL, "upload", NULL, &created, err,
                                        sizeof err);
    if (j->status)
        print_error("put: %s\n", err);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

typedef struct {
    registry *r;
    double worst_s; /* the slowest round */
    int wrong;      /* rounds that did not see the registry's one version */
    int done;       /* atomic */
} reads_job;

/* Rounds of reads, each checked against the registry's one version (no
 * cmocka assert off the test's thread). */
static void *reads_thread(void *arg)
{
    reads_job *j = arg;
    char err[256];
    for (int round = 0; round < 5; round++) {
        double t0 = harness_now_s();
        registry_model_info *models = NULL;
        registry_checkpoint_info info;
        registry_job *jobs = NULL;
        size_t n = 0, n_jobs = 0;
        int ok = registry_list_models(j->r, &models, &n, err, sizeof err) == REGISTRY_OK &&
                 n == 1 && models[0].latest_version == 1;
        registry_free_models(models);
        ok = ok && registry_resolve(j->r, "m", NULL, &info, err, sizeof err) == REGISTRY_OK &&
             info.version == 1;
        ok = ok && registry_count_checkpoints(j->r) == 1;
        ok = ok && registry_list_jobs(j->r, NULL, 0, 0, &jobs, &n_jobs, err, sizeof err) ==
                       REGISTRY_OK;
        registry_free_jobs(jobs, n_jobs);
        j->wrong += !ok;
        double took = harness_now_s() - t0;
        j->worst_s = took > j->worst_s ? took : j->worst_s;
    }
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Another process holds up an upload's bytes for 2 s (SQLite: the file's
 * write lock; PostgreSQL: an uncommitted row of the same sha256, which the
 * staging insert waits for). Reads answer meanwhile: the bytes are written
 * before the registry's lock is taken, on a connection of their own (before,
 * on PostgreSQL, the reads waited the 2 s). Then the upload completes. */
static void test_reads_beside_waiting_put(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    put(r, "m", "m-one", 1);
    const char *bytes = "m-two, held up";
    char sha[65], sql[256], err[256];
    sha256_hex((const uint8_t *)bytes, strlen(bytes), sha);
    other_conn o;
    other_open(f, &o);
    if (is_pg(f)) {
        other_exec(&o, "BEGIN");
        snprintf(sql, sizeof sql,
                 "INSERT INTO blobs (sha256, size, data) VALUES ('%s', 1, '\\x00')", sha);
        other_exec(&o, sql);
    } else {
        other_exec(&o, "BEGIN IMMEDIATE");
    }
    double held_at = harness_now_s();
    held_put job = {.r = r, .bytes = bytes};
    pthread_t t, reader;
    assert_int_equal(pthread_create(&t, NULL, held_put_thread, &job), 0);
    harness_sleep_ms(300);
    reads_job reads = {.r = r};
    assert_int_equal(pthread_create(&reader, NULL, reads_thread, &reads), 0);
    while (!__atomic_load_n(&reads.done, __ATOMIC_ACQUIRE) && harness_now_s() - held_at < 2.0)
        harness_sleep_ms(10);
    assert_false(__atomic_load_n(&job.done, __ATOMIC_ACQUIRE)); /* it was held up */
    other_exec(&o, "ROLLBACK");
    other_close(&o);
    pthread_join(reader, NULL);
    print_message("reads beside a held-up upload: slowest round %.1f ms\n", reads.worst_s * 1e3);
    assert_true(reads.worst_s < 0.5);
    assert_int_equal(reads.wrong, 0);
    pthread_join(t, NULL);
    assert_int_equal(job.status, REGISTRY_OK);
    assert_int_equal(resolve_version(r, "m", NULL), 2);
    uint8_t *blob = NULL;
    size_t len = 0;
    assert_int_equal(registry_get_blob(r, sha, &blob, &len, err, sizeof err), REGISTRY_OK);
    assert_int_equal(len, strlen(bytes));
    assert_memory_equal(blob, bytes, len);
    free(blob);
    registry_close(r);
}

typedef struct {
    registry *r;
    int status;
    int done; /* atomic */
} held_alias;

static void *held_alias_thread(void *arg)
{
    held_alias *j = arg;
    char err[256];
    j->status = registry_set_alias(j->r, "m", "prod", 1, err, sizeof err);
    if (j->status)
        print_error("alias: %s\n", err);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

typedef struct {
    registry *r;
    const char *sha256;
    int status;
    uint8_t *blob;
    size_t len;
    double took_s;
    int done; /* atomic */
} blob_read;

static void *blob_read_thread(void *arg)
{
    blob_read *j = arg;
    char err[256];
    registry_checkpoint_info info;
    double t0 = harness_now_s();
    j->status = registry_get_blob(j->r, j->sha256, &j->blob, &j->len, err, sizeof err);
    registry_model_info *models = NULL;
    size_t n = 0;
    int64_t counts[JOBS_STATE_COUNT];
    if (!j->status)
        j->status = registry_list_models(j->r, &models, &n, err, sizeof err);
    registry_free_models(models);
    if (!j->status)
        j->status = registry_count_jobs(j->r, counts, err, sizeof err);
    /* the reads that see one state over several statements: GET
     * /models/NAME[/versions/V], a model cache miss, the versions list */
    if (!j->status)
        j->status = registry_resolve(j->r, "m", NULL, &info, err, sizeof err);
    if (!j->status && (info.version != 1 || strcmp(info.sha256, j->sha256) != 0))
        j->status = -1;
    registry_checkpoint c;
    if (!j->status)
        j->status = registry_get_checkpoint(j->r, "m", 1, &c, err, sizeof err);
    if (!j->status) {
        j->status = strcmp(c.info.sha256, j->sha256) != 0 ? -1 : 0;
        registry_free_checkpoint(&c);
    }
    registry_checkpoint *versions = NULL;
    if (!j->status) {
        j->status = registry_list_checkpoints(j->r, "m", &versions, &n, err, sizeof err);
        if (!j->status && n != 1)
            j->status = -1;
        registry_free_checkpoints(versions, n);
    }
    registry_alias_info *aliases = NULL;
    if (!j->status) {
        j->status = registry_list_aliases(j->r, NULL, &aliases, &n, err, sizeof err);
        if (!j->status && (n != 1 || strcmp(aliases[0].alias, "latest") != 0))
            j->status = -1; /* prod is not set yet: its write waits */
        free(aliases);
    }
    if (!j->status && registry_count_checkpoints(j->r) != 1)
        j->status = -1;
    if (j->status)
        print_error("read beside a waiting write: %s\n", j->status < 0 ? "wrong answer" : err);
    j->took_s = harness_now_s() - t0;
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* A write waits for another process (SQLite: the file's write lock;
 * PostgreSQL: a lock on the aliases table), holding the registry's write
 * lock: a checkpoint's bytes, the list of models, the job counts, a
 * resolve, a version, the versions and aliases of a model (the default
 * one) and the checkpoint count are read meanwhile, on connections of
 * their own (on PostgreSQL, until this session, the transactional reads
 * waited for the write: the full 2 s). */
static void test_blob_beside_waiting_write(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    const char *bytes = "m-one, read while a write waits";
    put(r, "m", bytes, 1);
    char sha[65];
    sha256_hex((const uint8_t *)bytes, strlen(bytes), sha);
    other_conn o;
    other_open(f, &o);
    other_exec(&o, is_pg(f) ? "BEGIN" : "BEGIN IMMEDIATE");
    if (is_pg(f))
        other_exec(&o, "LOCK TABLE aliases IN EXCLUSIVE MODE");
    held_alias job = {.r = r};
    pthread_t t, reader;
    assert_int_equal(pthread_create(&t, NULL, held_alias_thread, &job), 0);
    harness_sleep_ms(300);
    blob_read rd = {.r = r, .sha256 = sha};
    double t0 = harness_now_s();
    assert_int_equal(pthread_create(&reader, NULL, blob_read_thread, &rd), 0);
    /* 2 s at most: a read that waits for the write waits for this ROLLBACK */
    while (!__atomic_load_n(&rd.done, __ATOMIC_ACQUIRE) && harness_now_s() - t0 < 2.0)
        harness_sleep_ms(5);
    int held = !__atomic_load_n(&job.done, __ATOMIC_ACQUIRE);
    other_exec(&o, "ROLLBACK");
    other_close(&o);
    pthread_join(reader, NULL);
    pthread_join(t, NULL);
    print_message("bytes read beside a waiting write in %.1f ms\n", rd.took_s * 1e3);
    assert_true(held); /* the write did wait */
    assert_int_equal(rd.status, REGISTRY_OK);
    assert_int_equal(rd.len, strlen(bytes));
    assert_memory_equal(rd.blob, bytes, rd.len);
    free(rd.blob);
    assert_true(rd.took_s < 0.2);
    assert_int_equal(job.status, REGISTRY_OK);
    registry_close(r);
}

/* A put or a job's result that fails after its bytes were staged leaves
 * them nowhere; bytes that a crash left unnamed go at the next open. */
static void test_failed_put_leaves_no_bytes(void **state)
{
    fixture *f = *state;
    registry *r = open_ok(f);
    const char *bytes = "bytes of a put that fails";
    char err[256];
    int created = 0;
    assert_int_equal(registry_put_checkpoint(r, "m", (const uint8_t *)bytes, strlen(bytes), NULL,
                                             NULL, "{not json", "upload", NULL, &created, err,
                                             sizeof err),
                     REGISTRY_ERR_ARG);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 0);
    assert_int_not_equal(registry_succeed_job(r, 999, "m", (const uint8_t *)bytes, strlen(bytes),
                                              NULL, NULL, NULL, NULL, err, sizeof err),
                         REGISTRY_OK);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 0);
    put(r, "m", "m-one", 1);
    registry_close(r);

    /* As a process that died between staging and its put leaves them. */
    other_conn o;
    other_open(f, &o);
    char sql[256], sha[65];
    memset(sha, 'a', 64);
    sha[64] = '\0';
    snprintf(sql, sizeof sql, "INSERT INTO blobs (sha256, size, data) VALUES ('%s', 1, %s)", sha,
             is_pg(f) ? "'\\x00'" : "x'00'");
    other_exec(&o, sql);
    other_close(&o);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 2);
    r = open_ok(f);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 1);
    assert_int_equal(resolve_version(r, "m", NULL), 1);
    registry_close(r);
}

/* ---- the read-only open (both backends) ---- */

/* sql on a plain connection of the test's own, for what no registry call
 * does (changing the schema version, counting tables). */
static void exec_path(const char *path, const char *sql)
{
    if (strncmp(path, "postgresql://", 13) == 0) {
        PGconn *c = PQconnectdb(path);
        assert_int_equal(PQstatus(c), CONNECTION_OK);
        PGresult *res = PQexec(c, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            print_error("%s: %s\n", sql, PQerrorMessage(c));
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        PQfinish(c);
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    exec_ok(db, sql);
    sqlite3_close(db);
}

/* The tables of the database (PostgreSQL: its public schema). */
static int64_t count_tables(const char *path)
{
    return query_int(path, strncmp(path, "postgresql://", 13) == 0
                               ? "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'"
                               : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'");
}

/* registry_open_read_only's refusal: status, a message naming why, no handle. */
static void expect_ro_refused(const fixture *f, int status, const char *why)
{
    registry *r = (registry *)1;
    char err[256] = "";
    assert_int_equal(registry_open_read_only(f->path, &r, err, sizeof err), status);
    assert_null(r);
    if (!strstr(err, why))
        print_error("'%s' does not say '%s'\n", err, why);
    assert_non_null(strstr(err, why));
}

/* The whole file's bytes, malloc'd (the caller frees), *len of them. */
static uint8_t *file_bytes(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, 1 << 20, fp);
    fclose(fp);
    return buf;
}

/* A read-only registry reads what is there and changes nothing: no file, no
 * table, no migration made by opening it, and every write refused cleanly
 * (a registry error, the database as it was). */
static void test_read_only_open(void **state)
{
    fixture *f = *state;
    char err[256] = "";
    if (is_pg(f)) {
        /* someone else's database: vaed's tables are not made there */
        expect_ro_refused(f, REGISTRY_ERR_ARG, "is not a vaed registry (no vaed_schema table)");
        assert_int_equal(count_tables(f->path), 0);
    } else {
        expect_ro_refused(f, REGISTRY_ERR_NOT_FOUND, "no registry at");
        struct stat st;
        char dir[160];
        snprintf(dir, sizeof dir, "%s/var", f->dir);
        assert_int_not_equal(stat(dir, &st), 0); /* not even the directory */
        make_dir_of(f);
        FILE *empty = fopen(f->path, "wb");
        assert_non_null(empty);
        fclose(empty);
        expect_ro_refused(f, REGISTRY_ERR_ARG, "is not a vaed registry (no models table)");
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_size, 0);
        remove(f->path);
    }

    registry *w = open_ok(f);
    put(w, "m", "first bytes", 1);
    registry_close(w);
    size_t len_before = 0, len_after = 0;
    uint8_t *before = is_pg(f) ? NULL : file_bytes(f->path, &len_before);

    registry *r = NULL;
    int rc = registry_open_read_only(f->path, &r, err, sizeof err);
    if (rc)
        print_error("registry_open_read_only: %s\n", err);
    assert_int_equal(rc, REGISTRY_OK);
    int known = (int)(is_pg(f) ? vaed_pg_schema_migration_count : vaed_schema_migration_count);
    assert_int_equal(registry_schema_version(r), known);
    assert_int_equal(resolve_version(r, "m", NULL), 1);
    registry_checkpoint_info info;
    assert_int_equal(registry_resolve(r, "m", "latest", &info, err, sizeof err), REGISTRY_OK);
    uint8_t *blob = NULL;
    size_t len = 0;
    assert_int_equal(registry_get_blob(r, info.sha256, &blob, &len, err, sizeof err), REGISTRY_OK);
    assert_int_equal(len, strlen("first bytes"));
    assert_memory_equal(blob, "first bytes", len);
    free(blob);

    /* Every kind of write fails with a registry error, and leaves nothing. */
    err[0] = '\0';
    rc = registry_put_checkpoint(r, "m", (const uint8_t *)"other", 5, NULL, NULL, NULL, "upload",
                                 NULL, NULL, err, sizeof err);
    assert_int_equal(rc, REGISTRY_ERR_DB);
    assert_true(err[0] != '\0');
    assert_int_equal(registry_put_checkpoint(r, "new", (const uint8_t *)"x", 1, NULL, NULL, NULL,
                                             "upload", NULL, NULL, err, sizeof err),
                     REGISTRY_ERR_DB);
    assert_int_equal(registry_set_alias(r, "m", "prod", 1, err, sizeof err), REGISTRY_ERR_DB);
    int64_t id = 0;
    assert_int_equal(registry_insert_job(r, "{}", &id, err, sizeof err), REGISTRY_ERR_DB);
    assert_int_equal(registry_delete_version(r, "m", 1, err, sizeof err), REGISTRY_ERR_DB);
    assert_int_equal(resolve_version(r, "m", NULL), 1); /* still readable after */
    if (is_pg(f)) {
        /* Sessions lost (a server restart): the new ones are READ ONLY too. */
        assert_true(query_int(f->path, "SELECT COUNT(pg_terminate_backend(pid)) "
                                       "FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND pid <> pg_backend_pid()") >= 1);
        assert_int_equal(resolve_version(r, "m", NULL), 1); /* its read reconnects */
        /* the first write finds its connection gone; the next one reconnects */
        assert_int_not_equal(registry_set_alias(r, "m", "prod", 1, err, sizeof err), REGISTRY_OK);
        assert_int_equal(registry_set_alias(r, "m", "prod", 1, err, sizeof err), REGISTRY_ERR_DB);
        assert_non_null(strstr(err, "read-only"));
    }
    registry_close(r);

    if (!is_pg(f)) {
        uint8_t *after = file_bytes(f->path, &len_after);
        assert_int_equal(len_after, len_before);
        assert_memory_equal(after, before, len_before);
        free(after);
        free(before);
    }
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM checkpoints"), 1);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM blobs"), 1);
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM aliases"), 1); /* latest only */
    assert_int_equal(query_int(f->path, "SELECT COUNT(*) FROM jobs"), 0);

    /* Another schema version is refused, and left as it is: an older one is
     * not migrated by a read. */
    char sql[96];
    const char *version_sql = is_pg(f) ? "SELECT version FROM vaed_schema" : "PRAGMA user_version";
    snprintf(sql, sizeof sql,
             is_pg(f) ? "UPDATE vaed_schema SET version = %d" : "PRAGMA user_version = %d",
             known - 1);
    exec_path(f->path, sql);
    expect_ro_refused(f, REGISTRY_ERR_CONFLICT, "older than this vaed's");
    assert_int_equal(query_int(f->path, version_sql), known - 1);
    snprintf(sql, sizeof sql,
             is_pg(f) ? "UPDATE vaed_schema SET version = %d" : "PRAGMA user_version = %d", 99);
    exec_path(f->path, sql);
    expect_ro_refused(f, REGISTRY_ERR_CONFLICT, "newer than this vaed knows");
    assert_int_equal(query_int(f->path, version_sql), 99);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aliases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_keeps_numbering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_unrelated_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_progress_events_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_beside_waiting_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_put_leaves_no_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_beside_waiting_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_open, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test_setup_teardown(test_put_versions, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_resolve, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_aliases, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_latest_by_hand, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_delete_version, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_lists, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_puts, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_job_progress_events_bounded, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_reads_beside_waiting_put, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_failed_put_leaves_no_bytes, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_blob_beside_waiting_write, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_open, setup_pg, teardown),
    };
    char err[256];
    if (pg_server_start(&pg, err, sizeof err)) {
        fprintf(stderr, "test_registry: no PostgreSQL for the second backend: %s\n", err);
        return failed + 1;
    }
    failed += cmocka_run_group_tests_name("registry on PostgreSQL", pg_tests, NULL, NULL);
    pg_server_free(&pg);
    return failed;
}
