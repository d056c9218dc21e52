/* test_backend_cuda.c -- the CUDA backend against the same references as the
 * CPU backend, on the same random inputs. Exits 77 (skipped) without a device. */
#include "ops_ref.h"

#ifdef GPUQ_HAVE_CUDA
#include "kernels/cuda.h"
#endif

int main(void) {
#ifndef GPUQ_HAVE_CUDA
    printf("test_backend_cuda: SKIPPED: built without CUDA\n");
    return 77;
#else
    if (gpuq_cuda_device_count() == 0) {
        printf("test_backend_cuda: SKIPPED: no CUDA device\n");
        return 77;
    }
    struct gpuq_backend be;
    char err[128];
    CHECK(gpuq_backend_create(&be, "cuda", 0, err, sizeof(err)) == 0);
    printf("%s\n", be.desc);
    check_backend(&be, 1e-4);
    check_backend_rows(&be, 1e-4);
    gpuq_backend_destroy(&be);
    return check_done("test_backend_cuda");
#endif
}
