/* cpu.h -- what the CPU kernels (ops/<op>.c) ask of the CPU backend. */
#ifndef GPUQ_CPU_H
#define GPUQ_CPU_H

#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu_gemm.h"

/* Scratch buffer i (< GPUQ_CPU_SCRATCH) of the CPU backend be with room
 * for floats: grown, kept, so the steady state allocates nothing. NULL
 * with be->errstr set when out of memory. */
#define GPUQ_CPU_SCRATCH 3
float *gpuq_cpu_scratch(struct gpuq_backend *be, int i, size_t floats);

/* Runs a GEMM (kernels/cpu_gemm.h) on be: 0, or GPUQ_BE_FAILED with
 * be->errstr. */
int gpuq_cpu_gemm(struct gpuq_backend *be, const struct gpuq_cpu_gemm_args *a);

/* y[rows, out] = act(x[rows, in] w^T + bias), w [out, in] row-major (bias
 * may be NULL). With w16 (the layer's bf16 copy, see gpuq_cpu_bf16) the
 * GEMM takes x16, x in bf16, and w16; else x and w in f32. */
int gpuq_cpu_dense(struct gpuq_backend *be, const float *x, const uint16_t *x16, int64_t rows,
                   int64_t in, const float *w, const uint16_t *w16, int64_t out, const float *bias,
                   enum gpuq_act act, float *y);

/* Whether be's GEMMs take bf16 inputs: precision bf16 on a host whose
 * oneDNN has a bf16 matmul. Its model_load then gives the GEMMs' matrices
 * a bf16 copy (w16); otherwise bf16 is rounded f32 in f32 GEMMs. */
int gpuq_cpu_bf16(struct gpuq_backend *be);

/* x as the GEMMs of precision p see it. */
float gpuq_cpu_round(enum gpuq_precision p, float x);

/* n GEMM inputs as precision p's GEMMs see them, rounded as the CUDA
 * backend's conversion kernel does: in itself for f32, else dst (which may
 * be in) holding them. The sums stay f32. */
const float *gpuq_cpu_round_rows(enum gpuq_precision p, const float *in, size_t n, float *dst);

/* out = LayerNorm(in) over n values, mean and variance in double; out may
 * be in. The layernorm op's kernel and the encoder's. */
void gpuq_cpu_layernorm_row(const float *in, float *out, int n, const float *g, const float *b, float eps);

/* e^x for x <= 0, within 2 ulp of expf, where it is
 * not below f32's normal range (e^-87; below, e^-87), in straight-line
 * arithmetic the compiler vectorizes: x = n ln 2 + r, |r| <= ln 2 / 2, e^r
 * by Cephes' polynomial, 2^n put in the exponent bits. Always inlined, so
 * that it is compiled for the ISA of the loop calling it. */
static inline __attribute__((always_inline)) float gpuq_exp_nonpositive(float x) {
    uint32_t u;     /* x = max(x, -87) on the bits: for x <= 0 the larger magnitude has the
                     * larger bits, and an integer minimum vectorizes on every ISA */
    memcpy(&u, &x, 4);
    u = u > 0xc2ae0000u ? 0xc2ae0000u : u;
    memcpy(&x, &u, 4);
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round to nearest */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* Each of rows rows of ld scores to its softmax's numerators, e^(s - max),
 * and inv[r] to 1 / their sum, the division left to the caller (the
 * attention's weighted sum of the values: n times fewer products). A score
 * of -inf (padding, a masked key) changes neither the row's largest nor its
 * sum: it becomes e^-87, below the sum's last bit. Vector code for the CPU
 * backend's ISA; whole vectors when ld is a multiple of 16. */
void gpuq_cpu_softmax_rows(float *s, int rows, int64_t ld, float *inv);

/* That division: ctx's rows (rows of them, ld apart) hold heads blocks of d
 * values, weighted sums of the numerators; the block of head g in row i is
 * multiplied by inv[g * rows + i]. */
void gpuq_cpu_divide_heads(float *ctx, int rows, int heads, int64_t d, int64_t ld, const float *inv);

/* The encoder and decoder run every layer on one block of whole sequences
 * before the next, so that a layer's activations are still in cache when
 * the next step reads them. A block's tokens: at most fit, or the longest
 * sequence where that is longer (it is a block alone), and no more than the
 * batch's n_tokens. */
int gpuq_cpu_block_tokens(int fit, int n_tokens, int max_len);

/* The block of whole sequences of lens[0..n_seq) that starts at sequence
 * s0, at most tb tokens (or that one sequence): returns the sequence after
 * it; *tokens and *longest its tokens and its longest sequence. */
int gpuq_cpu_block_next(const int *lens, int n_seq, int s0, int tb, int *tokens, int *longest);

#endif
