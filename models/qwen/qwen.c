/* qwen.c -- Qwen3 and Qwen2 decoders (model_type qwen3, qwen2), as
 * Qwen3-Embedding and gte-Qwen2 folders hold them: Qwen3Model's /
 * Qwen2Model's tensor names, with or without "model.". Qwen3 has an
 * RMSNorm per head on q and k; Qwen2 has biases on q, k and v. Both: SiLU
 * in the SwiGLU feed-forward, plain rotary positions (no rope scaling), no
 * sliding window. */
#include <stdio.h>
#include <string.h>

#include "models/decoder/decoder.h"
#include "models/folder.h"

#define L "layers.%d."

/* rope_theta at the top (transformers 4.x), or in rope_parameters (5.x);
 * a rope scaling other than the default is refused. */
static int read_rope(struct gpuq_decoder *d, json_t *c, char *err, size_t errlen) {
    json_t *params = json_object_get(c, "rope_parameters"), *scaling = json_object_get(c, "rope_scaling");
    json_t *theta = json_object_get(c, "rope_theta");
    if (!json_is_number(theta) && json_is_object(params)) theta = json_object_get(params, "rope_theta");
    d->rope_theta = json_is_number(theta) ? json_number_value(theta) : 10000.0;
    const char *type = "default";
    if (json_is_object(params)) type = gpuq_json_str(params, "rope_type", "default");
    if (json_is_object(scaling)) type = gpuq_json_str(scaling, "rope_type", gpuq_json_str(scaling, "type", "?"));
    if (strcmp(type, "default") != 0) {
        snprintf(err, errlen, "config.json: rope scaling \"%.40s\" is not served (default rotary positions only)", type);
        return -1;
    }
    return 0;
}

static int config(struct gpuq_decoder *d, json_t *c, char *err, size_t errlen) {
    int qwen3 = !strcmp(gpuq_json_str(c, "model_type", ""), "qwen3");
    d->hidden = gpuq_json_int(c, "hidden_size", 1, 1 << 16);
    d->heads = gpuq_json_int(c, "num_attention_heads", 1, 1 << 10);
    d->kv_heads = json_object_get(c, "num_key_value_heads") ? gpuq_json_int(c, "num_key_value_heads", 1, 1 << 10)
                                                            : d->heads;
    d->n_layers = gpuq_json_int(c, "num_hidden_layers", 1, 1 << 10);
    d->intermediate = gpuq_json_int(c, "intermediate_size", 1, 1 << 18);
    d->vocab = gpuq_json_int(c, "vocab_size", 1, 1 << 24);
    d->max_pos = gpuq_json_int(c, "max_position_embeddings", 2, 1 << 24);
    if (d->hidden < 0 || d->heads < 0 || d->kv_heads < 0 || d->n_layers < 0 || d->intermediate < 0 || d->vocab < 0 ||
        d->max_pos < 0) {
        snprintf(err, errlen, "config.json: hidden_size, num_attention_heads, num_key_value_heads, "
                 "num_hidden_layers, intermediate_size, vocab_size and max_position_embeddings must be positive "
                 "integers");
        return -1;
    }
    json_t *hd = json_object_get(c, "head_dim");
    d->head_dim = json_is_integer(hd) ? gpuq_json_int(c, "head_dim", 1, 1 << 12) : d->hidden / d->heads;
    if (d->head_dim < 1 || (!json_is_integer(hd) && d->hidden % d->heads)) {
        snprintf(err, errlen, "config.json: head_dim must be a positive integer (or hidden_size a multiple of "
                 "the heads)");
        return -1;
    }
    json_t *eps = json_object_get(c, "rms_norm_eps");
    d->rms_eps = json_is_number(eps) ? (float)json_number_value(eps) : 1e-6f;
    const char *act = gpuq_json_str(c, "hidden_act", "silu");
    if (strcmp(act, "silu") != 0) {
        snprintf(err, errlen, "config.json: hidden_act \"%.40s\" is not served (silu)", act);
        return -1;
    }
    if (json_is_true(json_object_get(c, "use_sliding_window"))) {
        snprintf(err, errlen, "config.json: use_sliding_window is not served (full causal attention only)");
        return -1;
    }
    if (qwen3 && json_is_true(json_object_get(c, "attention_bias"))) {
        snprintf(err, errlen, "config.json: attention_bias true is not served for qwen3");
        return -1;
    }
    d->family = qwen3 ? "qwen3" : "qwen2";
    d->qk_norm = qwen3;
    d->qkv_bias = !qwen3;
    return read_rope(d, c, err, errlen);
}

static const struct gpuq_decoder_spec spec = {
    .embed = "embed_tokens.weight",
    .norm = "norm.weight",
    .layer = {
        [GPUQ_DEC_IN_NORM] = {L "input_layernorm.weight"},
        [GPUQ_DEC_QKV_W] = {L "self_attn.q_proj.weight", L "self_attn.k_proj.weight", L "self_attn.v_proj.weight"},
        [GPUQ_DEC_QKV_B] = {L "self_attn.q_proj.bias", L "self_attn.k_proj.bias", L "self_attn.v_proj.bias"},
        [GPUQ_DEC_Q_NORM] = {L "self_attn.q_norm.weight"},
        [GPUQ_DEC_K_NORM] = {L "self_attn.k_norm.weight"},
        [GPUQ_DEC_O_W] = {L "self_attn.o_proj.weight"},
        [GPUQ_DEC_POST_NORM] = {L "post_attention_layernorm.weight"},
        [GPUQ_DEC_GATE_UP_W] = {L "mlp.gate_proj.weight", L "mlp.up_proj.weight"},
        [GPUQ_DEC_DOWN_W] = {L "mlp.down_proj.weight"},
    },
    .prefix = "model.",
    .config = config,
};

static const char *const types[] = {"qwen3", "qwen2", NULL};

const struct gpuq_family gpuq_family_qwen = {
    .name = "qwen", .arch = GPUQ_ARCH_DECODER, .model_types = types, .load = gpuq_decoder_load, .spec = &spec,
};
