/* matmul.h -- the matmul kernel's arguments, shared by ops/matmul.c and
 * its CUDA kernel ops/matmul.cu. */
#ifndef GPUQ_OP_MATMUL_H
#define GPUQ_OP_MATMUL_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* c[i] = alpha * op(a[i]) @ op(b[i]) for i < count. op(a) is m x k: a is stored
 * [m, k], or [k, m] when trans_a. Strides are in elements; 0 repeats one matrix. */
struct gpuq_matmul {
    int trans_a, trans_b;
    int m, n, k;
    int count;
    float alpha;
    const float *a;
    int64_t stride_a;
    const float *b;
    int64_t stride_b;
    float *c;           /* [count, m, n] */
};

/* n groups, each a strided batch of one shape (a grouped GEMM). */
struct gpuq_matmuls {
    const struct gpuq_matmul *g;
    int n;
};

/* A broadcast b beside a stack of untransposed a is one GEMM of count * m
 * rows (prepare bounds count * m * n by GPUQ_MAX_ELEMS). */
static inline struct gpuq_matmul gpuq_matmul_fold(struct gpuq_matmul mm) {
    if (mm.count > 1 && mm.stride_b == 0 && !mm.trans_a && mm.stride_a == (int64_t)mm.m * mm.k) {
        mm.m *= mm.count;
        mm.count = 1;
        mm.stride_a = (int64_t)mm.m * mm.k;
    }
    return mm;
}

int gpuq_cuda_matmul(struct gpuq_backend *be, const struct gpuq_launch *l);

#ifdef __cplusplus
}
#endif
#endif
