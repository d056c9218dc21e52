/* knn.cu -- knn on CUDA, the twin of the CPU kernel in knn.c.
 *
 * knn keeps the index on the device. A batch's queries meet the index one
 * block of rows at a time (one GEMM each); a radix select per query row
 * keeps the k best of what it had and the new block, so the full score
 * matrix never leaves the device. After the first block, a filter spread
 * over several blocks per query row passes on only the new keys that beat
 * the row's current k-th best, so the select mostly sees k keys and a few. A hit is a 64-bit key, score above and
 * the complement of its index below: keys are distinct, larger is better,
 * and ties go to the lower index, as on the CPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "models/index/index.h"
#include "ops/knn.h"

typedef unsigned long long u64;

/* |q|^2 of each row into qn2 (summed in double, as on the CPU: in f32 it
 * overflows at components above 1.8e19); cosine rows are then scaled to
 * unit length. */
__global__ static void knn_prep_kernel(float *q, float *qn2, int d, int cosine) {
    float *row = q + (size_t)blockIdx.x * d;
    double s = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) s += (double)row[j] * row[j];
    s = block_reduce(s, 0);
    if (threadIdx.x == 0) qn2[blockIdx.x] = (float)s;
    if (cosine && s > 0.0) {
        float norm = (float)sqrt(s);
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

/* Index rows that one block of the filter sweeps: a query row's new
 * scores are spread over several blocks. */
#define KNN_SLICE 2048
#define KNN_WARPS (CUDA_THREADS / 32)

/* Block (row blockIdx.x, slice blockIdx.y): the keys of the row's new
 * scores in its slice that beat the row's current k-th best (thr) join
 * the row's candidates, cap at most; past cap, ncand says so and the merge
 * takes the whole block instead. */
__global__ static void knn_filter_kernel(const float *scores, int nb, unsigned b0, int metric,
                                         const float *qn2, const float *norms, const u64 *thr,
                                         u64 *cand, unsigned *ncand, int cap) {
    int r = blockIdx.x, j1 = min(nb, (int)(blockIdx.y + 1) * KNN_SLICE);
    const float *row = scores + (size_t)r * nb;
    u64 t = thr[r];
    float q2 = qn2[r];
    for (int j = blockIdx.y * KNN_SLICE + threadIdx.x; j < j1; j += blockDim.x) {
        u64 key = hit_key(row[j], b0 + (unsigned)j, metric, q2, norms);
        if (key > t) {
            unsigned at = atomicAdd(&ncand[r], 1u);
            if (at < (unsigned)cap) cand[(size_t)r * cap + at] = key;
        }
    }
}

/* Row blockIdx.x: the k best of its k kept keys (none for the first
 * block) and the new ones: its candidates when the filter ran and kept at
 * most cap, else all nb new scores, of which only those at least its k-th
 * best (thr) count. A radix select on the keys, 8 bits a pass, with a
 * histogram per warp; leaves the k-th best in thr and ncand at 0. */
__global__ static void knn_merge_kernel(const float *scores, int nb, unsigned b0, int metric,
                                        const float *qn2, const float *norms, const u64 *kin,
                                        u64 *kout, int k, u64 *thr, const u64 *cand,
                                        unsigned *ncand, int cap) {
    __shared__ unsigned hist[KNN_WARPS][256];
    __shared__ u64 s_prefix;
    __shared__ unsigned s_need, s_out;
    int r = blockIdx.x, nprev = kin ? k : 0, warp = threadIdx.x >> 5;
    unsigned nc = kin ? ncand[r] : 0xffffffffu;
    int from_cand = nc <= (unsigned)cap, count = nprev + (from_cand ? (int)nc : nb);
    const float *row = scores + (size_t)r * nb;
    const u64 *prev = kin ? kin + (size_t)r * k : NULL, *mine = cand + (size_t)r * cap;
    u64 t = kin ? thr[r] : 0;
    float q2 = qn2[r];
#define KEY_AT(i) ((i) < nprev ? prev[i] : from_cand ? mine[(i) - nprev] \
                   : hit_key(row[(i) - nprev], b0 + (unsigned)((i) - nprev), metric, q2, norms))
    if (threadIdx.x == 0) s_prefix = 0, s_need = (unsigned)k, s_out = 0;
    u64 mask = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < KNN_WARPS * 256; i += blockDim.x) hist[i >> 8][i & 255] = 0;
        __syncthreads();
        u64 prefix = s_prefix;
        for (int i = threadIdx.x; i < count; i += blockDim.x) {
            u64 key = KEY_AT(i);
            if (key >= t && (key & mask) == prefix) atomicAdd(&hist[warp][(key >> shift) & 255], 1u);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < 256; i += blockDim.x)
            for (int w = 1; w < KNN_WARPS; w++) hist[0][i] += hist[w][i];
        __syncthreads();
        if (threadIdx.x == 0) {     /* the digit where the k-th best falls */
            unsigned need = s_need, above = 0;
            for (int dgt = 255; dgt >= 0; dgt--) {
                if (above + hist[0][dgt] >= need) {
                    s_prefix = prefix | ((u64)dgt << shift);
                    s_need = need - above;
                    break;
                }
                above += hist[0][dgt];
            }
        }
        mask |= (u64)0xff << shift;
        __syncthreads();
    }
    u64 kth = s_prefix;     /* keys are distinct: exactly k are >= it */
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
        u64 key = KEY_AT(i);
        if (key >= kth) {
            unsigned at = atomicAdd(&s_out, 1u);
            if (at < (unsigned)k) kout[(size_t)r * k + at] = key;
        }
    }
#undef KEY_AT
    if (threadIdx.x == 0) thr[r] = kth, ncand[r] = 0;
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
    const struct gpuq_index *ix = gpuq_model_index(q->index);
    const struct cuda_index *di = (const struct cuda_index *)q->index->backend_data;
    int d = ix->dim, k = q->k, rows = q->rows, blk = cuda_knn_block(rows);
    int64_t n = ix->n_rows;
    size_t rk = (size_t)rows * k;
    void *qbuf, *block, *keys0, *keys1, *out, *filt;
    int rc, cap = cuda_knn_cap(k);
    if (blk < k) blk = k;      /* the first block brings k keys at least (k <= n) */
    if ((rc = cuda_dev(be, 0, (size_t)rows * (d + 1) * 4, &qbuf)) ||
        (rc = cuda_dev(be, 1, (size_t)rows * blk * 4, &block)) ||
        (rc = cuda_dev(be, 2, rk * 8, &keys0)) || (rc = cuda_dev(be, 3, rk * 8, &keys1)) ||
        (rc = cuda_dev(be, 4, rk * 12, &out)) || (rc = cuda_dev(be, 5, (size_t)rows * (12 + 8 * cap), &filt)))
        return rc;
    float *dq = (float *)qbuf, *qn2 = dq + (size_t)rows * d, *S = (float *)block;
    u64 *kin = NULL, *kout = (u64 *)keys0, *spare = (u64 *)keys1;
    /* the filter's state: each row's k-th best, its candidates and their count */
    u64 *thr = (u64 *)filt, *cand = thr + rows;
    unsigned *ncand = (unsigned *)(cand + (size_t)rows * cap);
    if ((rc = cuda_up(be, dq, q->q, (size_t)rows * d * 4))) return rc;
    CU(cudaMemsetAsync(ncand, 0, (size_t)rows * 4, st));
    knn_prep_kernel<<<rows, CUDA_THREADS, 0, st>>>(dq, qn2, d, q->metric == GPUQ_METRIC_COSINE);
    LAUNCHED();
    float one = 1.0f, zero = 0.0f;
    for (int64_t b0 = 0; b0 < n; b0 += blk) {
        int nb = (int)(n - b0 < blk ? n - b0 : blk);
        /* column-major S^T [nb, rows] = E_block [nb, d] . Q^T */
        BLAS(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, nb, rows, d, &one, di->emb + b0 * d, d, dq, d,
                         &zero, S, nb));
        if (kin) {
            knn_filter_kernel<<<dim3(rows, (nb + KNN_SLICE - 1) / KNN_SLICE), CUDA_THREADS, 0, st>>>(
                S, nb, (unsigned)b0, q->metric, qn2, di->norms, thr, cand, ncand, cap);
            LAUNCHED();
        }
        knn_merge_kernel<<<rows, CUDA_THREADS, 0, st>>>(S, nb, (unsigned)b0, q->metric, qn2, di->norms,
                                                   kin, kout, k, thr, cand, ncand, cap);
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
    size_t r = (size_t)rows, d = (size_t)c->knn_dim, k = CUDA_KNN_K;
    if (!d) return 0;
    /* q and norms | a score block | keys twice | indices and scores | filter;
     * a k above CUDA_KNN_K grows them at first use */
    for (int s = 0; s < 2; s++) {
        void *p;
        int rc;
        c->cur = s;
        if ((rc = cuda_dev(be, 0, r * (d + 1) * 4, &p)) ||
            (rc = cuda_dev(be, 1, r * cuda_knn_block(rows) * 4, &p)) ||
            (rc = cuda_dev(be, 2, r * k * 8, &p)) || (rc = cuda_dev(be, 3, r * k * 8, &p)) ||
            (rc = cuda_dev(be, 4, r * k * 12, &p)) ||
            (rc = cuda_dev(be, 5, r * (12 + 8 * (size_t)cuda_knn_cap((int)k)), &p)))
            return rc;
        if (!cuda_keep(be, s, 0, r * d * 4) || !cuda_keep(be, s, 1, r * k * 4) ||
            !cuda_keep(be, s, 2, r * k * 8))
            return GPUQ_BE_NOMEM;
    }
    return 0;
}
