/* common.c -- packing and output helpers the ops share. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/op.h"

void *gpuq_ops_buf(struct gpuq_ops_slot *s, int i, size_t bytes) {
    if (s->be->iface->staging) {
        void *p = s->be->iface->staging(s->be, s->index, i, bytes);
        if (!p) snprintf(s->be->errstr, sizeof(s->be->errstr), "out of pinned host memory");
        return p;
    }
    if (bytes > s->cap[i]) {
        if (bytes < 2 * s->cap[i]) bytes = 2 * s->cap[i];
        void *p = realloc(s->buf[i], bytes);
        if (!p) {
            snprintf(s->be->errstr, sizeof(s->be->errstr), "out of host memory packing a batch");
            return NULL;
        }
        s->buf[i] = p;
        s->cap[i] = bytes;
    }
    return s->buf[i];
}

void gpuq_ops_set_output(struct gpuq_task *t, int i, const char *name, enum gpuq_dtype dt,
                         void *data, int ndim, const int64_t *shape) {
    struct gpuq_tensor *y = &t->outputs[i].t;
    t->outputs[i].name = name;
    y->dtype = dt;
    y->ndim = ndim;
    memcpy(y->shape, shape, (size_t)ndim * sizeof(int64_t));
    y->data = data;
    y->nbytes = (size_t)gpuq_tensor_numel(y) * gpuq_dtype_size(dt);
    t->outputs[i].texts = NULL;
    if (i + 1 > t->n_outputs) t->n_outputs = i + 1;
}

void gpuq_ops_set_texts(struct gpuq_task *t, int i, const char *name, const struct gpuq_str *texts, int64_t n) {
    t->outputs[i] = (struct gpuq_output){.name = name, .texts = texts, .n_texts = n};
    if (i + 1 > t->n_outputs) t->n_outputs = i + 1;
}

float *gpuq_ops_pack_rows(const struct gpuq_piece *p, int n, const char *name, int cols,
                          float *dst) {
    for (int i = 0; i < n; i++) {
        const struct gpuq_tensor *x = gpuq_job_input(&p[i].t->job, name);
        struct gpuq_tensor part = {x->dtype, 2, {p[i].rows, cols}, NULL, 0};
        part.data = (const char *)x->data + (size_t)p[i].row0 * cols * gpuq_dtype_size(x->dtype);
        gpuq_tensor_to_f32(&part, dst);
        dst += (size_t)p[i].rows * cols;
    }
    return dst;
}

void gpuq_ops_scatter_rows(const struct gpuq_piece *p, int n, const float *y, int cols) {
    for (int i = 0; i < n; i++) {
        size_t words = (size_t)p[i].rows * cols;
        float *out = p[i].t->out;
        memcpy(out + (size_t)p[i].row0 * cols, y, words * sizeof(float));
        y += words;
    }
}

int gpuq_ops_rows_of(struct gpuq_task *t, int *cols) {
    const struct gpuq_tensor *x = gpuq_job_input(&t->job, "x");
    if (x->ndim != 2)
        return gpuq_job_fail(&t->job, GPUQ_ERR_SHAPE_MISMATCH, "%s wants x [rows, cols]",
                             gpuq_op_name(t->job.op));
    t->rows = x->shape[0];
    *cols = (int)x->shape[1];
    return 0;
}

void gpuq_ops_finish_rows(struct gpuq_task *t, int cols) {
    int64_t shape[2] = {t->rows, cols};
    gpuq_ops_set_output(t, 0, "y", GPUQ_DTYPE_F32, t->out, 2, shape);
}

int gpuq_ops_finite(struct gpuq_task *t, const char *op, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(y[i])) {
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "%s: the model's output is not finite: an activation went "
                          "past the range of the worker's precision (f16 ends at 65504; bf16 and f32 reach 3e38)", op);
            return 0;
        }
    return 1;
}
