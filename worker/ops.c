/* ops.c -- op validation and batch execution. */
#include "worker/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A tensor larger than this many elements cannot be handed to BLAS (int). */
#define MAX_ELEMS ((int64_t)INT32_MAX)

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The job's inputs must be exactly `names` (NULL-terminated), all floats. */
static int want_inputs(struct gpuq_job *job, const char *const *names, int required) {
    int n = 0;
    for (; names[n]; n++)
        if (n < required && !gpuq_job_input(job, names[n]))
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s needs input '%s'",
                                 gpuq_op_name(job->op), names[n]);
    for (int i = 0; i < job->n_inputs; i++) {
        const struct gpuq_input *in = &job->inputs[i];
        int known = 0;
        for (int k = 0; k < n; k++)
            known |= strlen(names[k]) == in->name.len && !memcmp(names[k], in->name.ptr, in->name.len);
        if (!known)
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s takes no input '%.*s'",
                                 gpuq_op_name(job->op), (int)(in->name.len > 32 ? 32 : in->name.len),
                                 in->name.ptr);
        if (!gpuq_dtype_is_float(in->t.dtype))
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s: input '%.*s' must be f32, f16, "
                                 "bf16 or f64", gpuq_op_name(job->op),
                                 (int)(in->name.len > 32 ? 32 : in->name.len), in->name.ptr);
        for (int d = 0; d < in->t.ndim; d++)
            if (in->t.shape[d] == 0)
                return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s' is empty",
                                     (int)(in->name.len > 32 ? 32 : in->name.len), in->name.ptr);
        if (gpuq_tensor_numel(&in->t) > MAX_ELEMS)
            return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "input '%.*s' has more than %lld "
                                 "elements", (int)(in->name.len > 32 ? 32 : in->name.len),
                                 in->name.ptr, (long long)MAX_ELEMS);
    }
    return 0;
}

static int prepare_matmul(struct gpuq_task *t) {
    static const char *const names[] = {"a", "b", NULL};
    struct gpuq_job *job = &t->job;
    if (want_inputs(job, names, 2) != 0) return -1;
    const struct gpuq_tensor *a = gpuq_job_input(job, "a"), *b = gpuq_job_input(job, "b");
    double alpha = 1.0;
    int ta = 0, tb = 0;
    if (gpuq_job_param_f64(job, "alpha", &alpha) < 0 || gpuq_job_param_bool(job, "trans_a", &ta) < 0 ||
        gpuq_job_param_bool(job, "trans_b", &tb) < 0)
        return -1;
    if ((a->ndim != 2 && a->ndim != 3) || (b->ndim != 2 && b->ndim != 3))
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "matmul wants a [m,k] or [b,m,k] and "
                             "b [k,n] or [b,k,n]");
    int oa = a->ndim - 2, ob = b->ndim - 2;
    int64_t m = a->shape[oa + (ta ? 1 : 0)], ka = a->shape[oa + (ta ? 0 : 1)];
    int64_t kb = b->shape[ob + (tb ? 1 : 0)], n = b->shape[ob + (tb ? 0 : 1)];
    int64_t ca = oa ? a->shape[0] : 1, cb = ob ? b->shape[0] : 1;
    if (ka != kb)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "matmul: a has k=%lld, b has k=%lld",
                             (long long)ka, (long long)kb);
    if (oa && ob && ca != cb)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "matmul: batch of a is %lld, of b %lld",
                             (long long)ca, (long long)cb);
    int64_t count = ca > cb ? ca : cb;
    if (count * m * n > MAX_ELEMS || count * m > MAX_ELEMS)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "matmul output has more than %lld elements",
                             (long long)MAX_ELEMS);
    t->mm = (struct gpuq_matmul){.trans_a = ta, .trans_b = tb, .m = (int)m, .n = (int)n,
                                 .k = (int)ka, .count = (int)count, .alpha = (float)alpha};
    t->a_count = (int)ca;
    t->b_count = (int)cb;
    t->batched = oa || ob;
    t->rows = (int)(count * m);
    t->out_floats = (size_t)(count * m * n);
    return 0;
}

static int prepare_mlp(struct gpuq_ops *o, struct gpuq_task *t) {
    static const char *const names[] = {"x", NULL};
    struct gpuq_job *job = &t->job;
    if (!job->model.ptr)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "mlp needs a model");
    for (int i = 0; i < o->n_models; i++)
        if (strlen(o->models[i].name) == job->model.len &&
            memcmp(o->models[i].name, job->model.ptr, job->model.len) == 0 &&
            o->models[i].kind == GPUQ_MODEL_MLP)
            t->model = &o->models[i];
    if (!t->model)
        return gpuq_job_fail(job, GPUQ_ERR_UNKNOWN_MODEL, "no mlp model '%.*s' on this worker",
                             (int)(job->model.len > 64 ? 64 : job->model.len), job->model.ptr);
    if (want_inputs(job, names, 1) != 0) return -1;
    const struct gpuq_tensor *x = gpuq_job_input(job, "x");
    int d_in = gpuq_model_in_dim(t->model);
    if (x->ndim != 2 || x->shape[1] != d_in)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "mlp '%s' wants x [rows, %d]",
                             t->model->name, d_in);
    int64_t out = x->shape[0] * gpuq_model_out_dim(t->model);
    if (x->shape[0] > MAX_ELEMS / t->model->max_width || out > MAX_ELEMS)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "mlp: too many rows");
    t->rows = (int)x->shape[0];
    t->out_floats = (size_t)out;
    return 0;
}

int gpuq_ops_prepare(struct gpuq_ops *o, struct gpuq_task *t) {
    switch (t->job.op) {
    case GPUQ_OP_MATMUL: return prepare_matmul(t);
    case GPUQ_OP_MLP: return prepare_mlp(o, t);
    default:
        return gpuq_job_fail(&t->job, GPUQ_ERR_UNKNOWN_OP, "op %s is not served by this worker "
                             "version", gpuq_op_name(t->job.op));
    }
}

#define CMP(x, y) do { if ((x) != (y)) return (x) < (y) ? -1 : 1; } while (0)

int gpuq_ops_compare(const struct gpuq_task *a, const struct gpuq_task *b) {
    CMP(a->job.op, b->job.op);
    if (a->job.op == GPUQ_OP_MLP) {
        CMP((uintptr_t)a->model, (uintptr_t)b->model);
    } else if (a->job.op == GPUQ_OP_MATMUL) {
        CMP(a->mm.m, b->mm.m);
        CMP(a->mm.n, b->mm.n);
        CMP(a->mm.k, b->mm.k);
        CMP(a->mm.trans_a, b->mm.trans_a);
        CMP(a->mm.trans_b, b->mm.trans_b);
        CMP(a->mm.alpha, b->mm.alpha);
    }
    return 0;
}

static float *pack_buffer(struct gpuq_ops *o, int i, size_t floats) {
    if (floats > o->pack_cap[i]) {
        float *p = realloc(o->pack[i], floats * sizeof(float));
        if (!p) return NULL;
        o->pack[i] = p;
        o->pack_cap[i] = floats;
    }
    return o->pack[i];
}

/* Copies count matrices of one input in as f32, repeating a single one. */
static float *pack_matrices(float *dst, const struct gpuq_tensor *t, int have, int want,
                            size_t each) {
    gpuq_tensor_to_f32(t, dst);
    for (int i = have; i < want; i++) memcpy(dst + (size_t)i * each, dst, each * sizeof(float));
    return dst + (size_t)want * each;
}

static int run_matmul(struct gpuq_ops *o, struct gpuq_task **tasks, int n, float *out) {
    struct gpuq_matmul mm = tasks[0]->mm;
    size_t na = (size_t)mm.m * mm.k, nb = (size_t)mm.k * mm.n;
    int total = 0;
    for (int i = 0; i < n; i++) total += tasks[i]->mm.count;
    float *a = pack_buffer(o, 0, na * total), *b = pack_buffer(o, 1, nb * total);
    if (!a || !b) {
        snprintf(o->be->errstr, sizeof(o->be->errstr), "out of host memory packing a batch");
        return -1;
    }
    mm.a = a;
    mm.b = b;
    for (int i = 0; i < n; i++) {
        struct gpuq_task *t = tasks[i];
        a = pack_matrices(a, gpuq_job_input(&t->job, "a"), t->a_count, t->mm.count, na);
        b = pack_matrices(b, gpuq_job_input(&t->job, "b"), t->b_count, t->mm.count, nb);
    }
    mm.count = total;
    mm.stride_a = (int64_t)na;
    mm.stride_b = (int64_t)nb;
    mm.c = out;
    return o->be->iface->matmul(o->be, &mm);
}

static int run_mlp(struct gpuq_ops *o, struct gpuq_task **tasks, int n, int rows, float *out) {
    const struct gpuq_model *m = tasks[0]->model;
    float *x = pack_buffer(o, 0, (size_t)rows * gpuq_model_in_dim(m)), *p = x;
    if (!x) {
        snprintf(o->be->errstr, sizeof(o->be->errstr), "out of host memory packing a batch");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const struct gpuq_tensor *t = gpuq_job_input(&tasks[i]->job, "x");
        gpuq_tensor_to_f32(t, p);
        p += gpuq_tensor_numel(t);
    }
    return o->be->iface->mlp(o->be, m, x, rows, out);
}

static void set_output(struct gpuq_task *t, const char *name, float *data) {
    struct gpuq_tensor *y = &t->outputs[0].t;
    t->outputs[0].name = name;
    t->n_outputs = 1;
    y->dtype = GPUQ_DTYPE_F32;
    y->data = data;
    y->nbytes = t->out_floats * sizeof(float);
    if (t->job.op == GPUQ_OP_MATMUL) {
        y->ndim = t->batched ? 3 : 2;
        int64_t shape[3] = {t->mm.count, t->mm.m, t->mm.n};
        memcpy(y->shape, t->batched ? shape : shape + 1, (size_t)y->ndim * sizeof(int64_t));
    } else {
        y->ndim = 2;
        y->shape[0] = t->rows;
        y->shape[1] = gpuq_model_out_dim(t->model);
    }
}

int gpuq_ops_run(struct gpuq_ops *o, struct gpuq_task **tasks, int n, float *out) {
    int rows = 0, rc;
    for (int i = 0; i < n; i++) rows += tasks[i]->rows;
    int64_t start = now_us();
    if (tasks[0]->job.op == GPUQ_OP_MATMUL) rc = run_matmul(o, tasks, n, out);
    else rc = run_mlp(o, tasks, n, rows, out);
    int64_t compute = now_us() - start;
    float *p = out;
    for (int i = 0; i < n; i++) {
        struct gpuq_task *t = tasks[i];
        t->queue_us = start - t->entry.enqueued_ms * 1000;
        t->compute_us = compute;
        t->batch_rows = rows;
        if (rc != 0)
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "%s backend: %s", o->be->iface->name,
                          o->be->errstr);
        else
            set_output(t, t->job.op == GPUQ_OP_MATMUL ? "c" : "y", p);
        p += t->out_floats;
    }
    return rc;
}

void gpuq_ops_free(struct gpuq_ops *o) {
    if (!o) return;
    free(o->pack[0]);
    free(o->pack[1]);
    o->pack[0] = o->pack[1] = NULL;
    o->pack_cap[0] = o->pack_cap[1] = 0;
}
