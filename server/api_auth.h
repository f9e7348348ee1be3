/* api_auth: the bearer token that guards the routes which change the
 * registry.
 *
 *     if (routes_need_token(route) && opts->token &&
 *         !api_auth_bearer_ok(opts->token, authorization_header))
 *         return api_auth_send_unauthorized(c, "this request changes the registry: ...");
 *
 * The transport (http_server.c) makes this check once, when a request's
 * headers are in and before any of its body is read, so an unauthorised
 * upload costs no memory; handlers never look at tokens.
 */
#ifndef API_AUTH_H
#define API_AUTH_H

#include <microhttpd.h>

/* 1 when authorization (the Authorization header's value, may be NULL) is
 * "Bearer TOKEN" with TOKEN equal to token. The comparison takes the same
 * time wherever the two differ, so timing does not reveal a prefix. */
int api_auth_bearer_ok(const char *token, const char *authorization);
/* Queues 401 unauthorized with WWW-Authenticate: Bearer. */
enum MHD_Result api_auth_send_unauthorized(struct MHD_Connection *c, const char *why);

#endif
