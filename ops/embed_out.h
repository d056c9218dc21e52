/* embed_out.h -- what the embed op returns for each row: the first
 * `dimensions` components (normalized again when the job normalizes), in
 * the `dtype` the job asks for, as sentence-transformers' truncate_dim and
 * quantize_embeddings give them. */
#ifndef GPUQ_OP_EMBED_OUT_H
#define GPUQ_OP_EMBED_OUT_H

#include <stddef.h>

#include "ops/op.h"

enum gpuq_embed_dtype {
    GPUQ_EMBED_F32, GPUQ_EMBED_F16, GPUQ_EMBED_INT8, GPUQ_EMBED_UINT8, GPUQ_EMBED_BINARY,
    GPUQ_EMBED_UBINARY
};

struct gpuq_embed_out {
    int dims;               /* components kept (the model's hidden size by default) */
    int dtype;              /* enum gpuq_embed_dtype */
    int ranges;             /* int8/uint8: the job gives its ranges (else the job's rows do) */
};

/* Reads the job's dimensions, dtype and ranges params against a model of
 * hidden components. 0, or -1 with the job failed (bad_request). */
int gpuq_embed_out_read(struct gpuq_task *t, int hidden, struct gpuq_embed_out *o);

/* After the rows are known: int8/uint8 of one row needs the job's ranges,
 * as quantize_embeddings refuses to infer them from a single embedding. */
int gpuq_embed_out_check_rows(struct gpuq_task *t, const struct gpuq_embed_out *o);

/* Bytes of one row of y as returned. */
size_t gpuq_embed_out_row_bytes(const struct gpuq_embed_out *o);

/* Turns y, rows x hidden f32 as the encoder gave them, into what o asks
 * for, in place (the rows packed at y's start); normalize: L2-normalize the
 * kept components when fewer than hidden are kept. Sets *dt to the output
 * dtype and returns the output's columns. */
int64_t gpuq_embed_out_finish(struct gpuq_task *t, const struct gpuq_embed_out *o, int normalize,
                              float *y, int64_t rows, int hidden, enum gpuq_dtype *dt);

#endif
