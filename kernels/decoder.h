/* decoder.h -- the decoder embedder's forward pass
 * (models/decoder/decoder.h) on each backend: the CPU's in
 * kernels/decoder_cpu.c, CUDA's in kernels/decoder.cu. Both compute:
 *
 * the embeddings of the tokens; per layer RMSNorm, one q/k/v GEMM over all
 * tokens (with Qwen2's biases), Qwen3's RMSNorm per head on q and k, rotary
 * positions (rotate-half, the config's rope_theta, each sequence from
 * position 0), causal attention per sequence in which each query head reads
 * its group's shared key/value head, the output projection and residual;
 * RMSNorm, one gate/up GEMM, SiLU(gate) * up, the down projection and
 * residual; the final RMSNorm; then the sentence-transformers modules of
 * the decoder's st, the encoder's head on each backend (last-token pooling
 * takes each sequence's own last token).
 *
 * Precision be->precision, as the encoder's: with bf16 or f16 the four
 * GEMMs of a layer (q/k/v, output, gate/up, down) take their input rounded
 * to p and their weights already rounded; everything else stays f32. */
#ifndef GPUQ_KERNELS_DECODER_H
#define GPUQ_KERNELS_DECODER_H

#include <stddef.h>

#include "kernels/encoder.h"
#include "models/decoder/decoder.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Floats of scratch the CPU forward needs for a batch of n_tokens tokens
 * whose longest sequence is max_len. */
size_t gpuq_decoder_scratch_floats(const struct gpuq_decoder *d, int n_tokens, int max_len);

/* The forward pass of a padding-free batch (b->types is not read) on the
 * CPU backend be; scratch holds gpuq_decoder_scratch_floats() floats. 0, or
 * an enum gpuq_status with be->errstr (a GEMM failed). */
int gpuq_decoder_forward_cpu(struct gpuq_backend *be, const struct gpuq_decoder *d,
                             const struct gpuq_encode_batch *b, float *scratch);

/* cs [max_len, hd]: per position, the cosines of its hd / 2 angles then
 * their sines; angle i of position p is p * theta^(-2i / hd). Both
 * backends rotate by this table, made on the host with the batch. */
void gpuq_decoder_rope_table(const struct gpuq_decoder *d, int max_len, float *cs);

#ifdef __cplusplus
}
#endif
#endif
