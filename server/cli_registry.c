/* cli_registry: push, models, pull (HTTP clients of `vaed serve`) and the
 * offline registry subcommands. The HTTP client is deliberately small: one
 * request per connection (Connection: close), the response read to the end,
 * framed by Content-Length, chunked encoding, or the close. */
#include "cli_registry.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cJSON.h>

#include "../engine/checkpoint.h"
#include "../engine/safetensors.h"
#include "../engine/vae.h"
#include "cli_options.h"
#include "registry.h"

#define CLI_DEFAULT_URL "http://127.0.0.1:8080"
#define CLI_IO_TIMEOUT_S 300

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

/* The token for mutations: --token-file (its first line), else $VAED_TOKEN,
 * else none (""). -1 when the file cannot be read. */
static int load_token(const char *token_file, char *token, size_t size, char *err,
                      size_t errlen)
{
    token[0] = '\0';
    if (token_file) {
        FILE *f = fopen(token_file, "r");
        if (!f) {
            snprintf(err, errlen, "--token-file %s: %s", token_file, strerror(errno));
            return -1;
        }
        size_t n = fread(token, 1, size - 1, f);
        fclose(f);
        token[n] = '\0';
        token[strcspn(token, "\r\n")] = '\0';
    } else if (getenv("VAED_TOKEN")) {
        snprintf(token, size, "%s", getenv("VAED_TOKEN"));
    }
    return 0;
}

/* ---- a minimal HTTP/1.1 client ----------------------------------------- */

typedef struct {
    char host[256];
    char port[8];
    char base[512]; /* path prefix without a trailing '/', often "" */
} http_url;

static int parse_url(const char *url, http_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (strncasecmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "--url %s: only http:// URLs are supported", url);
        return -1;
    }
    const char *p = url + 7;
    size_t hostport = strcspn(p, "/");
    const char *colon = memchr(p, ':', hostport);
    size_t host_len = colon ? (size_t)(colon - p) : hostport;
    if (host_len == 0 || host_len >= sizeof u->host) {
        snprintf(err, errlen, "--url %s: no host", url);
        return -1;
    }
    memcpy(u->host, p, host_len);
    if (colon) {
        size_t port_len = hostport - host_len - 1;
        long port = 0;
        for (size_t i = 0; i < port_len; i++) {
            if (colon[1 + i] < '0' || colon[1 + i] > '9' || port > 65535) {
                port = -1;
                break;
            }
            port = port * 10 + (colon[1 + i] - '0');
        }
        if (port_len == 0 || port < 1 || port > 65535) {
            snprintf(err, errlen, "--url %s: bad port", url);
            return -1;
        }
        snprintf(u->port, sizeof u->port, "%ld", port);
    } else {
        snprintf(u->port, sizeof u->port, "80");
    }
    const char *path = p + hostport;
    size_t path_len = strlen(path);
    while (path_len && path[path_len - 1] == '/')
        path_len--;
    if (path_len >= sizeof u->base) {
        snprintf(err, errlen, "--url %s: path too long", url);
        return -1;
    }
    memcpy(u->base, path, path_len);
    return 0;
}

typedef struct {
    int status;
    char etag[80];
    char *body;     /* owned; body_len bytes plus a NUL */
    size_t body_len;
} http_reply;

static void reply_free(http_reply *r)
{
    free(r->body);
    r->body = NULL;
}

static int send_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int connect_to(const http_url *u, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "%s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        struct timeval tv = {CLI_IO_TIMEOUT_S, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot connect to %s:%s: %s", u->host, u->port, strerror(errno));
    return fd;
}

/* Decodes a chunked body in place; returns its length or -1. */
static long long dechunk(char *buf, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end = NULL;
        if (in >= len)
            return -1;
        unsigned long long size = strtoull(buf + in, &end, 16);
        char *eol = memmem(buf + in, len - in, "\r\n", 2);
        if (!eol || end == buf + in)
            return -1;
        in = (size_t)(eol - buf) + 2;
        if (size == 0)
            return (long long)out;
        if (size > len - in)
            return -1;
        memmove(buf + out, buf + in, size);
        out += size;
        in += size + 2;
    }
}

/* One request; the whole response into *r. path is appended to the URL's
 * base. headers: NULL-terminated "Name: value" strings. 0 when a response
 * with a status line came back (any status), -1 otherwise with err. */
static int http_call(const http_url *u, const char *method, const char *path,
                     const char *const *headers, const void *body, size_t body_len,
                     http_reply *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n"
                     "User-Agent: vaed-cli\r\n",
                     method, u->base, path, u->host, u->port);
    for (size_t i = 0; headers && headers[i] && n > 0 && (size_t)n < sizeof head; i++)
        n += snprintf(head + n, sizeof head - (size_t)n, "%s\r\n", headers[i]);
    if (n > 0 && (size_t)n < sizeof head && (body || strcmp(method, "GET")))
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %zu\r\n", body_len);
    if (n > 0 && (size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (n <= 0 || (size_t)n >= sizeof head) {
        snprintf(err, errlen, "request header too long");
        return -1;
    }
    int fd = connect_to(u, err, errlen);
    if (fd < 0)
        return -1;
    /* A server may answer (401, 413) before taking the whole body: a failed
     * send is not yet a failure, the answer may be waiting. */
    if (send_all(fd, head, (size_t)n) == 0 && body_len)
        send_all(fd, body, body_len);
    shutdown(fd, SHUT_WR);

    size_t cap = 65536, len = 0;
    char *buf = malloc(cap); /* owned: part of it handed to r->body */
    int failed = !buf;
    while (!failed) {
        if (len + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                failed = 1;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && len == 0) {
            snprintf(err, errlen, "reading the response: %s", strerror(errno));
            failed = 2;
        }
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    if (failed) {
        if (failed == 1)
            snprintf(err, errlen, "out of memory reading the response");
        free(buf);
        return -1;
    }
    buf[len] = '\0';
    char *end_of_head = memmem(buf, len, "\r\n\r\n", 4);
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) || !end_of_head) {
        snprintf(err, errlen, "no HTTP response from %s:%s", u->host, u->port);
        free(buf);
        return -1;
    }
    r->status = atoi(buf + 9);
    *end_of_head = '\0';
    long long content_length = -1;
    int chunked = 0;
    for (char *line = strstr(buf, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (!strncasecmp(line, "Content-Length:", 15))
            content_length = strtoll(line + 15, NULL, 10);
        else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line, "chunked"))
            chunked = 1;
        else if (!strncasecmp(line, "ETag:", 5)) {
            const char *v = line + 5;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r\n");
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"')
                v++, vl -= 2;
            if (vl < sizeof r->etag) {
                memcpy(r->etag, v, vl);
                r->etag[vl] = '\0';
            }
        }
    }
    char *body_start = end_of_head + 4;
    size_t blen = len - (size_t)(body_start - buf);
    if (chunked) {
        long long d = dechunk(body_start, blen);
        if (d < 0) {
            snprintf(err, errlen, "a broken chunked response");
            free(buf);
            return -1;
        }
        blen = (size_t)d;
    } else if (content_length >= 0) {
        if ((size_t)content_length > blen) {
            snprintf(err, errlen, "the response was cut short (%zu of %lld bytes)", blen,
                     content_length);
            free(buf);
            return -1;
        }
        blen = (size_t)content_length;
    }
    memmove(buf, body_start, blen);
    buf[blen] = '\0';
    r->body = buf;
    r->body_len = blen;
    return 0;
}

/* Prints the server's error message for a failed request. */
static void print_http_error(const char *cmd, const http_reply *r)
{
    cJSON *root = cJSON_ParseWithLength(r->body, r->body_len); /* owned: freed below */
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(error, "message");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
    if (cJSON_IsString(msg))
        fprintf(stderr, "vaed %s: HTTP %d %s: %s\n", cmd, r->status,
                cJSON_IsString(code) ? code->valuestring : "", msg->valuestring);
    else
        fprintf(stderr, "vaed %s: HTTP %d\n", cmd, r->status);
    cJSON_Delete(root);
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
    http_url u;
    if (parse_url(url, &u, err, sizeof err) || load_token(token_file, token, sizeof token, err,
                                                          sizeof err)) {
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
    registry_sha256_hex(blob, len, sha);
    snprintf(sha_header, sizeof sha_header, "X-Content-SHA256: %s", sha);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(path, sizeof path, "/models/%s/checkpoints", model);
    const char *headers[] = {"Content-Type: application/octet-stream", sha_header,
                             token[0] ? auth : NULL, NULL};
    http_reply r;
    rc = http_call(&u, "POST", path, headers, blob, len, &r, err, sizeof err);
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
        print_http_error("push", &r);
    }
    reply_free(&r);
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
    http_url u;
    if (parse_url(url, &u, err, sizeof err)) {
        fprintf(stderr, "vaed models: %s\n", err);
        return 2;
    }
    http_reply r;
    if (http_call(&u, "GET", "/models", NULL, NULL, 0, &r, err, sizeof err)) {
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
        print_http_error("models", &r);
    } else {
        fprintf(stderr, "vaed models: an unexpected answer: %.200s\n", r.body);
    }
    cJSON_Delete(root);
    reply_free(&r);
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
    http_url u;
    if (parse_url(url, &u, err, sizeof err)) {
        fprintf(stderr, "vaed pull: %s\n", err);
        return 2;
    }
    snprintf(path, sizeof path, "/models/%s/versions/%s/file", model, version);
    http_reply r;
    if (http_call(&u, "GET", path, NULL, NULL, 0, &r, err, sizeof err)) {
        fprintf(stderr, "vaed pull: %s\n", err);
        return 1;
    }
    int status = 1;
    if (r.status != 200) {
        print_http_error("pull", &r);
        goto end;
    }
    char sha[65];
    registry_sha256_hex((const uint8_t *)r.body, r.body_len, sha);
    if (strcasecmp(sha, r.etag) != 0) {
        fprintf(stderr, "vaed pull: the bytes received (sha256 %s) do not match the server's "
                        "ETag \"%s\"; nothing written\n",
                sha, r.etag);
        goto end;
    }
    if (st_write_bytes_atomic(out, (const uint8_t *)r.body, r.body_len, err, sizeof err)) {
        fprintf(stderr, "vaed pull: %s\n", err);
        goto end;
    }
    printf("wrote %s (%s %s, sha256 %s, %zu bytes)\n", out, model, version, sha, r.body_len);
    status = 0;
end:
    reply_free(&r);
    return status;
}

/* ---- registry (offline, on the database file) --------------------------- */

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
    registry_sha256_hex(blob, len, sha);
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
    int rc = st_write_bytes_atomic(out, blob, len, err, sizeof err);
    free(blob);
    if (rc) {
        fprintf(stderr, "vaed registry export: %s\n", err);
        return 1;
    }
    printf("wrote %s (%s version %lld, sha256 %s)\n", out, info.model, (long long)info.version,
           info.sha256);
    return 0;
}

static int registry_list(registry *r)
{
    char err[512];
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

int cli_registry(int argc, char **argv)
{
    static const char usage_text[] =
        "usage: vaed registry list [--data-dir DIR]\n"
        "       vaed registry import --model NAME FILE [--data-dir DIR]\n"
        "       vaed registry export --model NAME [--version V] --out FILE [--data-dir DIR]\n";
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1], *data_dir = "var", *model = NULL, *version = NULL, *out = NULL;
    cli_option opts[] = {
        {"data-dir", CLI_STRING, &data_dir, 0, 0, "registry directory (default var)"},
        {"model", CLI_STRING, &model, 0, 0, "model name (import, export)"},
        {"version", CLI_STRING, &version, 0, 0, "version or alias (export; default latest)"},
        {"out", CLI_STRING, &out, 0, 0, "file to write (export)"},
    };
    int is_import = !strcmp(sub, "import"), is_export = !strcmp(sub, "export");
    if (!is_import && !is_export && strcmp(sub, "list") != 0) {
        fprintf(stderr, "vaed registry: unknown subcommand %s (list, import, export)\n", sub);
        return 2;
    }
    char cmd[32];
    snprintf(cmd, sizeof cmd, "registry %s", sub);
    int rc = cli_parse(cmd, argc - 1, argv + 1, opts, sizeof opts / sizeof opts[0], "o");
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    const char *file = cli_positional(0);
    if ((is_import && (!model || !file)) || (is_export && (!model || !out))) {
        fputs(usage_text, stderr);
        return 2;
    }
    char path[PATH_MAX], err[512];
    if (snprintf(path, sizeof path, "%s/registry.db", data_dir) >= (int)sizeof path) {
        fprintf(stderr, "vaed registry: --data-dir too long\n");
        return 2;
    }
    if (!is_import && access(path, F_OK) != 0) {
        if (is_export) {
            fprintf(stderr, "vaed registry export: no registry at %s\n", path);
            return 1;
        }
        return 0; /* no database: nothing to list */
    }
    if (is_import)
        mkdir(data_dir, 0755);
    registry *r = NULL; /* owned: closed below */
    if (registry_open(path, &r, err, sizeof err)) {
        fprintf(stderr, "vaed registry: %s\n", err);
        return 1;
    }
    int status = is_import   ? registry_import(r, model, file)
                 : is_export ? registry_export(r, model, version, out)
                             : registry_list(r);
    registry_close(r);
    return status;
}
