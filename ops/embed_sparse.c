/* embed_sparse.c -- the embed_sparse op: texts through a masked-LM head
 * (SPLADE folders) into sparse vectors over the vocabulary: per text, the
 * max over its tokens of log(1 + ReLU(logits)), as sentence-transformers'
 * SpladePooling. Outputs the nonzeros as ragged rows: indices i32 [nnz]
 * (increasing within a row), values f32 [nnz], offsets i64 [rows + 1]; with
 * top_k, each row keeps its k largest; with return_tokens (and top_k),
 * tokens [nnz]: the vocabulary's text for each index. The head is the
 * encoder's on each backend (kernels/encoder_cpu.c, kernels/encoder.cu). */
#include <stdlib.h>
#include <string.h>

#include "ops/score.h"
#include "text/tokenizer.h"

struct params {
    struct gpuq_score s;
    int64_t top_k;              /* 0: every nonzero */
    int return_tokens;
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "embed_sparse params fit a task");

static const struct params *params_of(const struct gpuq_task *t) { return gpuq_task_params(t); }

static void row(const struct gpuq_task *t, int64_t r, struct gpuq_str *a, struct gpuq_str *b) {
    (void)b;
    *a = gpuq_input_text(gpuq_job_find(&t->job, "text"), r);
}

static int prepare(struct gpuq_task *t) {
    const struct gpuq_input *text = gpuq_job_find(&t->job, "text");
    struct params *p = gpuq_task_params(t);
    int vocab = gpuq_score_model(t)->vocab;
    t->dtype = GPUQ_DTYPE_F32;
    if (!text->text || text->pairs)
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed_sparse: text is a str or an array of str");
    if (gpuq_job_param_i64(&t->job, "top_k", &p->top_k) < 0 ||
        gpuq_job_param_bool(&t->job, "return_tokens", &p->return_tokens) < 0)
        return -1;
    if (p->top_k < 0 || p->top_k > vocab)
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed_sparse: top_k must be 1 to %d", vocab);
    if (p->return_tokens && !p->top_k)
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed_sparse: return_tokens needs top_k");
    return gpuq_score_tokenize(t, text->n_texts, row);
}

struct entry {
    float v;
    int32_t i;
};

/* Where the outputs sit in t->out (base; NULL: only the size): each row
 * dense [vocab] (then the values packed in place at the front), the
 * offsets, the indices (vocab, or top_k, a row at most), the tokens, and
 * room for one row's entries while finish packs it; each 8-byte aligned. */
struct layout {
    float *values;
    int64_t *offsets;
    int32_t *indices;
    struct gpuq_str *tokens;
    struct entry *scratch;
    size_t bytes;
};

static struct layout layout_of(const struct gpuq_task *t, void *base) {
    const struct params *p = params_of(t);
    size_t rows = (size_t)t->rows, vocab = (size_t)gpuq_score_model(t)->vocab, most = p->top_k ? (size_t)p->top_k : vocab;
    size_t sizes[5] = {rows * vocab * sizeof(float), (rows + 1) * sizeof(int64_t), rows * most * sizeof(int32_t),
                       p->return_tokens ? rows * most * sizeof(struct gpuq_str) : 0, vocab * sizeof(struct entry)};
    char *at[5];
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
        at[i] = (char *)base + off;
        off = (off + sizes[i] + 7) & ~(size_t)7;
    }
    return (struct layout){(float *)(void *)at[0], (int64_t *)(void *)at[1], (int32_t *)(void *)at[2],
                           (struct gpuq_str *)(void *)at[3], (struct entry *)(void *)at[4], off};
}

static size_t out_bytes(const struct gpuq_task *t) { return layout_of(t, NULL).bytes; }

static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    return gpuq_score_pack(s, p, n, rows, GPUQ_OP_EMBED_SPARSE);
}

static int by_value(const void *x, const void *y) {
    const struct entry *a = x, *b = y;
    return a->v != b->v ? (a->v > b->v ? -1 : 1) : (a->i < b->i ? -1 : 1);
}

static int by_index(const void *x, const void *y) {
    const struct entry *a = x, *b = y;
    return a->i < b->i ? -1 : 1;
}

/* A row's nonzeros, its k largest when there are more (ties to the lower
 * index), in index order: into e; returns how many. */
static int64_t nonzeros(const float *dense, int vocab, int64_t k, struct entry *e) {
    int64_t n = 0;
    for (int j = 0; j < vocab; j++)
        if (dense[j] > 0) e[n++] = (struct entry){dense[j], j};
    if (k && n > k) {
        qsort(e, (size_t)n, sizeof(*e), by_value);
        n = k;
        qsort(e, (size_t)n, sizeof(*e), by_index);
    }
    return n;
}

static void finish(struct gpuq_task *t) {
    const struct params *p = params_of(t);
    int vocab = gpuq_score_model(t)->vocab;
    int64_t rows = t->rows, nnz = 0;
    struct layout o = layout_of(t, t->out);
    float *values = o.values;
    int64_t *offsets = o.offsets;
    int32_t *indices = o.indices;
    struct gpuq_str *tokens = o.tokens;
    struct entry *e = o.scratch;
    if (!gpuq_ops_finite(t, "embed_sparse", values, (size_t)rows * vocab)) return;
    /* packed in place: row r's values land at or before where its dense row starts */
    for (int64_t r = 0; r < rows; r++) {
        int64_t n = nonzeros(values + r * vocab, vocab, p->top_k, e);
        offsets[r] = nnz;
        for (int64_t i = 0; i < n; i++) values[nnz + i] = e[i].v, indices[nnz + i] = e[i].i;
        nnz += n;
    }
    offsets[rows] = nnz;
    int64_t shape[1] = {nnz}, oshape[1] = {rows + 1};
    gpuq_ops_set_output(t, 0, "indices", GPUQ_DTYPE_I32, indices, 1, shape);
    gpuq_ops_set_output(t, 1, "values", GPUQ_DTYPE_F32, values, 1, shape);
    gpuq_ops_set_output(t, 2, "offsets", GPUQ_DTYPE_I64, offsets, 1, oshape);
    if (p->return_tokens) {
        for (int64_t i = 0; i < nnz; i++) {
            const char *s = gpuq_tok_token(t->model->tok, indices[i]);
            tokens[i] = (struct gpuq_str){s ? s : "", s ? strlen(s) : 0};
        }
        gpuq_ops_set_texts(t, 3, "tokens", tokens, nnz);
    }
}

static const char *const inputs[] = {"text", NULL};
static const char *const params[] = {"top_k", "return_tokens", "max_length", NULL};

const struct gpuq_op_desc gpuq_op_embed_sparse = {
    .inputs = inputs, .params = params, .required = 1, .text = 1, .needs = 1 + GPUQ_CAP_SPARSE,
    .prepare = prepare, .out_bytes = out_bytes, .pack = pack, .scatter = gpuq_score_scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = gpuq_score_cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_embed_sparse)},
    .twin = gpuq_score_sparse_twin, .tol = 1e-5,
};
