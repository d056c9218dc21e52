/* tokenizer_int.h -- the tokenizer's insides, shared by the encoder
 * (tokenizer.c) and the loader (tokenizer_load.c) only. */
#ifndef GPUQ_TOKENIZER_INT_H
#define GPUQ_TOKENIZER_INT_H

#include "text/tokenizer.h"
#include "text/vocab.h"

struct added_token {
    char *text;
    size_t len;
    int id;
};

struct gpuq_tok {
    struct gpuq_vocab vocab;
    struct added_token *added;   /* matched literally in the raw text */
    int n_added;
    int unk_id, cls_id, sep_id;
    int clean_text, handle_chinese, strip_accents, lowercase;
    int max_word_chars;
    char prefix[16];             /* continuing_subword_prefix, "##" */
    size_t prefix_len;
    int model_max_length;
};

#endif
