/* cpu.c -- the CPU backend: OpenBLAS GEMMs and plain C loops. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu_ops.h"

struct cpu_ctx {
    float *scratch[2];      /* mlp activations, grown to the largest batch seen */
    size_t scratch_cap;     /* floats in each */
};

static void cpu_destroy(struct gpuq_backend *be) {
    struct cpu_ctx *c = be->ctx;
    if (!c) return;
    free(c->scratch[0]);
    free(c->scratch[1]);
    free(c);
    be->ctx = NULL;
}

static int cpu_model_load(struct gpuq_backend *be, struct gpuq_model *m) {
    (void)be, (void)m;   /* host weights are used as they are */
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

/* Grows the scratch buffers; the steady state allocates nothing. */
static int ensure_scratch(struct gpuq_backend *be, struct cpu_ctx *c, size_t floats) {
    if (floats <= c->scratch_cap) return 0;
    if (floats < 2 * c->scratch_cap) floats = 2 * c->scratch_cap;
    for (int i = 0; i < 2; i++) {
        float *p = realloc(c->scratch[i], floats * sizeof(float));
        if (!p) {
            snprintf(be->errstr, sizeof(be->errstr), "out of host memory for %zu floats", floats);
            return -1;
        }
        c->scratch[i] = p;
    }
    c->scratch_cap = floats;
    return 0;
}

float *gpuq_cpu_scratch(struct gpuq_backend *be, int i, size_t floats) {
    struct cpu_ctx *c = be->ctx;
    return ensure_scratch(be, c, floats) == 0 ? c->scratch[i] : NULL;
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

static int cpu_mlp(struct gpuq_backend *be, const struct gpuq_model *m, const float *x,
                   int rows, float *y) {
    struct cpu_ctx *c = be->ctx;
    if (ensure_scratch(be, c, (size_t)rows * (size_t)m->max_width) != 0) return -1;
    const float *in = x;
    for (int l = 0; l < m->n_layers; l++) {
        const struct gpuq_mlp_layer *L = &m->layers[l];
        int last = l == m->n_layers - 1;
        float *out = last ? y : c->scratch[l & 1];
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
