/* encoder.h -- the text encoders: a post-LayerNorm transformer encoder
 * (BERT, DistilBERT, RoBERTa / XLM-RoBERTa / CamemBERT, MPNet are this one
 * shape with other tensor names and position schemes), then the
 * sentence-transformers modules after it (pooling, Dense, Normalize).
 *
 * A family of this arch is a struct gpuq_encoder_spec: its tensor names,
 * how it reads config.json, and its position scheme. gpuq_encoder_load
 * does the rest for every family: the weights by those names, the
 * tokenizer, and the sentence-transformers files (models/encoder/st.c).
 *
 * Weights are f32 and owned by the encoder; Q, K and V are stacked into
 * one [3 * hidden, hidden] matrix so a layer's projections are one GEMM. */
#ifndef GPUQ_ENCODER_H
#define GPUQ_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "models/family.h"

#ifdef __cplusplus
extern "C" {
#endif

/* sentence-transformers' pooling modes (one per model). */
enum gpuq_pool {
    GPUQ_POOL_MEAN, GPUQ_POOL_CLS, GPUQ_POOL_MAX, GPUQ_POOL_MEAN_SQRT_LEN, GPUQ_POOL_LAST,
    GPUQ_POOL_WEIGHTED_MEAN, GPUQ_POOLS
};
const char *gpuq_pool_name(enum gpuq_pool p);
int gpuq_pool_from_name(const char *s, size_t len);     /* -1 when unknown */

/* The weights, named by slot: a family's spec names each (its layer
 * tensors with %d for the layer). Q, K and V are three parts of one. */
enum gpuq_enc_slot {
    GPUQ_ENC_WORD, GPUQ_ENC_POS, GPUQ_ENC_TYPE, GPUQ_ENC_LN_G, GPUQ_ENC_LN_B, GPUQ_ENC_REL_BIAS,
    GPUQ_ENC_QKV_W, GPUQ_ENC_QKV_B, GPUQ_ENC_ATTN_W, GPUQ_ENC_ATTN_B, GPUQ_ENC_LN1_G, GPUQ_ENC_LN1_B,
    GPUQ_ENC_FFN_W1, GPUQ_ENC_FFN_B1, GPUQ_ENC_FFN_W2, GPUQ_ENC_FFN_B2, GPUQ_ENC_LN2_G, GPUQ_ENC_LN2_B,
    GPUQ_ENC_SLOTS
};
#define GPUQ_ENC_FIRST_LAYER_SLOT GPUQ_ENC_QKV_W
#define GPUQ_ENC_LAYER_SLOTS (GPUQ_ENC_SLOTS - GPUQ_ENC_FIRST_LAYER_SLOT)

struct gpuq_enc_layer {
    float *w[GPUQ_ENC_LAYER_SLOTS];     /* by slot - GPUQ_ENC_FIRST_LAYER_SLOT */
    uint16_t *w16[4];                   /* bf16 copies of QKV, ATTN, FFN_W1, FFN_W2 (CPU bf16), or NULL */
};
#define GPUQ_LW(ly, slot) ((ly)->w[(slot) - GPUQ_ENC_FIRST_LAYER_SLOT])

/* A sentence-transformers Dense module: y = act(x W^T + b). */
struct gpuq_dense {
    int d_in, d_out;
    float *w, *b;                       /* [d_out, d_in], [d_out] (zeros without bias) */
    enum gpuq_act act;
};

/* A masked-language-model head (a *ForMaskedLM folder; SPLADE's): the
 * transform (dense [h, h], the encoder's activation, LayerNorm), then one
 * logit per vocabulary entry: decoder [vocab, h] (the word embeddings when
 * tied: NULL here) plus bias [vocab]. */
struct gpuq_mlm {
    float *w, *b, *ln_g, *ln_b, *decoder, *bias;
};

/* What a sequence scorer's logits become: rerank's activation, classify's `function`. */
enum gpuq_score_fn { GPUQ_FN_NONE, GPUQ_FN_SIGMOID, GPUQ_FN_SOFTMAX, GPUQ_FN_TANH };
const char *gpuq_score_fn_name(enum gpuq_score_fn f);

struct gpuq_encoder {
    const char *family;                 /* its name, for logs */
    int hidden, heads, n_layers, intermediate;
    int max_pos, vocab, n_types;        /* n_types 0: no token type embedding */
    float ln_eps;
    enum gpuq_act act;                  /* the feed-forward's */
    /* positions: -1: position i of a sequence is row i; else row pad_id + 1 + the
     * non-pad tokens up to i (pad tokens themselves row pad_id), as
     * RoBERTa's and MPNet's create_position_ids_from_input_ids */
    int pad_id;
    /* MPNet's relative attention bias: [rel_buckets, heads], shared by the
     * layers, or NULL */
    int rel_buckets, rel_max_distance;
    float *emb[GPUQ_ENC_REL_BIAS + 1];  /* word [vocab, h], pos [max_pos, h], type [h] (type 0),
                                           LayerNorm g, b [h], rel bias */
    struct gpuq_enc_layer *layers;
    /* the sentence-transformers modules after it */
    enum gpuq_pool pooling;
    int n_dense;
    struct gpuq_dense *dense;
    int normalize;
    int max_length;                     /* in tokens, the specials included */
    /* a sequence scorer (config.json's architectures name a
     * *ForSequenceClassification): its head is the Dense list above on the
     * first token (CLS pooling), one logit per label; else 0 */
    int scorer;
    int n_labels;
    char **labels;                      /* id2label, in index order */
    enum gpuq_score_fn rerank_fn;       /* sentence-transformers' CrossEncoder activation */
    enum gpuq_score_fn classify_fn;     /* from problem_type and the label count */
    struct gpuq_mlm *mlm;               /* a masked-LM head (sparse vectors), or NULL */
    /* config_sentence_transformers.json: named prompts, and the one used
     * when a job names none (-1: none) */
    int n_prompts;
    char **prompt_names, **prompts;
    int default_prompt;
};

/* The width of the encoder's embeddings: the last Dense module's, else hidden. */
int gpuq_encoder_dim(const struct gpuq_encoder *e);
/* The longest sequence its positions allow. */
int gpuq_encoder_max_tokens(const struct gpuq_encoder *e);
/* The prompt called name[0, len), or NULL. */
const char *gpuq_encoder_prompt(const struct gpuq_encoder *e, const char *name, size_t len);

/* A family of this arch. */
struct gpuq_encoder_spec {
    /* the tensor names by slot, parts 0..2 for QKV (query, key, value);
     * layer tensors take the layer for %d; NULL: the family has none */
    const char *names[GPUQ_ENC_SLOTS][3];
    const char *prefix;                 /* that model.safetensors may put before every name */
    /* a *ForSequenceClassification head, names in full: the pre-classifier
     * (BERT's pooler) weight and bias, then the classifier's; NULL: none */
    const char *head[4];
    enum gpuq_act head_act;             /* after the pre-classifier */
    /* a *ForMaskedLM head, names in full: the transform's weight and bias,
     * its LayerNorm's weight and bias, the decoder (absent when tied to the
     * word embeddings) and the bias; NULL: none */
    const char *mlm[6];
    /* reads config.json's sizes into e (hidden, heads, n_layers,
     * intermediate, max_pos, vocab, n_types, ln_eps, act, pad_id,
     * rel_buckets): 0, or -1 with err */
    int (*config)(struct gpuq_encoder *e, json_t *config, char *err, size_t errlen);
};

/* The family's load for every family of this arch (spec in family->spec). */
int gpuq_encoder_load(struct gpuq_model *m, const struct gpuq_source *src, char *err, size_t errlen);

/* Reads BERT's config keys (hidden_size, num_attention_heads, ...,
 * type_vocab_size, layer_norm_eps, hidden_act), which RoBERTa and MPNet
 * share: 0, or -1 with err. */
int gpuq_encoder_bert_config(struct gpuq_encoder *e, json_t *config, char *err, size_t errlen);

/* Every weight of e (struct gpuq_weight, models/model.h), with its shape:
 * for loading (data NULL: to be filled) as for everything after. */
typedef void gpuq_enc_weight_fn(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0,
                                int64_t d1);
void gpuq_encoder_weights(struct gpuq_encoder *e, gpuq_enc_weight_fn *fn, void *ctx);

void gpuq_encoder_free(struct gpuq_encoder *e);

/* sentence-transformers' files in folder dir (models/encoder/st.c):
 * modules.json (Transformer, Pooling, Dense, Normalize, in its order),
 * the Pooling and Dense modules' files, sentence_bert_config.json,
 * tokenizer_config.json (max_length), config_sentence_transformers.json
 * (prompts). 0, or -1 with err naming the file. */
int gpuq_encoder_read_st(struct gpuq_encoder *e, const char *dir, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
