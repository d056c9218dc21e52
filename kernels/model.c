/* model.c -- mlp and index models from safetensors files. */
#include "kernels/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "kernels/bert.h"
#include "kernels/index_bits.h"
#include "kernels/safetensors.h"
#include "text/tokenizer.h"

static const char *act_names[] = {"none", "relu", "gelu", "silu", "tanh"};

const char *gpuq_act_name(enum gpuq_act act) { return act_names[act]; }

static int load_mlp(struct gpuq_model *m, const struct gpuq_safetensors *st, char *err,
                    size_t errlen) {
    char name[64];
    int n = 0;
    for (;; n++) {
        snprintf(name, sizeof(name), "layers.%d.weight", n);
        if (!gpuq_safetensors_get(st, name)) break;
    }
    /* every tensor must be a layer we know: catches misnamed files */
    if (st->n_entries != 2 * n) {
        snprintf(err, errlen, "an mlp holds layers.<i>.weight and layers.<i>.bias for i = 0..%d "
                 "and nothing else (found %d tensors)", n - 1, st->n_entries);
        return -1;
    }
    m->kind = GPUQ_MODEL_MLP;
    m->layers = calloc((size_t)n, sizeof(*m->layers));
    if (!m->layers) return -1;
    m->n_layers = n;
    for (int i = 0; i < n; i++) {
        struct gpuq_mlp_layer *l = &m->layers[i];
        int64_t wshape[2] = {-1, i ? m->layers[i - 1].d_out : -1};
        snprintf(name, sizeof(name), "layers.%d.weight", i);
        if (!(l->w = gpuq_safetensors_f32(st, name, 2, wshape, err, errlen))) return -1;
        const struct gpuq_tensor *t = gpuq_safetensors_get(st, name);
        l->d_out = (int)t->shape[0];
        l->d_in = (int)t->shape[1];
        if (l->d_out > m->max_width) m->max_width = l->d_out;
        int64_t bshape[1] = {l->d_out};
        snprintf(name, sizeof(name), "layers.%d.bias", i);
        if (!(l->b = gpuq_safetensors_f32(st, name, 1, bshape, err, errlen))) return -1;
    }
    m->act = GPUQ_ACT_RELU;
    const char *act = gpuq_safetensors_meta(st, "activation");
    if (act) {
        int found = 0;
        for (int a = GPUQ_ACT_RELU; a <= GPUQ_ACT_TANH; a++)
            if (strcmp(act, act_names[a]) == 0) {
                m->act = (enum gpuq_act)a;
                found = 1;
            }
        if (!found) {
            snprintf(err, errlen, "unknown activation '%s' (relu, gelu, silu, tanh)", act);
            return -1;
        }
    }
    return 0;
}

/* A model folder: the encoder and its tokenizer. */
static int load_encoder(struct gpuq_model *m, const char *name, const char *dir, char *err,
                        size_t errlen) {
    m->kind = GPUQ_MODEL_ENCODER;
    if (!(m->name = strdup(name)) || !(m->bert = calloc(1, sizeof(*m->bert)))) {
        snprintf(err, errlen, "%s: out of memory", dir);
    } else if (gpuq_bert_load(m->bert, dir, err, errlen) == 0 &&
               (m->tok = gpuq_tok_load(dir, err, errlen)) != NULL) {
        if (gpuq_tok_vocab_size(m->tok) <= m->bert->vocab) return 0;
        snprintf(err, errlen, "%s: the tokenizer has %d ids, the model's vocabulary %d", dir,
                 gpuq_tok_vocab_size(m->tok), m->bert->vocab);
    }
    gpuq_model_free(m);
    return -1;
}

int gpuq_model_load(struct gpuq_model *m, const char *name, const char *path, char *err,
                    size_t errlen) {
    struct gpuq_safetensors st;
    char why[256] = "out of memory";
    int result = -1;
    memset(m, 0, sizeof(*m));
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return load_encoder(m, name, path, err, errlen);
    if (gpuq_safetensors_load(&st, path, err, errlen) != 0) return -1;
    if (!(m->name = strdup(name))) goto out;
    if (gpuq_safetensors_get(&st, "embeddings")) {
        int64_t shape[2] = {-1, -1};
        m->kind = GPUQ_MODEL_INDEX;
        if (st.n_entries != 1 + (gpuq_safetensors_get(&st, "binary") != NULL)) {
            snprintf(why, sizeof(why), "an index holds only the tensors embeddings and binary");
            goto fail;
        }
        if (!(m->embeddings = gpuq_safetensors_f32(&st, "embeddings", 2, shape, why, sizeof(why)))) goto fail;
        m->n_rows = gpuq_safetensors_get(&st, "embeddings")->shape[0];
        m->dim = (int)gpuq_safetensors_get(&st, "embeddings")->shape[1];
        if (!(m->norms = malloc((size_t)m->n_rows * sizeof(float)))) goto out;
        for (int64_t r = 0; r < m->n_rows; r++) {
            double s = 0;
            for (int j = 0; j < m->dim; j++) s += (double)m->embeddings[r * m->dim + j] * m->embeddings[r * m->dim + j];
            m->norms[r] = (float)sqrt(s);
        }
        if (gpuq_index_bits_load(m, &st, why, sizeof(why)) != 0) goto fail;
    } else if (gpuq_safetensors_get(&st, "layers.0.weight")) {
        if (load_mlp(m, &st, why, sizeof(why)) != 0) goto fail;
    } else {
        snprintf(why, sizeof(why), "neither an mlp (layers.0.weight) nor an index (embeddings)");
        goto fail;
    }
    result = 0;
    goto out;
fail:
    snprintf(err, errlen, "%s: %s", path, why);
out:
    gpuq_safetensors_free(&st);
    if (result != 0) gpuq_model_free(m);
    return result;
}

void gpuq_model_free(struct gpuq_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_layers; i++) {
        free(m->layers[i].w);
        free(m->layers[i].b);
        free(m->layers[i].w16);
    }
    free(m->layers);
    free(m->embeddings);
    free(m->norms);
    free(m->bits);
    if (m->bert) gpuq_bert_free(m->bert);
    free(m->bert);
    gpuq_tok_destroy(m->tok);
    free(m->name);
    memset(m, 0, sizeof(*m));
}

int gpuq_model_in_dim(const struct gpuq_model *m) {
    return m->kind == GPUQ_MODEL_MLP ? m->layers[0].d_in : m->kind == GPUQ_MODEL_ENCODER ? 0 : m->dim;
}

int gpuq_model_out_dim(const struct gpuq_model *m) {
    return m->kind == GPUQ_MODEL_MLP ? m->layers[m->n_layers - 1].d_out
           : m->kind == GPUQ_MODEL_ENCODER ? m->bert->hidden : (int)m->n_rows;
}
