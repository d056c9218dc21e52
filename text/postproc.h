/* postproc.h -- tokenizer.json's "post_processor": BertProcessing,
 * RobertaProcessing, TemplateProcessing, ByteLevel (nothing to do on ids)
 * and a Sequence of those, for one text or a pair, with type ids. */
#ifndef GPUQ_TOK_POSTPROC_H
#define GPUQ_TOK_POSTPROC_H

#include <jansson.h>
#include <stdint.h>

enum tok_post_kind { TOK_POST_NONE, TOK_POST_BERT, TOK_POST_ROBERTA, TOK_POST_TEMPLATE };

struct tok_tpl_piece {
    int seq;          /* 0: $A, 1: $B, -1: special tokens */
    int type_id;
    int32_t *ids;     /* special tokens */
    int n_ids;
};

struct tok_post {
    enum tok_post_kind kind;
    int32_t cls, sep;                      /* Bert, Roberta */
    struct tok_tpl_piece *tpl[2];          /* Template: single, pair */
    int n_tpl[2];
    int trim_offsets, prefix_space;        /* ByteLevel, Roberta: offsets lose the spaces of their tokens */
};

/* Reads "post_processor" (NULL or null: none). 0, or -1 with a reason. */
int tok_post_parse(struct tok_post *p, json_t *j, char *err, size_t errlen);
/* How many ids the processor adds to one text (pair 0) or a pair (1). */
int tok_post_added(const struct tok_post *p, int pair);
/* Writes the final ids (and type ids when types is not NULL) of a[0, na)
 * and, when b is not NULL, b[0, nb); ids has room for na + nb +
 * tok_post_added. Returns the count. */
int tok_post_apply(const struct tok_post *p, const int32_t *a, int na, const int32_t *b, int nb,
                   int32_t *ids, int32_t *types);
void tok_post_free(struct tok_post *p);

#endif
