/* ustr.h -- what every tokenizer room shares: UTF-8 decoding (U+FFFD for
 * each maximal ill-formed subsequence), growable byte and id buffers, the
 * list of pieces a pre-tokenizer cuts, and the Unicode classes as Rust's
 * char methods define them (the `tokenizers` crate calls those). */
#ifndef GPUQ_TOK_USTR_H
#define GPUQ_TOK_USTR_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte string; s is NUL-terminated when not NULL. */
struct tok_buf {
    char *s;
    size_t n, cap;
};

/* Growable ids with their type ids. */
struct tok_ids {
    int32_t *v;
    size_t n, cap;
};

/* One pre-tokenized piece of pieces->text: its bytes; head, how many of its
 * first bytes `tokenizers` aligns to the original text's first character
 * (Metaspace's "first" scheme prepends to a piece whose head is not empty);
 * and a fixed id when it is an added token (-1 otherwise). */
struct tok_piece {
    size_t off, len;
    size_t head;
    int id;
};

struct tok_pieces {
    struct tok_buf text;
    struct tok_piece *v;
    size_t n, cap;
};

int tok_buf_put(struct tok_buf *b, const void *p, size_t n);   /* 0 or -1 */
int tok_buf_putc(struct tok_buf *b, int32_t c);                  /* UTF-8 */
void tok_buf_free(struct tok_buf *b);

int tok_ids_push(struct tok_ids *ids, int32_t id);
void tok_ids_free(struct tok_ids *ids);

/* Appends s[0, n) as a new piece (head clipped to n); empty pieces are
 * dropped (as `tokenizers` drops empty splits). 0 or -1. */
int tok_pieces_add(struct tok_pieces *p, const char *s, size_t n, size_t head, int id);
void tok_pieces_free(struct tok_pieces *p);

/* Decodes one character at s[0, n) (n >= 1); sets *c and returns its length. */
size_t tok_utf8_next(const unsigned char *s, size_t n, int32_t *c);
size_t tok_utf8_put(int32_t c, char *out);   /* up to 4 bytes */
/* Copies raw bytes as valid UTF-8 into out (emptied first). 0 or -1. */
int tok_utf8_clean(const char *s, size_t n, struct tok_buf *out);

/* The general category as `tokenizers`' Unicode 8.0 tables have it (BERT's
 * control, accent and punctuation classes): a later character is
 * unassigned, and the few whose category changed since keep the old one. */
int tok_category8(int32_t c);
int tok_is_whitespace(int32_t c);    /* White_Space */
int tok_is_punct(int32_t c);         /* ASCII punctuation or P* (Unicode 8.0) */
int tok_is_numeric(int32_t c);       /* Nd, Nl, No */
int tok_is_mark(int32_t c);          /* Mn, Mc, Me (Unicode 9.0, as StripAccents has it) */
int tok_assigned9(int32_t c);        /* assigned by Unicode 9.0 (the normalization forms' tables) */
/* The script of c in Unicode 9.0 as an index (Hiragana and Katakana are
 * Han's), 0 for none: a later or unlisted code point. */
int tok_script9(int32_t c);
int32_t *tok_decode(const char *s, size_t n, size_t *count);   /* valid UTF-8 to code points */

#endif
