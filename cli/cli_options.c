#include "cli/cli_options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POSITIONAL 16
static const char *positional[MAX_POSITIONAL];
static int n_positional;

const char *cli_positional(int i) { return i >= 0 && i < n_positional ? positional[i] : NULL; }

static void print_help(const char *cmd, const cli_option *opts, size_t n)
{
    printf("usage: vaed %s [OPTIONS]\n\noptions:\n", cmd);
    for (size_t i = 0; i < n; i++) {
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s%s", opts[i].name,
                 opts[i].type == CLI_FLAG ? "" : (opts[i].type == CLI_STRING ? " S" : " N"));
        printf("  %-22s %s\n", lhs, opts[i].help ? opts[i].help : "");
    }
}

static const cli_option *find(const char *arg, const cli_option *opts, size_t n, const char *shorts,
                              const char **inline_value)
{
    *inline_value = NULL;
    if (arg[0] == '-' && arg[1] == '-') {
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (eq) *inline_value = eq + 1;
        for (size_t i = 0; i < n; i++)
            if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0) return &opts[i];
        return NULL;
    }
    if (arg[0] == '-' && arg[1] && !arg[2]) {
        for (size_t i = 0; i < n; i++)
            if (opts[i].name[0] == arg[1] && !opts[i].name[1]) return &opts[i];
        if (shorts && strchr(shorts, arg[1]))
            for (size_t i = 0; i < n; i++)
                if (opts[i].name[0] == arg[1]) return &opts[i];
    }
    return NULL;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_option *opts, size_t n_opts,
              const char *short_aliases)
{
    n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(cmd, opts, n_opts);
            return CLI_HELP;
        }
        if (arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (n_positional == MAX_POSITIONAL) {
                fprintf(stderr, "vaed %s: too many arguments\n", cmd);
                return CLI_ERR;
            }
            positional[n_positional++] = arg;
            continue;
        }
        const char *value;
        const cli_option *o = find(arg, opts, n_opts, short_aliases, &value);
        if (!o) {
            fprintf(stderr, "vaed %s: unknown option %s (see vaed %s --help)\n", cmd, arg, cmd);
            return CLI_ERR;
        }
        if (o->type == CLI_FLAG) {
            if (value) {
                fprintf(stderr, "vaed %s: --%s takes no value\n", cmd, o->name);
                return CLI_ERR;
            }
            *(int *)o->dst = 1;
            continue;
        }
        if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vaed %s: --%s needs a value\n", cmd, o->name);
                return CLI_ERR;
            }
            value = argv[++i];
        }
        char *end;
        errno = 0;
        switch (o->type) {
        case CLI_STRING:
            *(const char **)o->dst = value;
            break;
        case CLI_LONG:
        case CLI_INT:
        case CLI_SIZE: {
            long v = strtol(value, &end, 10);
            if (!*value || *end || errno || (o->min < o->max && (v < o->min || v > o->max))) {
                if (o->min < o->max)
                    fprintf(stderr, "vaed %s: --%s wants an integer in %ld..%ld, not \"%s\"\n",
                            cmd, o->name, o->min, o->max, value);
                else
                    fprintf(stderr, "vaed %s: --%s wants an integer, not \"%s\"\n", cmd, o->name,
                            value);
                return CLI_ERR;
            }
            if (o->type == CLI_INT)
                *(int *)o->dst = (int)v;
            else if (o->type == CLI_SIZE)
                *(size_t *)o->dst = (size_t)v;
            else
                *(long *)o->dst = v;
            break;
        }
        case CLI_DOUBLE: {
            double v = strtod(value, &end);
            if (!*value || *end || errno || !isfinite(v)) {
                fprintf(stderr, "vaed %s: --%s wants a number, not \"%s\"\n", cmd, o->name, value);
                return CLI_ERR;
            }
            *(double *)o->dst = v;
            break;
        }
        case CLI_FLAG:
            break;
        }
    }
    return CLI_OK;
}
