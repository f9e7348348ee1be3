/* http_client: the small HTTP/1.1 client of vaed's CLI (push, pull, models,
 * jobs), over a plain socket: http:// only, no TLS, no libcurl.
 *
 *     http_client_url u;
 *     if (http_client_parse_url("http://127.0.0.1:8080", &u, err, sizeof err)) ...
 *     http_client_reply r;
 *     const char *headers[] = {"Content-Type: application/json", NULL};
 *     if (http_client_call(&u, "POST", "/jobs", headers, body, len, &r, err, sizeof err)) ...
 *     if (r.status != 202) http_client_print_error("jobs submit", &r);
 *     http_client_reply_free(&r);
 *
 * One request per connection (Connection: close). http_client_call reads the
 * whole response, framed by Content-Length, chunked encoding or the close;
 * http_client_stream hands the body to a callback as it arrives (for
 * text/event-stream), so it can run for as long as the server sends.
 */
#ifndef HTTP_CLIENT_H
#define HTTP_CLIENT_H

#include <stddef.h>

#define HTTP_CLIENT_DEFAULT_URL "http://127.0.0.1:8080"

typedef struct {
    char host[256];
    char port[8];
    char base[512]; /* path prefix without a trailing '/', often "" */
} http_client_url;

typedef struct {
    int status;
    char etag[80];  /* the ETag header without its quotes, "" when none */
    char location[256]; /* the Location header, "" when none */
    char *body;     /* owned; body_len bytes plus a NUL */
    size_t body_len;
} http_client_reply;

/* "http://HOST[:PORT][/BASE]" into u; 0, or -1 with err. */
int http_client_parse_url(const char *url, http_client_url *u, char *err, size_t errlen);

/* The token for mutations: the first line of token_file when given, else
 * $VAED_TOKEN, else "" (none). -1 with err when the file cannot be read. */
int http_client_load_token(const char *token_file, char *token, size_t size, char *err,
                           size_t errlen);

/* One request; the whole response into *r (free with http_client_reply_free,
 * also after a failure). path is appended to the URL's base. headers:
 * NULL-terminated "Name: value" strings (a NULL entry ends them, so an
 * optional header may be left NULL at the end). 0 when a response with a
 * status line came back (any status), -1 otherwise with err. */
int http_client_call(const http_client_url *u, const char *method, const char *path,
                     const char *const *headers, const void *body, size_t body_len,
                     http_client_reply *r, char *err, size_t errlen);
void http_client_reply_free(http_client_reply *r);

/* Called with each piece of a streamed body as it arrives (chunk framing
 * already removed); a non-zero return stops the stream. */
typedef int (*http_client_data_fn)(void *ctx, const char *data, size_t len);

/* A GET whose 2xx body goes to on_data as it arrives, until the server ends
 * it, on_data returns non-zero, or nothing arrives for idle_timeout_s. *status
 * receives the HTTP status; a non-2xx response is read whole into *r instead
 * (r->body; free with http_client_reply_free in every case). Returns 0 when
 * the body ended as framed (or on_data stopped it), -1 with err when the
 * connection failed or broke off. */
int http_client_stream(const http_client_url *u, const char *path,
                       const char *const *headers, int idle_timeout_s,
                       http_client_data_fn on_data, void *ctx, http_client_reply *r,
                       char *err, size_t errlen);

/* Prints "vaed CMD: HTTP STATUS CODE: MESSAGE" from the server's error body
 * to stderr. */
void http_client_print_error(const char *cmd, const http_client_reply *r);

#endif
