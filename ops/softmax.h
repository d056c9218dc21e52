/* softmax.h -- the softmax kernel's arguments, shared by ops/softmax.c and
 * its CUDA kernel ops/softmax.cu. */
#ifndef GPUQ_OP_SOFTMAX_H
#define GPUQ_OP_SOFTMAX_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y = softmax(x) over the last axis of [rows, cols]. */
struct gpuq_softmax {
    const float *x;
    int rows, cols;
    float *y;
};

int gpuq_cuda_softmax(struct gpuq_backend *be, const struct gpuq_launch *l);

#ifdef __cplusplus
}
#endif
#endif
