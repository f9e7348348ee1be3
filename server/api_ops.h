/* api_ops: the endpoints an operator or a load balancer reads — liveness,
 * readiness, Prometheus metrics and the API description.
 *
 *     GET /healthz       api_ops_healthz   200 {"status":"ok","version":...}: the process serves
 *     GET /readyz        api_ops_readyz    200 when the default model loads, else 503
 *     GET /metrics       api_ops_metrics   metrics.h's text, with the caches' and the
 *                                          compute pool's gauges
 *     GET /openapi.yaml  api_ops_openapi   schema/openapi.yaml as compiled in
 *
 * Rows of the route table (routes.c); none of them changes anything.
 */
#ifndef API_OPS_H
#define API_OPS_H

#include <microhttpd.h>

#include "server/http_request.h"

enum MHD_Result api_ops_healthz(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_ops_readyz(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_ops_metrics(http_ctx *ctx, struct MHD_Connection *c, http_request *req);
enum MHD_Result api_ops_openapi(http_ctx *ctx, struct MHD_Connection *c, http_request *req);

#endif
