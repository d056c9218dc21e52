/* matmul.cu -- matmul on CUDA: one shape is one strided-batched GEMM,
 * several shapes one grouped GEMM. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "ops/matmul.h"

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
extern "C" int gpuq_cuda_matmul(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_matmul *g = ((const struct gpuq_matmuls *)l->args)->g;
    int ng = ((const struct gpuq_matmuls *)l->args)->n;
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
        if (!(host = (char *)cuda_host(be, cuda_of(be)->cur, GPUQ_STAGING, 3 * total * sizeof(float *) + meta)))
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

