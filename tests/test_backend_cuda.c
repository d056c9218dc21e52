/* test_backend_cuda.c -- the CUDA backend against the same references as the
 * CPU backend, then against the CPU backend itself on larger random inputs
 * (kernels/twin.c), in every mlp precision. Exits 77 (skipped) without a
 * device.
 *   test_backend_cuda [--small]
 * --small runs the twin check at the worker's start-up sizes, so that
 * compute-sanitizer's slower tools finish (scripts/gpu-check). */
#include "ops_ref.h"

int main(int argc, char **argv) {
    int large = !(argc == 2 && strcmp(argv[1], "--small") == 0);
    if (argc > 1 + !large) {
        fprintf(stderr, "usage: test_backend_cuda [--small]\n");
        return 2;
    }
    if (gpuq_backend_cuda_devices() == 0) {     /* the CUDA module loads it, if there is one */
        printf("test_backend_cuda: SKIPPED: no CUDA module or no CUDA device\n");
        return 77;
    }
    struct gpuq_backend be, cpu;
    char err[128];
    CHECK(gpuq_backend_create(&be, "cuda", 0, err, sizeof(err)) == 0);
    CHECK(gpuq_backend_cpu_init(&cpu) == 0);
    printf("%s\n", be.desc);
    /* every op is the CUDA backend's own: none is left to the CPU */
    for (int op = 0; op < GPUQ_OP_COUNT; op++) CHECK(be.kernel[op] != NULL);
    check_backend(&be, 1e-4);
    check_backend_rows(&be, 1e-4);
    for (int p = GPUQ_PREC_F32; p <= GPUQ_PREC_F16; p++) {
        struct gpuq_twin t;
        be.precision = (enum gpuq_precision)p;
        printf("CUDA against the CPU backend, mlp in %s:\n", gpuq_precision_name(be.precision));
        gpuq_twin_check(&be, &cpu, large, &t);
        check_twin(&t);
    }
    gpuq_backend_destroy(&be);
    gpuq_backend_destroy(&cpu);
    return check_done("test_backend_cuda");
}
