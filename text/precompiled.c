/* precompiled.c -- see precompiled.h. The file is [u32 trie size in bytes,
 * little-endian][trie units][replacement strings]. */
#include "text/precompiled.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Standard base64 with optional '=' padding; NULL on a bad character. */
static unsigned char *b64_decode(const char *s, size_t n, size_t *out_len) {
    unsigned char *out = malloc(n / 4 * 3 + 3);
    if (!out) return NULL;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') break;
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) { free(out); return NULL; }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (unsigned char)(acc >> bits);
        }
    }
    *out_len = k;
    return out;
}

int tok_charsmap_parse(struct tok_charsmap *cm, const char *b64, size_t len, char *err,
                       size_t errlen) {
    memset(cm, 0, sizeof *cm);
    size_t n;
    unsigned char *raw = b64_decode(b64, len, &n);
    if (!raw) {
        snprintf(err, errlen, "tokenizer.json: precompiled_charsmap is not base64");
        return -1;
    }
    uint32_t trie = n >= 4 ? (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 |
                                 (uint32_t)raw[3] << 24 : 0;
    if (n < 4 || trie % 4 || trie == 0 || trie > n - 4) {
        snprintf(err, errlen, "tokenizer.json: precompiled_charsmap is malformed");
        free(raw);
        return -1;
    }
    cm->n_units = trie / 4;
    cm->norm_len = n - 4 - trie;
    cm->units = malloc(trie);
    cm->norm = malloc(cm->norm_len + 1);
    if (!cm->units || !cm->norm) {
        snprintf(err, errlen, "out of memory");
        free(raw);
        tok_charsmap_free(cm);
        return -1;
    }
    for (size_t i = 0; i < cm->n_units; i++) {
        const unsigned char *u = raw + 4 + 4 * i;
        cm->units[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(cm->norm, raw + 4 + trie, cm->norm_len);
    cm->norm[cm->norm_len] = 0;
    free(raw);
    return 0;
}

void tok_charsmap_free(struct tok_charsmap *cm) {
    free(cm->units);
    free(cm->norm);
    memset(cm, 0, sizeof *cm);
}

/* darts-clone's unit fields */
static size_t unit_offset(uint32_t u) { return (size_t)(u >> 10) << ((u & (1u << 9)) >> 6); }
static uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xff); }
static int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }

/* The replacement of the shortest key that prefixes s[0, n) (what
 * `tokenizers` takes: the first of the common-prefix results), or NULL. */
static const char *transform(const struct tok_charsmap *cm, const char *s, size_t n) {
    size_t pos = 0;
    pos ^= unit_offset(cm->units[0]);
    for (size_t i = 0; i < n && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        pos ^= c;
        if (pos >= cm->n_units) return NULL;
        uint32_t u = cm->units[pos];
        if (unit_label(u) != c) return NULL;
        pos ^= unit_offset(u);
        if (pos >= cm->n_units) return NULL;
        if (unit_has_leaf(u)) {
            uint32_t v = unit_value(cm->units[pos]);
            return v < cm->norm_len ? cm->norm + v : NULL;
        }
    }
    return NULL;
}

static int put_transformed(const struct tok_charsmap *cm, const char *s, size_t n,
                           struct tok_buf *out) {
    const char *r = transform(cm, s, n);
    return r ? tok_buf_put(out, r, strlen(r)) : tok_buf_put(out, s, n);
}

/* One grapheme cluster: whole when under 6 bytes and mapped, else per character. */
static int apply_grapheme(const struct tok_charsmap *cm, const char *g, size_t n,
                          struct tok_buf *out) {
    if (n < 6) {
        const char *r = transform(cm, g, n);
        if (r) return tok_buf_put(out, r, strlen(r));
    }
    for (size_t i = 0; i < n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)g + i, n - i, &c);
        if (put_transformed(cm, g + i, k, out) != 0) return -1;
        i += k;
    }
    return 0;
}

int tok_charsmap_apply(const struct tok_charsmap *cm, const char *s, size_t n, struct tok_buf *out) {
    out->n = 0;
    if (tok_buf_put(out, "", 0) != 0) return -1;
    size_t start = 0;
    int32_t prev = -1, state = 0;
    for (size_t i = 0; i < n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s + i, n - i, &c);
        if (prev >= 0 && utf8proc_grapheme_break_stateful(prev, c, &state)) {
            if (apply_grapheme(cm, s + start, i - start, out) != 0) return -1;
            start = i;
        }
        prev = c;
        i += k;
    }
    return start < n ? apply_grapheme(cm, s + start, n - start, out) : 0;
}
