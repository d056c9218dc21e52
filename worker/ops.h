/* ops.h -- what each op asks of a job, which jobs may share a batch, and
 * running one batch of pieces on a backend.
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

struct gpuq_ops {
    struct gpuq_backend *be;    /* the chosen backend */
    struct gpuq_backend *cpu;   /* runs what be leaves NULL */
    struct gpuq_model *models;
    int n_models;
    float *buf[GPUQ_OPS_BUFS];  /* packing space, grown to the largest batch */
    size_t cap[GPUQ_OPS_BUFS];  /* floats */
};

/* Validates t->job for its op and fills the prepare fields. Returns 0, or
 * -1 with the job failed. */
int gpuq_ops_prepare(struct gpuq_ops *o, struct gpuq_task *t);

/* Orders prepared tasks by batch key; 0 means they may share a batch. */
int gpuq_ops_compare(const struct gpuq_task *a, const struct gpuq_task *b);

/* Runs one batch of pieces (one batch key). Tasks whose last piece ran get
 * their outputs. On a backend failure every piece's task fails with
 * internal and -1 is returned (the worker keeps serving). */
int gpuq_ops_run(struct gpuq_ops *o, const struct gpuq_piece *p, int n);

/* Whether the backend runs op itself (else the CPU backend does). */
int gpuq_ops_on_backend(const struct gpuq_ops *o, enum gpuq_op op);

void gpuq_ops_free(struct gpuq_ops *o);

#endif
