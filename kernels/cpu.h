/* cpu.h -- what the CPU kernels (ops/<op>.c) ask of the CPU backend. */
#ifndef GPUQ_CPU_H
#define GPUQ_CPU_H

#include "kernels/backend.h"

/* Scratch buffer i (< GPUQ_CPU_SCRATCH) of the CPU backend be with room
 * for floats: grown, kept, so the steady state allocates nothing. NULL
 * with be->errstr set when out of memory. */
#define GPUQ_CPU_SCRATCH 3
float *gpuq_cpu_scratch(struct gpuq_backend *be, int i, size_t floats);

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
