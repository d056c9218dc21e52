/* classify.cu -- the classify op's CUDA kernel: the batch through the
 * encoder's CUDA forward pass with its head (kernels/encoder.cu). */
#include "kernels/cuda_int.h"
#include "ops/embed.h"
#include "ops/score.h"

extern "C" int gpuq_cuda_classify(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_embed *a = (const struct gpuq_embed *)l->args;
    return cuda_encoder_forward(be, a->model, &a->b, a->n_tokens, a->max_len);
}
