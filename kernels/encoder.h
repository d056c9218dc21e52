/* encoder.h -- the text encoder's forward pass (models/encoder/encoder.h)
 * on each backend: the CPU's in kernels/encoder_cpu.c, CUDA's in
 * kernels/encoder.cu. Both compute the same thing:
 *
 * embeddings (word + position by the encoder's scheme + token type 0 when
 * it has types) and LayerNorm; per layer one QKV GEMM over all tokens,
 * attention per sequence (plus the relative position bias where the
 * encoder has one), output projection, residual and LayerNorm, feed-forward
 * with its activation, residual and LayerNorm; then the pooling, the Dense
 * modules (f32) and the optional L2 normalization.
 *
 * Precision be->precision (both backends' rule): with bf16 or f16, the four
 * dense GEMMs of a layer (QKV, attention output, FFN in, FFN out) take their
 * input rounded to p and their weights already rounded to p, as the
 * backends' model_load leaves them; sums stay f32, and so does everything
 * else: embeddings, biases, LayerNorm, attention, pooling, Dense. */
#ifndef GPUQ_KERNELS_ENCODER_H
#define GPUQ_KERNELS_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "models/encoder/encoder.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One padding-free batch: n_seq sequences of token ids, concatenated. */
struct gpuq_encode_batch {
    const int32_t *ids;       /* [n_tokens], every id < vocab */
    const int *lens;          /* [n_seq], each 1 .. gpuq_encoder_max_tokens */
    const int32_t *types;     /* [n_tokens] token types (a pair's second text: 1), or NULL: all 0;
                                 read only where the encoder has more than one type */
    int n_seq;
    enum gpuq_pool pooling;
    int normalize;
    float *out;               /* [n_seq, gpuq_encoder_dim]; with a masked-LM head [n_seq, vocab]:
                                 SPLADE's max over the tokens of log(1 + ReLU(logits)) */
};

/* Floats of scratch the CPU forward needs for a batch of n_tokens tokens
 * whose longest sequence is max_len. */
size_t gpuq_encoder_scratch_floats(const struct gpuq_encoder *e, int n_tokens, int max_len);

/* The forward pass on the CPU backend be (its oneDNN GEMMs); scratch holds
 * gpuq_encoder_scratch_floats() floats. 0, or an enum gpuq_status with
 * be->errstr (a GEMM failed). */
int gpuq_encoder_forward_cpu(struct gpuq_backend *be, const struct gpuq_encoder *e,
                             const struct gpuq_encode_batch *b, float *scratch);

/* The sentence-transformers modules after a text model's last hidden
 * states x [n_tokens, e->hidden] (an encoder's, or a decoder's st):
 * pooling per sequence (b->pooling), the Dense modules (f32) and the
 * optional L2 normalization (b->normalize), into b->out; work holds
 * gpuq_encoder_head_floats(e, b->n_seq) floats. 0, or an enum gpuq_status
 * with be->errstr. */
size_t gpuq_encoder_head_floats(const struct gpuq_encoder *e, int n_seq);
int gpuq_encoder_head_cpu(struct gpuq_backend *be, const struct gpuq_encoder *e, const struct gpuq_encode_batch *b,
                          const float *x, float *work);

/* The position row of token q of a sequence (the encoder's scheme); *seen
 * counts the sequence's tokens that are not padding so far (start at 0). */
static inline int gpuq_encoder_position(const struct gpuq_encoder *e, int32_t id, int q, int *seen) {
    if (e->pad_id < 0) return q;
    if (id == e->pad_id) return e->pad_id;
    return e->pad_id + ++*seen;
}

/* Token r's type row: its type where the encoder has more than one (and
 * the type is one of them), else 0. */
static inline int gpuq_encoder_type(const struct gpuq_encoder *e, const int32_t *types, int r) {
    return types && e->n_types > 1 && types[r] > 0 && types[r] < e->n_types ? types[r] : 0;
}

/* MPNet's (T5's bidirectional) bucket of a key at distance rel = key -
 * query, in f32 as transformers computes it. */
int gpuq_encoder_rel_bucket(int rel, int buckets, int max_distance);

#ifdef __cplusplus
}
#endif
#endif
