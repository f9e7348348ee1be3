/* api_data: the images of the built-in data sets, as a page shows them —
 * rows of the route table (routes.c).
 *
 *     GET /data/DATASET/SPLIT/INDEX    api_data_image   one image (mnist/test/3)
 *     GET /data/DATASET/SPLIT?start=&count=&cols=
 *                                      api_data_sheet   a contact sheet of count images from start
 *
 * DATASET is mnist or fashion, SPLIT train or test, read from the daemon's
 * data directory through the data cache (data_cache.h: each split loaded
 * once and kept). Both take ?scale=K (1-8: each pixel a KxK block) and
 * ?format=png|npy|json (or Accept): PNG (a grid of cols columns, default
 * ceil(sqrt(count))), npy (count, C, H, W), or JSON with the sizes and the
 * labels (no pixels: those are the PNG's and the npy's). The bytes are
 * deterministic; the ETag is their hash, so If-None-Match answers 304.
 *
 * A split that is not loaded yet is loaded on a compute thread, and so is
 * a sheet larger than API_DATA_INLINE_PIXELS; the rest is answered on the
 * polling thread (compute_request.h).
 */
#ifndef API_DATA_H
#define API_DATA_H

#include <microhttpd.h>

#include "server/http_request.h"

/* Most images of one contact sheet. */
#define API_DATA_MAX_SHEET 256
/* Sheets of at most this many output pixels are drawn where they arrive. */
#define API_DATA_INLINE_PIXELS (64 * 1024)

enum MHD_Result api_data_image(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_data_sheet(http_ctx *ctx, struct MHD_Connection *c, http_request *req);

#endif
