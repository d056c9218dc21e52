/* index.c -- the index family: a safetensors file with a tensor
 * embeddings [N, d] and nothing else; each row's norm is kept beside it. */
#include "models/index/index.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "models/family.h"
#include "models/index/bits.h"

static int recognise(const struct gpuq_source *src) {
    return gpuq_safetensors_get(src->st, "embeddings") != NULL;
}

void gpuq_index_weights(struct gpuq_index *ix, gpuq_weight_fn *fn, void *ctx) {
    struct gpuq_weight e = {&ix->embeddings, (size_t)ix->n_rows * ix->dim, NULL},
                       n = {&ix->norms, (size_t)ix->n_rows, NULL};
    fn(ctx, &e);
    fn(ctx, &n);
}

static int load(struct gpuq_model *model, const struct gpuq_source *src, char *err, size_t errlen) {
    int64_t shape[2] = {-1, -1};
    struct gpuq_index *ix = calloc(1, sizeof *ix);
    if (!(model->impl = ix)) return snprintf(err, errlen, "out of memory"), -1;
    if (src->st->n_entries != 1 + (gpuq_safetensors_get(src->st, "binary") != NULL))
        return snprintf(err, errlen, "an index holds only the tensors embeddings and binary"), -1;
    if (!(ix->embeddings = gpuq_safetensors_f32(src->st, "embeddings", 2, shape, err, errlen))) return -1;
    ix->n_rows = gpuq_safetensors_get(src->st, "embeddings")->shape[0];
    ix->dim = (int)gpuq_safetensors_get(src->st, "embeddings")->shape[1];
    if (!(ix->norms = malloc((size_t)ix->n_rows * sizeof(float)))) return snprintf(err, errlen, "out of memory"), -1;
    for (int64_t r = 0; r < ix->n_rows; r++) {
        double s = 0;
        for (int j = 0; j < ix->dim; j++) s += (double)ix->embeddings[r * ix->dim + j] * ix->embeddings[r * ix->dim + j];
        ix->norms[r] = (float)sqrt(s);
    }
    return gpuq_index_bits_load(ix, src->st, err, errlen);
}

const struct gpuq_family gpuq_family_index = {
    .name = "index", .arch = GPUQ_ARCH_INDEX, .recognise = recognise, .load = load,
};
