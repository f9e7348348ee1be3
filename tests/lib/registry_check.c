#include "tests/lib/registry_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "engine/checkpoint.h"
#include "server/sha256.h"

static int fail(char *err, size_t errlen, const char *what, sqlite3 *db)
{
    snprintf(err, errlen, "%s: %s", what, db ? sqlite3_errmsg(db) : "cannot open");
    return -1;
}

static int add_version(registry_check_report *rep, const char *model, int64_t version,
                       const char *sha)
{
    registry_check_version *grown =
        realloc(rep->versions, (size_t)(rep->n_versions + 1) * sizeof *grown);
    if (!grown)
        return -1;
    rep->versions = grown;
    registry_check_version *v = &rep->versions[rep->n_versions++];
    snprintf(v->model, sizeof v->model, "%s", model);
    v->version = version;
    snprintf(v->sha256, sizeof v->sha256, "%s", sha);
    return 0;
}

int registry_check_file(const char *db_path, registry_check_report *rep, char *err,
                        size_t errlen)
{
    memset(rep, 0, sizeof *rep);
    sqlite3 *db = NULL; /* owned: closed at end */
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fail(err, errlen, db_path, db);
        goto end;
    }
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        fail(err, errlen, "integrity_check", db);
        goto end;
    }
    const char *verdict = (const char *)sqlite3_column_text(st, 0);
    if (!verdict || strcmp(verdict, "ok")) {
        snprintf(err, errlen, "integrity_check: %s", verdict ? verdict : "(null)");
        goto end;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK) {
        fail(err, errlen, "foreign_key_check", db);
        goto end;
    }
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(err, errlen, "foreign_key_check: table %s has a dangling row",
                 (const char *)sqlite3_column_text(st, 0));
        goto end;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT sha256, size, data FROM blobs", -1, &st, NULL) !=
        SQLITE_OK) {
        fail(err, errlen, "reading blobs", db);
        goto end;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *sha = (const char *)sqlite3_column_text(st, 0);
        int64_t size = sqlite3_column_int64(st, 1);
        const uint8_t *data = sqlite3_column_blob(st, 2);
        int len = sqlite3_column_bytes(st, 2);
        char hex[65];
        sha256_hex(data, (size_t)len, hex);
        if (!sha || strcmp(sha, hex) || size != len) {
            snprintf(err, errlen, "blob %s: its %d bytes hash to %s (size column %lld)",
                     sha ? sha : "(null)", len, hex, (long long)size);
            goto end;
        }
        vae_model m;
        char why[256];
        if (ckpt_load_mem(&m, data, (size_t)len, NULL, why, sizeof why) != VAE_OK) {
            snprintf(err, errlen, "blob %s is not a checkpoint: %s", sha, why);
            goto end;
        }
        vae_free(&m);
        rep->n_blobs++;
    }
    if (step != SQLITE_DONE) {
        fail(err, errlen, "reading blobs", db);
        goto end;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT m.name, c.version, c.sha256, b.size IS NOT NULL "
                           "FROM checkpoints c JOIN models m ON m.id = c.model_id "
                           "LEFT JOIN blobs b ON b.sha256 = c.sha256 "
                           "ORDER BY m.name, c.version",
                           -1, &st, NULL) != SQLITE_OK) {
        fail(err, errlen, "reading versions", db);
        goto end;
    }
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *model = (const char *)sqlite3_column_text(st, 0);
        const char *sha = (const char *)sqlite3_column_text(st, 2);
        if (!sqlite3_column_int(st, 3)) {
            snprintf(err, errlen, "%s version %lld names missing bytes %s", model,
                     (long long)sqlite3_column_int64(st, 1), sha);
            goto end;
        }
        if (add_version(rep, model, sqlite3_column_int64(st, 1), sha)) {
            snprintf(err, errlen, "out of memory");
            goto end;
        }
    }
    if (step != SQLITE_DONE) {
        fail(err, errlen, "reading versions", db);
        goto end;
    }
    rc = 0;
end:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

int64_t registry_check_find(const registry_check_report *rep, const char *model,
                            const char *sha256)
{
    for (int i = 0; i < rep->n_versions; i++)
        if (!strcmp(rep->versions[i].model, model) && !strcmp(rep->versions[i].sha256, sha256))
            return rep->versions[i].version;
    return 0;
}

void registry_check_free(registry_check_report *rep)
{
    free(rep->versions);
    memset(rep, 0, sizeof *rep);
}
