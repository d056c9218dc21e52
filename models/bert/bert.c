/* bert.c -- BERT encoders (model_type bert): BertModel's tensor names,
 * with or without "bert.", absolute positions from 0, token type 0. */
#include "models/bert/names.h"
#include "models/encoder/encoder.h"

static const struct gpuq_encoder_spec spec = {
    .names = GPUQ_BERT_NAMES,
    .prefix = "bert.",
    .head = {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"},
    .head_act = GPUQ_ACT_TANH,
    .mlm = {"cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
            "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
            "cls.predictions.decoder.weight", "cls.predictions.bias"},
    .config = gpuq_encoder_bert_config,
};

static const char *const types[] = {"bert", NULL};

const struct gpuq_family gpuq_family_bert = {
    .name = "bert", .arch = GPUQ_ARCH_ENCODER, .model_types = types, .load = gpuq_encoder_load, .spec = &spec,
};
