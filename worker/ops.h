/* ops.h -- the dispatcher: admits jobs through their op's descriptor
 * (ops/op.h), orders them by batch key, and runs batches of pieces on a
 * backend, two under way at once. It loops over the op table and never
 * names an op. A job that fails prepare never reaches a backend. Every
 * task a piece it runs names is the ops' view of a worker task
 * (worker/task.h): finishing a batch counts its rows and timings there. */
#ifndef GPUQ_OPS_H
#define GPUQ_OPS_H

#include "ops/op.h"

struct gpuq_ops {
    struct gpuq_backend *be;    /* the chosen backend */
    struct gpuq_backend *cpu;   /* runs the ops be has no kernel for */
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
    int64_t us;                 /* from its start to its end */
};

/* Room for batches of up to max_pieces pieces. 0, or -1 out of memory. */
int gpuq_ops_init(struct gpuq_ops *o, int max_pieces);

/* Validates t->job for its op (inputs, model, params, result size) and
 * fills the prepare fields. Returns 0, or -1 with the job failed. */
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

/* Moves op to the CPU backend (when the backend's kernel disagrees with
 * it): the CPU takes the backend's mlp precision and prepares the op's
 * models for it (mlp weights rounded as the device's copies are). 0, or
 * -1 with o->cpu->errstr. */
int gpuq_ops_to_cpu(struct gpuq_ops *o, enum gpuq_op op);

void gpuq_ops_free(struct gpuq_ops *o);

#endif
