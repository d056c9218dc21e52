/* embed.h -- the embed kernel's arguments, shared by ops/embed.c and its
 * CUDA kernel ops/embed.cu. */
#ifndef GPUQ_OP_EMBED_H
#define GPUQ_OP_EMBED_H

#include "kernels/backend.h"
#include "kernels/encoder.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One padding-free batch through a loaded text encoder (gpuq_model_encoder;
 * a backend keeps its copy of the weights in model->backend_data). */
struct gpuq_embed {
    const struct gpuq_model *model;
    struct gpuq_encode_batch b;
    int n_tokens, max_len;      /* the batch's tokens, its longest sequence */
};

int gpuq_cuda_embed(struct gpuq_backend *be, const struct gpuq_launch *l);

#ifdef __cplusplus
}
#endif
#endif
