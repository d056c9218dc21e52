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
#define CACHE 64
/* Rows from which a call's leading rows go through a fixed-size primitive */
#define FIXED_ROWS 128

/* Which of a matrix's strides is 1: oneDNN's gemm kernels need one of
 * them known, the other may come at run time. */
enum layout { LAYOUT_ROWS, LAYOUT_COLS, LAYOUT_STRIDED };

static enum layout layout(int64_t s_row, int64_t s_col) {
    return s_col == 1 ? LAYOUT_ROWS : s_row == 1 ? LAYOUT_COLS : LAYOUT_STRIDED;
}

/* What a primitive is made for. With m 0, sizes and strides but the unit
 * ones come at run time; else all are fixed (batch 1 only). */
struct key {
    int batch;
    enum layout a, b, c;
    enum gpuq_cpu_gemm_type type, c_type;
    int bias;
    enum gpuq_act act;
    int accumulate;
    float alpha;
    int64_t m, n, k, a_row, a_col, b_row, b_col, c_row, c_col;
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
    if (k->m) {
        if ((s = matrix(&a, 1, k->m, k->k, dt, 0, k->a_row, k->a_col)) ||
            (s = matrix(&b, 1, k->k, k->n, dt, 0, k->b_row, k->b_col)) ||
            (s = matrix(&c, 1, k->m, k->n, data_type(k->c_type), 0, k->c_row, k->c_col)) ||
            (s = matrix(&bias, 1, 1, k->n, dnnl_f32, 0, k->n, 1)))
            return s;
    } else if ((s = runtime_matrix(&a, k->batch, dt, k->a)) || (s = runtime_matrix(&b, k->batch, dt, k->b)) ||
               (s = runtime_matrix(&c, k->batch, data_type(k->c_type), k->c)) ||
               (s = matrix(&bias, 1, 1, RT, dnnl_f32, 0, RT, 1))) {
        return s;
    }
    dnnl_matmul_desc_t md;
    if ((s = dnnl_matmul_desc_init(&md, &a, &b, k->bias ? &bias : NULL, &c))) return s;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    if ((s = dnnl_primitive_attr_create(&attr))) return s;
    if (k->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    float e_alpha;
    dnnl_alg_kind_t alg = eltwise(k->act, &e_alpha);
    if (!s && (alg != dnnl_alg_kind_undef || k->accumulate) && !(s = dnnl_post_ops_create(&po)) &&
        !(s = k->accumulate ? dnnl_post_ops_append_sum(po, 1.0f) : dnnl_success) &&
        !(s = alg != dnnl_alg_kind_undef ? dnnl_post_ops_append_eltwise(po, 1.0f, alg, e_alpha, 0.0f) : dnnl_success))
        s = dnnl_primitive_attr_set_post_ops(attr, po);
    if (!s) s = dnnl_primitive_desc_create(pd, &md, attr, g->engine, NULL);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return s;
}

static int same(const struct key *x, const struct key *y) {
    return x->batch == y->batch && x->a == y->a && x->b == y->b && x->c == y->c && x->type == y->type &&
           x->c_type == y->c_type &&
           x->bias == y->bias && x->act == y->act && x->accumulate == y->accumulate && x->alpha == y->alpha && x->m == y->m && x->n == y->n &&
           x->k == y->k && x->a_row == y->a_row && x->a_col == y->a_col && x->b_row == y->b_row &&
           x->b_col == y->b_col && x->c_row == y->c_row && x->c_col == y->c_col;
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

enum gpuq_cpu_isa gpuq_cpu_isa(void) {
    static int known = -1;  /* any thread may find it unknown and store the same value */
    int isa = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (isa < 0) {
        dnnl_cpu_isa_t got = dnnl_get_effective_cpu_isa();
        isa = (got & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core ? GPUQ_ISA_AVX512
              : (got & dnnl_cpu_isa_avx2) == dnnl_cpu_isa_avx2            ? GPUQ_ISA_AVX2
                                                                             : GPUQ_ISA_BASE;
        __atomic_store_n(&known, isa, __ATOMIC_RELAXED);
    }
    return (enum gpuq_cpu_isa)isa;
}

/* Vector code for the CPU backend's ISA (gpuq_cpu_isa). Infinities round to
 * themselves and so does the largest finite f32 to infinity, as
 * gpuq_round_bf16 has it; a NaN is kept a NaN (made quiet, so cutting its
 * low bits cannot make it one). */
static inline __attribute__((always_inline)) void to_bf16_body(const float *in, size_t n, uint16_t *out) {
    const uint32_t *bits = (const uint32_t *)(const void *)in;
    for (size_t i = 0; i < n; i++) {
        uint32_t b = bits[i];
        uint32_t r = (b & 0x7fffffffu) > 0x7f800000u ? b | 0x400000u : b + 0x7fffu + ((b >> 16) & 1);
        out[i] = (uint16_t)(r >> 16);
    }
}

GPUQ_CPU_VECTOR(to_bf16, (const float *in, size_t n, uint16_t *out), (in, n, out))

void gpuq_cpu_gemm_to_bf16(const float *in, size_t n, uint16_t *out) { to_bf16(in, n, out); }

/* c = act(bias (+ c)) where k is 0: a sum of nothing. */
static void no_terms(const struct gpuq_cpu_gemm_args *a) {
    for (int t = 0; t < a->batch; t++)
        for (int64_t i = 0; i < a->m; i++)
            for (int64_t j = 0; j < a->n; j++) {
                int64_t at = t * a->c_batch + i * a->c_row + j * a->c_col;
                float v = (a->bias ? a->bias[j] : 0.0f) + (a->accumulate ? ((float *)a->c)[at] : 0.0f);
                v = gpuq_act_apply(a->act, v);
                if (a->c_type == GPUQ_CPU_GEMM_BF16) gpuq_cpu_gemm_to_bf16(&v, 1, (uint16_t *)a->c + at);
                else ((float *)a->c)[at] = v;
            }
}

/* Rows [row0, row0 + rows) of call a through the primitive for k. */
static int run_rows(struct gpuq_cpu_gemm *g, const struct key *k, const struct gpuq_cpu_gemm_args *a,
                    int64_t row0, int64_t rows, char *err, size_t errlen) {
    dnnl_primitive_t p = primitive(g, k, err, errlen);
    if (!p) return -1;
    dnnl_data_type_t dt = data_type(a->type);
    size_t size = a->type == GPUQ_CPU_GEMM_BF16 ? 2 : 4, c_size = a->c_type == GPUQ_CPU_GEMM_BF16 ? 2 : 4;
    dnnl_memory_desc_t md[4];
    dnnl_status_t s;
    if ((s = matrix(&md[0], a->batch, rows, a->k, dt, a->a_batch, a->a_row, a->a_col)) ||
        (s = matrix(&md[1], a->batch, a->k, a->n, dt, a->b_batch, a->b_row, a->b_col)) ||
        (s = matrix(&md[2], a->batch, rows, a->n, data_type(a->c_type), a->c_batch, a->c_row, a->c_col)) ||
        (s = matrix(&md[3], 1, 1, a->n, dnnl_f32, 0, a->n, 1)))
        return failed(s, "memory descriptor", err, errlen), -1;
    void *ptr[4] = {(char *)a->a + (size_t)(row0 * a->a_row) * size, (void *)a->b,
                    (char *)a->c + (size_t)(row0 * a->c_row) * c_size, (void *)a->bias};
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

/* m with all but its 4 leading bits cleared: at least 8/9 of m, and at
 * most 8 values an octave. */
static int64_t leading_rows(int64_t m) {
    int shift = 0;
    while (m >> shift >= 16) shift++;
    return m >> shift << shift;
}

/* A bf16 call of batch 1 and at least FIXED_ROWS rows runs its leading
 * rows (leading_rows) through a primitive made for exactly that size
 * (oneDNN's brgemm kernels, AMX where the host has it, with bias and
 * activation fused: about twice gemm:jit's rate on the encoder's layers,
 * where gemm:jit applies them in a pass of their own), the rest through
 * the run-time-sized one; so a stream of batches of every size needs few
 * primitives. In f32 brgemm measured no faster than gemm:jit there, so
 * f32 calls take the run-time-sized one alone. */
int gpuq_cpu_gemm_run(struct gpuq_cpu_gemm *g, const struct gpuq_cpu_gemm_args *a, char *err,
                      size_t errlen) {
    assert(a->batch >= 1 && (a->batch == 1 || (!a->bias && a->act == GPUQ_ACT_NONE && !a->accumulate)));
    assert(!a->accumulate || a->c_type == GPUQ_CPU_GEMM_F32);
    assert(!a->bias || a->alpha == 1.0f);
    if (a->m == 0 || a->n == 0) return 0;
    if (a->k == 0) {
        no_terms(a);
        return 0;
    }
    struct key k = {a->batch, layout(a->a_row, a->a_col), layout(a->b_row, a->b_col),
                    layout(a->c_row, a->c_col), a->type, a->c_type, a->bias != NULL, a->act, a->accumulate != 0,
                    a->alpha, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    int64_t lead = a->batch == 1 && a->type == GPUQ_CPU_GEMM_BF16 && a->m >= FIXED_ROWS ? leading_rows(a->m) : 0;
    if (lead) {
        struct key fixed = k;
        fixed.m = lead, fixed.n = a->n, fixed.k = a->k;
        fixed.a_row = a->a_row, fixed.a_col = a->a_col, fixed.b_row = a->b_row, fixed.b_col = a->b_col;
        fixed.c_row = a->c_row, fixed.c_col = a->c_col;
        if (run_rows(g, &fixed, a, 0, lead, err, errlen) != 0) return -1;
    }
    return lead < a->m ? run_rows(g, &k, a, lead, a->m - lead, err, errlen) : 0;
}

/* ---- what the host has ---- */

int gpuq_cpu_gemm_has_bf16(struct gpuq_cpu_gemm *g) {
    if (g->bf16 < 0) {
        struct key k = {1, LAYOUT_ROWS, LAYOUT_COLS, LAYOUT_ROWS, GPUQ_CPU_GEMM_BF16, GPUQ_CPU_GEMM_F32, 0,
                        GPUQ_ACT_NONE, 0, 1.0f, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        dnnl_primitive_desc_t pd;
        g->bf16 = make_pd(g, &k, &pd) == dnnl_success;
        if (g->bf16) dnnl_primitive_desc_destroy(pd);
    }
    return g->bf16;
}

/* The kernel oneDNN picks for k into out, or "none". */
static void kernel_name(struct gpuq_cpu_gemm *g, const struct key *k, char *out, size_t len) {
    dnnl_primitive_desc_t pd;
    const char *impl = "none";
    int made = make_pd(g, k, &pd) == dnnl_success;
    if (made) dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(out, len, "%s", impl);
    if (made) dnnl_primitive_desc_destroy(pd);
}

void gpuq_cpu_gemm_describe(struct gpuq_cpu_gemm *g, enum gpuq_cpu_gemm_type type, char *out,
                            size_t len) {
    const dnnl_version_t *v = dnnl_version();
    const char *isa = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
    if (!strncmp(isa, "cpu_isa_", 8)) isa += 8;
    struct key k = {1, LAYOUT_ROWS, LAYOUT_COLS, LAYOUT_ROWS, type, GPUQ_CPU_GEMM_F32, 0, GPUQ_ACT_NONE, 0, 1.0f,
                    0, 0, 0, 0, 0, 0, 0, 0, 0};
    char any[48], fixed[48] = "";
    kernel_name(g, &k, any, sizeof(any));
    if (type == GPUQ_CPU_GEMM_BF16) {   /* as an encoder layer's leading rows */
        struct key f = k;
        f.m = 1024, f.n = f.k = 384, f.a_row = f.b_col = f.c_row = 384, f.a_col = f.b_row = f.c_col = 1;
        kernel_name(g, &f, fixed, sizeof(fixed));
    }
    snprintf(out, len, "oneDNN %d.%d.%d, %s, %s%s%s", v->major, v->minor, v->patch, isa, fixed,
             fixed[0] ? " + " : "", any);
}

void gpuq_cpu_gemm_threads(int n) {
    if (n > 0) omp_set_num_threads(n);
}

int gpuq_cpu_gemm_max_threads(void) { return omp_get_max_threads(); }

