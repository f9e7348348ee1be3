/* registry_check: an independent look at a registry file, for the fault,
 * crash and soak tests: is it whole, and is every version a checkpoint.
 *
 *     registry_check_report rep;
 *     if (registry_check_file("DIR/registry.db", &rep, err, sizeof err)) ... // err: what is wrong
 *     ... rep.n_versions, rep.versions[i].model / .version / .sha256 ...
 *     registry_check_free(&rep);
 *
 * It opens the file read-only beside a running daemon (WAL lets it) and
 * checks, with its own SQL rather than the registry module's: PRAGMA
 * integrity_check says ok, PRAGMA foreign_key_check finds nothing, every
 * blob's bytes hash to its sha256 and have its size, and every version's
 * bytes load as a checkpoint (ckpt_load_mem), so no version is partial.
 */
#ifndef REGISTRY_CHECK_H
#define REGISTRY_CHECK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char model[128];
    int64_t version;
    char sha256[65];
} registry_check_version;

typedef struct {
    int n_versions;
    registry_check_version *versions; /* owned; in (model, version) order */
    int n_blobs;
} registry_check_report;

/* 0, or -1 with err saying what is wrong. rep is filled either way (free it). */
int registry_check_file(const char *db_path, registry_check_report *rep, char *err,
                        size_t errlen);
/* The version of model whose bytes are sha256, or 0 when there is none. */
int64_t registry_check_find(const registry_check_report *rep, const char *model,
                            const char *sha256);
void registry_check_free(registry_check_report *rep);

#endif
