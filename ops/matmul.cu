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

/* Floats of operand which (0 a, 1 b, 2 c) of a group, and where it is on the host. */
static size_t floats_of(const struct gpuq_matmul *g, int which) {
    if (which == 0) return group_floats(g, g->stride_a, (size_t)g->m * g->k);
    if (which == 1) return group_floats(g, g->stride_b, (size_t)g->k * g->n);
    return (size_t)g->count * g->m * g->n;
}

static const float *host_of(const struct gpuq_matmul *g, int which) {
    return which == 0 ? g->a : which == 1 ? g->b : g->c;
}

/* Moves operand which of every group between the host and dev (where the
 * groups lie back to back): one copy per run of groups that lie back to
 * back on the host too, as pack leaves them, so one copy in all. */
static int copy_groups(struct gpuq_backend *be, const struct gpuq_matmul *g, int ng, int which,
                       float *dev) {
    size_t off = 0;
    for (int i = 0; i < ng;) {
        const float *h = host_of(&g[i], which);
        size_t run = floats_of(&g[i], which);
        for (i++; i < ng && host_of(&g[i], which) == h + run; i++) run += floats_of(&g[i], which);
        int rc = which == 2 ? cuda_down(be, (void *)h, dev + off, run * 4)
                            : cuda_up(be, dev + off, h, run * 4);
        if (rc) return rc;
        off += run;
    }
    return 0;
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

/* One shape is one strided-batched GEMM (one GEMM where b broadcasts
 * beside an untransposed a); several shapes one grouped GEMM (cuBLAS 12.5
 * and later; before it, one strided GEMM per shape). Three copies in all:
 * a and b up, c down. */
extern "C" int gpuq_cuda_matmul(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_matmul *g = ((const struct gpuq_matmuls *)l->args)->g;
    int ng = ((const struct gpuq_matmuls *)l->args)->n;
    struct cuda_slot *s = cuda_cur(be);
    size_t fa = 0, fb = 0, fc = 0, total = 0;
    for (int i = 0; i < ng; i++) {
        fa += floats_of(&g[i], 0);
        fb += floats_of(&g[i], 1);
        fc += floats_of(&g[i], 2);
        total += (size_t)gpuq_matmul_fold(g[i]).count;
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
    if ((rc = copy_groups(be, g, ng, 0, da)) || (rc = copy_groups(be, g, ng, 1, db))) return rc;
    size_t j = 0, oa = 0, ob = 0, oc = 0;
    for (int i = 0; i < ng; i++) {
        size_t na = floats_of(&g[i], 0), nb = floats_of(&g[i], 1);
        const struct gpuq_matmul fold = gpuq_matmul_fold(g[i]), *mm = &fold;
        struct col_major cm = col_major(mm);
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
    return copy_groups(be, g, ng, 2, dc);
}

