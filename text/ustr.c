/* ustr.c -- see ustr.h. */
#include "text/ustr.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/unicode_age.h"   /* generated: unicode8_assigned, unicode9_assigned */

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

int tok_pieces_add(struct tok_pieces *p, const char *s, size_t n, size_t head, int id) {
    if (!n) return 0;
    if (grow((void **)&p->v, &p->cap, p->n + 1, sizeof *p->v) != 0) return -1;
    size_t off = p->text.n;
    if (tok_buf_put(&p->text, s, n) != 0) return -1;
    p->v[p->n++] = (struct tok_piece){off, n, head < n ? head : n, id};
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

/* Whether c lies in one of the sorted ranges t[0, n). */
static int in_ranges(const uint32_t (*t)[2], size_t n, int32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {   /* the first range ending at or after c */
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid][1] < (uint32_t)c) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && t[lo][0] <= (uint32_t)c;
}

int tok_assigned9(int32_t c) {
    return in_ranges(unicode9_assigned, sizeof unicode9_assigned / sizeof *unicode9_assigned, c);
}

static int script_lookup(int32_t c) {
    size_t lo = 0, hi = sizeof unicode9_scripts / sizeof *unicode9_scripts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (unicode9_scripts[mid][1] < (uint32_t)c) lo = mid + 1;
        else hi = mid;
    }
    return lo < sizeof unicode9_scripts / sizeof *unicode9_scripts && unicode9_scripts[lo][0] <= (uint32_t)c
               ? (int)unicode9_scripts[lo][2] : 0;
}

int tok_script9(int32_t c) {
    /* scripts changed since Unicode 9.0, as the reference shows them */
    if (c == 0x589 || c == 0x61c) return script_lookup('!');      /* Common then */
    if (c == 0x953 || c == 0x954) return script_lookup(0x915);    /* Devanagari then */
    return script_lookup(c);
}

int tok_category8(int32_t c) {
    /* categories changed since Unicode 8.0, as the reference shows them */
    static const struct { int32_t c; utf8proc_category_t cat; } changed[] = {
        {0x166d, UTF8PROC_CATEGORY_PO}, {0x1734, UTF8PROC_CATEGORY_MN}, {0x1885, UTF8PROC_CATEGORY_LO},
        {0x1886, UTF8PROC_CATEGORY_LO}, {0xa9bd, UTF8PROC_CATEGORY_MC}, {0x111c9, UTF8PROC_CATEGORY_PO},
    };
    if (!in_ranges(unicode8_assigned, sizeof unicode8_assigned / sizeof *unicode8_assigned, c))
        return UTF8PROC_CATEGORY_CN;
    for (size_t i = 0; i < sizeof changed / sizeof *changed; i++)
        if (changed[i].c == c) return changed[i].cat;
    return utf8proc_category(c);
}

/* ASCII punctuation (so $ + < = > ^ ` | ~ too) and every P* character. */
int tok_is_punct(int32_t c) {
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) ||
               (c >= 0x7b && c <= 0x7e);
    int cat = tok_category8(c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

int tok_is_numeric(int32_t c) {
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

int tok_is_mark(int32_t c) {
    if (c == 0x1cf2 || c == 0x1cf3) return 1;   /* marks in 9.0, letters since */
    if (!tok_assigned9(c) || c == 0x111c9) return 0;   /* punctuation in 9.0 */
    utf8proc_category_t cat = utf8proc_category(c);
    return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_ME;
}
