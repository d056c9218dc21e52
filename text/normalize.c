/* normalize.c -- see normalize.h. Each normalizer reads s and writes a new
 * string, swapped in at the end. */
#include "text/normalize.h"

#include "text/pretok.h"   /* tok_byte_char */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- BertNormalizer ---- */

/* clean_text drops NUL, U+FFFD and "other" characters (Cc, Cf, Co, Cs;
 * unassigned code points stay) but keeps \t \n \r. */
static int is_removed(int32_t c) {
    if (c == 0 || c == 0xfffd) return 1;
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    int cat = tok_category8(c);
    return cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
           cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
}

static int is_chinese(int32_t c) {
    return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) ||
           (c >= 0x20000 && c <= 0x2a6df) || (c >= 0x2a700 && c <= 0x2b73f) ||
           (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
           (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

/* Rust's char::to_lowercase: the simple mapping, except U+0130, the one
 * character whose full lower case is two (i + combining dot above). */
static int put_lower(struct tok_buf *o, int32_t c) {
    if (c == 0x130) return tok_buf_put(o, "i\xcc\x87", 3);
    return tok_buf_putc(o, utf8proc_tolower(c));
}

/* NFC, NFD, NFKC or NFKD with the Unicode 9.0 tables `tokenizers` has: a
 * later character (a starter that composes with nothing there) is kept as
 * it is and the runs between such characters are normalized apart. */
static int unicode_map(const struct tok_buf *s, int options, struct tok_buf *o) {
    for (size_t i = 0; i < s->n;) {
        size_t j = i;
        int32_t c = 0;
        size_t k = 0;
        while (j < s->n && (k = tok_utf8_next((const unsigned char *)s->s + j, s->n - j, &c), tok_assigned9(c)))
            j += k;
        if (j > i) {
            utf8proc_uint8_t *d = NULL;
            utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s->s + i, (utf8proc_ssize_t)(j - i), &d,
                                              (utf8proc_option_t)(UTF8PROC_STABLE | options));
            int result = n < 0 ? -1 : tok_buf_put(o, d, (size_t)n);
            free(d);
            if (result) return -1;
        }
        if (j < s->n && tok_buf_put(o, s->s + j, k)) return -1;
        i = j < s->n ? j + k : j;
    }
    return 0;
}

/* Drops the characters drop() accepts. */
static int filter(const struct tok_buf *s, int (*drop)(int32_t), struct tok_buf *o) {
    for (size_t i = 0; i < s->n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s->s + i, s->n - i, &c);
        if (!drop(c) && tok_buf_put(o, s->s + i, k) != 0) return -1;
        i += k;
    }
    return 0;
}

static int is_nonspacing(int32_t c) { return tok_category8(c) == UTF8PROC_CATEGORY_MN; }

static int bert(const struct tok_norm *n, const struct tok_buf *s, struct tok_buf *o) {
    struct tok_buf a = {0}, b = {0};
    int result = tok_buf_put(&a, "", 0);
    for (size_t i = 0; result == 0 && i < s->n;) {
        int32_t c;
        i += tok_utf8_next((const unsigned char *)s->s + i, s->n - i, &c);
        if (n->clean_text) {
            if (is_removed(c)) continue;
            if (tok_is_whitespace(c)) c = ' ';
        }
        if (n->handle_chinese && is_chinese(c))
            result = tok_buf_put(&a, " ", 1) || tok_buf_putc(&a, c) || tok_buf_put(&a, " ", 1);
        else
            result = tok_buf_putc(&a, c);
    }
    if (result == 0 && n->strip_accents) {
        result = unicode_map(&a, UTF8PROC_DECOMPOSE, &b);
        a.n = 0;
        if (result == 0) result = tok_buf_put(&a, "", 0) || filter(&b, is_nonspacing, &a);
    }
    for (size_t i = 0; result == 0 && i < a.n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)a.s + i, a.n - i, &c);
        result = n->lowercase ? put_lower(o, c) : tok_buf_put(o, a.s + i, k);
        i += k;
    }
    tok_buf_free(&a);
    tok_buf_free(&b);
    return result;
}

/* ---- the others ---- */

/* Nmt: ASCII controls dropped, some spaces, joiners and U+2581 read as ' '. */
static int nmt_drop(int32_t c) {
    return (c >= 1 && c <= 8) || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f || c == 0x8f || c == 0x9f;
}

static int nmt(const struct tok_buf *s, struct tok_buf *o) {
    for (size_t i = 0; i < s->n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s->s + i, s->n - i, &c);
        int space = c == 0x09 || c == 0x0a || c == 0x0c || c == 0x0d || c == 0x1680 || (c >= 0x200b && c <= 0x200f) ||
                    c == 0x2028 || c == 0x2029 || c == 0x2581 || c == 0xfeff || c == 0xfffd;
        if (!nmt_drop(c) && (space ? tok_buf_put(o, " ", 1) : tok_buf_put(o, s->s + i, k))) return -1;
        i += k;
    }
    return 0;
}

static int lowercase(const struct tok_buf *s, struct tok_buf *o) {
    for (size_t i = 0; i < s->n;) {
        int32_t c;
        i += tok_utf8_next((const unsigned char *)s->s + i, s->n - i, &c);
        if (put_lower(o, c) != 0) return -1;
    }
    return 0;
}

static int strip(const struct tok_norm *n, const struct tok_buf *s, struct tok_buf *o) {
    size_t a = 0, b = s->n;
    while (n->left && a < b) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s->s + a, b - a, &c);
        if (!tok_is_whitespace(c)) break;
        a += k;
    }
    while (n->right && b > a) {
        size_t p = b - 1;
        while (p > a && ((unsigned char)s->s[p] & 0xc0) == 0x80) p--;
        int32_t c;
        tok_utf8_next((const unsigned char *)s->s + p, b - p, &c);
        if (!tok_is_whitespace(c)) break;
        b = p;
    }
    return tok_buf_put(o, s->s + a, b - a);
}

static int replace(const struct tok_norm *n, const struct tok_buf *s, struct tok_buf *o) {
    struct tok_spans m = {0};
    int result = tok_regex_find(n->re, s->s, s->n, &m);
    size_t prev = 0;
    for (size_t i = 0; result == 0 && i < m.n; i++) {
        result = tok_buf_put(o, s->s + prev, m.v[i].a - prev) ||
                 tok_buf_put(o, n->text, strlen(n->text));
        prev = m.v[i].b;
    }
    if (result == 0) result = tok_buf_put(o, s->s + prev, s->n - prev);
    tok_spans_free(&m);
    return result;
}

int tok_norm_apply_one(const struct tok_norm *n, const struct tok_buf *s, struct tok_buf *o) {
    switch (n->kind) {
    case TOK_NORM_BERT: return bert(n, s, o);
    case TOK_NORM_NFC: return unicode_map(s, UTF8PROC_COMPOSE, o);
    case TOK_NORM_NFD: return unicode_map(s, UTF8PROC_DECOMPOSE, o);
    case TOK_NORM_NFKC: return unicode_map(s, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, o);
    case TOK_NORM_NFKD: return unicode_map(s, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, o);
    case TOK_NORM_LOWERCASE: return lowercase(s, o);
    case TOK_NORM_STRIP: return strip(n, s, o);
    case TOK_NORM_STRIP_ACCENTS: return filter(s, tok_is_mark, o);
    case TOK_NORM_REPLACE: return replace(n, s, o);
    case TOK_NORM_PREPEND:
        return (s->n ? tok_buf_put(o, n->text, strlen(n->text)) : 0) || tok_buf_put(o, s->s, s->n);
    case TOK_NORM_PRECOMPILED: return tok_charsmap_apply(&n->charsmap, s->s, s->n, o);
    case TOK_NORM_NMT: return nmt(s, o);
    case TOK_NORM_BYTE_LEVEL:   /* each byte as byte-level BPE's character */
        for (size_t i = 0; i < s->n; i++)
            if (tok_buf_putc(o, tok_byte_char((unsigned char)s->s[i]))) return -1;
        return 0;
    case TOK_NORM_SEQUENCE: break;
    }
    return -1;
}

/* Where the head (the bytes aligned to the original first character) ends
 * in o = n(s): o begins with n(head), every character of which `tokenizers`
 * aligns to the head; failing that, where a composition (or SentencePiece's
 * map, which replaces whole graphemes) merged the head into o's first
 * character, that character, and otherwise the part o and n(head) share. */
static int head_after(const struct tok_norm *n, const struct tok_buf *s, const struct tok_buf *o,
                      size_t *head) {
    if (!*head) return 0;
    struct tok_buf h = {0}, ho = {0};
    int result = tok_buf_put(&h, s->s, *head < s->n ? *head : s->n) || tok_buf_put(&ho, "", 0) ||
                 tok_norm_apply_one(n, &h, &ho);
    if (result == 0) {
        size_t k = 0;
        while (k < ho.n && k < o->n && ho.s[k] == o->s[k]) k++;
        if (k < ho.n) {
            int merges = n->kind == TOK_NORM_NFC || n->kind == TOK_NORM_NFKC || n->kind == TOK_NORM_PRECOMPILED;
            int32_t c;
            if (merges && o->n) k = tok_utf8_next((const unsigned char *)o->s, o->n, &c);
            else while (k > 0 && k < o->n && ((unsigned char)o->s[k] & 0xc0) == 0x80) k--;
        }
        *head = k;
    }
    tok_buf_free(&h);
    tok_buf_free(&ho);
    return result;
}

int tok_norm_apply(const struct tok_norm *n, struct tok_buf *s, size_t *head) {
    if (n->kind == TOK_NORM_SEQUENCE) {
        for (int i = 0; i < n->n_seq; i++)
            if (tok_norm_apply(&n->seq[i], s, head) != 0) return -1;
        return 0;
    }
    struct tok_buf o = {0};
    if (tok_buf_put(&o, "", 0) != 0 || tok_norm_apply_one(n, s, &o) != 0 || (head && head_after(n, s, &o, head) != 0)) {
        tok_buf_free(&o);
        return -1;
    }
    tok_buf_free(s);
    *s = o;
    return 0;
}

/* ---- reading tokenizer.json ---- */

static int flag(json_t *obj, const char *key, int dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static const struct { const char *name; enum tok_norm_kind kind; } kinds[] = {
    {"BertNormalizer", TOK_NORM_BERT}, {"NFC", TOK_NORM_NFC}, {"NFD", TOK_NORM_NFD},
    {"NFKC", TOK_NORM_NFKC}, {"NFKD", TOK_NORM_NFKD}, {"Lowercase", TOK_NORM_LOWERCASE},
    {"Strip", TOK_NORM_STRIP}, {"StripAccents", TOK_NORM_STRIP_ACCENTS},
    {"Replace", TOK_NORM_REPLACE}, {"Prepend", TOK_NORM_PREPEND},
    {"Precompiled", TOK_NORM_PRECOMPILED}, {"Nmt", TOK_NORM_NMT},
    {"ByteLevel", TOK_NORM_BYTE_LEVEL}, {"Sequence", TOK_NORM_SEQUENCE},
};

int tok_norm_parse(struct tok_norm *n, json_t *j, char *err, size_t errlen) {
    memset(n, 0, sizeof *n);
    const char *type = json_string_value(json_object_get(j, "type"));
    size_t k = 0, nk = sizeof kinds / sizeof *kinds;
    while (k < nk && !(type && strcmp(type, kinds[k].name) == 0)) k++;
    if (k == nk) {
        n->kind = TOK_NORM_NFC;   /* nothing to free */
        snprintf(err, errlen, "tokenizer.json: normalizer '%.40s' is not supported", type ? type : "(no type)");
        return -1;
    }
    n->kind = kinds[k].kind;
    switch (n->kind) {
    case TOK_NORM_BERT:
        n->clean_text = flag(j, "clean_text", 1);
        n->handle_chinese = flag(j, "handle_chinese_chars", 1);
        n->lowercase = flag(j, "lowercase", 1);
        n->strip_accents = flag(j, "strip_accents", n->lowercase);   /* null follows lowercase */
        return 0;
    case TOK_NORM_STRIP:
        n->left = flag(j, "strip_left", 1);
        n->right = flag(j, "strip_right", 1);
        return 0;
    case TOK_NORM_REPLACE: {
        json_t *content = json_object_get(j, "content");
        if (!json_is_string(content)) break;
        if (!(n->re = tok_pattern_parse(json_object_get(j, "pattern"), err, errlen))) return -1;
        return (n->text = strdup(json_string_value(content))) ? 0 : -1;
    }
    case TOK_NORM_PREPEND: {
        json_t *p = json_object_get(j, "prepend");
        if (!json_is_string(p)) break;
        return (n->text = strdup(json_string_value(p))) ? 0 : -1;
    }
    case TOK_NORM_PRECOMPILED: {
        json_t *cm = json_object_get(j, "precompiled_charsmap");
        if (!json_is_string(cm)) break;
        return tok_charsmap_parse(&n->charsmap, json_string_value(cm), json_string_length(cm), err, errlen);
    }
    case TOK_NORM_SEQUENCE: {
        json_t *list = json_object_get(j, "normalizers");
        if (!json_is_array(list)) break;
        n->seq = calloc(json_array_size(list) + 1, sizeof *n->seq);
        if (!n->seq) return -1;
        for (size_t i = 0; i < json_array_size(list); i++) {
            n->n_seq++;
            if (tok_norm_parse(&n->seq[i], json_array_get(list, i), err, errlen) != 0) return -1;
        }
        return 0;
    }
    default:
        return 0;
    }
    snprintf(err, errlen, "tokenizer.json: normalizer %s is malformed", type);
    return -1;
}

void tok_norm_free(struct tok_norm *n) {
    if (!n) return;
    tok_regex_free(n->re);
    free(n->text);
    tok_charsmap_free(&n->charsmap);
    for (int i = 0; i < n->n_seq; i++) tok_norm_free(&n->seq[i]);
    free(n->seq);
    memset(n, 0, sizeof *n);
}
