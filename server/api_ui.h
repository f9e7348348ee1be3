/* api_ui: the dashboard — rows of the route table (routes.c).
 *
 *     GET /          api_ui_index   the page (server/ui/index.html)
 *     GET /ui/NAME   api_ui_asset   its scripts and style sheet
 *
 * The files are compiled in (ui_assets.h); they are answered from static
 * memory with their ETag (If-None-Match: 304), Cache-Control no-cache (a
 * new build serves new files at once), and a Content-Security-Policy that
 * lets the page load and connect to this origin only, so nothing it shows
 * comes from anywhere else.
 */
#ifndef API_UI_H
#define API_UI_H

#include <microhttpd.h>

#include "server/http_request.h"

enum MHD_Result api_ui_index(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_ui_asset(http_ctx *ctx, struct MHD_Connection *c, http_request *req);

#endif
