/* distilbert.c -- DistilBERT encoders: their own config keys (dim,
 * n_heads, n_layers, hidden_dim) and tensor names, no token types,
 * positions from 0, LayerNorm eps 1e-12. Sinusoidal position tables are
 * stored as weights like any other, so they need nothing more. */
#include <stdio.h>

#include "models/encoder/encoder.h"
#include "models/folder.h"

#define L "transformer.layer.%d."

static int config(struct gpuq_encoder *e, json_t *c, char *err, size_t errlen) {
    e->hidden = gpuq_json_int(c, "dim", 1, 1 << 14);
    e->heads = gpuq_json_int(c, "n_heads", 1, 1 << 10);
    e->n_layers = gpuq_json_int(c, "n_layers", 1, 1 << 10);
    e->intermediate = gpuq_json_int(c, "hidden_dim", 1, 1 << 16);
    e->max_pos = gpuq_json_int(c, "max_position_embeddings", 1, 1 << 16);
    e->vocab = gpuq_json_int(c, "vocab_size", 1, 1 << 24);
    e->n_types = 0;
    e->ln_eps = 1e-12f;
    if (e->hidden < 0 || e->heads < 0 || e->n_layers < 0 || e->intermediate < 0 || e->max_pos < 0 || e->vocab < 0) {
        snprintf(err, errlen, "config.json: dim, n_heads, n_layers, hidden_dim, max_position_embeddings and "
                 "vocab_size must be positive integers");
        return -1;
    }
    int act = gpuq_act_from_name(gpuq_json_str(c, "activation", "gelu"));
    if (act != GPUQ_ACT_GELU && act != GPUQ_ACT_RELU) {
        snprintf(err, errlen, "config.json: activation \"%.40s\" is not served (gelu, relu)",
                 gpuq_json_str(c, "activation", "?"));
        return -1;
    }
    e->act = (enum gpuq_act)act;
    return 0;
}

static const struct gpuq_encoder_spec spec = {
    .names = {
        [GPUQ_ENC_WORD] = {"embeddings.word_embeddings.weight"},
        [GPUQ_ENC_POS] = {"embeddings.position_embeddings.weight"},
        [GPUQ_ENC_LN_G] = {"embeddings.LayerNorm.weight"},
        [GPUQ_ENC_LN_B] = {"embeddings.LayerNorm.bias"},
        [GPUQ_ENC_QKV_W] = {L "attention.q_lin.weight", L "attention.k_lin.weight", L "attention.v_lin.weight"},
        [GPUQ_ENC_QKV_B] = {L "attention.q_lin.bias", L "attention.k_lin.bias", L "attention.v_lin.bias"},
        [GPUQ_ENC_ATTN_W] = {L "attention.out_lin.weight"},
        [GPUQ_ENC_ATTN_B] = {L "attention.out_lin.bias"},
        [GPUQ_ENC_LN1_G] = {L "sa_layer_norm.weight"},
        [GPUQ_ENC_LN1_B] = {L "sa_layer_norm.bias"},
        [GPUQ_ENC_FFN_W1] = {L "ffn.lin1.weight"},
        [GPUQ_ENC_FFN_B1] = {L "ffn.lin1.bias"},
        [GPUQ_ENC_FFN_W2] = {L "ffn.lin2.weight"},
        [GPUQ_ENC_FFN_B2] = {L "ffn.lin2.bias"},
        [GPUQ_ENC_LN2_G] = {L "output_layer_norm.weight"},
        [GPUQ_ENC_LN2_B] = {L "output_layer_norm.bias"},
    },
    .prefix = "distilbert.",
    .head = {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"},
    .head_act = GPUQ_ACT_RELU,
    .mlm = {"vocab_transform.weight", "vocab_transform.bias", "vocab_layer_norm.weight", "vocab_layer_norm.bias",
            "vocab_projector.weight", "vocab_projector.bias"},
    .config = config,
};

static const char *const types[] = {"distilbert", NULL};

const struct gpuq_family gpuq_family_distilbert = {
    .name = "distilbert", .arch = GPUQ_ARCH_ENCODER, .model_types = types, .load = gpuq_encoder_load,
    .spec = &spec,
};
