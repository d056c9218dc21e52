/* cpu.c -- the CPU backend: OpenBLAS GEMMs and plain C loops. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu_ops.h"
#include "kernels/tensor.h"

struct cpu_ctx {
    float *scratch[3];      /* mlp activations (the third: a rounded input), grown */
    size_t scratch_cap[3];  /* floats in each */
};

static void cpu_destroy(struct gpuq_backend *be) {
    struct cpu_ctx *c = be->ctx;
    if (!c) return;
    for (int i = 0; i < 3; i++) free(c->scratch[i]);
    free(c);
    be->ctx = NULL;
}

static float round_to(enum gpuq_precision p, float x) {
    return p == GPUQ_PREC_BF16 ? gpuq_round_bf16(x) : p == GPUQ_PREC_F16 ? gpuq_round_f16(x) : x;
}

/* Host weights are used in place; with reduced precision they are first
 * rounded to what the GEMMs will see, as the CUDA backend's copies are. */
static int cpu_model_load(struct gpuq_backend *be, struct gpuq_model *m) {
    if (m->kind != GPUQ_MODEL_MLP || be->precision == GPUQ_PREC_F32) return 0;
    for (int l = 0; l < m->n_layers; l++) {
        const struct gpuq_mlp_layer *L = &m->layers[l];
        for (size_t i = 0; i < (size_t)L->d_in * L->d_out; i++)
            if (!isfinite(L->w[i] = round_to(be->precision, L->w[i]))) {
                snprintf(be->errstr, sizeof(be->errstr), "layer %d has a weight beyond %s's range",
                         l, gpuq_precision_name(be->precision));
                return -1;
            }
    }
    return 0;
}

static void cpu_model_free(struct gpuq_backend *be, struct gpuq_model *m) { (void)be, (void)m; }

static int cpu_matmul(struct gpuq_backend *be, const struct gpuq_matmul *groups, int n) {
    (void)be;
    for (const struct gpuq_matmul *mm = groups; mm < groups + n; mm++) {
        int lda = mm->trans_a ? mm->m : mm->k, ldb = mm->trans_b ? mm->k : mm->n;
        for (int i = 0; i < mm->count; i++)
            cblas_sgemm(CblasRowMajor, mm->trans_a ? CblasTrans : CblasNoTrans,
                        mm->trans_b ? CblasTrans : CblasNoTrans, mm->m, mm->n, mm->k, mm->alpha,
                        mm->a + i * mm->stride_a, lda, mm->b + i * mm->stride_b, ldb, 0.0f,
                        mm->c + (int64_t)i * mm->m * mm->n, mm->n);
    }
    return 0;
}

/* Grows scratch buffer i; the steady state allocates nothing. */
static int ensure_scratch(struct gpuq_backend *be, struct cpu_ctx *c, int i, size_t floats) {
    if (floats <= c->scratch_cap[i]) return 0;
    if (floats < 2 * c->scratch_cap[i]) floats = 2 * c->scratch_cap[i];
    float *p = realloc(c->scratch[i], floats * sizeof(float));
    if (!p) {
        snprintf(be->errstr, sizeof(be->errstr), "out of host memory for %zu floats", floats);
        return -1;
    }
    c->scratch[i] = p;
    c->scratch_cap[i] = floats;
    return 0;
}

float *gpuq_cpu_scratch(struct gpuq_backend *be, int i, size_t floats) {
    struct cpu_ctx *c = be->ctx;
    return ensure_scratch(be, c, i, floats) == 0 ? c->scratch[i] : NULL;
}

/* y = act(y + bias), row by row; the activation is chosen once, outside the
 * loop, so the common ones vectorize. */
static void bias_act(float *y, const float *bias, int rows, int cols, enum gpuq_act act) {
    for (int r = 0; r < rows; r++) {
        float *row = y + (size_t)r * cols;
        switch (act) {
        case GPUQ_ACT_NONE:
            for (int j = 0; j < cols; j++) row[j] += bias[j];
            break;
        case GPUQ_ACT_RELU:
            for (int j = 0; j < cols; j++) row[j] = fmaxf(row[j] + bias[j], 0.0f);
            break;
        default:
            for (int j = 0; j < cols; j++) row[j] = gpuq_act_apply(act, row[j] + bias[j]);
            break;
        }
    }
}

/* With reduced precision, each layer's input is rounded as the CUDA
 * backend's conversion kernel does; the sums stay f32. */
static const float *round_rows(struct cpu_ctx *c, enum gpuq_precision p, const float *in,
                               size_t n) {
    if (p == GPUQ_PREC_F32) return in;
    float *dst = in == c->scratch[0] || in == c->scratch[1] ? (float *)in : c->scratch[2];
    for (size_t i = 0; i < n; i++) dst[i] = round_to(p, in[i]);
    return dst;
}

static int cpu_mlp(struct gpuq_backend *be, const struct gpuq_model *m, const float *x,
                   int rows, float *y) {
    struct cpu_ctx *c = be->ctx;
    size_t width = (size_t)(m->max_width > m->layers[0].d_in ? m->max_width : m->layers[0].d_in);
    for (int i = 0; i < (be->precision == GPUQ_PREC_F32 ? 2 : 3); i++)
        if (ensure_scratch(be, c, i, (size_t)rows * width) != 0) return -1;
    const float *in = x;
    for (int l = 0; l < m->n_layers; l++) {
        const struct gpuq_mlp_layer *L = &m->layers[l];
        int last = l == m->n_layers - 1;
        float *out = last ? y : c->scratch[l & 1];
        in = round_rows(c, be->precision, in, (size_t)rows * L->d_in);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, L->d_out, L->d_in, 1.0f, in,
                    L->d_in, L->w, L->d_in, 0.0f, out, L->d_out);
        bias_act(out, L->b, rows, L->d_out, last ? GPUQ_ACT_NONE : m->act);
        in = out;
    }
    return 0;
}

static const struct gpuq_backend_i cpu_iface = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .model_load = cpu_model_load,
    .model_free = cpu_model_free,
    .matmul = cpu_matmul,
    .mlp = cpu_mlp,
    .knn = gpuq_cpu_knn,
    .softmax = gpuq_cpu_softmax,
    .layernorm = gpuq_cpu_layernorm,
    .image = gpuq_cpu_image,
};

void gpuq_backend_cpu_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}

int gpuq_backend_cpu_init(struct gpuq_backend *be) {
    be->ctx = calloc(1, sizeof(struct cpu_ctx));
    if (!be->ctx) return -1;
    be->iface = &cpu_iface;
    snprintf(be->desc, sizeof(be->desc), "cpu (OpenBLAS, %d threads)", openblas_get_num_threads());
    return 0;
}
