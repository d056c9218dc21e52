/* op_impl.h -- the per-op table behind ops.c, and helpers the ops share. */
#ifndef GPUQ_OP_IMPL_H
#define GPUQ_OP_IMPL_H

#include "worker/ops.h"

/* A tensor larger than this many elements cannot be handed to BLAS (int). */
#define GPUQ_MAX_ELEMS ((int64_t)INT32_MAX)

struct gpuq_op_impl {
    int (*prepare)(struct gpuq_ops *o, struct gpuq_task *t);
    /* packs pieces (rows is their sum) and starts them on s->be, leaving
     * s->out saying where the outputs will be; may reorder p */
    int (*run)(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows);
    /* once s->be synced: copies the outputs to the pieces' tasks */
    void (*scatter)(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n);
    /* sets t->outputs once all its rows are done */
    void (*finish)(struct gpuq_task *t);
};

extern const struct gpuq_op_impl gpuq_op_matmul, gpuq_op_mlp, gpuq_op_knn, gpuq_op_softmax,
    gpuq_op_layernorm, gpuq_op_image;

/* The job's inputs must be exactly names (NULL-terminated; the first
 * `required` of them present), non-empty, and of an allowed kind: float
 * dtypes, or u8 when want_u8. -1 with the job failed otherwise. */
int gpuq_ops_want_inputs(struct gpuq_job *job, const char *const *names, int required,
                         int want_u8);

/* Packing buffer i of the slot with room for floats: the backend's pinned
 * staging when it has some. NULL with s->be->errstr set. */
float *gpuq_ops_buf(struct gpuq_ops_slot *s, int i, size_t floats);

/* The model named in the job, of the kind wanted; -1 with the job failed. */
int gpuq_ops_find_model(struct gpuq_ops *o, struct gpuq_task *t, enum gpuq_model_kind kind);

/* Sets output 0 (or 1) of t as an f32 or i64 tensor of the given shape. */
void gpuq_ops_set_output(struct gpuq_task *t, int i, const char *name, enum gpuq_dtype dt,
                         void *data, int ndim, const int64_t *shape);

/* Copies rows of each piece's input `name` (as f32, row length cols) into
 * dst, back to back. Returns dst advanced past them. */
float *gpuq_ops_pack_rows(const struct gpuq_piece *p, int n, const char *name, int cols,
                          float *dst);

/* Copies a batch's output rows y, cols each, back to each piece's task. */
void gpuq_ops_scatter_rows(const struct gpuq_piece *p, int n, const float *y, int cols);

#endif
