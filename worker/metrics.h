/* metrics.h -- Prometheus metrics, /healthz and /readyz over libmicrohttpd.
 *
 * The worker thread records; libmicrohttpd's own thread renders. A mutex
 * keeps them apart: a record is a few additions, never a wait on I/O. All
 * functions accept a NULL registry (metrics off) and do nothing. */
#ifndef GPUQ_METRICS_H
#define GPUQ_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "queue/job.h"

struct gpuq_metrics;

/* queues and models (the names the op and model labels use) are copied.
 * backend: "cpu" or "cuda"; device: its description. */
struct gpuq_metrics *gpuq_metrics_create(char *const *queues, int n_queues, const char *const *models,
                                         int n_models, const char *backend, const char *device);
/* Serves on "HOST:PORT". Returns 0, or -1 with err (bad address, port taken). */
int gpuq_metrics_serve(struct gpuq_metrics *m, const char *addr, char *err, size_t errlen);
void gpuq_metrics_destroy(struct gpuq_metrics *m);

/* One answered job; op < 0 when not known, model < 0 when none (an index
 * into the models given at create); seconds < 0 when not measured. */
void gpuq_metrics_job(struct gpuq_metrics *m, int queue, int op, int model, enum gpuq_err err,
                      double queue_s, double compute_s, double total_s);
/* One batch run, of one op and model. */
void gpuq_metrics_batch(struct gpuq_metrics *m, int op, int model, int64_t rows);
/* A batch split for want of device memory (failed 0), or one that failed. */
void gpuq_metrics_batch_trouble(struct gpuq_metrics *m, int failed);
void gpuq_metrics_dead(struct gpuq_metrics *m, int queue, enum gpuq_err reason);
void gpuq_metrics_webhook(struct gpuq_metrics *m, int delivered);
/* Results whose reply_to push Redis refused. */
void gpuq_metrics_push_failed(struct gpuq_metrics *m, int jobs);
void gpuq_metrics_cache(struct gpuq_metrics *m, int64_t hits, int64_t misses);
void gpuq_metrics_inflight(struct gpuq_metrics *m, int64_t jobs, int64_t rows);
void gpuq_metrics_queue(struct gpuq_metrics *m, int queue, int64_t backlog, int64_t pending);
void gpuq_metrics_device_memory(struct gpuq_metrics *m, int64_t bytes);
/* Ready: Redis reachable and models loaded. */
void gpuq_metrics_ready(struct gpuq_metrics *m, int ready);

/* The exposition text (malloc'd, the caller frees); exposed for tests. */
char *gpuq_metrics_render(struct gpuq_metrics *m, size_t *len);

#endif
