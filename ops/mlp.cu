/* mlp.cu -- mlp on CUDA: one GEMM per layer (cuBLAS; bf16/f16 inputs on
 * tensor cores with f32 sums) with a fused bias+activation kernel that
 * also converts for the next layer. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "models/mlp/mlp.h"
#include "ops/mlp.h"

/* y = act(y + bias) over [rows, cols]; with next, the result goes there
 * instead, converted for the next layer's GEMM. */
template <typename T>
__global__ static void bias_act_kernel(float *y, T *next, const float *bias, long long n, int cols,
                                       int act) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long stride = (long long)gridDim.x * blockDim.x;
    for (; i < n; i += stride) {
        float v = gpuq_act_apply((enum gpuq_act)act, y[i] + bias[i % cols]);
        if (next) store(&next[i], v);
        else y[i] = v;
    }
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

extern "C" int gpuq_cuda_mlp(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_mlp_args *a = (const struct gpuq_mlp_args *)l->args;
    const struct gpuq_mlp *m = gpuq_model_mlp(a->m);
    const float *x = a->x;
    float *y = a->y;
    int rows = a->rows;
    struct cuda_slot *s = cuda_cur(be);
    const struct cuda_mlp *d = (const struct cuda_mlp *)a->m->backend_data;
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
    if (low && (rc = cuda_convert(be, s->stream, low, in, (long long)rows * m->layers[0].d_in, p))) return rc;
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
    CU(cudaMemcpyAsync(y, in, (size_t)rows * gpuq_model_out_dim(a->m) * 4, cudaMemcpyDeviceToHost,
                       s->stream));
    return 0;
}


/* Activations twice in f32 and once in bf16/f16 on the device; x and y in
 * pinned staging; for the widest loaded mlp. */
extern "C" int gpuq_cuda_mlp_reserve(struct gpuq_backend *be, int rows) {
    struct cuda_ctx *c = cuda_of(be);
    size_t r = (size_t)rows, w = (size_t)c->mlp_width;
    if (!w) return 0;
    for (int s = 0; s < 2; s++) {
        void *p;
        int rc;
        c->cur = s;
        if ((rc = cuda_dev(be, 0, r * w * 4, &p)) || (rc = cuda_dev(be, 1, r * w * 4, &p)) ||
            (rc = cuda_dev(be, 2, r * w * 2, &p)))
            return rc;
        if (!cuda_keep(be, s, 0, r * c->mlp_in * 4) || !cuda_keep(be, s, 1, r * c->mlp_out * 4))
            return GPUQ_BE_NOMEM;
    }
    return 0;
}
