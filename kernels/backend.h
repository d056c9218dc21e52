/* backend.h -- the compute backends behind one small function table.
 *
 * Every op takes and returns host memory in f32, row-major; a backend moves
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

#include <stddef.h>
#include <stdint.h>

#include "kernels/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* c[i] = alpha * op(a[i]) @ op(b[i]) for i < count. op(a) is m x k: a is stored
 * [m, k], or [k, m] when trans_a. Strides are in elements; 0 repeats one matrix. */
struct gpuq_matmul {
    int trans_a, trans_b;
    int m, n, k;
    int count;
    float alpha;
    const float *a;
    int64_t stride_a;
    const float *b;
    int64_t stride_b;
    float *c;           /* [count, m, n] */
};

/* What an op returns besides 0; be->errstr says more. */
enum gpuq_status {
    GPUQ_BE_FAILED = -1,    /* this call failed; the backend serves on */
    GPUQ_BE_NOMEM = -2,     /* out of (device) memory: a smaller batch may fit */
    GPUQ_BE_LOST = -3,      /* the device is unusable (a sticky error): restart */
};

/* How mlp weights and activations enter the GEMMs: f32, or rounded to bf16
 * or f16 (tensor cores on CUDA); sums are f32 either way. */
enum gpuq_precision { GPUQ_PREC_F32, GPUQ_PREC_BF16, GPUQ_PREC_F16 };

enum gpuq_metric { GPUQ_METRIC_COSINE, GPUQ_METRIC_DOT, GPUQ_METRIC_L2 };

/* knn of rows queries [rows, dim] against an index: the k best per row,
 * highest score first for cosine and dot, lowest squared distance first for
 * l2; ties go to the lower index. */
struct gpuq_knn {
    const struct gpuq_model *index;
    enum gpuq_metric metric;
    int k;
    const float *q;
    int rows;
    int64_t *indices;   /* [rows, k] */
    float *scores;      /* [rows, k] */
};

/* layernorm over the last axis; row r uses parameter set row_set[r]: gamma
 * and beta rows [n_sets, cols] and eps[n_sets]. */
struct gpuq_layernorm {
    const float *x;
    int rows, cols;
    const int *row_set;
    const float *gamma, *beta, *eps;
    float *y;
};

/* One image of a batch: u8 [h, w, c] in, f32 [c, out_h, out_w] out,
 * (bilinear(x)/255 - mean[ch]) / std[ch]. */
struct gpuq_image {
    const unsigned char *src;
    int h, w, c;
    int out_h, out_w;
    const float *mean, *std;    /* [c] */
    float *dst;
};

struct gpuq_backend;

/* A backend may leave an op NULL: the worker then runs it on the CPU. */
struct gpuq_backend_i {
    const char *name;
    void (*destroy)(struct gpuq_backend *be);
    /* Prepares a loaded model (uploads weights). 0, or -1 with be->errstr. */
    int (*model_load)(struct gpuq_backend *be, struct gpuq_model *m);
    void (*model_free)(struct gpuq_backend *be, struct gpuq_model *m);
    /* n groups, each a strided batch of one shape (a grouped GEMM). */
    int (*matmul)(struct gpuq_backend *be, const struct gpuq_matmul *mm, int n);
    /* y [rows, d_out] = mlp(x [rows, d_in]). */
    int (*mlp)(struct gpuq_backend *be, const struct gpuq_model *m, const float *x, int rows,
               float *y);
    int (*knn)(struct gpuq_backend *be, const struct gpuq_knn *q);
    int (*softmax)(struct gpuq_backend *be, const float *x, int rows, int cols, float *y);
    int (*layernorm)(struct gpuq_backend *be, const struct gpuq_layernorm *ln);
    int (*image)(struct gpuq_backend *be, const struct gpuq_image *im, int n);
    /* Device memory in use, in bytes; NULL where there is no device. */
    int (*memory_used)(struct gpuq_backend *be, int64_t *bytes);
    /* Sizes device buffers once for batches of up to rows rows of the
     * loaded models; NULL where there is nothing to size. */
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
    void *ctx;
    char desc[128];     /* "cpu (OpenBLAS, 2 threads)", "cuda device 0: NVIDIA H200" */
    char errstr[128];   /* why the last call failed */
    enum gpuq_precision precision;  /* for mlp; set before models load */
};

/* kind is "auto", "cpu" or "cuda". auto picks CUDA when a device is usable.
 * Returns 0, or -1 with err (e.g. cuda asked for and unavailable). */
int gpuq_backend_create(struct gpuq_backend *be, const char *kind, int device, char *err,
                        size_t errlen);
void gpuq_backend_destroy(struct gpuq_backend *be);

int gpuq_backend_cpu_init(struct gpuq_backend *be);

/* Threads the CPU backend's BLAS uses (n > 0), for every CPU backend. */
void gpuq_backend_cpu_threads(int n);

/* Wraps be so that its ops fail as a failing device would, for tests:
 * spec "nomem-above=ROWS" (ops on more rows: out of memory) or
 * "lost-after=N" (the device is lost after N op calls). 0, or -1 with err. */
int gpuq_backend_fault(struct gpuq_backend *be, const char *spec, char *err, size_t errlen);

/* The ops of the table, in its order (the same as the protocol's ops). */
enum gpuq_kernel {
    GPUQ_K_MATMUL, GPUQ_K_MLP, GPUQ_K_KNN, GPUQ_K_SOFTMAX, GPUQ_K_LAYERNORM, GPUQ_K_IMAGE,
    GPUQ_K_COUNT
};

/* be against the CPU backend cpu, op by op, on the same fresh random
 * inputs (twin.c): small ones in milliseconds, or large ones (knn over
 * several index blocks up to k = 4096, long rows, mixed matmul shapes in
 * one grouped call, mlp in be's precision). */
struct gpuq_twin {
    double err[GPUQ_K_COUNT];   /* largest error seen */
    double tol[GPUQ_K_COUNT];
    unsigned failed;            /* bit k: op k disagrees, or failed to run */
    char why[160];              /* the first failure to run */
};
void gpuq_twin_check(struct gpuq_backend *be, struct gpuq_backend *cpu, int large,
                     struct gpuq_twin *out);
const char *gpuq_kernel_name(enum gpuq_kernel k);

/* The twin check's measure: largest |x - want| / (1 + |want|); or, scaled,
 * largest |x - want| over the largest |want| (for results whose small
 * elements come from cancellation). NaN counts as worst. */
double gpuq_twin_err(const float *x, const float *want, size_t n, int scaled);

/* "f32", "bf16", "f16" and back; -1 when unknown. */
const char *gpuq_precision_name(enum gpuq_precision p);
int gpuq_precision_from_name(const char *s);

/* Scalar activation, the reference both backends follow. */
float gpuq_act_apply(enum gpuq_act act, float x);

#ifdef __cplusplus
}
#endif
#endif
