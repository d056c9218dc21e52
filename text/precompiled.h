/* precompiled.h -- SentencePiece's compiled character map (the Precompiled
 * normalizer of XLM-R, CamemBERT, mBART folders): a darts-clone double-array
 * trie over UTF-8 keys whose values are offsets of NUL-terminated
 * replacements, applied per grapheme cluster as `tokenizers` applies it. */
#ifndef GPUQ_TOK_PRECOMPILED_H
#define GPUQ_TOK_PRECOMPILED_H

#include <stddef.h>
#include <stdint.h>

#include "text/ustr.h"

struct tok_charsmap {
    uint32_t *units;
    size_t n_units;
    char *norm;
    size_t norm_len;
};

/* Reads the base64 text of "precompiled_charsmap". 0, or -1 with a reason. */
int tok_charsmap_parse(struct tok_charsmap *cm, const char *b64, size_t len, char *err,
                       size_t errlen);
/* Normalizes valid UTF-8 s[0, n) into out (emptied first). 0 or -1. */
int tok_charsmap_apply(const struct tok_charsmap *cm, const char *s, size_t n, struct tok_buf *out);
void tok_charsmap_free(struct tok_charsmap *cm);

#endif
