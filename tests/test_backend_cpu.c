/* test_backend_cpu.c -- the CPU backend against plain C references, its
 * reduced-precision mlp, and the twin check the CUDA test and the worker's
 * start-up use. */
#include "ops_ref.h"
#include "base/tensor.h"
#include "ops/op.h"

/* bf16 and f16 rounding: nearest, ties to even, overflow to infinity. */
static void check_rounding(void) {
    CHECK(gpuq_round_bf16(1.0f + 1.0f / 256) == 1.0f);              /* a tie: to even */
    CHECK(gpuq_round_bf16(1.0f + 3.0f / 256) == 1.0f + 4.0f / 256);  /* a tie: to even */
    CHECK(gpuq_round_bf16(1.0f + 1.0f / 128 + 1.0f / 1024) == 1.0f + 1.0f / 128);
    CHECK(gpuq_round_bf16(-3.0f) == -3.0f);
    CHECK(isinf(gpuq_round_bf16(INFINITY)) && isnan(gpuq_round_bf16(NAN)));
    CHECK(gpuq_round_f16(1.0f + 1.0f / 2048) == 1.0f);
    CHECK(gpuq_round_f16(1.0f + 3.0f / 2048) == 1.0f + 4.0f / 2048);
    CHECK(gpuq_round_f16(65519.0f) == 65504.0f);
    CHECK(isinf(gpuq_round_f16(65520.0f)) && gpuq_round_f16(-65520.0f) < 0);
    CHECK(gpuq_round_f16(5.9604645e-8f) == 5.9604645e-8f);   /* the smallest subnormal */
    CHECK(gpuq_round_f16(2.9e-8f) == 0.0f);
    CHECK(gpuq_round_f16(0.1f) == gpuq_f16_to_f32(0x2e66));
}

/* A softmax one element of which is off by 10^-4: what the twin check
 * must catch. */
static int off_softmax(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_softmax *a = l->args;
    int rc = gpuq_op_table[GPUQ_OP_SOFTMAX]->kernel[GPUQ_BACKEND_CPU](be, l);
    a->y[a->rows * a->cols / 2] += 1e-4f;
    return rc;
}

static int lost_image(struct gpuq_backend *be, const struct gpuq_launch *l) {
    (void)l;
    snprintf(be->errstr, sizeof(be->errstr), "no device");
    return GPUQ_BE_LOST;
}

/* layernorm with its mean and variance summed in f32, and cosine knn with
 * |q|^2 summed in f32 (so a row past 1.8e19 per component scores 0): what
 * the CUDA kernels once did, and the twin inputs must catch. */
static int f32_layernorm(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_layernorm *ln = l->args;
    (void)be;
    for (int r = 0; r < ln->rows; r++) {
        const float *in = ln->x + (size_t)r * ln->cols;
        const float *g = ln->gamma + (size_t)ln->row_set[r] * ln->cols;
        const float *b = ln->beta + (size_t)ln->row_set[r] * ln->cols;
        float mean = 0, var = 0;
        for (int j = 0; j < ln->cols; j++) mean += in[j];
        mean /= ln->cols;
        for (int j = 0; j < ln->cols; j++) var += (in[j] - mean) * (in[j] - mean);
        var /= ln->cols;
        float inv = 1.0f / sqrtf(var + ln->eps[ln->row_set[r]]);
        for (int j = 0; j < ln->cols; j++) ln->y[(size_t)r * ln->cols + j] = (in[j] - mean) * inv * g[j] + b[j];
    }
    return 0;
}

static int f32_knn(struct gpuq_backend *be, const struct gpuq_launch *l) {
    struct gpuq_knn a = *(const struct gpuq_knn *)l->args;
    int d = gpuq_model_in_dim(a.index);
    float *q = malloc((size_t)a.rows * d * sizeof(float));
    memcpy(q, a.q, (size_t)a.rows * d * sizeof(float));
    for (int r = 0; r < a.rows; r++) {
        float s = 0;
        for (int j = 0; j < d; j++) s += q[r * d + j] * q[r * d + j];
        if (a.metric == GPUQ_METRIC_COSINE && isinf(s)) memset(q + (size_t)r * d, 0, (size_t)d * sizeof(float));
    }
    a.q = q;
    struct gpuq_launch l2 = {l->op, l->rows, &a};
    int rc = gpuq_op_table[GPUQ_OP_KNN]->kernel[GPUQ_BACKEND_CPU](be, &l2);
    free(q);
    return rc;
}

/* The twin check, CPU against CPU: it runs clean (under the sanitizers
 * too) before a GPU sees it; and it catches an op that is slightly off,
 * or that fails, and only that op. */
static void check_twin_check(void) {
    struct gpuq_backend a, b;
    char err[128];
    CHECK(gpuq_backend_create(&a, "cpu", 0, err, sizeof(err)) == 0);
    CHECK(gpuq_backend_create(&b, "cpu", 0, err, sizeof(err)) == 0);
    struct gpuq_twin t;
    for (int large = 0; large < 2; large++) {
        gpuq_twin_check(&a, &b, large, &t);
        check_twin(&t);
    }
    /* in reduced precision the CPU twin rounds as the backend does (the
     * same code here: no error at all), with the precision's tolerance */
    for (int p = GPUQ_PREC_BF16; p <= GPUQ_PREC_F16; p++) {
        a.precision = (enum gpuq_precision)p;
        gpuq_twin_check(&a, &b, 0, &t);
        CHECK(t.failed == 0 && t.err[GPUQ_OP_MLP] == 0 && t.err[GPUQ_OP_EMBED] == 0);
        CHECK(t.tol[GPUQ_OP_EMBED] > gpuq_op_table[GPUQ_OP_EMBED]->tol && b.precision == GPUQ_PREC_F32);
    }
    a.precision = GPUQ_PREC_F32;
    gpuq_kernel_fn *good[GPUQ_OP_COUNT];
    memcpy(good, a.kernel, sizeof(good));
    a.kernel[GPUQ_OP_SOFTMAX] = off_softmax;
    a.kernel[GPUQ_OP_IMAGE_PREPROCESS] = lost_image;
    gpuq_twin_check(&a, &b, 0, &t);
    CHECK(t.failed == (1u << GPUQ_OP_SOFTMAX | 1u << GPUQ_OP_IMAGE_PREPROCESS));
    CHECK(t.err[GPUQ_OP_SOFTMAX] > 5e-5 && t.err[GPUQ_OP_SOFTMAX] < 2e-4 && strstr(t.why, "image_preprocess: no device"));
    memcpy(a.kernel, good, sizeof(good));
    a.kernel[GPUQ_OP_LAYERNORM] = f32_layernorm;
    a.kernel[GPUQ_OP_KNN] = f32_knn;
    for (int large = 0; large < 2; large++) {
        gpuq_twin_check(&a, &b, large, &t);
        printf("  f32 sums (%s set): layernorm error %.3g, knn error %.3g\n", large ? "large" : "small",
               t.err[GPUQ_OP_LAYERNORM], t.err[GPUQ_OP_KNN]);
        CHECK(t.failed == (1u << GPUQ_OP_LAYERNORM | 1u << GPUQ_OP_KNN));
    }
    memcpy(a.kernel, good, sizeof(good));
    gpuq_backend_destroy(&a);
    gpuq_backend_destroy(&b);
}

/* One layer, so the reference is exact: y = round(x) . round(W)^T + b in
 * double. Then two layers against f32: reduced precision must move the
 * result, but only within the bound docs/protocol.md states. */
static void check_precision(struct gpuq_backend *be, enum gpuq_precision p, double bound) {
    unsigned seed = 11;
    float (*round)(float) = p == GPUQ_PREC_BF16 ? gpuq_round_bf16 : gpuq_round_f16;
    static const int one[] = {64, 48}, two[] = {256, 1024, 256};
    struct gpuq_model m;
    int rows = 9;
    rand_mlp(&m, one, 1, GPUQ_ACT_NONE, &seed);
    float *x = rand_floats((size_t)rows * 256, &seed), *y = calloc((size_t)rows * 256, sizeof(float));
    float *want = calloc((size_t)rows * 256, sizeof(float));
    float *w0 = malloc(64 * 48 * sizeof(float));
    memcpy(w0, gpuq_model_mlp(&m)->layers[0].w, 64 * 48 * sizeof(float));
    be->precision = p;
    CHECK(be->iface->model_load(be, &m) == 0);
    struct gpuq_mlp_args args = {&m, x, rows, y};
    CHECK(gpuq_backend_run(be, GPUQ_OP_MLP, rows, &args) == 0);
    double err = 0;
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < 48; o++) {
            double s = gpuq_model_mlp(&m)->layers[0].b[o];
            for (int i = 0; i < 64; i++) s += (double)round(x[r * 64 + i]) * round(w0[o * 64 + i]);
            err = fmax(err, fabs(y[r * 48 + o] - s) / (1 + fabs(s)));
        }
    printf("  one layer, %s: error %.3g against the exact rounded product\n", gpuq_precision_name(p), err);
    CHECK(err <= 1e-5);
    gpuq_model_free(&m);
    /* two layers: against f32 */
    rand_mlp(&m, two, 2, GPUQ_ACT_RELU, &seed);
    be->precision = GPUQ_PREC_F32;
    args = (struct gpuq_mlp_args){&m, x, rows, want};
    CHECK(gpuq_backend_run(be, GPUQ_OP_MLP, rows, &args) == 0);
    be->precision = p;
    CHECK(be->iface->model_load(be, &m) == 0);
    args = (struct gpuq_mlp_args){&m, x, rows, y};
    CHECK(gpuq_backend_run(be, GPUQ_OP_MLP, rows, &args) == 0);
    err = gpuq_twin_err(y, want, (size_t)rows * 256, 1);
    printf("  256-1024-256 relu, %s: error %.3g of the largest output against f32 (bound %.3g)\n",
           gpuq_precision_name(p), err, bound);
    CHECK(err > 0 && err <= bound);
    be->precision = GPUQ_PREC_F32;
    gpuq_model_free(&m);
    free(x), free(y), free(want), free(w0);
}

int main(void) {
    struct gpuq_backend be;
    char err[128];
    CHECK(gpuq_backend_create(&be, "cpu", 0, err, sizeof(err)) == 0);
    CHECK(strcmp(be.iface->name, "cpu") == 0);
    check_backend(&be, 5e-5);   /* f32 sums against a double reference */
    check_backend_rows(&be, 5e-5);
    check_rounding();
    check_precision(&be, GPUQ_PREC_BF16, 1e-2);
    check_precision(&be, GPUQ_PREC_F16, 2e-3);
    check_twin_check();
    gpuq_backend_destroy(&be);
    CHECK(gpuq_backend_create(&be, "tpu", 0, err, sizeof(err)) == -1);
    CHECK(strstr(err, "unknown backend") != NULL);
    /* auto always gives a working backend */
    CHECK(gpuq_backend_create(&be, "auto", 0, err, sizeof(err)) == 0 && be.iface != NULL);
    gpuq_backend_destroy(&be);
    /* scalar activations */
    CHECK_CLOSE(gpuq_act_apply(GPUQ_ACT_GELU, 1.0f), 0.8413447, 1e-6);
    CHECK_CLOSE(gpuq_act_apply(GPUQ_ACT_SILU, 2.0f), 1.7615942, 1e-6);
    CHECK(gpuq_act_apply(GPUQ_ACT_RELU, -3.0f) == 0.0f);
    CHECK_CLOSE(gpuq_act_apply(GPUQ_ACT_TANH, 0.5f), 0.46211716, 1e-6);
    return check_done("test_backend_cpu");
}
