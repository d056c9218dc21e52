/* cuda_module.c -- the entry point of libgpuq-cuda.so: the CUDA backend's
 * core and each op's CUDA kernel, found by name from base/ops.def. */
#include "kernels/cuda_module.h"

#include "kernels/cuda.h"

/* ops/<op>.cu defines gpuq_cuda_<op>, and gpuq_cuda_<op>_reserve where it
 * keeps buffers; what an op lacks stays NULL (weak). */
#define GPUQ_OP(id, name)                                                  \
    extern gpuq_kernel_fn gpuq_cuda_##name __attribute__((weak));          \
    extern gpuq_reserve_fn gpuq_cuda_##name##_reserve __attribute__((weak));
#include "base/ops.def"
#undef GPUQ_OP

__attribute__((visibility("default"))) const struct gpuq_cuda_module gpuq_cuda_module = {
    .abi = GPUQ_CUDA_MODULE_ABI,
    .version = GPUQ_VERSION,
    .backend_size = sizeof(struct gpuq_backend),
    .n_ops = GPUQ_OP_COUNT,
    .device_count = gpuq_cuda_device_count,
    .init = gpuq_cuda_init,
    .kernel = {
#define GPUQ_OP(id, name) [GPUQ_OP_##id] = gpuq_cuda_##name,
#include "base/ops.def"
#undef GPUQ_OP
    },
    .reserve = {
#define GPUQ_OP(id, name) [GPUQ_OP_##id] = gpuq_cuda_##name##_reserve,
#include "base/ops.def"
#undef GPUQ_OP
    },
};
