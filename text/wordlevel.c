/* wordlevel.c -- the WordLevel model: a piece is its vocabulary id, or the
 * unknown token's (an error when the vocabulary lacks that too). */
#include <stdio.h>
#include <string.h>

#include "text/model.h"

int tok_wordlevel_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out) {
    int32_t id = gpuq_vocab_find(&m->vocab, s, n);
    if (id < 0) id = m->unk_id;
    return id < 0 ? -1 : tok_ids_push(out, id);
}

int tok_wordlevel_parse(struct tok_model *m, json_t *j, char *err, size_t errlen) {
    if (tok_model_vocab(m, json_object_get(j, "vocab"), err, errlen) != 0) return -1;
    const char *unk = json_string_value(json_object_get(j, "unk_token"));
    if (!unk) unk = "<unk>";
    m->unk_id = gpuq_vocab_find(&m->vocab, unk, strlen(unk));
    return 0;
}
