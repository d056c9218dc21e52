/* embed.cu -- the embed op's CUDA kernel: the batch through the encoder's
 * CUDA forward pass (kernels/encoder.cu). */
#include "kernels/cuda_int.h"
#include "ops/embed.h"

extern "C" int gpuq_cuda_embed(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_embed *a = (const struct gpuq_embed *)l->args;
    if (!gpuq_model_encoder(a->model)) {   /* a decoder: its model_load refused it, so this is not reached */
        snprintf(be->errstr, sizeof(be->errstr), "embed: no CUDA forward pass for this model's arch");
        return GPUQ_BE_FAILED;
    }
    return cuda_encoder_forward(be, a->model, &a->b, a->n_tokens, a->max_len);
}
