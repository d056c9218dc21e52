/* bert.h -- BERT-family text encoders (sentence embeddings): the model
 * folder and the forward pass.
 *
 * gpuq_bert_load reads a Hugging Face / sentence-transformers folder:
 * config.json (model_type bert), model.safetensors (BertModel names with or
 * without "bert."), and when present modules.json, the Pooling module's
 * config.json and sentence_bert_config.json, with sentence-transformers'
 * defaults: with modules.json, pooling from the Pooling module and
 * normalization when a Normalize module is listed; without, mean pooling and
 * no normalization. max_length is sentence_bert_config.json's max_seq_length,
 * else min(max_position_embeddings, tokenizer_config.json's model_max_length),
 * and never more than max_position_embeddings. The tokenizer itself is
 * text/tokenizer.h's, loaded from the same folder.
 *
 * Weights are converted to f32 and owned by the model; Q, K and V are stacked
 * into one [3 * hidden, hidden] matrix so a layer's projections are one GEMM. */
#ifndef GPUQ_BERT_H
#define GPUQ_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

enum gpuq_bert_pool { GPUQ_BERT_POOL_MEAN, GPUQ_BERT_POOL_CLS };

struct gpuq_bert_layer {
    float *qkv_w, *qkv_b;     /* [3h, h], [3h]: query, key, value */
    float *attn_w, *attn_b;   /* attention output dense [h, h], [h] */
    float *ln1_g, *ln1_b;     /* its LayerNorm [h] */
    float *ffn_w1, *ffn_b1;   /* intermediate [i, h], [i] */
    float *ffn_w2, *ffn_b2;   /* output [h, i], [h] */
    float *ln2_g, *ln2_b;     /* its LayerNorm [h] */
    /* the four dense matrices in bf16, one after another (qkv, attn, ffn_w1,
     * ffn_w2), for the CPU backend's bf16 GEMMs (its model_load); or NULL */
    uint16_t *w16;
};

struct gpuq_bert {
    int hidden, heads, n_layers, intermediate;
    int max_pos, vocab;
    float ln_eps;
    float *word_emb;          /* [vocab, h] */
    float *pos_emb;           /* [max_pos, h] */
    float *type_emb;          /* [h]: token type 0 */
    float *emb_ln_g, *emb_ln_b;
    struct gpuq_bert_layer *layers;
    /* what encode() does by default for this folder */
    enum gpuq_bert_pool pooling;
    int normalize;
    int max_length;
    /* config_sentence_transformers.json: named prompts, and the one used
     * when a job names none (-1: none) */
    int n_prompts;
    char **prompt_names, **prompts;
    int default_prompt;
};

/* The prompt called name[0, len), or NULL. */
const char *gpuq_bert_prompt(const struct gpuq_bert *m, const char *name, size_t len);

/* Loads the encoder in folder dir. Returns 0, or -1 with a one-line reason
 * in err naming the file (the model then holds nothing). */
int gpuq_bert_load(struct gpuq_bert *m, const char *dir, char *err, size_t errlen);
void gpuq_bert_free(struct gpuq_bert *m);

/* One padding-free batch: n_seq sequences of token ids, concatenated. */
struct gpuq_bert_batch {
    const int32_t *ids;       /* [n_tokens], every id < vocab */
    const int *lens;          /* [n_seq], each 1 .. max_pos */
    int n_seq;
    enum gpuq_bert_pool pooling;
    int normalize;
    float *out;               /* [n_seq, hidden] */
};

/* Floats of scratch gpuq_bert_forward needs for a batch of n_tokens tokens
 * whose longest sequence is max_len. */
size_t gpuq_bert_scratch_floats(const struct gpuq_bert *m, int n_tokens, int max_len);

/* The encoder on the CPU backend be (its oneDNN GEMMs): embeddings and
 * LayerNorm, then per layer one QKV GEMM over all tokens, attention per
 * sequence, output projection, residual and LayerNorm, GELU (erf)
 * feed-forward, residual and LayerNorm; then pooling and optional L2
 * normalization into b->out. scratch holds gpuq_bert_scratch_floats()
 * floats. 0, or an enum gpuq_status with be->errstr (a GEMM failed).
 *
 * Precision be->precision (both backends' rule): with bf16 or f16, the four dense GEMMs
 * of a layer (QKV, attention output, FFN in, FFN out) take their input
 * rounded to p (the LayerNorm output, the attention context, the GELU
 * output) and expect their weights already rounded to p, as the CPU
 * backend's model_load leaves them (with their bf16 copies, which the
 * GEMMs then take with the input in bf16); sums stay f32, and so does
 * everything else: embeddings, biases, LayerNorm, attention, pooling. */
int gpuq_bert_forward(struct gpuq_backend *be, const struct gpuq_bert *m,
                      const struct gpuq_bert_batch *b, float *scratch);

#ifdef __cplusplus
}
#endif
#endif
