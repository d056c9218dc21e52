/* cuda.cu -- the CUDA backend's core: the context, its two slots (stream,
 * cuBLAS handle, device buffers, pinned staging), models on the device
 * (mlp weights in the backend's precision, knn indexes), and failures.
 * The ops' kernels are in ops/<op>.cu. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda.h"
#include "kernels/cuda_int.h"
#include "models/index/index.h"
#include "models/mlp/mlp.h"

/* ---- failures ---- */

/* Whether the device still answers: a sticky error stays on every call. */
static int lost(void) {
    cudaGetLastError();     /* clears what is not sticky */
    return cudaDeviceSynchronize() != cudaSuccess;
}

/* file:line of a failed call, the file without its directories */
static const char *base(const char *file) {
    const char *slash = strrchr(file, '/');
    return slash ? slash + 1 : file;
}

int cuda_fail(struct gpuq_backend *be, cudaError_t e, const char *file, int line) {
    snprintf(be->errstr, sizeof(be->errstr), "%s (%s:%d)", cudaGetErrorString(e), base(file), line);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        return GPUQ_BE_NOMEM;
    }
    return lost() ? GPUQ_BE_LOST : GPUQ_BE_FAILED;
}

int cublas_fail(struct gpuq_backend *be, cublasStatus_t s, const char *file, int line) {
    snprintf(be->errstr, sizeof(be->errstr), "cuBLAS: %s (%s:%d)", cublasGetStatusString(s), base(file),
             line);
    if (s == CUBLAS_STATUS_ALLOC_FAILED) return GPUQ_BE_NOMEM;
    if (s == CUBLAS_STATUS_EXECUTION_FAILED || s == CUBLAS_STATUS_INTERNAL_ERROR)
        return lost() ? GPUQ_BE_LOST : GPUQ_BE_FAILED;
    return GPUQ_BE_FAILED;
}

/* ---- buffers ---- */

/* Growth is by half again (at least), so that a slowly rising batch size
 * does not reallocate each time; device buffers in whole MiB. */
static size_t grown(size_t cap, size_t bytes) {
    return bytes > cap + cap / 2 ? bytes : cap + cap / 2;
}

static size_t whole_mib(size_t bytes) { return (bytes + (1 << 20) - 1) & ~(size_t)((1 << 20) - 1); }

/* A device buffer grows without stalling the other slot: the replacement
 * is allocated first (out of memory leaves the old one), in stream order
 * on the slot's stream where the device has memory pools, and the old one
 * is freed in stream order after the work queued on it; a cudaFree would
 * wait for the whole device. Where there are no pools, the slot waits. */
int cuda_dev(struct gpuq_backend *be, int i, size_t bytes, void **out) {
    struct cuda_ctx *c = cuda_of(be);
    struct cuda_slot *s = cuda_cur(be);
    struct cuda_buf *b = &s->dev[i];
    if (bytes > b->cap) {
        size_t want = whole_mib(grown(b->cap, bytes));
        void *p = NULL;
        cudaError_t e = c->pools ? cudaMallocAsync(&p, want, s->stream) : cudaMalloc(&p, want);
        if (e == cudaErrorMemoryAllocation && want > whole_mib(bytes)) {    /* the room asked for, then */
            cudaGetLastError();
            want = whole_mib(bytes);
            e = c->pools ? cudaMallocAsync(&p, want, s->stream) : cudaMalloc(&p, want);
        }
        if (e != cudaSuccess) return cuda_fail(be, e, __FILE__, __LINE__);
        if (b->p && c->pools) {
            CU(cudaFreeAsync(b->p, s->stream));
        } else if (b->p) {
            CU(cudaStreamSynchronize(s->stream));
            CU(cudaFree(b->p));
        }
        b->p = p;
        b->cap = want;
    }
    *out = b->p;
    return 0;
}

/* Pinned host buffer i of a slot; the caller knows the slot is idle. The
 * replacement is allocated before the old one is freed. */
void *cuda_host(struct gpuq_backend *be, int slot, int i, size_t bytes) {
    struct cuda_buf *b = &cuda_of(be)->slot[slot].host[i];
    if (bytes > b->used) b->used = bytes;
    if (bytes > b->cap) {
        size_t want = grown(b->cap, bytes);
        void *p = NULL;
        cudaError_t e = cudaHostAlloc(&p, want, cudaHostAllocDefault);
        if (e == cudaErrorMemoryAllocation && want > bytes) {
            cudaGetLastError();
            e = cudaHostAlloc(&p, want = bytes, cudaHostAllocDefault);
        }
        if (e != cudaSuccess) {
            cuda_fail(be, e, __FILE__, __LINE__);
            return NULL;
        }
        cudaFreeHost(b->p);
        b->p = p;
        b->cap = want;
    }
    return b->p;
}

void *cuda_keep(struct gpuq_backend *be, int slot, int i, size_t bytes) {
    struct cuda_buf *b = &cuda_of(be)->slot[slot].host[i];
    if (bytes > b->keep) b->keep = bytes;
    return cuda_host(be, slot, i, bytes);
}

/* Pinned staging that an outsized batch grew is given back once the slot
 * is idle again and the last batch on it used less than half: above what
 * reserve sized it for, and above CUDA_KEEP_PINNED. */
#define CUDA_KEEP_PINNED ((size_t)64 << 20)

static void trim_staging(struct cuda_slot *s) {
    for (int i = 0; i <= GPUQ_STAGING; i++) {
        struct cuda_buf *b = &s->host[i];
        if (b->cap > CUDA_KEEP_PINNED && b->cap > b->keep && b->used < b->cap / 2) {
            cudaFreeHost(b->p);
            b->p = NULL;
            b->cap = 0;
        }
        b->used = 0;
    }
}

static void *cuda_staging(struct gpuq_backend *be, int slot, int i, size_t bytes) {
    return cuda_host(be, slot, i, bytes ? bytes : 1);
}

int cuda_up(struct gpuq_backend *be, void *dst, const void *src, size_t bytes) {
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_cur(be)->stream));
    return 0;
}

int cuda_down(struct gpuq_backend *be, void *dst, const void *src, size_t bytes) {
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_cur(be)->stream));
    return 0;
}

/* A slot is idle at begin: its last batch was synced and scattered. */
static int cuda_begin(struct gpuq_backend *be, int slot) {
    cuda_of(be)->cur = slot;
    trim_staging(&cuda_of(be)->slot[slot]);
    return 0;
}

static int cuda_sync(struct gpuq_backend *be, int slot) {
    CU(cudaStreamSynchronize(cuda_of(be)->slot[slot].stream));
    return 0;
}

/* ---- conversion to the mlp precision ---- */

template <typename T>
__global__ static void convert_kernel(T *dst, const float *src, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (; i < n; i += stride) store(&dst[i], src[i]);
}

/* dst (lower precision p) = src (f32), n elements. */
int cuda_convert(struct gpuq_backend *be, cudaStream_t st, void *dst, const float *src,
                 long long n, enum gpuq_precision p) {
    if (p == GPUQ_PREC_BF16)
        convert_kernel<<<blocks_for(n), 256, 0, st>>>((__nv_bfloat16 *)dst, src, n);
    else
        convert_kernel<<<blocks_for(n), 256, 0, st>>>((__half *)dst, src, n);
    LAUNCHED();
    return 0;
}

/* ---- models ---- */

/* A knn index on the device: embeddings and norms, uploaded once. */
static void cuda_index_free(struct gpuq_model *m) {
    struct cuda_index *d = (struct cuda_index *)m->backend_data;
    if (!d) return;
    cudaFree(d->emb);
    cudaFree(d->norms);
    free(d);
    m->backend_data = NULL;
}

static int cuda_index_load(struct gpuq_backend *be, struct gpuq_model *m) {
    const struct gpuq_index *ix = gpuq_model_index(m);
    if (ix->n_rows >= (int64_t)UINT32_MAX) {
        snprintf(be->errstr, sizeof(be->errstr), "an index of %lld rows is too large (< 2^32)",
                 (long long)ix->n_rows);
        return GPUQ_BE_FAILED;
    }
    struct cuda_index *d = (struct cuda_index *)calloc(1, sizeof(*d));
    if (!d) return GPUQ_BE_NOMEM;
    m->backend_data = d;
    size_t emb = (size_t)ix->n_rows * ix->dim * sizeof(float), norms = (size_t)ix->n_rows * sizeof(float);
    cudaError_t e;
    if ((e = cudaMalloc((void **)&d->emb, emb)) != cudaSuccess ||
        (e = cudaMalloc((void **)&d->norms, norms)) != cudaSuccess ||
        (e = cudaMemcpy(d->emb, ix->embeddings, emb, cudaMemcpyHostToDevice)) != cudaSuccess ||
        (e = cudaMemcpy(d->norms, ix->norms, norms, cudaMemcpyHostToDevice)) != cudaSuccess) {
        int rc = cuda_fail(be, e, __FILE__, __LINE__);
        cuda_index_free(m);
        return rc;
    }
    return 0;
}

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
    switch (gpuq_model_arch(m)) {
    case GPUQ_ARCH_MLP: mlp_free(m); break;
    case GPUQ_ARCH_INDEX: cuda_index_free(m); break;
    case GPUQ_ARCH_ENCODER: cuda_encoder_free(m); break;
    case GPUQ_ARCH_DECODER: cuda_decoder_free(m); break;
    default: break;     /* nothing was loaded: model_load refused it */
    }
}

/* Row-major as column-major: Y^T = W^T' X^T. */
int cuda_gemm(struct gpuq_backend *be, enum gpuq_precision p, const void *w, const void *x, int t, int in, int out,
              float *y, float beta) {
    cublasHandle_t blas = cuda_cur(be)->blas;
    float one = 1.0f;
    if (p == GPUQ_PREC_F32)
        BLAS(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, out, t, in, &one, (const float *)w, in,
                         (const float *)x, in, &beta, y, out));
    else {
        cudaDataType_t lt = p == GPUQ_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
        BLAS(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, out, t, in, &one, w, lt, in, x, lt, in, &beta, y,
                          CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return 0;
}

int cuda_upload(struct gpuq_backend *be, void **dst, const float *src, size_t floats) {
    CU(cudaMalloc(dst, floats * sizeof(float)));
    CU(cudaMemcpy(*dst, src, floats * sizeof(float), cudaMemcpyHostToDevice));
    return 0;
}

int cuda_upload_weights(struct gpuq_backend *be, void **dst, const float *w, size_t n) {
    if (be->precision == GPUQ_PREC_F32) return cuda_upload(be, dst, w, n);
    if (be->precision == GPUQ_PREC_F16)
        for (size_t i = 0; i < n; i++)
            if (!(fabsf(w[i]) < 65520.0f)) {
                snprintf(be->errstr, sizeof(be->errstr), "a weight (%g) is beyond f16's range", w[i]);
                return GPUQ_BE_FAILED;
            }
    void *f32 = NULL;
    int rc = cuda_upload(be, &f32, w, n);
    cudaError_t e = rc == 0 ? cudaMalloc(dst, n * 2) : cudaSuccess;
    if (e != cudaSuccess) rc = cuda_fail(be, e, __FILE__, __LINE__);
    if (rc == 0) rc = cuda_convert(be, 0, *dst, (const float *)f32, (long long)n, be->precision);
    if (rc == 0 && (e = cudaDeviceSynchronize()) != cudaSuccess) rc = cuda_fail(be, e, __FILE__, __LINE__);
    cudaFree(f32);
    return rc;
}

void cuda_upload_weight(struct cuda_upload *u, void **dst, const struct gpuq_weight *w) {
    if (u->rc == 0)
        u->rc = w->w16 ? cuda_upload_weights(u->be, dst, *w->data, w->n) : cuda_upload(u->be, dst, *w->data, w->n);
}

static int cuda_model_load(struct gpuq_backend *be, struct gpuq_model *m) {
    struct cuda_ctx *c = cuda_of(be);
    if (gpuq_model_arch(m) == GPUQ_ARCH_ENCODER) return cuda_encoder_load(be, m);    /* kernels/encoder.cu */
    if (gpuq_model_arch(m) == GPUQ_ARCH_DECODER) return cuda_decoder_load(be, m);    /* kernels/decoder.cu */
    if (gpuq_model_arch(m) == GPUQ_ARCH_INDEX) {
        int rc = cuda_index_load(be, m);
        if (rc == 0 && gpuq_model_in_dim(m) > c->knn_dim) c->knn_dim = gpuq_model_in_dim(m);
        return rc;
    }
    const struct gpuq_mlp *net = gpuq_model_mlp(m);
    struct cuda_mlp *d = (struct cuda_mlp *)calloc(1, sizeof(*d));
    if (!d) return GPUQ_BE_NOMEM;
    m->backend_data = d;
    d->w = (void **)calloc((size_t)net->n_layers, sizeof(void *));
    d->b = (float **)calloc((size_t)net->n_layers, sizeof(float *));
    int rc = d->w && d->b ? 0 : GPUQ_BE_NOMEM;
    if (rc == 0) d->n = net->n_layers;
    for (int i = 0; rc == 0 && i < net->n_layers; i++) {
        const struct gpuq_mlp_layer *L = &net->layers[i];
        rc = cuda_upload_weights(be, &d->w[i], L->w, (size_t)L->d_in * L->d_out);
        if (rc == 0) rc = cuda_upload(be, (void **)&d->b[i], L->b, (size_t)L->d_out);
    }
    if (rc != 0) {
        mlp_free(m);
        return rc;
    }
    int in = gpuq_model_in_dim(m);
    if (net->max_width > c->mlp_width) c->mlp_width = net->max_width;
    if (in > c->mlp_width) c->mlp_width = in;
    if (in > c->mlp_in) c->mlp_in = in;
    if (gpuq_model_out_dim(m) > c->mlp_out) c->mlp_out = gpuq_model_out_dim(m);
    return 0;
}

/* Each op sizes both slots' buffers for rows rows of the loaded models, so
 * that batches allocate nothing; buffers only grow, so every op gets the
 * largest any op asked for. Ops whose sizes come with the jobs have no
 * reserve: their buffers grow to the largest batch seen instead. Out of
 * memory here is not fatal to the worker: batches that do not fit run in
 * parts. */
static int cuda_reserve(struct gpuq_backend *be, int rows) {
    int rc = 0;
    for (int op = 0; rc == 0 && op < GPUQ_OP_COUNT; op++)
        if (be->reserve[op] && be->kernel[op]) rc = be->reserve[op](be, rows);
    cuda_of(be)->cur = 0;
    if (rc == 0) CU(cudaDeviceSynchronize());
    return rc;
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
    .kind = GPUQ_BACKEND_CUDA,
    .destroy = cuda_destroy,
    .model_load = cuda_model_load,
    .model_free = cuda_model_free,
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
        /* no GPU, or no NVIDIA driver for one: the usual case on a CPU machine */
        int none = e == cudaSuccess || e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver;
        snprintf(err, errlen, "%s%s", none ? "no NVIDIA GPU with a driver on this machine"
                 : "no usable CUDA device: ", none ? "" : cudaGetErrorString(e));
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
    int pools = 0;
    c->pools = cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device) == cudaSuccess && pools;
    cudaGetLastError();
    snprintf(be->desc, sizeof(be->desc), "cuda device %d: %s (sm_%d%d, %.0f GiB)", device,
             prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0);
    return 0;
}
