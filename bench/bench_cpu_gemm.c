/* bench_cpu_gemm.c -- the CPU backend's GEMM rate (kernels/cpu_gemm.h) on
 * the text encoder's dense shapes, f32 and bf16, on one thread: the limit
 * scripts/bench --embed sets the encoder's sustained rate against; then the
 * core's own f32 limit, fused multiply-adds on registers alone at the vector
 * width the backend dispatches to (gpuq_cpu_isa), which no f32 kernel of
 * that ISA passes. A benchmark, so not a test. Prints one JSON object a line.
 *   bench_cpu_gemm [SECONDS_EACH] */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cpu_gemm.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* FMA_CHAINS independent chains of fused multiply-adds, so that both FMA
 * ports stay busy whatever their latency: rounds of them; seconds taken. */
#define FMA_CHAINS 12
#define FMA_LOOP(vec, set1, fmadd, lanes)                                      \
    vec acc[FMA_CHAINS], m = set1(0.999999f), c = set1(1e-7f);                 \
    for (int i = 0; i < FMA_CHAINS; i++) acc[i] = set1((float)i);              \
    double t0 = now();                                                         \
    for (long r = 0; r < rounds; r++) {                                        \
        _Pragma("GCC unroll 12") for (int i = 0; i < FMA_CHAINS; i++)          \
            acc[i] = fmadd(acc[i], m, c);                                      \
    }                                                                          \
    double t = now() - t0;                                                     \
    float out[lanes];                                                          \
    for (int i = 1; i < FMA_CHAINS; i++) acc[0] = fmadd(acc[i], m, acc[0]);   \
    memcpy(out, &acc[0], sizeof(out));                                         \
    *sink += out[0];                                                           \
    return t;

__attribute__((target("avx512f"))) static double fma_avx512(long rounds, float *sink) {
    FMA_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps, 16)
}

__attribute__((target("avx2,fma"))) static double fma_avx2(long rounds, float *sink) {
    FMA_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps, 8)
}

/* The best of three runs of about each / 3 seconds. */
static void fma_limit(double each) {
    enum gpuq_cpu_isa isa = gpuq_cpu_isa();
    if (isa == GPUQ_ISA_BASE) return;
    int lanes = isa == GPUQ_ISA_AVX512 ? 16 : 8;
    double (*run)(long, float *) = isa == GPUQ_ISA_AVX512 ? fma_avx512 : fma_avx2, best = 0;
    float sink = 0;
    long rounds = 1 << 16;
    while (run(rounds, &sink) < each / 3) rounds *= 2;
    for (int i = 0; i < 3; i++) {
        double g = 2.0 * lanes * FMA_CHAINS * rounds / run(rounds, &sink) / 1e9;
        best = g > best ? g : best;
    }
    printf("{\"type\": \"fma\", \"isa\": \"%s\", \"gflops\": %.1f, \"kernel\": \"%d chains of %d-bit f32 FMAs on "
           "registers\"}\n", lanes == 16 ? "avx512" : "avx2", best, FMA_CHAINS, lanes * 32);
    volatile float keep = sink;     /* the chains' result is used */
    (void)keep;
}

int main(int argc, char **argv) {
    static const int shapes[][3] = {{4096, 1536, 384}, {4096, 384, 1536}, {4096, 1152, 384}, {4096, 384, 384}};
    double each = argc > 1 ? atof(argv[1]) : 1.0;
    char err[128], about[96];
    gpuq_cpu_gemm_threads(1);
    struct gpuq_cpu_gemm *g = gpuq_cpu_gemm_create(err, sizeof(err));
    if (!g) {
        fprintf(stderr, "bench_cpu_gemm: %s\n", err);
        return 1;
    }
    size_t most = (size_t)4096 * 1536;
    float *a = malloc(most * sizeof(float)), *b = malloc(most * sizeof(float)), *c = malloc(most * sizeof(float));
    uint16_t *a16 = malloc(most * 2), *b16 = malloc(most * 2);
    for (size_t i = 0; i < most; i++) a[i] = (float)(i % 7) * 0.01f, b[i] = (float)(i % 5) * 0.01f;
    gpuq_cpu_gemm_to_bf16(a, most, a16);
    gpuq_cpu_gemm_to_bf16(b, most, b16);
    for (int t = 0; t < 2; t++) {
        enum gpuq_cpu_gemm_type type = t ? GPUQ_CPU_GEMM_BF16 : GPUQ_CPU_GEMM_F32;
        if (type == GPUQ_CPU_GEMM_BF16 && !gpuq_cpu_gemm_has_bf16(g)) continue;
        gpuq_cpu_gemm_describe(g, type, about, sizeof(about));
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
            /* as the encoder's dense layers: x [m, k] times w [n, k] transposed */
            struct gpuq_cpu_gemm_args args = {
                .batch = 1, .m = m, .n = n, .k = k, .type = type, .a = t ? (void *)a16 : a, .a_row = k,
                .a_col = 1, .b = t ? (void *)b16 : b, .b_row = 1, .b_col = k, .c = c, .c_row = n, .c_col = 1,
                .alpha = 1.0f};
            int calls = 0;
            double t0 = now(), t1 = t0;
            while (t1 - t0 < each || calls < 2) {
                if (gpuq_cpu_gemm_run(g, &args, err, sizeof(err)) != 0) {
                    fprintf(stderr, "bench_cpu_gemm: %s\n", err);
                    return 1;
                }
                calls++;
                t1 = now();
            }
            printf("{\"m\": %d, \"n\": %d, \"k\": %d, \"type\": \"%s\", \"gflops\": %.1f, \"kernel\": \"%s\"}\n",
                   m, n, k, t ? "bf16" : "f32", 2.0 * m * n * k * calls / (t1 - t0) / 1e9, about);
            fflush(stdout);
        }
    }
    fma_limit(each);
    free(a), free(b), free(c), free(a16), free(b16);
    gpuq_cpu_gemm_destroy(g);
    return 0;
}
