/* op.h -- what an op is. Each op is one descriptor in its own file
 * (ops/<name>.c, and ops/<name>.cu for its CUDA kernel), listed once in
 * base/ops.def: its inputs, its params (parsed into its own struct in the
 * task's params block), validation, batch key, packing, its kernels and
 * its twin check. The machinery (the dispatcher in worker/ops.c, the
 * backend tables, the fault wrapper, the twin driver) loops over
 * gpuq_op_table and never names an op.
 *
 * A task is the ops' view of a job the worker holds: the decoded job, what
 * prepare found, the op's params and outputs. It carries nothing of Redis;
 * the worker keeps its own state of the job (stream entry, scheduling,
 * timings) beside it. prepare validates it and says how many rows it
 * brings and in what units it may be split; the scheduler cuts
 * tasks into pieces (row ranges) and a batch of pieces that share a batch
 * key is packed, run on a backend, and scattered back; when a task's last
 * piece has run, finish sets its outputs. */
#ifndef GPUQ_OP_H
#define GPUQ_OP_H

#include <stddef.h>

#include "kernels/backend.h"
#include "queue/job.h"

/* A tensor larger than this many elements cannot be handed to BLAS (int). */
#define GPUQ_MAX_ELEMS ((int64_t)INT32_MAX)
#define GPUQ_OPS_BUFS 6
#define GPUQ_OP_PARAMS 192      /* bytes of an op's params struct, at most */
#define GPUQ_OP_OUTPUTS 5       /* outputs of a job, at most */

struct gpuq_task {
    struct gpuq_job job;
    /* from gpuq_ops_prepare */
    int64_t rows;               /* rows the job brings */
    int64_t unit;               /* it is split only at multiples of this */
    size_t out_bytes;           /* its outputs' data */
    enum gpuq_dtype dtype;      /* of its first input: part of the batch key */
    const struct gpuq_model *model;     /* the model it names, for ops that take one */
    /* ops batched by tokens (embed): prefix sums of the rows' tokens
     * [rows + 1], in own; NULL: batched by rows */
    const int64_t *token_off;
    void *own;                  /* the op's allocation, freed with the task */
    union {                     /* the op's own params: see gpuq_task_params */
        max_align_t align;
        unsigned char bytes[GPUQ_OP_PARAMS];
    } params;
    void *out;                  /* out_bytes (from the worker's output pool): scatter leaves
                                 * the rows there, finish reads them */
    /* results */
    struct gpuq_output outputs[GPUQ_OP_OUTPUTS];
    int n_outputs;
};

/* The op's params struct in t (of at most GPUQ_OP_PARAMS bytes). */
#define gpuq_task_params(t) ((void *)(t)->params.bytes)

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
    void *buf[GPUQ_OPS_BUFS];   /* packing space where be has no staging */
    size_t cap[GPUQ_OPS_BUFS];  /* bytes */
    void *out[2];               /* where the backend leaves the outputs */
    int out_cols;               /* knn: results per row in out */
};

struct gpuq_twin_run;

struct gpuq_op_desc {
    const char *const *inputs;  /* its input names, NULL-terminated */
    const char *const *params;  /* its param names, NULL-terminated (NULL: none) */
    int required;               /* the first `required` of them must be there */
    int u8;                     /* inputs are u8 (images), else f32, f16, bf16 or f64 */
    int bits;                   /* ... or u8 or i8 as well (packed bits: knn) */
    int text;                   /* inputs are text or integer tensors (embed) */
    int needs;                  /* 1 + the enum gpuq_cap its model must have; 0: it takes none */
    /* Checks the job (its inputs are checked by then) and parses its
     * params into gpuq_task_params(t); sets t->rows and, to split only at
     * multiples of more than a row, t->unit. 0, or -1 with the job failed. */
    int (*prepare)(struct gpuq_task *t);
    /* Bytes of the job's outputs, from its shapes and params (prepared). */
    size_t (*out_bytes)(const struct gpuq_task *t);
    /* Orders tasks by what must match to share a batch, beyond op, input
     * dtype and model; NULL: nothing more. */
    int (*compare)(const struct gpuq_task *a, const struct gpuq_task *b);
    /* Optional: whether t runs on the CPU backend where the op has a device
     * kernel (a path that kernel lacks); tasks that differ in it never
     * compare equal. */
    int (*cpu_only)(const struct gpuq_task *t);
    /* Packs pieces (rows is their sum) and starts them on s->be, leaving
     * s->out saying where the outputs will be; may reorder p. 0 or an enum
     * gpuq_status. */
    int (*pack)(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows);
    /* Once s->be synced: copies the outputs to the pieces' tasks. */
    void (*scatter)(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n);
    /* Sets t's outputs once all its rows are done. */
    void (*finish)(struct gpuq_task *t);
    /* Optional, for results kept by content: feeds feed() everything row's
     * raw output depends on (its model, inputs, and the params that act
     * before finish), and returns the bytes of a raw row, which scatter
     * leaves at t->out + row * bytes and finish turns into the outputs;
     * 0 when the row cannot be cached. */
    size_t (*cache_key)(const struct gpuq_task *t, int64_t row,
                        void (*feed)(void *ctx, const void *p, size_t n), void *ctx);
    /* Its kernel on each kind of backend; the CPU one is always there. */
    gpuq_kernel_fn *kernel[GPUQ_BACKEND_KINDS];
    /* Sizes its buffers at start, where a kind of backend keeps some. */
    gpuq_reserve_fn *reserve[GPUQ_BACKEND_KINDS];
    /* Runs the twin check's backend and the CPU on the same random inputs
     * (ops/twin.h) and notes the error, which must be within tol. */
    void (*twin)(struct gpuq_twin_run *r);
    double tol;
};

/* The descriptors, indexed by op (ops/table.c, from ops.def). */
extern const struct gpuq_op_desc *const gpuq_op_table[GPUQ_OP_COUNT];

/* The CUDA kernels live in the CUDA module (libgpuq-cuda.so), which binds
 * ops/<op>.cu's gpuq_cuda_<op> and gpuq_cuda_<op>_reserve by name
 * (kernels/cuda_module.c): the program itself links no CUDA, so a
 * descriptor's CUDA slots name their functions for the reader and hold NULL. */
#define GPUQ_CUDA_KERNEL(f) NULL

/* ---- helpers the ops share (ops/common.c) ---- */

/* Packing buffer i of the slot with room for bytes: the backend's pinned
 * staging when it has some. NULL with s->be->errstr set. */
void *gpuq_ops_buf(struct gpuq_ops_slot *s, int i, size_t bytes);

/* Sets output i (< GPUQ_OP_OUTPUTS) of t as a tensor of the given shape at data. */
void gpuq_ops_set_output(struct gpuq_task *t, int i, const char *name, enum gpuq_dtype dt,
                         void *data, int ndim, const int64_t *shape);

/* Sets output i of t as n strings (borrowed: they must live as long as t). */
void gpuq_ops_set_texts(struct gpuq_task *t, int i, const char *name, const struct gpuq_str *texts, int64_t n);

/* For ops on x [rows, cols], batched per cols: sets t->rows and *cols.
 * 0, or -1 with the job failed when x is not 2-D. */
int gpuq_ops_rows_of(struct gpuq_task *t, int *cols);

/* The rows ops' output y [rows, cols], f32. */
void gpuq_ops_finish_rows(struct gpuq_task *t, int cols);

/* Whether a text model's n raw outputs y are all finite; else the job
 * fails (op names it), its rows neither sent nor cached: an activation
 * past the range of the precision (f16's ends at 65504) leaves NaN. */
int gpuq_ops_finite(struct gpuq_task *t, const char *op, const float *y, size_t n);

/* Copies rows of each piece's input `name` (as f32, row length cols) into
 * dst, back to back. Returns dst advanced past them. */
float *gpuq_ops_pack_rows(const struct gpuq_piece *p, int n, const char *name, int cols,
                          float *dst);

/* Copies a batch's output rows y, cols each, back to each piece's task. */
void gpuq_ops_scatter_rows(const struct gpuq_piece *p, int n, const float *y, int cols);

#endif
