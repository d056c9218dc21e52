/* pretok.h -- tokenizer.json's "pre_tokenizer": BertPreTokenizer, Whitespace,
 * WhitespaceSplit, Punctuation, CharDelimiterSplit, Metaspace, ByteLevel,
 * Split, Digits, FixedLength, UnicodeScripts and Sequence, cutting a normalized text into the pieces the
 * model sees, with the split behaviours of `tokenizers` (Removed, Isolated,
 * MergedWithPrevious, MergedWithNext, Contiguous; invert). */
#ifndef GPUQ_TOK_PRETOK_H
#define GPUQ_TOK_PRETOK_H

#include <jansson.h>

#include "text/regex.h"
#include "text/ustr.h"

enum tok_pretok_kind {
    TOK_PRETOK_BERT, TOK_PRETOK_WHITESPACE, TOK_PRETOK_WHITESPACE_SPLIT, TOK_PRETOK_PUNCTUATION,
    TOK_PRETOK_CHAR_DELIMITER, TOK_PRETOK_METASPACE, TOK_PRETOK_BYTE_LEVEL, TOK_PRETOK_SPLIT,
    TOK_PRETOK_DIGITS, TOK_PRETOK_FIXED_LENGTH, TOK_PRETOK_UNICODE_SCRIPTS, TOK_PRETOK_SEQUENCE,
};

enum tok_split_behavior {
    TOK_SPLIT_REMOVED, TOK_SPLIT_ISOLATED, TOK_SPLIT_MERGED_WITH_PREVIOUS,
    TOK_SPLIT_MERGED_WITH_NEXT, TOK_SPLIT_CONTIGUOUS,
};

enum tok_prepend { TOK_PREPEND_NEVER, TOK_PREPEND_FIRST, TOK_PREPEND_ALWAYS };

struct tok_pretok {
    enum tok_pretok_kind kind;
    enum tok_split_behavior behavior;   /* Split, Punctuation */
    int invert;                         /* Split */
    struct tok_regex *re;               /* Split, Whitespace, ByteLevel's */
    int32_t delimiter;                  /* Metaspace's replacement, CharDelimiterSplit's */
    enum tok_prepend prepend;           /* Metaspace */
    int split;                          /* Metaspace */
    int add_prefix_space;               /* ByteLevel */
    int individual_digits;              /* Digits */
    size_t length;                      /* FixedLength, in characters */
    struct tok_pretok *seq;
    int n_seq;
};

/* Reads one pre_tokenizer object. 0, or -1 with a one-line reason; p is
 * freed by tok_pretok_free either way. */
int tok_pretok_parse(struct tok_pretok *p, json_t *j, char *err, size_t errlen);
/* Cuts every piece of *pieces further, in place. 0 or -1. */
int tok_pretok_apply(const struct tok_pretok *p, struct tok_pieces *pieces);
void tok_pretok_free(struct tok_pretok *p);

/* GPT-2's byte-to-character map of byte-level BPE (printable Latin-1 bytes
 * stand for themselves, the rest for U+0100 on). */
int32_t tok_byte_char(unsigned char b);

#endif
