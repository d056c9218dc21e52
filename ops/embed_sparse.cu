/* embed_sparse.cu -- the embed_sparse op's CUDA kernel: the batch through
 * the encoder's CUDA forward pass, which ends in its masked-LM head
 * (SPLADE's pooling, kernels/encoder.cu). */
#include "kernels/cuda_int.h"
#include "ops/embed.h"
#include "ops/score.h"

extern "C" int gpuq_cuda_embed_sparse(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_embed *a = (const struct gpuq_embed *)l->args;
    return cuda_encoder_forward(be, a->model, &a->b, a->n_tokens, a->max_len);
}
