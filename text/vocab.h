/* vocab.h -- a token vocabulary: text to id through an open-addressing hash
 * table, id to text through an array. */
#ifndef GPUQ_VOCAB_H
#define GPUQ_VOCAB_H

#include <stddef.h>
#include <stdint.h>

struct gpuq_vocab {
    char **text;       /* [n_ids]: NULL where no token has that id; NUL-terminated */
    uint32_t *len;     /* [n_ids]: the text's length (a token may hold a NUL) */
    int n_ids;
    int32_t *slots;    /* [n_slots]: id + 1, 0 when empty */
    size_t n_slots;
    int n_tokens;
    int size;          /* highest id given + 1 */
};

/* Starts an empty vocabulary able to hold up to max_tokens tokens. 0 or -1. */
int gpuq_vocab_init(struct gpuq_vocab *v, int max_tokens);
/* Adds text[0, len) as id; a text already present takes the new id, as a
 * Python dict built from the file would. 0, or -1 on a full table, a bad id
 * or no memory. */
int gpuq_vocab_add(struct gpuq_vocab *v, const char *text, size_t len, int id);
/* The id of text[0, len), or -1. */
int gpuq_vocab_find(const struct gpuq_vocab *v, const char *text, size_t len);
void gpuq_vocab_free(struct gpuq_vocab *v);

#endif
