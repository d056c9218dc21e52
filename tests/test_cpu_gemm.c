/* test_cpu_gemm.c -- the CPU backend's GEMMs (kernels/cpu_gemm.h) against
 * a sum in double: plain and transposed operands, heads batched over
 * interleaved columns as the encoder's attention has them, bias with each
 * activation, alpha, bf16 inputs, calls long enough to split into a
 * fixed-size part and a rest, a product added to its output, and the
 * empty cases. */
#include "kernels/backend.h"
#include "kernels/cpu_gemm.h"
#include "base/tensor.h"
#include "tests/check.h"

static float at(const void *p, enum gpuq_cpu_gemm_type t, int64_t i) {
    if (t == GPUQ_CPU_GEMM_F32) return ((const float *)p)[i];
    uint32_t bits = (uint32_t)((const uint16_t *)p)[i] << 16;
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

/* Largest error of g's answer to a against the double sum, relative to
 * the sum of the terms' magnitudes. */
static double error(const struct gpuq_cpu_gemm_args *a) {
    double worst = 0;
    for (int t = 0; t < a->batch; t++)
        for (int64_t i = 0; i < a->m; i++)
            for (int64_t j = 0; j < a->n; j++) {
                double s = 0, mag = 1e-30;
                for (int64_t k = 0; k < a->k; k++) {
                    double v = (double)at(a->a, a->type, t * a->a_batch + i * a->a_row + k * a->a_col) *
                               at(a->b, a->type, t * a->b_batch + k * a->b_row + j * a->b_col);
                    s += v, mag += fabs(v);
                }
                s = s * a->alpha + (a->bias ? a->bias[j] : 0);
                double want = gpuq_act_apply(a->act, (float)s);
                int64_t at_c = t * a->c_batch + i * a->c_row + j * a->c_col;
                double got = at(a->c, a->c_type, at_c);
                if (a->c_type == GPUQ_CPU_GEMM_BF16) want = gpuq_round_bf16((float)want);
                worst = fmax(worst, fabs(got - want) / (mag * fabs(a->alpha) + 1));
            }
    return worst;
}

static void *fill(size_t n, enum gpuq_cpu_gemm_type t, unsigned *st) {
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = check_rand(st);
    if (t == GPUQ_CPU_GEMM_F32) return f;
    uint16_t *h = malloc(n * sizeof *h);
    gpuq_cpu_gemm_to_bf16(f, n, h);
    free(f);
    return h;
}

/* One call: c [batch][m][n] from operands laid out as the flags say. */
static void check_call_to(struct gpuq_cpu_gemm *g, int batch, int m, int n, int k, int ta, int tb,
                          enum gpuq_cpu_gemm_type type, float alpha, int bias, enum gpuq_act act,
                          enum gpuq_cpu_gemm_type c_type) {
    unsigned st = (unsigned)(m * 131 + n * 7 + k + ta * 3 + tb * 5 + type);
    size_t na = (size_t)batch * m * k, nb = (size_t)batch * k * n;
    void *A = fill(na + 1, type, &st), *B = fill(nb + 1, type, &st);
    float *C = calloc((size_t)batch * m * n + 1, sizeof *C), *bs = bias ? fill(n, GPUQ_CPU_GEMM_F32, &st) : NULL;
    struct gpuq_cpu_gemm_args a = {
        .batch = batch, .m = m, .n = n, .k = k, .type = type,
        .a = A, .a_row = ta ? 1 : k, .a_col = ta ? m : 1, .a_batch = (int64_t)m * k,
        .b = B, .b_row = tb ? 1 : n, .b_col = tb ? k : 1, .b_batch = (int64_t)k * n,
        .c = C, .c_row = n, .c_col = 1, .c_batch = (int64_t)m * n, .c_type = c_type, .alpha = alpha,
        .bias = bs, .act = act};
    char err[128] = "";
    CHECK(gpuq_cpu_gemm_run(g, &a, err, sizeof(err)) == 0);
    /* inputs exact, sums f32; a bf16 output may round the other way at a tie's edge */
    double e = error(&a), bound = c_type == GPUQ_CPU_GEMM_BF16 ? 8e-3 : 1e-5;
    if (!(e <= bound))
        fprintf(stderr, "  %dx%dx%dx%d ta %d tb %d type %d act %d: error %g %s\n", batch, m, n, k, ta, tb, type,
                act, e, err);
    CHECK(e <= bound);
    free(A), free(B), free(C), free(bs);
}

static void check_call(struct gpuq_cpu_gemm *g, int batch, int m, int n, int k, int ta, int tb,
                       enum gpuq_cpu_gemm_type type, float alpha, int bias, enum gpuq_act act) {
    check_call_to(g, batch, m, n, k, ta, tb, type, alpha, bias, act, GPUQ_CPU_GEMM_F32);
}

/* The encoder's attention: q, k, v of each head interleaved in rows of 3h. */
static void check_heads(struct gpuq_cpu_gemm *g, int n, int h, int heads) {
    unsigned st = 11;
    int64_t d = h / heads;
    float *qkv = fill((size_t)n * 3 * h, GPUQ_CPU_GEMM_F32, &st), *s = calloc((size_t)heads * n * n, sizeof *s);
    struct gpuq_cpu_gemm_args qk = {
        .batch = heads, .m = n, .n = n, .k = d, .type = GPUQ_CPU_GEMM_F32,
        .a = qkv, .a_row = 3 * h, .a_col = 1, .a_batch = d, .b = qkv + h, .b_row = 1, .b_col = 3 * h,
        .b_batch = d, .c = s, .c_row = n, .c_col = 1, .c_batch = (int64_t)n * n, .alpha = 0.25f};
    char err[128];
    CHECK(gpuq_cpu_gemm_run(g, &qk, err, sizeof(err)) == 0);
    CHECK(error(&qk) <= 1e-5);
    free(qkv), free(s);
}

/* accumulate: c += the call's product and bias, as the encoder's residual
 * layers add themselves to their input; against the same call into zeros. */
static void check_accumulate(struct gpuq_cpu_gemm *g, int m, enum gpuq_cpu_gemm_type type) {
    unsigned st = (unsigned)m;
    int n = 24, k = 40;
    void *A = fill((size_t)m * k, type, &st), *B = fill((size_t)n * k, type, &st);
    float *bias = fill((size_t)n, GPUQ_CPU_GEMM_F32, &st), *res = fill((size_t)m * n, GPUQ_CPU_GEMM_F32, &st);
    float *plain = calloc((size_t)m * n, sizeof(float)), *sum = malloc((size_t)m * n * sizeof(float));
    memcpy(sum, res, (size_t)m * n * sizeof(float));
    struct gpuq_cpu_gemm_args a = {.batch = 1, .m = m, .n = n, .k = k, .type = type, .a = A, .a_row = k, .a_col = 1,
                                   .b = B, .b_row = 1, .b_col = k, .c = plain, .c_row = n, .c_col = 1, .alpha = 1,
                                   .bias = bias};
    char err[128];
    CHECK(gpuq_cpu_gemm_run(g, &a, err, sizeof(err)) == 0);
    a.c = sum, a.accumulate = 1;
    CHECK(gpuq_cpu_gemm_run(g, &a, err, sizeof(err)) == 0);
    double worst = 0;
    for (int i = 0; i < m * n; i++) worst = fmax(worst, fabs(sum[i] - (res[i] + plain[i])) / (fabs(res[i]) + 1));
    CHECK(worst <= 1e-6);
    free(A), free(B), free(bias), free(res), free(plain), free(sum);
}

int main(void) {
    char err[128];
    gpuq_cpu_gemm_threads(1);
    struct gpuq_cpu_gemm *g = gpuq_cpu_gemm_create(err, sizeof(err));
    CHECK(g != NULL);
    if (!g) return check_done("test_cpu_gemm");
    char about[96];
    gpuq_cpu_gemm_describe(g, GPUQ_CPU_GEMM_F32, about, sizeof(about));
    printf("  %s, bf16 matmul: %s\n", about, gpuq_cpu_gemm_has_bf16(g) ? "yes" : "no");
    int types = gpuq_cpu_gemm_has_bf16(g) ? 2 : 1;
    for (int t = 0; t < types; t++) {
        enum gpuq_cpu_gemm_type type = (enum gpuq_cpu_gemm_type)t;
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) check_call(g, 1, 7, 5, 3, ta, tb, type, 1.0f, 0, GPUQ_ACT_NONE);
        check_call(g, 1, 33, 1, 65, 1, 1, type, 0.5f, 0, GPUQ_ACT_NONE);
        check_call(g, 3, 9, 17, 16, 0, 1, type, 1.0f, 0, GPUQ_ACT_NONE);
        for (int act = GPUQ_ACT_NONE; act <= GPUQ_ACT_TANH; act++)
            check_call(g, 1, 12, 40, 24, 0, 1, type, 1.0f, 1, (enum gpuq_act)act);
        /* past FIXED_ROWS: a fixed-size part and a rest, twice (the cache) */
        for (int i = 0; i < 2; i++) check_call(g, 1, 300, 48, 32, 0, 1, type, 1.0f, 1, GPUQ_ACT_GELU);
        check_call(g, 1, 256, 24, 16, 0, 1, type, 1.0f, 1, GPUQ_ACT_NONE);
        /* bf16 out, as the encoder's GELU output: within one bf16 rounding */
        if (type == GPUQ_CPU_GEMM_BF16)
            for (int m = 12; m <= 300; m += 288)
                check_call_to(g, 1, m, 40, 24, 0, 1, type, 1.0f, 1, GPUQ_ACT_GELU, GPUQ_CPU_GEMM_BF16);
    }
    check_heads(g, 13, 64, 4);
    for (int t = 0; t < types; t++)
        for (int m = 7; m <= 300; m += 293) check_accumulate(g, m, (enum gpuq_cpu_gemm_type)t);
    /* no terms: bias through the activation; no rows or columns: nothing */
    float bias[3] = {-1, 0, 2}, c[6] = {9, 9, 9, 9, 9, 9};
    struct gpuq_cpu_gemm_args none = {.batch = 1, .m = 2, .n = 3, .k = 0, .type = GPUQ_CPU_GEMM_F32, .a = c,
                                      .a_row = 1, .a_col = 1, .b = c, .b_row = 1, .b_col = 1, .c = c,
                                      .c_row = 3, .c_col = 1, .alpha = 1, .bias = bias, .act = GPUQ_ACT_RELU};
    CHECK(gpuq_cpu_gemm_run(g, &none, err, sizeof(err)) == 0 && c[0] == 0 && c[2] == 2 && c[5] == 2);
    none.m = 0, c[0] = 9;
    CHECK(gpuq_cpu_gemm_run(g, &none, err, sizeof(err)) == 0 && c[0] == 9);
    /* bf16 conversion: nearest even, infinities kept, NaN kept a NaN */
    float in[5] = {1.0f + 1.0f / 256, 1.0f + 3.0f / 256, INFINITY, NAN, 3.4e38f};
    uint16_t out[5];
    gpuq_cpu_gemm_to_bf16(in, 5, out);
    for (int i = 0; i < 5; i++) {
        float back = at(out, GPUQ_CPU_GEMM_BF16, i);
        CHECK(isnan(in[i]) ? isnan(back) : back == gpuq_round_bf16(in[i]));
    }
    gpuq_cpu_gemm_destroy(g);
    gpuq_cpu_gemm_destroy(NULL);
    return check_done("test_cpu_gemm");
}
