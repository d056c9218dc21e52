/* classify.c -- the classify op: texts (or pairs, for NLI-style models)
 * through a sequence classifier. Outputs scores f32 [rows, labels] after
 * `function` (softmax, sigmoid or none; the folder's problem_type decides
 * by default), the label names once (labels [labels], from id2label), and
 * with top_k k, top i32 [rows, k]: label indices, highest first, ties to the
 * lower index. Rows of many jobs share token-budget batches. */
#include <string.h>

#include "ops/score.h"

struct params {
    struct gpuq_score s;
    int64_t top_k;
    int fn;                     /* enum gpuq_score_fn */
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "classify params fit a task");

static const struct params *params_of(const struct gpuq_task *t) { return gpuq_task_params(t); }

static void row(const struct gpuq_task *t, int64_t r, struct gpuq_str *a, struct gpuq_str *b) {
    const struct gpuq_input *in = gpuq_job_find(&t->job, "text");
    if (in) {
        *a = gpuq_input_text(in, r);
        return;
    }
    in = gpuq_job_find(&t->job, "pairs");
    *a = gpuq_input_pair(in, r, 0);
    *b = gpuq_input_pair(in, r, 1);
}

static int bad(struct gpuq_task *t, const char *what) {
    return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "classify: %s", what);
}

static int prepare(struct gpuq_task *t) {
    const struct gpuq_input *text = gpuq_job_find(&t->job, "text"), *pairs = gpuq_job_find(&t->job, "pairs");
    const struct gpuq_encoder *m = gpuq_score_model(t);
    struct params *p = gpuq_task_params(t);
    struct gpuq_str fn = {NULL, 0};
    t->dtype = GPUQ_DTYPE_F32;
    if (!text == !pairs) return bad(t, "give input 'text' or 'pairs', not both");
    if ((text && (!text->text || text->pairs)) || (pairs && (!pairs->text || !pairs->pairs)))
        return bad(t, "text is a str or an array of str, pairs an array of [str, str]");
    p->fn = m->classify_fn;
    if (gpuq_job_param_i64(&t->job, "top_k", &p->top_k) < 0 || gpuq_job_param_str(&t->job, "function", &fn) < 0)
        return -1;
    if (fn.ptr) {
        static const char *const names[] = {"none", "sigmoid", "softmax"};
        p->fn = -1;
        for (int i = 0; i < 3; i++)
            if (strlen(names[i]) == fn.len && !memcmp(names[i], fn.ptr, fn.len)) p->fn = i;
        if (p->fn < 0) return bad(t, "function must be softmax, sigmoid or none");
    }
    if (p->top_k < 0 || p->top_k > m->n_labels)
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "classify: top_k must be 1 to %d (the labels)",
                             m->n_labels);
    return gpuq_score_tokenize(t, text ? text->n_texts : pairs->n_texts, row);
}

/* The logits [rows, labels] (then the scores in place), top [rows, k],
 * the labels' names. */
static size_t out_bytes(const struct gpuq_task *t) {
    size_t labels = (size_t)gpuq_score_model(t)->n_labels;
    return (size_t)t->rows * labels * sizeof(float) + (size_t)t->rows * (size_t)params_of(t)->top_k * sizeof(int32_t) +
           (labels + 1) * sizeof(struct gpuq_str);
}

static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    return gpuq_score_pack(s, p, n, rows, GPUQ_OP_CLASSIFY);
}

static void finish(struct gpuq_task *t) {
    const struct params *p = params_of(t);
    const struct gpuq_encoder *m = gpuq_score_model(t);
    int labels = m->n_labels;
    float *scores = t->out;
    int32_t *top = (int32_t *)(scores + t->rows * labels);
    if (!gpuq_ops_finite(t, "classify", scores, (size_t)t->rows * labels)) return;
    for (int64_t r = 0; r < t->rows; r++) {
        float *v = scores + r * labels;
        gpuq_score_apply((enum gpuq_score_fn)p->fn, v, labels);
        for (int k = 0; k < p->top_k; k++) {    /* the k-th best not yet taken */
            int best = -1;
            for (int j = 0; j < labels; j++) {
                int taken = 0;
                for (int i = 0; i < k; i++) taken |= top[r * p->top_k + i] == j;
                if (!taken && (best < 0 || v[j] > v[best])) best = j;
            }
            top[r * p->top_k + k] = best;
        }
    }
    uintptr_t at = (uintptr_t)(top + t->rows * p->top_k);
    at = (at + sizeof(struct gpuq_str) - 1) & ~(uintptr_t)(sizeof(struct gpuq_str) - 1);
    struct gpuq_str *names = (struct gpuq_str *)at;
    for (int j = 0; j < labels; j++) names[j] = (struct gpuq_str){m->labels[j], strlen(m->labels[j])};
    int64_t shape[2] = {t->rows, labels}, kshape[2] = {t->rows, p->top_k};
    gpuq_ops_set_output(t, 0, "scores", GPUQ_DTYPE_F32, scores, 2, shape);
    gpuq_ops_set_texts(t, 1, "labels", names, labels);
    if (p->top_k) gpuq_ops_set_output(t, 2, "top", GPUQ_DTYPE_I32, top, 2, kshape);
}

static const char *const inputs[] = {"text", "pairs", NULL};
static const char *const params[] = {"top_k", "function", "max_length", NULL};

const struct gpuq_op_desc gpuq_op_classify = {
    .inputs = inputs, .params = params, .text = 1, .needs = 1 + GPUQ_CAP_SCORE,
    .prepare = prepare, .out_bytes = out_bytes, .pack = pack, .scatter = gpuq_score_scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = gpuq_score_cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_classify)},
    .twin = gpuq_score_twin, .tol = 1e-5,
};
