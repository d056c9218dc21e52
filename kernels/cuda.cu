/* cuda.cu -- the CUDA backend: cuBLAS for GEMMs, one fused bias+activation
 * kernel. Device buffers grow to the largest batch seen and are reused. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda.h"

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    float *buf[3];          /* a/x, b/scratch, c/y */
    size_t cap[3];          /* floats in each */
};

struct cuda_mlp {
    float **w, **b;         /* device copies, one per layer */
    int n;
};

#define CUDA_CHECK(be, call)                                                              \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            snprintf((be)->errstr, sizeof((be)->errstr), "%s:%d: %s", __FILE__, __LINE__, \
                     cudaGetErrorString(e_));                                             \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

#define CUBLAS_CHECK(be, call)                                                            \
    do {                                                                                  \
        cublasStatus_t s_ = (call);                                                       \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                \
            snprintf((be)->errstr, sizeof((be)->errstr), "%s:%d: cuBLAS status %d",       \
                     __FILE__, __LINE__, (int)s_);                                        \
            return -1;                                                                    \
        }                                                                                 \
    } while (0)

/* ---- kernels ---- */

__device__ static float act_apply(int act, float x) {
    switch (act) {
    case GPUQ_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case GPUQ_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case GPUQ_ACT_SILU: return x / (1.0f + expf(-x));
    case GPUQ_ACT_TANH: return tanhf(x);
    default: return x;
    }
}

__global__ static void bias_act_kernel(float *y, const float *bias, long long n, int cols,
                                       int act) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (; i < n; i += stride) y[i] = act_apply(act, y[i] + bias[i % cols]);
}

static int launch_bias_act(struct gpuq_backend *be, cudaStream_t s, float *y, const float *bias,
                           long long rows, int cols, int act) {
    long long n = rows * cols;
    int threads = 256;
    long long blocks = (n + threads - 1) / threads;
    if (blocks > 65535) blocks = 65535;
    bias_act_kernel<<<(unsigned)blocks, threads, 0, s>>>(y, bias, n, cols, act);
    CUDA_CHECK(be, cudaGetLastError());
    return 0;
}

/* ---- buffers ---- */

static int ensure(struct gpuq_backend *be, int i, size_t floats) {
    struct cuda_ctx *c = (struct cuda_ctx *)be->ctx;
    if (floats <= c->cap[i]) return 0;
    CUDA_CHECK(be, cudaStreamSynchronize(c->stream));
    cudaFree(c->buf[i]);
    c->buf[i] = NULL;
    c->cap[i] = 0;
    CUDA_CHECK(be, cudaMalloc((void **)&c->buf[i], floats * sizeof(float)));
    c->cap[i] = floats;
    return 0;
}

/* ---- backend functions ---- */

static void cuda_destroy(struct gpuq_backend *be) {
    struct cuda_ctx *c = (struct cuda_ctx *)be->ctx;
    if (!c) return;
    cudaSetDevice(c->device);
    for (int i = 0; i < 3; i++) cudaFree(c->buf[i]);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
    be->ctx = NULL;
}

static void cuda_model_free(struct gpuq_backend *be, struct gpuq_model *m) {
    (void)be;
    struct cuda_mlp *d = (struct cuda_mlp *)m->backend_data;
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        cudaFree(d->w[i]);
        cudaFree(d->b[i]);
    }
    free(d->w);
    free(d->b);
    free(d);
    m->backend_data = NULL;
}

static int upload(struct gpuq_backend *be, float **dst, const float *src, size_t floats) {
    CUDA_CHECK(be, cudaMalloc((void **)dst, floats * sizeof(float)));
    CUDA_CHECK(be, cudaMemcpy(*dst, src, floats * sizeof(float), cudaMemcpyHostToDevice));
    return 0;
}

static int cuda_model_load(struct gpuq_backend *be, struct gpuq_model *m) {
    if (m->kind != GPUQ_MODEL_MLP) return 0;
    struct cuda_mlp *d = (struct cuda_mlp *)calloc(1, sizeof(*d));
    if (!d) return -1;
    m->backend_data = d;
    d->w = (float **)calloc((size_t)m->n_layers, sizeof(float *));
    d->b = (float **)calloc((size_t)m->n_layers, sizeof(float *));
    if (!d->w || !d->b) goto fail;
    d->n = m->n_layers;
    for (int i = 0; i < m->n_layers; i++) {
        const struct gpuq_mlp_layer *L = &m->layers[i];
        if (upload(be, &d->w[i], L->w, (size_t)L->d_in * L->d_out) != 0) goto fail;
        if (upload(be, &d->b[i], L->b, (size_t)L->d_out) != 0) goto fail;
    }
    return 0;
fail:
    cuda_model_free(be, m);
    return -1;
}

static int cuda_matmul_one(struct gpuq_backend *be, const struct gpuq_matmul *mm) {
    struct cuda_ctx *c = (struct cuda_ctx *)be->ctx;
    size_t na = (size_t)mm->m * mm->k, nb = (size_t)mm->k * mm->n, nc = (size_t)mm->m * mm->n;
    size_t ta = mm->stride_a ? na * mm->count : na, tb = mm->stride_b ? nb * mm->count : nb;
    if (ensure(be, 0, ta) || ensure(be, 1, tb) || ensure(be, 2, nc * mm->count)) return -1;
    CUDA_CHECK(be, cudaMemcpyAsync(c->buf[0], mm->a, ta * 4, cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(be, cudaMemcpyAsync(c->buf[1], mm->b, tb * 4, cudaMemcpyHostToDevice, c->stream));
    /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T */
    int lda = mm->trans_a ? mm->m : mm->k, ldb = mm->trans_b ? mm->k : mm->n;
    float beta = 0.0f;
    CUBLAS_CHECK(be, cublasSgemmStridedBatched(
        c->blas, mm->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, mm->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        mm->n, mm->m, mm->k, &mm->alpha, c->buf[1], ldb, mm->stride_b, c->buf[0], lda,
        mm->stride_a, &beta, c->buf[2], mm->n, (long long)nc, mm->count));
    CUDA_CHECK(be, cudaMemcpyAsync(mm->c, c->buf[2], nc * mm->count * 4, cudaMemcpyDeviceToHost,
                                   c->stream));
    CUDA_CHECK(be, cudaStreamSynchronize(c->stream));
    return 0;
}

/* Groups run one after another; a single grouped GEMM comes with cuBLAS 12.5's
 * cublasGemmGroupedBatchedEx. */
static int cuda_matmul(struct gpuq_backend *be, const struct gpuq_matmul *mm, int n) {
    for (int i = 0; i < n; i++)
        if (cuda_matmul_one(be, &mm[i]) != 0) return -1;
    return 0;
}

static int cuda_mlp(struct gpuq_backend *be, const struct gpuq_model *m, const float *x,
                    int rows, float *y) {
    struct cuda_ctx *c = (struct cuda_ctx *)be->ctx;
    const struct cuda_mlp *d = (const struct cuda_mlp *)m->backend_data;
    size_t width = (size_t)m->max_width;
    if ((size_t)m->layers[0].d_in > width) width = (size_t)m->layers[0].d_in;
    if (ensure(be, 0, rows * width) || ensure(be, 1, rows * width)) return -1;
    CUDA_CHECK(be, cudaMemcpyAsync(c->buf[0], x, (size_t)rows * m->layers[0].d_in * 4,
                                   cudaMemcpyHostToDevice, c->stream));
    float one = 1.0f, zero = 0.0f;
    float *in = c->buf[0], *out = c->buf[1];
    for (int l = 0; l < m->n_layers; l++) {
        const struct gpuq_mlp_layer *L = &m->layers[l];
        /* column-major Y^T [d_out, rows] = W^T^T ... i.e. W (row-major [d_out, d_in]) x X^T */
        CUBLAS_CHECK(be, cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, L->d_out, rows, L->d_in,
                                     &one, d->w[l], L->d_in, in, L->d_in, &zero, out, L->d_out));
        int act = l == m->n_layers - 1 ? GPUQ_ACT_NONE : (int)m->act;
        if (launch_bias_act(be, c->stream, out, d->b[l], rows, L->d_out, act) != 0) return -1;
        float *t = in;
        in = out;
        out = t;
    }
    CUDA_CHECK(be, cudaMemcpyAsync(y, in, (size_t)rows * m->layers[m->n_layers - 1].d_out * 4,
                                   cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(be, cudaStreamSynchronize(c->stream));
    return 0;
}

static int cuda_memory_used(struct gpuq_backend *be, int64_t *bytes) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(be, cudaMemGetInfo(&free_b, &total_b));
    *bytes = (int64_t)(total_b - free_b);
    return 0;
}

static const struct gpuq_backend_i cuda_iface = {
    "cuda", cuda_destroy, cuda_model_load, cuda_model_free, cuda_matmul, cuda_mlp,
    NULL, NULL, NULL, NULL,     /* knn, softmax, layernorm, image: on the CPU for now */
    cuda_memory_used,
};

extern "C" int gpuq_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();   /* clear: no driver is not an error of ours */
        return 0;
    }
    return n;
}

extern "C" int gpuq_cuda_init(struct gpuq_backend *be, int device, char *err, size_t errlen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(err, errlen, "%s", e != cudaSuccess ? cudaGetErrorString(e) : "no device");
        cudaGetLastError();
        return -1;
    }
    if (device < 0 || device >= n) {
        snprintf(err, errlen, "device %d out of range (%d devices)", device, n);
        return -1;
    }
    struct cuda_ctx *c = (struct cuda_ctx *)calloc(1, sizeof(*c));
    if (!c) return -1;
    c->device = device;
    be->ctx = c;
    be->iface = &cuda_iface;
    cudaDeviceProp prop;
    if (cudaSetDevice(device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking) != cudaSuccess ||
        cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS ||
        /* f32 stays f32: no TF32 unless asked for */
        cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "device %d: initialization failed", device);
        cuda_destroy(be);
        be->iface = NULL;
        return -1;
    }
    snprintf(be->desc, sizeof(be->desc), "cuda device %d: %s (sm_%d%d, %.0f GiB)", device,
             prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0);
    return 0;
}
