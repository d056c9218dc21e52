/* cuda_module.h -- the CUDA backend as a module loaded at run time.
 *
 * The CUDA backend (kernels/cuda.cu and each op's ops/<op>.cu) is built as
 * libgpuq-cuda.so, the only part of gpuq that links the CUDA runtime and
 * cuBLAS. The program dlopen()s it when a CUDA backend is asked for (auto or
 * cuda), so one program serves hosts with and without a GPU, and a host
 * without the CUDA libraries never loads them. The module exports one
 * symbol, gpuq_cuda_module. Module and program must come from the same
 * build: the version, the backend struct's size and the op count are
 * checked before anything is called. */
#ifndef GPUQ_CUDA_MODULE_H
#define GPUQ_CUDA_MODULE_H

#include <stddef.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPUQ_CUDA_MODULE_FILE "libgpuq-cuda.so"
#define GPUQ_CUDA_MODULE_ABI 1

struct gpuq_cuda_module {
    int abi;                    /* GPUQ_CUDA_MODULE_ABI */
    const char *version;        /* GPUQ_VERSION of its build */
    size_t backend_size;        /* sizeof(struct gpuq_backend) in its build */
    int n_ops;                  /* GPUQ_OP_COUNT in its build */
    /* Number of usable devices; 0 when there is no driver or device. */
    int (*device_count)(void);
    /* Sets be up on device. 0, or -1 with a reason in err. */
    int (*init)(struct gpuq_backend *be, int device, char *err, size_t errlen);
    /* Each op's CUDA kernel (ops/<op>.cu's gpuq_cuda_<op>); NULL: the CPU runs it. */
    gpuq_kernel_fn *kernel[GPUQ_OP_COUNT];
    /* Each op's buffer sizing (gpuq_cuda_<op>_reserve); NULL: nothing to size. */
    gpuq_reserve_fn *reserve[GPUQ_OP_COUNT];
};

/* Loads the module once: $GPUQ_CUDA_MODULE when set, else libgpuq-cuda.so
 * beside the program, else in ../lib/gpuq/ from it (where the gpuq-cuda
 * package puts it). NULL with the reason in why (not found, its libraries
 * missing, another build's). */
const struct gpuq_cuda_module *gpuq_cuda_module_load(char *why, size_t len);

#ifdef __cplusplus
}
#endif
#endif
