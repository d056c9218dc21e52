/* cuda_ops.cu -- knn, softmax, layernorm and image preprocessing on CUDA,
 * each the twin of its CPU op in cpu_ops.c.
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

typedef unsigned long long u64;

#define THREADS 256

/* ---- block reductions ---- */

__device__ static float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Every thread of the block gets the sum (or max) of v over the block. */
__device__ static float block_reduce(float v, int is_max) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();    /* part may still be read from the last call */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? part[lane] : (is_max ? -INFINITY : 0.0f);
        v = is_max ? warp_max(v) : warp_sum(v);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    return part[0];
}

/* ---- knn ---- */

int cuda_index_load(struct gpuq_backend *be, struct gpuq_model *m) {
    if (m->n_rows >= (int64_t)UINT32_MAX) {
        snprintf(be->errstr, sizeof(be->errstr), "an index of %lld rows is too large (< 2^32)",
                 (long long)m->n_rows);
        return GPUQ_BE_FAILED;
    }
    struct cuda_index *d = (struct cuda_index *)calloc(1, sizeof(*d));
    if (!d) return GPUQ_BE_NOMEM;
    m->backend_data = d;
    size_t emb = (size_t)m->n_rows * m->dim * sizeof(float), norms = (size_t)m->n_rows * sizeof(float);
    cudaError_t e;
    if ((e = cudaMalloc((void **)&d->emb, emb)) != cudaSuccess ||
        (e = cudaMalloc((void **)&d->norms, norms)) != cudaSuccess ||
        (e = cudaMemcpy(d->emb, m->embeddings, emb, cudaMemcpyHostToDevice)) != cudaSuccess ||
        (e = cudaMemcpy(d->norms, m->norms, norms, cudaMemcpyHostToDevice)) != cudaSuccess) {
        int rc = cuda_fail(be, e, __LINE__);
        cuda_index_free(m);
        return rc;
    }
    return 0;
}

void cuda_index_free(struct gpuq_model *m) {
    struct cuda_index *d = (struct cuda_index *)m->backend_data;
    if (!d) return;
    cudaFree(d->emb);
    cudaFree(d->norms);
    free(d);
    m->backend_data = NULL;
}

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

int cuda_knn(struct gpuq_backend *be, const struct gpuq_knn *q) {
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
    knn_prep_kernel<<<rows, THREADS, 0, st>>>(dq, qn2, d, q->metric == GPUQ_METRIC_COSINE);
    LAUNCHED();
    float one = 1.0f, zero = 0.0f;
    for (int64_t b0 = 0; b0 < n; b0 += CUDA_KNN_BLOCK) {
        int nb = (int)(n - b0 < CUDA_KNN_BLOCK ? n - b0 : CUDA_KNN_BLOCK);
        /* column-major S^T [nb, rows] = E_block [nb, d] . Q^T */
        BLAS(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, nb, rows, d, &one, di->emb + b0 * d, d, dq, d,
                         &zero, S, nb));
        knn_merge_kernel<<<rows, THREADS, 0, st>>>(S, nb, (unsigned)b0, q->metric, qn2, di->norms,
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
    knn_final_kernel<<<rows, THREADS, (size_t)kpow2 * sizeof(u64), st>>>(kin, k, kpow2, q->metric,
                                                                          didx, dscores);
    LAUNCHED();
    if ((rc = cuda_down(be, q->indices, didx, rk * 8)) || (rc = cuda_down(be, q->scores, dscores, rk * 4)))
        return rc;
    return 0;
}

/* ---- softmax and layernorm: one block per row ---- */

__global__ static void softmax_kernel(const float *x, float *y, int cols) {
    const float *in = x + (size_t)blockIdx.x * cols;
    float *out = y + (size_t)blockIdx.x * cols, mx = -INFINITY, sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, in[j]);
    mx = block_reduce(mx, 1);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += out[j] = expf(in[j] - mx);
    sum = block_reduce(sum, 0);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) out[j] = out[j] / sum;
}

int cuda_softmax(struct gpuq_backend *be, const float *x, int rows, int cols, float *y) {
    size_t bytes = (size_t)rows * cols * 4;
    void *dx, *dy;
    int rc;
    if ((rc = cuda_dev(be, 0, bytes, &dx)) || (rc = cuda_dev(be, 1, bytes, &dy)) ||
        (rc = cuda_up(be, dx, x, bytes)))
        return rc;
    softmax_kernel<<<rows, THREADS, 0, cuda_cur(be)->stream>>>((const float *)dx, (float *)dy, cols);
    LAUNCHED();
    return cuda_down(be, y, dy, bytes);
}

__global__ static void layernorm_kernel(const float *x, float *y, int cols, const int *row_set,
                                        const float *gamma, const float *beta, const float *eps) {
    const float *in = x + (size_t)blockIdx.x * cols;
    float *out = y + (size_t)blockIdx.x * cols, mean = 0.0f, var = 0.0f;
    int set = row_set[blockIdx.x];
    const float *g = gamma + (size_t)set * cols, *b = beta + (size_t)set * cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) mean += in[j];
    mean = block_reduce(mean, 0) / cols;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) var += (in[j] - mean) * (in[j] - mean);
    var = block_reduce(var, 0) / cols;
    float inv = 1.0f / sqrtf(var + eps[set]);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) out[j] = (in[j] - mean) * inv * g[j] + b[j];
}

int cuda_layernorm(struct gpuq_backend *be, const struct gpuq_layernorm *ln) {
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
    layernorm_kernel<<<ln->rows, THREADS, 0, cuda_cur(be)->stream>>>(
        (const float *)dx, (float *)dy, ln->cols, (const int *)ds, g, b, eps);
    LAUNCHED();
    return cuda_down(be, ln->y, dy, bytes);
}

/* ---- image preprocessing: every pixel of every image in one launch ---- */

#define IMG_CHANNELS 16

struct img_desc {
    int64_t src, dst, first;    /* byte offset, float offset, first pixel */
    int h, w, c, H, W;
    float mean[IMG_CHANNELS], std[IMG_CHANNELS];
};

/* As src_coord in cpu_ops.c; __fmul_rn and friends keep nvcc from fusing
 * into FMAs, so the coordinates match the CPU's bit for bit. */
__device__ static void img_coord(int o, int in, int out, int *i0, int *i1, float *frac) {
    float s = __fsub_rn(__fmul_rn(__fadd_rn((float)o, 0.5f), __fdiv_rn((float)in, (float)out)), 0.5f);
    if (s < 0) s = 0;
    int f = (int)s;
    if (f > in - 1) f = in - 1;
    *i0 = f;
    *i1 = f + 1 < in ? f + 1 : in - 1;
    *frac = *i0 == *i1 ? 0.0f : __fsub_rn(s, (float)f);
}

__global__ static void image_kernel(const unsigned char *src, float *dst, const struct img_desc *d,
                                    int n, int64_t pixels) {
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels;
         p += (int64_t)gridDim.x * blockDim.x) {
        int lo = 0, hi = n - 1;     /* the image holding pixel p */
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (d[mid].first <= p) lo = mid;
            else hi = mid - 1;
        }
        const struct img_desc *im = &d[lo];
        int64_t q = p - im->first;
        int y = (int)(q / im->W), x = (int)(q % im->W), c = im->c, y0, y1, x0, x1;
        float fy, fx;
        img_coord(y, im->h, im->H, &y0, &y1, &fy);
        img_coord(x, im->w, im->W, &x0, &x1, &fx);
        const unsigned char *s = src + im->src;
        const unsigned char *p00 = s + ((size_t)y0 * im->w + x0) * c, *p01 = s + ((size_t)y0 * im->w + x1) * c,
                            *p10 = s + ((size_t)y1 * im->w + x0) * c, *p11 = s + ((size_t)y1 * im->w + x1) * c;
        for (int ch = 0; ch < c; ch++) {
            float top = __fadd_rn((float)p00[ch], __fmul_rn((float)(p01[ch] - p00[ch]), fx));
            float bot = __fadd_rn((float)p10[ch], __fmul_rn((float)(p11[ch] - p10[ch]), fx));
            float v = __fadd_rn(top, __fmul_rn(__fsub_rn(bot, top), fy));
            dst[im->dst + ((size_t)ch * im->H + y) * im->W + x] =
                __fdiv_rn(__fsub_rn(__fdiv_rn(v, 255.0f), im->mean[ch]), im->std[ch]);
        }
    }
}

/* Copies n pieces of host memory to or from the device, one copy for each
 * run of pieces that lie back to back on the host. */
static int copy_runs(struct gpuq_backend *be, int up, char *dev, const char *const *host,
                     const size_t *bytes, int n) {
    for (int i = 0, rc; i < n;) {
        size_t run = bytes[i];
        int j = i + 1;
        while (j < n && host[j] == host[j - 1] + bytes[j - 1]) run += bytes[j++];
        rc = up ? cuda_up(be, dev, host[i], run) : cuda_down(be, (void *)host[i], dev, run);
        if (rc) return rc;
        dev += run;
        i = j;
    }
    return 0;
}

int cuda_image(struct gpuq_backend *be, const struct gpuq_image *ims, int n) {
    struct cuda_slot *sl = cuda_cur(be);
    size_t src_bytes = 0, dst_bytes = 0, desc_bytes = (size_t)n * sizeof(struct img_desc);
    size_t meta = desc_bytes + (size_t)n * 2 * (sizeof(char *) + sizeof(size_t));
    struct img_desc *d = (struct img_desc *)be->iface->staging(be, cuda_of(be)->cur, GPUQ_STAGING, meta);
    if (!d) return GPUQ_BE_NOMEM;
    const char **srcs = (const char **)(d + n), **dsts = srcs + n;
    size_t *sbytes = (size_t *)(dsts + n), *dbytes = sbytes + n;
    int64_t pixels = 0;
    for (int i = 0; i < n; i++) {
        const struct gpuq_image *im = &ims[i];
        if (im->c > IMG_CHANNELS) {
            snprintf(be->errstr, sizeof(be->errstr), "an image has %d channels (at most %d)", im->c,
                     IMG_CHANNELS);
            return GPUQ_BE_FAILED;
        }
        srcs[i] = (const char *)im->src, dsts[i] = (const char *)im->dst;
        sbytes[i] = (size_t)im->h * im->w * im->c;
        dbytes[i] = (size_t)im->c * im->out_h * im->out_w * sizeof(float);
        d[i] = (struct img_desc){(int64_t)src_bytes, (int64_t)(dst_bytes / 4), pixels, im->h, im->w,
                                 im->c, im->out_h, im->out_w, {0}, {0}};
        for (int ch = 0; ch < im->c; ch++) d[i].mean[ch] = im->mean[ch], d[i].std[ch] = im->std[ch];
        src_bytes += sbytes[i], dst_bytes += dbytes[i];
        pixels += (int64_t)im->out_h * im->out_w;
    }
    void *dsrc, *ddst, *ddesc;
    int rc;
    if ((rc = cuda_dev(be, 0, src_bytes, &dsrc)) || (rc = cuda_dev(be, 1, dst_bytes, &ddst)) ||
        (rc = cuda_dev(be, 2, desc_bytes, &ddesc)) ||
        (rc = copy_runs(be, 1, (char *)dsrc, srcs, sbytes, n)) || (rc = cuda_up(be, ddesc, d, desc_bytes)))
        return rc;
    int64_t blocks = (pixels + THREADS - 1) / THREADS;
    image_kernel<<<(unsigned)(blocks > 65535 ? 65535 : blocks), THREADS, 0, sl->stream>>>(
        (const unsigned char *)dsrc, (float *)ddst, (const struct img_desc *)ddesc, n, pixels);
    LAUNCHED();
    return copy_runs(be, 0, (char *)ddst, dsts, dbytes, n);
}
