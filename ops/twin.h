/* twin.h -- a backend against its CPU twin, op by op, on the same fresh
 * random inputs (each op's descriptor makes them: ops/<op>.c). A worker
 * runs the small set at start and serves an op that disagrees on the
 * CPU; the tests run the large set (knn over several index blocks up to
 * k = 4096, long rows, mixed matmul shapes in one grouped call). The CPU
 * computes in the backend's precision meanwhile. */
#ifndef GPUQ_TWIN_H
#define GPUQ_TWIN_H

#include <stddef.h>

#include "kernels/backend.h"

struct gpuq_twin {
    double err[GPUQ_OP_COUNT];  /* largest error seen */
    double tol[GPUQ_OP_COUNT];
    unsigned failed;            /* bit op: op disagrees, or failed to run */
    char why[160];              /* the first failure to run */
};

/* Checks every op be has a kernel for against cpu. */
void gpuq_twin_check(struct gpuq_backend *be, struct gpuq_backend *cpu, int large,
                     struct gpuq_twin *out);

/* The twin check's measure: largest |x - want| / (1 + |want|); or, scaled,
 * largest |x - want| over the largest |want| (for results whose small
 * elements come from cancellation). NaN counts as worst. */
double gpuq_twin_err(const float *x, const float *want, size_t n, int scaled);

/* ---- for the ops' twin functions ---- */

struct gpuq_twin_run {
    struct gpuq_backend *be, *cpu;
    struct gpuq_twin *out;
    enum gpuq_op op;            /* the op being checked */
    unsigned seed;
    int large;                  /* the large set */
};

/* Uniform in [-1, 1); deterministic, so a failure can be replayed. */
float gpuq_twin_rnd(struct gpuq_twin_run *r);
/* n of them, malloc'd; NULL when out of memory. */
float *gpuq_twin_floats(struct gpuq_twin_run *r, size_t n);

/* Runs the op on r->be (then syncs) with be_args, and on the CPU with
 * cpu_args: 0 when both ran; a failure of r->be fails the op. */
int gpuq_twin_both(struct gpuq_twin_run *r, int64_t rows, const void *be_args,
                   const void *cpu_args);

/* Notes rc from a call of r->be (its sync included): nonzero fails the op. */
int gpuq_twin_ran(struct gpuq_twin_run *r, int rc);

/* Notes an error measured for the op. */
void gpuq_twin_note(struct gpuq_twin_run *r, double err);

/* For an op whose GEMMs follow the backend's precision: with bf16 or f16
 * its tolerance becomes bf16_tol or f16_tol (a rounding that falls the
 * other way on the two sides moves a GEMM input by a step). Returns
 * whether the precision is reduced. */
int gpuq_twin_precision(struct gpuq_twin_run *r, double bf16_tol, double f16_tol);

/* Prepares model m on the CPU, which rounds its weights in place to the
 * precision, then on r->be from those weights (a failure fails the op).
 * 0 when both did; the caller frees r->be's copy (model_free). */
int gpuq_twin_load(struct gpuq_twin_run *r, struct gpuq_model *m);

#endif
