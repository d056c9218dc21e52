/* embed_chunk.h -- the embed op's long documents: with `chunk` {tokens,
 * overlap, pool}, each text is tokenized once (kept whole, with each
 * token's bytes in the text) and cut into overlapping windows of at most
 * `tokens` tokens, special tokens included; each window is a row of the
 * task, so a document's windows share batches with other jobs' rows. The
 * rows say which text they come from and the bytes they cover; with pool,
 * the job returns one vector per text, the mean of its windows'. */
#ifndef GPUQ_OP_EMBED_CHUNK_H
#define GPUQ_OP_EMBED_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "ops/op.h"

struct gpuq_embed_chunk {
    int tokens;                 /* 0: no chunking */
    int overlap, pool;
    int64_t docs;               /* the texts */
    /* in the task's own block, after its token offsets */
    int64_t *char_start, *char_end;     /* [rows] */
    int32_t *chunk_of;                  /* [rows] */
    int64_t *first;                     /* [docs + 1]: each text's first row */
};

/* Reads the job's `chunk` param against a model whose texts take at most
 * max_length tokens, special tokens included (of which the tokenizer adds
 * specials). 0 (c->tokens 0 when absent), or -1 with the job failed. */
int gpuq_embed_chunk_read(struct gpuq_task *t, int max_length, int specials,
                          struct gpuq_embed_chunk *c);

/* Tokenizes each text of `text`, prompt[0, prompt_len) first, and cuts it
 * into windows: sets t->rows, t->own (freed with the task) and
 * t->token_off, the windows' ids (special tokens around each) in *ids, and
 * c's rows. 0, or -1 with the job failed. */
int gpuq_embed_chunk_tokenize(struct gpuq_task *t, const struct gpuq_input *text, const char *prompt,
                              size_t prompt_len, struct gpuq_embed_chunk *c, int32_t **ids);

/* Bytes of the job's outputs beyond y and tokens. */
size_t gpuq_embed_chunk_out_bytes(const struct gpuq_embed_chunk *c, int64_t rows);

/* With pool: y's rows [rows, hidden] become one per text, the mean of its
 * windows' (L2-normalized when normalize), packed at y's start. Returns the
 * rows y has then (t->rows without pool). */
int64_t gpuq_embed_chunk_pool(const struct gpuq_task *t, const struct gpuq_embed_chunk *c, float *y,
                              int hidden, int normalize);

/* Tokens of output row r: its window's, or with pool the sum of its text's
 * windows'. */
int32_t gpuq_embed_chunk_tokens(const struct gpuq_task *t, const struct gpuq_embed_chunk *c, int64_t r);

/* Sets the chunk outputs from output index i on: chunk_of, char_start,
 * char_end per row; with pool, chunks (windows per text). */
void gpuq_embed_chunk_outputs(struct gpuq_task *t, const struct gpuq_embed_chunk *c, int i);

#endif
