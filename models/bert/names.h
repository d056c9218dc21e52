/* names.h -- BertModel's tensor names by slot, which RoBERTa's families
 * share under their own prefix. */
#ifndef GPUQ_BERT_NAMES_H
#define GPUQ_BERT_NAMES_H

#define GPUQ_BERT_L "encoder.layer.%d."
#define GPUQ_BERT_NAMES                                                                                      \
    {                                                                                                        \
        [GPUQ_ENC_WORD] = {"embeddings.word_embeddings.weight"},                                             \
        [GPUQ_ENC_POS] = {"embeddings.position_embeddings.weight"},                                          \
        [GPUQ_ENC_TYPE] = {"embeddings.token_type_embeddings.weight"},                                       \
        [GPUQ_ENC_LN_G] = {"embeddings.LayerNorm.weight"},                                                   \
        [GPUQ_ENC_LN_B] = {"embeddings.LayerNorm.bias"},                                                     \
        [GPUQ_ENC_QKV_W] = {GPUQ_BERT_L "attention.self.query.weight", GPUQ_BERT_L "attention.self.key.weight", \
                            GPUQ_BERT_L "attention.self.value.weight"},                                      \
        [GPUQ_ENC_QKV_B] = {GPUQ_BERT_L "attention.self.query.bias", GPUQ_BERT_L "attention.self.key.bias",   \
                            GPUQ_BERT_L "attention.self.value.bias"},                                        \
        [GPUQ_ENC_ATTN_W] = {GPUQ_BERT_L "attention.output.dense.weight"},                                   \
        [GPUQ_ENC_ATTN_B] = {GPUQ_BERT_L "attention.output.dense.bias"},                                     \
        [GPUQ_ENC_LN1_G] = {GPUQ_BERT_L "attention.output.LayerNorm.weight"},                                \
        [GPUQ_ENC_LN1_B] = {GPUQ_BERT_L "attention.output.LayerNorm.bias"},                                  \
        [GPUQ_ENC_FFN_W1] = {GPUQ_BERT_L "intermediate.dense.weight"},                                       \
        [GPUQ_ENC_FFN_B1] = {GPUQ_BERT_L "intermediate.dense.bias"},                                         \
        [GPUQ_ENC_FFN_W2] = {GPUQ_BERT_L "output.dense.weight"},                                             \
        [GPUQ_ENC_FFN_B2] = {GPUQ_BERT_L "output.dense.bias"},                                               \
        [GPUQ_ENC_LN2_G] = {GPUQ_BERT_L "output.LayerNorm.weight"},                                          \
        [GPUQ_ENC_LN2_B] = {GPUQ_BERT_L "output.LayerNorm.bias"},                                            \
    }

#endif
