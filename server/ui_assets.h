/* ui_assets: the dashboard's files, compiled into the binary.
 *
 *     for (size_t i = 0; i < ui_assets_count; i++)
 *         if (!strcmp(ui_assets[i].name, "app.js")) ... ui_assets[i].bytes ...
 *
 * The table is generated at build time by scripts/embed-ui.sh from the files
 * under server/ui/ (Makefile: build/gen/ui_assets.c), so a fresh clone
 * serves the page without npm or any other build step. Everything in it is
 * static and read-only, for the life of the process.
 */
#ifndef UI_ASSETS_H
#define UI_ASSETS_H

#include <stddef.h>

typedef struct {
    const char *name;          /* a file name under server/ui/, served as /ui/NAME */
    const char *content_type;
    const unsigned char *bytes;
    size_t len;
    const char *etag;          /* quoted: a prefix of the bytes' SHA-256 */
} ui_asset;

extern const ui_asset ui_assets[];
extern const size_t ui_assets_count;

#endif
