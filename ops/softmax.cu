/* softmax.cu -- softmax on CUDA, one block per row; the twin of the CPU
 * kernel in softmax.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "ops/softmax.h"

__global__ static void softmax_kernel(const float *x, float *y, int cols) {
    const float *in = x + (size_t)blockIdx.x * cols;
    float *out = y + (size_t)blockIdx.x * cols, mx = -INFINITY, sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, in[j]);
    mx = block_reduce(mx, 1);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += out[j] = expf(in[j] - mx);
    sum = block_reduce(sum, 0);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) out[j] = out[j] / sum;
}

extern "C" int gpuq_cuda_softmax(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_softmax *a = (const struct gpuq_softmax *)l->args;
    const float *x = a->x;
    float *y = a->y;
    int rows = a->rows, cols = a->cols;
    size_t bytes = (size_t)rows * cols * 4;
    void *dx, *dy;
    int rc;
    if ((rc = cuda_dev(be, 0, bytes, &dx)) || (rc = cuda_dev(be, 1, bytes, &dy)) ||
        (rc = cuda_up(be, dx, x, bytes)))
        return rc;
    softmax_kernel<<<rows, CUDA_THREADS, 0, cuda_cur(be)->stream>>>((const float *)dx, (float *)dy, cols);
    LAUNCHED();
    return cuda_down(be, y, dy, bytes);
}

