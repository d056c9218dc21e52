/* cpu_gemm.h -- every GEMM of the CPU backend, through oneDNN's matmul
 * primitive (Debian's libdnnl), which picks its kernels by the host's
 * features: AVX2, AVX-512, and AVX-512 BF16 or AMX for bf16 inputs.
 *
 * Each kind of call (batch, input type, layout, bias, activation, alpha)
 * has one primitive, made on first use and kept: sizes and strides are
 * given at run time, so a batch of any number of tokens reuses it (bf16
 * calls of many rows also keep a few of fixed sizes, see cpu_gemm.c). The calling thread
 * computes, with as many OpenMP threads as gpuq_cpu_gemm_threads() set on it
 * (oneDNN's Debian build threads with OpenMP). */
#ifndef GPUQ_CPU_GEMM_H
#define GPUQ_CPU_GEMM_H

#include <stddef.h>
#include <stdint.h>

#include "models/model.h"

struct gpuq_cpu_gemm;

enum gpuq_cpu_gemm_type { GPUQ_CPU_GEMM_F32, GPUQ_CPU_GEMM_BF16 };

/* c[i, j] = act(alpha * sum_k a[i, k] b[k, j] + bias[j] (+ c[i, j] where
 * accumulate: a residual added in the GEMM's own pass)) for each of batch
 * matrices. Element (i, k) of a's matrix t is at
 * a + t * a_batch + i * a_row + k * a_col (elements, not bytes); so for b
 * (k, j) and c (i, j). A transposed operand is a swap of its two strides.
 * a and b are of type (bf16: uint16_t, the high half of an f32); c is
 * f32, or bf16 rounded to nearest even where c_type says so; bias and the
 * sums are f32. bias (NULL: none), act and accumulate need batch 1, and
 * bias needs alpha 1; accumulate needs an f32 c. */
struct gpuq_cpu_gemm_args {
    int batch;
    int64_t m, n, k;
    enum gpuq_cpu_gemm_type type;
    const void *a;
    int64_t a_row, a_col, a_batch;
    const void *b;
    int64_t b_row, b_col, b_batch;
    void *c;
    int64_t c_row, c_col, c_batch;
    enum gpuq_cpu_gemm_type c_type;
    float alpha;
    const float *bias;
    enum gpuq_act act;
    int accumulate;
};

/* The library's engine and an empty cache of primitives. NULL with a
 * reason in err when oneDNN cannot make a CPU engine. */
struct gpuq_cpu_gemm *gpuq_cpu_gemm_create(char *err, size_t errlen);
void gpuq_cpu_gemm_destroy(struct gpuq_cpu_gemm *g);   /* NULL is fine */

/* Runs one call (struct gpuq_cpu_gemm_args). 0, or -1 with a reason in err
 * (no kernel for that type on this host, out of memory). */
int gpuq_cpu_gemm_run(struct gpuq_cpu_gemm *g, const struct gpuq_cpu_gemm_args *a, char *err,
                      size_t errlen);

/* Whether this host's oneDNN has a bf16 matmul (AVX-512 BF16, AMX or its
 * emulation on AVX-512); without one, bf16 is computed in f32. */
int gpuq_cpu_gemm_has_bf16(struct gpuq_cpu_gemm *g);

/* "oneDNN 2.6.3, avx512_core_amx, gemm:jit" for the type: the library, the
 * ISA it dispatches to and the kernel it picked. */
void gpuq_cpu_gemm_describe(struct gpuq_cpu_gemm *g, enum gpuq_cpu_gemm_type type, char *out,
                            size_t len);

/* Threads for the calling thread's GEMMs (n > 0); and how many it has. */
void gpuq_cpu_gemm_threads(int n);
int gpuq_cpu_gemm_max_threads(void);

/* The vector ISA of the CPU backend's own loops (softmax, LayerNorm, bf16
 * conversion): the widest of AVX-512 and AVX2 that oneDNN dispatches to, so
 * that its cap (ONEDNN_MAX_CPU_ISA=AVX2) caps them too and a run shows what
 * a host with that ISA does. */
enum gpuq_cpu_isa { GPUQ_ISA_BASE, GPUQ_ISA_AVX2, GPUQ_ISA_AVX512 };
enum gpuq_cpu_isa gpuq_cpu_isa(void);

/* Defines static void name params, which runs one of three copies of the
 * always-inline name##_body (called with args), compiled for AVX-512, AVX2
 * with FMA and the x86-64 baseline, as gpuq_cpu_isa() says. */
#define GPUQ_CPU_VECTOR(name, params, args)                                                       \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) static void name##_avx512 params { \
        name##_body args;                                                                        \
    }                                                                                            \
    __attribute__((target("avx2,fma"))) static void name##_avx2 params { name##_body args; }      \
    static void name##_base params { name##_body args; }                                          \
    static void name params {                                                                    \
        enum gpuq_cpu_isa isa_ = gpuq_cpu_isa();                                                 \
        if (isa_ == GPUQ_ISA_AVX512) name##_avx512 args;                                         \
        else if (isa_ == GPUQ_ISA_AVX2) name##_avx2 args;                                        \
        else name##_base args;                                                                   \
    }

/* n f32 values as bf16, rounded to nearest even as gpuq_round_bf16 does. */
void gpuq_cpu_gemm_to_bf16(const float *in, size_t n, uint16_t *out);

#endif
