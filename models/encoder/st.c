/* st.c -- the sentence-transformers files of an encoder folder, read as
 * sentence-transformers reads them: modules.json's modules in order
 * (Transformer at the folder itself, Pooling, Dense ..., Normalize), then
 * max_length and the prompts. Without modules.json: mean pooling, no
 * normalization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/encoder/encoder.h"
#include "models/folder.h"
#include "models/safetensors.h"

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto out; } while (0)

static const char *const pool_names[GPUQ_POOLS] = {"mean", "cls", "max", "mean_sqrt_len", "lasttoken",
                                                   "weightedmean"};
/* Pooling's config keys, in enum gpuq_pool's order */
static const char *const pool_keys[GPUQ_POOLS] = {
    "pooling_mode_mean_tokens", "pooling_mode_cls_token", "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_lasttoken", "pooling_mode_weightedmean_tokens"};

const char *gpuq_pool_name(enum gpuq_pool p) { return pool_names[p]; }

int gpuq_pool_from_name(const char *s, size_t len) {
    for (int i = 0; i < GPUQ_POOLS; i++)
        if (strlen(pool_names[i]) == len && !memcmp(s, pool_names[i], len)) return i;
    return -1;
}

/* The last dotted part of a module type ("sentence_transformers.models.Pooling"). */
static const char *short_type(const char *t) {
    const char *dot = strrchr(t, '.');
    return dot ? dot + 1 : t;
}

static int read_pooling(struct gpuq_encoder *e, const char *dir, const char *path, char *err, size_t errlen) {
    char name[512];
    int absent, result = -1, n = 0;
    snprintf(name, sizeof name, "%s/config.json", path);
    json_t *c = gpuq_folder_json(dir, name, &absent, err, errlen);
    if (!c) return -1;
    const char *key, *named = gpuq_json_str(c, "pooling_mode", NULL);
    json_t *v;
    if (named) {    /* newer folders name the mode: "mean", "cls", ... */
        int mode = gpuq_pool_from_name(named, strlen(named));
        if (mode < 0 && !strcmp(named, "mean_sqrt_len_tokens")) mode = GPUQ_POOL_MEAN_SQRT_LEN;
        if (mode < 0) FAIL("%s/%s: pooling_mode %.40s is not one this worker knows", dir, name, named);
        e->pooling = (enum gpuq_pool)mode;
        n++;
    }
    json_object_foreach(c, key, v) {
        if (named || strncmp(key, "pooling_mode_", 13) != 0 || !json_is_true(v)) continue;
        int mode = -1;
        for (int i = 0; i < GPUQ_POOLS; i++)
            if (!strcmp(key, pool_keys[i])) mode = i;
        if (mode < 0) FAIL("%s/%s: %.60s is not a pooling mode this worker knows", dir, name, key);
        e->pooling = (enum gpuq_pool)mode;
        n++;
    }
    if (n != 1) FAIL("%s/%s: %d pooling modes are on; one is served (mean, cls, max, mean_sqrt_len, lasttoken, "
                     "weightedmean)", dir, name, n);
    if (json_is_false(json_object_get(c, "include_prompt")))
        FAIL("%s/%s: include_prompt false (pooling without the prompt's tokens) is not served", dir, name);
    result = 0;
out:
    json_decref(c);
    return result;
}

/* torch.nn.modules.activation.Tanh and the like. */
static int dense_act(const char *t) {
    static const char *const names[][2] = {{"Identity", "none"}, {"Tanh", "tanh"}, {"ReLU", "relu"},
                                           {"GELU", "gelu"}, {"SiLU", "silu"}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(short_type(t), names[i][0])) return gpuq_act_from_name(names[i][1]);
    return -1;
}

static int read_dense(struct gpuq_encoder *e, const char *dir, const char *path, int d_in, char *err,
                      size_t errlen) {
    char name[512], file[4600];
    int absent, result = -1;
    struct gpuq_safetensors st = {0};
    snprintf(name, sizeof name, "%s/config.json", path);
    json_t *c = gpuq_folder_json(dir, name, &absent, err, errlen);
    if (!c) return -1;
    struct gpuq_dense *grown = realloc(e->dense, (size_t)(e->n_dense + 1) * sizeof(*grown));
    if (!grown) FAIL("out of memory");
    e->dense = grown;
    struct gpuq_dense *d = &e->dense[e->n_dense++];
    memset(d, 0, sizeof *d);
    d->d_in = gpuq_json_int(c, "in_features", 1, 1 << 16);
    d->d_out = gpuq_json_int(c, "out_features", 1, 1 << 16);
    int act = dense_act(gpuq_json_str(c, "activation_function", "torch.nn.modules.activation.Tanh"));
    if (d->d_in != d_in || d->d_out < 0)
        FAIL("%s/%s: in_features must be %d (what comes before it) and out_features positive", dir, name, d_in);
    if (act < 0)
        FAIL("%s/%s: activation_function %.80s is not served (Identity, Tanh, ReLU, GELU, SiLU)", dir, name,
             gpuq_json_str(c, "activation_function", "?"));
    d->act = (enum gpuq_act)act;
    snprintf(file, sizeof file, "%s/%s/model.safetensors", dir, path);
    if (gpuq_safetensors_load(&st, file, err, errlen) != 0) {
        snprintf(err, errlen, "%s/%s: no model.safetensors (only safetensors weights are read)", dir, path);
        goto out;
    }
    int64_t ws[2] = {d->d_out, d->d_in}, bs[1] = {d->d_out};
    char why[256];
    if (!(d->w = gpuq_safetensors_f32(&st, "linear.weight", 2, ws, why, sizeof why))) FAIL("%s: %s", file, why);
    if (json_is_false(json_object_get(c, "bias"))) d->b = calloc((size_t)d->d_out, sizeof(float));
    else if (!(d->b = gpuq_safetensors_f32(&st, "linear.bias", 1, bs, why, sizeof why))) FAIL("%s: %s", file, why);
    if (!d->b) FAIL("out of memory");
    result = 0;
out:
    gpuq_safetensors_free(&st);
    json_decref(c);
    return result;
}

/* modules.json, in order: Transformer (the folder itself), Pooling, any
 * Dense, and Normalize last. */
static int read_modules(struct gpuq_encoder *e, const char *dir, char *err, size_t errlen) {
    int absent, result = -1, stage = 0;     /* 0 Transformer, 1 Pooling, 2 Dense, 3 Normalize */
    json_t *mods = gpuq_folder_json(dir, "modules.json", &absent, err, errlen);
    e->pooling = GPUQ_POOL_MEAN;
    if (!mods) return absent ? 0 : -1;
    if (!json_is_array(mods)) FAIL("%s/modules.json: not a list", dir);
    size_t i;
    json_t *mod;
    json_array_foreach(mods, i, mod) {
        const char *type = short_type(gpuq_json_str(mod, "type", "")), *path = gpuq_json_str(mod, "path", "");
        int width = e->n_dense ? e->dense[e->n_dense - 1].d_out : e->hidden;
        if (!strcmp(type, "Transformer") && stage == 0 && !path[0]) {
            stage = 1;
        } else if (!strcmp(type, "Pooling") && stage == 1) {
            if (read_pooling(e, dir, path, err, errlen) != 0) goto out;
            stage = 2;
        } else if (!strcmp(type, "Dense") && stage == 2) {
            if (read_dense(e, dir, path, width, err, errlen) != 0) goto out;
        } else if (!strcmp(type, "Normalize") && stage >= 2) {
            e->normalize = 1;
            stage = 3;
        } else {
            FAIL("%s/modules.json: module %.80s%s%.60s is not served here (served: Transformer in the folder "
                 "itself, then Pooling, Dense, Normalize, in that order)", dir, gpuq_json_str(mod, "type", "?"),
                 path[0] ? " at " : "", path);
        }
    }
    if (stage < 2) FAIL("%s/modules.json: no Transformer then Pooling module", dir);
    result = 0;
out:
    json_decref(mods);
    return result;
}

/* sentence_bert_config.json's max_seq_length, else min(positions, the
 * tokenizer's model_max_length); never more than the positions allow. */
static int read_max_length(struct gpuq_encoder *e, const char *dir, char *err, size_t errlen) {
    int absent, max = -1, limit = gpuq_encoder_max_tokens(e), result = -1;
    json_t *sb = gpuq_folder_json(dir, "sentence_bert_config.json", &absent, err, errlen), *tc = NULL;
    if (sb) max = gpuq_json_int(sb, "max_seq_length", 1, 1 << 24);
    else if (!absent) return -1;
    if (max < 0) {
        max = limit;
        if ((tc = gpuq_folder_json(dir, "tokenizer_config.json", &absent, err, errlen))) {
            json_t *v = json_object_get(tc, "model_max_length");
            if (json_is_number(v) && json_number_value(v) >= 2 && json_number_value(v) < max)
                max = (int)json_number_value(v);
        } else if (!absent) {
            goto out;
        }
    }
    e->max_length = max < limit ? max : limit;
    if (e->max_length < 2) FAIL("%s: max_length %d leaves no room for the special tokens", dir, e->max_length);
    result = 0;
out:
    json_decref(sb);
    json_decref(tc);
    return result;
}

static int read_prompts(struct gpuq_encoder *e, const char *dir, char *err, size_t errlen) {
    int absent, result = -1;
    json_t *c = gpuq_folder_json(dir, "config_sentence_transformers.json", &absent, err, errlen);
    e->default_prompt = -1;
    if (!c) return absent ? 0 : -1;
    json_t *prompts = json_object_get(c, "prompts"), *def = json_object_get(c, "default_prompt_name");
    if (prompts && !json_is_object(prompts))
        FAIL("%s/config_sentence_transformers.json: prompts is not an object", dir);
    size_t n = json_object_size(prompts);
    e->prompt_names = calloc(n + 1, sizeof(char *));
    e->prompts = calloc(n + 1, sizeof(char *));
    if (!e->prompt_names || !e->prompts) FAIL("out of memory");
    const char *key;
    json_t *v;
    json_object_foreach(prompts, key, v) {
        if (!json_is_string(v)) FAIL("%s/config_sentence_transformers.json: prompt %.60s is not text", dir, key);
        e->prompt_names[e->n_prompts] = strdup(key);
        e->prompts[e->n_prompts] = strdup(json_string_value(v));
        if (!e->prompt_names[e->n_prompts++] || !e->prompts[e->n_prompts - 1]) FAIL("out of memory");
    }
    if (json_is_string(def)) {
        for (int i = 0; i < e->n_prompts; i++)
            if (strcmp(e->prompt_names[i], json_string_value(def)) == 0) e->default_prompt = i;
        if (e->default_prompt < 0)
            FAIL("%s/config_sentence_transformers.json: default_prompt_name %.60s is not one of its prompts",
                 dir, json_string_value(def));
    }
    result = 0;
out:
    json_decref(c);
    return result;
}

int gpuq_encoder_read_st(struct gpuq_encoder *e, const char *dir, char *err, size_t errlen) {
    if (e->scorer) e->pooling = GPUQ_POOL_CLS;     /* its head reads the first token; no modules */
    else if (e->mlm) e->pooling = GPUQ_POOL_MAX;   /* SPLADE's max over the tokens; no modules */
    else if (read_modules(e, dir, err, errlen) != 0) return -1;
    if (read_max_length(e, dir, err, errlen) != 0) return -1;
    return read_prompts(e, dir, err, errlen);
}

const char *gpuq_encoder_prompt(const struct gpuq_encoder *e, const char *name, size_t len) {
    for (int i = 0; i < e->n_prompts; i++)
        if (strlen(e->prompt_names[i]) == len && memcmp(e->prompt_names[i], name, len) == 0) return e->prompts[i];
    return NULL;
}
