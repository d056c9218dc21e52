/* score.c -- what the ops on an encoder's head (rerank, classify, embed_sparse) share (ops/score.h). */
#include "ops/score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "ops/embed.h"
#include "ops/twin.h"
#include "text/tokenizer.h"

const struct gpuq_encoder *gpuq_score_model(const struct gpuq_task *t) { return gpuq_model_encoder(t->model); }

int gpuq_score_width(const struct gpuq_encoder *m) { return m->mlm ? m->vocab : m->n_labels; }

/* t->own: token_off [rows + 1] (int64), then ids, then types, room for cap
 * tokens each; grown. NULL (the job failed) when out of memory. */
static int32_t *grow(struct gpuq_task *t, int64_t rows, size_t need, size_t *cap) {
    size_t head = ((size_t)rows + 1) * sizeof(int64_t);
    if (need > *cap) {
        size_t want = need > 2 * *cap ? need : 2 * *cap, used = *cap;
        void *own = realloc(t->own, head + 2 * want * sizeof(int32_t));
        if (!own) {
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "%s: out of memory for tokens", gpuq_op_name(t->job.op));
            return NULL;
        }
        /* the types move up to their new place */
        int32_t *ids = (int32_t *)((char *)own + head);
        memmove(ids + want, ids + used, used * sizeof(int32_t));
        t->own = own;
        *cap = want;
    }
    t->token_off = t->own;
    return (int32_t *)((char *)t->own + head);
}

int gpuq_score_tokenize(struct gpuq_task *t, int64_t rows, gpuq_score_row_fn *row) {
    const struct gpuq_encoder *m = gpuq_score_model(t);
    struct gpuq_score *p = gpuq_task_params(t);
    int64_t max_length = m->max_length;
    if (gpuq_job_param_i64(&t->job, "max_length", &max_length) < 0) return -1;
    if (max_length < 2 || max_length > gpuq_encoder_max_tokens(m))
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "%s: max_length must be 2 to %d",
                             gpuq_op_name(t->job.op), gpuq_encoder_max_tokens(m));
    size_t cap = 0, n = 0;
    int32_t *ids = NULL;
    t->rows = rows;
    for (int64_t r = 0; r < rows; r++) {
        struct gpuq_str a, b = {NULL, 0};
        row(t, r, &a, &b);
        if (a.len > GPUQ_MAX_TEXT_BYTES || b.len > GPUQ_MAX_TEXT_BYTES)
            return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "%s: row %lld has a text of more than %d bytes",
                                 gpuq_op_name(t->job.op), (long long)r, GPUQ_MAX_TEXT_BYTES);
        if (!(ids = grow(t, rows, n + (size_t)max_length, &cap))) return -1;
        int got = gpuq_tok_encode_pair(t->model->tok, a.ptr, a.len, b.ptr, b.len, (int)max_length, ids + n,
                                       ids + cap + n);
        if (got < 0)
            return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "%s: row %lld cannot be tokenized (the "
                                 "tokenizer has no unknown token for it, or max_length leaves no room)",
                                 gpuq_op_name(t->job.op), (long long)r);
        ((int64_t *)t->own)[r] = (int64_t)n;
        n += (size_t)got;
    }
    ((int64_t *)t->own)[rows] = (int64_t)n;
    p->ids = ids;
    p->types = ids + cap;
    return 0;
}

int gpuq_score_pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows, enum gpuq_op op) {
    const struct gpuq_encoder *m = gpuq_score_model(p[0].t);
    int64_t tokens = 0;
    for (int i = 0; i < n; i++) tokens += p[i].t->token_off[p[i].row0 + p[i].rows] - p[i].t->token_off[p[i].row0];
    int32_t *ids = gpuq_ops_buf(s, 0, (size_t)tokens * sizeof(int32_t));
    int32_t *types = gpuq_ops_buf(s, 1, (size_t)tokens * sizeof(int32_t));
    int *lens = gpuq_ops_buf(s, 2, (size_t)rows * sizeof(int));
    float *y = gpuq_ops_buf(s, 3, (size_t)rows * gpuq_score_width(m) * sizeof(float));
    if (!ids || !types || !lens || !y) return GPUQ_BE_NOMEM;
    struct gpuq_embed args = {p[0].t->model, {.ids = ids, .lens = lens, .types = types, .n_seq = (int)rows,
                                              .pooling = GPUQ_POOL_CLS, .out = y}, (int)tokens, 0};
    int64_t at = 0, row = 0;
    for (int i = 0; i < n; i++) {
        const int64_t *off = p[i].t->token_off;
        const struct gpuq_score *ps = gpuq_task_params(p[i].t);
        int64_t from = off[p[i].row0], k = off[p[i].row0 + p[i].rows] - from;
        memcpy(ids + at, ps->ids + from, (size_t)k * sizeof(int32_t));
        memcpy(types + at, ps->types + from, (size_t)k * sizeof(int32_t));
        at += k;
        for (int64_t r = p[i].row0; r < p[i].row0 + p[i].rows; r++, row++) {
            lens[row] = (int)(off[r + 1] - off[r]);
            if (lens[row] > args.max_len) args.max_len = lens[row];
        }
    }
    s->out[0] = y;
    return gpuq_backend_run(s->be, op, rows, &args);
}

void gpuq_score_scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    const float *y = s->out[0];
    size_t labels = (size_t)gpuq_score_width(gpuq_score_model(p[0].t));
    for (int i = 0; i < n; i++) {
        memcpy((float *)p[i].t->out + (size_t)p[i].row0 * labels, y, (size_t)p[i].rows * labels * sizeof(float));
        y += (size_t)p[i].rows * labels;
    }
}

int gpuq_score_cpu(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_embed *a = l->args;
    const struct gpuq_encoder *m = gpuq_model_encoder(a->model);
    float *scratch = gpuq_cpu_scratch(be, 0, gpuq_encoder_scratch_floats(m, a->n_tokens, a->max_len));
    if (!scratch) return GPUQ_BE_NOMEM;
    return gpuq_encoder_forward_cpu(be, m, &a->b, scratch);
}

void gpuq_score_apply(enum gpuq_score_fn f, float *v, int n) {
    if (f == GPUQ_FN_SIGMOID || f == GPUQ_FN_TANH) {
        for (int i = 0; i < n; i++) v[i] = f == GPUQ_FN_TANH ? tanhf(v[i]) : 1.0f / (1.0f + expf(-v[i]));
    } else if (f == GPUQ_FN_SOFTMAX) {
        float top = v[0];
        double sum = 0;
        for (int i = 1; i < n; i++) top = v[i] > top ? v[i] : top;
        for (int i = 0; i < n; i++) sum += exp((double)v[i] - top);
        for (int i = 0; i < n; i++) v[i] = (float)(exp((double)v[i] - top) / sum);
    }
}

void gpuq_score_twin(struct gpuq_twin_run *r) {
    static const int small[] = {1, 40, 9}, large[] = {1, 70, 33, 16, 17, 5, 32};
    static const struct gpuq_encoder_twin one = {64, 2, 1, GPUQ_POOL_CLS, 0, -1, 0, 0, 1, 0},
                                          three = {128, 4, 2, GPUQ_POOL_CLS, 0, 1, 0, 0, 3, 0};
    gpuq_twin_precision(r, 2e-2, 4e-3);     /* as embed's */
    if (!r->large) {
        gpuq_encoder_twin_batch(r, &one, small, 3);
        return;
    }
    gpuq_encoder_twin_batch(r, &one, large, 7);
    gpuq_encoder_twin_batch(r, &three, large, 7);
}

void gpuq_score_sparse_twin(struct gpuq_twin_run *r) {
    static const int lens[] = {1, 40, 9, 70};
    static const struct gpuq_encoder_twin splade = {64, 2, 1, GPUQ_POOL_MAX, 0, -1, 0, 0, 0, 1};
    gpuq_twin_precision(r, 2e-2, 4e-3);
    gpuq_encoder_twin_batch(r, &splade, lens, r->large ? 4 : 2);
    if (!r->large) return;
    /* a vocabulary of 100k with the head's own decoder: CUDA's logits take
     * several blocks of whole sequences (about 335 tokens each) */
    static const int many[] = {200, 150, 9, 70};
    static const struct gpuq_encoder_twin wide = {64, 2, 1, GPUQ_POOL_MAX, 0, -1, 0, 0, 0, 100000};
    gpuq_encoder_twin_batch(r, &wide, many, 4);
}
