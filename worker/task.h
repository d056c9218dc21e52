/* task.h -- a job the worker holds: the ops' view of it (struct gpuq_task,
 * ops/op.h), and beside it what only the worker keeps: the stream entry and
 * the reply it borrows from, how it decoded, its place in the scheduler,
 * the rows the cache names and keeps, and its timings. Private to worker/.
 *
 * Every task the dispatcher (worker/ops.c) and the scheduler see is the t
 * of a struct worker_task, so a piece's task leads back to its worker_task
 * with worker_task_of. */
#ifndef GPUQ_WORKER_TASK_H
#define GPUQ_WORKER_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "ops/op.h"
#include "queue/stream.h"

struct worker_task {
    struct gpuq_task t;         /* what its op sees */
    struct gpuq_entry entry;
    enum gpuq_decode decoded;
    void *held;                 /* the reply entry and job borrow from */
    char *json_job;             /* a JSON job's msgpack twin, which job borrows from */
    /* scheduling */
    int admitted;               /* in the scheduler: its rows count as in flight */
    int64_t cost_us;            /* its compute time as the scheduler estimated it */
    int64_t deadline_ms;        /* 0: none */
    int64_t arrival_us;
    uint64_t seq;
    int64_t rows_queued;        /* rows handed out as pieces */
    int64_t rows_done;
    int64_t rows_freed;         /* rows done before the task was, no longer counted as held */
    /* results kept by content (the worker's --embed-cache-ttl) */
    char (*cache_names)[65];    /* per row: the hex digest naming its cached value, or NULL */
    void *cache_raw;            /* the rows computed, as the cache keeps them, until published */
    size_t cache_row_bytes;     /* the bytes of one raw row, as its op's cache_key says */
    int cache_hit;              /* answered from the cache, not computed */
    /* timings */
    int64_t queue_us, compute_us, batch_rows;
    int64_t total_us;           /* enqueue to publishing, set when first published */
};

/* The worker task whose ops' view t is. */
static inline struct worker_task *worker_task_of(const struct gpuq_task *t) {
    return (struct worker_task *)((uintptr_t)t - offsetof(struct worker_task, t));
}

#endif
