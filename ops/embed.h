/* embed.h -- the embed kernel's arguments, shared by ops/embed.c and its
 * CUDA kernel ops/embed.cu. */
#ifndef GPUQ_OP_EMBED_H
#define GPUQ_OP_EMBED_H

#include "kernels/backend.h"
#include "kernels/encoder.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One padding-free batch through a loaded text model, an encoder or a
 * decoder (a backend keeps its copy of the weights in model->backend_data). */
struct gpuq_embed {
    const struct gpuq_model *model;
    struct gpuq_encode_batch b;
    int n_tokens, max_len;      /* the batch's tokens, its longest sequence */
};

int gpuq_cuda_embed(struct gpuq_backend *be, const struct gpuq_launch *l);

/* The twin check's random encoders (ops/encoder_twin.c), one per way the
 * families differ. */
struct gpuq_encoder_twin {
    int h, heads, layers;
    enum gpuq_pool pool;
    int normalize;
    int pad_id;         /* -1: BERT's positions and two token types; else RoBERTa's, no types */
    int rel_buckets;    /* MPNet's relative bias */
    int dense;          /* a Dense module to this width (tanh), or 0 */
    int labels;         /* a classifier's head with this many labels (CLS pooling, random token types), or 0 */
    int mlm;            /* a masked-LM head (sparse vectors over the vocabulary): 1 tied to the 50 word
                           embeddings, more: its own decoder over a vocabulary of that many */
};

struct gpuq_twin_run;

/* One batch of sequences of the given lengths through a random encoder of
 * the shape, on the twin run's backend and the CPU, for its op. */
void gpuq_encoder_twin_batch(struct gpuq_twin_run *r, const struct gpuq_encoder_twin *sh, const int *lens, int n_seq);

/* The twin check's random decoders (ops/encoder_twin.c): Qwen3's shape
 * (RMSNorm per head on q and k), or Qwen2's (q, k, v biases). */
struct gpuq_decoder_twin {
    int h, heads, kv_heads, head_dim, layers;
    int qkv_bias;       /* Qwen2's biases, else Qwen3's norms */
    int dense;          /* a Dense module to this width, or 0 */
};

/* The same through a random decoder (last-token pooling, normalized). */
void gpuq_decoder_twin_batch(struct gpuq_twin_run *r, const struct gpuq_decoder_twin *sh, const int *lens, int n_seq);

#ifdef __cplusplus
}
#endif
#endif
