/* cpu_gemm.c -- the CPU backend's GEMMs on oneDNN's matmul primitive.
 *
 * Primitives are made with every size and stride but the unit ones left to
 * run time (DNNL_RUNTIME_DIM_VAL), so one serves all the calls of a kind
 * (a dense layer of any number of tokens, a transposed operand): oneDNN 2.6
 * then runs its gemm:jit kernels, as fast on the encoder's shapes as the
 * fixed-size ones and made in 0.1 ms rather than a millisecond each time a
 * batch brings a new token count. Memory descriptors name the real sizes at
 * each call; the memory objects around the caller's buffers are oneDNN's
 * small handles, the buffers themselves are never copied. */
#include "kernels/cpu_gemm.h"

#include <assert.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"

#define RT DNNL_RUNTIME_DIM_VAL
#define CACHE 16

/* Which of a matrix's strides is 1: oneDNN's gemm kernels need one of
 * them known, the other may come at run time. */
enum layout { LAYOUT_ROWS, LAYOUT_COLS, LAYOUT_STRIDED };

static enum layout layout(int64_t s_row, int64_t s_col) {
    return s_col == 1 ? LAYOUT_ROWS : s_row == 1 ? LAYOUT_COLS : LAYOUT_STRIDED;
}

/* What a primitive is made for; sizes and the other strides are not part of it. */
struct key {
    int batch;
    enum layout a, b, c;
    enum gpuq_cpu_gemm_type type;
    int bias;
    enum gpuq_act act;
    float alpha;
};

struct entry {
    struct key key;
    dnnl_primitive_t prim;
};

struct gpuq_cpu_gemm {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    struct entry cache[CACHE];
    int n, next;            /* entries used; the one to replace when full */
    int bf16;               /* -1 until asked */
};

static int failed(dnnl_status_t s, const char *what, char *err, size_t errlen) {
    if (s != dnnl_success) snprintf(err, errlen, "oneDNN %s: %s", what, dnnl_status2str(s));
    return s != dnnl_success;
}

struct gpuq_cpu_gemm *gpuq_cpu_gemm_create(char *err, size_t errlen) {
    struct gpuq_cpu_gemm *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->bf16 = -1;
    if (failed(dnnl_engine_create(&g->engine, dnnl_cpu, 0), "engine", err, errlen) ||
        failed(dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags), "stream", err,
               errlen)) {
        gpuq_cpu_gemm_destroy(g);
        return NULL;
    }
    return g;
}

void gpuq_cpu_gemm_destroy(struct gpuq_cpu_gemm *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) dnnl_primitive_destroy(g->cache[i].prim);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    free(g);
}

/* ---- descriptors ---- */

static dnnl_data_type_t data_type(enum gpuq_cpu_gemm_type t) {
    return t == GPUQ_CPU_GEMM_BF16 ? dnnl_bf16 : dnnl_f32;
}

/* A [batch,] rows x cols matrix at strides; the batch dimension only when
 * batch > 1, as the primitive was made. */
static dnnl_status_t matrix(dnnl_memory_desc_t *md, int batch, int64_t rows, int64_t cols,
                            dnnl_data_type_t dt, int64_t s_batch, int64_t s_row, int64_t s_col) {
    dnnl_dims_t dims = {batch, rows, cols}, strides = {s_batch, s_row, s_col};
    if (batch > 1) return dnnl_memory_desc_init_by_strides(md, 3, dims, dt, strides);
    dnnl_dims_t dims2 = {rows, cols}, strides2 = {s_row, s_col};
    return dnnl_memory_desc_init_by_strides(md, 2, dims2, dt, strides2);
}

static dnnl_alg_kind_t eltwise(enum gpuq_act act, float *alpha) {
    *alpha = act == GPUQ_ACT_SILU ? 1.0f : 0.0f;
    switch (act) {
    case GPUQ_ACT_RELU: return dnnl_eltwise_relu;
    case GPUQ_ACT_GELU: return dnnl_eltwise_gelu_erf;
    case GPUQ_ACT_SILU: return dnnl_eltwise_swish;
    case GPUQ_ACT_TANH: return dnnl_eltwise_tanh;
    default: return dnnl_alg_kind_undef;
    }
}

/* A matrix of the primitive: sizes and strides at run time but the unit one. */
static dnnl_status_t runtime_matrix(dnnl_memory_desc_t *md, int batch, dnnl_data_type_t dt, enum layout l) {
    return matrix(md, batch, RT, RT, dt, RT, l == LAYOUT_COLS ? 1 : RT, l == LAYOUT_ROWS ? 1 : RT);
}

/* The primitive descriptor for k. */
static dnnl_status_t make_pd(struct gpuq_cpu_gemm *g, const struct key *k, dnnl_primitive_desc_t *pd) {
    dnnl_memory_desc_t a, b, c, bias;
    dnnl_data_type_t dt = data_type(k->type);
    dnnl_status_t s;
    if ((s = runtime_matrix(&a, k->batch, dt, k->a)) || (s = runtime_matrix(&b, k->batch, dt, k->b)) ||
        (s = runtime_matrix(&c, k->batch, dnnl_f32, k->c)) ||
        (s = matrix(&bias, 1, 1, RT, dnnl_f32, 0, RT, 1)))
        return s;
    dnnl_matmul_desc_t md;
    if ((s = dnnl_matmul_desc_init(&md, &a, &b, k->bias ? &bias : NULL, &c))) return s;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if ((s = dnnl_primitive_attr_create(&attr))) return s;
    if (k->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    float e_alpha;
    dnnl_alg_kind_t alg = eltwise(k->act, &e_alpha);
    if (!s && alg != dnnl_alg_kind_undef && !(s = dnnl_post_ops_create(&po)) &&
        !(s = dnnl_post_ops_append_eltwise(po, 1.0f, alg, e_alpha, 0.0f)))
        s = dnnl_primitive_attr_set_post_ops(attr, po);
    if (!s) s = dnnl_primitive_desc_create(pd, &md, attr, g->engine, NULL);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return s;
}

static int same(const struct key *x, const struct key *y) {
    return x->batch == y->batch && x->a == y->a && x->b == y->b && x->c == y->c && x->type == y->type && x->bias == y->bias && x->act == y->act &&
           x->alpha == y->alpha;
}

/* The cached primitive for k, made when missing (replacing the oldest when
 * the cache is full). NULL with err. */
static dnnl_primitive_t primitive(struct gpuq_cpu_gemm *g, const struct key *k, char *err, size_t errlen) {
    for (int i = 0; i < g->n; i++)
        if (same(&g->cache[i].key, k)) return g->cache[i].prim;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    if (failed(make_pd(g, k, &pd), "matmul", err, errlen)) return NULL;
    dnnl_status_t s = dnnl_primitive_create(&p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (failed(s, "matmul", err, errlen)) return NULL;
    struct entry *e;
    if (g->n < CACHE) {
        e = &g->cache[g->n++];
    } else {
        e = &g->cache[g->next];
        g->next = (g->next + 1) % CACHE;
        dnnl_primitive_destroy(e->prim);
    }
    *e = (struct entry){*k, p};
    return p;
}

/* ---- running ---- */

/* c = act(bias) where k is 0: a sum of nothing. */
static void no_terms(const struct gpuq_cpu_gemm_args *a) {
    for (int t = 0; t < a->batch; t++)
        for (int64_t i = 0; i < a->m; i++)
            for (int64_t j = 0; j < a->n; j++)
                a->c[t * a->c_batch + i * a->c_row + j * a->c_col] =
                    gpuq_act_apply(a->act, a->bias ? a->bias[j] : 0.0f);
}

int gpuq_cpu_gemm_run(struct gpuq_cpu_gemm *g, const struct gpuq_cpu_gemm_args *a, char *err,
                      size_t errlen) {
    assert(a->batch >= 1 && (a->batch == 1 || (!a->bias && a->act == GPUQ_ACT_NONE)));
    assert(!a->bias || a->alpha == 1.0f);
    if (a->m == 0 || a->n == 0) return 0;
    if (a->k == 0) {
        no_terms(a);
        return 0;
    }
    struct key k = {a->batch, layout(a->a_row, a->a_col), layout(a->b_row, a->b_col),
                    layout(a->c_row, a->c_col), a->type, a->bias != NULL, a->act, a->alpha};
    dnnl_primitive_t p = primitive(g, &k, err, errlen);
    if (!p) return -1;
    dnnl_data_type_t dt = data_type(a->type);
    dnnl_memory_desc_t md[4];
    dnnl_status_t s;
    if ((s = matrix(&md[0], a->batch, a->m, a->k, dt, a->a_batch, a->a_row, a->a_col)) ||
        (s = matrix(&md[1], a->batch, a->k, a->n, dt, a->b_batch, a->b_row, a->b_col)) ||
        (s = matrix(&md[2], a->batch, a->m, a->n, dnnl_f32, a->c_batch, a->c_row, a->c_col)) ||
        (s = matrix(&md[3], 1, 1, a->n, dnnl_f32, 0, a->n, 1)))
        return failed(s, "memory descriptor", err, errlen), -1;
    void *ptr[4] = {(void *)a->a, (void *)a->b, a->c, (void *)a->bias};
    static const int arg[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    dnnl_exec_arg_t args[4];
    int n = a->bias ? 4 : 3, made = 0;
    for (; made < n; made++) {
        args[made].arg = arg[made];
        if ((s = dnnl_memory_create(&args[made].memory, &md[made], g->engine, ptr[made]))) break;
    }
    if (!s) s = dnnl_primitive_execute(p, g->stream, n, args);
    if (!s) s = dnnl_stream_wait(g->stream);
    for (int i = 0; i < made; i++) dnnl_memory_destroy(args[i].memory);
    return failed(s, "matmul", err, errlen) ? -1 : 0;
}

/* ---- what the host has ---- */

int gpuq_cpu_gemm_has_bf16(struct gpuq_cpu_gemm *g) {
    if (g->bf16 < 0) {
        struct key k = {1, LAYOUT_ROWS, LAYOUT_COLS, LAYOUT_ROWS, GPUQ_CPU_GEMM_BF16, 0, GPUQ_ACT_NONE, 1.0f};
        dnnl_primitive_desc_t pd;
        g->bf16 = make_pd(g, &k, &pd) == dnnl_success;
        if (g->bf16) dnnl_primitive_desc_destroy(pd);
    }
    return g->bf16;
}

void gpuq_cpu_gemm_describe(struct gpuq_cpu_gemm *g, enum gpuq_cpu_gemm_type type, char *out,
                            size_t len) {
    const dnnl_version_t *v = dnnl_version();
    const char *isa = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()), *impl = "no kernel";
    if (!strncmp(isa, "cpu_isa_", 8)) isa += 8;
    struct key k = {1, LAYOUT_ROWS, LAYOUT_COLS, LAYOUT_ROWS, type, 0, GPUQ_ACT_NONE, 1.0f};
    dnnl_primitive_desc_t pd;
    int made = make_pd(g, &k, &pd) == dnnl_success;
    if (made) dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(out, len, "oneDNN %d.%d.%d, %s, %s", v->major, v->minor, v->patch, isa, impl);
    if (made) dnnl_primitive_desc_destroy(pd);
}

void gpuq_cpu_gemm_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

int gpuq_cpu_gemm_max_threads(void) { return omp_get_max_threads(); }

void gpuq_cpu_gemm_to_bf16(const float *in, size_t n, uint16_t *out) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &in[i], 4);
        int special = (bits & 0x7f800000u) == 0x7f800000u;      /* inf or nan: kept, nan quiet */
        uint32_t r = special ? bits | (bits & 0x7fffffu ? 0x400000u : 0) : bits + 0x7fffu + ((bits >> 16) & 1);
        out[i] = (uint16_t)(r >> 16);
    }
}
