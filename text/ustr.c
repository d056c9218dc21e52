/* ustr.c -- see ustr.h. */
#include "text/ustr.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * size);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

int tok_buf_put(struct tok_buf *b, const void *p, size_t n) {
    if (grow((void **)&b->s, &b->cap, b->n + n + 1, 1) != 0) return -1;
    if (n) memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}

int tok_buf_putc(struct tok_buf *b, int32_t c) {
    char u[4];
    return tok_buf_put(b, u, tok_utf8_put(c, u));
}

void tok_buf_free(struct tok_buf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

int tok_ids_push(struct tok_ids *ids, int32_t id) {
    if (grow((void **)&ids->v, &ids->cap, ids->n + 1, sizeof *ids->v) != 0) return -1;
    ids->v[ids->n++] = id;
    return 0;
}

void tok_ids_free(struct tok_ids *ids) {
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

int tok_pieces_add(struct tok_pieces *p, const char *s, size_t n, int first, int id) {
    if (!n) return 0;
    if (grow((void **)&p->v, &p->cap, p->n + 1, sizeof *p->v) != 0) return -1;
    size_t off = p->text.n;
    if (tok_buf_put(&p->text, s, n) != 0) return -1;
    p->v[p->n++] = (struct tok_piece){off, n, first, id};
    return 0;
}

void tok_pieces_free(struct tok_pieces *p) {
    tok_buf_free(&p->text);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* The WHATWG and Python "replace" rule: a maximal ill-formed subsequence
 * is one U+FFFD. */
size_t tok_utf8_next(const unsigned char *s, size_t n, int32_t *c) {
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

size_t tok_utf8_put(int32_t c, char *out) {
    return (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)out);
}

int tok_utf8_clean(const char *s, size_t n, struct tok_buf *out) {
    out->n = 0;
    if (tok_buf_put(out, "", 0) != 0) return -1;
    for (size_t i = 0; i < n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s + i, n - i, &c);
        if (c == 0xfffd ? tok_buf_putc(out, c) : tok_buf_put(out, s + i, k)) return -1;
        i += k;
    }
    return 0;
}

int32_t *tok_decode(const char *s, size_t n, size_t *count) {
    int32_t *v = malloc((n + 1) * sizeof *v);
    if (!v) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; k++) i += tok_utf8_next((const unsigned char *)s + i, n - i, &v[k]);
    *count = k;
    return v;
}

int tok_is_whitespace(int32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* ASCII punctuation (so $ + < = > ^ ` | ~ too) and every Unicode P* character. */
int tok_is_punct(int32_t c) {
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) ||
               (c >= 0x7b && c <= 0x7e);
    utf8proc_category_t cat = utf8proc_category(c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

int tok_is_numeric(int32_t c) {
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

int tok_is_mark(int32_t c) {
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_ME;
}
