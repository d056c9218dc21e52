/* mlp.h -- mlp models: a safetensors file of layers.<i>.weight [d_out,
 * d_in] and layers.<i>.bias [d_out], with an activation between layers
 * (ReLU, or the file's __metadata__ "activation") and none after the last. */
#ifndef GPUQ_MLP_H
#define GPUQ_MLP_H

#include <stdint.h>

#include "models/model.h"

#ifdef __cplusplus
extern "C" {
#endif

struct gpuq_mlp_layer {
    int d_in, d_out;
    float *w;       /* [d_out, d_in], row-major */
    float *b;       /* [d_out] */
    uint16_t *w16;  /* w in bf16 for the CPU backend's bf16 GEMMs (its model_load), or NULL */
};

struct gpuq_mlp {
    int n_layers;
    struct gpuq_mlp_layer *layers;
    enum gpuq_act act;          /* between layers; none after the last */
    int max_width;              /* widest layer output, for scratch sizing */
};

void gpuq_mlp_weights(struct gpuq_mlp *m, gpuq_weight_fn *fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
