/* model.c -- loading a path by the family that recognises it, and what
 * every model answers whatever its family. */
#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "models/decoder/decoder.h"
#include "models/encoder/encoder.h"
#include "models/family.h"
#include "models/folder.h"
#include "models/index/index.h"
#include "models/mlp/mlp.h"
#include "text/tokenizer.h"

const struct gpuq_family *const gpuq_family_table[] = {
#define GPUQ_FAMILY(name) &gpuq_family_##name,
#include "models/families.def"
#undef GPUQ_FAMILY
    NULL,
};

static const char *act_names[] = {"none", "relu", "gelu", "silu", "tanh"};

const char *gpuq_act_name(enum gpuq_act act) { return act_names[act]; }

int gpuq_act_from_name(const char *s) {
    for (int a = 0; a < (int)(sizeof act_names / sizeof *act_names); a++)
        if (!strcmp(s, act_names[a])) return a;
    return -1;
}

/* "bert, distilbert, ..., camembert": the model types folders may have. */
static void folder_types(char *buf, size_t len) {
    buf[0] = 0;
    for (int f = 0; gpuq_family_table[f]; f++)
        for (const char *const *t = gpuq_family_table[f]->model_types; t && *t; t++)
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? ", " : "", *t);
}

static const struct gpuq_family *find(const struct gpuq_source *src) {
    const char *type = gpuq_json_str(src->config, "model_type", "");
    for (int f = 0; gpuq_family_table[f]; f++) {
        const struct gpuq_family *fam = gpuq_family_table[f];
        if (src->config)
            for (const char *const *t = fam->model_types; t && *t; t++)
                if (!strcmp(*t, type)) return fam;
        if (src->st && fam->recognise && fam->recognise(src)) return fam;
    }
    return NULL;
}

int gpuq_model_load(struct gpuq_model *m, const char *name, const char *path, char *err, size_t errlen) {
    struct gpuq_safetensors st = {0};
    struct gpuq_source src = {path, NULL, NULL};
    struct stat sb;
    char why[512] = "out of memory";
    int absent, rc = -1;
    memset(m, 0, sizeof(*m));
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (!(src.config = gpuq_folder_json(path, "config.json", &absent, err, errlen))) return -1;
    } else if (gpuq_safetensors_load(&st, path, err, errlen) != 0) {
        return -1;
    } else {
        src.st = &st;
    }
    if (!(m->family = find(&src))) {
        char types[256];
        folder_types(types, sizeof types);
        if (src.config)
            snprintf(err, errlen, "%s/config.json: model_type \"%.40s\" is not served (served: %s)", path,
                     gpuq_json_str(src.config, "model_type", "missing"), types);
        else
            snprintf(err, errlen, "%s: neither an mlp (layers.0.weight) nor an index (embeddings)", path);
    } else if (!(m->name = strdup(name))) {
        snprintf(err, errlen, "%s: out of memory", path);
    } else if ((rc = m->family->load(m, &src, why, sizeof why)) != 0) {
        if (src.st) snprintf(err, errlen, "%s: %s", path, why);
        else snprintf(err, errlen, "%s", why);
    }
    json_decref(src.config);
    gpuq_safetensors_free(&st);
    if (rc != 0) gpuq_model_free(m);
    return rc;
}

enum gpuq_arch gpuq_model_arch(const struct gpuq_model *m) { return m->family->arch; }

int gpuq_model_can(const struct gpuq_model *m, enum gpuq_cap cap) {
    const struct gpuq_encoder *e = gpuq_model_encoder(m);
    switch (cap) {
    case GPUQ_CAP_MLP: return gpuq_model_mlp(m) != NULL;
    case GPUQ_CAP_INDEX: return gpuq_model_index(m) != NULL;
    case GPUQ_CAP_EMBED: return (e && !e->scorer && !e->mlm) || gpuq_model_decoder(m);
    case GPUQ_CAP_SPARSE: return e && e->mlm;
    case GPUQ_CAP_SCORE: return e && e->scorer;
    default: return 0;
    }
}

const char *gpuq_cap_name(enum gpuq_cap cap) {
    static const char *const names[GPUQ_CAPS] = {"mlp model", "knn index", "text encoder", "sequence classifier",
                                                 "sparse encoder"};
    return names[cap];
}

struct gpuq_mlp *gpuq_model_mlp(const struct gpuq_model *m) {
    return m->family && m->family->arch == GPUQ_ARCH_MLP ? m->impl : NULL;
}

struct gpuq_index *gpuq_model_index(const struct gpuq_model *m) {
    return m->family && m->family->arch == GPUQ_ARCH_INDEX ? m->impl : NULL;
}

struct gpuq_encoder *gpuq_model_encoder(const struct gpuq_model *m) {
    return m->family && m->family->arch == GPUQ_ARCH_ENCODER ? m->impl : NULL;
}

struct gpuq_decoder *gpuq_model_decoder(const struct gpuq_model *m) {
    return m->family && m->family->arch == GPUQ_ARCH_DECODER ? m->impl : NULL;
}

const struct gpuq_encoder *gpuq_model_text(const struct gpuq_model *m) {
    const struct gpuq_decoder *d = gpuq_model_decoder(m);
    return d ? &d->st : gpuq_model_encoder(m);
}

struct walk {
    gpuq_weight_fn *fn;
    void *ctx;
};

static void encoder_weight(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0, int64_t d1) {
    struct walk *k = ctx;
    (void)slot, (void)layer, (void)d0, (void)d1;
    k->fn(k->ctx, w);
}

void gpuq_model_weights(struct gpuq_model *m, gpuq_weight_fn *fn, void *ctx) {
    struct walk k = {fn, ctx};
    if (!m->impl) return;
    switch (m->family->arch) {
    case GPUQ_ARCH_MLP: gpuq_mlp_weights(m->impl, fn, ctx); break;
    case GPUQ_ARCH_INDEX: gpuq_index_weights(m->impl, fn, ctx); break;
    case GPUQ_ARCH_ENCODER: gpuq_encoder_weights(m->impl, encoder_weight, &k); break;
    case GPUQ_ARCH_DECODER: gpuq_decoder_weights(m->impl, encoder_weight, &k); break;
    default: abort();   /* an arch added to the enum but not here */
    }
}

static void free_weight(void *ctx, const struct gpuq_weight *w) {
    (void)ctx;
    free(*w->data);
    *w->data = NULL;
    if (w->w16) {
        free(*w->w16);
        *w->w16 = NULL;
    }
}

void gpuq_model_free(struct gpuq_model *m) {
    if (!m) return;
    if (m->impl && m->family->arch == GPUQ_ARCH_ENCODER) {
        gpuq_encoder_free(m->impl);
    } else if (m->impl && m->family->arch == GPUQ_ARCH_DECODER) {
        gpuq_decoder_free(m->impl);
    } else if (m->impl) {
        gpuq_model_weights(m, free_weight, NULL);
        if (m->family->arch == GPUQ_ARCH_MLP) free(((struct gpuq_mlp *)m->impl)->layers);
        if (m->family->arch == GPUQ_ARCH_INDEX) free(((struct gpuq_index *)m->impl)->bits);
    }
    free(m->impl);
    gpuq_tok_destroy(m->tok);
    free(m->name);
    memset(m, 0, sizeof(*m));
}

int gpuq_model_in_dim(const struct gpuq_model *m) {
    const struct gpuq_mlp *mlp = gpuq_model_mlp(m);
    const struct gpuq_index *ix = gpuq_model_index(m);
    return mlp ? mlp->layers[0].d_in : ix ? ix->dim : 0;
}

int gpuq_model_out_dim(const struct gpuq_model *m) {
    const struct gpuq_mlp *mlp = gpuq_model_mlp(m);
    const struct gpuq_index *ix = gpuq_model_index(m);
    const struct gpuq_encoder *e = gpuq_model_text(m);
    return mlp ? mlp->layers[mlp->n_layers - 1].d_out : ix ? (int)ix->n_rows : e ? gpuq_encoder_dim(e) : 0;
}

void gpuq_model_describe(const struct gpuq_model *m, char *buf, size_t len) {
    const struct gpuq_mlp *mlp = gpuq_model_mlp(m);
    const struct gpuq_index *ix = gpuq_model_index(m);
    const struct gpuq_encoder *e = gpuq_model_encoder(m);
    const struct gpuq_decoder *d = gpuq_model_decoder(m);
    if (mlp) {
        snprintf(buf, len, "mlp %d layers, %d -> %d, %s", mlp->n_layers, gpuq_model_in_dim(m),
                 gpuq_model_out_dim(m), gpuq_act_name(mlp->act));
    } else if (ix) {
        snprintf(buf, len, "index %lld x %d", (long long)ix->n_rows, ix->dim);
    } else if (d) {
        char dense[64] = "";
        if (d->st.n_dense) snprintf(dense, sizeof dense, ", %d Dense to %d", d->st.n_dense, gpuq_encoder_dim(&d->st));
        snprintf(buf, len, "%s decoder embedder, %d layers, hidden %d, %d heads over %d key/value heads of %d, "
                 "rope_theta %g%s, max_length %d, %s pooling%s%s", d->family, d->n_layers, d->hidden, d->heads,
                 d->kv_heads, d->head_dim, d->rope_theta, d->qk_norm ? ", q/k norm" : "", d->st.max_length,
                 gpuq_pool_name(d->st.pooling), dense, d->st.normalize ? ", normalized" : "");
    } else if (e && e->scorer) {
        snprintf(buf, len, "%s sequence classifier, %d layers, hidden %d, max_length %d, %d label%s (%s%s), "
                 "rerank activation %s, classify function %s", e->family, e->n_layers, e->hidden, e->max_length,
                 e->n_labels, e->n_labels == 1 ? "" : "s", e->labels[0], e->n_labels > 1 ? ", ..." : "",
                 gpuq_score_fn_name(e->rerank_fn), gpuq_score_fn_name(e->classify_fn));
    } else if (e && e->mlm) {
        snprintf(buf, len, "%s sparse encoder (masked-LM head, %d terms%s), %d layers, hidden %d, max_length %d",
                 e->family, e->vocab, e->mlm->decoder ? "" : ", tied", e->n_layers, e->hidden, e->max_length);
    } else if (e) {
        char dense[64] = "";
        if (e->n_dense) snprintf(dense, sizeof dense, ", %d Dense to %d", e->n_dense, gpuq_encoder_dim(e));
        snprintf(buf, len, "%s text encoder, %d layers, hidden %d, max_length %d, %s pooling%s%s", e->family,
                 e->n_layers, e->hidden, e->max_length, gpuq_pool_name(e->pooling), dense,
                 e->normalize ? ", normalized" : "");
    }
}
