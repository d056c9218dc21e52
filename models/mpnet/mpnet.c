/* mpnet.c -- MPNet encoders: no token types, positions counted past the
 * padding id as RoBERTa's, and a relative position bias added to every
 * layer's attention scores: relative_attention_bias [buckets, heads],
 * shared by the layers, indexed by T5's bidirectional bucket of the key's
 * position minus the query's (max distance 128). */
#include <stdio.h>

#include "models/encoder/encoder.h"
#include "models/folder.h"

#define L "encoder.layer.%d."

static int config(struct gpuq_encoder *e, json_t *c, char *err, size_t errlen) {
    if (gpuq_encoder_bert_config(e, c, err, errlen) != 0) return -1;
    e->n_types = 0;
    e->pad_id = gpuq_json_int(c, "pad_token_id", 0, 1 << 24);
    e->rel_buckets = json_object_get(c, "relative_attention_num_buckets")
                         ? gpuq_json_int(c, "relative_attention_num_buckets", 2, 1 << 10) : 32;
    e->rel_max_distance = 128;
    if (e->pad_id < 0 || e->pad_id + 2 > e->max_pos || e->rel_buckets < 4) {
        snprintf(err, errlen, "config.json: pad_token_id must be below max_position_embeddings - 1, "
                 "relative_attention_num_buckets at least 4");
        return -1;
    }
    return 0;
}

static const struct gpuq_encoder_spec spec = {
    .names = {
        [GPUQ_ENC_WORD] = {"embeddings.word_embeddings.weight"},
        [GPUQ_ENC_POS] = {"embeddings.position_embeddings.weight"},
        [GPUQ_ENC_LN_G] = {"embeddings.LayerNorm.weight"},
        [GPUQ_ENC_LN_B] = {"embeddings.LayerNorm.bias"},
        [GPUQ_ENC_REL_BIAS] = {"encoder.relative_attention_bias.weight"},
        [GPUQ_ENC_QKV_W] = {L "attention.attn.q.weight", L "attention.attn.k.weight", L "attention.attn.v.weight"},
        [GPUQ_ENC_QKV_B] = {L "attention.attn.q.bias", L "attention.attn.k.bias", L "attention.attn.v.bias"},
        [GPUQ_ENC_ATTN_W] = {L "attention.attn.o.weight"},
        [GPUQ_ENC_ATTN_B] = {L "attention.attn.o.bias"},
        [GPUQ_ENC_LN1_G] = {L "attention.LayerNorm.weight"},
        [GPUQ_ENC_LN1_B] = {L "attention.LayerNorm.bias"},
        [GPUQ_ENC_FFN_W1] = {L "intermediate.dense.weight"},
        [GPUQ_ENC_FFN_B1] = {L "intermediate.dense.bias"},
        [GPUQ_ENC_FFN_W2] = {L "output.dense.weight"},
        [GPUQ_ENC_FFN_B2] = {L "output.dense.bias"},
        [GPUQ_ENC_LN2_G] = {L "output.LayerNorm.weight"},
        [GPUQ_ENC_LN2_B] = {L "output.LayerNorm.bias"},
    },
    .prefix = "mpnet.",
    .head = {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
             "classifier.out_proj.bias"},
    .head_act = GPUQ_ACT_TANH,
    .config = config,
};

static const char *const types[] = {"mpnet", NULL};

const struct gpuq_family gpuq_family_mpnet = {
    .name = "mpnet", .arch = GPUQ_ARCH_ENCODER, .model_types = types, .load = gpuq_encoder_load, .spec = &spec,
};
