/* matmul.c -- the matmul op: a [m,k] or [B,m,k], b [k,n] or [B,k,n] (either
 * may broadcast one matrix); split by whole matrices. Jobs of any shape
 * share a batch: pieces of one shape become one strided batch, the shapes
 * together one grouped GEMM. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "ops/matmul.h"
#include "ops/op.h"
#include "ops/twin.h"

struct params {
    struct gpuq_matmul mm;      /* the shape; count = this job's matrices */
    int a_count, b_count;       /* matrices in a and b (1 broadcasts) */
    int batched;                /* output is [count, m, n] */
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "matmul params fit a task");

static const struct params *P(const struct gpuq_task *t) { return gpuq_task_params(t); }

static int prepare(struct gpuq_task *t) {
    struct gpuq_job *job = &t->job;
    const struct gpuq_tensor *a = gpuq_job_input(job, "a"), *b = gpuq_job_input(job, "b");
    double alpha = 1.0;
    int ta = 0, tb = 0;
    if (gpuq_job_param_f64(job, "alpha", &alpha) < 0 || gpuq_job_param_bool(job, "trans_a", &ta) < 0 ||
        gpuq_job_param_bool(job, "trans_b", &tb) < 0)
        return -1;
    if ((a->ndim != 2 && a->ndim != 3) || (b->ndim != 2 && b->ndim != 3))
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "matmul wants a [m,k] or [b,m,k] and "
                             "b [k,n] or [b,k,n]");
    int oa = a->ndim - 2, ob = b->ndim - 2;
    int64_t m = a->shape[oa + (ta ? 1 : 0)], ka = a->shape[oa + (ta ? 0 : 1)];
    int64_t kb = b->shape[ob + (tb ? 1 : 0)], n = b->shape[ob + (tb ? 0 : 1)];
    int64_t ca = oa ? a->shape[0] : 1, cb = ob ? b->shape[0] : 1;
    if (ka != kb)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "matmul: a has k=%lld, b has k=%lld",
                             (long long)ka, (long long)kb);
    if (oa && ob && ca != cb)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "matmul: batch of a is %lld, of b %lld",
                             (long long)ca, (long long)cb);
    int64_t count = ca > cb ? ca : cb;
    /* a and b are checked as inputs; a broadcast one is packed once */
    if (count * m * n > GPUQ_MAX_ELEMS)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "matmul: c would have more than %lld "
                             "elements", (long long)GPUQ_MAX_ELEMS);
    struct params *p = gpuq_task_params(t);
    p->mm = (struct gpuq_matmul){.trans_a = ta, .trans_b = tb, .m = (int)m, .n = (int)n,
                                 .k = (int)ka, .count = (int)count, .alpha = (float)alpha};
    p->a_count = (int)ca;
    p->b_count = (int)cb;
    p->batched = oa || ob;
    t->rows = count * m;
    t->unit = m;
    return 0;
}

static size_t out_bytes(const struct gpuq_task *t) {
    const struct gpuq_matmul *mm = &P(t)->mm;
    return (size_t)mm->count * mm->m * mm->n * sizeof(float);
}

static int same_shape(const struct gpuq_matmul *x, const struct gpuq_matmul *y) {
    return x->m == y->m && x->n == y->n && x->k == y->k && x->trans_a == y->trans_a &&
           x->trans_b == y->trans_b && x->alpha == y->alpha;
}

/* Matrix i of input t (which holds `have` matrices: 1 broadcasts) as f32. */
static void pack_matrix(const struct gpuq_tensor *t, int have, int64_t i, size_t each, float *dst) {
    struct gpuq_tensor one = {t->dtype, 1, {(int64_t)each}, NULL, 0};
    one.data = (const char *)t->data + (have == 1 ? 0 : i) * each * gpuq_dtype_size(t->dtype);
    gpuq_tensor_to_f32(&one, dst);
}

static int cmp_shape(const void *x, const void *y) {
    const struct gpuq_piece *p = x, *q = y;
    const struct gpuq_matmul *a = &P(p->t)->mm, *b = &P(q->t)->mm;
    if (a->m != b->m) return a->m < b->m ? -1 : 1;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    if (a->trans_a != b->trans_a) return a->trans_a - b->trans_a;
    if (a->trans_b != b->trans_b) return a->trans_b - b->trans_b;
    if (a->alpha != b->alpha) return a->alpha < b->alpha ? -1 : 1;
    return p < q ? -1 : p > q;
}

/* Matrices of input `have` of a task piece that brings cnt of them: a
 * broadcast input (one matrix beside more) is packed once, stride 0. */
static int64_t packed(int have, int64_t cnt) { return have == 1 ? 1 : cnt; }

static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    size_t fa = 0, fb = 0, fc = 0;
    for (int i = 0; i < n; i++) {
        const struct params *prm = P(p[i].t);
        const struct gpuq_matmul *mm = &prm->mm;
        int64_t cnt = p[i].rows / mm->m;
        fa += (size_t)packed(prm->a_count, cnt) * mm->m * mm->k;
        fb += (size_t)packed(prm->b_count, cnt) * mm->k * mm->n;
        fc += (size_t)cnt * mm->m * mm->n;
    }
    float *a = gpuq_ops_buf(s, 0, fa * sizeof(float)), *b = gpuq_ops_buf(s, 1, fb * sizeof(float));
    float *c = gpuq_ops_buf(s, 2, fc * sizeof(float));
    struct gpuq_matmul *groups = gpuq_ops_buf(s, 3, (size_t)n * sizeof(*groups));
    if (!a || !b || !c || !groups) return GPUQ_BE_NOMEM;
    qsort(p, (size_t)n, sizeof(*p), cmp_shape);
    int ng = 0, alone = 0;      /* alone: the last group broadcasts, so it takes no more */
    float *pa = a, *pb = b, *pc = c;
    for (int i = 0; i < n; i++) {
        const struct params *prm = P(p[i].t);
        const struct gpuq_matmul *mm = &prm->mm;
        size_t na = (size_t)mm->m * mm->k, nb = (size_t)mm->k * mm->n, nc = (size_t)mm->m * mm->n;
        int64_t first = p[i].row0 / mm->m, cnt = p[i].rows / mm->m;
        int one_a = prm->a_count == 1 && mm->count > 1, one_b = prm->b_count == 1 && mm->count > 1;
        if (ng == 0 || alone || one_a || one_b || !same_shape(&groups[ng - 1], mm)) {
            groups[ng] = *mm;
            groups[ng].count = 0;
            groups[ng].a = pa, groups[ng].b = pb, groups[ng].c = pc;
            groups[ng].stride_a = one_a ? 0 : (int64_t)na, groups[ng].stride_b = one_b ? 0 : (int64_t)nb;
            ng++;
        }
        alone = one_a || one_b;
        const struct gpuq_tensor *ta = gpuq_job_input(&p[i].t->job, "a");
        const struct gpuq_tensor *tb = gpuq_job_input(&p[i].t->job, "b");
        for (int64_t j = first; j < first + cnt; j++) {
            if (!one_a || j == first) {
                pack_matrix(ta, prm->a_count, j, na, pa);
                pa += na;
            }
            if (!one_b || j == first) {
                pack_matrix(tb, prm->b_count, j, nb, pb);
                pb += nb;
            }
        }
        groups[ng - 1].count += (int)cnt;
        pc += (size_t)cnt * nc;
    }
    s->out[0] = c;
    struct gpuq_matmuls args = {groups, ng};
    return gpuq_backend_run(s->be, GPUQ_OP_MATMUL, rows, &args);
}

static void scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    const float *pc = s->out[0];
    for (int i = 0; i < n; i++) {
        const struct gpuq_matmul *mm = &P(p[i].t)->mm;
        size_t nc = (size_t)mm->m * mm->n, words = (size_t)(p[i].rows / mm->m) * nc;
        float *out = p[i].t->out;
        memcpy(out + (size_t)(p[i].row0 / mm->m) * nc, pc, words * sizeof(float));
        pc += words;
    }
}

static void finish(struct gpuq_task *t) {
    const struct params *p = P(t);
    int64_t shape[3] = {p->mm.count, p->mm.m, p->mm.n};
    gpuq_ops_set_output(t, 0, "c", GPUQ_DTYPE_F32, t->out, p->batched ? 3 : 2,
                        p->batched ? shape : shape + 1);
}

/* ---- the CPU kernel: one GEMM per matrix ---- */

static int cpu(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_matmuls *args = l->args;
    for (const struct gpuq_matmul *g = args->g; g < args->g + args->n; g++) {
        struct gpuq_matmul one = gpuq_matmul_fold(*g);
        const struct gpuq_matmul *mm = &one;
        int64_t lda = mm->trans_a ? mm->m : mm->k, ldb = mm->trans_b ? mm->k : mm->n;
        for (int i = 0; i < mm->count; i++) {
            struct gpuq_cpu_gemm_args a = {
                .batch = 1, .m = mm->m, .n = mm->n, .k = mm->k, .type = GPUQ_CPU_GEMM_F32,
                .a = mm->a + i * mm->stride_a, .a_row = mm->trans_a ? 1 : lda, .a_col = mm->trans_a ? lda : 1,
                .b = mm->b + i * mm->stride_b, .b_row = mm->trans_b ? 1 : ldb, .b_col = mm->trans_b ? ldb : 1,
                .c = mm->c + (int64_t)i * mm->m * mm->n, .c_row = mm->n, .c_col = 1, .alpha = mm->alpha};
            int rc = gpuq_cpu_gemm(be, &a);
            if (rc) return rc;
        }
    }
    return 0;
}

/* ---- twin: mixed shapes in one grouped call, one with a broadcast b ---- */

static void twin(struct gpuq_twin_run *r) {
    static const int small[][7] = {{3, 5, 7, 2, 0, 1, 0}, {4, 4, 4, 3, 1, 0, 0}};
    static const int large[][7] = {     /* m, n, k, count, trans_a, trans_b, one b */
        {7, 5, 3, 4, 0, 0, 0}, {16, 32, 8, 2, 1, 0, 0}, {33, 1, 65, 3, 1, 1, 0},
        {128, 96, 256, 2, 0, 1, 0}, {9, 40, 48, 5, 0, 0, 1}};
    const int(*s)[7] = r->large ? large : small;
    int ng = r->large ? 5 : 2;
    struct gpuq_matmul g[2][5];
    size_t fa = 0, fb = 0, fc = 0;
    int64_t rows = 0;
    for (int i = 0; i < ng; i++) {
        fa += (size_t)s[i][3] * s[i][0] * s[i][2];
        fb += (size_t)(s[i][6] ? 1 : s[i][3]) * s[i][2] * s[i][1];
        fc += (size_t)s[i][3] * s[i][0] * s[i][1];
        rows += (int64_t)s[i][3] * s[i][0];
    }
    float *a = gpuq_twin_floats(r, fa), *b = gpuq_twin_floats(r, fb);
    float *c = calloc(fc, sizeof(float)), *want = calloc(fc, sizeof(float));
    if (a && b && c && want) {
        for (int pass = 0; pass < 2; pass++) {
            size_t oa = 0, ob = 0, oc = 0;
            for (int i = 0; i < ng; i++) {
                const int *d = s[i];
                int64_t nb = (int64_t)d[2] * d[1];
                g[pass][i] = (struct gpuq_matmul){d[4], d[5], d[0], d[1], d[2], d[3], i % 2 ? 0.5f : 1.0f,
                                                  a + oa, (int64_t)d[0] * d[2], b + ob,
                                                  d[6] ? 0 : nb, (pass ? want : c) + oc};
                oa += (size_t)d[3] * d[0] * d[2], ob += (size_t)(d[6] ? 1 : d[3]) * nb;
                oc += (size_t)d[3] * d[0] * d[1];
            }
        }
        struct gpuq_matmuls on_be = {g[0], ng}, on_cpu = {g[1], ng};
        if (gpuq_twin_both(r, rows, &on_be, &on_cpu) == 0) gpuq_twin_note(r, gpuq_twin_err(c, want, fc, 0));
    }
    free(a), free(b), free(c), free(want);
}

static const char *const inputs[] = {"a", "b", NULL};
static const char *const params[] = {"alpha", "trans_a", "trans_b", NULL};

const struct gpuq_op_desc gpuq_op_matmul = {
    .inputs = inputs, .params = params, .required = 2,
    .prepare = prepare, .out_bytes = out_bytes, .pack = pack, .scatter = scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_matmul)},
    .twin = twin, .tol = 1e-5,
};
