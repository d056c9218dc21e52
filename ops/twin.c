/* twin.c -- the twin check's driver: every op the backend runs, against
 * the CPU, with the inputs and tolerance the op's descriptor gives. */
#include "ops/twin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

float gpuq_twin_rnd(struct gpuq_twin_run *r) {
    r->seed = r->seed * 1664525u + 1013904223u;
    return (float)(r->seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

float *gpuq_twin_floats(struct gpuq_twin_run *r, size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = gpuq_twin_rnd(r);
    return p;
}

double gpuq_twin_err(const float *x, const float *want, size_t n, int scaled) {
    double worst = 0, top = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - want[i]) / (scaled ? 1.0 : 1.0 + fabs(want[i]));
        if (!(d <= worst)) worst = d;
        if (fabs(want[i]) > top) top = fabs(want[i]);
    }
    return scaled && top > 0 ? worst / top : worst;
}

int gpuq_twin_ran(struct gpuq_twin_run *r, int rc) {
    unsigned bit = 1u << r->op;
    if (rc == 0 && r->be->iface->sync) rc = r->be->iface->sync(r->be, 0);
    if (rc != 0 && !(r->out->failed & bit))
        snprintf(r->out->why, sizeof(r->out->why), "%s: %s", gpuq_op_name(r->op), r->be->errstr);
    if (rc != 0) r->out->failed |= bit;
    return rc;
}

int gpuq_twin_both(struct gpuq_twin_run *r, int64_t rows, const void *be_args,
                   const void *cpu_args) {
    if (gpuq_twin_ran(r, gpuq_backend_run(r->be, r->op, rows, be_args)) != 0) return -1;
    return gpuq_backend_run(r->cpu, r->op, rows, cpu_args) == 0 ? 0 : -1;
}

void gpuq_twin_note(struct gpuq_twin_run *r, double err) {
    if (!(err <= r->out->err[r->op])) r->out->err[r->op] = err;
    if (!(err <= r->out->tol[r->op])) r->out->failed |= 1u << r->op;
}

int gpuq_twin_precision(struct gpuq_twin_run *r, double bf16_tol, double f16_tol) {
    if (r->be->precision == GPUQ_PREC_BF16) r->out->tol[r->op] = bf16_tol;
    if (r->be->precision == GPUQ_PREC_F16) r->out->tol[r->op] = f16_tol;
    return r->be->precision != GPUQ_PREC_F32;
}

int gpuq_twin_load(struct gpuq_twin_run *r, struct gpuq_model *m) {
    if (r->cpu->iface->model_load(r->cpu, m) != 0) {
        if (!(r->out->failed & 1u << r->op))
            snprintf(r->out->why, sizeof(r->out->why), "%s: cpu: %s", gpuq_op_name(r->op), r->cpu->errstr);
        r->out->failed |= 1u << r->op;
        return -1;
    }
    return gpuq_twin_ran(r, r->be->iface->model_load(r->be, m));
}

void gpuq_twin_check(struct gpuq_backend *be, struct gpuq_backend *cpu, int large,
                     struct gpuq_twin *out) {
    memset(out, 0, sizeof(*out));
    struct gpuq_twin_run r = {be, cpu, out, 0, 2024, large};
    enum gpuq_precision saved = cpu->precision;
    cpu->precision = be->precision;     /* the CPU computes as the backend does */
    for (int op = 0; op < GPUQ_OP_COUNT; op++) {
        out->tol[op] = gpuq_op_table[op]->tol;
        r.op = (enum gpuq_op)op;
        if (be->kernel[op]) gpuq_op_table[op]->twin(&r);
    }
    cpu->precision = saved;
}
