/* softmax.c -- the softmax op: x [rows, cols] over its last axis; jobs of
 * the same cols share a batch. */
#include <math.h>
#include <stdlib.h>

#include "ops/op.h"
#include "ops/softmax.h"
#include "ops/twin.h"

struct params {
    int cols;
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "softmax params fit a task");

static int cols_of(const struct gpuq_task *t) { return ((const struct params *)gpuq_task_params(t))->cols; }

static int prepare(struct gpuq_task *t) {
    struct params *p = gpuq_task_params(t);
    return gpuq_ops_rows_of(t, &p->cols);
}

static size_t out_bytes(const struct gpuq_task *t) {
    return (size_t)t->rows * cols_of(t) * sizeof(float);
}

static int compare(const struct gpuq_task *a, const struct gpuq_task *b) {
    return cols_of(a) - cols_of(b);
}

static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    int cols = cols_of(p[0].t);
    size_t bytes = (size_t)rows * cols * sizeof(float);
    float *x = gpuq_ops_buf(s, 0, bytes), *y = gpuq_ops_buf(s, 1, bytes);
    if (!x || !y) return GPUQ_BE_NOMEM;
    gpuq_ops_pack_rows(p, n, "x", cols, x);
    s->out[0] = y;
    struct gpuq_softmax args = {x, (int)rows, cols, y};
    return gpuq_backend_run(s->be, GPUQ_OP_SOFTMAX, rows, &args);
}

static void scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    gpuq_ops_scatter_rows(p, n, s->out[0], cols_of(p[0].t));
}

static void finish(struct gpuq_task *t) { gpuq_ops_finish_rows(t, cols_of(t)); }

/* ---- the CPU kernel, row by row ---- */

static int cpu(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_softmax *a = l->args;
    (void)be;
    for (int r = 0; r < a->rows; r++) {
        const float *in = a->x + (size_t)r * a->cols;
        float *out = a->y + (size_t)r * a->cols, mx = -INFINITY;
        double sum = 0;
        for (int j = 0; j < a->cols; j++) mx = fmaxf(mx, in[j]);
        for (int j = 0; j < a->cols; j++) sum += out[j] = expf(in[j] - mx);
        for (int j = 0; j < a->cols; j++) out[j] = (float)(out[j] / sum);
    }
    return 0;
}

/* ---- twin: long rows, one of large logits ---- */

static void twin(struct gpuq_twin_run *r) {
    int rows = r->large ? 17 : 3, cols = r->large ? 1000 : 100;
    size_t n = (size_t)rows * cols;
    float *x = gpuq_twin_floats(r, n), *y = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    if (x && y && want) {
        for (int j = 0; j < cols; j++) x[j] *= 50.0f;
        struct gpuq_softmax on_be = {x, rows, cols, y}, on_cpu = {x, rows, cols, want};
        if (gpuq_twin_both(r, rows, &on_be, &on_cpu) == 0) gpuq_twin_note(r, gpuq_twin_err(y, want, n, 0));
    }
    free(x), free(y), free(want);
}

static const char *const inputs[] = {"x", NULL};

const struct gpuq_op_desc gpuq_op_softmax = {
    .inputs = inputs, .required = 1,
    .prepare = prepare, .out_bytes = out_bytes, .compare = compare, .pack = pack,
    .scatter = scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_softmax)},
    .twin = twin, .tol = 1e-5,
};
