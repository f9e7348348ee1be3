/* http_client: see http_client.h. Moved from cli_registry.c, which used it
 * first; http_client_stream is new with the jobs CLI. */
#include "cli/http_client.h"

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cJSON.h>

#define HTTP_CLIENT_IO_TIMEOUT_S 300
#define HTTP_CLIENT_MAX_HEAD (64 * 1024)

int http_client_load_token(const char *token_file, char *token, size_t size, char *err,
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

int http_client_parse_url(const char *url, http_client_url *u, char *err, size_t errlen)
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

void http_client_reply_free(http_client_reply *r)
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

static int connect_to(const http_client_url *u, int timeout_s, char *err, size_t errlen)
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
        struct timeval tv = {timeout_s, 0};
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

/* Connects and sends the request head and body; the socket, or -1. */
static int send_request(const http_client_url *u, const char *method, const char *path,
                        const char *const *headers, const void *body, size_t body_len,
                        int timeout_s, char *err, size_t errlen)
{
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
    int fd = connect_to(u, timeout_s, err, errlen);
    if (fd < 0)
        return -1;
    /* A server may answer (401, 413) before taking the whole body: a failed
     * send is not yet a failure, the answer may be waiting. */
    if (send_all(fd, head, (size_t)n) == 0 && body_len)
        send_all(fd, body, body_len);
    shutdown(fd, SHUT_WR);
    return fd;
}

/* The header fields of a response head (NUL-terminated, status line first). */
typedef struct {
    long long content_length; /* -1 when absent */
    int chunked;
} framing;

static void parse_head(char *head, http_client_reply *r, framing *f)
{
    r->status = atoi(head + 9);
    f->content_length = -1;
    f->chunked = 0;
    for (char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        const char *v = strchr(line, ':');
        if (!v)
            continue;
        v++;
        while (*v == ' ')
            v++;
        size_t vl = strcspn(v, "\r\n");
        if (!strncasecmp(line, "Content-Length:", 15))
            f->content_length = strtoll(v, NULL, 10);
        else if (!strncasecmp(line, "Transfer-Encoding:", 18) && strcasestr(line, "chunked"))
            f->chunked = 1;
        else if (!strncasecmp(line, "Location:", 9) && vl < sizeof r->location) {
            memcpy(r->location, v, vl);
            r->location[vl] = '\0';
        } else if (!strncasecmp(line, "ETag:", 5)) {
            if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"')
                v++, vl -= 2;
            if (vl < sizeof r->etag) {
                memcpy(r->etag, v, vl);
                r->etag[vl] = '\0';
            }
        }
    }
}

/* Reads fd to its end, appending to *buf (len bytes of cap used). 0, or -1
 * (1 for out of memory, 2 for a read error before any byte) with err. */
static int read_rest(int fd, char **buf, size_t *len, size_t *cap, char *err, size_t errlen)
{
    for (;;) {
        if (*len + 1 >= *cap) {
            char *grown = realloc(*buf, *cap * 2);
            if (!grown) {
                snprintf(err, errlen, "out of memory reading the response");
                return -1;
            }
            *buf = grown;
            *cap *= 2;
        }
        ssize_t got = recv(fd, *buf + *len, *cap - *len - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && *len == 0) {
            snprintf(err, errlen, "reading the response: %s", strerror(errno));
            return -1;
        }
        if (got <= 0)
            return 0;
        *len += (size_t)got;
    }
}

/* buf (len bytes, a whole response, cap > len) into r; takes buf. */
static int finish_reply(char *buf, size_t len, const http_client_url *u, http_client_reply *r,
                        char *err, size_t errlen)
{
    buf[len] = '\0';
    char *end_of_head = memmem(buf, len, "\r\n\r\n", 4);
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) || !end_of_head) {
        snprintf(err, errlen, "no HTTP response from %s:%s", u->host, u->port);
        free(buf);
        return -1;
    }
    *end_of_head = '\0';
    framing f;
    parse_head(buf, r, &f);
    char *body_start = end_of_head + 4;
    size_t blen = len - (size_t)(body_start - buf);
    if (f.chunked) {
        long long d = dechunk(body_start, blen);
        if (d < 0) {
            snprintf(err, errlen, "a broken chunked response");
            free(buf);
            return -1;
        }
        blen = (size_t)d;
    } else if (f.content_length >= 0) {
        if ((size_t)f.content_length > blen) {
            snprintf(err, errlen, "the response was cut short (%zu of %lld bytes)", blen,
                     f.content_length);
            free(buf);
            return -1;
        }
        blen = (size_t)f.content_length;
    }
    memmove(buf, body_start, blen);
    buf[blen] = '\0';
    r->body = buf;
    r->body_len = blen;
    return 0;
}

int http_client_call(const http_client_url *u, const char *method, const char *path,
                     const char *const *headers, const void *body, size_t body_len,
                     http_client_reply *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    int fd = send_request(u, method, path, headers, body, body_len, HTTP_CLIENT_IO_TIMEOUT_S,
                          err, errlen);
    if (fd < 0)
        return -1;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap); /* owned: handed to finish_reply */
    if (!buf) {
        snprintf(err, errlen, "out of memory reading the response");
        close(fd);
        return -1;
    }
    int rc = read_rest(fd, &buf, &len, &cap, err, errlen);
    close(fd);
    if (rc) {
        free(buf);
        return -1;
    }
    return finish_reply(buf, len, u, r, err, errlen);
}

/* ---- streaming ---------------------------------------------------------- */

/* Incremental chunked decoding: pending bytes not yet decoded. */
typedef struct {
    int in_data;          /* inside a chunk's data */
    unsigned long long left; /* bytes of the current chunk still to come */
    int need_crlf;        /* the CRLF after a chunk's data */
    int done;             /* the last (zero) chunk was read */
} chunk_state;

/* Decodes what it can of buf[0..len), calling on_data; returns the bytes
 * consumed, or -1 on a framing error, or -2 when on_data asked to stop. */
static long long chunk_feed(chunk_state *cs, const char *buf, size_t len,
                            http_client_data_fn on_data, void *ctx)
{
    size_t in = 0;
    while (in < len && !cs->done) {
        if (cs->need_crlf) {
            if (len - in < 2)
                break;
            if (buf[in] != '\r' || buf[in + 1] != '\n')
                return -1;
            in += 2;
            cs->need_crlf = 0;
        } else if (cs->in_data) {
            size_t n = len - in < cs->left ? len - in : (size_t)cs->left;
            if (n && on_data(ctx, buf + in, n))
                return -2;
            in += n;
            cs->left -= n;
            if (cs->left == 0) {
                cs->in_data = 0;
                cs->need_crlf = 1;
            }
        } else {
            const char *eol = memmem(buf + in, len - in, "\r\n", 2);
            if (!eol) {
                if (len - in > 1024)
                    return -1;
                break;
            }
            char *end = NULL;
            unsigned long long size = strtoull(buf + in, &end, 16);
            if (end == buf + in)
                return -1;
            in = (size_t)(eol - buf) + 2;
            if (size == 0)
                cs->done = 1;
            else {
                cs->in_data = 1;
                cs->left = size;
            }
        }
    }
    return (long long)in;
}

int http_client_stream(const http_client_url *u, const char *path,
                       const char *const *headers, int idle_timeout_s,
                       http_client_data_fn on_data, void *ctx, http_client_reply *r,
                       char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    int fd = send_request(u, "GET", path, headers, NULL, 0,
                          idle_timeout_s > 0 ? idle_timeout_s : HTTP_CLIENT_IO_TIMEOUT_S, err,
                          errlen);
    if (fd < 0)
        return -1;
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap); /* owned: freed below, or handed to finish_reply */
    int rc = -1;
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        goto end;
    }
    /* The head. */
    char *eoh = NULL;
    while (!eoh) {
        if (len + 1 >= cap) {
            if (cap >= HTTP_CLIENT_MAX_HEAD) {
                snprintf(err, errlen, "response headers too long");
                goto end;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                snprintf(err, errlen, "out of memory");
                goto end;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(err, errlen, "no HTTP response from %s:%s%s%s", u->host, u->port,
                     got < 0 ? ": " : "", got < 0 ? strerror(errno) : "");
            goto end;
        }
        len += (size_t)got;
        buf[len] = '\0';
        eoh = memmem(buf, len, "\r\n\r\n", 4);
    }
    if (len < 12 || strncmp(buf, "HTTP/1.", 7)) {
        snprintf(err, errlen, "no HTTP response from %s:%s", u->host, u->port);
        goto end;
    }
    int status = atoi(buf + 9);
    if (status < 200 || status > 299) {
        /* An error: read it whole like http_client_call. */
        if (read_rest(fd, &buf, &len, &cap, err, errlen))
            goto end;
        rc = finish_reply(buf, len, u, r, err, errlen);
        buf = NULL;
        goto end;
    }
    *eoh = '\0';
    framing f;
    parse_head(buf, r, &f);
    size_t body_at = (size_t)(eoh - buf) + 4;
    memmove(buf, buf + body_at, len - body_at);
    len -= body_at;
    chunk_state cs = {0};
    long long left = f.content_length; /* for a Content-Length body */
    for (;;) {
        /* Hand over what is buffered. */
        if (f.chunked) {
            long long used = chunk_feed(&cs, buf, len, on_data, ctx);
            if (used == -2) {
                rc = 0;
                goto end;
            }
            if (used < 0) {
                snprintf(err, errlen, "a broken chunked response");
                goto end;
            }
            memmove(buf, buf + used, len - (size_t)used);
            len -= (size_t)used;
            if (cs.done) {
                rc = 0;
                goto end;
            }
        } else if (len) {
            size_t n = left >= 0 && (unsigned long long)left < len ? (size_t)left : len;
            if (on_data(ctx, buf, n)) {
                rc = 0;
                goto end;
            }
            if (left >= 0)
                left -= (long long)n;
            len = 0;
        }
        if (!f.chunked && left == 0) {
            rc = 0;
            goto end;
        }
        if (len + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                snprintf(err, errlen, "out of memory");
                goto end;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, errlen, "the stream broke off: %s",
                     errno == EAGAIN || errno == EWOULDBLOCK ? "no data for too long"
                                                             : strerror(errno));
            goto end;
        }
        if (got == 0) {
            /* Only a body framed by the close may end so. */
            if (f.chunked || left > 0) {
                snprintf(err, errlen, "the server closed the stream");
                goto end;
            }
            rc = 0;
            goto end;
        }
        len += (size_t)got;
    }
end:
    free(buf);
    close(fd);
    return rc;
}

void http_client_print_error(const char *cmd, const http_client_reply *r)
{
    cJSON *root = r->body ? cJSON_ParseWithLength(r->body, r->body_len) : NULL; /* owned */
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
