/* index.h -- knn indexes: a safetensors file holding embeddings [N, d],
 * and optionally binary [N, ceil(d/8)] (models/index/bits.h). */
#ifndef GPUQ_INDEX_H
#define GPUQ_INDEX_H

#include <stdint.h>

#include "models/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct gpuq_index {
    int64_t n_rows;
    int dim;
    float *embeddings;          /* [n_rows, dim] */
    float *norms;               /* [n_rows]: L2 norm of each embedding */
    uint8_t *bits;              /* [n_rows, bits_stride]: packed sign bits (models/index/bits.h) */
    int bits_stride;            /* bytes, a multiple of 8 */
};

void gpuq_index_weights(struct gpuq_index *ix, gpuq_weight_fn *fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
