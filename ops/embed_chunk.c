/* embed_chunk.c -- long documents in windows (ops/embed_chunk.h). */
#include "ops/embed_chunk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"

static int bad(struct gpuq_task *t, const char *what) {
    return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: chunk %s", what);
}

int gpuq_embed_chunk_read(struct gpuq_task *t, int max_length, int specials,
                          struct gpuq_embed_chunk *c) {
    const msgpack_object *m = NULL;
    int rc = gpuq_job_param_map(&t->job, "chunk", &m);
    memset(c, 0, sizeof(*c));
    if (rc <= 0) return rc;
    int64_t tokens = -1, overlap = 0;
    int seen[3] = {0, 0, 0};
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        static const char *const keys[] = {"tokens", "overlap", "pool"};
        int which = -1;
        for (int j = 0; j < 3 && k->type == MSGPACK_OBJECT_STR; j++)
            if (strlen(keys[j]) == k->via.str.size && !memcmp(keys[j], k->via.str.ptr, k->via.str.size)) which = j;
        if (which < 0) return bad(t, "takes tokens, overlap and pool only");
        if (seen[which]++) return bad(t, "names a key twice");
        if (which == 2) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN) return bad(t, "pool must be a boolean");
            c->pool = v->via.boolean;
            continue;
        }
        int64_t *dst = which ? &overlap : &tokens;
        if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT32_MAX) *dst = (int64_t)v->via.u64;
        else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) *dst = -1;
        else return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: chunk %s must be an integer",
                                  keys[which]);
    }
    if (tokens < 0) return bad(t, "needs tokens");
    if (tokens < specials + 1 || tokens < 3 || tokens > max_length)
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: chunk tokens is %lld; want %d to "
                             "%d (max_length), the %d special tokens included", (long long)tokens,
                             specials + 1 > 3 ? specials + 1 : 3, max_length, specials);
    if (overlap < 0 || overlap >= tokens - specials)
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: chunk overlap is %lld; want 0 to "
                             "%lld (less than the %lld tokens a window holds besides its %d special "
                             "ones)", (long long)overlap, (long long)(tokens - specials - 1),
                             (long long)(tokens - specials), specials);
    c->tokens = (int)tokens;
    c->overlap = (int)overlap;
    return 0;
}

/* ---- windows ---- */

/* A growing list of windows: [s, e) of the text's tokens, each row. */
struct cuts {
    int64_t *v;     /* s, e pairs */
    size_t n, cap;
};

static int cut_add(struct cuts *w, int64_t s, int64_t e) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        int64_t *v = realloc(w->v, cap * 2 * sizeof(*v));
        if (!v) return -1;
        w->v = v, w->cap = cap;
    }
    w->v[2 * w->n] = s, w->v[2 * w->n + 1] = e;
    w->n++;
    return 0;
}

/* Windows of at most room tokens over [p, n) (the prompt's tokens [0, p)
 * go before each), overlap tokens shared by neighbours. A window ends
 * before a word start and the next starts at one, where the words allow:
 * the end backs off to the last word start within the window, the next
 * start to the last word start at or before end - overlap (more overlap),
 * else the first one after it (less); a word longer than a window is cut. */
static int windows(const struct gpuq_tok_spans *sp, int64_t p, int64_t room, int64_t overlap,
                   struct cuts *w) {
    int64_t n = (int64_t)sp->n, s = p;
    if (n == p) return cut_add(w, p, p);
    for (;;) {
        int64_t e = s + room < n ? s + room : n;
        if (e < n && !sp->word[e]) {
            int64_t b = e;
            while (b > s + 1 && !sp->word[b]) b--;
            if (sp->word[b] && b - overlap > s) e = b;
        }
        if (cut_add(w, s, e) != 0) return -1;
        if (e == n) return 0;
        int64_t next = e - overlap, b = next;
        while (b > s + 1 && !sp->word[b]) b--;
        if (sp->word[b] && b > s) {
            next = b;
        } else {
            for (b = next; b < e && !sp->word[b]; b++) {}
            if (b < e) next = b;
        }
        s = next;
    }
}

int gpuq_embed_chunk_tokenize(struct gpuq_task *t, const struct gpuq_input *text, const char *prompt,
                              size_t prompt_len, struct gpuq_embed_chunk *c, int32_t **ids) {
    const struct gpuq_tok *tok = t->model->tok;
    int specials = gpuq_tok_special_count(tok, 0);
    struct cuts w = {0};
    /* per text: its windows' span in w, the spans' ids and bytes kept for the rows */
    int64_t docs = text->n_texts, total_ids = 0;
    int64_t *doc_w = calloc((size_t)docs + 1, sizeof(*doc_w));
    struct gpuq_tok_spans *all = calloc((size_t)docs, sizeof(*all));
    int64_t *prompt_toks = calloc((size_t)docs, sizeof(*prompt_toks));
    char *joined = NULL;
    size_t jcap = 0;
    int result = -1;
    if (!doc_w || !all || !prompt_toks) goto nomem;
    for (int64_t d = 0; d < docs; d++) {
        struct gpuq_str s = gpuq_input_text(text, d);
        if (prompt_len) {   /* the prompt before the text, tokenized with it */
            if (prompt_len + s.len > jcap) {
                char *g = realloc(joined, prompt_len + s.len);
                if (!g) goto nomem;
                joined = g, jcap = prompt_len + s.len;
            }
            memcpy(joined, prompt, prompt_len);
            if (s.len) memcpy(joined + prompt_len, s.ptr, s.len);
            s = (struct gpuq_str){joined, prompt_len + s.len};
        }
        if (gpuq_tok_spans(tok, s.ptr, s.len, &all[d]) != 0) {
            gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: text %lld cannot be tokenized (the "
                          "tokenizer has no unknown token for it, or memory ran out)", (long long)d);
            goto out;
        }
        int64_t p = 0;      /* the prompt's tokens: those that begin inside it */
        while (p < (int64_t)all[d].n && all[d].start[p] < (int64_t)prompt_len) p++;
        int64_t room = c->tokens - specials - p;
        if (room < 1) {
            gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: chunk tokens %d leaves no room for "
                          "text after the %d special tokens and the prompt's %lld", c->tokens, specials,
                          (long long)p);
            goto out;
        }
        int64_t overlap = c->overlap < room ? c->overlap : room - 1;
        prompt_toks[d] = p;
        doc_w[d] = (int64_t)w.n;
        if (windows(&all[d], p, room, overlap, &w) != 0) goto nomem;
        for (size_t i = (size_t)doc_w[d]; i < w.n; i++) total_ids += p + w.v[2 * i + 1] - w.v[2 * i] + specials;
    }
    doc_w[docs] = (int64_t)w.n;
    /* t->own: token_off [rows + 1] | char_start, char_end [rows] | first [docs + 1] | chunk_of [rows] | ids */
    int64_t rows = (int64_t)w.n;
    size_t head = ((size_t)rows + 1 + 2 * (size_t)rows + (size_t)docs + 1) * sizeof(int64_t) +
                  (size_t)rows * sizeof(int32_t);
    free(t->own);
    if (!(t->own = malloc(head + (size_t)total_ids * sizeof(int32_t) + 64))) goto nomem;
    int64_t *off = t->own;
    c->char_start = off + rows + 1;
    c->char_end = c->char_start + rows;
    c->first = c->char_end + rows;
    c->chunk_of = (int32_t *)(c->first + docs + 1);
    int32_t *out = (int32_t *)((char *)t->own + head), *scratch = NULL;
    int64_t at = 0, r = 0;
    for (int64_t d = 0; d < docs; d++) {
        const struct gpuq_tok_spans *a = &all[d];
        int64_t p = prompt_toks[d];
        c->first[d] = r;
        for (int64_t i = doc_w[d]; i < doc_w[d + 1]; i++, r++) {
            int64_t s = w.v[2 * i], e = w.v[2 * i + 1], len = p + e - s;
            int32_t *g = realloc(scratch, ((size_t)len + 1) * sizeof(*g));
            if (!g) {
                free(scratch);
                goto nomem;
            }
            scratch = g;
            /* an empty text has no ids at all (a->ids NULL): copy only what there is */
            if (p) memcpy(scratch, a->ids, (size_t)p * sizeof(*scratch));
            if (e > s) memcpy(scratch + p, a->ids + s, (size_t)(e - s) * sizeof(*scratch));
            off[r] = at;
            at += gpuq_tok_wrap(tok, scratch, (int)len, out + at);
            /* the window's bytes in the text (the prompt's not counted) */
            int64_t lo = e > s ? a->start[s] : s < (int64_t)a->n ? a->start[s] : (int64_t)prompt_len;
            int64_t hi = e > s ? a->end[e - 1] : lo;
            lo -= (int64_t)prompt_len, hi -= (int64_t)prompt_len;
            c->char_start[r] = lo > 0 ? lo : 0;
            c->char_end[r] = hi > c->char_start[r] ? hi : c->char_start[r];
            c->chunk_of[r] = (int32_t)d;
        }
    }
    free(scratch);
    c->first[docs] = rows;
    off[rows] = at;
    c->docs = docs;
    t->rows = rows;
    t->token_off = off;
    *ids = out;
    result = 0;
    goto out;
nomem:
    gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "embed: out of memory cutting texts into chunks");
out:
    for (int64_t d = 0; all && d < docs; d++) gpuq_tok_spans_free(&all[d]);
    free(all), free(doc_w), free(prompt_toks), free(w.v), free(joined);
    return result;
}

size_t gpuq_embed_chunk_out_bytes(const struct gpuq_embed_chunk *c, int64_t rows) {
    if (!c->tokens) return 0;
    return (size_t)rows * (sizeof(int32_t) + 2 * sizeof(int64_t)) + (size_t)c->docs * sizeof(int32_t);
}

int64_t gpuq_embed_chunk_pool(const struct gpuq_task *t, const struct gpuq_embed_chunk *c, float *y,
                              int hidden, int normalize) {
    if (!c->tokens || !c->pool) return t->rows;
    double *sum = malloc((size_t)hidden * sizeof(*sum));
    if (!sum) return -1;
    for (int64_t d = 0; d < c->docs; d++) {
        int64_t a = c->first[d], b = c->first[d + 1];
        memset(sum, 0, (size_t)hidden * sizeof(*sum));
        for (int64_t r = a; r < b; r++)
            for (int j = 0; j < hidden; j++) sum[j] += y[(size_t)r * hidden + j];
        double n2 = 0;
        for (int j = 0; j < hidden; j++) sum[j] /= (double)(b - a), n2 += sum[j] * sum[j];
        double scale = normalize && n2 > 0 ? 1.0 / sqrt(n2) : 1.0;
        for (int j = 0; j < hidden; j++) y[(size_t)d * hidden + j] = (float)(sum[j] * scale);
    }
    free(sum);
    return c->docs;
}

int32_t gpuq_embed_chunk_tokens(const struct gpuq_task *t, const struct gpuq_embed_chunk *c, int64_t r) {
    int64_t a = r, b = r + 1;
    if (c->tokens && c->pool) a = c->first[r], b = c->first[r + 1];
    return (int32_t)(t->token_off[b] - t->token_off[a]);
}

void gpuq_embed_chunk_outputs(struct gpuq_task *t, const struct gpuq_embed_chunk *c, int i) {
    if (!c->tokens) return;
    if (c->pool) {
        /* windows per text, in the chunk_of block (rows >= docs) */
        int32_t *chunks = c->chunk_of;
        int64_t shape[1] = {c->docs};
        for (int64_t d = 0; d < c->docs; d++) chunks[d] = (int32_t)(c->first[d + 1] - c->first[d]);
        gpuq_ops_set_output(t, i, "chunks", GPUQ_DTYPE_I32, chunks, 1, shape);
        return;
    }
    int64_t shape[1] = {t->rows};
    gpuq_ops_set_output(t, i, "chunk_of", GPUQ_DTYPE_I32, c->chunk_of, 1, shape);
    gpuq_ops_set_output(t, i + 1, "char_start", GPUQ_DTYPE_I64, c->char_start, 1, shape);
    gpuq_ops_set_output(t, i + 2, "char_end", GPUQ_DTYPE_I64, c->char_end, 1, shape);
}
