/* cli_registry: push, models, pull (HTTP clients of `vaed serve`, through
 * http_client.h) and the offline registry subcommands. */
#include "cli/cli_registry.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "engine/checkpoint.h"
#include "engine/file_io.h"
#include "engine/vae.h"
#include "cli/cli_options.h"
#include "cli/http_client.h"
#include "server/registry.h"
#include "server/sha256.h"

#define CLI_DEFAULT_URL HTTP_CLIENT_DEFAULT_URL

/* ---- files ------------------------------------------------------------- */

/* Reads a whole file into *out (owned by the caller). 0 or -1 with err. */
static int read_file(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1); /* owned: handed to *out */
    if (!buf || fread(buf, 1, n, f) != n) {
        snprintf(err, errlen, "%s: %s", path, buf ? "read error" : "out of memory");
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

/* ---- push --------------------------------------------------------------- */

int cli_push(int argc, char **argv)
{
    const char *url = CLI_DEFAULT_URL, *model = NULL, *token_file = NULL;
    cli_option opts[] = {
        {"url", CLI_STRING, &url, 0, 0, "server, http://HOST:PORT (default " CLI_DEFAULT_URL ")"},
        {"model", CLI_STRING, &model, 0, 0, "model name to add the checkpoint to"},
        {"token-file", CLI_STRING, &token_file, 0, 0, "bearer token file (else $VAED_TOKEN)"},
    };
    int rc = cli_parse("push", argc, argv, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    const char *file = cli_positional(0);
    if (!model || !file || cli_positional(1)) {
        fprintf(stderr, "usage: vaed push --url URL --model NAME FILE [--token-file F]\n");
        return 2;
    }
    if (!registry_valid_name(model)) {
        fprintf(stderr, "vaed push: invalid model name %s\n", model);
        return 2;
    }
    char err[512], token[512];
    http_client_url u;
    if (http_client_parse_url(url, &u, err, sizeof err) ||
        http_client_load_token(token_file, token, sizeof token, err, sizeof err)) {
        fprintf(stderr, "vaed push: %s\n", err);
        return 2;
    }
    uint8_t *blob = NULL; /* owned: freed below */
    size_t len = 0;
    if (read_file(file, &blob, &len, err, sizeof err)) {
        fprintf(stderr, "vaed push: %s\n", err);
        return 1;
    }
    char sha[65], sha_header[96], auth[600], path[256];
    sha256_hex(blob, len, sha);
    snprintf(sha_header, sizeof sha_header, "X-Content-SHA256: %s", sha);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(path, sizeof path, "/models/%s/checkpoints", model);
    const char *headers[] = {"Content-Type: application/octet-stream", sha_header,
                             token[0] ? auth : NULL, NULL};
    http_client_reply r;
    rc = http_client_call(&u, "POST", path, headers, blob, len, &r, err, sizeof err);
    free(blob);
    if (rc) {
        fprintf(stderr, "vaed push: %s\n", err);
        return 1;
    }
    int status = 1;
    if (r.status == 200 || r.status == 201) {
        cJSON *root = cJSON_ParseWithLength(r.body, r.body_len); /* owned: freed below */
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
        if (cJSON_IsNumber(v)) {
            printf("%s %s version %lld (sha256 %s, %zu bytes)\n",
                   r.status == 201 ? "pushed" : "already present:", model,
                   (long long)v->valuedouble, sha, len);
            status = 0;
        } else {
            fprintf(stderr, "vaed push: an unexpected answer: %.200s\n", r.body);
        }
        cJSON_Delete(root);
    } else {
        http_client_print_error("push", &r);
    }
    http_client_reply_free(&r);
    return status;
}

/* ---- models ------------------------------------------------------------- */

int cli_models(int argc, char **argv)
{
    const char *url = CLI_DEFAULT_URL;
    cli_option opts[] = {
        {"url", CLI_STRING, &url, 0, 0, "server, http://HOST:PORT (default " CLI_DEFAULT_URL ")"},
    };
    int rc = cli_parse("models", argc, argv, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    char err[512];
    http_client_url u;
    if (http_client_parse_url(url, &u, err, sizeof err)) {
        fprintf(stderr, "vaed models: %s\n", err);
        return 2;
    }
    http_client_reply r;
    if (http_client_call(&u, "GET", "/models", NULL, NULL, 0, &r, err, sizeof err)) {
        fprintf(stderr, "vaed models: %s\n", err);
        return 1;
    }
    int status = 1;
    cJSON *root = r.status == 200 ? cJSON_ParseWithLength(r.body, r.body_len) : NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (cJSON_IsArray(list)) {
        const cJSON *m;
        cJSON_ArrayForEach(m, list)
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(m, "versions");
            const cJSON *latest = cJSON_GetObjectItemCaseSensitive(m, "latest_version");
            const cJSON *updated = cJSON_GetObjectItemCaseSensitive(m, "updated_at");
            printf("%s\t%lld versions\tlatest %lld\t%s\n",
                   cJSON_IsString(name) ? name->valuestring : "?",
                   cJSON_IsNumber(n) ? (long long)n->valuedouble : 0LL,
                   cJSON_IsNumber(latest) ? (long long)latest->valuedouble : 0LL,
                   cJSON_IsString(updated) ? updated->valuestring : "");
        }
        status = 0;
    } else if (r.status != 200) {
        http_client_print_error("models", &r);
    } else {
        fprintf(stderr, "vaed models: an unexpected answer: %.200s\n", r.body);
    }
    cJSON_Delete(root);
    http_client_reply_free(&r);
    return status;
}

/* ---- pull --------------------------------------------------------------- */

int cli_pull(int argc, char **argv)
{
    const char *url = CLI_DEFAULT_URL, *model = NULL, *version = "latest", *out = NULL;
    cli_option opts[] = {
        {"url", CLI_STRING, &url, 0, 0, "server, http://HOST:PORT (default " CLI_DEFAULT_URL ")"},
        {"model", CLI_STRING, &model, 0, 0, "model name"},
        {"version", CLI_STRING, &version, 0, 0, "version number or alias (default latest)"},
        {"out", CLI_STRING, &out, 0, 0, "file to write"},
    };
    int rc = cli_parse("pull", argc, argv, opts, sizeof opts / sizeof opts[0], "o");
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    if (!model || !out) {
        fprintf(stderr, "usage: vaed pull --url URL --model NAME [--version V] --out FILE\n");
        return 2;
    }
    if (!registry_valid_name(model) || !registry_valid_name(version)) {
        fprintf(stderr, "vaed pull: invalid model name or version\n");
        return 2;
    }
    char err[512], path[256];
    http_client_url u;
    if (http_client_parse_url(url, &u, err, sizeof err)) {
        fprintf(stderr, "vaed pull: %s\n", err);
        return 2;
    }
    snprintf(path, sizeof path, "/models/%s/versions/%s/file", model, version);
    http_client_reply r;
    if (http_client_call(&u, "GET", path, NULL, NULL, 0, &r, err, sizeof err)) {
        fprintf(stderr, "vaed pull: %s\n", err);
        return 1;
    }
    int status = 1;
    if (r.status != 200) {
        http_client_print_error("pull", &r);
        goto end;
    }
    char sha[65];
    sha256_hex((const uint8_t *)r.body, r.body_len, sha);
    if (strcasecmp(sha, r.etag) != 0) {
        fprintf(stderr, "vaed pull: the bytes received (sha256 %s) do not match the server's "
                        "ETag \"%s\"; nothing written\n",
                sha, r.etag);
        goto end;
    }
    if (file_io_write_atomic(out, (const uint8_t *)r.body, r.body_len, err, sizeof err)) {
        fprintf(stderr, "vaed pull: %s\n", err);
        goto end;
    }
    printf("wrote %s (%s %s, sha256 %s, %zu bytes)\n", out, model, version, sha, r.body_len);
    status = 0;
end:
    http_client_reply_free(&r);
    return status;
}

/* ---- opening the registry ---------------------------------------------- */

/* A password of url into pw ("" when none): which 0, the one of
 * user:PASSWORD@host; 1, that of a password= parameter. */
static void url_password(const char *url, int which, char *pw, size_t pwlen)
{
    pw[0] = '\0';
    if (which == 1) {
        const char *param = strstr(url, "password=");
        if (param && param > url && (param[-1] == '?' || param[-1] == '&')) {
            param += 9;
            snprintf(pw, pwlen, "%.*s", (int)strcspn(param, "&"), param);
        }
        return;
    }
    const char *scheme = strstr(url, "://");
    const char *auth = scheme ? scheme + 3 : url, *at = NULL, *colon = NULL;
    for (const char *q = auth; *q && *q != '/' && *q != '?'; q++)
        if (*q == '@')
            at = q;
    for (const char *q = auth; at && q < at; q++)
        if (*q == ':') {
            colon = q;
            break;
        }
    if (colon)
        snprintf(pw, pwlen, "%.*s", (int)(at - colon - 1), colon + 1);
}

/* msg with every occurrence of url's passwords replaced by ***: libpq quotes
 * a URL it cannot parse whole, password and all ("invalid percent-encoded
 * token", an unclosed IPv6 bracket). Passwords of fewer than 3 characters
 * are left: replacing every "a" would leave no message to read. */
static void scrub_password(const char *url, char *msg, size_t msglen)
{
    char pw[PATH_MAX], out[1024];
    for (int which = 0; which < 2; which++) {
        url_password(url, which, pw, sizeof pw);
        size_t n = strlen(pw), o = 0;
        if (n < 3)
            continue;
        for (const char *q = msg; *q && o + 4 < sizeof out;) {
            if (strncmp(q, pw, n) == 0) {
                memcpy(out + o, "***", 3);
                o += 3;
                q += n;
            } else {
                out[o++] = *q++;
            }
        }
        out[o] = '\0';
        snprintf(msg, msglen, "%s", out);
    }
}

int cli_registry_open(const char *who, const char *flag, const char *data_dir, int write,
                      int absent_ok, registry **out)
{
    *out = NULL;
    const char *env = getenv("VAED_REGISTRY");
    char where[PATH_MAX], shown[PATH_MAX], err[1024];
    int n = flag && *flag  ? snprintf(where, sizeof where, "%s", flag)
            : env && *env ? snprintf(where, sizeof where, "%s", env)
                          : snprintf(where, sizeof where, "%s/registry.db", data_dir);
    if (n < 0 || n >= (int)sizeof where) {
        fprintf(stderr, "vaed %s: the registry's path or URL is too long\n", who);
        return 2;
    }
    registry_redact_url(where, shown, sizeof shown);
    /* A read opens read-only: it creates no file (a mistyped path must not
     * become an empty registry read from, or copied over), and it neither
     * migrates nor otherwise changes a database that may be someone
     * else's, or shared by older replicas. */
    int rc = write ? registry_open(where, out, err, sizeof err)
                   : registry_open_read_only(where, out, err, sizeof err);
    if (rc == REGISTRY_ERR_NOT_FOUND && absent_ok)
        return 0;
    if (rc) {
        scrub_password(where, err, sizeof err);
        /* the PostgreSQL backend's messages name the (redacted) URL already */
        if (strstr(err, shown))
            fprintf(stderr, "vaed %s: %s\n", who, err);
        else
            fprintf(stderr, "vaed %s: %s: %s\n", who, shown, err);
        return 1;
    }
    return 0;
}

/* ---- registry (offline: a file or a PostgreSQL database) --------------- */

static int registry_import(registry *r, const char *model, const char *file)
{
    char err[512];
    uint8_t *blob = NULL; /* owned: freed below */
    size_t len = 0;
    if (read_file(file, &blob, &len, err, sizeof err)) {
        fprintf(stderr, "vaed registry import: %s\n", err);
        return 1;
    }
    vae_model m;
    memset(&m, 0, sizeof m);
    char *mj = NULL; /* owned: freed below */
    if (ckpt_load_mem(&m, blob, len, &mj, err, sizeof err)) {
        fprintf(stderr, "vaed registry import: %s: %s\n", file, err);
        vae_free(&m);
        free(blob);
        return 1;
    }
    char sha[65], cj[8192];
    sha256_hex(blob, len, sha);
    int cj_len = ckpt_config_to_json(&m.cfg, cj, sizeof cj);
    vae_free(&m);
    registry_checkpoint_info info;
    int created = 0;
    int prc = cj_len < 0 ? REGISTRY_ERR_ARG
                         : registry_put_checkpoint(r, model, blob, len, sha, cj, mj, "import",
                                                   &info, &created, err, sizeof err);
    free(mj);
    free(blob);
    if (prc) {
        fprintf(stderr, "vaed registry import: %s\n", cj_len < 0 ? "config too large" : err);
        return 1;
    }
    printf("%s %s version %lld\n", created ? "imported" : "already present:", info.model,
           (long long)info.version);
    return 0;
}

static int registry_export(registry *r, const char *model, const char *version, const char *out)
{
    char err[512];
    registry_checkpoint_info info;
    if (registry_resolve(r, model, version, &info, err, sizeof err)) {
        fprintf(stderr, "vaed registry export: %s\n", err);
        return 1;
    }
    uint8_t *blob = NULL; /* owned: freed below */
    size_t len = 0;
    if (registry_get_blob(r, info.sha256, &blob, &len, err, sizeof err)) {
        fprintf(stderr, "vaed registry export: %s\n", err);
        return 1;
    }
    int rc = file_io_write_atomic(out, blob, len, err, sizeof err);
    free(blob);
    if (rc) {
        fprintf(stderr, "vaed registry export: %s\n", err);
        return 1;
    }
    printf("wrote %s (%s version %lld, sha256 %s)\n", out, info.model, (long long)info.version,
           info.sha256);
    return 0;
}

/* Every model; with model, its versions and aliases instead. Each line is
 * tab-separated and ends with its time stamp, if any, so that two registries'
 * lists compare equal once that is cut. */
static int registry_list(registry *r, const char *model)
{
    char err[512];
    if (model) {
        registry_checkpoint *cs = NULL; /* owned: freed below */
        registry_alias_info *as = NULL; /* owned: freed below */
        size_t n = 0, n_aliases = 0;
        if (registry_list_checkpoints(r, model, &cs, &n, err, sizeof err) ||
            registry_list_aliases(r, model, &as, &n_aliases, err, sizeof err)) {
            registry_free_checkpoints(cs, n);
            fprintf(stderr, "vaed registry list: %s\n", err);
            return 1;
        }
        for (size_t i = 0; i < n; i++)
            printf("version %lld\t%s\t%lld bytes\t%s\t%s\n", (long long)cs[i].info.version,
                   cs[i].info.sha256, (long long)cs[i].info.size, cs[i].info.source,
                   cs[i].info.created_at);
        for (size_t i = 0; i < n_aliases; i++)
            printf("alias %s\tversion %lld%s\n", as[i].alias, (long long)as[i].version,
                   as[i].set_by_hand ? "\tset by hand" : "");
        registry_free_checkpoints(cs, n);
        free(as);
        return 0;
    }
    registry_model_info *ms = NULL; /* owned: freed below */
    size_t n = 0;
    if (registry_list_models(r, &ms, &n, err, sizeof err)) {
        fprintf(stderr, "vaed registry list: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        printf("%s\t%lld versions\tlatest %lld\t%s\n", ms[i].name, (long long)ms[i].n_versions,
               (long long)ms[i].latest_version, ms[i].updated_at);
    registry_free_models(ms);
    return 0;
}

/* vaed registry copy --from A --to B: a whole registry between a file and a
 * PostgreSQL database (either way). */
static int registry_copy(int argc, char **argv)
{
    const char *from = NULL, *to = NULL;
    cli_option opts[] = {
        {"from", CLI_STRING, &from, 0, 0, "registry file or postgresql:// URL to copy"},
        {"to", CLI_STRING, &to, 0, 0, "an empty (or new) registry file or postgresql:// URL"},
    };
    int rc = cli_parse("registry copy", argc, argv, opts, sizeof opts / sizeof opts[0], NULL);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    if (!from || !to) {
        fprintf(stderr, "usage: vaed registry copy --from FILE.db|URL --to URL|FILE.db\n");
        return 2;
    }
    char shown_from[256], shown_to[256], err[512];
    registry_redact_url(from, shown_from, sizeof shown_from);
    registry_redact_url(to, shown_to, sizeof shown_to);
    registry *src = NULL, *dst = NULL; /* owned: closed below */
    int status = cli_registry_open("registry copy", from, NULL, 0, 0, &src);
    if (!status)
        status = cli_registry_open("registry copy", to, NULL, 1, 0, &dst);
    if (status)
        goto end;
    status = 1;
    registry_copy_counts c;
    if (registry_copy_all(src, dst, &c, err, sizeof err)) {
        fprintf(stderr, "vaed registry copy: %s\n", err);
        goto end;
    }
    printf("copied %zu model(s), %zu version(s), %zu blob(s), %zu alias(es), %zu job(s), %zu "
           "job event(s) from %s to %s\n",
           c.models, c.checkpoints, c.blobs, c.aliases, c.jobs, c.events, shown_from, shown_to);
    status = 0;
end:
    registry_close(src);
    registry_close(dst);
    return status;
}

int cli_registry(int argc, char **argv)
{
    static const char usage_text[] =
        "usage: vaed registry list [--model NAME] [--registry FILE|URL] [--data-dir DIR]\n"
        "       vaed registry import --model NAME FILE [--registry FILE|URL] [--data-dir DIR]\n"
        "       vaed registry export --model NAME [--version V] --out FILE [--registry FILE|URL]\n"
        "                            [--data-dir DIR]\n"
        "       vaed registry copy --from FILE.db|URL --to URL|FILE.db\n"
        "The registry is --registry (a file or postgresql://USER@HOST:PORT/DB), else\n"
        "$VAED_REGISTRY, else DATA_DIR/registry.db (DATA_DIR default var), as for vaed serve.\n";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1], *data_dir = "var", *where = NULL, *model = NULL, *version = NULL,
               *out = NULL;
    if (strcmp(sub, "copy") == 0)
        return registry_copy(argc - 1, argv + 1);
    cli_option opts[] = {
        {"registry", CLI_STRING, &where, 0, 0,
         "registry file or postgresql://USER@HOST:PORT/DB (else $VAED_REGISTRY, else "
         "DATA_DIR/registry.db)"},
        {"data-dir", CLI_STRING, &data_dir, 0, 0, "directory of registry.db (default var)"},
        {"model", CLI_STRING, &model, 0, 0, "model name (import, export; list: its versions)"},
        {"version", CLI_STRING, &version, 0, 0, "version or alias (export; default latest)"},
        {"out", CLI_STRING, &out, 0, 0, "file to write (export)"},
    };
    int is_import = !strcmp(sub, "import"), is_export = !strcmp(sub, "export");
    if (!is_import && !is_export && strcmp(sub, "list") != 0) {
        fprintf(stderr, "vaed registry: unknown subcommand %s (list, import, export, copy)\n",
                sub);
        return 2;
    }
    char cmd[32];
    snprintf(cmd, sizeof cmd, "registry %s", sub);
    int rc = cli_parse(cmd, argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], "o");
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    const char *file = cli_positional(0);
    if ((is_import && (!model || !file)) || (is_export && (!model || !out)) ||
        cli_positional(is_import ? 1 : 0)) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (model && !registry_valid_name(model)) {
        fprintf(stderr, "vaed %s: invalid model name %s\n", cmd, model);
        return 2;
    }
    registry *r = NULL; /* owned: closed below */
    /* No file to list from is an empty list, as an empty database is
     * (scripts/run.sh lists a data directory that may have none yet). */
    rc = cli_registry_open(cmd, where, data_dir, is_import, !is_import && !is_export, &r);
    if (rc || !r)
        return rc;
    int status = is_import   ? registry_import(r, model, file)
                 : is_export ? registry_export(r, model, version, out)
                             : registry_list(r, model);
    registry_close(r);
    return status;
}
