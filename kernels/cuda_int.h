/* cuda_int.h -- the CUDA backend's state, shared by cuda.cu (context,
 * buffers, GEMMs) and cuda_ops.cu (knn, softmax, layernorm, image).
 * Private to kernels/; C++ for nvcc. */
#ifndef GPUQ_CUDA_INT_H
#define GPUQ_CUDA_INT_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/backend.h"

#define CUDA_DEV_BUFS 6

struct cuda_buf {
    void *p;
    size_t cap;     /* bytes */
};

/* One batch's worth: its stream, cuBLAS handle (cuBLAS keeps a workspace
 * per handle), device buffers and pinned host staging. */
struct cuda_slot {
    cudaStream_t stream;
    cublasHandle_t blas;
    struct cuda_buf dev[CUDA_DEV_BUFS];
    struct cuda_buf host[GPUQ_STAGING + 1];   /* the last: the backend's own */
};

struct cuda_ctx {
    int device;
    struct cuda_slot slot[2];
    int cur;                /* the slot ops go on */
    /* the loaded models' largest needs, for reserve */
    int mlp_width, mlp_in, mlp_out;
    int knn_dim;
};

/* A loaded index on the device. */
struct cuda_index {
    float *emb;     /* [n, dim] */
    float *norms;   /* [n] */
};

/* Sets be->errstr and says how bad a failure is: GPUQ_BE_NOMEM for memory,
 * GPUQ_BE_LOST when the device no longer answers (a sticky error), else
 * GPUQ_BE_FAILED. */
int cuda_fail(struct gpuq_backend *be, cudaError_t e, int line);
int cublas_fail(struct gpuq_backend *be, cublasStatus_t s, int line);

#define CU(call)                                                 \
    do {                                                         \
        cudaError_t e_ = (call);                                 \
        if (e_ != cudaSuccess) return cuda_fail(be, e_, __LINE__); \
    } while (0)

#define BLAS(call)                                                       \
    do {                                                                 \
        cublasStatus_t s_ = (call);                                      \
        if (s_ != CUBLAS_STATUS_SUCCESS) return cublas_fail(be, s_, __LINE__); \
    } while (0)

/* After a kernel launch. */
#define LAUNCHED() CU(cudaGetLastError())

static inline struct cuda_ctx *cuda_of(struct gpuq_backend *be) { return (struct cuda_ctx *)be->ctx; }
static inline struct cuda_slot *cuda_cur(struct gpuq_backend *be) {
    return &cuda_of(be)->slot[cuda_of(be)->cur];
}

/* Device buffer i of the current slot with room for bytes: grown (after
 * its stream is idle), never shrunk. 0, or a status. */
int cuda_dev(struct gpuq_backend *be, int i, size_t bytes, void **out);

/* Copies host memory of the current slot's staging (or any host memory)
 * to and from the device on the current stream. */
int cuda_up(struct gpuq_backend *be, void *dst, const void *src, size_t bytes);
int cuda_down(struct gpuq_backend *be, void *dst, const void *src, size_t bytes);

/* The ops in cuda_ops.cu. */
int cuda_knn(struct gpuq_backend *be, const struct gpuq_knn *q);
int cuda_softmax(struct gpuq_backend *be, const float *x, int rows, int cols, float *y);
int cuda_layernorm(struct gpuq_backend *be, const struct gpuq_layernorm *ln);
int cuda_image(struct gpuq_backend *be, const struct gpuq_image *im, int n);
int cuda_index_load(struct gpuq_backend *be, struct gpuq_model *m);
void cuda_index_free(struct gpuq_model *m);

/* Scores of one knn query block are computed this many index rows at a time. */
#define CUDA_KNN_BLOCK 16384

#endif
