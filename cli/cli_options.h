/* cli_options: --flag VALUE parsing for vaed's subcommands.
 *
 *     long n = 16; const char *out = NULL;
 *     cli_option opts[] = {{"n", CLI_LONG, &n, 1, 1024, "samples"},
 *                          {"out", CLI_STRING, &out, 0, 0, "file"}};
 *     int rc = cli_parse("sample", argc, argv, opts, 2, "o");  // argv[0] = "sample"
 *     if (rc) return rc == CLI_HELP ? 0 : 2;                   // help or error printed
 *
 * Accepts --name VALUE and --name=VALUE; -X VALUE for an option named X, or
 * for the option starting with X when X is in short_aliases. Numbers are
 * parsed strictly (no trailing characters, in [min, max] when min < max).
 * Anything not starting with '-' is positional (cli_positional).
 * String values point into argv.
 */
#ifndef CLI_OPTIONS_H
#define CLI_OPTIONS_H

#include <stddef.h>

typedef enum { CLI_STRING, CLI_LONG, CLI_DOUBLE, CLI_FLAG } cli_type;

typedef struct {
    const char *name;
    cli_type type;
    void *dst;        /* const char **, long *, double * or int * (CLI_FLAG) */
    long min, max;    /* for CLI_LONG, when min < max */
    const char *help;
} cli_option;

enum { CLI_OK = 0, CLI_ERR = 1, CLI_HELP = 2 };

int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts,
              const char *short_aliases);
/* The i-th positional argument of the last cli_parse, or NULL. */
const char *cli_positional(int i);

#endif
