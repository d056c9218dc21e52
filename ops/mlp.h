/* mlp.h -- the mlp kernel's arguments, shared by ops/mlp.c and its CUDA
 * kernel ops/mlp.cu. */
#ifndef GPUQ_OP_MLP_H
#define GPUQ_OP_MLP_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y [rows, d_out] = mlp(x [rows, d_in]) through a loaded model, in the
 * backend's precision. */
struct gpuq_mlp_args {
    const struct gpuq_model *m;
    const float *x;
    int rows;
    float *y;
};

int gpuq_cuda_mlp(struct gpuq_backend *be, const struct gpuq_launch *l);
int gpuq_cuda_mlp_reserve(struct gpuq_backend *be, int rows);

#ifdef __cplusplus
}
#endif
#endif
