/* knn.h -- the knn kernel's arguments, shared by ops/knn.c and its CUDA
 * kernel ops/knn.cu. */
#ifndef GPUQ_OP_KNN_H
#define GPUQ_OP_KNN_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

enum gpuq_metric { GPUQ_METRIC_COSINE, GPUQ_METRIC_DOT, GPUQ_METRIC_L2 };

/* knn of rows queries [rows, dim] against an index: the k best per row,
 * highest score first for cosine and dot, lowest squared distance first for
 * l2; ties go to the lower index.
 *
 * With bits (the CPU only: ops/knn_binary.c), the queries are packed bits
 * [rows, index->bits_stride] and the hits are the lowest Hamming distances
 * (as scores); with cand too, row r's cand[r] nearest by Hamming are
 * rescored by metric against the index's floats with q, and the k best of
 * them kept (a row with cand[r] < k ends in index INT64_MAX). */
struct gpuq_knn {
    const struct gpuq_model *index;
    enum gpuq_metric metric;
    int k;
    const float *q;
    int rows;
    int64_t *indices;   /* [rows, k] */
    float *scores;      /* [rows, k] */
    const uint8_t *bits;        /* NULL: a float search */
    const int64_t *cand;        /* [rows], or NULL: no rescoring */
};

int gpuq_knn_binary_cpu(struct gpuq_backend *be, const struct gpuq_knn *a);

int gpuq_cuda_knn(struct gpuq_backend *be, const struct gpuq_launch *l);
int gpuq_cuda_knn_reserve(struct gpuq_backend *be, int rows);

#ifdef __cplusplus
}
#endif
#endif
