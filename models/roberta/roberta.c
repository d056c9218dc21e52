/* roberta.c -- RoBERTa, XLM-RoBERTa and CamemBERT encoders: BERT's tensor
 * names under "roberta.", one token type, and positions counted past the
 * padding id (pad_token_id + 1 + the tokens before that are not padding),
 * as transformers' create_position_ids_from_input_ids. */
#include <stdio.h>

#include "models/bert/names.h"
#include "models/encoder/encoder.h"
#include "models/folder.h"

static int config(struct gpuq_encoder *e, json_t *c, char *err, size_t errlen) {
    if (gpuq_encoder_bert_config(e, c, err, errlen) != 0) return -1;
    e->pad_id = gpuq_json_int(c, "pad_token_id", 0, 1 << 24);
    if (e->pad_id < 0 || e->pad_id + 2 > e->max_pos) {
        snprintf(err, errlen, "config.json: pad_token_id must be an integer below max_position_embeddings - 1");
        return -1;
    }
    return 0;
}

static const struct gpuq_encoder_spec spec = {
    .names = GPUQ_BERT_NAMES,
    .prefix = "roberta.",
    .head = {"classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
             "classifier.out_proj.bias"},
    .head_act = GPUQ_ACT_TANH,
    .mlm = {"lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight", "lm_head.layer_norm.bias",
            "lm_head.decoder.weight", "lm_head.bias"},
    .config = config,
};

static const char *const types[] = {"roberta", "xlm-roberta", "camembert", NULL};

const struct gpuq_family gpuq_family_roberta = {
    .name = "roberta", .arch = GPUQ_ARCH_ENCODER, .model_types = types, .load = gpuq_encoder_load, .spec = &spec,
};
