/* added.c -- added tokens as `tokenizers` matches them: leftmost-longest,
 * non-overlapping, the normalized ones in the normalized text and the others
 * in the raw text; single_word wants no word character on either side,
 * lstrip and rstrip take the whitespace beside the token into it. */
#define _GNU_SOURCE   /* qsort_r */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "text/tokenizer_int.h"

int tok_token_to_id(const struct gpuq_tok *t, const char *text, size_t len) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].text, text, len) == 0) return t->added[i].id;
    return gpuq_vocab_find(&t->model.vocab, text, len);
}

int tok_added_add(struct gpuq_tok *t, const char *text, int special, int single_word, int lstrip,
                  int rstrip, int normalized) {
    size_t len = strlen(text);
    if (!len) return 0;
    int id = tok_token_to_id(t, text, len), k = 0;
    while (k < t->n_added && !(t->added[k].len == len && memcmp(t->added[k].text, text, len) == 0)) k++;
    if (k == t->n_added) {
        struct tok_added *na = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *na);
        if (!na) return -1;
        t->added = na;
        memset(&na[k], 0, sizeof na[k]);
        if (!(na[k].text = strdup(text))) return -1;
        na[k].len = len;
        t->n_added++;
    }
    struct tok_added *a = &t->added[k];
    a->id = id >= 0 ? id : t->next_id++;
    a->special = special, a->single_word = single_word, a->lstrip = lstrip, a->rstrip = rstrip;
    a->normalized = normalized;
    free(a->match);
    struct tok_buf m = {0};
    if (tok_buf_put(&m, text, len) != 0 || (normalized && t->norm && tok_norm_apply(t->norm, &m, NULL) != 0)) {
        tok_buf_free(&m);
        a->match = NULL;
        return -1;
    }
    a->match = m.s;
    a->match_len = m.n;
    return 0;
}

static int by_first_byte(const void *pa, const void *pb, void *ctx) {
    const struct tok_added *v = ctx, *a = &v[*(const int *)pa], *b = &v[*(const int *)pb];
    unsigned char fa = a->match_len ? (unsigned char)a->match[0] : 0;
    unsigned char fb = b->match_len ? (unsigned char)b->match[0] : 0;
    if (fa != fb) return fa - fb;
    return (a->match_len < b->match_len) - (a->match_len > b->match_len);   /* longest first */
}

static int build_set(struct gpuq_tok *t, int normalized, struct tok_added_set *set) {
    free(set->order);
    memset(set, 0, sizeof *set);
    if (!(set->order = malloc((size_t)(t->n_added + 1) * sizeof *set->order))) return -1;
    int n = 0;
    for (int i = 0; i < t->n_added; i++)
        if (!t->added[i].normalized == !normalized && t->added[i].match_len) set->order[n++] = i;
    qsort_r(set->order, (size_t)n, sizeof *set->order, by_first_byte, t->added);
    for (int b = 0, i = 0; b < 256; b++) {
        set->start[b] = i;
        while (i < n && (unsigned char)t->added[set->order[i]].match[0] == b) i++;
        set->start[b + 1] = i;
    }
    return 0;
}

int tok_added_index(struct gpuq_tok *t) {
    return build_set(t, 0, &t->raw_set) || build_set(t, 1, &t->norm_set) ? -1 : 0;
}

/* Rust regex's \w: Alphabetic, marks, Nd, Pc and the joiners. */
static int is_word(int32_t c) {
    utf8proc_category_t cat = utf8proc_category(c);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_ME) || cat == UTF8PROC_CATEGORY_ND ||
           cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_PC || c == 0x200c || c == 0x200d ||
           (c >= 0x24b6 && c <= 0x24e9) || (c >= 0x1f130 && c <= 0x1f149) ||
           (c >= 0x1f150 && c <= 0x1f169) || (c >= 0x1f170 && c <= 0x1f189);
}

static int32_t char_before(const char *s, size_t at) {
    size_t p = at - 1;
    while (p > 0 && ((unsigned char)s[p] & 0xc0) == 0x80) p--;
    int32_t c;
    tok_utf8_next((const unsigned char *)s + p, at - p, &c);
    return c;
}

static int32_t char_at(const char *s, size_t n, size_t at) {
    int32_t c;
    tok_utf8_next((const unsigned char *)s + at, n - at, &c);
    return c;
}

/* The longest token of set matching at s + p, or -1. */
static int match_at(const struct gpuq_tok *t, const struct tok_added_set *set, const char *s,
                    size_t n, size_t p) {
    unsigned char b = (unsigned char)s[p];
    for (int i = set->start[b]; i < set->start[b + 1]; i++) {
        const struct tok_added *a = &t->added[set->order[i]];
        if (a->match_len <= n - p && memcmp(s + p, a->match, a->match_len) == 0) return set->order[i];
    }
    return -1;
}

int tok_added_split(const struct gpuq_tok *t, int normalized, const char *s, size_t n, size_t head,
                    struct tok_pieces *out) {
    const struct tok_added_set *set = normalized ? &t->norm_set : &t->raw_set;
    size_t done = 0;   /* start_offset: the text before it is cut */
    for (size_t p = 0; p < n;) {
        int k = set->order && set->start[256] ? match_at(t, set, s, n, p) : -1;
        if (k < 0) {
            if (!set->order || !set->start[256]) break;
            p++;
            continue;
        }
        const struct tok_added *a = &t->added[k];
        size_t start = p, stop = p + a->match_len;
        p = stop;
        if (a->single_word && ((start > 0 && is_word(char_before(s, start))) ||
                               (stop < n && is_word(char_at(s, n, stop)))))
            continue;
        if (a->lstrip) {
            while (start > done && tok_is_whitespace(char_before(s, start))) {
                size_t q = start - 1;
                while (q > 0 && ((unsigned char)s[q] & 0xc0) == 0x80) q--;
                start = q;
            }
        }
        if (a->rstrip)
            while (stop < n && tok_is_whitespace(char_at(s, n, stop)))
                stop += tok_utf8_next((const unsigned char *)s + stop, n - stop, &(int32_t){0});
        if (start < done) start = done;   /* an earlier rstrip took it */
        if (tok_pieces_add(out, s + done, start - done, head > done ? head - done : 0, -1) ||
            tok_pieces_add(out, s + start, stop - start, 0, a->id))
            return -1;
        done = stop;
    }
    return tok_pieces_add(out, s + done, n - done, head > done ? head - done : 0, -1);
}
