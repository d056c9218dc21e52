/* load.c -- an encoder folder of any family of this arch: config.json by
 * the family's reader, model.safetensors by its tensor names, the
 * tokenizer, then the sentence-transformers files (st.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/encoder/encoder.h"
#include "models/folder.h"
#include "models/safetensors.h"
#include "text/tokenizer.h"

int gpuq_encoder_dim(const struct gpuq_encoder *e) {
    return e->n_dense ? e->dense[e->n_dense - 1].d_out : e->hidden;
}

int gpuq_encoder_max_tokens(const struct gpuq_encoder *e) {
    return e->pad_id < 0 ? e->max_pos : e->max_pos - e->pad_id - 1;
}

int gpuq_encoder_bert_config(struct gpuq_encoder *e, json_t *c, char *err, size_t errlen) {
    e->hidden = gpuq_json_int(c, "hidden_size", 1, 1 << 14);
    e->heads = gpuq_json_int(c, "num_attention_heads", 1, 1 << 10);
    e->n_layers = gpuq_json_int(c, "num_hidden_layers", 1, 1 << 10);
    e->intermediate = gpuq_json_int(c, "intermediate_size", 1, 1 << 16);
    e->max_pos = gpuq_json_int(c, "max_position_embeddings", 1, 1 << 16);
    e->vocab = gpuq_json_int(c, "vocab_size", 1, 1 << 24);
    e->n_types = json_object_get(c, "type_vocab_size") ? gpuq_json_int(c, "type_vocab_size", 1, 1 << 10) : 2;
    if (e->hidden < 0 || e->heads < 0 || e->n_layers < 0 || e->intermediate < 0 || e->max_pos < 0 ||
        e->vocab < 0 || e->n_types < 0) {
        snprintf(err, errlen, "config.json: hidden_size, num_attention_heads, num_hidden_layers, "
                 "intermediate_size, max_position_embeddings, vocab_size and type_vocab_size must be positive "
                 "integers");
        return -1;
    }
    json_t *eps = json_object_get(c, "layer_norm_eps");
    e->ln_eps = json_is_number(eps) ? (float)json_number_value(eps) : 1e-12f;
    int act = gpuq_act_from_name(gpuq_json_str(c, "hidden_act", "gelu"));
    if (act != GPUQ_ACT_GELU && act != GPUQ_ACT_RELU) {
        snprintf(err, errlen, "config.json: hidden_act \"%.40s\" is not served (gelu, relu)",
                 gpuq_json_str(c, "hidden_act", "?"));
        return -1;
    }
    e->act = (enum gpuq_act)act;
    const char *pos = gpuq_json_str(c, "position_embedding_type", "absolute");
    if (strcmp(pos, "absolute") != 0) {
        snprintf(err, errlen, "config.json: position_embedding_type \"%.40s\" is not served (absolute)", pos);
        return -1;
    }
    return 0;
}

void gpuq_encoder_weights(struct gpuq_encoder *e, gpuq_enc_weight_fn *fn, void *ctx) {
    int64_t h = e->hidden, in = e->intermediate;
    int64_t emb[GPUQ_ENC_REL_BIAS + 1][2] = {{e->vocab, h}, {e->max_pos, h}, {e->n_types, h}, {h, 0}, {h, 0},
                                             {e->rel_buckets, e->heads}};
    for (int s = 0; s <= GPUQ_ENC_REL_BIAS; s++) {
        if ((s == GPUQ_ENC_TYPE && !e->n_types) || (s == GPUQ_ENC_REL_BIAS && !e->rel_buckets)) continue;
        struct gpuq_weight w = {&e->emb[s], (size_t)(emb[s][0] * (emb[s][1] ? emb[s][1] : 1)), NULL};
        fn(ctx, &w, s, -1, emb[s][0], emb[s][1]);
    }
    const int64_t shape[GPUQ_ENC_LAYER_SLOTS][2] = {{3 * h, h}, {3 * h, 0}, {h, h}, {h, 0}, {h, 0}, {h, 0},
                                                    {in, h}, {in, 0}, {h, in}, {h, 0}, {h, 0}, {h, 0}};
    for (int l = 0; e->layers && l < e->n_layers; l++) {
        struct gpuq_enc_layer *ly = &e->layers[l];
        for (int i = 0; i < GPUQ_ENC_LAYER_SLOTS; i++) {
            int slot = GPUQ_ENC_FIRST_LAYER_SLOT + i, m = -1;
            m = slot == GPUQ_ENC_QKV_W ? 0 : slot == GPUQ_ENC_ATTN_W ? 1 : slot == GPUQ_ENC_FFN_W1 ? 2
                : slot == GPUQ_ENC_FFN_W2 ? 3 : -1;
            struct gpuq_weight w = {&ly->w[i], (size_t)(shape[i][0] * (shape[i][1] ? shape[i][1] : 1)),
                                    m >= 0 ? &ly->w16[m] : NULL};
            fn(ctx, &w, slot, l, shape[i][0], shape[i][1]);
        }
    }
    if (e->mlm) {
        struct gpuq_mlm *M = e->mlm;
        float **v[6] = {&M->w, &M->b, &M->ln_g, &M->ln_b, &M->decoder, &M->bias};
        int64_t d0[6] = {h, h, h, h, e->vocab, e->vocab}, d1[6] = {h, 0, 0, 0, h, 0};
        for (int i = 0; i < 6; i++) {
            struct gpuq_weight w = {v[i], (size_t)(d0[i] * (d1[i] ? d1[i] : 1)), NULL};
            if (i != 4 || M->decoder) fn(ctx, &w, GPUQ_ENC_SLOTS + 1, i, d0[i], d1[i]);
        }
    }
    for (int d = 0; d < e->n_dense; d++) {
        struct gpuq_dense *D = &e->dense[d];
        struct gpuq_weight w = {&D->w, (size_t)D->d_in * D->d_out, NULL}, b = {&D->b, (size_t)D->d_out, NULL};
        fn(ctx, &w, GPUQ_ENC_SLOTS, d, D->d_out, D->d_in);
        fn(ctx, &b, GPUQ_ENC_SLOTS, d, D->d_out, 0);
    }
}

static void free_weight(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0, int64_t d1) {
    (void)ctx, (void)slot, (void)layer, (void)d0, (void)d1;
    free(*w->data);
    *w->data = NULL;
    if (w->w16) {
        free(*w->w16);
        *w->w16 = NULL;
    }
}

void gpuq_encoder_free(struct gpuq_encoder *e) {
    if (!e) return;
    gpuq_encoder_weights(e, free_weight, NULL);
    free(e->layers);
    free(e->dense);
    free(e->mlm);
    for (int i = 0; i < e->n_prompts; i++) {
        free(e->prompt_names[i]);
        free(e->prompts[i]);
    }
    free(e->prompt_names);
    free(e->prompts);
    for (int i = 0; e->labels && i < e->n_labels; i++) free(e->labels[i]);
    free(e->labels);
    memset(e, 0, sizeof *e);
}

/* ---- the weights, by the family's names ---- */

struct reader {
    const struct gpuq_encoder_spec *spec;
    const struct gpuq_safetensors *st;
    const char *prefix;
    char *err;
    size_t errlen;
    int failed;
};

static float *take(struct reader *r, const char *name, int layer, int64_t d0, int64_t d1) {
    return gpuq_safetensors_take(r->st, r->prefix, name, layer, d0, d1, r->err, r->errlen);
}

static void read_weight(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0, int64_t d1) {
    struct reader *r = ctx;
    if (r->failed || slot >= GPUQ_ENC_SLOTS) return;   /* the Dense modules are st.c's */
    const char *const *names = r->spec->names[slot];
    if (!names[0]) {
        snprintf(r->err, r->errlen, "the family names no tensor for slot %d", slot);
        r->failed = 1;
        return;
    }
    if (!names[1]) {
        r->failed = !(*w->data = take(r, names[0], layer, d0, d1));
        return;
    }
    /* three parts stacked: each a third of the rows */
    int64_t rows[3] = {d0 / 3, d0 / 3, d0 / 3};
    r->failed = !(*w->data = gpuq_safetensors_stack(r->st, r->prefix, names, 3, layer, rows, d1, r->err, r->errlen));
}

/* A *ForSequenceClassification head as two Dense modules on the first
 * token: the pre-classifier [h, h] with the family's activation, then the
 * classifier [labels, h]. */
static int read_head(struct gpuq_encoder *e, const struct gpuq_encoder_spec *spec, const struct gpuq_safetensors *st,
                     char *err, size_t errlen) {
    if (!spec->head[0]) return snprintf(err, errlen, "this family has no sequence-classification head"), -1;
    const struct gpuq_tensor *out = gpuq_safetensors_get(st, spec->head[2]);
    if (!out || out->ndim != 2 || out->shape[0] < 1 || out->shape[0] > 1 << 16)
        return snprintf(err, errlen, "no classifier %s [labels, %d]", spec->head[2], e->hidden), -1;
    if (!(e->dense = calloc(2, sizeof *e->dense))) return snprintf(err, errlen, "out of memory"), -1;
    e->n_dense = 2;
    e->dense[0] = (struct gpuq_dense){.d_in = e->hidden, .d_out = e->hidden, .act = spec->head_act};
    e->dense[1] = (struct gpuq_dense){.d_in = e->hidden, .d_out = (int)out->shape[0], .act = GPUQ_ACT_NONE};
    for (int i = 0; i < 2; i++) {
        int64_t ws[2] = {e->dense[i].d_out, e->hidden}, bs[1] = {e->dense[i].d_out};
        if (!(e->dense[i].w = gpuq_safetensors_f32(st, spec->head[2 * i], 2, ws, err, errlen)) ||
            !(e->dense[i].b = gpuq_safetensors_f32(st, spec->head[2 * i + 1], 1, bs, err, errlen)))
            return -1;
    }
    return 0;
}

/* Tensor name in full as f32 of the given shape; a LayerNorm's weight and
 * bias may be its old gamma and beta. */
static float *take_full(const struct gpuq_safetensors *st, const char *name, int64_t d0, int64_t d1, char *err,
                        size_t errlen) {
    return gpuq_safetensors_take(st, "", name, 0, d0, d1, err, errlen);
}

/* A *ForMaskedLM head: the transform, its LayerNorm, the decoder (the word
 * embeddings when the folder has none: tied) and the bias. */
static int read_mlm(struct gpuq_encoder *e, const struct gpuq_encoder_spec *spec, const struct gpuq_safetensors *st,
                    char *err, size_t errlen) {
    if (!spec->mlm[0]) return snprintf(err, errlen, "this family has no masked-language-model head"), -1;
    struct gpuq_mlm *M = e->mlm = calloc(1, sizeof *e->mlm);
    int64_t h = e->hidden, v = e->vocab;
    if (!M) return snprintf(err, errlen, "out of memory"), -1;
    if (!(M->w = take_full(st, spec->mlm[0], h, h, err, errlen)) || !(M->b = take_full(st, spec->mlm[1], h, 0, err, errlen)) ||
        !(M->ln_g = take_full(st, spec->mlm[2], h, 0, err, errlen)) ||
        !(M->ln_b = take_full(st, spec->mlm[3], h, 0, err, errlen)))
        return -1;
    if (gpuq_safetensors_get(st, spec->mlm[4]) && !(M->decoder = take_full(st, spec->mlm[4], v, h, err, errlen)))
        return -1;
    char alt[160];      /* the bias may sit with the decoder: "....decoder.bias" */
    snprintf(alt, sizeof alt, "%.*sbias", (int)(strlen(spec->mlm[4]) - strlen("weight")), spec->mlm[4]);
    const char *bias = gpuq_safetensors_get(st, spec->mlm[5]) ? spec->mlm[5] : alt;
    return (M->bias = take_full(st, bias, v, 0, err, errlen)) ? 0 : -1;
}

static int read_weights(struct gpuq_encoder *e, const struct gpuq_encoder_spec *spec, const char *dir, int is_mlm,
                        char *err, size_t errlen) {
    struct gpuq_safetensors st;
    char path[4096], why[256] = "out of memory", first[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (gpuq_safetensors_load(&st, path, err, errlen) != 0) return -1;
    snprintf(first, sizeof first, "%s%s", spec->prefix, spec->names[GPUQ_ENC_WORD][0]);
    struct reader r = {spec, &st, gpuq_safetensors_get(&st, first) ? spec->prefix : "", why, sizeof why, 0};
    if ((e->layers = calloc((size_t)e->n_layers, sizeof *e->layers))) gpuq_encoder_weights(e, read_weight, &r);
    else r.failed = 1;
    if (!r.failed && e->scorer) r.failed = read_head(e, spec, &st, why, sizeof why) != 0;
    if (!r.failed && is_mlm) r.failed = read_mlm(e, spec, &st, why, sizeof why) != 0;
    if (r.failed) snprintf(err, errlen, "%s: %s", path, why);
    gpuq_safetensors_free(&st);
    return r.failed ? -1 : 0;
}

const char *gpuq_score_fn_name(enum gpuq_score_fn f) {
    static const char *const names[] = {"none", "sigmoid", "softmax", "tanh"};
    return names[f];
}

/* config.json's architectures name a *<head>: "ForSequenceClassification", "ForMaskedLM". */
static int has_head(json_t *c, const char *head) {
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(c, "architectures"), i, a) {
        const char *s = json_is_string(a) ? json_string_value(a) : "";
        size_t n = strlen(s), k = strlen(head);
        if (n > k && !strcmp(s + n - k, head)) return 1;
    }
    return 0;
}

/* A torch.nn activation's path as a score function; -1 for one that is not served. */
static int torch_fn(const char *path) {
    static const char *const names[][2] = {{"Identity", "none"}, {"Sigmoid", "sigmoid"}, {"Tanh", "tanh"},
                                           {"Softmax", "softmax"}};
    const char *dot = strrchr(path, '.');
    for (int i = 0; i < 4; i++)
        if (!strcmp(dot ? dot + 1 : path, names[i][0]))
            return i == 0 ? GPUQ_FN_NONE : i == 1 ? GPUQ_FN_SIGMOID : i == 2 ? GPUQ_FN_TANH : GPUQ_FN_SOFTMAX;
    return -1;
}

/* The labels (id2label in index order, else LABEL_i), classify's default
 * function (problem_type, else sigmoid for one label and softmax for more,
 * as transformers' pipeline) and rerank's activation (sentence-transformers'
 * CrossEncoder: the activation_fn its files name, else sigmoid for one label
 * and none for more). */
static int read_labels(struct gpuq_encoder *e, json_t *c, const char *dir, char *err, size_t errlen) {
    int n = e->dense[e->n_dense - 1].d_out, absent;
    e->n_labels = n;
    if (!(e->labels = calloc((size_t)n, sizeof *e->labels))) return snprintf(err, errlen, "out of memory"), -1;
    json_t *names = json_object_get(c, "id2label");
    for (int i = 0; i < n; i++) {
        char key[16], dflt[24];
        snprintf(key, sizeof key, "%d", i);
        snprintf(dflt, sizeof dflt, "LABEL_%d", i);
        if (!(e->labels[i] = strdup(gpuq_json_str(names, key, dflt)))) return snprintf(err, errlen, "out of memory"), -1;
    }
    const char *problem = gpuq_json_str(c, "problem_type", "");
    e->classify_fn = !strcmp(problem, "multi_label_classification") ? GPUQ_FN_SIGMOID
                     : !strcmp(problem, "regression") ? GPUQ_FN_NONE
                     : !strcmp(problem, "single_label_classification") ? GPUQ_FN_SOFTMAX
                     : n == 1 ? GPUQ_FN_SIGMOID : GPUQ_FN_SOFTMAX;
    e->rerank_fn = n == 1 ? GPUQ_FN_SIGMOID : GPUQ_FN_NONE;
    json_t *cst = gpuq_folder_json(dir, "config_sentence_transformers.json", &absent, err, errlen);
    const char *paths[3] = {gpuq_json_str(cst, "activation_fn", NULL),
                            gpuq_json_str(json_object_get(c, "sentence_transformers"), "activation_fn", NULL),
                            gpuq_json_str(c, "sbert_ce_default_activation_function", NULL)};
    int rc = 0;
    for (int i = 0; i < 3; i++) {
        if (!paths[i] || strncmp(paths[i], "torch.", 6) != 0) continue;   /* only torch's, as there */
        int fn = torch_fn(paths[i]);
        if (fn < 0) {
            snprintf(err, errlen, "%s: activation_fn %.80s is not served (Identity, Sigmoid, Tanh, Softmax)", dir,
                     paths[i]);
            rc = -1;
        } else {
            e->rerank_fn = (enum gpuq_score_fn)fn;
        }
        break;
    }
    json_decref(cst);
    return rc;
}

int gpuq_encoder_load(struct gpuq_model *m, const struct gpuq_source *src, char *err, size_t errlen) {
    const struct gpuq_encoder_spec *spec = m->family->spec;
    struct gpuq_encoder *e = calloc(1, sizeof *e);
    char why[384];
    if (!e) {
        snprintf(err, errlen, "%s: out of memory", src->path);
        return -1;
    }
    m->impl = e;
    e->family = m->family->name;
    e->pad_id = -1;
    if (spec->config(e, src->config, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s/%s", src->path, why);
        return -1;
    }
    if (e->hidden % e->heads) {
        snprintf(err, errlen, "%s/config.json: the hidden size %d is not a multiple of the %d heads", src->path,
                 e->hidden, e->heads);
        return -1;
    }
    if (!(e->ln_eps >= 0 && e->ln_eps < 1) || gpuq_encoder_max_tokens(e) < 2) {
        snprintf(err, errlen, "%s/config.json: bad layer_norm_eps, or fewer than 2 positions", src->path);
        return -1;
    }
    e->scorer = has_head(src->config, "ForSequenceClassification");
    if (read_weights(e, spec, src->path, !e->scorer && has_head(src->config, "ForMaskedLM"), err, errlen) != 0 ||
        (e->scorer && read_labels(e, src->config, src->path, err, errlen) != 0) ||
        gpuq_encoder_read_st(e, src->path, err, errlen) != 0 ||
        !(m->tok = gpuq_tok_load(src->path, err, errlen)))
        return -1;
    if (gpuq_tok_vocab_size(m->tok) > e->vocab) {
        snprintf(err, errlen, "%s: the tokenizer has %d ids, the model's vocabulary %d", src->path,
                 gpuq_tok_vocab_size(m->tok), e->vocab);
        return -1;
    }
    return 0;
}
