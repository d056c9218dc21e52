/* cpu.c -- the CPU backend's core: OpenBLAS threads, model weights in the
 * backend's precision, and the scratch the CPU kernels (ops/<op>.c) share. */
#include "kernels/cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/bert.h"
#include "kernels/tensor.h"

struct cpu_ctx {
    float *scratch[GPUQ_CPU_SCRATCH];
    size_t cap[GPUQ_CPU_SCRATCH];   /* floats in each */
};

static void cpu_destroy(struct gpuq_backend *be) {
    struct cpu_ctx *c = be->ctx;
    if (!c) return;
    for (int i = 0; i < GPUQ_CPU_SCRATCH; i++) free(c->scratch[i]);
    free(c);
    be->ctx = NULL;
}

float gpuq_cpu_round(enum gpuq_precision p, float x) {
    return p == GPUQ_PREC_BF16 ? gpuq_round_bf16(x) : p == GPUQ_PREC_F16 ? gpuq_round_f16(x) : x;
}

const float *gpuq_cpu_round_rows(enum gpuq_precision p, const float *in, size_t n, float *dst) {
    if (p == GPUQ_PREC_F32) return in;
    for (size_t i = 0; i < n; i++) dst[i] = gpuq_cpu_round(p, in[i]);
    return dst;
}

void gpuq_cpu_layernorm_row(const float *in, float *out, int n, const float *g, const float *b, float eps) {
    double mean = 0, var = 0;
    for (int j = 0; j < n; j++) mean += in[j];
    mean /= n;
    for (int j = 0; j < n; j++) var += (in[j] - mean) * (in[j] - mean);
    float inv = (float)(1.0 / sqrt(var / n + eps));
    for (int j = 0; j < n; j++) out[j] = (float)(in[j] - mean) * inv * g[j] + b[j];
}

/* Rounds n weights in place to p: 0, or -1 when one is beyond p's range. */
static int round_weights(enum gpuq_precision p, float *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(w[i] = gpuq_cpu_round(p, w[i]))) return -1;
    return 0;
}

/* Host weights are used in place; with reduced precision the GEMMs'
 * matrices (an mlp's layers, an encoder's four dense ones per layer) are
 * first rounded to what the GEMMs will see, as the CUDA backend's copies
 * are. */
static int cpu_model_load(struct gpuq_backend *be, struct gpuq_model *m) {
    enum gpuq_precision p = be->precision;
    int n = p == GPUQ_PREC_F32 ? 0 : m->kind == GPUQ_MODEL_MLP ? m->n_layers
          : m->kind == GPUQ_MODEL_ENCODER ? m->bert->n_layers : 0;
    for (int l = 0; l < n; l++) {
        int bad;
        if (m->kind == GPUQ_MODEL_MLP) {
            bad = round_weights(p, m->layers[l].w, (size_t)m->layers[l].d_in * m->layers[l].d_out);
        } else {
            const struct gpuq_bert_layer *L = &m->bert->layers[l];
            size_t h = (size_t)m->bert->hidden, i = (size_t)m->bert->intermediate;
            bad = round_weights(p, L->qkv_w, 3 * h * h) | round_weights(p, L->attn_w, h * h) |
                  round_weights(p, L->ffn_w1, i * h) | round_weights(p, L->ffn_w2, h * i);
        }
        if (bad) {
            snprintf(be->errstr, sizeof(be->errstr), "layer %d has a weight beyond %s's range", l,
                     gpuq_precision_name(p));
            return GPUQ_BE_FAILED;
        }
    }
    return 0;
}

static void cpu_model_free(struct gpuq_backend *be, struct gpuq_model *m) { (void)be, (void)m; }

float *gpuq_cpu_scratch(struct gpuq_backend *be, int i, size_t floats) {
    struct cpu_ctx *c = be->ctx;
    if (floats <= c->cap[i]) return c->scratch[i];
    if (floats < 2 * c->cap[i]) floats = 2 * c->cap[i];
    float *p = realloc(c->scratch[i], floats * sizeof(float));
    if (!p) {
        snprintf(be->errstr, sizeof(be->errstr), "out of host memory for %zu floats", floats);
        return NULL;
    }
    c->scratch[i] = p;
    c->cap[i] = floats;
    return p;
}

static const struct gpuq_backend_i cpu_iface = {
    .name = "cpu",
    .kind = GPUQ_BACKEND_CPU,
    .destroy = cpu_destroy,
    .model_load = cpu_model_load,
    .model_free = cpu_model_free,
};

void gpuq_backend_cpu_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}

int gpuq_backend_cpu_open(struct gpuq_backend *be) {
    be->ctx = calloc(1, sizeof(struct cpu_ctx));
    if (!be->ctx) return -1;
    be->iface = &cpu_iface;
    snprintf(be->desc, sizeof(be->desc), "cpu (OpenBLAS, %d threads)", openblas_get_num_threads());
    return 0;
}
