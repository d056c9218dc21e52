/* unigram.c -- the Unigram model: the Viterbi path of highest total score
 * over the vocabulary's pieces, as `tokenizers` computes it (a character no
 * piece starts with costs the lowest score less 10 and is the unknown token;
 * unknown runs fuse into one; byte_fallback spells an unknown run as
 * <0xXX> pieces when all of them exist). The pieces starting at a position
 * are found by narrowing a byte-sorted list of the vocabulary. */
#define _GNU_SOURCE   /* qsort_r */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/model.h"

static int by_text(const void *pa, const void *pb, void *ctx) {
    const struct tok_model *m = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    size_t la = m->lens[a], lb = m->lens[b];
    int c = memcmp(m->vocab.text[a], m->vocab.text[b], la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

/* The byte at depth d of the piece at sorted[i], -1 past its end. */
static int byte_at(const struct tok_model *m, int i, size_t d) {
    int32_t id = m->sorted[i];
    return m->lens[id] > d ? (unsigned char)m->vocab.text[id][d] : -1;
}

/* The first index in [lo, hi) whose byte at d is >= c (or > c when after). */
static int bound(const struct tok_model *m, int lo, int hi, size_t d, int c, int after) {
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int b = byte_at(m, mid, d);
        if (after ? b <= c : b < c) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

struct node {
    double score;
    int32_t id;
    int start;   /* -1: not reached */
};

static int push_piece(const struct tok_model *m, const char *s, size_t n, int32_t id,
                      struct tok_ids *out) {
    if (id != m->unk_id || id < 0) return tok_ids_push(out, id);
    int32_t found = gpuq_vocab_find(&m->vocab, s, n);
    if (found >= 0) return tok_ids_push(out, found);   /* the literal unknown token's text */
    if (m->byte_fallback) {
        size_t mark = out->n;
        for (size_t i = 0; i < n; i++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", (unsigned char)s[i]);
            int32_t b = gpuq_vocab_find(&m->vocab, name, 6);
            if (b < 0) { out->n = mark; break; }
            if (tok_ids_push(out, b) != 0) return -1;
        }
        if (out->n > mark) return 0;
    }
    return tok_ids_push(out, m->unk_id);
}

int tok_unigram_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out) {
    struct node *best = malloc((n + 1) * sizeof *best);
    if (!best) return -1;
    for (size_t i = 0; i <= n; i++) best[i] = (struct node){0, -1, -1};
    best[0].start = 0;
    double unk_score = m->min_score - 10.0;
    int result = 0;
    for (size_t at = 0; at < n;) {
        int32_t c;
        size_t mblen = tok_utf8_next((const unsigned char *)s + at, n - at, &c);
        double here = best[at].score;
        int single = 0, lo = 0, hi = m->n_sorted;
        for (size_t d = 0; at + d < n && lo < hi; d++) {
            int byte = (unsigned char)s[at + d];
            lo = bound(m, lo, hi, d, byte, 0);
            hi = bound(m, lo, hi, d, byte, 1);
            if (lo >= hi || m->lens[m->sorted[lo]] != d + 1) continue;
            int32_t id = m->sorted[lo];   /* the piece s[at, at + d + 1) itself */
            struct node *t = &best[at + d + 1];
            double cand = here + m->scores[id];
            if (t->start < 0 || cand > t->score) *t = (struct node){cand, id, (int)at};
            if (d + 1 == mblen) single = 1;
        }
        if (!single) {
            struct node *t = &best[at + mblen];
            double cand = here + unk_score;
            if (m->unk_id < 0) { result = -1; break; }
            if (t->start < 0 || cand > t->score) *t = (struct node){cand, m->unk_id, (int)at};
        }
        at += mblen;
    }
    /* back from the end; adjacent unknown pieces fuse into one */
    struct path { size_t a, b; int32_t id; } *path = result == 0 ? malloc((n + 1) * sizeof *path) : NULL;
    size_t k = 0;
    if (result == 0 && !path) result = -1;
    for (size_t end = n; result == 0 && end > 0;) {
        size_t start = (size_t)best[end].start;
        int32_t id = best[end].id;
        if (id == m->unk_id && k && path[k - 1].id == m->unk_id) path[k - 1].a = start;
        else path[k++] = (struct path){start, end, id};
        end = start;
    }
    for (size_t i = k; result == 0 && i-- > 0;)
        result = push_piece(m, s + path[i].a, path[i].b - path[i].a, path[i].id, out);
    free(path);
    free(best);
    return result;
}

/* The score as `tokenizers` reads it: serde_json (without float_roundtrip)
 * turns the decimal digits into a u64 significand and divides or multiplies
 * it by a power of ten, which can be an ulp off the nearest double; so equal
 * Viterbi paths tie as they do there. The digits are the shortest that give
 * back the nearest double, which is what Python and serde_json write. */
static int round_trips(double d, int digits, char *buf, size_t len) {
    snprintf(buf, len, "%.*e", digits - 1, d);
    return strtod(buf, NULL) == d;
}

static double serde_f64(double d) {
    char buf[40];
    int p = 15;   /* scores mostly need 15 to 17 digits */
    while (p < 17 && !round_trips(d, p, buf, sizeof buf)) p++;
    if (p == 15)
        while (p > 1 && round_trips(d, p - 1, buf, sizeof buf)) p--;
    snprintf(buf, sizeof buf, "%.*e", p - 1, d);
    uint64_t sig = 0;
    int digits = 0, neg = buf[0] == '-';
    const char *c = buf + neg;
    for (; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9') { sig = sig * 10 + (uint64_t)(*c - '0'); digits++; }
    int exp = (*c == 'e' ? atoi(c + 1) : 0) - (digits - 1);
    double f = (double)sig;
    while (exp < -308 && f != 0) { f /= 1e308; exp += 308; }
    if (exp > 308) return d;
    snprintf(buf, sizeof buf, "1e%d", exp < 0 ? -exp : exp);
    double pow = strtod(buf, NULL);
    f = exp >= 0 ? f * pow : f / pow;
    return neg ? -f : f;
}

int tok_unigram_parse(struct tok_model *m, json_t *j, char *err, size_t errlen) {
    json_t *vocab = json_object_get(j, "vocab"), *unk = json_object_get(j, "unk_id");
    size_t n = json_array_size(vocab);
    if (!json_is_array(vocab) || n == 0 || n > 1 << 24) {
        snprintf(err, errlen, "tokenizer.json: Unigram vocab is not a list of [piece, score]");
        return -1;
    }
    if (gpuq_vocab_init(&m->vocab, (int)n) != 0 || !(m->scores = calloc(n, sizeof *m->scores)) ||
        !(m->lens = calloc(n, sizeof *m->lens)) || !(m->sorted = malloc(n * sizeof *m->sorted))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    m->min_score = DBL_MAX;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(vocab, i), *piece = json_array_get(e, 0), *score = json_array_get(e, 1);
        if (!json_is_string(piece) || !json_is_number(score) ||
            gpuq_vocab_add(&m->vocab, json_string_value(piece), json_string_length(piece), (int)i) != 0) {
            snprintf(err, errlen, "tokenizer.json: bad Unigram piece %zu", i);
            return -1;
        }
        m->scores[i] = serde_f64(json_number_value(score));
        if (m->scores[i] < m->min_score) m->min_score = m->scores[i];
    }
    for (int i = 0; i < m->vocab.n_ids && i < (int)n; i++)   /* a repeated piece keeps its last id */
        if (m->vocab.text[i]) {
            m->lens[i] = m->vocab.len[i];
            m->sorted[m->n_sorted++] = i;
        }
    qsort_r(m->sorted, (size_t)m->n_sorted, sizeof *m->sorted, by_text, m);
    m->unk_id = -1;
    if (json_is_integer(unk)) {
        if (json_integer_value(unk) < 0 || (size_t)json_integer_value(unk) >= n) {
            snprintf(err, errlen, "tokenizer.json: Unigram unk_id is out of range");
            return -1;
        }
        m->unk_id = (int)json_integer_value(unk);
    }
    json_t *bf = json_object_get(j, "byte_fallback");
    m->byte_fallback = json_is_true(bf);
    return 0;
}
