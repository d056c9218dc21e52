/* score.h -- what the ops on an encoder's head (rerank, classify,
 * embed_sparse) share:
 * rows of one text or a pair, tokenized at admission (a pair with its
 * token types, cut longest first as `tokenizers` cuts it), batched by
 * tokens through the model's head; each row's logits [labels], f32, at the
 * start of t->out, where the op's finish turns them into its outputs. */
#ifndef GPUQ_OP_SCORE_H
#define GPUQ_OP_SCORE_H

#include "models/encoder/encoder.h"
#include "ops/op.h"

/* The first member of each of these ops' params. */
struct gpuq_score {
    int32_t *ids, *types;       /* the rows' tokens and types back to back, in t->own */
};

/* Row r's texts: a, and b for a pair (b.ptr NULL: one text). */
typedef void gpuq_score_row_fn(const struct gpuq_task *t, int64_t r, struct gpuq_str *a, struct gpuq_str *b);

/* Reads max_length (the model's by default, 2 .. its positions) and
 * tokenizes t's rows, row(t, r) giving each. 0, or -1 with the job failed. */
int gpuq_score_tokenize(struct gpuq_task *t, int64_t rows, gpuq_score_row_fn *row);

/* The op's pack and scatter, and its CPU kernel (the encoder's forward with
 * the head). */
int gpuq_score_pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows, enum gpuq_op op);
void gpuq_score_scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n);
int gpuq_score_cpu(struct gpuq_backend *be, const struct gpuq_launch *l);

/* f applied to one row of n logits, in place. */
void gpuq_score_apply(enum gpuq_score_fn f, float *v, int n);

/* The twin check of both ops: random classifiers with token types. */
struct gpuq_twin_run;
void gpuq_score_twin(struct gpuq_twin_run *r);
void gpuq_score_sparse_twin(struct gpuq_twin_run *r);     /* embed_sparse's: a random masked-LM head */

/* The model's head, and the width of a row's logits: its labels, or the
 * vocabulary for a masked-LM head (embed_sparse). */
const struct gpuq_encoder *gpuq_score_model(const struct gpuq_task *t);
int gpuq_score_width(const struct gpuq_encoder *m);

#ifdef __cplusplus
extern "C" {
#endif
int gpuq_cuda_rerank(struct gpuq_backend *be, const struct gpuq_launch *l);
int gpuq_cuda_classify(struct gpuq_backend *be, const struct gpuq_launch *l);
int gpuq_cuda_embed_sparse(struct gpuq_backend *be, const struct gpuq_launch *l);
#ifdef __cplusplus
}
#endif

#endif
