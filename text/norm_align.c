/* norm_align.c -- where each byte of a normalized text comes from, for
 * token offsets. `tokenizers` keeps an alignment per byte as it normalizes;
 * here each normalizer of a Sequence is aligned on its own and the
 * alignments composed:
 * - Prepend: the prepended text aligns to the first character; Strip: the
 *   kept bytes to themselves; Replace: the content's characters to the
 *   last characters of the text it replaced, the rest to itself;
 * - every other normalizer is applied to each run of non-space characters
 *   (and each run of spaces) alone, then to each character of the run: where those
 *   results, back to back, are the run's (BertNormalizer, Lowercase, NFD,
 *   NFKD, StripAccents, Nmt, ByteLevel, and NFC,
 *   NFKC and Precompiled wherever nothing composes across characters),
 *   each result byte aligns to its character, exactly; where they are not
 *   (a composition across characters), the run's bytes align to the whole
 *   run; a run whose result is not the whole result's there (a map of
 *   several characters across a space) is taken with up to 16 more
 *   characters; failing that, every byte aligns to the whole text. */
#include <stdlib.h>
#include <string.h>

#include "text/normalize.h"

typedef uint32_t span[2];

/* Normalizers that map each character on its own, so that an ASCII word
 * whose result is as long as itself maps byte for byte. */
static int per_char(enum tok_norm_kind k) {
    return k == TOK_NORM_BERT || k == TOK_NORM_LOWERCASE || k == TOK_NORM_NFD || k == TOK_NORM_NFKD ||
           k == TOK_NORM_NFC || k == TOK_NORM_NFKC || k == TOK_NORM_STRIP_ACCENTS || k == TOK_NORM_NMT;
}

/* n(s[a, b)) into out (emptied first). 0 or -1. */
static int norm_part(const struct tok_norm *n, const struct tok_buf *s, size_t a, size_t b,
                     struct tok_buf *in, struct tok_buf *out) {
    in->n = out->n = 0;
    return tok_buf_put(in, s->s + a, b - a) || tok_buf_put(out, "", 0) || tok_norm_apply_one(n, in, out) ? -1 : 0;
}

/* The unit s[a, b), whose result is o[pos, pos + m): each character's own
 * result where they tile it, else the whole unit. 0 or -1. */
static int align_unit(const struct tok_norm *n, const struct tok_buf *s, size_t a, size_t b,
                      const struct tok_buf *o, size_t pos, size_t m, span *align) {
    int ascii = per_char(n->kind) && m == b - a;
    for (size_t i = a; ascii && i < b; i++) ascii = !((unsigned char)s->s[i] & 0x80);
    if (ascii) {
        for (size_t k = 0; k < m; k++) align[pos + k][0] = (uint32_t)(a + k), align[pos + k][1] = (uint32_t)(a + k + 1);
        return 0;
    }
    struct tok_buf in = {0}, out = {0};
    size_t at = pos;
    int result = 0, tiled = 1;
    for (size_t i = a; result == 0 && tiled && i < b;) {
        int32_t c;
        size_t j = i + tok_utf8_next((const unsigned char *)s->s + i, b - i, &c);
        result = norm_part(n, s, i, j, &in, &out);
        tiled = result == 0 && at + out.n <= pos + m && memcmp(o->s + at, out.s, out.n) == 0;
        for (size_t k = 0; tiled && k < out.n; k++) align[at + k][0] = (uint32_t)i, align[at + k][1] = (uint32_t)j;
        at += out.n;
        i = j;
    }
    if (result == 0 && (!tiled || at != pos + m))
        for (size_t k = 0; k < m; k++) align[pos + k][0] = (uint32_t)a, align[pos + k][1] = (uint32_t)b;
    tok_buf_free(&in);
    tok_buf_free(&out);
    return result;
}

/* align[0, o->n) by units of s: runs of non-space characters and runs of
 * spaces. 0 when the units' results tile o, 1 when they do not, -1 on
 * no memory. */
static int by_units(const struct tok_norm *n, const struct tok_buf *s, const struct tok_buf *o,
                    span *align) {
    struct tok_buf in = {0}, out = {0};
    size_t pos = 0;
    int result = 0;
    for (size_t i = 0; result == 0 && i < s->n;) {
        int32_t c;
        size_t j = i + tok_utf8_next((const unsigned char *)s->s + i, s->n - i, &c);
        int space = tok_is_whitespace(c);
        for (size_t k; j < s->n; j += k) {
            k = tok_utf8_next((const unsigned char *)s->s + j, s->n - j, &c);
            if (tok_is_whitespace(c) != space) break;
        }
        result = norm_part(n, s, i, j, &in, &out);
        /* a unit whose result is not o's here (a map of several characters
         * across a space): with the next characters, up to 16 */
        for (int more = 0; result == 0 && more < 16 && j < s->n &&
                           (pos + out.n > o->n || memcmp(o->s + pos, out.s, out.n) != 0); more++) {
            j += tok_utf8_next((const unsigned char *)s->s + j, s->n - j, &c);
            result = norm_part(n, s, i, j, &in, &out);
        }
        if (result == 0 && (pos + out.n > o->n || memcmp(o->s + pos, out.s, out.n) != 0)) result = 1;
        if (result == 0) result = align_unit(n, s, i, j, o, pos, out.n, align);
        pos += out.n;
        i = j;
    }
    tok_buf_free(&in);
    tok_buf_free(&out);
    return result == 0 && pos != o->n ? 1 : result;
}

/* o = n(s) for one normalizer, aligned to s. 0 or -1. */
static int align_one(const struct tok_norm *n, const struct tok_buf *s, const struct tok_buf *o,
                     span *align) {
    if (!o->n) return 0;
    if (n->kind == TOK_NORM_REPLACE) {   /* the content aligns to the match, the rest to itself */
        struct tok_spans m = {0};
        if (tok_regex_find(n->re, s->s, s->n, &m) != 0) return -1;
        size_t prev = 0, at = 0, len = strlen(n->text);
        for (size_t i = 0; i <= m.n; i++) {
            size_t a = i < m.n ? m.v[i].a : s->n;
            for (size_t k = prev; k < a && at < o->n; k++, at++) align[at][0] = (uint32_t)k, align[at][1] = (uint32_t)k + 1;
            if (i == m.n) break;
            /* content character i takes matched character i + (matched - content), as
             * `tokenizers` aligns a replacement: a shorter content, the last ones */
            size_t mc = 0, cc = 0, b = m.v[i].b;
            for (size_t k = a; k < b; k++) mc += ((unsigned char)s->s[k] & 0xc0) != 0x80;
            for (size_t k = 0; k < len; k++) cc += ((unsigned char)n->text[k] & 0xc0) != 0x80;
            for (size_t k = 0, ci = 0; k < len && at < o->n; k++, at++) {
                if (k && ((unsigned char)n->text[k] & 0xc0) != 0x80) ci++;
                size_t want = mc >= cc ? ci + mc - cc : (ci < mc ? ci : mc ? mc - 1 : 0), x = a, idx = 0;
                while (x < b && idx < want) {
                    x++;
                    while (x < b && ((unsigned char)s->s[x] & 0xc0) == 0x80) x++;
                    idx++;
                }
                size_t y = x < b ? x + 1 : x;
                while (y < b && ((unsigned char)s->s[y] & 0xc0) == 0x80) y++;
                if (x >= b) x = a, y = b > a ? b : a + 1;     /* an empty match: where it is */
                align[at][0] = (uint32_t)x, align[at][1] = (uint32_t)y;
            }
            prev = m.v[i].b;
        }
        tok_spans_free(&m);
        return 0;
    }
    if (n->kind == TOK_NORM_PREPEND || n->kind == TOK_NORM_STRIP) {
        size_t lead = n->kind == TOK_NORM_PREPEND ? o->n - s->n : 0, at = 0;
        int32_t c;
        size_t first = tok_utf8_next((const unsigned char *)s->s, s->n, &c);
        if (n->kind == TOK_NORM_STRIP)      /* o is s without its ends: find where it starts */
            while (at + o->n <= s->n && memcmp(s->s + at, o->s, o->n) != 0) at++;
        for (size_t i = 0; i < o->n; i++) {
            if (i < lead) align[i][0] = 0, align[i][1] = (uint32_t)first;
            else align[i][0] = (uint32_t)(at + i - lead), align[i][1] = (uint32_t)(at + i - lead + 1);
        }
        return 0;
    }
    int r = by_units(n, s, o, align);
    if (r <= 0) return r;
    for (size_t i = 0; i < o->n; i++) align[i][0] = 0, align[i][1] = (uint32_t)s->n;
    return 0;
}

/* Applies n to s, composing *align (s's bytes in the original) with its own. */
static int apply(const struct tok_norm *n, struct tok_buf *s, span **align) {
    if (n->kind == TOK_NORM_SEQUENCE) {
        for (int i = 0; i < n->n_seq; i++)
            if (apply(&n->seq[i], s, align) != 0) return -1;
        return 0;
    }
    struct tok_buf o = {0};
    span *mine = NULL;
    int result = tok_buf_put(&o, "", 0) || tok_norm_apply_one(n, s, &o) ? -1 : 0;
    if (result == 0 && o.n && !(mine = calloc(o.n, sizeof(*mine)))) result = -1;
    if (result == 0 && s->n) result = align_one(n, s, &o, mine);
    for (size_t i = 0; result == 0 && s->n && i < o.n; i++) {
        uint32_t a = mine[i][0], b = mine[i][1];
        mine[i][0] = (*align)[a][0];
        mine[i][1] = (*align)[b > a ? b - 1 : a][1];
    }
    if (result != 0) {
        tok_buf_free(&o);
        free(mine);
        return -1;
    }
    free(*align);
    *align = mine;
    tok_buf_free(s);
    *s = o;
    return 0;
}

int tok_norm_apply_aligned(const struct tok_norm *n, struct tok_buf *s, uint32_t (**align)[2]) {
    *align = NULL;
    if (!s->n) return tok_norm_apply(n, s, NULL);
    span *a = malloc(s->n * sizeof(*a));
    if (!a) return -1;
    for (size_t i = 0; i < s->n; i++) a[i][0] = (uint32_t)i, a[i][1] = (uint32_t)i + 1;
    if (apply(n, s, &a) != 0) {
        free(a);
        return -1;
    }
    *align = a;
    return 0;
}
