/* spans.c -- a text's tokens with the bytes of the original text each comes
 * from. The pipeline runs as in tokenizer.c, and each stage's output is
 * located in its input:
 * - invalid UTF-8 read as U+FFFD: its three bytes come from the ill-formed
 *   bytes;
 * - added tokens and the text between them are substrings, found in order;
 * - the normalizer's bytes through text/norm_align.c;
 * - a pre-tokenized word is found in its normalized text as it is, or with
 *   ByteLevel's characters read back as their bytes and Metaspace's U+2581
 *   as a space, or without a leading space the pre-tokenizer prepended
 *   (aligned then to the first character);
 * - within a word, each token covers as many bytes as its text has, less
 *   WordPiece's or BPE's continuing-subword prefix and BPE's end-of-word
 *   suffix; a byte-fallback token <0xNN> covers one byte; an unknown token
 *   reaches to where the next token's text is found.
 * An added token or a word always starts a word. */
#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_int.h"

typedef uint32_t span[2];

static int push(struct gpuq_tok_spans *o, int32_t id, int64_t a, int64_t b, int word) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        int32_t *ids = realloc(o->ids, cap * sizeof(*ids));
        if (ids) o->ids = ids;
        int64_t *s = realloc(o->start, cap * sizeof(*s));
        if (s) o->start = s;
        int64_t *e = realloc(o->end, cap * sizeof(*e));
        if (e) o->end = e;
        uint8_t *w = realloc(o->word, cap);
        if (w) o->word = w;
        if (!ids || !s || !e || !w) return -1;
        o->cap = cap;
    }
    o->ids[o->n] = id, o->start[o->n] = a, o->end[o->n] = b, o->word[o->n] = (uint8_t)word;
    o->n++;
    return 0;
}

void gpuq_tok_spans_free(struct gpuq_tok_spans *s) {
    if (!s) return;
    free(s->ids), free(s->start), free(s->end), free(s->word);
    memset(s, 0, sizeof(*s));
}

/* [x, y) through map m (each byte's source range); y == x: empty at x. */
static void through(const span *m, size_t mlen, size_t x, size_t y, size_t *a, size_t *b) {
    if (!mlen) {
        *a = *b = 0;
        return;
    }
    if (x >= mlen) x = mlen - 1;
    if (y > mlen) y = mlen;
    *a = m[x][0];
    *b = y > x ? m[y - 1][1] : m[x][0];
}

/* Where needle[0, n) first occurs in hay[from, to), or -1. */
static long find(const char *hay, size_t from, size_t to, const char *needle, size_t n) {
    if (!n) return (long)from;
    for (size_t i = from; i + n <= to; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0) return (long)i;
    return -1;
}

/* Reads w back as the bytes ByteLevel made its characters from: cand
 * gets them, owner[i] the candidate byte that byte i of w comes from.
 * Returns their count. */
static size_t read_back(const char *w, size_t n, const int16_t *inverse, char *cand, size_t *owner) {
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)w + i, n - i, &c);
        int b = c < 0x144 ? inverse[c] : 0;
        if (b) {
            cand[m] = (char)(b - 1);
            for (size_t j = 0; j < k; j++) owner[i + j] = m;
            m++;
        } else {
            for (size_t j = 0; j < k; j++) owner[i + j] = m, cand[m++] = w[i + j];
        }
        i += k;
    }
    return m;
}

/* Does w match s at p (before to), each U+2581 of w standing for itself or
 * a space, and, with skip, a leading U+2581 for nothing (Metaspace
 * prepended it; it takes the first character)? Returns the end in s, or
 * 0 (map holds each byte's bytes in s). */
static size_t match_meta(const char *w, size_t n, const char *s, size_t p, size_t to, int skip, span *map) {
    size_t i = 0, q = p;
    if (skip) {
        if (n < 3 || memcmp(w, "\xe2\x96\x81", 3) != 0 || p >= to) return 0;
        int32_t c;
        size_t first = tok_utf8_next((const unsigned char *)s + p, to - p, &c);
        for (; i < 3; i++) map[i][0] = (uint32_t)p, map[i][1] = (uint32_t)(p + first);
    }
    while (i < n) {
        if (i + 3 <= n && !memcmp(w + i, "\xe2\x96\x81", 3) && !(q + 3 <= to && !memcmp(s + q, w + i, 3))) {
            if (q >= to || s[q] != ' ') return 0;
            for (int j = 0; j < 3; j++) map[i + j][0] = (uint32_t)q, map[i + j][1] = (uint32_t)q + 1;
            i += 3, q++;
            continue;
        }
        if (q >= to || s[q] != w[i]) return 0;
        map[i][0] = (uint32_t)q, map[i][1] = (uint32_t)q + 1;
        i++, q++;
    }
    return q > p ? q : 0;
}

/* The word w located in s[from, to): the first place from which it
 * matches as it is or with Metaspace's U+2581 read as spaces (match_meta),
 * or read back as ByteLevel's bytes, less a space ByteLevel prepended
 * (which takes no byte). *map
 * gets, for each byte of w, its bytes in s. Returns where it ends in s, or
 * from when it is not found (every byte then maps to from). */
static size_t locate(const char *w, size_t n, const char *s, size_t from, size_t to, span *map,
                     char *cand, size_t *owner, const int16_t *inverse) {
    size_t m = read_back(w, n, inverse, cand, owner), skip = m > 1 && cand[0] == ' ';
    for (size_t p = from; p < to; p++) {
        size_t e;
        if ((e = match_meta(w, n, s, p, to, 0, map)) || (e = match_meta(w, n, s, p, to, 1, map))) return e;
        for (size_t k = 0; k <= skip; k++) {
            if (m - k == 0 || p + m - k > to || memcmp(s + p, cand + k, m - k) != 0) continue;
            for (size_t i = 0; i < n; i++) {
                if (owner[i] < k) map[i][0] = map[i][1] = (uint32_t)p;     /* the prepended space */
                else map[i][0] = (uint32_t)(p + owner[i] - k), map[i][1] = (uint32_t)(p + owner[i] - k + 1);
            }
            return p + m - k;
        }
    }
    for (size_t i = 0; i < n; i++) map[i][0] = map[i][1] = (uint32_t)from;
    return from;
}

/* The bytes of its word a token stands for, in *p and *len (a byte
 * fallback token: its byte in *one); 0, or -1 for the unknown token. */
static int token_bytes(const struct tok_model *m, int32_t id, int first, int last, const char **p,
                       size_t *len, char *one) {
    if (id == m->unk_id || id < 0 || id >= m->vocab.n_ids || !m->vocab.text[id]) return -1;
    const char *s = m->vocab.text[id];
    size_t n = m->vocab.len[id];
    if (m->byte_fallback && n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
        *one = (char)strtol(s + 3, NULL, 16);
        *p = one, *len = 1;
        return 0;
    }
    size_t a = m->prefix ? strlen(m->prefix) : 0, z = m->suffix ? strlen(m->suffix) : 0;
    if (!first && a && n >= a && !memcmp(s, m->prefix, a)) s += a, n -= a;
    if (last && z && n >= z && !memcmp(s + n - z, m->suffix, z)) n -= z;
    *p = s, *len = n;
    return 0;
}

/* Each token's bytes [sa[j], sb[j]) in its word w[0, n): a known token as
 * many bytes as it stands for; unknown tokens up to where the next known
 * one's bytes are found, one character each but the last. */
static void token_spans(const struct tok_model *m, const int32_t *ids, size_t k, const char *w,
                        size_t n, size_t *sa, size_t *sb) {
    size_t at = 0;
    for (size_t j = 0; j < k;) {
        const char *p;
        size_t len;
        char one;
        if (token_bytes(m, ids[j], j == 0, j + 1 == k, &p, &len, &one) == 0) {
            sa[j] = at < n ? at : n;
            at += len;
            sb[j] = at < n ? at : n;
            j++;
            continue;
        }
        size_t u = j, end = n;      /* unknown tokens [u, j), then where the next known one starts */
        while (j < k && token_bytes(m, ids[j], j == 0, j + 1 == k, &p, &len, &one) != 0) j++;
        if (j < k && len) {
            int32_t c;
            size_t from = at < n ? at + tok_utf8_next((const unsigned char *)w + at, n - at, &c) : n;
            long f = -1;
            for (size_t i = from; f < 0 && i + len <= n; i++)
                if (!memcmp(w + i, p, len)) f = (long)i;
            end = f >= 0 ? (size_t)f : from;
        }
        for (size_t i = u; i < j; i++) {
            int32_t c;
            sa[i] = at < end ? at : end;
            at = i + 1 < j && at < end ? at + tok_utf8_next((const unsigned char *)w + at, end - at, &c) : end;
            sb[i] = at;
        }
    }
}

/* Unigram's byte fallback spells one unknown piece in bytes: each of
 * those tokens covers the whole piece, as in `tokenizers`. */
static void fallback_runs(const struct tok_model *m, const int32_t *ids, size_t k, size_t *sa, size_t *sb) {
    for (size_t j = 0; m->byte_fallback && j < k;) {
        size_t e = j;
        while (e < k && ids[e] >= 0 && ids[e] < m->vocab.n_ids && m->vocab.text[ids[e]] &&
               m->vocab.len[ids[e]] == 6 && !memcmp(m->vocab.text[ids[e]], "<0x", 3))
            e++;
        for (size_t i = j; i < e; i++) sa[i] = sa[j], sb[i] = sb[e - 1];
        j = e > j ? e : j + 1;
    }
}

struct ctx {
    const struct gpuq_tok *t;
    const span *clean;          /* the cleaned text's bytes in the original */
    size_t clean_n;
    struct gpuq_tok_spans *out;
    struct tok_ids ids;
    span *map;                  /* scratch for one word */
    char *cand;
    size_t *owner;
    size_t cap;
    int16_t inverse[0x144];     /* ByteLevel's character -> its byte + 1 */
    size_t *sa, *sb, span_cap;  /* one word's token spans */
};

/* Original offsets of s[a, b), s being the normalized text of the segment
 * at seg in the cleaned text, aligned by norm (NULL: itself). */
static void to_original(const struct ctx *c, const span *norm, size_t norm_n, size_t seg, size_t a,
                        size_t b, int64_t *oa, int64_t *ob) {
    size_t x = a, y = b;
    if (norm) through(norm, norm_n, a, b, &x, &y);
    through(c->clean, c->clean_n, seg + x, seg + y, &x, &y);
    *oa = (int64_t)x, *ob = (int64_t)y;
}

/* The words of s[p, p + len) (no added token in it): pre-tokenized,
 * located, tokenized, each token's span pushed. */
static int words_of(struct ctx *c, const struct tok_buf *s, const span *norm, size_t seg, size_t p,
                    size_t len, size_t head) {
    struct tok_pieces words = {0};
    int result = tok_pieces_add(&words, s->s + p, len, head, -1);
    if (result == 0 && c->t->pretok) result = tok_pretok_apply(c->t->pretok, &words);
    size_t cursor = p;
    for (size_t i = 0; result == 0 && i < words.n; i++) {
        const char *w = words.text.s + words.v[i].off;
        size_t n = words.v[i].len;
        if (n > c->cap) {
            size_t cap = n * 2;
            span *m = realloc(c->map, cap * sizeof(*m));
            if (m) c->map = m;
            char *cd = realloc(c->cand, cap);
            if (cd) c->cand = cd;
            size_t *ow = realloc(c->owner, cap * sizeof(*ow));
            if (ow) c->owner = ow;
            if (!m || !cd || !ow) {
                result = -1;
                break;
            }
            c->cap = cap;
        }
        size_t end = locate(w, n, s->s, cursor, p + len, c->map, c->cand, c->owner, c->inverse);
        if (end > cursor) cursor = end;
        c->ids.n = 0;
        if ((result = tok_model_tokenize(&c->t->model, w, n, &c->ids)) != 0) break;
        if (c->ids.n > c->span_cap) {
            size_t cap = c->ids.n * 2;
            size_t *a = realloc(c->sa, cap * sizeof(*a)), *b = a ? realloc(c->sb, cap * sizeof(*b)) : NULL;
            if (a) c->sa = a;
            if (b) c->sb = b;
            if (!a || !b) {
                result = -1;
                break;
            }
            c->span_cap = cap;
        }
        token_spans(&c->t->model, c->ids.v, c->ids.n, w, n, c->sa, c->sb);
        if (c->t->model.kind == TOK_MODEL_UNIGRAM) fallback_runs(&c->t->model, c->ids.v, c->ids.n, c->sa, c->sb);
        for (size_t j = 0; result == 0 && j < c->ids.n; j++) {
            size_t x, y;    /* the word's bytes, then the normalized text's */
            through(c->map, n, c->sa[j], c->sb[j], &x, &y);
            int64_t oa, ob;
            to_original(c, norm, s->n, seg, x, y, &oa, &ob);
            result = push(c->out, c->ids.v[j], oa, ob, j == 0);
        }
    }
    tok_pieces_free(&words);
    return result;
}

/* One stretch of the cleaned text between raw added tokens, at seg. */
static int segment(struct ctx *c, const char *text, size_t len, size_t seg, size_t head) {
    struct tok_buf s = {0}, exact = {0};
    struct tok_pieces sub = {0};
    span *norm = NULL;
    size_t h = head;
    int result = tok_buf_put(&s, text, len) || tok_buf_put(&exact, text, len) ? -1 : 0;
    if (result == 0 && c->t->norm) {
        result = tok_norm_apply(c->t->norm, &exact, &h) || tok_norm_apply_aligned(c->t->norm, &s, &norm);
        if (result == 0 && (s.n != exact.n || memcmp(s.s, exact.s, s.n) != 0)) result = -1;  /* a bug */
    }
    if (result == 0) result = tok_added_split(c->t, 1, s.s, s.n, h, &sub);
    size_t cursor = 0;
    for (size_t j = 0; result == 0 && j < sub.n; j++) {
        const struct tok_piece *w = &sub.v[j];
        long at = find(s.s, cursor, s.n, sub.text.s + w->off, w->len);
        size_t p = at < 0 ? cursor : (size_t)at;
        cursor = p + w->len;
        if (w->id >= 0) {
            int64_t oa, ob;
            to_original(c, norm, s.n, seg, p, p + w->len, &oa, &ob);
            result = push(c->out, w->id, oa, ob, 1);
        } else {
            result = words_of(c, &s, norm, seg, p, w->len, w->head);
        }
    }
    tok_buf_free(&s);
    tok_buf_free(&exact);
    tok_pieces_free(&sub);
    free(norm);
    return result;
}

/* ByteLevel's and RobertaProcessing's trim_offsets, as `tokenizers` trims:
 * the spaces a token's text begins or ends with (U+0120 or white space; for
 * an added token, the text it matched with lstrip or rstrip) leave its
 * offsets, one character each, except a single leading one of the first
 * token where the processor adds a prefix space. */
static void trim(const struct gpuq_tok *t, const char *text, struct gpuq_tok_spans *o) {
    for (size_t i = 0; i < o->n; i++) {
        int added = 0;
        for (int k = 0; k < t->n_added && !added; k++) added = t->added[k].id == o->ids[i];
        int64_t a = o->start[i], b = o->end[i], lead = 0, tail = 0;
        const char *s = added ? text + a : gpuq_tok_token(t, o->ids[i]);
        size_t n = added ? (size_t)(b - a) : s ? strlen(s) : 0;
        int32_t c;
        for (size_t p = 0, k; p < n; p += k, lead++) {   /* spaces: U+0120 or white space */
            k = tok_utf8_next((const unsigned char *)s + p, n - p, &c);
            if (c != 0x120 && !tok_is_whitespace(c)) break;
        }
        for (size_t p = n; p > 0 && (size_t)tail < n; tail++) {
            size_t q = p - 1;
            while (q > 0 && ((unsigned char)s[q] & 0xc0) == 0x80) q--;
            tok_utf8_next((const unsigned char *)s + q, p - q, &c);
            if (c != 0x120 && !tok_is_whitespace(c)) break;
            p = q;
        }
        if (lead == 1 && (i == 0 || a == 0) && t->post.prefix_space) lead = 0;
        if (lead) o->start[i] = a + lead < b ? a + lead : b;
        if (tail && b >= tail) o->end[i] = b - tail > o->start[i] ? b - tail : o->start[i];
    }
}

int gpuq_tok_spans(const struct gpuq_tok *t, const char *text, size_t len, struct gpuq_tok_spans *out) {
    struct tok_buf raw = {0};
    struct tok_pieces segs = {0};
    struct ctx c = {.t = t, .out = out};
    span *clean = NULL;
    out->n = 0;
    int result = tok_utf8_clean(text, len, &raw);
    if (result == 0 && raw.n && !(clean = malloc(raw.n * sizeof(*clean)))) result = -1;
    for (size_t i = 0, o = 0; result == 0 && i < len;) {    /* U+FFFD's three bytes: the bytes it reads */
        int32_t ch;
        size_t k = tok_utf8_next((const unsigned char *)text + i, len - i, &ch);
        size_t m = ch == 0xfffd && !(k == 3 && !memcmp(text + i, "\xef\xbf\xbd", 3)) ? 3 : k;
        for (size_t j = 0; j < m && o < raw.n; j++, o++) clean[o][0] = (uint32_t)i, clean[o][1] = (uint32_t)(i + k);
        i += k;
    }
    c.clean = clean, c.clean_n = raw.n;
    for (int b = 0; b < 256; b++)
        if (tok_byte_char((unsigned char)b) < 0x144) c.inverse[tok_byte_char((unsigned char)b)] = (int16_t)(b + 1);
    int32_t c0;
    size_t head = raw.n ? tok_utf8_next((const unsigned char *)raw.s, raw.n, &c0) : 0;
    if (result == 0) result = tok_added_split(t, 0, raw.s, raw.n, head, &segs);
    size_t cursor = 0;
    for (size_t i = 0; result == 0 && i < segs.n; i++) {
        const struct tok_piece *g = &segs.v[i];
        long at = find(raw.s, cursor, raw.n, segs.text.s + g->off, g->len);
        size_t p = at < 0 ? cursor : (size_t)at;
        cursor = p + g->len;
        if (g->id >= 0) {
            int64_t oa, ob;
            to_original(&c, NULL, 0, p, 0, g->len, &oa, &ob);
            result = push(out, g->id, oa, ob, 1);
        } else {
            result = segment(&c, segs.text.s + g->off, g->len, p, g->head);
        }
    }
    if (result == 0 && t->post.trim_offsets) trim(t, text, out);
    tok_buf_free(&raw);
    tok_pieces_free(&segs);
    tok_ids_free(&c.ids);
    free(clean), free(c.map), free(c.cand), free(c.owner), free(c.sa), free(c.sb);
    return result;
}

int gpuq_tok_wrap(const struct gpuq_tok *t, const int32_t *ids, int n, int32_t *out) {
    return tok_post_apply(&t->post, ids, n, NULL, 0, out, NULL);
}
