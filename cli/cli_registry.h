/* cli_registry: the vaed subcommands that work with a model registry.
 *
 *     vaed push --url http://HOST:PORT --model NAME FILE [--token-file F]
 *     vaed models [--url URL]
 *     vaed pull --url URL --model NAME [--version V] --out FILE
 *     vaed registry list|import|export ... [--data-dir DIR]   (the database file, offline)
 *
 * push, models and pull speak HTTP/1.1 to a running `vaed serve` over a plain
 * socket (http:// only; no TLS, no libcurl). push sends X-Content-SHA256 so
 * the server refuses bytes damaged on the way; pull checks the bytes it got
 * against the ETag (the sha256) before it writes the file, atomically.
 * main() passes argv with argv[0] = the subcommand's name; each returns the
 * process exit code (0 ok, 1 failed, 2 usage).
 */
#ifndef CLI_REGISTRY_H
#define CLI_REGISTRY_H

int cli_push(int argc, char **argv);
int cli_models(int argc, char **argv);
int cli_pull(int argc, char **argv);
int cli_registry(int argc, char **argv);

#endif
