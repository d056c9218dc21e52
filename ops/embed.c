/* embed.c -- the embed op: sentence embeddings from a text encoder
 * (models/encoder/encoder.h, of any family) or a decoder embedder
 * (models/decoder/decoder.h), through its sentence-transformers modules
 * (gpuq_model_text). Input `text` (a str or an array of str, one row each)
 * is tokenized at admission, so the scheduler batches by tokens; or
 * pre-tokenized `input_ids` [rows, seq], right-padded, with an optional
 * `attention_mask`. Outputs y [rows, the encoder's width] and tokens i32 [rows].
 * Jobs on one model with the same pooling and normalization share a
 * padding-free batch: their tokens back to back. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/decoder.h"
#include "ops/embed.h"
#include "ops/embed_chunk.h"
#include "ops/embed_out.h"
#include "ops/op.h"
#include "ops/twin.h"
#include "text/tokenizer.h"

struct params {
    int pooling, normalize;
    int32_t *ids;               /* the rows' tokens back to back, in t->own after token_off */
    struct gpuq_embed_out out;  /* what y becomes: dimensions and dtype */
    const char *prompt;         /* prepended to every text (the job's or the folder's), or NULL */
    size_t prompt_len;
    int truncate;               /* truncate (else too long is an error) */
    int side;                   /* 0: as the folder truncates; 1: from the right; 2: the left */
    struct gpuq_embed_chunk chunk;      /* long texts in windows (ops/embed_chunk.h) */
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "embed params fit a task");

static const struct params *params_of(const struct gpuq_task *t) { return gpuq_task_params(t); }

static int bad(struct gpuq_task *t, const char *what) {
    return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: %s", what);
}

/* The prompt: the job's own, or one of the folder's by name, or the
 * folder's default. */
static int read_prompt(struct gpuq_task *t, struct params *p) {
    const struct gpuq_encoder *m = gpuq_model_text(t->model);
    struct gpuq_str text = {NULL, 0}, name = {NULL, 0};
    if (gpuq_job_param_str(&t->job, "prompt", &text) < 0 || gpuq_job_param_str(&t->job, "prompt_name", &name) < 0)
        return -1;
    if (text.ptr && name.ptr) return bad(t, "give prompt or prompt_name, not both");
    if (name.ptr && !(p->prompt = gpuq_encoder_prompt(m, name.ptr, name.len)))
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: the model has no prompt named '%.*s'",
                             (int)(name.len > 40 ? 40 : name.len), name.ptr);
    if (text.ptr) p->prompt = text.ptr, p->prompt_len = text.len;
    else if (p->prompt) p->prompt_len = strlen(p->prompt);
    else if (m->default_prompt >= 0) p->prompt = m->prompts[m->default_prompt], p->prompt_len = strlen(p->prompt);
    if (p->prompt_len > GPUQ_MAX_TEXT_BYTES) return bad(t, "prompt is longer than 65536 bytes");
    return 0;
}

static int read_params(struct gpuq_task *t, int *max_length) {
    struct gpuq_job *job = &t->job;
    const struct gpuq_encoder *m = gpuq_model_text(t->model);
    struct params *p = gpuq_task_params(t);
    struct gpuq_str pool = {NULL, 0}, dir = {NULL, 0};
    int64_t len = m->max_length;
    p->pooling = (int)m->pooling;
    p->normalize = m->normalize;
    p->truncate = 1;
    if (gpuq_job_param_str(job, "pooling", &pool) < 0 || gpuq_job_param_bool(job, "normalize", &p->normalize) < 0 ||
        gpuq_job_param_i64(job, "max_length", &len) < 0 || gpuq_job_param_bool(job, "truncate", &p->truncate) < 0 ||
        gpuq_job_param_str(job, "truncation_direction", &dir) < 0 || read_prompt(t, p) != 0 ||
        gpuq_embed_out_read(t, gpuq_encoder_dim(m), &p->out) != 0)
        return -1;
    if (dir.ptr) {
        if (dir.len == 4 && !memcmp(dir.ptr, "left", 4)) p->side = 2;
        else if (dir.len == 5 && !memcmp(dir.ptr, "right", 5)) p->side = 1;
        else return bad(t, "truncation_direction must be right or left");
    }
    if (pool.ptr && (p->pooling = gpuq_pool_from_name(pool.ptr, pool.len)) < 0)
        return bad(t, "pooling must be mean, cls, max, mean_sqrt_len, lasttoken or weightedmean");
    if (len < 2 || len > gpuq_encoder_max_tokens(m))
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "embed: max_length must be 2 to %d",
                             gpuq_encoder_max_tokens(m));
    *max_length = (int)len;
    return gpuq_embed_chunk_read(t, (int)len, gpuq_tok_special_count(t->model->tok, 0), &p->chunk);
}

/* t->own: token_off [rows + 1] (int64), then the ids; grown to hold ids
 * more ids. NULL (the job failed) when out of memory. */
static int32_t *grow(struct gpuq_task *t, size_t ids, size_t *cap) {
    size_t head = ((size_t)t->rows + 1) * sizeof(int64_t);
    if (ids > *cap) {
        size_t want = ids > 2 * *cap ? ids : 2 * *cap;
        void *own = realloc(t->own, head + want * sizeof(int32_t));
        if (!own) {
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "embed: out of memory for tokens");
            return NULL;
        }
        t->own = own;
        *cap = want;
    }
    t->token_off = t->own;
    return (int32_t *)((char *)t->own + head);
}

/* Row r's text with the prompt before it, in *buf (grown as needed). */
static int prompted(const struct params *p, struct gpuq_str s, char **buf, size_t *cap, struct gpuq_str *out) {
    if (!p->prompt) {
        *out = s;
        return 0;
    }
    if (p->prompt_len + s.len > *cap) {
        char *grown = realloc(*buf, p->prompt_len + s.len);
        if (!grown) return -1;
        *buf = grown;
        *cap = p->prompt_len + s.len;
    }
    memcpy(*buf, p->prompt, p->prompt_len);
    memcpy(*buf + p->prompt_len, s.ptr, s.len);
    *out = (struct gpuq_str){*buf, p->prompt_len + s.len};
    return 0;
}

/* Cuts a whole encoding ids[0, got) to max_length from the given side,
 * keeping the special tokens the post-processor put around the pieces
 * (those of an empty text, empty[0, n_empty): the longest split of them
 * into a head and a tail that the encoding starts and ends with). */
static int cut(int32_t *ids, int got, int max_length, int left, const int32_t *empty, int n_empty) {
    int head = n_empty;
    for (; head >= 0; head--)
        if (!memcmp(ids, empty, (size_t)head * sizeof(*ids)) &&
            !memcmp(ids + got - (n_empty - head), empty + head, (size_t)(n_empty - head) * sizeof(*ids)))
            break;
    if (head < 0 || n_empty >= max_length) head = 0, n_empty = 0;  /* no such split: cut plainly */
    int keep = max_length - n_empty, tail = n_empty - head, pieces = got - n_empty;
    int from = left ? head + pieces - keep : head;
    memmove(ids + head, ids + from, (size_t)keep * sizeof(*ids));
    memmove(ids + head + keep, ids + got - tail, (size_t)tail * sizeof(*ids));
    return max_length;
}

/* Tokenizes every text (prompt first), cut to max_length as the params
 * say: as the folder truncates, from the right or the left (the special
 * tokens kept), or not at all (a longer text fails the job, naming its
 * length). */
static int tokenize(struct gpuq_task *t, const struct gpuq_input *text, int max_length) {
    const struct gpuq_tok *tok = t->model->tok;
    const struct params *p = params_of(t);
    size_t cap = 0, n = 0, tcap = 0;
    char *joined = NULL;
    int result = -1;
    t->rows = text->n_texts;
    for (int64_t r = 0; r < t->rows; r++) {
        struct gpuq_str s;
        if (gpuq_input_text(text, r).len > GPUQ_MAX_TEXT_BYTES) {
            gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: text %lld has %zu bytes, more than %d "
                          "(a longer one needs chunk)", (long long)r, gpuq_input_text(text, r).len,
                          GPUQ_MAX_TEXT_BYTES);
            goto out;
        }
        if (prompted(p, gpuq_input_text(text, r), &joined, &tcap, &s) != 0) {
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "embed: out of memory tokenizing");
            goto out;
        }
        /* whole when it may not be cut, or cut from the left: normalization
         * can turn one character into several, so room for 8 tokens a byte */
        int whole = !p->truncate || p->side;
        int limit = whole ? (int)(8 * s.len + 16) : max_length;
        int32_t *ids = grow(t, n + (size_t)limit, &cap);
        if (!ids) goto out;
        int got = gpuq_tok_encode(tok, s.ptr, s.len, limit, ids + n);
        if (got < 0) {
            gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: text %lld cannot be tokenized (the "
                          "tokenizer has no unknown token for it, or memory ran out)", (long long)r);
            goto out;
        }
        if (got > max_length && !p->truncate) {
            gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: text %lld has %d tokens, more than "
                          "max_length %d (truncate is false)", (long long)r, got, max_length);
            goto out;
        }
        if (got > max_length) {
            int32_t empty[16];
            int n_empty = gpuq_tok_encode(tok, "", 0, 16, empty);
            got = cut(ids + n, got, max_length, p->side == 2, empty, n_empty > 0 ? n_empty : 0);
        }
        ((int64_t *)t->own)[r] = (int64_t)n;
        n += (size_t)got;
    }
    result = 0;
out:
    free(joined);
    if (result != 0) return -1;
    ((int64_t *)t->own)[t->rows] = (int64_t)n;
    ((struct params *)gpuq_task_params(t))->ids = grow(t, n, &cap);
    return 0;
}

/* Element i of an integer tensor. */
static int64_t int_at(const struct gpuq_tensor *x, int64_t i) {
    const char *p = (const char *)x->data + (size_t)i * gpuq_dtype_size(x->dtype);
    int64_t v64;
    int32_t v32;
    switch (x->dtype) {
    case GPUQ_DTYPE_I64: memcpy(&v64, p, 8); return v64;
    case GPUQ_DTYPE_I32: memcpy(&v32, p, 4); return v32;
    case GPUQ_DTYPE_I8: return *(const int8_t *)p;
    default: return *(const uint8_t *)p;
    }
}

/* Pre-tokenized rows: each row's length is its mask's sum, the mask ones
 * then zeros; the ids it counts must be in the vocabulary. */
static int take_ids(struct gpuq_task *t, const struct gpuq_tensor *ids, const struct gpuq_tensor *mask) {
    const struct gpuq_encoder *m = gpuq_model_text(t->model);
    if (ids->dtype != GPUQ_DTYPE_I32 && ids->dtype != GPUQ_DTYPE_I64) return bad(t, "input_ids must be i32 or i64");
    if (ids->ndim != 2 || ids->shape[1] > gpuq_encoder_max_tokens(m))
        return gpuq_job_fail(&t->job, GPUQ_ERR_SHAPE_MISMATCH, "embed: input_ids must be [rows, seq] "
                             "with seq at most %d", gpuq_encoder_max_tokens(m));
    if (mask && (mask->ndim != 2 || mask->shape[0] != ids->shape[0] || mask->shape[1] != ids->shape[1]))
        return gpuq_job_fail(&t->job, GPUQ_ERR_SHAPE_MISMATCH, "embed: attention_mask must have "
                             "input_ids' shape");
    int64_t seq = ids->shape[1];
    size_t cap = 0, n = 0;
    t->rows = ids->shape[0];
    int32_t *out = grow(t, (size_t)(t->rows * seq), &cap);
    if (!out) return -1;
    for (int64_t r = 0; r < t->rows; r++) {
        ((int64_t *)t->own)[r] = (int64_t)n;
        int64_t len = 0;
        for (int64_t j = 0; j < seq; j++) {
            int64_t on = mask ? int_at(mask, r * seq + j) : 1;
            if (on != 0 && on != 1) return bad(t, "attention_mask holds a value other than 0 and 1");
            if (on && len < j) return bad(t, "attention_mask must be ones then zeros (right padding)");
            if (!on) continue;
            int64_t id = int_at(ids, r * seq + j);
            if (id < 0 || id >= m->vocab)
                return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: token id %lld (row %lld) "
                                     "is outside the vocabulary of %d", (long long)id, (long long)r,
                                     m->vocab);
            out[n++] = (int32_t)id;
            len++;
        }
        if (len == 0) return bad(t, "a row of attention_mask is all zeros");
    }
    ((int64_t *)t->own)[t->rows] = (int64_t)n;
    ((struct params *)gpuq_task_params(t))->ids = out;
    return 0;
}

static int prepare(struct gpuq_task *t) {
    const struct gpuq_input *text = gpuq_job_find(&t->job, "text");
    const struct gpuq_input *ids = gpuq_job_find(&t->job, "input_ids");
    const struct gpuq_input *mask = gpuq_job_find(&t->job, "attention_mask");
    int max_length = 0;
    t->dtype = GPUQ_DTYPE_F32;      /* texts and ids of any dtype share a batch */
    if (read_params(t, &max_length) != 0) return -1;
    if (!text == !ids) return bad(t, "give input 'text' or 'input_ids', not both");
    if (mask && !ids) return bad(t, "attention_mask goes with input_ids");
    if (text && (!text->text || text->pairs))
        return bad(t, "input 'text' must be a str or an array of str, not a tensor or pairs");
    if ((ids && (ids->text || gpuq_dtype_is_float(ids->t.dtype))) ||
        (mask && (mask->text || gpuq_dtype_is_float(mask->t.dtype))))
        return bad(t, "inputs 'input_ids' and 'attention_mask' must be integer tensors");
    struct params *p = gpuq_task_params(t);
    if (p->chunk.tokens && !text) return bad(t, "chunk goes with input 'text'");
    if (p->chunk.tokens) {
        if (gpuq_embed_chunk_tokenize(t, text, p->prompt, p->prompt_len, &p->chunk,
                                      &p->ids) != 0)
            return -1;
    } else if ((text ? tokenize(t, text, max_length) : take_ids(t, &ids->t, mask ? &mask->t : NULL)) != 0) {
        return -1;
    }
    return gpuq_embed_out_check_rows(t, &p->out);
}

static size_t out_bytes(const struct gpuq_task *t) {
    return (size_t)t->rows * ((size_t)gpuq_model_out_dim(t->model) * sizeof(float) + sizeof(int32_t)) +
           gpuq_embed_chunk_out_bytes(&params_of(t)->chunk, t->rows);
}

static int compare(const struct gpuq_task *a, const struct gpuq_task *b) {
    const struct params *pa = params_of(a), *pb = params_of(b);
    return pa->pooling != pb->pooling ? pa->pooling - pb->pooling : pa->normalize - pb->normalize;
}

static uint64_t hash_ids(const int32_t *ids, int n) {
    uint64_t h = 1469598103934665603ULL;    /* FNV-1a over the ids' bytes */
    const unsigned char *b = (const unsigned char *)ids;
    for (size_t i = 0; i < (size_t)n * sizeof(*ids); i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* The batch's rows as sequences to compute, each once: rows with the same
 * token ids (the same text, prompt and truncation; the batch key makes the
 * encoder, pooling and normalization the same) share one. Fills ids, lens,
 * off (each sequence's first id) and src (the sequence of each batch row);
 * returns the sequences. table has 2^k >= 2 * rows slots. */
static int unique_rows(const struct gpuq_piece *p, int n, int32_t *ids, int *lens, int64_t *off, int *src,
                       int *table, size_t slots, int64_t *tokens, int *max_len) {
    int u = 0, row = 0;
    int64_t at = 0;
    memset(table, 0xff, slots * sizeof(*table));
    for (int i = 0; i < n; i++) {
        const int64_t *toff = p[i].t->token_off;
        const int32_t *from = params_of(p[i].t)->ids;
        for (int64_t r = p[i].row0; r < p[i].row0 + p[i].rows; r++, row++) {
            const int32_t *seq = from + toff[r];
            int len = (int)(toff[r + 1] - toff[r]);
            size_t k = hash_ids(seq, len) & (slots - 1);
            while (table[k] >= 0 && !(lens[table[k]] == len &&
                   !memcmp(ids + off[table[k]], seq, (size_t)len * sizeof(*seq))))
                k = (k + 1) & (slots - 1);
            if (table[k] < 0) {     /* a sequence not seen in this batch */
                table[k] = u;
                lens[u] = len;
                off[u] = at;
                memcpy(ids + at, seq, (size_t)len * sizeof(*seq));
                at += len;
                if (len > *max_len) *max_len = len;
                u++;
            }
            src[row] = table[k];
        }
    }
    *tokens = at;
    return u;
}

static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    const struct gpuq_task *t0 = p[0].t;
    int dim = gpuq_model_out_dim(t0->model);
    int64_t tokens = 0;
    size_t slots = 16;
    while (slots < 2 * (size_t)rows) slots *= 2;
    for (int i = 0; i < n; i++) tokens += p[i].t->token_off[p[i].row0 + p[i].rows] - p[i].t->token_off[p[i].row0];
    int32_t *ids = gpuq_ops_buf(s, 0, (size_t)tokens * sizeof(int32_t));
    int *lens = gpuq_ops_buf(s, 1, (size_t)rows * sizeof(int));
    float *y = gpuq_ops_buf(s, 2, (size_t)rows * dim * sizeof(float));
    int *src = gpuq_ops_buf(s, 3, (size_t)rows * sizeof(int));
    int64_t *off = gpuq_ops_buf(s, 4, (size_t)rows * sizeof(int64_t));
    int *table = gpuq_ops_buf(s, 5, slots * sizeof(int));
    if (!ids || !lens || !y || !src || !off || !table) return GPUQ_BE_NOMEM;
    struct gpuq_embed args = {t0->model, {.ids = ids, .lens = lens, .pooling = (enum gpuq_pool)params_of(t0)->pooling,
                                          .normalize = params_of(t0)->normalize, .out = y}, 0, 0};
    int64_t unique_tokens = 0;
    args.b.n_seq = unique_rows(p, n, ids, lens, off, src, table, slots, &unique_tokens, &args.max_len);
    args.n_tokens = (int)unique_tokens;
    s->out[0] = y;
    s->out[1] = src;
    return gpuq_backend_run(s->be, GPUQ_OP_EMBED, args.b.n_seq, &args);
}

/* Each row takes the embedding of its sequence (computed once per batch). */
static void scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    const float *y = s->out[0];
    const int *src = s->out[1];
    size_t hidden = (size_t)gpuq_model_out_dim(p[0].t->model);
    for (int i = 0, row = 0; i < n; i++) {
        float *out = (float *)p[i].t->out + (size_t)p[i].row0 * hidden;
        for (int64_t r = 0; r < p[i].rows; r++, row++)
            memcpy(out + (size_t)r * hidden, y + (size_t)src[row] * hidden, hidden * sizeof(float));
    }
}

/* A row's embedding depends on the encoder, its token ids, pooling and
 * normalization (dimensions and dtype act after, in finish). */
static size_t cache_key(const struct gpuq_task *t, int64_t row, void (*feed)(void *ctx, const void *p, size_t n),
                        void *ctx) {
    const struct params *p = params_of(t);
    const char *name = t->model->name;
    int how[2] = {p->pooling, p->normalize};
    feed(ctx, name, strlen(name) + 1);
    feed(ctx, how, sizeof(how));
    feed(ctx, p->ids + t->token_off[row], (size_t)(t->token_off[row + 1] - t->token_off[row]) * sizeof(int32_t));
    return (size_t)gpuq_model_out_dim(t->model) * sizeof(float);
}

/* y as the job asks for it (dimensions, dtype), then the token counts
 * behind it, 4-byte aligned, in the same buffer. */
static void finish(struct gpuq_task *t) {
    const struct params *p = params_of(t);
    int hidden = gpuq_model_out_dim(t->model);
    enum gpuq_dtype dt;
    int64_t shape[2] = {gpuq_embed_chunk_pool(t, &p->chunk, t->out, hidden, p->normalize), 0};
    if (shape[0] < 0) {
        gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "embed: out of memory pooling chunks");
        return;
    }
    if (!gpuq_ops_finite(t, "embed", t->out, (size_t)shape[0] * hidden)) return;
    shape[1] = gpuq_embed_out_finish(t, &p->out, p->normalize, t->out, shape[0], hidden, &dt);
    if (t->job.err) return;
    size_t y_bytes = (size_t)shape[0] * gpuq_embed_out_row_bytes(&p->out);
    int32_t *tokens = (int32_t *)((char *)t->out + ((y_bytes + 3) & ~(size_t)3));
    for (int64_t r = 0; r < shape[0]; r++) tokens[r] = gpuq_embed_chunk_tokens(t, &p->chunk, r);
    gpuq_ops_set_output(t, 0, "y", dt, t->out, 2, shape);
    gpuq_ops_set_output(t, 1, "tokens", GPUQ_DTYPE_I32, tokens, 1, shape);
    gpuq_embed_chunk_outputs(t, &p->chunk, 2);
}

/* ---- the CPU kernel: kernels/encoder_cpu.c, kernels/decoder_cpu.c ---- */

static int cpu(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_embed *a = l->args;
    const struct gpuq_decoder *d = gpuq_model_decoder(a->model);
    if (d) {
        float *scratch = gpuq_cpu_scratch(be, 0, gpuq_decoder_scratch_floats(d, a->n_tokens, a->max_len));
        return scratch ? gpuq_decoder_forward_cpu(be, d, &a->b, scratch) : GPUQ_BE_NOMEM;
    }
    const struct gpuq_encoder *m = gpuq_model_encoder(a->model);
    float *scratch = gpuq_cpu_scratch(be, 0, gpuq_encoder_scratch_floats(m, a->n_tokens, a->max_len));
    if (!scratch) return GPUQ_BE_NOMEM;
    return gpuq_encoder_forward_cpu(be, m, &a->b, scratch);
}

/* ---- twin: random encoders and decoders (ops/encoder_twin.c), from one-token sequences to several key tiles ---- */

/* Small (at every CUDA worker's start): heads of 32 columns, as sentence
 * encoders have, over two key and three query tiles. Large: heads of 32,
 * 64, 96 and 128 columns (one to four of a lane's columns), and sequences
 * from one token to several tiles. */
static void twin(struct gpuq_twin_run *r) {
    static const int small[] = {1, 40, 9, 16, 17}, large[] = {1, 70, 33, 16, 17, 5, 32};
    /* reduced precision: a rounding that falls the other way (another
     * summation order) moves a GEMM input by a step; the CPU with its sums
     * in double instead of f32 strays up to 8e-3 (bf16) and 1e-3 (f16) from
     * itself on these encoders, over 40 seeds, most in the cls case */
    gpuq_twin_precision(r, 2e-2, 4e-3);
    /* BERT's shape; RoBERTa's positions and MPNet's relative bias with a
     * Dense module and the other poolings */
    static const struct gpuq_encoder_twin bert = {64, 2, 1, GPUQ_POOL_MEAN, 1, -1, 0, 0, 0, 0},
                                   mpnet = {64, 2, 1, GPUQ_POOL_WEIGHTED_MEAN, 1, 1, 32, 24, 0, 0};
    /* a decoder at start: Qwen3's shape, its query heads wider than the
     * model (as Qwen3-0.6B's 16 x 128 over 1,024), two of them per
     * key/value head */
    static const struct gpuq_decoder_twin qwen3 = {64, 4, 2, 32, 1, 0, 0};
    if (!r->large) {
        gpuq_encoder_twin_batch(r, &bert, small, 5);
        gpuq_encoder_twin_batch(r, &mpnet, small, 5);
        gpuq_decoder_twin_batch(r, &qwen3, small, 5);
        return;
    }
    /* heads of 16 to 128 columns, one to four query heads per key/value
     * head, Qwen2's biases (with a Dense module), sequences over several
     * query and key tiles */
    static const struct gpuq_decoder_twin decoders[] = {
        {64, 4, 2, 32, 2, 0, 0}, {128, 2, 1, 128, 1, 0, 0}, {64, 4, 1, 16, 2, 1, 48}, {128, 2, 2, 64, 1, 1, 0},
        {64, 8, 2, 32, 1, 0, 0}};   /* the last: query heads wider than the feed-forward */
    static const int long_lens[] = {1, 130, 33, 17, 5};    /* past the CPU's block of 128 queries */
    for (size_t i = 0; i < sizeof decoders / sizeof *decoders; i++)
        gpuq_decoder_twin_batch(r, &decoders[i], long_lens, 5);
    static const struct gpuq_encoder_twin shapes[] = {
        {128, 4, 2, GPUQ_POOL_MEAN, 1, -1, 0, 0, 0, 0}, {128, 2, 2, GPUQ_POOL_CLS, 0, -1, 0, 0, 0, 0},
        {192, 2, 2, GPUQ_POOL_MEAN, 1, -1, 0, 0, 0, 0}, {256, 2, 1, GPUQ_POOL_MEAN, 1, -1, 0, 0, 0, 0},
        {128, 4, 2, GPUQ_POOL_MAX, 0, 1, 0, 0, 0, 0}, {128, 4, 2, GPUQ_POOL_MEAN_SQRT_LEN, 0, 0, 32, 0, 0, 0},
        {128, 2, 1, GPUQ_POOL_LAST, 1, 1, 16, 96, 0, 0}, {64, 2, 2, GPUQ_POOL_WEIGHTED_MEAN, 1, 1, 32, 24, 0, 0}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) gpuq_encoder_twin_batch(r, &shapes[i], large, 7);
}

static const char *const inputs[] = {"text", "input_ids", "attention_mask", NULL};
static const char *const params[] = {"pooling", "normalize", "max_length", "prompt", "prompt_name",
                                     "truncate", "truncation_direction", "dimensions", "dtype", "ranges",
                                     "chunk", NULL};

const struct gpuq_op_desc gpuq_op_embed = {
    .inputs = inputs, .params = params, .text = 1, .needs = 1 + GPUQ_CAP_EMBED,
    .prepare = prepare, .out_bytes = out_bytes, .compare = compare, .pack = pack,
    .scatter = scatter, .finish = finish, .cache_key = cache_key,
    .kernel = {[GPUQ_BACKEND_CPU] = cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_embed)},
    .twin = twin, .tol = 1e-5,
};
