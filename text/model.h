/* model.h -- tokenizer.json's "model": WordPiece, Unigram, BPE or WordLevel,
 * turning one pre-tokenized piece into ids. Each lives in its own file
 * (wordpiece.c, unigram.c, bpe.c, wordlevel.c) with its parse and tokenize;
 * this header is the one struct they share and the calls the pipeline makes. */
#ifndef GPUQ_TOK_MODEL_H
#define GPUQ_TOK_MODEL_H

#include <jansson.h>

#include "text/ustr.h"
#include "text/vocab.h"

enum tok_model_kind { TOK_MODEL_WORDPIECE, TOK_MODEL_UNIGRAM, TOK_MODEL_BPE, TOK_MODEL_WORDLEVEL };

struct tok_merge_map;   /* bpe.c */

struct tok_model {
    enum tok_model_kind kind;
    struct gpuq_vocab vocab;   /* text to id, id to text */
    int unk_id;                /* -1 when there is none */
    /* WordPiece */
    char *prefix;              /* continuing_subword_prefix (also BPE's), may be NULL */
    int max_word_chars;
    /* Unigram */
    double *scores;            /* [vocab.n_ids] */
    double min_score;
    int32_t *sorted;           /* ids in byte order of their text, for prefix search */
    size_t *lens;              /* [vocab.n_ids] text lengths */
    int n_sorted;
    int byte_fallback;         /* also BPE's */
    /* BPE */
    char *suffix;              /* end_of_word_suffix, may be NULL */
    int fuse_unk, ignore_merges;
    struct tok_merge_map *merges;
};

/* Reads a model's "model" object. 0, or -1 with a reason; m is freed by
 * tok_model_free either way. */
int tok_wordpiece_parse(struct tok_model *m, json_t *j, char *err, size_t errlen);
int tok_unigram_parse(struct tok_model *m, json_t *j, char *err, size_t errlen);
int tok_bpe_parse(struct tok_model *m, json_t *j, char *err, size_t errlen);
int tok_wordlevel_parse(struct tok_model *m, json_t *j, char *err, size_t errlen);

/* Appends the ids of piece s[0, n) (valid UTF-8, not empty). 0, or -1 on no
 * memory or a piece the model cannot encode (no unknown token to fall on). */
int tok_model_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out);
int tok_wordpiece_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out);
int tok_unigram_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out);
int tok_bpe_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out);
int tok_wordlevel_tokenize(const struct tok_model *m, const char *s, size_t n, struct tok_ids *out);

/* m->vocab from a model's "vocab" object of token to id (WordPiece, BPE,
 * WordLevel), which must be an object. 0, or -1 with a reason. */
int tok_model_vocab(struct tok_model *m, json_t *vocab, char *err, size_t errlen);

void tok_model_free(struct tok_model *m);
void tok_bpe_free(struct tok_model *m);

#endif
