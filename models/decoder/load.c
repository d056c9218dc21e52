/* load.c -- a decoder folder of any family of this arch: config.json by
 * the family's reader, model.safetensors by its tensor names, the
 * tokenizer, then the sentence-transformers files (models/encoder/st.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/decoder/decoder.h"
#include "models/folder.h"
#include "models/safetensors.h"
#include "text/tokenizer.h"

int gpuq_decoder_qkv_width(const struct gpuq_decoder *d) { return (d->heads + 2 * d->kv_heads) * d->head_dim; }

int gpuq_decoder_gemm_in_width(const struct gpuq_decoder *d) {
    int w = d->hidden > d->heads * d->head_dim ? d->hidden : d->heads * d->head_dim;
    return w > d->intermediate ? w : d->intermediate;
}

/* Rows of part p of a layer slot's matrix (the whole of an unstacked one). */
static int64_t part_rows(const struct gpuq_decoder *d, int slot, int p) {
    switch (slot) {
    case GPUQ_DEC_QKV_W:
    case GPUQ_DEC_QKV_B: return (int64_t)(p == 0 ? d->heads : d->kv_heads) * d->head_dim;
    case GPUQ_DEC_GATE_UP_W: return d->intermediate;
    default: return 0;
    }
}

void gpuq_decoder_weights(struct gpuq_decoder *d, gpuq_dec_weight_fn *fn, void *ctx) {
    int64_t h = d->hidden, in = d->intermediate, hd = d->head_dim, qkv = gpuq_decoder_qkv_width(d);
    struct gpuq_weight emb = {&d->embed, (size_t)(d->vocab * h), NULL}, norm = {&d->norm, (size_t)h, NULL};
    fn(ctx, &emb, GPUQ_DEC_EMBED, -1, d->vocab, h);
    fn(ctx, &norm, GPUQ_DEC_NORM, -1, h, 0);
    const int64_t shape[GPUQ_DEC_LAYER_SLOTS][2] = {{h, 0}, {qkv, h}, {qkv, 0}, {hd, 0}, {hd, 0},
                                                    {h, d->heads * hd}, {h, 0}, {2 * in, h}, {h, in}};
    const int w16[GPUQ_DEC_LAYER_SLOTS] = {-1, GPUQ_DEC_W16_QKV, -1, -1, -1, GPUQ_DEC_W16_O, -1,
                                           GPUQ_DEC_W16_GATE_UP, GPUQ_DEC_W16_DOWN};
    for (int l = 0; d->layers && l < d->n_layers; l++) {
        struct gpuq_dec_layer *ly = &d->layers[l];
        for (int s = 0; s < GPUQ_DEC_LAYER_SLOTS; s++) {
            if ((s == GPUQ_DEC_QKV_B && !d->qkv_bias) || ((s == GPUQ_DEC_Q_NORM || s == GPUQ_DEC_K_NORM) && !d->qk_norm))
                continue;
            struct gpuq_weight w = {&ly->w[s], (size_t)(shape[s][0] * (shape[s][1] ? shape[s][1] : 1)),
                                    w16[s] >= 0 ? &ly->w16[w16[s]] : NULL};
            fn(ctx, &w, s, l, shape[s][0], shape[s][1]);
        }
    }
    for (int i = 0; i < d->st.n_dense; i++) {
        struct gpuq_dense *D = &d->st.dense[i];
        struct gpuq_weight w = {&D->w, (size_t)D->d_in * D->d_out, NULL}, b = {&D->b, (size_t)D->d_out, NULL};
        fn(ctx, &w, GPUQ_DEC_DENSE, i, D->d_out, D->d_in);
        fn(ctx, &b, GPUQ_DEC_DENSE, i, D->d_out, 0);
    }
}

static void free_weight(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0, int64_t d1) {
    (void)ctx, (void)layer, (void)d0, (void)d1;
    if (slot == GPUQ_DEC_DENSE) return;     /* st's, freed with it */
    free(*w->data);
    *w->data = NULL;
    if (w->w16) {
        free(*w->w16);
        *w->w16 = NULL;
    }
}

void gpuq_decoder_free(struct gpuq_decoder *d) {
    if (!d) return;
    gpuq_decoder_weights(d, free_weight, NULL);
    free(d->layers);
    gpuq_encoder_free(&d->st);
    memset(d, 0, sizeof *d);
}

/* ---- the weights, by the family's names ---- */

struct reader {
    const struct gpuq_decoder *d;
    const struct gpuq_decoder_spec *spec;
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
    if (r->failed || slot == GPUQ_DEC_DENSE) return;   /* the Dense modules are st.c's */
    if (slot == GPUQ_DEC_EMBED || slot == GPUQ_DEC_NORM) {
        r->failed = !(*w->data = take(r, slot == GPUQ_DEC_EMBED ? r->spec->embed : r->spec->norm, 0, d0, d1));
        return;
    }
    const char *const *names = r->spec->layer[slot];
    if (!names[1]) {
        r->failed = !(*w->data = take(r, names[0], layer, d0, d1));
        return;
    }
    /* parts stacked by rows: q, k, v or gate, up */
    int64_t rows[3];
    int parts = 0;
    for (; parts < 3 && names[parts]; parts++) rows[parts] = part_rows(r->d, slot, parts);
    r->failed = !(*w->data = gpuq_safetensors_stack(r->st, r->prefix, names, parts, layer, rows, d1, r->err, r->errlen));
}

static int read_weights(struct gpuq_decoder *d, const struct gpuq_decoder_spec *spec, const char *dir, char *err,
                        size_t errlen) {
    struct gpuq_safetensors st;
    char path[4096], why[256] = "out of memory", first[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (gpuq_safetensors_load(&st, path, err, errlen) != 0) return -1;
    snprintf(first, sizeof first, "%s%s", spec->prefix, spec->embed);
    struct reader r = {d, spec, &st, gpuq_safetensors_get(&st, first) ? spec->prefix : "", why, sizeof why, 0};
    if ((d->layers = calloc((size_t)d->n_layers, sizeof *d->layers))) gpuq_decoder_weights(d, read_weight, &r);
    else r.failed = 1;
    if (r.failed) snprintf(err, errlen, "%s: %s", path, why);
    gpuq_safetensors_free(&st);
    return r.failed ? -1 : 0;
}

int gpuq_decoder_load(struct gpuq_model *m, const struct gpuq_source *src, char *err, size_t errlen) {
    const struct gpuq_decoder_spec *spec = m->family->spec;
    struct gpuq_decoder *d = calloc(1, sizeof *d);
    char why[384];
    if (!d) {
        snprintf(err, errlen, "%s: out of memory", src->path);
        return -1;
    }
    m->impl = d;
    d->family = m->family->name;
    if (spec->config(d, src->config, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s/%s", src->path, why);
        return -1;
    }
    if (d->heads % d->kv_heads || d->head_dim % 2 || !(d->rms_eps >= 0 && d->rms_eps < 1) || d->max_pos < 2 ||
        !(d->rope_theta > 0)) {
        snprintf(err, errlen, "%s/config.json: the %d attention heads are not a multiple of the %d key/value "
                 "heads, or head_dim %d is odd, or rms_norm_eps, rope_theta or max_position_embeddings is out "
                 "of range", src->path, d->heads, d->kv_heads, d->head_dim);
        return -1;
    }
    /* the sentence-transformers side: its width, vocabulary and positions */
    d->st.family = d->family;
    d->st.hidden = d->hidden;
    d->st.vocab = d->vocab;
    d->st.max_pos = d->max_pos;
    d->st.pad_id = -1;
    if (read_weights(d, spec, src->path, err, errlen) != 0 || gpuq_encoder_read_st(&d->st, src->path, err, errlen) != 0 ||
        !(m->tok = gpuq_tok_load(src->path, err, errlen)))
        return -1;
    if (gpuq_tok_vocab_size(m->tok) > d->vocab) {
        snprintf(err, errlen, "%s: the tokenizer has %d ids, the model's vocabulary %d", src->path,
                 gpuq_tok_vocab_size(m->tok), d->vocab);
        return -1;
    }
    return 0;
}
