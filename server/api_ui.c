#include "server/api_ui.h"

#include <string.h>

#include "server/http_util.h"
#include "server/ui_assets.h"

/* Scripts, styles, images and connections: this origin only (blob: and
 * data: for the images the page builds from POST answers). */
#define UI_CSP                                                                                     \
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "     \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

static enum MHD_Result send_asset(struct MHD_Connection *c, const char *name)
{
    const ui_asset *a = NULL;
    for (size_t i = 0; i < ui_assets_count && !a; i++)
        if (!strcmp(ui_assets[i].name, name))
            a = &ui_assets[i];
    if (!a)
        return http_send_error(c, HTTP_ERR_NOT_FOUND, "no dashboard file '%.64s'", name);
    const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    int fresh = inm && http_etag_listed(inm, a->etag);
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        fresh ? 0 : a->len, fresh ? NULL : (void *)a->bytes, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    if ((!fresh && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type) != MHD_YES) ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, a->etag) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES ||
        MHD_add_response_header(resp, "Content-Security-Policy", UI_CSP) != MHD_YES ||
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff") != MHD_YES ||
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer") != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    enum MHD_Result ret =
        MHD_queue_response(c, fresh ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result api_ui_index(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)ctx;
    (void)req;
    return send_asset(c, "index.html");
}

enum MHD_Result api_ui_asset(http_ctx *ctx, struct MHD_Connection *c, http_request *req)
{
    (void)ctx;
    return send_asset(c, req->params[0]);
}
