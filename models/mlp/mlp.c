/* mlp.c -- the mlp family: a safetensors file whose tensors are
 * layers.<i>.weight and layers.<i>.bias. */
#include "models/mlp/mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/family.h"

static int recognise(const struct gpuq_source *src) {
    return gpuq_safetensors_get(src->st, "layers.0.weight") != NULL;
}

void gpuq_mlp_weights(struct gpuq_mlp *m, gpuq_weight_fn *fn, void *ctx) {
    for (int i = 0; m->layers && i < m->n_layers; i++) {
        struct gpuq_mlp_layer *l = &m->layers[i];
        struct gpuq_weight w = {&l->w, (size_t)l->d_in * l->d_out, &l->w16}, b = {&l->b, (size_t)l->d_out, NULL};
        fn(ctx, &w);
        fn(ctx, &b);
    }
}

static int load(struct gpuq_model *model, const struct gpuq_source *src, char *err, size_t errlen) {
    const struct gpuq_safetensors *st = src->st;
    char name[64];
    int n = 0;
    struct gpuq_mlp *m = calloc(1, sizeof *m);
    if (!(model->impl = m)) return snprintf(err, errlen, "out of memory"), -1;
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
    if (!(m->layers = calloc((size_t)n, sizeof(*m->layers)))) return snprintf(err, errlen, "out of memory"), -1;
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
    if (act && ((int)(m->act = (enum gpuq_act)gpuq_act_from_name(act)) <= GPUQ_ACT_NONE)) {
        snprintf(err, errlen, "unknown activation '%s' (relu, gelu, silu, tanh)", act);
        return -1;
    }
    return 0;
}

const struct gpuq_family gpuq_family_mlp = {
    .name = "mlp", .arch = GPUQ_ARCH_MLP, .recognise = recognise, .load = load,
};
