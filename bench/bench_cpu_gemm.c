/* bench_cpu_gemm.c -- the CPU backend's GEMM rate (kernels/cpu_gemm.h) on
 * the text encoder's dense shapes, f32 and bf16, on one thread: the limit
 * scripts/bench --embed sets the encoder's sustained rate against. A
 * benchmark, so not a test. Prints one JSON object a line.
 *   bench_cpu_gemm [SECONDS_EACH] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/cpu_gemm.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
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
    free(a), free(b), free(c), free(a16), free(b16);
    gpuq_cpu_gemm_destroy(g);
    return 0;
}
