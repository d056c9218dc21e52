/* knn.cu -- knn on CUDA, the twin of the CPU kernel in knn.c.
 *
 * knn keeps the index on the device. A batch's queries meet the index one
 * block of rows at a time (one GEMM each); a radix select per query row
 * keeps the k best of what it had and the new block, so the full score
 * matrix never leaves the device. A hit is a 64-bit key, score above and
 * the complement of its index below: keys are distinct, larger is better,
 * and ties go to the lower index, as on the CPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "ops/knn.h"

typedef unsigned long long u64;

/* |q|^2 of each row into qn2; cosine rows are then scaled to unit length. */
__global__ static void knn_prep_kernel(float *q, float *qn2, int d, int cosine) {
    float *row = q + (size_t)blockIdx.x * d, s = 0.0f;
    for (int j = threadIdx.x; j < d; j += blockDim.x) s += row[j] * row[j];
    s = block_reduce(s, 0);
    if (threadIdx.x == 0) qn2[blockIdx.x] = s;
    if (cosine && s > 0.0f) {
        float norm = sqrtf(s);
        for (int j = threadIdx.x; j < d; j += blockDim.x) row[j] = row[j] / norm;
    }
}

__device__ static unsigned order_bits(float v) {
    unsigned u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ static float from_order_bits(unsigned u) {
    return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}

/* The key of index row id with dot product dot against query row r. */
__device__ static u64 hit_key(float dot, unsigned id, int metric, float qn2, const float *norms) {
    float s = dot;
    if (metric == GPUQ_METRIC_COSINE) s = norms[id] > 0.0f ? dot / norms[id] : 0.0f;
    else if (metric == GPUQ_METRIC_L2) s = fmaxf(qn2 + norms[id] * norms[id] - 2.0f * dot, 0.0f);
    float v = metric == GPUQ_METRIC_L2 ? -s : s;     /* larger is better */
    v = v + 0.0f;                                    /* one zero */
    if (v != v) v = -INFINITY;                       /* NaN: the worst */
    return ((u64)order_bits(v) << 32) | (u64)(0xffffffffu - id);
}

/* Row blockIdx.x: the k best of its k kept keys (none for the first
 * block) and the nb new scores, by radix select on the keys, 8 bits a pass. */
__global__ static void knn_merge_kernel(const float *scores, int nb, unsigned b0, int metric,
                                        const float *qn2, const float *norms, const u64 *kin,
                                        u64 *kout, int k) {
    __shared__ unsigned hist[256];
    __shared__ u64 s_prefix;
    __shared__ unsigned s_need, s_out;
    int r = blockIdx.x, nprev = kin ? k : 0, count = nprev + nb;
    const float *row = scores + (size_t)r * nb;
    const u64 *prev = kin ? kin + (size_t)r * k : NULL;
    float q2 = qn2[r];
    if (threadIdx.x == 0) s_prefix = 0, s_need = (unsigned)k, s_out = 0;
    u64 mask = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        u64 prefix = s_prefix;
        for (int i = threadIdx.x; i < count; i += blockDim.x) {
            u64 key = i < nprev ? prev[i] : hit_key(row[i - nprev], b0 + (unsigned)(i - nprev), metric, q2, norms);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {     /* the digit where the k-th best falls */
            unsigned need = s_need, above = 0;
            for (int dgt = 255; dgt >= 0; dgt--) {
                if (above + hist[dgt] >= need) {
                    s_prefix = prefix | ((u64)dgt << shift);
                    s_need = need - above;
                    break;
                }
                above += hist[dgt];
            }
        }
        mask |= (u64)0xff << shift;
        __syncthreads();
    }
    u64 kth = s_prefix;     /* keys are distinct: exactly k are >= it */
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        u64 key = i < nprev ? prev[i] : hit_key(row[i - nprev], b0 + (unsigned)(i - nprev), metric, q2, norms);
        if (key >= kth) {
            unsigned at = atomicAdd(&s_out, 1u);
            if (at < (unsigned)k) kout[(size_t)r * k + at] = key;
        }
    }
}

/* Row blockIdx.x: its k keys sorted best first (bitonic, in shared
 * memory, padded to kpow2 with zero keys), written as indices and scores. */
__global__ static void knn_final_kernel(const u64 *keys, int k, int kpow2, int metric,
                                        int64_t *indices, float *scores) {
    extern __shared__ u64 sk[];
    int r = blockIdx.x;
    for (int i = threadIdx.x; i < kpow2; i += blockDim.x) sk[i] = i < k ? keys[(size_t)r * k + i] : 0;
    __syncthreads();
    for (int size = 2; size <= kpow2; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < kpow2; i += blockDim.x) {
                int j = i ^ stride;
                if (j > i) {
                    u64 a = sk[i], b = sk[j];
                    if ((i & size) == 0 ? a < b : a > b) sk[i] = b, sk[j] = a;
                }
            }
            __syncthreads();
        }
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        u64 key = sk[i];
        float v = from_order_bits((unsigned)(key >> 32));
        indices[(size_t)r * k + i] = (int64_t)(0xffffffffu - (unsigned)(key & 0xffffffffu));
        scores[(size_t)r * k + i] = (metric == GPUQ_METRIC_L2 ? -v : v) + 0.0f;
    }
}

extern "C" int gpuq_cuda_knn(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_knn *q = (const struct gpuq_knn *)l->args;
    cudaStream_t st = cuda_cur(be)->stream;
    cublasHandle_t blas = cuda_cur(be)->blas;
    const struct gpuq_model *ix = q->index;
    const struct cuda_index *di = (const struct cuda_index *)ix->backend_data;
    int d = ix->dim, k = q->k, rows = q->rows;
    int64_t n = ix->n_rows;
    size_t rk = (size_t)rows * k;
    void *qbuf, *block, *keys0, *keys1, *out;
    int rc;
    if ((rc = cuda_dev(be, 0, (size_t)rows * (d + 1) * 4, &qbuf)) ||
        (rc = cuda_dev(be, 1, (size_t)rows * CUDA_KNN_BLOCK * 4, &block)) ||
        (rc = cuda_dev(be, 2, rk * 8, &keys0)) || (rc = cuda_dev(be, 3, rk * 8, &keys1)) ||
        (rc = cuda_dev(be, 4, rk * 12, &out)))
        return rc;
    float *dq = (float *)qbuf, *qn2 = dq + (size_t)rows * d, *S = (float *)block;
    u64 *kin = NULL, *kout = (u64 *)keys0, *spare = (u64 *)keys1;
    if ((rc = cuda_up(be, dq, q->q, (size_t)rows * d * 4))) return rc;
    knn_prep_kernel<<<rows, CUDA_THREADS, 0, st>>>(dq, qn2, d, q->metric == GPUQ_METRIC_COSINE);
    LAUNCHED();
    float one = 1.0f, zero = 0.0f;
    for (int64_t b0 = 0; b0 < n; b0 += CUDA_KNN_BLOCK) {
        int nb = (int)(n - b0 < CUDA_KNN_BLOCK ? n - b0 : CUDA_KNN_BLOCK);
        /* column-major S^T [nb, rows] = E_block [nb, d] . Q^T */
        BLAS(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, nb, rows, d, &one, di->emb + b0 * d, d, dq, d,
                         &zero, S, nb));
        knn_merge_kernel<<<rows, CUDA_THREADS, 0, st>>>(S, nb, (unsigned)b0, q->metric, qn2, di->norms,
                                                   kin, kout, k);
        LAUNCHED();
        kin = kout;
        kout = spare;
        spare = kin;
    }
    int kpow2 = 1;
    while (kpow2 < k) kpow2 <<= 1;
    int64_t *didx = (int64_t *)out;
    float *dscores = (float *)(didx + rk);
    knn_final_kernel<<<rows, CUDA_THREADS, (size_t)kpow2 * sizeof(u64), st>>>(kin, k, kpow2, q->metric,
                                                                          didx, dscores);
    LAUNCHED();
    if ((rc = cuda_down(be, q->indices, didx, rk * 8)) || (rc = cuda_down(be, q->scores, dscores, rk * 4)))
        return rc;
    return 0;
}


/* On the device: q and norms | a score block | keys twice | indices and
 * scores; in pinned staging: q, scores, indices; for k up to 4096 on the
 * widest loaded index. */
extern "C" int gpuq_cuda_knn_reserve(struct gpuq_backend *be, int rows) {
    struct cuda_ctx *c = cuda_of(be);
    size_t r = (size_t)rows, d = (size_t)c->knn_dim, k = 4096;
    if (!d) return 0;
    for (int s = 0; s < 2; s++) {
        void *p;
        int rc;
        c->cur = s;
        if ((rc = cuda_dev(be, 0, r * (d + 1) * 4, &p)) ||
            (rc = cuda_dev(be, 1, r * CUDA_KNN_BLOCK * 4, &p)) || (rc = cuda_dev(be, 2, r * k * 8, &p)) ||
            (rc = cuda_dev(be, 3, r * k * 8, &p)) || (rc = cuda_dev(be, 4, r * k * 12, &p)))
            return rc;
        if (!cuda_host(be, s, 0, r * d * 4) || !cuda_host(be, s, 1, r * k * 4) ||
            !cuda_host(be, s, 2, r * k * 8))
            return GPUQ_BE_NOMEM;
    }
    return 0;
}
