/* cache.h -- results kept by content in Redis (--embed-cache-ttl): a row
 * whose raw output was computed in the last ttl seconds, by any worker on
 * the queue, is read back instead of computed. The name of a row's value is
 * the SHA-256 of what its op says the row depends on (ops/op.h cache_key),
 * the model's files and the worker's precision; the value is the raw row, under the queue's
 * prefix and hash tag (P:{Q}:cache:<hex>), so the ops's finish still applies
 * what each job asks after (dimensions, dtype). A task is answered from the
 * cache only when every one of its rows is there; Redis failing to read or
 * write the cache costs only the cache. */
#ifndef GPUQ_CACHE_H
#define GPUQ_CACHE_H

#include <stdint.h>

#include "queue/stream.h"
#include "worker/task.h"

/* The SHA-256, in hex, of the files that make the model at path (a model
 * folder's weights, configuration and tokenizer, or a file), so that a model
 * changed behind the same name never reads its predecessor's results.
 * 0, or -1 when none can be read. */
int gpuq_cache_fingerprint(const char *path, char out[65]);

/* Names t's rows (t->cache_names), for an op that caches; salt tells apart
 * workers whose results differ (their model's fingerprint and precision).
 * 0, or -1 when t's rows are not to be cached (nothing set). */
int gpuq_cache_name(struct worker_task *t, const char *salt);

/* Looks up the named rows of tasks[0, n) (one MGET per queue). A task
 * whose every row is cached gets them in t->t.out and t->cache_hit set;
 * hits and misses count rows. Returns -1 when Redis did not answer (all
 * count as misses), else 0. */
int gpuq_cache_lookup(struct gpuq_stream *st, struct worker_task **tasks, int n, int64_t *hits,
                      int64_t *misses);

/* Once t's rows are computed, before its op's finish: keeps the raw rows
 * to put in the cache with its result. */
void gpuq_cache_keep(struct worker_task *t);

/* Adds t's kept rows to the open transaction, for ttl_s seconds. */
void gpuq_cache_put(struct gpuq_stream *st, const struct worker_task *t, int64_t ttl_s);

/* Frees what t holds for the cache. */
void gpuq_cache_forget(struct worker_task *t);

#endif
