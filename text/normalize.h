/* normalize.h -- tokenizer.json's "normalizer": BertNormalizer, NFC, NFD,
 * NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, Precompiled,
 * Nmt, ByteLevel and Sequence, each as `tokenizers` applies it to a text. */
#ifndef GPUQ_TOK_NORMALIZE_H
#define GPUQ_TOK_NORMALIZE_H

#include <jansson.h>

#include "text/precompiled.h"
#include "text/regex.h"
#include "text/ustr.h"

enum tok_norm_kind {
    TOK_NORM_BERT, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD, TOK_NORM_LOWERCASE,
    TOK_NORM_STRIP, TOK_NORM_STRIP_ACCENTS, TOK_NORM_REPLACE, TOK_NORM_PREPEND,
    TOK_NORM_PRECOMPILED, TOK_NORM_NMT, TOK_NORM_BYTE_LEVEL, TOK_NORM_SEQUENCE,
};

struct tok_norm {
    enum tok_norm_kind kind;
    int clean_text, handle_chinese, strip_accents, lowercase;   /* BertNormalizer */
    int left, right;                                             /* Strip */
    struct tok_regex *re;                                        /* Replace */
    char *text;                                                  /* Replace's content, Prepend's */
    struct tok_charsmap charsmap;                                /* Precompiled */
    struct tok_norm *seq;                                        /* Sequence */
    int n_seq;
};

/* Reads one normalizer object. 0, or -1 with a one-line reason (an unknown
 * type is "normalizer 'X' is not supported"). n is freed by tok_norm_free
 * either way. */
int tok_norm_parse(struct tok_norm *n, json_t *j, char *err, size_t errlen);
/* Normalizes s in place (valid UTF-8 in, valid UTF-8 out). 0 or -1 on no
 * memory. When head is not NULL, *head (how many first bytes of s
 * `tokenizers` aligns to the original text's first character, which
 * Metaspace's "first" scheme reads) becomes the result's. */
int tok_norm_apply(const struct tok_norm *n, struct tok_buf *s, size_t *head);
void tok_norm_free(struct tok_norm *n);

/* One normalizer that is not a Sequence: o (empty) becomes n(s). 0 or -1. */
int tok_norm_apply_one(const struct tok_norm *n, const struct tok_buf *s, struct tok_buf *o);

/* Normalizes s in place as tok_norm_apply does, and sets *align (malloc'd,
 * the caller frees; NULL for an empty result) to where each byte of the
 * result comes from: the input bytes [align[i][0], align[i][1]), as
 * `tokenizers`' NormalizedString aligns them (text/norm_align.c says how
 * exactly). 0 or -1 on no memory. */
int tok_norm_apply_aligned(const struct tok_norm *n, struct tok_buf *s, uint32_t (**align)[2]);

#endif
