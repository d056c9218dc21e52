/* layernorm.cu -- layernorm on CUDA, one block per row; the twin of the
 * CPU kernel in layernorm.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "ops/layernorm.h"
/* One block per row, each row with its parameter set. */
__global__ static void layernorm_kernel(const float *x, float *y, int cols, const int *row_set,
                                        const float *gamma, const float *beta, const float *eps) {
    int set = row_set[blockIdx.x];
    layernorm_row(x + (size_t)blockIdx.x * cols, y + (size_t)blockIdx.x * cols, cols,
                  gamma + (size_t)set * cols, beta + (size_t)set * cols, eps[set], NULL, 0, 0);
}

extern "C" int gpuq_cuda_layernorm(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_layernorm *ln = (const struct gpuq_layernorm *)l->args;
    int sets = 0;
    for (int r = 0; r < ln->rows; r++)
        if (ln->row_set[r] + 1 > sets) sets = ln->row_set[r] + 1;
    size_t bytes = (size_t)ln->rows * ln->cols * 4, pbytes = (size_t)sets * ln->cols * 4;
    void *dx, *dy, *dp, *ds;
    int rc;
    if ((rc = cuda_dev(be, 0, bytes, &dx)) || (rc = cuda_dev(be, 1, bytes, &dy)) ||
        (rc = cuda_dev(be, 2, 2 * pbytes + (size_t)sets * 4, &dp)) ||
        (rc = cuda_dev(be, 3, (size_t)ln->rows * sizeof(int), &ds)))
        return rc;
    float *g = (float *)dp, *b = g + (size_t)sets * ln->cols, *eps = b + (size_t)sets * ln->cols;
    if ((rc = cuda_up(be, dx, ln->x, bytes)) || (rc = cuda_up(be, g, ln->gamma, pbytes)) ||
        (rc = cuda_up(be, b, ln->beta, pbytes)) || (rc = cuda_up(be, eps, ln->eps, (size_t)sets * 4)) ||
        (rc = cuda_up(be, ds, ln->row_set, (size_t)ln->rows * sizeof(int))))
        return rc;
    layernorm_kernel<<<ln->rows, CUDA_THREADS, 0, cuda_cur(be)->stream>>>(
        (const float *)dx, (float *)dy, ln->cols, (const int *)ds, g, b, eps);
    LAUNCHED();
    return cuda_down(be, ln->y, dy, bytes);
}

