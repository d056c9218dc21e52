/* ops.h -- what each op asks of a job, which jobs may share a batch, and
 * running batches of pieces on a backend.
 *
 * A task is a job the worker holds. gpuq_ops_prepare validates it and says
 * how many rows it brings and in what units it may be split. The scheduler
 * cuts tasks into pieces (row ranges) and hands gpuq_ops_run a batch of
 * pieces that share a batch key; when a task's last piece has run, its
 * outputs are set. A job that fails prepare never reaches a backend. */
#ifndef GPUQ_OPS_H
#define GPUQ_OPS_H

#include "kernels/backend.h"
#include "queue/job.h"
#include "queue/stream.h"

#define GPUQ_MAX_CHANNELS 16
#define GPUQ_OPS_BUFS 6

struct gpuq_task {
    struct gpuq_entry entry;
    struct gpuq_job job;
    enum gpuq_decode decoded;
    void *held;                 /* the reply entry and job borrow from */
    char *json_job;             /* a JSON job's msgpack twin, which job borrows from */
    /* from gpuq_ops_prepare */
    int64_t rows;               /* rows the job brings */
    int64_t unit;               /* it is split only at multiples of this */
    size_t out_words;           /* output buffer, in 4-byte words */
    enum gpuq_dtype dtype;      /* of its first input: part of the batch key */
    const struct gpuq_model *model;
    int cols;                   /* softmax, layernorm: row length; knn: dim; image: channels */
    int k;                      /* knn */
    enum gpuq_metric metric;    /* knn */
    float eps;                  /* layernorm */
    struct gpuq_matmul mm;      /* matmul shape; count = this job's matrices */
    int batched;                /* matmul: output is [count, m, n] */
    int a_count, b_count;       /* matmul: matrices in a and b (1 broadcasts) */
    float mean[GPUQ_MAX_CHANNELS], std[GPUQ_MAX_CHANNELS];  /* image */
    int out_h, out_w;           /* image */
    /* scheduling */
    int admitted;               /* in the scheduler: its rows count as in flight */
    int64_t deadline_ms;        /* 0: none */
    int64_t arrival_us;
    uint64_t seq;
    int64_t rows_queued;        /* rows handed out as pieces */
    int64_t rows_done;
    float *out;                 /* from the worker's output pool */
    /* results */
    int64_t queue_us, compute_us, batch_rows;
    struct gpuq_output outputs[2];
    int n_outputs;
};

/* Rows [row0, row0 + rows) of a task. */
struct gpuq_piece {
    struct gpuq_task *t;
    int64_t row0, rows;
};

/* One of the two batches that may be under way at once: while one
 * computes on the device, the next one packs and uploads. */
struct gpuq_ops_slot {
    int index;
    struct gpuq_backend *be;    /* runs this batch */
    struct gpuq_piece *p;       /* the batch, in the order its op left it */
    int n;
    int64_t rows, start_us;
    int rc;                     /* from starting it */
    int split;                  /* ran in parts at once: its outputs are with the tasks */
    float *buf[GPUQ_OPS_BUFS];  /* packing space where be has no staging */
    size_t cap[GPUQ_OPS_BUFS];  /* floats */
    void *out[2];               /* where the backend leaves the outputs */
    int out_cols;               /* knn: results per row in out */
};

struct gpuq_ops {
    struct gpuq_backend *be;    /* the chosen backend */
    struct gpuq_backend *cpu;   /* runs what be leaves NULL, and on_cpu */
    unsigned on_cpu;            /* bit per op: served by cpu (be disagreed with it) */
    int64_t max_result_bytes;   /* larger results are too_large at admission */
    struct gpuq_model *models;
    int n_models;
    struct gpuq_ops_slot slot[2];
    int next;                   /* the slot the next batch takes */
    int n_pending;              /* batches started and not finished */
};

/* A finished batch, as gpuq_ops_finish reports it. */
struct gpuq_batch {
    const struct gpuq_piece *p;
    int n;
    int64_t rows;
    int rc;                     /* 0, or an enum gpuq_status */
    const char *why;            /* the backend's reason when rc != 0 */
    int split;                  /* it ran in parts, for want of device memory */
};

/* Room for batches of up to max_pieces pieces. 0, or -1 out of memory. */
int gpuq_ops_init(struct gpuq_ops *o, int max_pieces);

/* Validates t->job for its op and fills the prepare fields. Returns 0, or
 * -1 with the job failed. */
int gpuq_ops_prepare(struct gpuq_ops *o, struct gpuq_task *t);

/* Orders prepared tasks by batch key; 0 means they may share a batch. */
int gpuq_ops_compare(const struct gpuq_task *a, const struct gpuq_task *b);

/* Starts one batch of pieces (one batch key); at most two are under way.
 * A batch that does not fit in device memory runs at once in halves. */
void gpuq_ops_start(struct gpuq_ops *o, const struct gpuq_piece *p, int n);

/* Waits for the oldest batch started. Its pieces' rows count as done;
 * tasks whose last piece ran get their outputs; on a failure every
 * piece's task fails with internal (the worker keeps serving, unless rc
 * is GPUQ_BE_LOST). */
void gpuq_ops_finish(struct gpuq_ops *o, struct gpuq_batch *b);

/* Batches started and not finished. */
static inline int gpuq_ops_pending(const struct gpuq_ops *o) { return o->n_pending; }

/* Whether the last batch started runs on streams, so that the next one
 * may be packed before it is finished. */
int gpuq_ops_async(const struct gpuq_ops *o);

/* Whether the backend runs op itself (else the CPU backend does). */
int gpuq_ops_on_backend(const struct gpuq_ops *o, enum gpuq_op op);

void gpuq_ops_free(struct gpuq_ops *o);

#endif
