/* layernorm.c -- the layernorm op: x [rows, cols], optional gamma and beta
 * [cols], param eps; jobs of the same cols share a batch, each piece with
 * its own parameter set. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "ops/layernorm.h"
#include "ops/op.h"
#include "ops/twin.h"

struct params {
    int cols;
    float eps;
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "layernorm params fit a task");

static const struct params *P(const struct gpuq_task *t) { return gpuq_task_params(t); }

static int prepare(struct gpuq_task *t) {
    struct gpuq_job *job = &t->job;
    struct params *p = gpuq_task_params(t);
    if (gpuq_ops_rows_of(t, &p->cols) != 0) return -1;
    const char *vec[] = {"gamma", "beta"};
    for (int i = 0; i < 2; i++) {
        const struct gpuq_tensor *v = gpuq_job_input(job, vec[i]);
        if (v && (v->ndim != 1 || v->shape[0] != p->cols))
            return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "layernorm: %s must be [%d]", vec[i],
                                 p->cols);
    }
    double eps = 1e-5;
    if (gpuq_job_param_f64(job, "eps", &eps) < 0) return -1;
    if (!(eps >= 0) || !isfinite(eps))
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "layernorm: eps must be >= 0");
    p->eps = (float)eps;
    return 0;
}

static size_t out_bytes(const struct gpuq_task *t) {
    return (size_t)t->rows * P(t)->cols * sizeof(float);
}

static int compare(const struct gpuq_task *a, const struct gpuq_task *b) {
    return P(a)->cols - P(b)->cols;
}

/* Each piece is one parameter set: its job's gamma, beta and eps. */
static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    int cols = P(p[0].t)->cols;
    size_t bytes = (size_t)rows * cols * sizeof(float);
    float *x = gpuq_ops_buf(s, 0, bytes), *y = gpuq_ops_buf(s, 1, bytes);
    float *gb = gpuq_ops_buf(s, 2, (size_t)n * (2 * cols + 1) * sizeof(float));
    int *row_set = gpuq_ops_buf(s, 3, (size_t)rows * sizeof(int));
    if (!x || !y || !gb || !row_set) return GPUQ_BE_NOMEM;
    float *gamma = gb, *beta = gb + (size_t)n * cols, *eps = beta + (size_t)n * cols;
    gpuq_ops_pack_rows(p, n, "x", cols, x);
    int64_t r = 0;
    for (int i = 0; i < n; i++) {
        struct gpuq_job *job = &p[i].t->job;
        const struct gpuq_tensor *g = gpuq_job_input(job, "gamma"), *b = gpuq_job_input(job, "beta");
        float *gi = gamma + (size_t)i * cols, *bi = beta + (size_t)i * cols;
        if (g) gpuq_tensor_to_f32(g, gi);
        else for (int j = 0; j < cols; j++) gi[j] = 1.0f;
        if (b) gpuq_tensor_to_f32(b, bi);
        else memset(bi, 0, (size_t)cols * sizeof(float));
        eps[i] = P(p[i].t)->eps;
        for (int64_t j = 0; j < p[i].rows; j++) row_set[r++] = i;
    }
    struct gpuq_layernorm ln = {x, (int)rows, cols, row_set, gamma, beta, eps, y};
    s->out[0] = y;
    return gpuq_backend_run(s->be, GPUQ_OP_LAYERNORM, rows, &ln);
}

static void scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    gpuq_ops_scatter_rows(p, n, s->out[0], P(p[0].t)->cols);
}

static void finish(struct gpuq_task *t) { gpuq_ops_finish_rows(t, P(t)->cols); }

/* ---- the CPU kernel, row by row ---- */

static int cpu(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_layernorm *ln = l->args;
    (void)be;
    int cols = ln->cols;
    for (int r = 0; r < ln->rows; r++) {
        const float *in = ln->x + (size_t)r * cols;
        float *out = ln->y + (size_t)r * cols;
        int set = ln->row_set[r];
        const float *g = ln->gamma + (size_t)set * cols, *b = ln->beta + (size_t)set * cols;
        gpuq_cpu_layernorm_row(in, out, cols, g, b, ln->eps[set]);
    }
    return 0;
}

/* ---- twin: long rows, three parameter sets, a large and an offset row ---- */

static void twin(struct gpuq_twin_run *r) {
    int rows = r->large ? 17 : 3, cols = r->large ? 1000 : 100, sets[17];
    size_t n = (size_t)rows * cols;
    float *x = gpuq_twin_floats(r, n), *g = gpuq_twin_floats(r, 3 * (size_t)cols);
    float *b = gpuq_twin_floats(r, 3 * (size_t)cols), eps[3] = {1e-5f, 1e-3f, 0.1f};
    float *y = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    if (x && g && b && y && want) {
        for (int j = 0; j < cols; j++) x[j] *= 50.0f;      /* a row of large values */
        /* a row whose mean is 1e3 times its spread: f32 sums drift by 1e-4 */
        for (int j = 0; j < cols; j++) x[cols + j] += 1000.0f;
        for (int i = 0; i < rows; i++) sets[i] = i % 3;
        struct gpuq_layernorm on_be = {x, rows, cols, sets, g, b, eps, y}, on_cpu = on_be;
        on_cpu.y = want;
        if (gpuq_twin_both(r, rows, &on_be, &on_cpu) == 0) gpuq_twin_note(r, gpuq_twin_err(y, want, n, 0));
    }
    free(x), free(g), free(b), free(y), free(want);
}

static const char *const inputs[] = {"x", "gamma", "beta", NULL};
static const char *const params[] = {"eps", NULL};

const struct gpuq_op_desc gpuq_op_layernorm = {
    .inputs = inputs, .params = params, .required = 1,
    .prepare = prepare, .out_bytes = out_bytes, .compare = compare, .pack = pack,
    .scatter = scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_layernorm)},
    .twin = twin, .tol = 1e-4,
};
