/* embed.cu -- the embed op's CUDA kernel: the batch through the text
 * model's CUDA forward pass (kernels/encoder.cu, kernels/decoder.cu). */
#include "kernels/cuda_int.h"
#include "ops/embed.h"

extern "C" int gpuq_cuda_embed(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_embed *a = (const struct gpuq_embed *)l->args;
    if (gpuq_model_decoder(a->model)) return cuda_decoder_forward(be, a->model, &a->b, a->n_tokens, a->max_len);
    return cuda_encoder_forward(be, a->model, &a->b, a->n_tokens, a->max_len);
}
