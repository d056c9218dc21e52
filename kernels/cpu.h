/* cpu.h -- what the CPU kernels (ops/<op>.c) ask of the CPU backend. */
#ifndef GPUQ_CPU_H
#define GPUQ_CPU_H

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

#endif
