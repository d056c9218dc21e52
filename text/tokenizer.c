/* tokenizer.c -- the pipeline, as `tokenizers` runs it: added tokens cut
 * out of the raw text; each stretch between them normalized, cut again at
 * the normalized added tokens, pre-tokenized and given to the model; then
 * truncation and the post-processor. */
#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_int.h"

int tok_model_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out) {
    switch (m->kind) {
    case TOK_MODEL_WORDPIECE: return tok_wordpiece_tokenize(m, s, n, out);
    case TOK_MODEL_UNIGRAM: return tok_unigram_tokenize(m, s, n, out);
    case TOK_MODEL_BPE: return tok_bpe_tokenize(m, s, n, out);
    case TOK_MODEL_WORDLEVEL: return tok_wordlevel_tokenize(m, s, n, out);
    }
    return -1;
}

/* One stretch of normalized text with no added token in it. */
static int encode_words(const struct gpuq_tok *t, struct tok_pieces *words, size_t limit,
                        struct tok_ids *out) {
    if (t->pretok && tok_pretok_apply(t->pretok, words) != 0) return -1;
    for (size_t i = 0; i < words->n && out->n < limit; i++)
        if (tok_model_tokenize(&t->model, words->text.s + words->v[i].off, words->v[i].len, out) != 0)
            return -1;
    return 0;
}

/* The ids of one text before truncation, the model stopping once limit ids
 * are out (later ids could only be cut). */
static int encode_seq(const struct gpuq_tok *t, const char *text, size_t len, size_t limit,
                      struct tok_ids *out) {
    struct tok_buf raw = {0}, s = {0};
    struct tok_pieces segs = {0}, sub = {0}, words = {0};
    int result = tok_utf8_clean(text, len, &raw);
    int32_t c0;   /* the first character is the one aligned to the original start */
    size_t head = raw.n ? tok_utf8_next((const unsigned char *)raw.s, raw.n, &c0) : 0;
    if (result == 0) result = tok_added_split(t, 0, raw.s, raw.n, head, &segs);
    for (size_t i = 0; result == 0 && i < segs.n && out->n < limit; i++) {
        const struct tok_piece *g = &segs.v[i];
        if (g->id >= 0) {
            result = tok_ids_push(out, g->id);
            continue;
        }
        s.n = 0;
        result = tok_buf_put(&s, segs.text.s + g->off, g->len);
        size_t h = g->head;
        if (result == 0 && t->norm) result = tok_norm_apply(t->norm, &s, &h);
        sub.n = sub.text.n = 0;
        if (result == 0) result = tok_added_split(t, 1, s.s, s.n, h, &sub);
        for (size_t j = 0; result == 0 && j < sub.n && out->n < limit; j++) {
            const struct tok_piece *w = &sub.v[j];
            if (w->id >= 0) {
                result = tok_ids_push(out, w->id);
                continue;
            }
            words.n = words.text.n = 0;
            result = tok_pieces_add(&words, sub.text.s + w->off, w->len, w->head, -1);
            if (result == 0) result = encode_words(t, &words, limit, out);
        }
    }
    tok_buf_free(&raw);
    tok_buf_free(&s);
    tok_pieces_free(&segs);
    tok_pieces_free(&sub);
    tok_pieces_free(&words);
    return result;
}

/* Cuts ids to keep, from the end or (left) from the start. */
static void cut(struct tok_ids *ids, size_t keep, int left) {
    if (ids->n <= keep) return;
    if (left) memmove(ids->v, ids->v + (ids->n - keep), keep * sizeof *ids->v);
    ids->n = keep;
}

/* TruncationStrategy::LongestFirst on a pair, as `tokenizers` sizes it. */
static void truncate_pair(struct tok_ids *a, struct tok_ids *b, size_t max, int left) {
    if (a->n + b->n <= max) return;
    size_t n1 = a->n, n2 = b->n;
    int swap = n1 > n2;
    if (swap) { size_t x = n1; n1 = n2; n2 = x; }
    n2 = n1 > max ? n1 : (n1 > max - n1 ? n1 : max - n1);
    if (n1 + n2 > max) {
        n1 = max / 2;
        n2 = n1 + max % 2;
    }
    if (swap) { size_t x = n1; n1 = n2; n2 = x; }
    cut(a, n1, left);
    cut(b, n2, left);
}

int gpuq_tok_encode_pair(const struct gpuq_tok *t, const char *a, size_t alen, const char *b,
                         size_t blen, int max_length, int32_t *ids, int32_t *type_ids) {
    int pair = b != NULL, added = tok_post_added(&t->post, pair);
    if (max_length < added || max_length < 1) return -1;
    size_t budget = (size_t)(max_length - added);
    struct tok_ids ia = {0}, ib = {0};
    /* one text cut from the end: the model may stop early */
    size_t limit = !pair && !t->trunc_left && t->trunc != TOK_TRUNC_ONLY_SECOND ? budget : (size_t)-1;
    int n = -1;
    if (encode_seq(t, a, alen, limit, &ia) != 0 || (pair && encode_seq(t, b, blen, limit, &ib) != 0))
        goto out;
    if (budget && ia.n + ib.n > budget && t->trunc != TOK_TRUNC_LONGEST_FIRST) {
        /* OnlyFirst, OnlySecond: that text gives up all, or the encoding fails */
        struct tok_ids *target = t->trunc == TOK_TRUNC_ONLY_FIRST ? &ia : pair ? &ib : NULL;
        size_t remove = ia.n + ib.n - budget;
        if (!target || target->n <= remove) goto out;
        cut(target, target->n - remove, t->trunc_left);
    } else if (pair) {
        truncate_pair(&ia, &ib, budget, t->trunc_left);
    } else {
        cut(&ia, budget, t->trunc_left);
    }
    n = tok_post_apply(&t->post, ia.v, (int)ia.n, pair ? (ib.v ? ib.v : ids) : NULL, (int)ib.n, ids,
                       type_ids);
out:
    tok_ids_free(&ia);
    tok_ids_free(&ib);
    return n;
}

int gpuq_tok_encode(const struct gpuq_tok *t, const char *text, size_t len, int max_length,
                    int32_t *ids) {
    return gpuq_tok_encode_pair(t, text, len, NULL, 0, max_length, ids, NULL);
}
