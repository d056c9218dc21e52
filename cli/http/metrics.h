/* metrics.h -- the front door's own Prometheus metrics: requests by route
 * and status, latency by route, requests in flight and waits on the reply
 * list. Counters are atomics: any request thread may count. */
#ifndef GPUQ_HTTP_METRICS_H
#define GPUQ_HTTP_METRICS_H

#include <stddef.h>

/* Routes as the metrics name them; the last is everything else. */
#define GPUQ_HTTP_ROUTES(X) X(EMBEDDINGS, "/v1/embeddings") X(MODELS, "/v1/models") \
    X(EMBED, "/embed") X(TEI_OTHER, "/rerank|/predict|/embed_sparse|/tokenize") \
    X(JOBS_POST, "POST /v1/jobs") X(JOBS_GET, "GET /v1/jobs/{id}") X(DASHBOARD, "/") \
    X(API, "/api/*") X(METRICS, "/metrics") X(HEALTH, "/healthz") X(OTHER, "other")

enum gpuq_http_route {
#define X(id, name) GPUQ_HTTP_ROUTE_##id,
    GPUQ_HTTP_ROUTES(X)
#undef X
    GPUQ_HTTP_ROUTE_COUNT
};

void gpuq_http_metrics_request(enum gpuq_http_route route, int status, double seconds);
void gpuq_http_metrics_inflight(int delta);
/* Jobs put on a queue. */
void gpuq_http_metrics_enqueued(long n);

/* The text exposition (malloc'd), with waiting: waits on the reply list now. */
char *gpuq_http_metrics_text(int waiting, size_t *len);

#endif
