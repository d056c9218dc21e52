/* knn.c -- the knn op: q [rows, d] against a loaded index; jobs on the
 * same index and metric share a batch, which runs with the largest k among
 * them; each job keeps its own first k. A query of packed bits (u8, or i8
 * as sentence-transformers' "binary") is searched by Hamming distance, and
 * a float one with `rescore` by Hamming first, then its nearest rescored:
 * both on the CPU (ops/knn_binary.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "models/family.h"
#include "models/index/bits.h"
#include "ops/knn.h"
#include "ops/op.h"
#include "ops/twin.h"

enum mode { MODE_FLOAT, MODE_HAMMING, MODE_RESCORE };

struct params {
    int k;
    enum gpuq_metric metric;
    enum mode mode;
    int64_t cand;       /* rescore: the Hamming candidates a row rescores */
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "knn params fit a task");

static const struct params *P(const struct gpuq_task *t) { return gpuq_task_params(t); }

#define MAX_RESCORE 1000

/* metric and rescore, by the query's kind: a packed query is ranked by
 * Hamming distance alone, so it takes neither. */
static int prepare_mode(struct gpuq_task *t, int packed) {
    static const char *const metrics[] = {"cosine", "dot", "l2"};
    struct gpuq_job *job = &t->job;
    struct params *p = gpuq_task_params(t);
    struct gpuq_str m = {NULL, 0};
    int64_t rescore = 0;
    int has_rescore = gpuq_job_param_i64(job, "rescore", &rescore);
    if (has_rescore < 0 || gpuq_job_param_str(job, "metric", &m) < 0) return -1;
    if (packed && m.ptr)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: a binary q is ranked by Hamming "
                             "distance; metric applies to rescore, which takes q as floats");
    if (packed && has_rescore)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: rescore needs the float query: send "
                             "q as floats (the worker searches its sign bits first)");
    if (has_rescore && (rescore < 1 || rescore > MAX_RESCORE))
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: rescore is %lld; want 1 <= rescore "
                             "<= %d", (long long)rescore, MAX_RESCORE);
    p->metric = GPUQ_METRIC_COSINE;
    if (m.ptr) {
        int found = -1;
        for (int i = 0; i < 3; i++)
            if (strlen(metrics[i]) == m.len && !memcmp(metrics[i], m.ptr, m.len)) found = i;
        if (found < 0)
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: metric must be cosine, dot or l2");
        p->metric = (enum gpuq_metric)found;
    }
    p->mode = packed ? MODE_HAMMING : has_rescore ? MODE_RESCORE : MODE_FLOAT;
    p->cand = rescore * p->k < gpuq_model_index(t->model)->n_rows ? rescore * p->k : gpuq_model_index(t->model)->n_rows;
    return 0;
}

static int prepare(struct gpuq_task *t) {
    struct gpuq_job *job = &t->job;
    struct params *p = gpuq_task_params(t);
    const struct gpuq_tensor *q = gpuq_job_input(job, "q");
    int packed = q->dtype == GPUQ_DTYPE_U8 || q->dtype == GPUQ_DTYPE_I8;
    int width = gpuq_index_bits_width(gpuq_model_in_dim(t->model));
    if (packed && (q->ndim != 2 || q->shape[1] != width))
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "knn index '%s' wants a binary q [rows, %d] "
                             "(%d components' packed bits)", t->model->name, width, gpuq_model_in_dim(t->model));
    if (!packed && (q->ndim != 2 || q->shape[1] != gpuq_model_in_dim(t->model)))
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "knn index '%s' wants q [rows, %d]",
                             t->model->name, gpuq_model_in_dim(t->model));
    int64_t k = 10;
    if (gpuq_job_param_i64(job, "k", &k) < 0) return -1;
    if (k < 1 || k > gpuq_model_index(t->model)->n_rows || k > 4096)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: k is %lld; want 1 <= k <= %lld "
                             "(the index size, at most 4096)", (long long)k,
                             (long long)(gpuq_model_index(t->model)->n_rows < 4096 ? gpuq_model_index(t->model)->n_rows : 4096));
    p->k = (int)k;
    if (prepare_mode(t, packed) != 0) return -1;
    if (!packed && !gpuq_tensor_all_finite(q))
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "knn: q must be finite (no NaN or infinity)");
    if (q->shape[0] * k > GPUQ_MAX_ELEMS / 3)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "knn: too many rows");
    t->rows = q->shape[0];
    return 0;
}

/* i64 indices, then f32 scores */
static size_t out_bytes(const struct gpuq_task *t) {
    return (size_t)t->rows * P(t)->k * (sizeof(int64_t) + sizeof(float));
}

static int compare(const struct gpuq_task *a, const struct gpuq_task *b) {
    if (P(a)->mode != P(b)->mode) return (int)P(a)->mode - (int)P(b)->mode;
    return (int)P(a)->metric - (int)P(b)->metric;
}

/* The binary paths have no device kernel. */
static int cpu_only(const struct gpuq_task *t) { return P(t)->mode != MODE_FLOAT; }

static float *scores_of(const struct gpuq_task *t) {
    return (void *)((char *)t->out + (size_t)t->rows * P(t)->k * sizeof(int64_t));
}

/* A binary batch: each row's packed bits (from the bytes sent, or the sign
 * bits of its floats) at the index's stride, and each row's candidates. */
static int pack_binary(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows,
                       struct gpuq_knn *args) {
    const struct gpuq_index *ix = gpuq_model_index(p[0].t->model);
    int d = ix->dim, width = gpuq_index_bits_width(d), stride = ix->bits_stride;
    uint8_t *bits = gpuq_ops_buf(s, 3, (size_t)rows * stride);
    int64_t *cand = gpuq_ops_buf(s, 4, (size_t)rows * sizeof(int64_t));
    if (!bits || !cand) return GPUQ_BE_NOMEM;
    uint8_t tail = d % 8 ? (uint8_t)(0xffu << (8 - d % 8)) : 0xff;
    const float *qf = args->q;
    for (int i = 0, r = 0; i < n; i++) {
        const struct gpuq_tensor *q = gpuq_job_input(&p[i].t->job, "q");
        for (int64_t j = 0; j < p[i].rows; j++, r++) {
            uint8_t *row = bits + (size_t)r * stride;
            cand[r] = P(p[i].t)->cand;
            if (P(p[i].t)->mode == MODE_RESCORE) {
                gpuq_index_bits_pack(qf + (size_t)r * d, d, row, stride);
                continue;
            }
            const uint8_t *src = (const uint8_t *)q->data + (p[i].row0 + j) * width;
            uint8_t flip = q->dtype == GPUQ_DTYPE_I8 ? 0x80 : 0;   /* i8 holds the byte less 128 */
            memset(row, 0, (size_t)stride);
            for (int b = 0; b < width; b++) row[b] = src[b] ^ flip;
            row[width - 1] &= tail;     /* bits past d are ignored */
        }
    }
    args->bits = bits;
    args->cand = P(p[0].t)->mode == MODE_RESCORE ? cand : NULL;
    return 0;
}

static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    int kmax = 0, d = gpuq_model_in_dim(p[0].t->model);
    enum mode mode = P(p[0].t)->mode;
    for (int i = 0; i < n; i++)
        if (P(p[i].t)->k > kmax) kmax = P(p[i].t)->k;
    float *q = mode == MODE_HAMMING ? NULL : gpuq_ops_buf(s, 0, (size_t)rows * d * sizeof(float));
    float *scores = gpuq_ops_buf(s, 1, (size_t)rows * kmax * sizeof(float));
    int64_t *idx = gpuq_ops_buf(s, 2, (size_t)rows * kmax * sizeof(int64_t));
    if ((mode != MODE_HAMMING && !q) || !scores || !idx) return GPUQ_BE_NOMEM;
    if (q) gpuq_ops_pack_rows(p, n, "q", d, q);
    s->out[0] = idx;
    s->out[1] = scores;
    s->out_cols = kmax;
    struct gpuq_knn args = {p[0].t->model, P(p[0].t)->metric, kmax, q, (int)rows, idx, scores, NULL, NULL};
    if (mode != MODE_FLOAT) {
        int rc = pack_binary(s, p, n, rows, &args);
        if (rc) return rc;
    }
    return gpuq_backend_run(s->be, GPUQ_OP_KNN, rows, &args);
}

/* Each job keeps the first k of the kmax found for its rows. */
static void scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    const int64_t *idx = s->out[0];
    const float *scores = s->out[1];
    int64_t r = 0, kmax = s->out_cols;
    for (int i = 0; i < n; i++) {
        struct gpuq_task *t = p[i].t;
        int k = P(t)->k;
        int64_t *ti = t->out;
        float *ts = scores_of(t);
        for (int64_t j = 0; j < p[i].rows; j++, r++) {
            memcpy(ti + (p[i].row0 + j) * k, idx + r * kmax, (size_t)k * sizeof(int64_t));
            memcpy(ts + (p[i].row0 + j) * k, scores + r * kmax, (size_t)k * sizeof(float));
        }
    }
}

static void finish(struct gpuq_task *t) {
    int64_t shape[2] = {t->rows, P(t)->k};
    gpuq_ops_set_output(t, 0, "indices", GPUQ_DTYPE_I64, t->out, 2, shape);
    gpuq_ops_set_output(t, 1, "scores", GPUQ_DTYPE_F32, scores_of(t), 2, shape);
}

/* ---- the CPU kernel: blocked GEMM against the index, then a running
 * top-k per row ---- */

#define KNN_BLOCK 4096

/* Is (s1, i1) a better hit than (s2, i2)? Higher score first, or lower for
 * l2; ties to the lower index, so results never depend on batching. */
static int better(int lowest, float s1, int64_t i1, float s2, int64_t i2) {
    if (s1 != s2) return lowest ? s1 < s2 : s1 > s2;
    return i1 < i2;
}

/* The k kept hits of a row form a heap whose root is the worst of them. */
static void sift_down(int lowest, float *s, int64_t *ix, int k, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && better(lowest, s[w], ix[w], s[l], ix[l])) w = l;
        if (r < k && better(lowest, s[w], ix[w], s[r], ix[r])) w = r;
        if (w == i) return;
        float ts = s[i];
        int64_t ti = ix[i];
        s[i] = s[w], ix[i] = ix[w];
        s[w] = ts, ix[w] = ti;
        i = w;
    }
}

static int cpu(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_knn *q = l->args;
    if (q->bits) return gpuq_knn_binary_cpu(be, q);
    const struct gpuq_index *ix = gpuq_model_index(q->index);
    int d = ix->dim, k = q->k, lowest = q->metric == GPUQ_METRIC_L2;
    int64_t n = ix->n_rows;
    /* scratch: queries [rows, d] | a block of scores [rows, KNN_BLOCK] | |q|^2 [rows] */
    float *qn = gpuq_cpu_scratch(be, 0, (size_t)q->rows * (d + KNN_BLOCK + 1));
    if (!qn) return GPUQ_BE_FAILED;
    float *block = qn + (size_t)q->rows * d, *qnorm2 = block + (size_t)q->rows * KNN_BLOCK;
    memcpy(qn, q->q, (size_t)q->rows * d * sizeof(float));
    for (int r = 0; r < q->rows; r++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)qn[r * d + j] * qn[r * d + j];
        qnorm2[r] = (float)s;
        if (q->metric == GPUQ_METRIC_COSINE && s > 0)
            for (int j = 0; j < d; j++) qn[r * d + j] /= (float)sqrt(s);
    }
    /* heaps start full of "worst possible" hits */
    for (int64_t i = 0; i < (int64_t)q->rows * k; i++) {
        q->scores[i] = lowest ? INFINITY : -INFINITY;
        q->indices[i] = INT64_MAX;
    }
    for (int64_t b0 = 0; b0 < n; b0 += KNN_BLOCK) {
        int nb = (int)(n - b0 < KNN_BLOCK ? n - b0 : KNN_BLOCK);
        int rc = gpuq_cpu_dense(be, qn, NULL, q->rows, d, ix->embeddings + b0 * d, NULL, nb, NULL,
                                GPUQ_ACT_NONE, block);
        if (rc) return rc;
        for (int r = 0; r < q->rows; r++) {
            float *hs = q->scores + (size_t)r * k;
            int64_t *hi = q->indices + (size_t)r * k;
            for (int j = 0; j < nb; j++) {
                float dot = block[(size_t)r * nb + j], s = dot;
                int64_t id = b0 + j;
                if (q->metric == GPUQ_METRIC_COSINE)
                    s = ix->norms[id] > 0 ? dot / ix->norms[id] : 0.0f;
                else if (q->metric == GPUQ_METRIC_L2)
                    s = fmaxf(qnorm2[r] + ix->norms[id] * ix->norms[id] - 2.0f * dot, 0.0f);
                if (better(lowest, s, id, hs[0], hi[0])) {
                    hs[0] = s, hi[0] = id;
                    sift_down(lowest, hs, hi, k, 0);
                }
            }
        }
    }
    /* heap -> best first: repeatedly move the worst to the end */
    for (int r = 0; r < q->rows; r++) {
        float *hs = q->scores + (size_t)r * k;
        int64_t *hi = q->indices + (size_t)r * k;
        for (int end = k - 1; end > 0; end--) {
            float ts = hs[0];
            int64_t ti = hi[0];
            hs[0] = hs[end], hi[0] = hi[end];
            hs[end] = ts, hi[end] = ti;
            sift_down(lowest, hs, hi, end, 0);
        }
    }
    return 0;
}

/* ---- twin: every metric, k up to 4096, over several index blocks; a
 * query row beyond f32 sums of squares ---- */

static void twin(struct gpuq_twin_run *r) {
    int n = r->large ? 40000 : 20000, d = r->large ? 64 : 8, rows = r->large ? 33 : 3;
    static const int ks_small[] = {1, 20}, ks_large[] = {1, 100, 4096};
    static const struct gpuq_family arch = {.name = "twin", .arch = GPUQ_ARCH_INDEX};
    struct gpuq_index ix = {.n_rows = n, .dim = d};
    struct gpuq_model model = {.name = "twin", .family = &arch, .impl = &ix};
    ix.embeddings = gpuq_twin_floats(r, (size_t)n * d);
    ix.norms = malloc((size_t)n * sizeof(float));
    float *q = gpuq_twin_floats(r, (size_t)rows * d), *huge = malloc((size_t)rows * d * sizeof(float));
    size_t most = (size_t)rows * 4096;
    float *s1 = malloc(most * sizeof(float)), *s2 = malloc(most * sizeof(float));
    int64_t *i1 = malloc(most * sizeof(int64_t)), *i2 = malloc(most * sizeof(int64_t));
    if (!ix.embeddings || !ix.norms || !q || !huge || !s1 || !s2 || !i1 || !i2) goto out;
    /* cosine also meets a row whose |q|^2 overflows f32 (components past 1.8e19) */
    for (size_t j = 0; j < (size_t)rows * d; j++) huge[j] = j < (size_t)d ? q[j] * 4e19f : q[j];
    for (int e = 0; e < n; e++) {
        double n2 = 0;
        for (int j = 0; j < d; j++) n2 += (double)ix.embeddings[(size_t)e * d + j] * ix.embeddings[(size_t)e * d + j];
        ix.norms[e] = (float)sqrt(n2);
    }
    if (gpuq_twin_ran(r, r->be->iface->model_load(r->be, &model)) != 0) goto out;
    for (int ki = 0; ki < (r->large ? 3 : 2); ki++)
        for (int metric = GPUQ_METRIC_COSINE; metric <= GPUQ_METRIC_L2; metric++) {
            int k = r->large ? ks_large[ki] : ks_small[ki];
            const float *qm = metric == GPUQ_METRIC_COSINE ? huge : q;
            struct gpuq_knn a = {&model, (enum gpuq_metric)metric, k, qm, rows, i1, s1, NULL, NULL}, b = a;
            b.indices = i2, b.scores = s2;
            if (gpuq_twin_both(r, rows, &a, &b) != 0) break;
            /* near-equal scores may swap places; each rank's score must match */
            for (size_t j = 0; j < (size_t)rows * k; j++)
                if (i1[j] < 0 || i1[j] >= n) gpuq_twin_note(r, INFINITY);
            gpuq_twin_note(r, gpuq_twin_err(s1, s2, (size_t)rows * k, 0));
        }
    r->be->iface->model_free(r->be, &model);
out:
    free(ix.embeddings), free(ix.norms), free(q), free(huge), free(s1), free(s2), free(i1), free(i2);
}

static const char *const inputs[] = {"q", NULL};
static const char *const params[] = {"k", "metric", "rescore", NULL};

const struct gpuq_op_desc gpuq_op_knn = {
    .inputs = inputs, .params = params, .required = 1, .bits = 1, .needs = 1 + GPUQ_CAP_INDEX,
    .prepare = prepare, .out_bytes = out_bytes, .compare = compare, .cpu_only = cpu_only, .pack = pack,
    .scatter = scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_knn)},
    .reserve = {[GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_knn_reserve)},
    .twin = twin, .tol = 1e-4,
};
