#include "server/api_auth.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "server/http_util.h"
#include "server/sha256.h"

int api_auth_bearer_ok(const char *token, const char *authorization)
{
    if (!token || !authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return 0;
    const char *given = authorization + 7;
    while (*given == ' ')
        given++;
    /* Both sides hashed first: equal-length digests compared in full, so
     * neither the length nor a common prefix of the token shows in timing. */
    char want[65], got[65];
    sha256_hex((const uint8_t *)token, strlen(token), want);
    sha256_hex((const uint8_t *)given, strlen(given), got);
    unsigned diff = 0;
    for (int i = 0; i < 64; i++)
        diff |= (unsigned)(want[i] ^ got[i]);
    return diff == 0;
}

enum MHD_Result api_auth_send_unauthorized(struct MHD_Connection *c, const char *why)
{
    return http_send_error_with_header(c, HTTP_ERR_UNAUTHORIZED, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                       "Bearer", "%s", why);
}
