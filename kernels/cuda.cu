/* cuda.cu -- the CUDA backend: the context, its two slots (stream, cuBLAS
 * handle, device buffers, pinned staging), and the GEMM ops: matmul as one
 * strided-batched or grouped GEMM, mlp as one GEMM per layer with a fused
 * bias+activation kernel, in f32 or with bf16/f16 inputs and f32 sums. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda.h"
#include "kernels/cuda_int.h"

/* mlp weights on the device: f32, or bf16/f16 bits. */
struct cuda_mlp {
    void **w;
    float **b;
    int n;
};

/* ---- failures ---- */

/* Whether the device still answers: a sticky error stays on every call. */
static int lost(void) {
    cudaGetLastError();     /* clears what is not sticky */
    return cudaDeviceSynchronize() != cudaSuccess;
}

int cuda_fail(struct gpuq_backend *be, cudaError_t e, int line) {
    snprintf(be->errstr, sizeof(be->errstr), "%s (cuda.cu:%d)", cudaGetErrorString(e), line);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return GPUQ_BE_NOMEM;
    }
    return lost() ? GPUQ_BE_LOST : GPUQ_BE_FAILED;
}

int cublas_fail(struct gpuq_backend *be, cublasStatus_t s, int line) {
    snprintf(be->errstr, sizeof(be->errstr), "cuBLAS: %s (line %d)", cublasGetStatusString(s), line);
    if (s == CUBLAS_STATUS_ALLOC_FAILED) return GPUQ_BE_NOMEM;
    if (s == CUBLAS_STATUS_EXECUTION_FAILED || s == CUBLAS_STATUS_INTERNAL_ERROR)
        return lost() ? GPUQ_BE_LOST : GPUQ_BE_FAILED;
    return GPUQ_BE_FAILED;
}

/* ---- buffers ---- */

int cuda_dev(struct gpuq_backend *be, int i, size_t bytes, void **out) {
    struct cuda_slot *s = cuda_cur(be);
    struct cuda_buf *b = &s->dev[i];
    if (bytes > b->cap) {
        bytes = (bytes + (1 << 20) - 1) & ~(size_t)((1 << 20) - 1);     /* whole MiB */
        CU(cudaStreamSynchronize(s->stream));
        cudaFree(b->p);
        b->p = NULL;
        b->cap = 0;
        CU(cudaMalloc(&b->p, bytes));
        b->cap = bytes;
    }
    *out = b->p;
    return 0;
}

/* Pinned host buffer i of a slot; the caller knows the slot is idle. */
static void *host_buf(struct gpuq_backend *be, int slot, int i, size_t bytes) {
    struct cuda_buf *b = &cuda_of(be)->slot[slot].host[i];
    if (bytes > b->cap) {
        bytes += bytes / 4;
        cudaFreeHost(b->p);
        b->p = NULL;
        b->cap = 0;
        cudaError_t e = cudaHostAlloc(&b->p, bytes, cudaHostAllocDefault);
        if (e != cudaSuccess) {
            cuda_fail(be, e, __LINE__);
            b->p = NULL;
            return NULL;
        }
        b->cap = bytes;
    }
    return b->p;
}

static void *cuda_staging(struct gpuq_backend *be, int slot, int i, size_t bytes) {
    return host_buf(be, slot, i, bytes ? bytes : 1);
}

int cuda_up(struct gpuq_backend *be, void *dst, const void *src, size_t bytes) {
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_cur(be)->stream));
    return 0;
}

int cuda_down(struct gpuq_backend *be, void *dst, const void *src, size_t bytes) {
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_cur(be)->stream));
    return 0;
}

static int cuda_begin(struct gpuq_backend *be, int slot) {
    cuda_of(be)->cur = slot;
    return 0;
}

static int cuda_sync(struct gpuq_backend *be, int slot) {
    CU(cudaStreamSynchronize(cuda_of(be)->slot[slot].stream));
    return 0;
}

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

__device__ static void store(float *p, float v) { *p = v; }
__device__ static void store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ static void store(__half *p, float v) { *p = __float2half_rn(v); }

/* y = act(y + bias) over [rows, cols]; with next, the result goes there
 * instead, converted for the next layer's GEMM. */
template <typename T>
__global__ static void bias_act_kernel(float *y, T *next, const float *bias, long long n, int cols,
                                       int act) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (; i < n; i += stride) {
        float v = act_apply(act, y[i] + bias[i % cols]);
        if (next) store(&next[i], v);
        else y[i] = v;
    }
}

template <typename T>
__global__ static void convert_kernel(T *dst, const float *src, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (; i < n; i += stride) store(&dst[i], src[i]);
}

static unsigned blocks_for(long long n) {
    long long b = (n + 255) / 256;
    return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

/* dst (lower precision p) = src (f32), n elements. */
static int convert(struct gpuq_backend *be, cudaStream_t st, void *dst, const float *src,
                   long long n, enum gpuq_precision p) {
    if (p == GPUQ_PREC_BF16)
        convert_kernel<<<blocks_for(n), 256, 0, st>>>((__nv_bfloat16 *)dst, src, n);
    else
        convert_kernel<<<blocks_for(n), 256, 0, st>>>((__half *)dst, src, n);
    LAUNCHED();
    return 0;
}

static int bias_act(struct gpuq_backend *be, cudaStream_t st, float *y, void *next,
                    enum gpuq_precision p, const float *bias, long long rows, int cols, int act) {
    long long n = rows * cols;
    if (!next || p == GPUQ_PREC_F32)
        bias_act_kernel<<<blocks_for(n), 256, 0, st>>>(y, (float *)next, bias, n, cols, act);
    else if (p == GPUQ_PREC_BF16)
        bias_act_kernel<<<blocks_for(n), 256, 0, st>>>(y, (__nv_bfloat16 *)next, bias, n, cols, act);
    else
        bias_act_kernel<<<blocks_for(n), 256, 0, st>>>(y, (__half *)next, bias, n, cols, act);
    LAUNCHED();
    return 0;
}

/* ---- models ---- */

static void mlp_free(struct gpuq_model *m) {
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

static void cuda_model_free(struct gpuq_backend *be, struct gpuq_model *m) {
    (void)be;
    if (m->kind == GPUQ_MODEL_MLP) mlp_free(m);
    else cuda_index_free(m);
}

static int upload(struct gpuq_backend *be, void **dst, const float *src, size_t floats) {
    CU(cudaMalloc(dst, floats * sizeof(float)));
    CU(cudaMemcpy(*dst, src, floats * sizeof(float), cudaMemcpyHostToDevice));
    return 0;
}

/* One layer's weights in the backend's precision: f32 as they are, else
 * converted on the device (round to nearest even, as the CPU backend). */
static int upload_weights(struct gpuq_backend *be, void **dst, const float *w, size_t n) {
    if (be->precision == GPUQ_PREC_F32) return upload(be, dst, w, n);
    if (be->precision == GPUQ_PREC_F16)
        for (size_t i = 0; i < n; i++)
            if (!(fabsf(w[i]) < 65520.0f)) {
                snprintf(be->errstr, sizeof(be->errstr), "a weight (%g) is beyond f16's range", w[i]);
                return GPUQ_BE_FAILED;
            }
    void *f32 = NULL;
    int rc = upload(be, &f32, w, n);
    cudaError_t e = rc == 0 ? cudaMalloc(dst, n * 2) : cudaSuccess;
    if (e != cudaSuccess) rc = cuda_fail(be, e, __LINE__);
    if (rc == 0) rc = convert(be, 0, *dst, (const float *)f32, (long long)n, be->precision);
    if (rc == 0 && (e = cudaDeviceSynchronize()) != cudaSuccess) rc = cuda_fail(be, e, __LINE__);
    cudaFree(f32);
    return rc;
}

static int cuda_model_load(struct gpuq_backend *be, struct gpuq_model *m) {
    struct cuda_ctx *c = cuda_of(be);
    if (m->kind == GPUQ_MODEL_INDEX) {
        if (m->dim > c->knn_dim) c->knn_dim = m->dim;
        return cuda_index_load(be, m);
    }
    struct cuda_mlp *d = (struct cuda_mlp *)calloc(1, sizeof(*d));
    if (!d) return GPUQ_BE_NOMEM;
    m->backend_data = d;
    d->w = (void **)calloc((size_t)m->n_layers, sizeof(void *));
    d->b = (float **)calloc((size_t)m->n_layers, sizeof(float *));
    int rc = d->w && d->b ? 0 : GPUQ_BE_NOMEM;
    if (rc == 0) d->n = m->n_layers;
    for (int i = 0; rc == 0 && i < m->n_layers; i++) {
        const struct gpuq_mlp_layer *L = &m->layers[i];
        rc = upload_weights(be, &d->w[i], L->w, (size_t)L->d_in * L->d_out);
        if (rc == 0) rc = upload(be, (void **)&d->b[i], L->b, (size_t)L->d_out);
    }
    if (rc != 0) {
        mlp_free(m);
        return rc;
    }
    int in = gpuq_model_in_dim(m);
    if (m->max_width > c->mlp_width) c->mlp_width = m->max_width;
    if (in > c->mlp_width) c->mlp_width = in;
    if (in > c->mlp_in) c->mlp_in = in;
    if (gpuq_model_out_dim(m) > c->mlp_out) c->mlp_out = gpuq_model_out_dim(m);
    return 0;
}

/* Sizes both slots for rows rows of the loaded models, so that batches
 * allocate nothing. matmul and the row ops, whose sizes come with the
 * jobs, grow buffers to the largest batch seen instead. */
static int cuda_reserve(struct gpuq_backend *be, int rows) {
    struct cuda_ctx *c = cuda_of(be);
    size_t r = (size_t)rows, k = 4096;
    size_t dev[CUDA_DEV_BUFS] = {0}, host[2] = {0};
    if (c->mlp_width) {
        dev[0] = dev[1] = r * c->mlp_width * 4;
        dev[2] = r * c->mlp_width * 2;
        host[0] = r * c->mlp_in * 4;
        host[1] = r * c->mlp_out * 4;
    }
    if (c->knn_dim) {   /* q and norms | a score block | keys twice | indices and scores */
        size_t q = r * (c->knn_dim + 1) * 4, block = r * CUDA_KNN_BLOCK * 4, keys = r * k * 8;
        dev[0] = dev[0] > q ? dev[0] : q;
        dev[1] = dev[1] > block ? dev[1] : block;
        dev[2] = dev[2] > keys ? dev[2] : keys;
        dev[3] = keys;
        dev[4] = r * k * 12;
        host[0] = host[0] > r * c->knn_dim * 4 ? host[0] : r * c->knn_dim * 4;
        host[1] = host[1] > r * k * 4 ? host[1] : r * k * 4;
    }
    for (int s = 0; s < 2; s++) {
        c->cur = s;
        for (int i = 0; i < CUDA_DEV_BUFS; i++) {
            void *p;
            int rc = dev[i] ? cuda_dev(be, i, dev[i], &p) : 0;
            if (rc != 0) return rc;
        }
        for (int i = 0; i < 2; i++)
            if (host[i] && !host_buf(be, s, i, host[i])) return GPUQ_BE_NOMEM;
        if (c->knn_dim && !host_buf(be, s, 2, r * k * 8)) return GPUQ_BE_NOMEM;
    }
    c->cur = 0;
    return 0;
}

/* ---- matmul ---- */

static size_t group_floats(const struct gpuq_matmul *g, int64_t stride, size_t each) {
    return stride ? (size_t)stride * (g->count - 1) + each : each;
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the
 * column-major call's first operand is our b, its second our a. */
struct col_major {
    cublasOperation_t ta, tb;
    int lda, ldb;
};

static struct col_major col_major(const struct gpuq_matmul *mm) {
    return (struct col_major){mm->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              mm->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, mm->trans_b ? mm->k : mm->n,
                              mm->trans_a ? mm->m : mm->k};
}

/* One shape is one strided-batched GEMM; several shapes one grouped GEMM
 * (cuBLAS 12.5 and later; before it, one strided GEMM per shape). */
static int cuda_matmul(struct gpuq_backend *be, const struct gpuq_matmul *g, int ng) {
    struct cuda_slot *s = cuda_cur(be);
    size_t fa = 0, fb = 0, fc = 0, total = 0;
    for (int i = 0; i < ng; i++) {
        fa += group_floats(&g[i], g[i].stride_a, (size_t)g[i].m * g[i].k);
        fb += group_floats(&g[i], g[i].stride_b, (size_t)g[i].k * g[i].n);
        fc += (size_t)g[i].count * g[i].m * g[i].n;
        total += (size_t)g[i].count;
    }
    void *a, *b, *c, *ptrs_dev = NULL;
    int rc, grouped = ng > 1 && CUBLAS_VERSION >= 120500;
    if ((rc = cuda_dev(be, 0, fa * 4, &a)) || (rc = cuda_dev(be, 1, fb * 4, &b)) ||
        (rc = cuda_dev(be, 2, fc * 4, &c)) ||
        (grouped && (rc = cuda_dev(be, 3, 3 * total * sizeof(float *), &ptrs_dev))))
        return rc;
    float *da = (float *)a, *db = (float *)b, *dc = (float *)c, beta = 0.0f;
    /* grouped: per-group arrays on the host, pointer arrays on the device */
    char *host = NULL;
    const float **pa = NULL, **pb = NULL;
    float **pc = NULL, *alpha = NULL, *betas = NULL;
    cublasOperation_t *ta = NULL, *tb = NULL;
    int *m = NULL, *n = NULL, *k = NULL, *lda = NULL, *ldb = NULL, *ldc = NULL, *size = NULL;
    if (grouped) {
        size_t meta = (size_t)ng * (2 * sizeof(cublasOperation_t) + 7 * sizeof(int) + 2 * sizeof(float));
        if (!(host = (char *)host_buf(be, cuda_of(be)->cur, GPUQ_STAGING, 3 * total * sizeof(float *) + meta)))
            return GPUQ_BE_NOMEM;
        pa = (const float **)host, pb = pa + total, pc = (float **)(pb + total);
        ta = (cublasOperation_t *)(pc + total), tb = ta + ng;
        m = (int *)(tb + ng), n = m + ng, k = n + ng, lda = k + ng, ldb = lda + ng, ldc = ldb + ng;
        size = ldc + ng;
        alpha = (float *)(size + ng), betas = alpha + ng;
    }
    size_t j = 0, oa = 0, ob = 0, oc = 0;
    for (int i = 0; i < ng; i++) {
        const struct gpuq_matmul *mm = &g[i];
        size_t na = group_floats(mm, mm->stride_a, (size_t)mm->m * mm->k);
        size_t nb = group_floats(mm, mm->stride_b, (size_t)mm->k * mm->n);
        struct col_major cm = col_major(mm);
        CU(cudaMemcpyAsync(da + oa, mm->a, na * 4, cudaMemcpyHostToDevice, s->stream));
        CU(cudaMemcpyAsync(db + ob, mm->b, nb * 4, cudaMemcpyHostToDevice, s->stream));
        if (!grouped) {
            BLAS(cublasSgemmStridedBatched(s->blas, cm.ta, cm.tb, mm->n, mm->m, mm->k, &mm->alpha,
                                           db + ob, cm.lda, mm->stride_b, da + oa, cm.ldb,
                                           mm->stride_a, &beta, dc + oc, mm->n,
                                           (long long)mm->m * mm->n, mm->count));
        } else {
            for (int e = 0; e < mm->count; e++, j++) {
                pa[j] = da + oa + (size_t)e * mm->stride_a;
                pb[j] = db + ob + (size_t)e * mm->stride_b;
                pc[j] = dc + oc + (size_t)e * mm->m * mm->n;
            }
            ta[i] = cm.ta, tb[i] = cm.tb, lda[i] = cm.lda, ldb[i] = cm.ldb;
            m[i] = mm->n, n[i] = mm->m, k[i] = mm->k, ldc[i] = mm->n;
            size[i] = mm->count;
            alpha[i] = mm->alpha, betas[i] = 0.0f;
        }
        oa += na, ob += nb, oc += (size_t)mm->count * mm->m * mm->n;
    }
#if CUBLAS_VERSION >= 120500
    if (grouped) {
        CU(cudaMemcpyAsync(ptrs_dev, host, 3 * total * sizeof(float *), cudaMemcpyHostToDevice,
                           s->stream));
        const float *const *dp = (const float *const *)ptrs_dev;   /* a, b, c pointers */
        BLAS(cublasSgemmGroupedBatched(s->blas, ta, tb, m, n, k, alpha, dp + total, lda, dp, ldb,
                                       betas, (float *const *)(dp + 2 * total), ldc, ng, size));
    }
#endif
    oc = 0;
    for (int i = 0; i < ng; i++) {
        size_t nc = (size_t)g[i].count * g[i].m * g[i].n;
        CU(cudaMemcpyAsync(g[i].c, dc + oc, nc * 4, cudaMemcpyDeviceToHost, s->stream));
        oc += nc;
    }
    return 0;
}

/* ---- mlp ---- */

static int cuda_mlp(struct gpuq_backend *be, const struct gpuq_model *m, const float *x, int rows,
                    float *y) {
    struct cuda_slot *s = cuda_cur(be);
    const struct cuda_mlp *d = (const struct cuda_mlp *)m->backend_data;
    enum gpuq_precision p = be->precision;
    size_t width = (size_t)m->max_width;
    if ((size_t)m->layers[0].d_in > width) width = (size_t)m->layers[0].d_in;
    void *buf0, *buf1, *low = NULL;
    int rc;
    if ((rc = cuda_dev(be, 0, rows * width * 4, &buf0)) || (rc = cuda_dev(be, 1, rows * width * 4, &buf1)) ||
        (p != GPUQ_PREC_F32 && (rc = cuda_dev(be, 2, rows * width * 2, &low))))
        return rc;
    float *in = (float *)buf0, *out = (float *)buf1;
    CU(cudaMemcpyAsync(in, x, (size_t)rows * m->layers[0].d_in * 4, cudaMemcpyHostToDevice, s->stream));
    if (low && (rc = convert(be, s->stream, low, in, (long long)rows * m->layers[0].d_in, p))) return rc;
    cudaDataType_t lt = p == GPUQ_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    float one = 1.0f, zero = 0.0f;
    for (int l = 0; l < m->n_layers; l++) {
        const struct gpuq_mlp_layer *L = &m->layers[l];
        int last = l == m->n_layers - 1;
        /* column-major Y^T [d_out, rows] = W [d_out, d_in] . X^T */
        if (low)
            BLAS(cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, L->d_out, rows, L->d_in, &one,
                              d->w[l], lt, L->d_in, low, lt, L->d_in, &zero, out, CUDA_R_32F,
                              L->d_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        else
            BLAS(cublasSgemm(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, L->d_out, rows, L->d_in, &one,
                             (const float *)d->w[l], L->d_in, in, L->d_in, &zero, out, L->d_out));
        int act = last ? GPUQ_ACT_NONE : (int)m->act;
        if ((rc = bias_act(be, s->stream, out, last ? NULL : low, p, d->b[l], rows, L->d_out, act)))
            return rc;
        float *t = in;
        in = out;
        out = t;
    }
    CU(cudaMemcpyAsync(y, in, (size_t)rows * gpuq_model_out_dim(m) * 4, cudaMemcpyDeviceToHost,
                       s->stream));
    return 0;
}

static int cuda_memory_used(struct gpuq_backend *be, int64_t *bytes) {
    size_t free_b = 0, total_b = 0;
    CU(cudaMemGetInfo(&free_b, &total_b));
    *bytes = (int64_t)(total_b - free_b);
    return 0;
}

/* ---- the backend ---- */

static void cuda_destroy(struct gpuq_backend *be) {
    struct cuda_ctx *c = cuda_of(be);
    if (!c) return;
    cudaSetDevice(c->device);
    for (int s = 0; s < 2; s++) {
        struct cuda_slot *sl = &c->slot[s];
        if (sl->stream) cudaStreamSynchronize(sl->stream);
        for (int i = 0; i < CUDA_DEV_BUFS; i++) cudaFree(sl->dev[i].p);
        for (int i = 0; i <= GPUQ_STAGING; i++) cudaFreeHost(sl->host[i].p);
        if (sl->blas) cublasDestroy(sl->blas);
        if (sl->stream) cudaStreamDestroy(sl->stream);
    }
    free(c);
    be->ctx = NULL;
}

static const struct gpuq_backend_i cuda_iface = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .model_load = cuda_model_load,
    .model_free = cuda_model_free,
    .matmul = cuda_matmul,
    .mlp = cuda_mlp,
    .knn = cuda_knn,
    .softmax = cuda_softmax,
    .layernorm = cuda_layernorm,
    .image = cuda_image,
    .memory_used = cuda_memory_used,
    .reserve = cuda_reserve,
    .begin = cuda_begin,
    .sync = cuda_sync,
    .staging = cuda_staging,
};

extern "C" int gpuq_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();   /* clear: no driver is not an error of ours */
        return 0;
    }
    return n;
}

static int slot_init(struct cuda_slot *s) {
    return cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking) == cudaSuccess &&
           cublasCreate(&s->blas) == CUBLAS_STATUS_SUCCESS &&
           cublasSetStream(s->blas, s->stream) == CUBLAS_STATUS_SUCCESS &&
           /* f32 stays f32: no TF32 */
           cublasSetMathMode(s->blas, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS;
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
        !slot_init(&c->slot[0]) || !slot_init(&c->slot[1])) {
        snprintf(err, errlen, "device %d: initialization failed", device);
        cuda_destroy(be);
        be->iface = NULL;
        return -1;
    }
    snprintf(be->desc, sizeof(be->desc), "cuda device %d: %s (sm_%d%d, %.0f GiB)", device,
             prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0);
    return 0;
}
