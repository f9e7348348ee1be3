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

/* CLI_INT and CLI_SIZE are CLI_LONG stored into an int or a size_t field
 * (a struct's own, with no long to copy it from): give them a [min, max]
 * the field's type holds. */
typedef enum { CLI_STRING, CLI_LONG, CLI_DOUBLE, CLI_FLAG, CLI_INT, CLI_SIZE } cli_type;

typedef struct {
    const char *name;
    cli_type type;
    void *dst;        /* const char **, long *, double *, int * (CLI_FLAG, CLI_INT), size_t * */
    long min, max;    /* for CLI_LONG, CLI_INT and CLI_SIZE, when min < max */
    const char *help;
} cli_option;

enum { CLI_OK = 0, CLI_ERR = 1, CLI_HELP = 2 };

int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts,
              const char *short_aliases);
/* The i-th positional argument of the last cli_parse, or NULL. */
const char *cli_positional(int i);

#endif
