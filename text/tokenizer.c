/* tokenizer.c -- BERT WordPiece as Hugging Face `tokenizers` does it.
 * See tokenizer.h for the pipeline; the comments here say where a choice
 * follows that library's code rather than the Unicode standard. */
#include "text/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tokenizer_int.h"

/* ---- Unicode classes, as the tokenizers crate defines them ---- */

/* Rust's char::is_whitespace: the White_Space property. */
static int is_whitespace(int32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* BertNormalizer's clean_text drops NUL, U+FFFD and "other" characters
 * (Cc, Cf, Co, Cs; unassigned code points stay) but keeps \t \n \r. */
static int is_removed(int32_t c) {
    if (c == 0 || c == 0xfffd) return 1;
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
           cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
}

static int is_chinese(int32_t c) {
    return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) ||
           (c >= 0x20000 && c <= 0x2a6df) || (c >= 0x2a700 && c <= 0x2b73f) ||
           (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
           (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

/* BertPreTokenizer isolates ASCII punctuation (so $ + < = > ^ ` | ~ too)
 * and every Unicode P* character. */
static int is_punct(int32_t c) {
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) ||
               (c >= 0x7b && c <= 0x7e);
    utf8proc_category_t cat = utf8proc_category(c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

/* ---- UTF-8 ---- */

/* Decodes one character at s[0, n); sets *c (U+FFFD for a maximal ill-formed
 * subsequence, the WHATWG and Python "replace" rule) and returns its length. */
static size_t utf8_next(const unsigned char *s, size_t n, int32_t *c) {
    unsigned b = s[0];
    int need;
    int32_t v, lo = 0x80, hi = 0xbf;
    if (b < 0x80) { *c = (int32_t)b; return 1; }
    if (b >= 0xc2 && b <= 0xdf) { need = 1; v = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) {
        need = 2; v = b & 0x0f;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;   /* no surrogates */
    } else if (b >= 0xf0 && b <= 0xf4) {
        need = 3; v = b & 0x07;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
    } else { *c = 0xfffd; return 1; }
    size_t i = 1;
    for (; need > 0; need--, i++) {
        if (i >= n || s[i] < lo || s[i] > hi) { *c = 0xfffd; return i; }
        v = (v << 6) | (s[i] & 0x3f);
        lo = 0x80, hi = 0xbf;
    }
    *c = v;
    return i;
}

static size_t utf8_put(int32_t c, char *out) {
    return (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)out);
}

/* ---- normalization: one chunk of raw text to code points ---- */

struct cps {
    int32_t *v;
    size_t n;
};

/* clean_text and the CJK padding, straight from the raw bytes. */
static int read_clean(const struct gpuq_tok *t, const char *s, size_t len, struct cps *out) {
    out->v = malloc((len * 3 + 1) * sizeof *out->v);
    if (!out->v) return -1;
    out->n = 0;
    for (size_t i = 0; i < len;) {
        int32_t c;
        i += utf8_next((const unsigned char *)s + i, len - i, &c);
        if (t->clean_text) {
            if (is_removed(c)) continue;
            if (is_whitespace(c)) c = ' ';
        }
        if (t->handle_chinese && is_chinese(c)) {
            out->v[out->n++] = ' ';
            out->v[out->n++] = c;
            out->v[out->n++] = ' ';
        } else {
            out->v[out->n++] = c;
        }
    }
    return 0;
}

/* NFD (with canonical reordering, so through utf8proc on the whole chunk),
 * then nonspacing marks dropped. */
static int strip_accents(struct cps *a) {
    char *u8 = malloc(a->n * 4 + 1);
    if (!u8) return -1;
    size_t n8 = 0;
    for (size_t i = 0; i < a->n; i++) n8 += utf8_put(a->v[i], u8 + n8);
    utf8proc_ssize_t cap = (utf8proc_ssize_t)a->n * 4 + 4, got;
    int32_t *d = NULL;
    for (;;) {
        int32_t *nd = realloc(d, (size_t)cap * sizeof *d);
        if (!nd) { free(d); free(u8); return -1; }
        d = nd;
        got = utf8proc_decompose((const utf8proc_uint8_t *)u8, (utf8proc_ssize_t)n8, d, cap,
                                 UTF8PROC_DECOMPOSE);
        if (got < 0 || got <= cap) break;
        cap = got;
    }
    free(u8);
    if (got < 0) { free(d); return -1; }   /* cannot happen: u8 is valid UTF-8 */
    size_t k = 0;
    for (utf8proc_ssize_t i = 0; i < got; i++)
        if (utf8proc_category(d[i]) != UTF8PROC_CATEGORY_MN) d[k++] = d[i];
    free(a->v);
    a->v = d;
    a->n = k;
    return 0;
}

/* Rust's char::to_lowercase: the simple mapping, except U+0130, the one
 * character whose full lower case is two (i + combining dot above). */
static int lower(struct cps *a) {
    int32_t *d = malloc((a->n * 2 + 1) * sizeof *d);
    if (!d) return -1;
    size_t k = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i] == 0x130) {
            d[k++] = 'i';
            d[k++] = 0x307;
        } else {
            d[k++] = utf8proc_tolower(a->v[i]);
        }
    }
    free(a->v);
    a->v = d;
    a->n = k;
    return 0;
}

/* ---- WordPiece ---- */

struct out {
    int32_t *ids;
    int n, cap;   /* cap: room for pieces, [SEP] excluded */
};

/* Greedy longest match over the word's characters w[0, n). Emits the pieces,
 * or one [UNK] when some position has no piece or the word is too long.
 * u8 and key are scratch for the word's UTF-8 and prefix + its rest, off for
 * the characters' byte offsets, pieces for the ids until the word is done. */
static void wordpiece(const struct gpuq_tok *t, const int32_t *w, size_t n, struct out *o,
                      char *u8, char *key, size_t *off, int32_t *pieces) {
    if (n > (size_t)t->max_word_chars) {
        o->ids[o->n++] = t->unk_id;
        return;
    }
    off[0] = 0;
    for (size_t i = 0; i < n; i++) off[i + 1] = off[i] + utf8_put(w[i], u8 + off[i]);
    int np = 0;
    for (size_t start = 0; start < n;) {
        const char *k = u8;
        size_t plen = 0;
        if (start) {   /* a continuation piece is looked up as prefix + text */
            memcpy(key, t->prefix, t->prefix_len);
            memcpy(key + t->prefix_len, u8 + off[start], off[n] - off[start]);
            k = key;
            plen = t->prefix_len;
        }
        int id = -1;
        size_t end = n;
        for (; end > start; end--)
            if ((id = gpuq_vocab_find(&t->vocab, k, plen + off[end] - off[start])) >= 0) break;
        if (id < 0) {
            o->ids[o->n++] = t->unk_id;
            return;
        }
        pieces[np++] = id;
        start = end;
    }
    for (int i = 0; i < np && o->n < o->cap; i++) o->ids[o->n++] = pieces[i];
}

/* Splits a normalized chunk on whitespace and punctuation; WordPiece on each word. */
static int pretokenize(const struct gpuq_tok *t, const struct cps *a, struct out *o) {
    size_t maxw = ((size_t)t->max_word_chars < a->n ? (size_t)t->max_word_chars : a->n) + 1;
    char *buf = malloc(2 * (t->prefix_len + maxw * 4));
    size_t *off = malloc((maxw + 1) * sizeof *off);
    int32_t *pieces = malloc(maxw * sizeof *pieces);
    if (!buf || !off || !pieces) { free(buf); free(off); free(pieces); return -1; }
    char *key = buf + t->prefix_len + maxw * 4;
    size_t i = 0;
    while (i < a->n && o->n < o->cap) {
        int32_t c = a->v[i];
        if (is_whitespace(c)) { i++; continue; }
        size_t j = i + 1;
        if (!is_punct(c))
            while (j < a->n && !is_whitespace(a->v[j]) && !is_punct(a->v[j])) j++;
        wordpiece(t, a->v + i, j - i, o, buf, key, off, pieces);
        i = j;
    }
    free(buf);
    free(off);
    free(pieces);
    return 0;
}

/* One run of text with no added token in it, in chunks cut at ASCII spaces
 * (a space survives every normalization step and ends a word, so cutting
 * there changes nothing), so a long text is read only as far as it fits. */
static int encode_plain(const struct gpuq_tok *t, const char *s, size_t len, struct out *o) {
    enum { CHUNK = 4096 };
    size_t pos = 0;
    while (pos < len && o->n < o->cap) {
        size_t end = pos + CHUNK < len ? pos + CHUNK : len;
        while (end < len && s[end] != ' ') end++;
        struct cps a;
        int result = read_clean(t, s + pos, end - pos, &a);
        if (result == 0 && t->strip_accents) result = strip_accents(&a);
        if (result == 0 && t->lowercase) result = lower(&a);
        if (result == 0) result = pretokenize(t, &a, o);
        free(a.v);
        if (result != 0) return -1;
        pos = end;
    }
    return 0;
}

/* The longest added token starting at s, or NULL. */
static const struct added_token *match_added(const struct gpuq_tok *t, const char *s, size_t n) {
    const struct added_token *best = NULL;
    for (int i = 0; i < t->n_added; i++) {
        const struct added_token *a = &t->added[i];
        if (a->len <= n && (!best || a->len > best->len) && memcmp(s, a->text, a->len) == 0)
            best = a;
    }
    return best;
}

int gpuq_tok_encode(const struct gpuq_tok *t, const char *text, size_t len, int max_length,
                    int32_t *ids) {
    if (max_length < 2) return -1;
    struct out o = {ids, 0, max_length - 1};
    ids[o.n++] = t->cls_id;
    size_t seg = 0;
    for (size_t p = 0; t->n_added && p < len && o.n < o.cap;) {
        const struct added_token *a = match_added(t, text + p, len - p);
        if (!a) { p++; continue; }
        if (encode_plain(t, text + seg, p - seg, &o) != 0) return -1;
        if (o.n < o.cap) ids[o.n++] = a->id;
        p += a->len;
        seg = p;
    }
    if (encode_plain(t, text + seg, len - seg, &o) != 0) return -1;
    ids[o.n++] = t->sep_id;
    return o.n;
}
