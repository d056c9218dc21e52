/* op_gemm.c -- the GEMM-shaped ops: matmul, mlp, knn. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/op_impl.h"

/* ---- matmul: a [m,k] or [B,m,k], b [k,n] or [B,k,n]; split by matrices ---- */

static int matmul_prepare(struct gpuq_ops *o, struct gpuq_task *t) {
    static const char *const names[] = {"a", "b", NULL};
    struct gpuq_job *job = &t->job;
    (void)o;
    if (gpuq_ops_want_inputs(job, names, 2, 0) != 0) return -1;
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
    if (count * m * n > GPUQ_MAX_ELEMS || count * m * ka > GPUQ_MAX_ELEMS ||
        count * ka * n > GPUQ_MAX_ELEMS)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "matmul operands have more than %lld "
                             "elements", (long long)GPUQ_MAX_ELEMS);
    t->mm = (struct gpuq_matmul){.trans_a = ta, .trans_b = tb, .m = (int)m, .n = (int)n,
                                 .k = (int)ka, .count = (int)count, .alpha = (float)alpha};
    t->a_count = (int)ca;
    t->b_count = (int)cb;
    t->batched = oa || ob;
    t->rows = count * m;
    t->unit = m;
    t->out_words = (size_t)(count * m * n);
    return 0;
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
    const struct gpuq_matmul *a = &p->t->mm, *b = &q->t->mm;
    if (a->m != b->m) return a->m < b->m ? -1 : 1;
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    if (a->trans_a != b->trans_a) return a->trans_a - b->trans_a;
    if (a->trans_b != b->trans_b) return a->trans_b - b->trans_b;
    if (a->alpha != b->alpha) return a->alpha < b->alpha ? -1 : 1;
    return p < q ? -1 : p > q;
}

/* Pieces of the same shape become one strided batch; the shapes together
 * one grouped call. */
static int matmul_run(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    (void)rows;
    size_t fa = 0, fb = 0, fc = 0;
    for (int i = 0; i < n; i++) {
        const struct gpuq_matmul *mm = &p[i].t->mm;
        int64_t cnt = p[i].rows / mm->m;
        fa += (size_t)cnt * mm->m * mm->k;
        fb += (size_t)cnt * mm->k * mm->n;
        fc += (size_t)cnt * mm->m * mm->n;
    }
    float *a = gpuq_ops_buf(s, 0, fa), *b = gpuq_ops_buf(s, 1, fb), *c = gpuq_ops_buf(s, 2, fc);
    struct gpuq_matmul *groups =
        (struct gpuq_matmul *)gpuq_ops_buf(s, 3, (size_t)n * sizeof(*groups) / 4 + 1);
    if (!a || !b || !c || !groups) return GPUQ_BE_NOMEM;
    qsort(p, (size_t)n, sizeof(*p), cmp_shape);
    int ng = 0;
    float *pa = a, *pb = b, *pc = c;
    for (int i = 0; i < n; i++) {
        const struct gpuq_task *t = p[i].t;
        const struct gpuq_matmul *mm = &t->mm;
        size_t na = (size_t)mm->m * mm->k, nb = (size_t)mm->k * mm->n, nc = (size_t)mm->m * mm->n;
        int64_t first = p[i].row0 / mm->m, cnt = p[i].rows / mm->m;
        if (ng == 0 || !same_shape(&groups[ng - 1], mm)) {
            groups[ng] = *mm;
            groups[ng].count = 0;
            groups[ng].a = pa, groups[ng].b = pb, groups[ng].c = pc;
            groups[ng].stride_a = (int64_t)na, groups[ng].stride_b = (int64_t)nb;
            ng++;
        }
        for (int64_t j = first; j < first + cnt; j++) {
            pack_matrix(gpuq_job_input(&t->job, "a"), t->a_count, j, na, pa);
            pack_matrix(gpuq_job_input(&t->job, "b"), t->b_count, j, nb, pb);
            pa += na, pb += nb;
        }
        groups[ng - 1].count += (int)cnt;
        pc += (size_t)cnt * nc;
    }
    s->out[0] = c;
    return s->be->iface->matmul(s->be, groups, ng);
}

static void matmul_scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    const float *pc = s->out[0];
    for (int i = 0; i < n; i++) {
        const struct gpuq_matmul *mm = &p[i].t->mm;
        size_t nc = (size_t)mm->m * mm->n, words = (size_t)(p[i].rows / mm->m) * nc;
        memcpy(p[i].t->out + (size_t)(p[i].row0 / mm->m) * nc, pc, words * sizeof(float));
        pc += words;
    }
}

static void matmul_finish(struct gpuq_task *t) {
    int64_t shape[3] = {t->mm.count, t->mm.m, t->mm.n};
    gpuq_ops_set_output(t, 0, "c", GPUQ_DTYPE_F32, t->out, t->batched ? 3 : 2,
                        t->batched ? shape : shape + 1);
}

const struct gpuq_op_impl gpuq_op_matmul = {matmul_prepare, matmul_run, matmul_scatter,
                                            matmul_finish};

/* ---- mlp: x [rows, d_in] through a loaded model ---- */

static int mlp_prepare(struct gpuq_ops *o, struct gpuq_task *t) {
    static const char *const names[] = {"x", NULL};
    struct gpuq_job *job = &t->job;
    if (gpuq_ops_find_model(o, t, GPUQ_MODEL_MLP) != 0 || gpuq_ops_want_inputs(job, names, 1, 0) != 0)
        return -1;
    const struct gpuq_tensor *x = gpuq_job_input(job, "x");
    int d_in = gpuq_model_in_dim(t->model);
    if (x->ndim != 2 || x->shape[1] != d_in)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "mlp '%s' wants x [rows, %d]",
                             t->model->name, d_in);
    if (x->shape[0] > GPUQ_MAX_ELEMS / t->model->max_width)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "mlp: too many rows");
    t->rows = x->shape[0];
    t->cols = d_in;
    t->out_words = (size_t)t->rows * gpuq_model_out_dim(t->model);
    return 0;
}

static int mlp_run(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    const struct gpuq_model *m = p[0].t->model;
    float *x = gpuq_ops_buf(s, 0, (size_t)rows * gpuq_model_in_dim(m));
    float *y = gpuq_ops_buf(s, 1, (size_t)rows * gpuq_model_out_dim(m));
    if (!x || !y) return GPUQ_BE_NOMEM;
    gpuq_ops_pack_rows(p, n, "x", gpuq_model_in_dim(m), x);
    s->out[0] = y;
    return s->be->iface->mlp(s->be, m, x, (int)rows, y);
}

static void mlp_scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    gpuq_ops_scatter_rows(p, n, s->out[0], gpuq_model_out_dim(p[0].t->model));
}

static void mlp_finish(struct gpuq_task *t) {
    int64_t shape[2] = {t->rows, gpuq_model_out_dim(t->model)};
    gpuq_ops_set_output(t, 0, "y", GPUQ_DTYPE_F32, t->out, 2, shape);
}

const struct gpuq_op_impl gpuq_op_mlp = {mlp_prepare, mlp_run, mlp_scatter, mlp_finish};

/* ---- knn: q [rows, d] against an index; out holds indices then scores ---- */

static int knn_prepare(struct gpuq_ops *o, struct gpuq_task *t) {
    static const char *const names[] = {"q", NULL};
    static const char *const metrics[] = {"cosine", "dot", "l2"};
    struct gpuq_job *job = &t->job;
    if (gpuq_ops_find_model(o, t, GPUQ_MODEL_INDEX) != 0 || gpuq_ops_want_inputs(job, names, 1, 0) != 0)
        return -1;
    const struct gpuq_tensor *q = gpuq_job_input(job, "q");
    if (q->ndim != 2 || q->shape[1] != t->model->dim)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "knn index '%s' wants q [rows, %d]",
                             t->model->name, t->model->dim);
    int64_t k = 10;
    if (gpuq_job_param_i64(job, "k", &k) < 0) return -1;
    if (k < 1 || k > t->model->n_rows || k > 4096)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: k is %lld; want 1 <= k <= %lld "
                             "(the index size, at most 4096)", (long long)k,
                             (long long)(t->model->n_rows < 4096 ? t->model->n_rows : 4096));
    t->metric = GPUQ_METRIC_COSINE;
    struct gpuq_str m = {NULL, 0};
    if (gpuq_job_param_str(job, "metric", &m) < 0) return -1;
    if (m.ptr) {
        int found = -1;
        for (int i = 0; i < 3; i++)
            if (strlen(metrics[i]) == m.len && !memcmp(metrics[i], m.ptr, m.len)) found = i;
        if (found < 0)
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: metric must be cosine, dot or l2");
        t->metric = (enum gpuq_metric)found;
    }
    if (!gpuq_tensor_all_finite(q))
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: q must be finite (no NaN or infinity)");
    if (q->shape[0] * k > GPUQ_MAX_ELEMS / 3)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "knn: too many rows");
    t->k = (int)k;
    t->rows = q->shape[0];
    t->cols = t->model->dim;
    t->out_words = (size_t)(t->rows * k * 3);  /* i64 indices, then f32 scores */
    return 0;
}

static int knn_run(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    int kmax = 0, d = p[0].t->cols;
    for (int i = 0; i < n; i++)
        if (p[i].t->k > kmax) kmax = p[i].t->k;
    float *q = gpuq_ops_buf(s, 0, (size_t)rows * d);
    float *scores = gpuq_ops_buf(s, 1, (size_t)rows * kmax);
    int64_t *idx = (int64_t *)gpuq_ops_buf(s, 2, (size_t)rows * kmax * 2);
    if (!q || !scores || !idx) return GPUQ_BE_NOMEM;
    gpuq_ops_pack_rows(p, n, "q", d, q);
    s->out[0] = idx;
    s->out[1] = scores;
    s->out_cols = kmax;
    struct gpuq_knn args = {p[0].t->model, p[0].t->metric, kmax, q, (int)rows, idx, scores};
    return s->be->iface->knn(s->be, &args);
}

/* Each job keeps the first k of the kmax found for its rows. */
static void knn_scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    const int64_t *idx = s->out[0];
    const float *scores = s->out[1];
    int64_t r = 0, kmax = s->out_cols;
    for (int i = 0; i < n; i++) {
        struct gpuq_task *t = p[i].t;
        int64_t *ti = (int64_t *)t->out;
        float *ts = t->out + (size_t)t->rows * t->k * 2;
        for (int64_t j = 0; j < p[i].rows; j++, r++) {
            memcpy(ti + (p[i].row0 + j) * t->k, idx + r * kmax, (size_t)t->k * sizeof(int64_t));
            memcpy(ts + (p[i].row0 + j) * t->k, scores + r * kmax, (size_t)t->k * sizeof(float));
        }
    }
}

static void knn_finish(struct gpuq_task *t) {
    int64_t shape[2] = {t->rows, t->k};
    gpuq_ops_set_output(t, 0, "indices", GPUQ_DTYPE_I64, t->out, 2, shape);
    gpuq_ops_set_output(t, 1, "scores", GPUQ_DTYPE_F32, t->out + (size_t)t->rows * t->k * 2, 2, shape);
}

const struct gpuq_op_impl gpuq_op_knn = {knn_prepare, knn_run, knn_scatter, knn_finish};
