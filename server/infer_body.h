/* infer_body: the request bodies of the inference endpoints, read into
 * floats — JSON (a fast reader for the common /encode body, cJSON for the
 * rest), base64 and PNG.
 *
 *     float *x; int n;                                     // x: (n, D), the caller's: free()
 *     char msg[HTTP_MESSAGE_MAX];
 *     http_error e = infer_body_read_images(cfg, body, len, max_depth, max_n, max_values, &x, &n,
 *                                           msg, sizeof msg);     // an /encode body
 *     if (e != HTTP_ERR_NONE) return http_send_error(c, e, "%s", msg);
 *
 *     cJSON *root;                                         // other bodies; caller owns:
 * cJSON_Delete e = infer_body_parse_object(body, len, max_depth, max_values, &root, msg, sizeof
 * msg);
 *     ... infer_body_read_numbers(cJSON_GetObjectItem(root, "z"), z, L, 0, "z", ...) ...
 *
 * Every reader that can refuse returns an http_error (HTTP_ERR_NONE when the
 * body is good) and fills msg with a sentence a client can act on; the
 * caller sends it. The fast reader (infer_body_fast_pixel_rows) never
 * refuses: it returns 0 for any body that is not exactly {"x": [[D numbers in
 * 0..1], ...]}, which then goes through cJSON and gets its precise answer.
 * Both readers turn every number into the same float (test_infer_body
 * compares them on generated bodies). Bodies are not NUL-terminated. No
 * state: thread-safe.
 */
#ifndef INFER_BODY_H
#define INFER_BODY_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "engine/vae.h"
#include "server/http_util.h"

/* Deepest JSON nesting accepted in a request body by default (the
 * server's --max-json-depth). */
#define INFER_BODY_MAX_JSON_DEPTH 8

/* Refuses, before cJSON builds a node (64 bytes) for each value, nesting
 * deeper than max_depth (400, counted as json_depth) and more than
 * max_values values (413, counted as json_values); and, for every JSON
 * body whichever handler parses it, what cJSON would read as another text
 * than the one sent (400): a NUL byte or a \u0000 escape (cJSON ends the
 * string there: "a\u0000b" was the model "a"), a bracket closed that was
 * never opened, or bytes after the top-level object or array (cJSON reads
 * the first value and ignores the rest). */
http_error infer_body_prescan(const char *body, size_t len, int max_depth, size_t max_values,
                              char *msg, size_t msglen);
/* The body as a JSON object, after infer_body_prescan: *out owned by the
 * caller (NULL on error). 400 for invalid JSON, bytes after the value, or a
 * value that is not an object. */
http_error infer_body_parse_object(const char *body, size_t len, int max_depth, size_t max_values,
                                   cJSON **out, char *msg, size_t msglen);
/* arr, a JSON array of exactly want numbers, into dst; with pixels also each
 * in [0, 1]. Types first (400), then the count (422, naming model_size), then
 * the values (422: not finite as a float, or outside 0..1). what names arr in
 * messages ("x[3]"). */
http_error infer_body_read_numbers(const cJSON *arr, float *dst, int want, int pixels,
                                   const char *what, const char *model_size, char *msg,
                                   size_t msglen);
/* Standard or URL-safe base64 of s, padding optional, after an optional
 * "data:...," prefix: 0 with *out (malloc'd, the caller's) and *out_len, or
 * -1 (not base64, or out of memory). */
int infer_body_base64_decode(const char *s, uint8_t **out, size_t *out_len);
/* One PNG of the model's size into dst (vae_config_input_dim floats), in the
 * model's channels: 400 not a PNG, 422 another size or a model that PNG
 * cannot feed, 503 out of memory. */
http_error infer_body_read_png(const vae_config *cfg, const uint8_t *png, size_t len, float *dst,
                               const char *what, char *msg, size_t msglen);
/* The same from a JSON string of base64 (400 when item is not one). */
http_error infer_body_read_png_base64(const vae_config *cfg, const cJSON *item, float *dst,
                                      const char *what, char *msg, size_t msglen);

/* "28x28 with 1 channel": the input shape as messages name it. */
void infer_body_shape_text(char *out, size_t outlen, const vae_config *cfg);
/* An /encode body of JSON: {"x": [images, each an array of D pixel values]}
 * or {"png_base64": [PNG images]}, 1 to max_n of them, into *x (malloc'd,
 * the caller's; NULL on error) and *n. Through the fast reader when it takes
 * the body, else infer_body_read_images_json. */
http_error infer_body_read_images(const vae_config *cfg, const char *body, size_t len,
                                  int max_depth, int max_n, size_t max_values, float **x, int *n,
                                  char *msg, size_t msglen);
/* The same through cJSON only: what every body the fast reader refuses gets. */
http_error infer_body_read_images_json(const vae_config *cfg, const char *body, size_t len,
                                       int max_depth, int max_n, size_t max_values, float **x,
                                       int *n, char *msg, size_t msglen);

/* The fast reader: 1 with *out (malloc'd, the caller's) of *n rows of D
 * floats when body is {"x": [[D numbers], ...]} with 1 to max_n rows, every
 * number in [0, 1], any JSON whitespace between tokens, and nothing else; 0
 * otherwise (*out NULL). */
int infer_body_fast_pixel_rows(const char *body, size_t len, int D, int max_n, float **out,
                               int *n);
/* The end of the JSON number (RFC 8259 grammar) that starts at p, or NULL
 * when none does. */
const char *infer_body_number_end(const char *p, const char *end);

#endif
