/* mlp.c -- the mlp op: x [rows, d_in] through a loaded model; jobs on the
 * same model share a batch. */
#include <stdlib.h>

#include "kernels/cpu.h"
#include "models/family.h"
#include "models/mlp/mlp.h"
#include "ops/mlp.h"
#include "ops/op.h"
#include "ops/twin.h"

static int prepare(struct gpuq_task *t) {
    struct gpuq_job *job = &t->job;
    const struct gpuq_tensor *x = gpuq_job_input(job, "x");
    int d_in = gpuq_model_in_dim(t->model);
    if (x->ndim != 2 || x->shape[1] != d_in)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "mlp '%s' wants x [rows, %d]",
                             t->model->name, d_in);
    if (x->shape[0] > GPUQ_MAX_ELEMS / gpuq_model_mlp(t->model)->max_width)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "mlp: too many rows");
    t->rows = x->shape[0];
    return 0;
}

static size_t out_bytes(const struct gpuq_task *t) {
    return (size_t)t->rows * gpuq_model_out_dim(t->model) * sizeof(float);
}

static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    const struct gpuq_model *m = p[0].t->model;
    float *x = gpuq_ops_buf(s, 0, (size_t)rows * gpuq_model_in_dim(m) * sizeof(float));
    float *y = gpuq_ops_buf(s, 1, (size_t)rows * gpuq_model_out_dim(m) * sizeof(float));
    if (!x || !y) return GPUQ_BE_NOMEM;
    gpuq_ops_pack_rows(p, n, "x", gpuq_model_in_dim(m), x);
    s->out[0] = y;
    struct gpuq_mlp_args args = {m, x, (int)rows, y};
    return gpuq_backend_run(s->be, GPUQ_OP_MLP, rows, &args);
}

static void scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    gpuq_ops_scatter_rows(p, n, s->out[0], gpuq_model_out_dim(p[0].t->model));
}

static void finish(struct gpuq_task *t) {
    int64_t shape[2] = {t->rows, gpuq_model_out_dim(t->model)};
    gpuq_ops_set_output(t, 0, "y", GPUQ_DTYPE_F32, t->out, 2, shape);
}

/* ---- the CPU kernel: one GEMM per layer, bias and activation its post-ops ---- */

static int cpu(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_mlp_args *a = l->args;
    const struct gpuq_mlp *m = gpuq_model_mlp(a->m);
    size_t width = (size_t)(m->max_width > m->layers[0].d_in ? m->max_width : m->layers[0].d_in);
    float *s[GPUQ_CPU_SCRATCH] = {NULL};
    for (int i = 0; i < (be->precision == GPUQ_PREC_F32 ? 2 : 3); i++)
        if (!(s[i] = gpuq_cpu_scratch(be, i, (size_t)a->rows * width))) return GPUQ_BE_FAILED;
    const float *in = a->x;
    const uint16_t *in16 = NULL;    /* the input in bf16, where the last GEMM left it so */
    int bf16 = gpuq_cpu_bf16(be);
    for (int k = 0; k < m->n_layers; k++) {
        const struct gpuq_mlp_layer *L = &m->layers[k];
        int last = k == m->n_layers - 1;
        /* in bf16 into the spare where the GEMMs take bf16; else rounded in
         * place in scratch, into the spare otherwise */
        const uint16_t *w16 = bf16 ? L->w16 : NULL;
        if (w16 && !in16) {
            gpuq_cpu_gemm_to_bf16(in, (size_t)a->rows * L->d_in, (uint16_t *)s[2]);
            in16 = (const uint16_t *)s[2];
        } else if (!w16) {
            in = gpuq_cpu_round_rows(be->precision, in, (size_t)a->rows * L->d_in,
                                     in == s[0] || in == s[1] ? (float *)in : s[2]);
        }
        /* where the next GEMM takes bf16, this one's output leaves it rounded so */
        int out16 = !last && bf16 && m->layers[k + 1].w16;
        float *out = last ? a->y : s[k & 1];
        struct gpuq_cpu_gemm_args g = {
            .batch = 1, .m = a->rows, .n = L->d_out, .k = L->d_in,
            .type = w16 ? GPUQ_CPU_GEMM_BF16 : GPUQ_CPU_GEMM_F32, .a = w16 ? (const void *)in16 : in,
            .a_row = L->d_in, .a_col = 1, .b = w16 ? (const void *)w16 : L->w, .b_row = 1, .b_col = L->d_in,
            .c = out, .c_row = L->d_out, .c_col = 1, .c_type = out16 ? GPUQ_CPU_GEMM_BF16 : GPUQ_CPU_GEMM_F32,
            .alpha = 1.0f, .bias = L->b, .act = last ? GPUQ_ACT_NONE : m->act};
        int rc = gpuq_cpu_gemm(be, &g);
        if (rc) return rc;
        in = out, in16 = out16 ? (const uint16_t *)out : NULL;
    }
    return 0;
}

/* ---- twin: a two-layer gelu mlp in the backend's precision ---- */

static void twin(struct gpuq_twin_run *r) {
    int widths[3] = {32, 64, 16}, rows = 8;
    if (r->large) widths[0] = 256, widths[1] = 512, widths[2] = 128, rows = 100;
    static const struct gpuq_family arch = {.name = "twin", .arch = GPUQ_ARCH_MLP};
    struct gpuq_mlp_layer layers[2];
    struct gpuq_mlp net = {.n_layers = 2, .layers = layers, .act = GPUQ_ACT_GELU, .max_width = widths[1]};
    struct gpuq_model m = {.name = "twin", .family = &arch, .impl = &net};
    for (int l = 0; l < 2; l++) {
        layers[l] = (struct gpuq_mlp_layer){widths[l], widths[l + 1],
                                            gpuq_twin_floats(r, (size_t)widths[l] * widths[l + 1]),
                                            gpuq_twin_floats(r, (size_t)widths[l + 1]), NULL};
    }
    float *x = gpuq_twin_floats(r, (size_t)rows * widths[0]);
    size_t ny = (size_t)rows * widths[2];
    float *y = calloc(ny, sizeof(float)), *want = calloc(ny, sizeof(float));
    int scaled = gpuq_twin_precision(r, 1e-2, 2e-3);
    if (x && y && want && layers[0].w && layers[0].b && layers[1].w && layers[1].b &&
        gpuq_twin_load(r, &m) == 0) {
        struct gpuq_mlp_args on_be = {&m, x, rows, y}, on_cpu = {&m, x, rows, want};
        if (gpuq_twin_both(r, rows, &on_be, &on_cpu) == 0) gpuq_twin_note(r, gpuq_twin_err(y, want, ny, scaled));
        r->be->iface->model_free(r->be, &m);
    }
    for (int l = 0; l < 2; l++) free(layers[l].w), free(layers[l].b), free(layers[l].w16);
    free(x), free(y), free(want);
}

static const char *const inputs[] = {"x", NULL};

const struct gpuq_op_desc gpuq_op_mlp = {
    .inputs = inputs, .required = 1, .needs = 1 + GPUQ_CAP_MLP,
    .prepare = prepare, .out_bytes = out_bytes, .pack = pack, .scatter = scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = cpu, [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_mlp)},
    .reserve = {[GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_mlp_reserve)},
    .twin = twin, .tol = 1e-4,
};
