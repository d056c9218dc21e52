/* model.h -- models and indexes loaded at worker start from safetensors,
 * and text encoders from a model folder (kernels/bert.h).
 *
 * An mlp file holds layers.<i>.weight [d_out, d_in] and layers.<i>.bias
 * [d_out]; an index file holds embeddings [N, d], and may hold binary [N, d/8]
 * (kernels/index_bits.h). Weights are converted to
 * f32 and owned by the model; a backend may attach its own copy (device
 * memory) through backend_data. */
#ifndef GPUQ_MODEL_H
#define GPUQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum gpuq_act { GPUQ_ACT_NONE, GPUQ_ACT_RELU, GPUQ_ACT_GELU, GPUQ_ACT_SILU, GPUQ_ACT_TANH };
enum gpuq_model_kind { GPUQ_MODEL_MLP, GPUQ_MODEL_INDEX, GPUQ_MODEL_ENCODER };

struct gpuq_mlp_layer {
    int d_in, d_out;
    float *w;   /* [d_out, d_in], row-major */
    float *b;   /* [d_out] */
    uint16_t *w16;  /* w in bf16 for the CPU backend's bf16 GEMMs (its model_load), or NULL */
};

struct gpuq_model {
    char *name;
    enum gpuq_model_kind kind;
    /* mlp */
    int n_layers;
    struct gpuq_mlp_layer *layers;
    enum gpuq_act act;          /* between layers; none after the last */
    int max_width;              /* widest layer output, for scratch sizing */
    /* index */
    int64_t n_rows;
    int dim;
    float *embeddings;          /* [n_rows, dim] */
    float *norms;               /* [n_rows]: L2 norm of each embedding */
    uint8_t *bits;              /* [n_rows, bits_stride]: packed bits (kernels/index_bits.h) */
    int bits_stride;            /* bytes, a multiple of 8 */
    /* encoder */
    struct gpuq_bert *bert;
    struct gpuq_tok *tok;
    void *backend_data;         /* owned by the backend that set it */
};

struct gpuq_bert;
struct gpuq_tok;

/* Loads the safetensors file at path as model `name`, or the encoder in
 * folder path (a Hugging Face / sentence-transformers folder). Returns 0, or -1 with a
 * one-line reason in err (the model then holds nothing). */
int gpuq_model_load(struct gpuq_model *m, const char *name, const char *path, char *err,
                    size_t errlen);
void gpuq_model_free(struct gpuq_model *m);

int gpuq_model_in_dim(const struct gpuq_model *m);
int gpuq_model_out_dim(const struct gpuq_model *m);
const char *gpuq_act_name(enum gpuq_act act);

#ifdef __cplusplus
}
#endif
#endif
