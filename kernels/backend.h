/* backend.h -- the compute backends behind one small function table, and
 * a table of kernels indexed by op.
 *
 * Every kernel takes and returns host memory, row-major; a backend moves
 * data to its device as it needs. The CPU backend is always built; the CUDA
 * backend when nvcc was found at build time, used when a device is usable.
 *
 * A backend with streams (begin and sync not NULL) may return from an op
 * before its outputs are written: they are there once sync(slot) returns.
 * Inputs and outputs then live in that slot's staging buffers, which stay
 * untouched until sync. Two slots let one batch pack and upload while the
 * other computes. */
#ifndef GPUQ_BACKEND_H
#define GPUQ_BACKEND_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "models/model.h"
#include "base/op_list.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What an op returns besides 0; be->errstr says more. */
enum gpuq_status {
    GPUQ_BE_FAILED = -1,    /* this call failed; the backend serves on */
    GPUQ_BE_NOMEM = -2,     /* out of (device) memory: a smaller batch may fit */
    GPUQ_BE_LOST = -3,      /* the device is unusable (a sticky error): restart */
    GPUQ_BE_UNSERVED = -4,  /* model_load: this backend's kernels do not serve that model */
};

/* How mlp and encoder weights and GEMM inputs enter the GEMMs: f32, or rounded to bf16
 * or f16 (tensor cores on CUDA); sums are f32 either way. */
enum gpuq_precision { GPUQ_PREC_F32, GPUQ_PREC_BF16, GPUQ_PREC_F16 };

/* The kinds of backend: each op's descriptor has a kernel for each kind
 * it runs on (ops/op.h). */
enum gpuq_backend_kind { GPUQ_BACKEND_CPU, GPUQ_BACKEND_CUDA, GPUQ_BACKEND_KINDS };

/* One kernel call: op's own argument struct (ops/<op>.h) and the rows it
 * covers (what fault injection counts). */
struct gpuq_launch {
    enum gpuq_op op;
    int64_t rows;
    const void *args;
};

struct gpuq_backend;

/* An op's kernel on one backend: 0, or an enum gpuq_status with be->errstr. */
typedef int gpuq_kernel_fn(struct gpuq_backend *be, const struct gpuq_launch *l);

/* Sizes an op's buffers on one backend, once at start, for batches of up
 * to rows rows of the loaded models. 0, or an enum gpuq_status. */
typedef int gpuq_reserve_fn(struct gpuq_backend *be, int rows);

/* The backend itself; its ops are in struct gpuq_backend's kernel table. */
struct gpuq_backend_i {
    const char *name;
    enum gpuq_backend_kind kind;
    void (*destroy)(struct gpuq_backend *be);
    /* Prepares a loaded model (uploads weights). 0, or an enum gpuq_status
     * with be->errstr. */
    int (*model_load)(struct gpuq_backend *be, struct gpuq_model *m);
    void (*model_free)(struct gpuq_backend *be, struct gpuq_model *m);
    /* Device memory in use, in bytes; NULL where there is no device. */
    int (*memory_used)(struct gpuq_backend *be, int64_t *bytes);
    /* Sizes buffers once for batches of up to rows rows of the loaded
     * models: runs every op's reserve (be->reserve); NULL where there is
     * nothing to size. */
    int (*reserve)(struct gpuq_backend *be, int rows);
    /* Streams (NULL for a synchronous backend): ops after begin(slot) go
     * on that slot; sync(slot) waits for them. staging(slot, i, bytes) is
     * host buffer i (< GPUQ_STAGING) of the slot, pinned, grown, kept. */
    int (*begin)(struct gpuq_backend *be, int slot);
    int (*sync)(struct gpuq_backend *be, int slot);
    void *(*staging)(struct gpuq_backend *be, int slot, int i, size_t bytes);
};

#define GPUQ_STAGING 6

struct gpuq_backend {
    const struct gpuq_backend_i *iface;
    /* Op k's kernel on this backend; NULL: op k runs on the CPU backend. */
    gpuq_kernel_fn *kernel[GPUQ_OP_COUNT];
    gpuq_reserve_fn *reserve[GPUQ_OP_COUNT];  /* NULL: nothing to size for op k */
    void *ctx;
    char desc[128];     /* "cpu (oneDNN 2.6.3, avx2, gemm:jit, f32, 1 thread)", "cuda device 0: NVIDIA H200" */
    char note[512];     /* why auto chose the CPU ("no CUDA device: ..."); empty otherwise */
    char errstr[128];   /* why the last call failed */
    enum gpuq_precision precision;  /* for mlp and encoders; set before models load */
};

/* Opens the backend core (context, buffers; no kernels yet: the op
 * table binds them, ops/table.h, except the CUDA module's own, which it
 * brings). kind is "auto", "cpu" or "cuda"; auto picks CUDA when the CUDA
 * module (kernels/cuda_module.h) loads and a device is usable, else the CPU
 * with the reason in be->note. 0, or -1 with err. */
int gpuq_backend_open(struct gpuq_backend *be, const char *kind, int device, char *err,
                      size_t errlen);
/* Usable CUDA devices: 0 without the CUDA module, a driver or a device. */
int gpuq_backend_cuda_devices(void);
void gpuq_backend_destroy(struct gpuq_backend *be);
int gpuq_backend_cpu_open(struct gpuq_backend *be);

/* Threads the CPU backend's GEMMs use (n > 0): oneDNN's OpenMP threads for GEMMs called
 * from the calling thread, for every CPU backend. */
void gpuq_backend_cpu_threads(int n);

/* Runs op's kernel on be (which must have one). */
static inline int gpuq_backend_run(struct gpuq_backend *be, enum gpuq_op op, int64_t rows,
                                   const void *args) {
    struct gpuq_launch l = {op, rows, args};
    return be->kernel[op](be, &l);
}

/* Wraps be so that its ops fail as a failing device would, for tests:
 * spec "nomem-above=ROWS" (ops on more rows: out of memory) or
 * "model-nomem=1" (no model fits) or "refuse-model=NAME" (that model's
 * family is not served here) or "lost-after=N" (the device is lost
 * after N op calls). 0, or -1 with err. */
int gpuq_backend_fault(struct gpuq_backend *be, const char *spec, char *err, size_t errlen);

/* "f32", "bf16", "f16" and back; -1 when unknown. */
const char *gpuq_precision_name(enum gpuq_precision p);
int gpuq_precision_from_name(const char *s);

#ifdef __CUDACC__
#define GPUQ_HOST_DEVICE __host__ __device__
#else
#define GPUQ_HOST_DEVICE
#endif

/* Scalar activation (GELU exact, with erf), the one both backends' kernels
 * call: mlp's between layers, the encoder's feed-forward. */
static inline GPUQ_HOST_DEVICE float gpuq_act_apply(enum gpuq_act act, float x) {
    switch (act) {
    case GPUQ_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case GPUQ_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case GPUQ_ACT_SILU: return x / (1.0f + expf(-x));
    case GPUQ_ACT_TANH: return tanhf(x);
    default: return x;
    }
}

#ifdef __cplusplus
}
#endif
#endif
