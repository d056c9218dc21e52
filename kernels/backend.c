/* backend.c -- choosing a backend, and what both backends share. */
#include "kernels/backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifdef GPUQ_HAVE_CUDA
#include "kernels/cuda.h"
#endif

float gpuq_act_apply(enum gpuq_act act, float x) {
    switch (act) {
    case GPUQ_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case GPUQ_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case GPUQ_ACT_SILU: return x / (1.0f + expf(-x));
    case GPUQ_ACT_TANH: return tanhf(x);
    default: return x;
    }
}

static const char *precisions[] = {"f32", "bf16", "f16"};

const char *gpuq_precision_name(enum gpuq_precision p) { return precisions[p]; }

int gpuq_precision_from_name(const char *s) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, precisions[i]) == 0) return i;
    return -1;
}

int gpuq_backend_open(struct gpuq_backend *be, const char *kind, int device, char *err,
                      size_t errlen) {
    memset(be, 0, sizeof(*be));
    if (strcmp(kind, "cpu") == 0) return gpuq_backend_cpu_open(be);
    if (strcmp(kind, "cuda") != 0 && strcmp(kind, "auto") != 0) {
        snprintf(err, errlen, "unknown backend '%s' (auto, cpu, cuda)", kind);
        return -1;
    }
#ifdef GPUQ_HAVE_CUDA
    char why[128];
    if (gpuq_cuda_init(be, device, why, sizeof(why)) == 0) return 0;
    if (strcmp(kind, "cuda") == 0) {
        snprintf(err, errlen, "cuda backend unavailable: %s", why);
        return -1;
    }
    int result = gpuq_backend_cpu_open(be);
    snprintf(be->note, sizeof(be->note), "no CUDA device: %s", why);
    return result;
#else
    (void)device;
    if (strcmp(kind, "cuda") == 0) {
        snprintf(err, errlen, "cuda backend unavailable: this build has no CUDA support");
        return -1;
    }
    int result = gpuq_backend_cpu_open(be);
    snprintf(be->note, sizeof(be->note), "built without CUDA");
    return result;
#endif
}

void gpuq_backend_destroy(struct gpuq_backend *be) {
    if (be && be->iface) be->iface->destroy(be);
    if (be) memset(be, 0, sizeof(*be));
}
