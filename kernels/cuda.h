/* cuda.h -- the CUDA backend (cuBLAS GEMMs, custom kernels). */
#ifndef GPUQ_CUDA_H
#define GPUQ_CUDA_H

#include <stddef.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no driver or device. */
int gpuq_cuda_device_count(void);

/* Sets be up on device `device`. Returns 0, or -1 with a reason in err. */
int gpuq_cuda_init(struct gpuq_backend *be, int device, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
