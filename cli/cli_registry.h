/* cli_registry: the vaed subcommands that work with a model registry.
 *
 *     vaed push --url http://HOST:PORT --model NAME FILE [--token-file F]
 *     vaed models [--url URL]
 *     vaed pull --url URL --model NAME [--version V] --out FILE
 *     vaed registry list|import|export ... [--registry FILE|URL] [--data-dir DIR]
 *     vaed registry copy --from FILE|URL --to URL|FILE
 *
 * push, models and pull speak HTTP/1.1 to a running `vaed serve` over a plain
 * socket (http:// only; no TLS, no libcurl). push sends X-Content-SHA256 so
 * the server refuses bytes damaged on the way; pull checks the bytes it got
 * against the ETag (the sha256) before it writes the file, atomically.
 * The registry subcommands (and `vaed train --register`) open the registry
 * themselves, found as `vaed serve` finds it: --registry, else
 * $VAED_REGISTRY, else DATA_DIR/registry.db; a postgresql:// URL works through
 * the same registry calls as a file, and its password is never printed.
 * main() passes argv with argv[0] = the subcommand's name; each returns the
 * process exit code (0 ok, 1 failed, 2 usage).
 */
#ifndef CLI_REGISTRY_H
#define CLI_REGISTRY_H

#include "server/registry.h"

int cli_push(int argc, char **argv);
int cli_models(int argc, char **argv);
int cli_pull(int argc, char **argv);
int cli_registry(int argc, char **argv);

/* Opens the registry of --registry flag (NULL when not given), else
 * $VAED_REGISTRY, else data_dir/registry.db, into *out (the caller closes
 * it). Returns 0, or the exit code after printing "vaed WHO: ..." on stderr
 * (1 cannot open: unreachable server, wrong database, bad file, not a vaed
 * registry, another schema version; 2 a path too long). write: opened with
 * registry_open (a missing file is created, the schema migrated); else with
 * registry_open_read_only (list, export, copy's source: nothing changes),
 * and a file that is not there leaves *out NULL and returns 0 when
 * absent_ok is set (nothing to read), 1 ("no registry at PATH") when not. */
int cli_registry_open(const char *who, const char *flag, const char *data_dir, int write,
                      int absent_ok, registry **out);

#endif
