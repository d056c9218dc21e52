/* bpe.c -- the BPE model: a word starts as its characters (prefix on all but
 * the first, suffix on the last, <0xXX> bytes or the unknown token for a
 * character not in the vocabulary), then the pair of lowest merge rank is
 * merged, leftmost first, until none is left, as `tokenizers` does it with a
 * priority queue. Byte-level BPE is this model behind the ByteLevel
 * pre-tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/model.h"

/* ---- merges: (left id, right id) -> (rank, merged id), open addressing ---- */

struct tok_merge_map {
    uint64_t *keys;   /* pair + 1; 0 when empty */
    int32_t *rank, *id;
    size_t cap;
};

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static size_t slot(const struct tok_merge_map *mm, uint64_t key) {
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 20) & (mm->cap - 1);
    while (mm->keys[i] && mm->keys[i] != key) i = (i + 1) & (mm->cap - 1);
    return i;
}

static int merge_find(const struct tok_merge_map *mm, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
    size_t i = slot(mm, pair_key(a, b));
    if (!mm->keys[i]) return 0;
    *rank = mm->rank[i];
    *id = mm->id[i];
    return 1;
}

/* ---- the word and its queue of candidate merges ---- */

struct sym {
    int32_t id;
    int prev, next;   /* -1 at the ends */
    int alive;
};

struct cand {
    int32_t rank, id;
    int pos;
};

static int cand_less(struct cand a, struct cand b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

struct heap {
    struct cand *v;
    size_t n, cap;
};

static int heap_push(struct heap *h, struct cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        struct cand *v = realloc(h->v, cap * sizeof *v);
        if (!v) return -1;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i && cand_less(c, h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = c;
    return 0;
}

static struct cand heap_pop(struct heap *h) {
    struct cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && cand_less(h->v[c + 1], h->v[c])) c++;
        if (!cand_less(h->v[c], last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* A candidate for the pair starting at symbol pos, when it is a merge. */
static int offer(const struct tok_model *m, const struct sym *w, int pos, struct heap *h) {
    int32_t rank, id;
    if (pos < 0 || w[pos].next < 0 || !merge_find(m->merges, w[pos].id, w[w[pos].next].id, &rank, &id))
        return 0;
    return heap_push(h, (struct cand){rank, id, pos});
}

static int merge_all(const struct tok_model *m, struct sym *w, int n) {
    struct heap h = {0};
    int result = 0;
    for (int i = 0; i + 1 < n && result == 0; i++) result = offer(m, w, i, &h);
    while (result == 0 && h.n) {
        struct cand c = heap_pop(&h);
        struct sym *s = &w[c.pos];
        int32_t rank, id;
        if (!s->alive || s->next < 0 || !merge_find(m->merges, s->id, w[s->next].id, &rank, &id) ||
            id != c.id)
            continue;   /* stale: the pair changed since */
        struct sym *r = &w[s->next];
        s->id = c.id;
        r->alive = 0;
        s->next = r->next;
        if (r->next >= 0) w[r->next].prev = c.pos;
        result = offer(m, w, s->prev, &h);
        if (result == 0) result = offer(m, w, c.pos, &h);
    }
    free(h.v);
    return result;
}

/* ---- a word ---- */

struct word {
    struct sym *v;
    int n, cap;
};

static int add_sym(struct word *w, int32_t id) {
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        struct sym *v = realloc(w->v, (size_t)cap * sizeof *v);
        if (!v) return -1;
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n] = (struct sym){id, w->n - 1, -1, 1};
    if (w->n) w->v[w->n - 1].next = w->n;
    w->n++;
    return 0;
}

int tok_bpe_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out) {
    int32_t whole;
    if (m->ignore_merges && (whole = gpuq_vocab_find(&m->vocab, s, n)) >= 0) return tok_ids_push(out, whole);
    size_t plen = m->prefix ? strlen(m->prefix) : 0, slen = m->suffix ? strlen(m->suffix) : 0;
    struct word w = {0};
    char *key = malloc(plen + slen + 5);
    int unk_pending = 0, result = key ? 0 : -1;
    for (size_t i = 0; i < n && result == 0;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s + i, n - i, &c), kl = 0;
        if (i && plen) { memcpy(key, m->prefix, plen); kl = plen; }
        memcpy(key + kl, s + i, k);
        kl += k;
        i += k;
        if (i == n && slen) { memcpy(key + kl, m->suffix, slen); kl += slen; }
        int32_t id = gpuq_vocab_find(&m->vocab, key, kl);
        if (id >= 0) {
            if (unk_pending) result = add_sym(&w, m->unk_id);
            unk_pending = 0;
            if (result == 0) result = add_sym(&w, id);
            continue;
        }
        if (m->byte_fallback) {
            int32_t b[64];
            size_t j = 0;
            for (; j < kl && j < 64; j++) {
                char name[8];
                snprintf(name, sizeof name, "<0x%02X>", (unsigned char)key[j]);
                if ((b[j] = gpuq_vocab_find(&m->vocab, name, 6)) < 0) break;
            }
            if (j == kl) {   /* added before a pending unknown token, as `tokenizers` does */
                for (j = 0; j < kl && result == 0; j++) result = add_sym(&w, b[j]);
                continue;
            }
        }
        if (m->unk_id >= 0) {
            if (unk_pending && !m->fuse_unk) result = add_sym(&w, m->unk_id);
            unk_pending = 1;
        }
    }
    if (unk_pending && result == 0) result = add_sym(&w, m->unk_id);
    if (result == 0) result = merge_all(m, w.v, w.n);
    for (int i = 0; i < w.n && result == 0; i++)
        if (w.v[i].alive) result = tok_ids_push(out, w.v[i].id);
    free(w.v);
    free(key);
    return result;
}

/* ---- reading tokenizer.json ---- */

/* One merge: "a b" or ["a", "b"]. 0 or -1. */
static int merge_parts(json_t *e, const char **a, size_t *al, const char **b, size_t *bl) {
    if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
        json_is_string(json_array_get(e, 1))) {
        *a = json_string_value(json_array_get(e, 0));
        *al = json_string_length(json_array_get(e, 0));
        *b = json_string_value(json_array_get(e, 1));
        *bl = json_string_length(json_array_get(e, 1));
        return 0;
    }
    const char *s = json_string_value(e);
    size_t n = json_string_length(e);
    const char *sp = s ? memchr(s, ' ', n) : NULL;
    if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s))) return -1;
    *a = s;
    *al = (size_t)(sp - s);
    *b = sp + 1;
    *bl = n - *al - 1;
    return 0;
}

static int read_merges(struct tok_model *m, json_t *merges, char *err, size_t errlen) {
    size_t n = json_array_size(merges), plen = m->prefix ? strlen(m->prefix) : 0;
    struct tok_merge_map *mm = m->merges = calloc(1, sizeof *mm);
    if (!mm) return -1;
    mm->cap = 16;
    while (mm->cap < n * 2 + 2) mm->cap *= 2;
    mm->keys = calloc(mm->cap, sizeof *mm->keys);
    mm->rank = malloc(mm->cap * sizeof *mm->rank);
    mm->id = malloc(mm->cap * sizeof *mm->id);
    if (!mm->keys || !mm->rank || !mm->id) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char *joined = NULL;
    int result = 0;
    for (size_t i = 0; i < n && result == 0; i++) {
        const char *a, *b;
        size_t al, bl;
        int32_t ia = -1, ib = -1, ij = -1;
        if (merge_parts(json_array_get(merges, i), &a, &al, &b, &bl) == 0 && bl >= plen &&
            (joined = realloc(joined, al + bl + 1))) {
            memcpy(joined, a, al);
            memcpy(joined + al, b + plen, bl - plen);   /* the right part loses the prefix */
            ia = gpuq_vocab_find(&m->vocab, a, al);
            ib = gpuq_vocab_find(&m->vocab, b, bl);
            ij = gpuq_vocab_find(&m->vocab, joined, al + bl - plen);
        }
        if (ia < 0 || ib < 0 || ij < 0) {
            snprintf(err, errlen, "tokenizer.json: BPE merge %zu is malformed or not in the vocabulary", i);
            result = -1;
            break;
        }
        size_t k = slot(mm, pair_key(ia, ib));   /* a repeated pair takes the later rank */
        mm->keys[k] = pair_key(ia, ib);
        mm->rank[k] = (int32_t)i;
        mm->id[k] = ij;
    }
    free(joined);
    return result;
}

static char *opt_string(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    return json_is_string(v) && json_string_length(v) ? strdup(json_string_value(v)) : NULL;
}

int tok_bpe_parse(struct tok_model *m, json_t *j, char *err, size_t errlen) {
    json_t *vocab = json_object_get(j, "vocab"), *merges = json_object_get(j, "merges");
    json_t *dropout = json_object_get(j, "dropout");
    if (!json_is_object(vocab) || !json_is_array(merges)) {
        snprintf(err, errlen, "tokenizer.json: BPE needs a vocab object and a merges list");
        return -1;
    }
    if (json_is_number(dropout) && json_number_value(dropout) > 0) {
        snprintf(err, errlen, "tokenizer.json: BPE dropout is not supported");
        return -1;
    }
    if (tok_model_vocab(m, vocab, err, errlen) != 0) return -1;
    m->prefix = opt_string(j, "continuing_subword_prefix");
    m->suffix = opt_string(j, "end_of_word_suffix");
    m->fuse_unk = json_is_true(json_object_get(j, "fuse_unk"));
    m->byte_fallback = json_is_true(json_object_get(j, "byte_fallback"));
    m->ignore_merges = json_is_true(json_object_get(j, "ignore_merges"));
    m->unk_id = -1;
    const char *unk = json_string_value(json_object_get(j, "unk_token"));
    if (unk && (m->unk_id = gpuq_vocab_find(&m->vocab, unk, strlen(unk))) < 0) {
        snprintf(err, errlen, "tokenizer.json: BPE unk_token is not in the vocabulary");
        return -1;
    }
    return read_merges(m, merges, err, errlen);
}

void tok_bpe_free(struct tok_model *m) {
    if (!m->merges) return;
    free(m->merges->keys);
    free(m->merges->rank);
    free(m->merges->id);
    free(m->merges);
    m->merges = NULL;
}
