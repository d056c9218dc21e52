/* cpu_ops.h -- the CPU backend's row ops: knn, softmax, layernorm, image
 * preprocessing. Each is the reference its CUDA twin is checked against. */
#ifndef GPUQ_CPU_OPS_H
#define GPUQ_CPU_OPS_H

#include "kernels/backend.h"

int gpuq_cpu_knn(struct gpuq_backend *be, const struct gpuq_knn *q);
int gpuq_cpu_softmax(struct gpuq_backend *be, const float *x, int rows, int cols, float *y);
int gpuq_cpu_layernorm(struct gpuq_backend *be, const struct gpuq_layernorm *ln);
int gpuq_cpu_image(struct gpuq_backend *be, const struct gpuq_image *im, int n);

/* Scratch buffer i (0 to 2) of the CPU backend with room for floats;
 * grown, never shrunk. NULL with be->errstr when out of memory. */
float *gpuq_cpu_scratch(struct gpuq_backend *be, int i, size_t floats);

#endif
