/* vocab.c -- see vocab.h. */
#include "text/vocab.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_ID = 1 << 24 };

static uint64_t hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

int gpuq_vocab_init(struct gpuq_vocab *v, int max_tokens) {
    memset(v, 0, sizeof *v);
    if (max_tokens < 0 || max_tokens > MAX_ID) return -1;
    size_t n = 16;
    while (n < (size_t)max_tokens * 2) n *= 2;
    v->slots = calloc(n, sizeof *v->slots);
    if (!v->slots) return -1;
    v->n_slots = n;
    return 0;
}

/* The slot holding text, or the empty slot where it would go. */
static size_t probe(const struct gpuq_vocab *v, const char *s, size_t n) {
    size_t i = hash(s, n) & (v->n_slots - 1);
    for (;; i = (i + 1) & (v->n_slots - 1)) {
        int32_t e = v->slots[i];
        if (!e) return i;
        if (v->len[e - 1] == n && memcmp(v->text[e - 1], s, n) == 0) return i;
    }
}

int gpuq_vocab_add(struct gpuq_vocab *v, const char *text, size_t len, int id) {
    if (id < 0 || id >= MAX_ID || (size_t)v->n_tokens * 2 + 2 > v->n_slots) return -1;
    if (len > UINT32_MAX) return -1;
    if (id >= v->n_ids) {
        int n = v->n_ids ? v->n_ids : 64;
        while (n <= id) n *= 2;
        char **nt = realloc(v->text, (size_t)n * sizeof *nt);
        if (!nt) return -1;
        memset(nt + v->n_ids, 0, (size_t)(n - v->n_ids) * sizeof *nt);
        v->text = nt;
        uint32_t *nl = realloc(v->len, (size_t)n * sizeof *nl);
        if (!nl) return -1;
        memset(nl + v->n_ids, 0, (size_t)(n - v->n_ids) * sizeof *nl);
        v->len = nl;
        v->n_ids = n;
    }
    if (id >= v->size) v->size = id + 1;
    size_t i = probe(v, text, len);
    if (v->slots[i]) {   /* re-added: the text moves to the new id */
        int old = v->slots[i] - 1;
        if (old == id) return 0;
        if (v->text[id]) return -1;   /* two texts on one id */
        v->text[id] = v->text[old];
        v->len[id] = v->len[old];
        v->text[old] = NULL;
        v->len[old] = 0;
        v->slots[i] = id + 1;
        return 0;
    }
    if (v->text[id]) return -1;
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, text, len);
    copy[len] = 0;
    v->text[id] = copy;
    v->len[id] = (uint32_t)len;
    v->slots[i] = id + 1;
    v->n_tokens++;
    return 0;
}

int gpuq_vocab_find(const struct gpuq_vocab *v, const char *text, size_t len) {
    if (!v->n_slots) return -1;
    int32_t e = v->slots[probe(v, text, len)];
    return e ? e - 1 : -1;
}

void gpuq_vocab_free(struct gpuq_vocab *v) {
    if (!v) return;
    for (int i = 0; i < v->n_ids; i++) free(v->text[i]);
    free(v->text);
    free(v->len);
    free(v->slots);
    memset(v, 0, sizeof *v);
}
