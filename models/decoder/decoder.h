/* decoder.h -- the decoder embedders: a pre-RMSNorm causal transformer
 * (Qwen3 and Qwen2 are this one shape: rotary positions, grouped-query
 * attention, a SwiGLU feed-forward; Qwen3 adds an RMSNorm per head on q and
 * k, Qwen2 biases on q, k and v), then the sentence-transformers modules
 * after it (last-token pooling, Normalize), as Qwen3-Embedding and
 * gte-Qwen2 folders are.
 *
 * A family of this arch is a struct gpuq_decoder_spec (its tensor names);
 * gpuq_decoder_load does the rest: config.json, the weights, the tokenizer,
 * and the sentence-transformers files, read by models/encoder/st.c into the
 * decoder's `st` (a struct gpuq_encoder holding only those modules).
 *
 * Weights are f32 and owned by the decoder. A layer's q, k and v
 * projections are stacked into one [(heads + 2 kv_heads) * head_dim,
 * hidden] matrix, gate and up into one [2 * intermediate, hidden], so each
 * is one GEMM. */
#ifndef GPUQ_DECODER_H
#define GPUQ_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include "models/encoder/encoder.h"
#include "models/family.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A layer's weights, by slot. */
enum gpuq_dec_slot {
    GPUQ_DEC_IN_NORM,       /* input_layernorm [h] */
    GPUQ_DEC_QKV_W,         /* q, k, v stacked [(heads + 2 kv) * hd, h] */
    GPUQ_DEC_QKV_B,         /* their biases [(heads + 2 kv) * hd] (Qwen2), or NULL */
    GPUQ_DEC_Q_NORM,        /* q_norm [hd] (Qwen3), or NULL */
    GPUQ_DEC_K_NORM,        /* k_norm [hd] (Qwen3), or NULL */
    GPUQ_DEC_O_W,           /* o_proj [h, heads * hd], no bias */
    GPUQ_DEC_POST_NORM,     /* post_attention_layernorm [h] */
    GPUQ_DEC_GATE_UP_W,     /* gate then up stacked [2 i, h] */
    GPUQ_DEC_DOWN_W,        /* down_proj [h, i] */
    GPUQ_DEC_LAYER_SLOTS
};
/* The weights outside the layers, as slots of gpuq_decoder_weights. */
enum { GPUQ_DEC_EMBED = GPUQ_DEC_LAYER_SLOTS, GPUQ_DEC_NORM, GPUQ_DEC_DENSE };
/* The GEMM matrices among them, in the order of a layer's w16 copies. */
enum { GPUQ_DEC_W16_QKV, GPUQ_DEC_W16_O, GPUQ_DEC_W16_GATE_UP, GPUQ_DEC_W16_DOWN, GPUQ_DEC_W16S };

struct gpuq_dec_layer {
    float *w[GPUQ_DEC_LAYER_SLOTS];
    uint16_t *w16[GPUQ_DEC_W16S];       /* bf16 copies (CPU bf16), or NULL */
};

struct gpuq_decoder {
    const char *family;                 /* its name, for logs */
    int hidden, heads, kv_heads, head_dim, n_layers, intermediate, vocab;
    int max_pos;                        /* max_position_embeddings: the longest sequence served */
    float rms_eps;
    double rope_theta;
    int qk_norm, qkv_bias;              /* Qwen3's q_norm / k_norm; Qwen2's q, k, v biases */
    float *embed, *norm;                /* embed_tokens [vocab, h], the final norm [h] */
    struct gpuq_dec_layer *layers;
    /* the sentence-transformers modules (pooling, Dense, Normalize,
     * max_length, prompts) as models/encoder/st.c reads them, with hidden,
     * vocab and max_pos copied from above; no layers, no embeddings */
    struct gpuq_encoder st;
};

/* A family of this arch: its tensor names, layer tensors with %d for the
 * layer, under an optional prefix ("model." where a *ForCausalLM saved
 * them), and its reader of config.json. */
struct gpuq_decoder_spec {
    const char *embed, *norm;
    const char *layer[GPUQ_DEC_LAYER_SLOTS][3];     /* parts stacked: q, k, v; gate, up */
    const char *prefix;
    /* reads config.json's sizes into d (hidden, heads, kv_heads, head_dim,
     * n_layers, intermediate, vocab, max_pos, rms_eps, rope_theta, qk_norm,
     * qkv_bias): 0, or -1 with err */
    int (*config)(struct gpuq_decoder *d, json_t *config, char *err, size_t errlen);
};

/* The family's load for every family of this arch (spec in family->spec). */
int gpuq_decoder_load(struct gpuq_model *m, const struct gpuq_source *src, char *err, size_t errlen);

/* Width of the q, k, v rows of one token: (heads + 2 kv_heads) * head_dim. */
int gpuq_decoder_qkv_width(const struct gpuq_decoder *d);

/* Width of a token's widest GEMM input: the hidden size, the query heads'
 * heads * head_dim or the intermediate size, whichever is largest. */
int gpuq_decoder_gemm_in_width(const struct gpuq_decoder *d);

/* Every weight of d, with its shape (d1 0: a vector), as
 * gpuq_encoder_weights: the embeddings, the final norm, each layer's
 * slots (those the family has), then st's Dense modules. */
typedef void gpuq_dec_weight_fn(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0,
                                int64_t d1);
void gpuq_decoder_weights(struct gpuq_decoder *d, gpuq_dec_weight_fn *fn, void *ctx);

void gpuq_decoder_free(struct gpuq_decoder *d);

#ifdef __cplusplus
}
#endif
#endif
