/* cuda_int.h -- the CUDA backend's state and helpers, shared by its core
 * (kernels/cuda.cu: context, buffers, models) and the ops' CUDA kernels
 * (ops/<op>.cu). C++ for nvcc. */
#ifndef GPUQ_CUDA_INT_H
#define GPUQ_CUDA_INT_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/backend.h"

#define CUDA_DEV_BUFS 6

struct cuda_buf {
    void *p;
    size_t cap;     /* bytes */
    size_t used;    /* pinned: the most asked for since the slot's last begin */
    size_t keep;    /* pinned: what reserve sized it for, never trimmed below */
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
    int pools;              /* the device has stream-ordered memory pools */
    /* the loaded models' largest needs, for reserve */
    int mlp_width, mlp_in, mlp_out;
    int knn_dim;
};

/* mlp weights on the device: f32, or bf16/f16 bits. */
struct cuda_mlp {
    void **w;
    float **b;
    int n;
};

/* A loaded index on the device. */
struct cuda_index {
    float *emb;     /* [n, dim] */
    float *norms;   /* [n] */
};

/* Sets be->errstr and says how bad a failure is: GPUQ_BE_NOMEM for memory,
 * GPUQ_BE_LOST when the device no longer answers (a sticky error), else
 * GPUQ_BE_FAILED. */
int cuda_fail(struct gpuq_backend *be, cudaError_t e, const char *file, int line);
int cublas_fail(struct gpuq_backend *be, cublasStatus_t s, const char *file, int line);

/* A failed call returns its status from the enclosing function, saying
 * file and line in be->errstr. */
#define CU(call)                                                             \
    do {                                                                     \
        cudaError_t e_ = (call);                                             \
        if (e_ != cudaSuccess) return cuda_fail(be, e_, __FILE__, __LINE__); \
    } while (0)

#define BLAS(call)                                                                   \
    do {                                                                             \
        cublasStatus_t s_ = (call);                                                  \
        if (s_ != CUBLAS_STATUS_SUCCESS) return cublas_fail(be, s_, __FILE__, __LINE__); \
    } while (0)

/* After a kernel launch. */
#define LAUNCHED() CU(cudaGetLastError())

static inline struct cuda_ctx *cuda_of(struct gpuq_backend *be) { return (struct cuda_ctx *)be->ctx; }
static inline struct cuda_slot *cuda_cur(struct gpuq_backend *be) {
    return &cuda_of(be)->slot[cuda_of(be)->cur];
}

/* Device buffer i of the current slot with room for bytes: grown by half
 * again at least, in stream order, the old buffer kept when the new one
 * cannot be had; never shrunk. 0, or a status. */
int cuda_dev(struct gpuq_backend *be, int i, size_t bytes, void **out);

/* Copies host memory of the current slot's staging (or any host memory)
 * to and from the device on the current stream. */
int cuda_up(struct gpuq_backend *be, void *dst, const void *src, size_t bytes);
int cuda_down(struct gpuq_backend *be, void *dst, const void *src, size_t bytes);

/* Pinned host buffer i (<= GPUQ_STAGING; the last is the backend's own) of
 * a slot with room for bytes; the caller knows the slot is idle. NULL with
 * be->errstr set. */
void *cuda_host(struct gpuq_backend *be, int slot, int i, size_t bytes);
/* The same, from an op's reserve: staging is never trimmed below this. */
void *cuda_keep(struct gpuq_backend *be, int slot, int i, size_t bytes);

/* dst (lower precision p) = src (f32), n elements, on stream st. */
int cuda_convert(struct gpuq_backend *be, cudaStream_t st, void *dst, const float *src,
                 long long n, enum gpuq_precision p);

/* A new device buffer at *dst holding n floats of src: as they are, or
 * (cuda_upload_weights) in the backend's precision, converted on the device
 * (round to nearest even, as the CPU backend). 0, or a status. */
int cuda_upload(struct gpuq_backend *be, void **dst, const float *src, size_t n);
int cuda_upload_weights(struct gpuq_backend *be, void **dst, const float *src, size_t n);

/* A text model's weights to the device through its weight list
 * (gpuq_encoder_weights, gpuq_decoder_weights): the backend, the model's
 * device copy (the list's callback finds each weight's place there), and
 * the first failure. cuda_upload_weight puts w at *dst: a GEMM matrix (one
 * with a w16 slot) in the backend's precision, the rest f32; nothing once
 * a weight has failed. */
struct cuda_upload {
    struct gpuq_backend *be;
    void *dev;
    int rc;
};
void cuda_upload_weight(struct cuda_upload *u, void **dst, const struct gpuq_weight *w);

/* y [t, out] = x [t, in] W^T + beta y, W [out, in] row-major, on the
 * current slot's cuBLAS handle: x and W in precision p (tensor cores for
 * bf16 and f16, f32 sums), y f32. 0, or a status. */
int cuda_gemm(struct gpuq_backend *be, enum gpuq_precision p, const void *w, const void *x, int t, int in, int out,
              float *y, float beta);

/* The text models' fused attention (kernels/attention.cu): ctx =
 * softmax(Q K^T / sqrt(dh) [+ relative bias]) V per sequence and query
 * head, q, k and v read where the projection left them. */
struct cuda_rel_bias {
    const float *table;     /* [buckets, heads] (MPNet), or NULL */
    const int *bucket;      /* [2 span + 1]: the bucket of each distance key - query from -span */
    int span;
};

struct cuda_attention {
    const float *qkv;       /* [tokens, ld] */
    const float *bias;      /* [ld], added to q, k and v as they are read; or NULL */
    const int *off;         /* [n_seq + 1]: each sequence's first token, then the end */
    int n_seq, max_len;
    int ld, q_col, k_col, v_col;    /* the columns of head 0's q, k and v */
    int heads, kv_heads;    /* query head g reads key/value head g / (heads / kv_heads) */
    int dh;                 /* columns of a head, 1 .. CUDA_ATT_MAX_HEAD */
    int causal;             /* a query sees only the keys up to its own position */
    struct cuda_rel_bias rel;
    void *ctx;              /* out: [tokens, ctx_ld], head g at column g dh, in precision prec */
    int ctx_ld, prec;
};

#define CUDA_ATT_MAX_HEAD 128   /* a lane holds up to 4 of a row's columns */

int cuda_attention(struct gpuq_backend *be, const struct cuda_attention *a);

/* A text encoder on the device (kernels/encoder.cu): its weights, in
 * model->backend_data, and one batch's forward pass (kernels/encoder.h). */
struct gpuq_encode_batch;
struct gpuq_encoder;
extern "C" int cuda_encoder_load(struct gpuq_backend *be, struct gpuq_model *m);
extern "C" void cuda_encoder_free(struct gpuq_model *m);
extern "C" int cuda_encoder_forward(struct gpuq_backend *be, const struct gpuq_model *model,
                                    const struct gpuq_encode_batch *b, int n_tokens, int max_len);

/* A text model's sentence-transformers Dense modules on the device, f32
 * (kernels/encoder.cu): room for n of them (0, or GPUQ_BE_NOMEM), and
 * freeing what was uploaded. */
struct cuda_dense {
    float **w, **b;
    int n;
};
int cuda_dense_alloc(struct cuda_dense *d, int n);
void cuda_dense_free(struct cuda_dense *d);

/* The sentence-transformers modules of st after a text model's last
 * hidden states x [tokens, st->hidden] on the device (the encoder's, or a
 * decoder's st): pooling by b->pooling over the sequences that start at
 * off, the Dense modules (dense), the L2 normalization if b->normalize,
 * into b->out on the host. work holds gpuq_encoder_head_floats(st,
 * b->n_seq) floats, as the CPU's head. */
int cuda_text_head(struct gpuq_backend *be, const struct gpuq_encoder *st, const struct cuda_dense *dense,
                   const struct gpuq_encode_batch *b, const float *x, const int *off, float *work);

/* A decoder embedder on the device (kernels/decoder.cu), as the encoder. */
extern "C" int cuda_decoder_load(struct gpuq_backend *be, struct gpuq_model *m);
extern "C" void cuda_decoder_free(struct gpuq_model *m);
extern "C" int cuda_decoder_forward(struct gpuq_backend *be, const struct gpuq_model *model,
                                    const struct gpuq_encode_batch *b, int n_tokens, int max_len);

/* Scores of one knn query block are computed this many index rows at a
 * time: CUDA_KNN_BLOCK, fewer for many queries so that the score block
 * stays within 256 MiB (64 Mi scores). */
#define CUDA_KNN_BLOCK 16384

static inline int cuda_knn_block(int rows) {
    long long b = ((long long)64 << 20) / (rows > 0 ? rows : 1);
    return b >= CUDA_KNN_BLOCK ? CUDA_KNN_BLOCK : b < 256 ? 256 : (int)b;
}

/* knn's buffers are reserved at start for k up to this; a larger k grows
 * them at first use. */
#define CUDA_KNN_K 128

/* Candidates the knn filter keeps per query row before the merge takes
 * the whole block instead. */
static inline int cuda_knn_cap(int k) { return 2 * k > 256 ? 2 * k : 256; }

/* ---- device helpers for the kernels ---- */

#define CUDA_THREADS 256

/* Blocks of 256 threads for a grid-stride loop over n elements. */
static inline unsigned blocks_for(long long n) {
    long long b = (n + 255) / 256;
    return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

#ifdef __CUDACC__
__device__ static inline void store(float *p, float v) { *p = v; }
__device__ static inline void store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ static inline void store(__half *p, float v) { *p = __float2half_rn(v); }

__device__ static inline float max_of(float a, float b) { return fmaxf(a, b); }
__device__ static inline double max_of(double a, double b) { return fmax(a, b); }

template <typename T> __device__ static inline T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T> __device__ static inline T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) v = max_of(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Every thread of the block gets the sum (or max) of v over the block;
 * sums that must agree with the CPU's double sums are taken in double. */
template <typename T> __device__ static inline T block_reduce(T v, int is_max) {
    __shared__ T part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();    /* part may still be read from the last call */
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? part[lane] : (is_max ? (T)-INFINITY : (T)0);
        v = is_max ? warp_max(v) : warp_sum(v);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    return part[0];
}

/* Element i of a GEMM's input: f32, or rounded to bf16 or f16. */
__device__ static inline void put(void *dst, size_t i, int prec, float v) {
    if (prec == GPUQ_PREC_BF16) ((__nv_bfloat16 *)dst)[i] = __float2bfloat16_rn(v);
    else if (prec == GPUQ_PREC_F16) ((__half *)dst)[i] = __float2half_rn(v);
    else ((float *)dst)[i] = v;
}

/* out = LayerNorm(in) over h values, one block per row, mean and variance
 * in double as on the CPU (in f32 they drift by 1e-4 of the spread where
 * |mean| is 1e3 times it); out may be in. A thread reads only the columns
 * it writes (j = threadIdx.x + k * blockDim.x). The row also goes to low (at
 * element at), rounded to prec, when low is not NULL. */
__device__ static inline void layernorm_row(const float *in, float *out, int h, const float *g, const float *b,
                                            float eps, void *low, size_t at, int prec) {
    double mean = 0.0, var = 0.0;
    for (int j = threadIdx.x; j < h; j += blockDim.x) mean += in[j];
    mean = block_reduce(mean, 0) / h;
    for (int j = threadIdx.x; j < h; j += blockDim.x) var += (in[j] - mean) * (in[j] - mean);
    var = block_reduce(var, 0) / h;
    float inv = (float)(1.0 / sqrt(var + eps));
    for (int j = threadIdx.x; j < h; j += blockDim.x) {
        float v = (float)(in[j] - mean) * inv * g[j] + b[j];
        out[j] = v;
        if (low) put(low, at + j, prec, v);
    }
}
#endif

#endif
