/* rerank.c -- the rerank op: a query against documents (or given pairs)
 * through a cross-encoder (a one-label sequence classifier). Each (query,
 * document) is one row, so one job's documents spread over batches and
 * share them with other jobs' rows. Outputs scores f32 [n] in the
 * documents' order, after the folder's activation (sentence-transformers'
 * CrossEncoder.predict) unless raw_scores; order i32 [top_n], highest
 * first, ties to the lower index; with return_text, texts [top_n]: the
 * documents in that order. */
#include <stdlib.h>
#include <string.h>

#include "ops/score.h"

struct params {
    struct gpuq_score s;
    int64_t top_n;
    int raw, return_text;
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "rerank params fit a task");

static const struct params *params_of(const struct gpuq_task *t) { return gpuq_task_params(t); }

static void row(const struct gpuq_task *t, int64_t r, struct gpuq_str *a, struct gpuq_str *b) {
    const struct gpuq_input *pairs = gpuq_job_find(&t->job, "pairs");
    if (pairs) {
        *a = gpuq_input_pair(pairs, r, 0);
        *b = gpuq_input_pair(pairs, r, 1);
        return;
    }
    *a = gpuq_input_text(gpuq_job_find(&t->job, "query"), 0);
    *b = gpuq_input_text(gpuq_job_find(&t->job, "documents"), r);
}

static int bad(struct gpuq_task *t, const char *what) {
    return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "rerank: %s", what);
}

static int prepare(struct gpuq_task *t) {
    const struct gpuq_input *q = gpuq_job_find(&t->job, "query"), *d = gpuq_job_find(&t->job, "documents"),
                            *pairs = gpuq_job_find(&t->job, "pairs");
    struct params *p = gpuq_task_params(t);
    const struct gpuq_encoder *m = gpuq_score_model(t);
    t->dtype = GPUQ_DTYPE_F32;
    if (m->n_labels != 1)
        return gpuq_job_fail(&t->job, GPUQ_ERR_UNKNOWN_MODEL, "rerank: model '%s' has %d labels; rerank takes a "
                             "one-label cross-encoder (classify serves this one)", t->model->name, m->n_labels);
    if (pairs ? q || d : !q || !d) return bad(t, "give query and documents, or pairs");
    if ((pairs && (!pairs->text || !pairs->pairs)) || (q && (!q->text || q->pairs || q->text->type != MSGPACK_OBJECT_STR)) ||
        (d && (!d->text || d->pairs)))
        return bad(t, "query is a str, documents an array of str, pairs an array of [str, str]");
    int64_t rows = pairs ? pairs->n_texts : d->n_texts;
    p->top_n = rows;
    if (gpuq_job_param_i64(&t->job, "top_n", &p->top_n) < 0 || gpuq_job_param_bool(&t->job, "raw_scores", &p->raw) < 0 ||
        gpuq_job_param_bool(&t->job, "return_text", &p->return_text) < 0)
        return -1;
    if (p->top_n < 1) return bad(t, "top_n must be at least 1");
    if (p->top_n > rows) p->top_n = rows;
    return gpuq_score_tokenize(t, rows, row);
}

/* The logits [rows], then scores [rows], order [top_n], texts [top_n]. */
static size_t out_bytes(const struct gpuq_task *t) {
    const struct params *p = params_of(t);
    return (size_t)t->rows * 2 * sizeof(float) + (size_t)p->top_n * sizeof(int32_t) +
           (p->return_text ? (size_t)p->top_n * sizeof(struct gpuq_str) + sizeof(struct gpuq_str) : 0);
}

static const float *order_scores;

static int by_score(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    if (order_scores[a] != order_scores[b]) return order_scores[a] > order_scores[b] ? -1 : 1;
    return a < b ? -1 : 1;
}

static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    return gpuq_score_pack(s, p, n, rows, GPUQ_OP_RERANK);
}

static void finish(struct gpuq_task *t) {
    const struct params *p = params_of(t);
    const struct gpuq_encoder *m = gpuq_score_model(t);
    float *logits = t->out, *scores = logits + t->rows;
    int32_t *order = (int32_t *)(scores + t->rows);
    if (!gpuq_ops_finite(t, "rerank", logits, (size_t)t->rows)) return;
    memcpy(scores, logits, (size_t)t->rows * sizeof(float));
    if (!p->raw) gpuq_score_apply(m->rerank_fn, scores, (int)t->rows);
    /* the logits' room, free now, sorts every row's index; order keeps the first top_n */
    int32_t *all = (int32_t *)(void *)logits;
    for (int64_t r = 0; r < t->rows; r++) all[r] = (int32_t)r;
    order_scores = scores;      /* the worker's one thread finishes tasks */
    qsort(all, (size_t)t->rows, sizeof(*all), by_score);
    memmove(order, all, (size_t)p->top_n * sizeof(*order));
    int64_t n[1] = {t->rows}, k[1] = {p->top_n};
    gpuq_ops_set_output(t, 0, "scores", GPUQ_DTYPE_F32, scores, 1, n);
    gpuq_ops_set_output(t, 1, "order", GPUQ_DTYPE_I32, order, 1, k);
    if (p->return_text) {
        uintptr_t at = ((uintptr_t)(order + p->top_n) + sizeof(struct gpuq_str) - 1) & ~(uintptr_t)(sizeof(struct gpuq_str) - 1);
        struct gpuq_str *texts = (struct gpuq_str *)at;
        for (int64_t i = 0; i < p->top_n; i++) {
            struct gpuq_str a, b;
            row(t, order[i], &a, &b);
            texts[i] = b;
        }
        gpuq_ops_set_texts(t, 2, "texts", texts, p->top_n);
    }
}

static const char *const inputs[] = {"query", "documents", "pairs", NULL};
static const char *const params[] = {"top_n", "raw_scores", "return_text", "max_length", NULL};

const struct gpuq_op_desc gpuq_op_rerank = {
    .inputs = inputs, .params = params, .text = 1, .needs = 1 + GPUQ_CAP_SCORE,
    .prepare = prepare, .out_bytes = out_bytes, .pack = pack, .scatter = gpuq_score_scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = gpuq_score_cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_rerank)},
    .twin = gpuq_score_twin, .tol = 1e-5,
};
