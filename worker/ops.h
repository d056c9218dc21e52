/* ops.h -- what each op asks of a job, which jobs may share a batch, and
 * running one batch on a backend.
 *
 * Flow: gpuq_ops_prepare on every decoded job (validates, counts rows and
 * output size), sort by gpuq_ops_compare, then gpuq_ops_run on each run of
 * jobs that compare equal. A job that fails prepare gets its error result and
 * never reaches a backend. */
#ifndef GPUQ_OPS_H
#define GPUQ_OPS_H

#include "kernels/backend.h"
#include "queue/job.h"
#include "queue/stream.h"

struct gpuq_task {
    struct gpuq_entry entry;
    struct gpuq_job job;
    enum gpuq_decode decoded;
    /* from gpuq_ops_prepare */
    int rows;                   /* rows the job adds to a batch */
    size_t out_floats;
    const struct gpuq_model *model;
    struct gpuq_matmul mm;      /* matmul shape; count = this job's matrices */
    int batched;                /* matmul: output is [count, m, n] */
    int a_count, b_count;       /* matmul: matrices in a and b (1 broadcasts) */
    /* from gpuq_ops_run */
    int64_t queue_us, compute_us, batch_rows;
    struct gpuq_output outputs[2];
    int n_outputs;
};

struct gpuq_ops {
    struct gpuq_backend *be;
    struct gpuq_model *models;
    int n_models;
    float *pack[2];             /* packed inputs, grown to the largest batch */
    size_t pack_cap[2];
};

/* Validates t->job for its op. Returns 0, or -1 with the job failed. */
int gpuq_ops_prepare(struct gpuq_ops *o, struct gpuq_task *t);

/* Orders prepared tasks by batch key; 0 means they may share a batch. */
int gpuq_ops_compare(const struct gpuq_task *a, const struct gpuq_task *b);

/* Runs tasks[0..n) (one batch key) as one batch, writing outputs at out
 * (room for the sum of their out_floats). On a backend failure every task
 * fails with internal and -1 is returned. */
int gpuq_ops_run(struct gpuq_ops *o, struct gpuq_task **tasks, int n, float *out);

void gpuq_ops_free(struct gpuq_ops *o);

#endif
