/* cpu.c -- the CPU backend's core: its GEMMs (kernels/cpu_gemm.h), model
 * weights in the backend's precision, and the scratch the CPU kernels
 * (ops/<op>.c) share. */
#include "kernels/cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/tensor.h"

struct cpu_ctx {
    struct gpuq_cpu_gemm *gemm;
    float *scratch[GPUQ_CPU_SCRATCH];
    size_t cap[GPUQ_CPU_SCRATCH];   /* floats in each */
};

static void cpu_destroy(struct gpuq_backend *be) {
    struct cpu_ctx *c = be->ctx;
    if (!c) return;
    for (int i = 0; i < GPUQ_CPU_SCRATCH; i++) free(c->scratch[i]);
    gpuq_cpu_gemm_destroy(c->gemm);
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

/* The sums in double in any order (vector lanes), which moves them by
 * double's rounding only; vector code for the CPU backend's ISA. */
static inline __attribute__((always_inline)) void layernorm_row_body(const float *in, float *out, int n,
                                                                     const float *g, const float *b, float eps) {
    double mean = 0, var = 0;
#pragma omp simd reduction(+ : mean)
    for (int j = 0; j < n; j++) mean += in[j];
    mean /= n;
#pragma omp simd reduction(+ : var)
    for (int j = 0; j < n; j++) var += (in[j] - mean) * (in[j] - mean);
    float inv = (float)(1.0 / sqrt(var / n + eps));
    for (int j = 0; j < n; j++) out[j] = (float)(in[j] - mean) * inv * g[j] + b[j];
}

GPUQ_CPU_VECTOR(layernorm_row, (const float *in, float *out, int n, const float *g, const float *b, float eps),
                (in, out, n, g, b, eps))

void gpuq_cpu_layernorm_row(const float *in, float *out, int n, const float *g, const float *b, float eps) {
    layernorm_row(in, out, n, g, b, eps);
}

static inline __attribute__((always_inline)) void softmax_rows_body(float *s, int rows, int64_t ld, float *inv) {
    for (int r = 0; r < rows; r++) {
        float *v = s + (size_t)r * ld, mx = v[0], sum = 0;
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < ld; j++) mx = v[j] > mx ? v[j] : mx;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < ld; j++) sum += v[j] = gpuq_exp_nonpositive(v[j] - mx);
        inv[r] = 1.0f / sum;
    }
}

GPUQ_CPU_VECTOR(softmax_rows, (float *s, int rows, int64_t ld, float *inv), (s, rows, ld, inv))

void gpuq_cpu_softmax_rows(float *s, int rows, int64_t ld, float *inv) { softmax_rows(s, rows, ld, inv); }

void gpuq_cpu_divide_heads(float *ctx, int rows, int heads, int64_t d, int64_t ld, const float *inv) {
    for (int i = 0; i < rows; i++)
        for (int g = 0; g < heads; g++) {
            float *c = ctx + (size_t)i * ld + (size_t)g * d, by = inv[(size_t)g * rows + i];
            for (int64_t j = 0; j < d; j++) c[j] *= by;
        }
}

int gpuq_cpu_block_tokens(int fit, int n_tokens, int max_len) {
    int most = max_len > fit ? max_len : fit;
    return n_tokens < most ? n_tokens : most;
}

int gpuq_cpu_block_next(const int *lens, int n_seq, int s0, int tb, int *tokens, int *longest) {
    int s1 = s0, n = 0, most = 0;
    for (; s1 < n_seq && (s1 == s0 || n + lens[s1] <= tb); s1++) n += lens[s1], most = lens[s1] > most ? lens[s1] : most;
    *tokens = n, *longest = most;
    return s1;
}

/* ---- GEMMs ---- */

int gpuq_cpu_bf16(struct gpuq_backend *be) {
    struct cpu_ctx *c = be->ctx;
    return be->precision == GPUQ_PREC_BF16 && gpuq_cpu_gemm_has_bf16(c->gemm);
}

int gpuq_cpu_gemm(struct gpuq_backend *be, const struct gpuq_cpu_gemm_args *a) {
    struct cpu_ctx *c = be->ctx;
    return gpuq_cpu_gemm_run(c->gemm, a, be->errstr, sizeof(be->errstr)) ? GPUQ_BE_FAILED : 0;
}

int gpuq_cpu_dense(struct gpuq_backend *be, const float *x, const uint16_t *x16, int64_t rows,
                   int64_t in, const float *w, const uint16_t *w16, int64_t out, const float *bias,
                   enum gpuq_act act, float *y) {
    struct gpuq_cpu_gemm_args a = {
        .batch = 1, .m = rows, .n = out, .k = in,
        .type = w16 ? GPUQ_CPU_GEMM_BF16 : GPUQ_CPU_GEMM_F32,
        .a = w16 ? (const void *)x16 : x, .a_row = in, .a_col = 1,
        .b = w16 ? (const void *)w16 : w, .b_row = 1, .b_col = in,
        .c = y, .c_row = out, .c_col = 1, .alpha = 1.0f, .bias = bias, .act = act};
    return gpuq_cpu_gemm(be, &a);
}

/* be->desc: the library, ISA and kernel of its GEMMs, the precision they
 * take, its threads. */
static void describe(struct gpuq_backend *be) {
    struct cpu_ctx *c = be->ctx;
    int bf16 = gpuq_cpu_bf16(be), t = gpuq_cpu_gemm_max_threads();
    char lib[96];
    gpuq_cpu_gemm_describe(c->gemm, bf16 ? GPUQ_CPU_GEMM_BF16 : GPUQ_CPU_GEMM_F32, lib, sizeof(lib));
    snprintf(be->desc, sizeof(be->desc), "cpu (%s, %s%s, %d thread%s)", lib,
             gpuq_precision_name(be->precision), be->precision == GPUQ_PREC_F32 || bf16 ? "" : " in f32 GEMMs",
             t, t == 1 ? "" : "s");
}

/* ---- models ---- */

struct rounding {
    struct gpuq_backend *be;
    int bf16;       /* also a bf16 copy of each GEMM matrix */
    int rc, i;
};

/* A GEMM matrix (w16 not NULL) rounded in place to what the GEMMs will
 * see, and with bf16 given its bf16 copy (made once). */
static void round_weight(void *ctx, const struct gpuq_weight *w) {
    struct rounding *r = ctx;
    enum gpuq_precision p = r->be->precision;
    r->i++;
    if (r->rc || !w->w16) return;
    for (size_t i = 0; i < w->n; i++)
        if (!isfinite((*w->data)[i] = gpuq_cpu_round(p, (*w->data)[i]))) {
            snprintf(r->be->errstr, sizeof(r->be->errstr), "weight %d has a value beyond %s's range", r->i,
                     gpuq_precision_name(p));
            r->rc = GPUQ_BE_FAILED;
            return;
        }
    if (!r->bf16 || *w->w16) return;
    if (!(*w->w16 = malloc(w->n * sizeof(uint16_t)))) {
        snprintf(r->be->errstr, sizeof(r->be->errstr), "out of memory for weight %d's bf16 copy", r->i);
        r->rc = GPUQ_BE_NOMEM;
        return;
    }
    gpuq_cpu_gemm_to_bf16(*w->data, w->n, *w->w16);
}

/* Host weights are used in place; with reduced precision the GEMMs'
 * matrices (an mlp's layers, an encoder's four dense ones per layer) are
 * first rounded to what the GEMMs will see, as the CUDA backend's copies
 * are; with bf16, where the host's oneDNN has a bf16 matmul, they also get
 * a bf16 copy (w16, freed with the model) for the GEMMs to take. */
static int cpu_model_load(struct gpuq_backend *be, struct gpuq_model *m) {
    struct rounding r = {be, gpuq_cpu_bf16(be), 0, 0};
    if (be->precision != GPUQ_PREC_F32) gpuq_model_weights(m, round_weight, &r);
    if (r.rc == 0) describe(be);
    return r.rc;
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

void gpuq_backend_cpu_threads(int n) { gpuq_cpu_gemm_threads(n); }

int gpuq_backend_cpu_open(struct gpuq_backend *be) {
    struct cpu_ctx *c = calloc(1, sizeof(struct cpu_ctx));
    if (!c) return -1;
    be->ctx = c;
    be->iface = &cpu_iface;
    if (!(c->gemm = gpuq_cpu_gemm_create(be->errstr, sizeof(be->errstr)))) {
        cpu_destroy(be);
        return -1;
    }
    describe(be);
    return 0;
}
