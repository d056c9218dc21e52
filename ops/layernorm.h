/* layernorm.h -- the layernorm kernel's arguments, shared by
 * ops/layernorm.c and its CUDA kernel ops/layernorm.cu. */
#ifndef GPUQ_OP_LAYERNORM_H
#define GPUQ_OP_LAYERNORM_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* layernorm over the last axis; row r uses parameter set row_set[r]: gamma
 * and beta rows [n_sets, cols] and eps[n_sets]. */
struct gpuq_layernorm {
    const float *x;
    int rows, cols;
    const int *row_set;
    const float *gamma, *beta, *eps;
    float *y;
};

int gpuq_cuda_layernorm(struct gpuq_backend *be, const struct gpuq_launch *l);

#ifdef __cplusplus
}
#endif
#endif
