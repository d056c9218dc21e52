/* tokenizer_int.h -- the tokenizer's insides: the pipeline's rooms, shared by
 * the pipeline (tokenizer.c), the added tokens (added.c) and the loader
 * (tokenizer_load.c) only. */
#ifndef GPUQ_TOKENIZER_INT_H
#define GPUQ_TOKENIZER_INT_H

#include "text/model.h"
#include "text/normalize.h"
#include "text/postproc.h"
#include "text/pretok.h"
#include "text/tokenizer.h"

/* An added token, matched in the text before the model sees it. */
struct tok_added {
    char *text;        /* content */
    size_t len;
    char *match;       /* what is matched: the content, normalized when normalized */
    size_t match_len;
    int id;
    int special, single_word, lstrip, rstrip, normalized;
};

/* The added tokens of one kind (normalized or not), bucketed by first byte. */
struct tok_added_set {
    int *order;        /* indices into gpuq_tok.added, by first byte then longest first */
    int start[257];
};

struct gpuq_tok {
    struct tok_model model;
    struct tok_norm *norm;       /* NULL: none */
    struct tok_pretok *pretok;   /* NULL: none */
    struct tok_post post;
    struct tok_added *added;
    int n_added;
    struct tok_added_set raw_set, norm_set;
    int next_id;                 /* the id the next new added token takes */
    int model_max_length;
    int pad_id, pad_left, trunc_left;
    enum { TOK_TRUNC_LONGEST_FIRST, TOK_TRUNC_ONLY_FIRST, TOK_TRUNC_ONLY_SECOND } trunc;
};

/* Adds a token as `tokenizers` adds it (an id from the model's vocabulary
 * when the content is there, else the next new id), normalizing its match
 * text with t->norm when normalized. 0 or -1 on no memory. */
int tok_added_add(struct gpuq_tok *t, const char *text, int special, int single_word, int lstrip,
                  int rstrip, int normalized);
/* Builds the match sets once all tokens are added. 0 or -1. */
int tok_added_index(struct gpuq_tok *t);
/* Cuts s[0, n) into pieces: added tokens (piece id set) and the text
 * between them (id -1), matching normalized tokens when normalized is set;
 * head is s's (see struct tok_piece). */
int tok_added_split(const struct gpuq_tok *t, int normalized, const char *s, size_t n, size_t head,
                    struct tok_pieces *out);
/* The id of text: an added token's, else the model's; -1 when none. */
int tok_token_to_id(const struct gpuq_tok *t, const char *text, size_t len);

#endif
