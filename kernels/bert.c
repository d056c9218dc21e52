/* bert.c -- loading a BERT encoder from a Hugging Face /
 * sentence-transformers folder; see bert.h for the defaults it applies. */
#include "kernels/bert.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/safetensors.h"

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto out; } while (0)

/* dir/name parsed, or NULL: *absent set when the file is not there (no
 * error then), else err says why. */
static json_t *read_json(const char *dir, const char *name, int *absent, char *err, size_t errlen) {
    char path[4096];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *absent = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) *absent = 1;
        snprintf(err, errlen, "%s: %s", path, errno == ENOENT ? "missing" : strerror(errno));
        return NULL;
    }
    json_t *j = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!j) snprintf(err, errlen, "%s: %s (line %d)", path, jerr.text, jerr.line);
    return j;
}

/* An integer field in [lo, hi], or -1. */
static int int_in(json_t *obj, const char *key, int lo, int hi) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) return -1;
    return (int)json_integer_value(v);
}

static const char *str_or(json_t *obj, const char *key, const char *dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static int read_config(struct gpuq_bert *m, const char *dir, char *err, size_t errlen) {
    int absent, result = -1;
    json_t *c = read_json(dir, "config.json", &absent, err, errlen);
    if (!c) return -1;
    const char *type = str_or(c, "model_type", "missing");
    if (strcmp(type, "bert") != 0)
        FAIL("%s/config.json: model_type \"%.40s\" is not bert (only BERT encoders are served)", dir, type);
    const char *act = str_or(c, "hidden_act", "gelu");
    if (strcmp(act, "gelu") != 0)
        FAIL("%s/config.json: hidden_act \"%.40s\" is not gelu", dir, act);
    const char *pos = str_or(c, "position_embedding_type", "absolute");
    if (strcmp(pos, "absolute") != 0)
        FAIL("%s/config.json: position_embedding_type \"%.40s\" is not absolute", dir, pos);
    m->hidden = int_in(c, "hidden_size", 1, 1 << 14);
    m->heads = int_in(c, "num_attention_heads", 1, 1 << 10);
    m->n_layers = int_in(c, "num_hidden_layers", 1, 1 << 10);
    m->intermediate = int_in(c, "intermediate_size", 1, 1 << 16);
    m->max_pos = int_in(c, "max_position_embeddings", 1, 1 << 16);
    m->vocab = int_in(c, "vocab_size", 1, 1 << 24);
    if (m->hidden < 0 || m->heads < 0 || m->n_layers < 0 || m->intermediate < 0 || m->max_pos < 0 ||
        m->vocab < 0)
        FAIL("%s/config.json: hidden_size, num_attention_heads, num_hidden_layers, intermediate_size, "
             "max_position_embeddings and vocab_size must be positive integers", dir);
    if (m->hidden % m->heads)
        FAIL("%s/config.json: hidden_size %d is not a multiple of num_attention_heads %d", dir,
             m->hidden, m->heads);
    json_t *eps = json_object_get(c, "layer_norm_eps");
    m->ln_eps = json_is_number(eps) ? (float)json_number_value(eps) : 1e-12f;
    if (!(m->ln_eps >= 0 && m->ln_eps < 1)) FAIL("%s/config.json: bad layer_norm_eps", dir);
    result = 0;
out:
    json_decref(c);
    return result;
}

/* The last dotted part of a module type ("sentence_transformers.models.Pooling"). */
static const char *short_type(const char *t) {
    const char *dot = strrchr(t, '.');
    return dot ? dot + 1 : t;
}

/* Pooling, normalization and max_length, as sentence-transformers decides them. */
static int read_sentence_config(struct gpuq_bert *m, const char *dir, char *err, size_t errlen) {
    int absent, result = -1;
    json_t *mods = read_json(dir, "modules.json", &absent, err, errlen), *pool = NULL, *sb = NULL, *tc = NULL;
    m->pooling = GPUQ_BERT_POOL_MEAN;
    m->normalize = 0;
    if (!mods && !absent) goto out;
    if (mods) {
        if (!json_is_array(mods)) FAIL("%s/modules.json: not a list", dir);
        const char *pool_path = NULL;
        size_t i;
        json_t *mod;
        json_array_foreach(mods, i, mod) {
            const char *type = short_type(str_or(mod, "type", "")), *path = str_or(mod, "path", "");
            if (strcmp(type, "Transformer") == 0 && path[0] == 0) continue;
            if (strcmp(type, "Pooling") == 0) pool_path = path;
            else if (strcmp(type, "Normalize") == 0) m->normalize = 1;
            else FAIL("%s/modules.json: module %.60s%s%.60s is not supported (Transformer in the folder "
                      "itself, Pooling, Normalize)", dir, str_or(mod, "type", "?"), path[0] ? " at " : "", path);
        }
        if (!pool_path) FAIL("%s/modules.json: no Pooling module", dir);
        char name[512];
        snprintf(name, sizeof name, "%s/config.json", pool_path);
        if (!(pool = read_json(dir, name, &absent, err, errlen))) goto out;
        int cls = json_is_true(json_object_get(pool, "pooling_mode_cls_token"));
        int mean = json_is_true(json_object_get(pool, "pooling_mode_mean_tokens"));
        int others = 0;
        const char *key;
        json_t *v;
        json_object_foreach(pool, key, v) {
            if (strncmp(key, "pooling_mode_", 13) == 0 && json_is_true(v) &&
                strcmp(key, "pooling_mode_cls_token") != 0 && strcmp(key, "pooling_mode_mean_tokens") != 0)
                others++;
        }
        if (cls + mean != 1 || others)
            FAIL("%s/%s: pooling must be exactly one of cls_token and mean_tokens", dir, name);
        m->pooling = cls ? GPUQ_BERT_POOL_CLS : GPUQ_BERT_POOL_MEAN;
    }
    int max = -1;
    if ((sb = read_json(dir, "sentence_bert_config.json", &absent, err, errlen)))
        max = int_in(sb, "max_seq_length", 1, 1 << 24);
    else if (!absent) goto out;
    if (max < 0) {   /* min(max_position_embeddings, the tokenizer's model_max_length) */
        max = m->max_pos;
        if ((tc = read_json(dir, "tokenizer_config.json", &absent, err, errlen))) {
            json_t *v = json_object_get(tc, "model_max_length");
            if (json_is_number(v) && json_number_value(v) >= 2 && json_number_value(v) < max)
                max = (int)json_number_value(v);
        } else if (!absent) {
            goto out;
        }
    }
    m->max_length = max < m->max_pos ? max : m->max_pos;
    if (m->max_length < 2) FAIL("%s: max_length %d leaves no room for [CLS] and [SEP]", dir, m->max_length);
    result = 0;
out:
    json_decref(mods);
    json_decref(pool);
    json_decref(sb);
    json_decref(tc);
    return result;
}

/* Tensor prefix + name as f32 of the given shape (a dim of -1: any). */
static float *take(const struct gpuq_safetensors *st, const char *prefix, const char *name, int64_t d0,
                   int64_t d1, char *err, size_t errlen) {
    char full[256];
    int64_t shape[2] = {d0, d1};
    snprintf(full, sizeof full, "%s%s", prefix, name);
    return gpuq_safetensors_f32(st, full, d1 ? 2 : 1, shape, err, errlen);
}

/* A LayerNorm's weight and bias, under their names or the old gamma/beta. */
static int take_ln(const struct gpuq_safetensors *st, const char *prefix, const char *base, int h,
                   float **g, float **b, char *err, size_t errlen) {
    char n1[160], n2[160], full[256];
    snprintf(full, sizeof full, "%s%s.gamma", prefix, base);
    int old = gpuq_safetensors_get(st, full) != NULL;
    snprintf(n1, sizeof n1, "%s.%s", base, old ? "gamma" : "weight");
    snprintf(n2, sizeof n2, "%s.%s", base, old ? "beta" : "bias");
    *g = take(st, prefix, n1, h, 0, err, errlen);
    *b = *g ? take(st, prefix, n2, h, 0, err, errlen) : NULL;
    return *b ? 0 : -1;
}

/* Q, K and V stacked into one [3h, h] weight and [3h] bias. */
static int take_qkv(const struct gpuq_safetensors *st, const char *prefix, int l, int h,
                    struct gpuq_bert_layer *ly, char *err, size_t errlen) {
    static const char *const part[3] = {"query", "key", "value"};
    if (!(ly->qkv_w = malloc((size_t)3 * h * h * sizeof(float))) ||
        !(ly->qkv_b = malloc((size_t)3 * h * sizeof(float)))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int p = 0; p < 3; p++) {
        char name[128];
        snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.weight", l, part[p]);
        float *w = take(st, prefix, name, h, h, err, errlen);
        snprintf(name, sizeof name, "encoder.layer.%d.attention.self.%s.bias", l, part[p]);
        float *b = w ? take(st, prefix, name, h, 0, err, errlen) : NULL;
        if (b) {
            memcpy(ly->qkv_w + (size_t)p * h * h, w, (size_t)h * h * sizeof(float));
            memcpy(ly->qkv_b + (size_t)p * h, b, (size_t)h * sizeof(float));
        }
        free(w);
        free(b);
        if (!b) return -1;
    }
    return 0;
}

static int take_layer(const struct gpuq_safetensors *st, const char *prefix, int l,
                      const struct gpuq_bert *m, struct gpuq_bert_layer *ly, char *err, size_t errlen) {
    int h = m->hidden, in = m->intermediate;
    char a[128], b[128], base[128];
    if (take_qkv(st, prefix, l, h, ly, err, errlen) != 0) return -1;
#define DENSE(w, bias, path, d0, d1)                                             \
    snprintf(a, sizeof a, "encoder.layer.%d.%s.weight", l, path);                \
    snprintf(b, sizeof b, "encoder.layer.%d.%s.bias", l, path);                  \
    if (!(ly->w = take(st, prefix, a, d0, d1, err, errlen)) ||                   \
        !(ly->bias = take(st, prefix, b, d0, 0, err, errlen)))                   \
        return -1;
    DENSE(attn_w, attn_b, "attention.output.dense", h, h)
    DENSE(ffn_w1, ffn_b1, "intermediate.dense", in, h)
    DENSE(ffn_w2, ffn_b2, "output.dense", h, in)
#undef DENSE
    snprintf(base, sizeof base, "encoder.layer.%d.attention.output.LayerNorm", l);
    if (take_ln(st, prefix, base, h, &ly->ln1_g, &ly->ln1_b, err, errlen) != 0) return -1;
    snprintf(base, sizeof base, "encoder.layer.%d.output.LayerNorm", l);
    return take_ln(st, prefix, base, h, &ly->ln2_g, &ly->ln2_b, err, errlen);
}

static int read_weights(struct gpuq_bert *m, const char *dir, char *err, size_t errlen) {
    struct gpuq_safetensors st;
    char path[4096], why[256] = "out of memory";
    int result = -1, h = m->hidden;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (gpuq_safetensors_load(&st, path, err, errlen) != 0) return -1;
    const char *prefix = gpuq_safetensors_get(&st, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
    if (!(m->word_emb = take(&st, prefix, "embeddings.word_embeddings.weight", m->vocab, h, why, sizeof why)) ||
        !(m->pos_emb = take(&st, prefix, "embeddings.position_embeddings.weight", m->max_pos, h, why, sizeof why)) ||
        !(m->type_emb = take(&st, prefix, "embeddings.token_type_embeddings.weight", -1, h, why, sizeof why)) ||
        take_ln(&st, prefix, "embeddings.LayerNorm", h, &m->emb_ln_g, &m->emb_ln_b, why, sizeof why) != 0)
        goto out;
    if (!(m->layers = calloc((size_t)m->n_layers, sizeof *m->layers))) goto out;
    for (int l = 0; l < m->n_layers; l++)
        if (take_layer(&st, prefix, l, m, &m->layers[l], why, sizeof why) != 0) goto out;
    result = 0;
out:
    if (result != 0) snprintf(err, errlen, "%s: %s", path, why);
    gpuq_safetensors_free(&st);
    return result;
}

/* config_sentence_transformers.json's prompts and default_prompt_name. */
static int read_prompts(struct gpuq_bert *m, const char *dir, char *err, size_t errlen) {
    int absent, result = -1;
    json_t *c = read_json(dir, "config_sentence_transformers.json", &absent, err, errlen);
    m->default_prompt = -1;
    if (!c) return absent ? 0 : -1;
    json_t *prompts = json_object_get(c, "prompts"), *def = json_object_get(c, "default_prompt_name");
    if (prompts && !json_is_object(prompts))
        FAIL("%s/config_sentence_transformers.json: prompts is not an object", dir);
    size_t n = json_object_size(prompts);
    m->prompt_names = calloc(n + 1, sizeof(char *));
    m->prompts = calloc(n + 1, sizeof(char *));
    if (!m->prompt_names || !m->prompts) FAIL("out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(prompts, key, v) {
        if (!json_is_string(v)) FAIL("%s/config_sentence_transformers.json: prompt %.60s is not text", dir, key);
        m->prompt_names[m->n_prompts] = strdup(key);
        m->prompts[m->n_prompts] = strdup(json_string_value(v));
        if (!m->prompt_names[m->n_prompts++] || !m->prompts[m->n_prompts - 1]) FAIL("out of memory");
    }
    if (json_is_string(def)) {
        for (int i = 0; i < m->n_prompts; i++)
            if (strcmp(m->prompt_names[i], json_string_value(def)) == 0) m->default_prompt = i;
        if (m->default_prompt < 0)
            FAIL("%s/config_sentence_transformers.json: default_prompt_name %.60s is not one of its prompts",
                 dir, json_string_value(def));
    }
    result = 0;
out:
    json_decref(c);
    return result;
}

const char *gpuq_bert_prompt(const struct gpuq_bert *m, const char *name, size_t len) {
    for (int i = 0; i < m->n_prompts; i++)
        if (strlen(m->prompt_names[i]) == len && memcmp(m->prompt_names[i], name, len) == 0) return m->prompts[i];
    return NULL;
}

int gpuq_bert_load(struct gpuq_bert *m, const char *dir, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    int result = read_config(m, dir, err, errlen);
    if (result == 0) result = read_sentence_config(m, dir, err, errlen);
    if (result == 0) result = read_prompts(m, dir, err, errlen);
    if (result == 0) result = read_weights(m, dir, err, errlen);
    if (result != 0) gpuq_bert_free(m);
    return result;
}

void gpuq_bert_free(struct gpuq_bert *m) {
    if (!m) return;
    for (int l = 0; m->layers && l < m->n_layers; l++) {
        struct gpuq_bert_layer *ly = &m->layers[l];
        float *all[] = {ly->qkv_w, ly->qkv_b, ly->attn_w, ly->attn_b, ly->ln1_g, ly->ln1_b,
                        ly->ffn_w1, ly->ffn_b1, ly->ffn_w2, ly->ffn_b2, ly->ln2_g, ly->ln2_b};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
        free(ly->w16);
    }
    free(m->layers);
    free(m->word_emb);
    free(m->pos_emb);
    free(m->type_emb);
    free(m->emb_ln_g);
    free(m->emb_ln_b);
    for (int i = 0; i < m->n_prompts; i++) {
        free(m->prompt_names[i]);
        free(m->prompts[i]);
    }
    free(m->prompt_names);
    free(m->prompts);
    memset(m, 0, sizeof *m);
}
