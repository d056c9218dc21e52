/* model.h -- a model the worker serves: what --model NAME=PATH loaded.
 *
 * Every model belongs to a family (models/family.h, listed in
 * models/families.def): the family recognised the path, loaded it and owns
 * its data (impl). Backends and ops never ask which family a model is: they
 * ask what shape of computation it is (its arch), and take the matching
 * view, which is NULL for a model of another arch. */
#ifndef GPUQ_MODEL_H
#define GPUQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum gpuq_act { GPUQ_ACT_NONE, GPUQ_ACT_RELU, GPUQ_ACT_GELU, GPUQ_ACT_SILU, GPUQ_ACT_TANH };

/* The shapes of computation a backend serves; families map onto them. */
enum gpuq_arch {
    GPUQ_ARCH_MLP,          /* dense layers with an activation between: struct gpuq_mlp */
    GPUQ_ARCH_INDEX,        /* rows to search: struct gpuq_index */
    GPUQ_ARCH_ENCODER,      /* a text encoder and its pooling: struct gpuq_encoder */
    GPUQ_ARCH_DECODER,      /* a causal decoder embedder and its pooling: struct gpuq_decoder */
    GPUQ_ARCHS
};

/* What an op may ask of a model. */
enum gpuq_cap {
    GPUQ_CAP_MLP,           /* rows through dense layers */
    GPUQ_CAP_INDEX,         /* rows to search */
    GPUQ_CAP_EMBED,         /* texts to pooled embeddings */
    GPUQ_CAP_SCORE,         /* texts or pairs to one logit per label (a sequence classifier) */
    GPUQ_CAP_SPARSE,        /* texts to sparse vectors over the vocabulary (a masked-LM head) */
    GPUQ_CAPS
};

struct gpuq_family;
struct gpuq_tok;

struct gpuq_model {
    char *name;
    const struct gpuq_family *family;
    void *impl;                 /* the family's own data, of its arch's struct */
    struct gpuq_tok *tok;       /* text models: the folder's tokenizer; else NULL */
    void *backend_data;         /* owned by the backend that set it */
    int on_cpu;                 /* the device backend could not take it: its batches run on the CPU backend */
};

/* Loads path as model `name`, by the first family in models/families.def
 * that recognises it. Returns 0, or -1 with a one-line reason in err (the
 * model then holds nothing). */
int gpuq_model_load(struct gpuq_model *m, const char *name, const char *path, char *err,
                    size_t errlen);
void gpuq_model_free(struct gpuq_model *m);

enum gpuq_arch gpuq_model_arch(const struct gpuq_model *m);
int gpuq_model_can(const struct gpuq_model *m, enum gpuq_cap cap);
const char *gpuq_cap_name(enum gpuq_cap cap);     /* "text encoder", ... */

/* The model as its arch's struct, or NULL when it is of another arch. */
struct gpuq_mlp *gpuq_model_mlp(const struct gpuq_model *m);
struct gpuq_index *gpuq_model_index(const struct gpuq_model *m);
struct gpuq_encoder *gpuq_model_encoder(const struct gpuq_model *m);
struct gpuq_decoder *gpuq_model_decoder(const struct gpuq_model *m);

/* A text model's sentence-transformers side (pooling, Dense, Normalize,
 * max_length, prompts; its width, vocabulary and positions), whatever its
 * arch: an encoder itself, a decoder's st. NULL for a model without text. */
const struct gpuq_encoder *gpuq_model_text(const struct gpuq_model *m);

/* Width of a row in (mlp, index; 0 for text) and out (mlp, index: its rows;
 * an encoder: its embedding). */
int gpuq_model_in_dim(const struct gpuq_model *m);
int gpuq_model_out_dim(const struct gpuq_model *m);

/* One line for the start log: "bert encoder, 6 layers, ...". */
void gpuq_model_describe(const struct gpuq_model *m, char *buf, size_t len);

/* Every weight of a model, in one order that never changes for its arch:
 * the one list that loading, freeing, rounding to a precision, uploading to
 * a device and the twin check's random models all walk. w16, where not
 * NULL, is the weight's bf16 copy slot: it is a GEMM matrix. */
struct gpuq_weight {
    float **data;
    size_t n;                   /* floats */
    uint16_t **w16;
};
typedef void gpuq_weight_fn(void *ctx, const struct gpuq_weight *w);
void gpuq_model_weights(struct gpuq_model *m, gpuq_weight_fn *fn, void *ctx);

const char *gpuq_act_name(enum gpuq_act act);
int gpuq_act_from_name(const char *s);      /* -1 when unknown */

#ifdef __cplusplus
}
#endif
#endif
