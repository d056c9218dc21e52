/* wordpiece.c -- the WordPiece model: greedy longest match from the left,
 * continuation pieces looked up as prefix + text, the unknown token for a
 * word with no cut or over max_input_chars_per_word characters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/model.h"

int tok_wordpiece_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out) {
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) chars += ((unsigned char)s[i] & 0xc0) != 0x80;
    if (chars > (size_t)m->max_word_chars) return tok_ids_push(out, m->unk_id);
    size_t plen = m->prefix ? strlen(m->prefix) : 0, mark = out->n;
    char *key = malloc(plen + n + 1);
    if (!key) return -1;
    if (plen) memcpy(key, m->prefix, plen);
    int result = 0;
    for (size_t start = 0; start < n && result == 0;) {
        const char *k = s + start;
        size_t extra = 0;
        if (start) {   /* a continuation piece is looked up as prefix + text */
            memcpy(key + plen, s + start, n - start);
            k = key;
            extra = plen;
        }
        int id = -1;
        size_t end = n;
        while (end > start) {
            if ((id = gpuq_vocab_find(&m->vocab, k, extra + end - start)) >= 0) break;
            do end--; while (end > start && ((unsigned char)s[end] & 0xc0) == 0x80);
        }
        if (id < 0) {   /* the whole word is unknown */
            out->n = mark;
            result = tok_ids_push(out, m->unk_id);
            break;
        }
        result = tok_ids_push(out, id);
        start = end;
    }
    free(key);
    return result;
}

int tok_wordpiece_parse(struct tok_model *m, json_t *j, char *err, size_t errlen) {
    if (tok_model_vocab(m, json_object_get(j, "vocab"), err, errlen) != 0) return -1;
    const char *unk = json_string_value(json_object_get(j, "unk_token"));
    if (!unk) unk = "[UNK]";
    if ((m->unk_id = gpuq_vocab_find(&m->vocab, unk, strlen(unk))) < 0) {
        snprintf(err, errlen, "tokenizer.json: unk_token is not in the vocabulary");
        return -1;
    }
    json_t *pfx = json_object_get(j, "continuing_subword_prefix");
    m->prefix = strdup(json_is_string(pfx) ? json_string_value(pfx) : "##");
    json_t *mc = json_object_get(j, "max_input_chars_per_word");
    m->max_word_chars = 100;
    if (json_is_integer(mc))
        m->max_word_chars = json_integer_value(mc) < 0 ? 0
                          : json_integer_value(mc) > 1 << 30 ? 1 << 30 : (int)json_integer_value(mc);
    if (!m->prefix) snprintf(err, errlen, "out of memory");
    return m->prefix ? 0 : -1;
}
