/* twin.h -- one backend against its CPU twin on fresh random inputs, larger
 * than the reference checks use: knn across several index blocks up to the
 * largest k, long rows, mixed matmul shapes in one grouped call, images up
 * and down, and mlp in every precision. Each input is packed back to back,
 * as the worker packs a batch. */
#ifndef GPUQ_TWIN_H
#define GPUQ_TWIN_H

#include "ops_ref.h"
#include "kernels/tensor.h"

/* Largest |x - want| / (1 + |want|). */
static inline double twin_err(const float *x, const float *want, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - want[i]) / (1.0 + fabs(want[i]));
        if (!(d <= worst)) worst = d;   /* NaN counts as worst */
    }
    return worst;
}

/* Largest |x - want| over the largest |want|: for results whose small
 * elements come from cancellation, where an element's own size says little. */
static inline double twin_scaled_err(const float *x, const float *want, size_t n) {
    double worst = 0, top = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - want[i]);
        if (!(d <= worst)) worst = d;
        if (fabs(want[i]) > top) top = fabs(want[i]);
    }
    return top > 0 ? worst / top : worst;
}

static inline void twin_report(const char *what, double err, double tol) {
    printf("  %-34s max error %.3g (tolerance %.3g)\n", what, err, tol);
    CHECK(err <= tol);
}

static inline void twin_matmul(struct gpuq_backend *be, struct gpuq_backend *cpu, unsigned *seed) {
    static const int shapes[][6] = {    /* m, n, k, count, trans_a, trans_b */
        {7, 5, 3, 4, 0, 0}, {16, 32, 8, 2, 1, 0}, {33, 1, 65, 3, 1, 1}, {128, 96, 256, 2, 0, 1}};
    enum { NG = 4 };
    struct gpuq_matmul g[NG];
    size_t fa = 0, fb = 0, fc = 0;
    for (int i = 0; i < NG; i++) {
        const int *s = shapes[i];
        fa += (size_t)s[3] * s[0] * s[2], fb += (size_t)s[3] * s[2] * s[1], fc += (size_t)s[3] * s[0] * s[1];
    }
    float *a = rand_floats(fa, seed), *b = rand_floats(fb, seed);
    float *c = calloc(fc, sizeof(float)), *want = calloc(fc, sizeof(float));
    for (int pass = 0; pass < 2; pass++) {
        size_t oa = 0, ob = 0, oc = 0;
        for (int i = 0; i < NG; i++) {
            const int *s = shapes[i];
            g[i] = (struct gpuq_matmul){s[4], s[5], s[0], s[1], s[2], s[3], i % 2 ? 0.5f : 1.0f,
                                        a + oa, (int64_t)s[0] * s[2], b + ob, (int64_t)s[2] * s[1],
                                        (pass ? want : c) + oc};
            oa += (size_t)s[3] * s[0] * s[2], ob += (size_t)s[3] * s[2] * s[1], oc += (size_t)s[3] * s[0] * s[1];
        }
        struct gpuq_backend *on = pass ? cpu : be;
        CHECK(on->iface->matmul(on, g, NG) == 0 && be_sync(on) == 0);
    }
    twin_report("matmul, 4 shapes in one call", twin_err(c, want, fc), 1e-5);
    free(a), free(b), free(c), free(want);
}

static inline void twin_mlp(struct gpuq_backend *be, struct gpuq_backend *cpu, enum gpuq_precision p,
                            double tol, unsigned *seed) {
    static const int widths[] = {256, 512, 128};
    int rows = 100;
    struct gpuq_model m;
    rand_mlp(&m, widths, 2, GPUQ_ACT_GELU, seed);
    be->precision = cpu->precision = p;
    /* the CPU rounds the host weights in place first: both start from them */
    CHECK(cpu->iface->model_load(cpu, &m) == 0 && be->iface->model_load(be, &m) == 0);
    float *x = rand_floats((size_t)rows * 256, seed);
    float *y = calloc((size_t)rows * 128, sizeof(float)), *want = calloc((size_t)rows * 128, sizeof(float));
    CHECK(be->iface->mlp(be, &m, x, rows, y) == 0 && be_sync(be) == 0);
    CHECK(cpu->iface->mlp(cpu, &m, x, rows, want) == 0);
    char what[64];
    snprintf(what, sizeof(what), "mlp 256-512-128 gelu, %s", gpuq_precision_name(p));
    /* reduced precision: a rounding that falls the other way between the
     * two moves an element by a step of the next layer's input */
    twin_report(what, p == GPUQ_PREC_F32 ? twin_err(y, want, (size_t)rows * 128)
                                         : twin_scaled_err(y, want, (size_t)rows * 128), tol);
    be->iface->model_free(be, &m);
    cpu->iface->model_free(cpu, &m);
    gpuq_model_free(&m);
    be->precision = cpu->precision = GPUQ_PREC_F32;
    free(x), free(y), free(want);
}

static inline void twin_knn(struct gpuq_backend *be, struct gpuq_backend *cpu, unsigned *seed) {
    enum { N = 40000, D = 64, ROWS = 33 };
    struct gpuq_model ix = {.kind = GPUQ_MODEL_INDEX, .n_rows = N, .dim = D};
    ix.embeddings = rand_floats((size_t)N * D, seed);
    ix.norms = malloc(N * sizeof(float));
    for (int r = 0; r < N; r++) {
        double n2 = 0;
        for (int j = 0; j < D; j++) n2 += (double)ix.embeddings[r * D + j] * ix.embeddings[r * D + j];
        ix.norms[r] = (float)sqrt(n2);
    }
    CHECK(be->iface->model_load(be, &ix) == 0);
    float *q = rand_floats((size_t)ROWS * D, seed);
    static const int ks[] = {1, 100, 4096};
    for (int ki = 0; ki < 3; ki++)
        for (int metric = GPUQ_METRIC_COSINE; metric <= GPUQ_METRIC_L2; metric++) {
            int k = ks[ki];
            size_t n = (size_t)ROWS * k;
            float *s1 = malloc(n * sizeof(float)), *s2 = malloc(n * sizeof(float));
            int64_t *i1 = malloc(n * sizeof(int64_t)), *i2 = malloc(n * sizeof(int64_t));
            struct gpuq_knn a = {&ix, (enum gpuq_metric)metric, k, q, ROWS, i1, s1};
            struct gpuq_knn b = {&ix, (enum gpuq_metric)metric, k, q, ROWS, i2, s2};
            CHECK(be->iface->knn(be, &a) == 0 && be_sync(be) == 0);
            CHECK(cpu->iface->knn(cpu, &b) == 0);
            /* a swapped pair of near-equal scores is no error; a wrong score is */
            int swapped = 0, bad = 0;
            for (size_t j = 0; j < n; j++) {
                if (i1[j] < 0 || i1[j] >= N) bad++;
                else if (i1[j] != i2[j]) swapped++;
            }
            char what[64];
            snprintf(what, sizeof(what), "knn k=%d metric %d (%d swapped)", k, metric, swapped);
            twin_report(what, bad ? INFINITY : twin_err(s1, s2, n), 1e-4);
            free(s1), free(s2), free(i1), free(i2);
        }
    be->iface->model_free(be, &ix);
    free(ix.embeddings), free(ix.norms), free(q);
}

static inline void twin_rows(struct gpuq_backend *be, struct gpuq_backend *cpu, unsigned *seed) {
    enum { ROWS = 17, COLS = 1000 };
    float *x = rand_floats((size_t)ROWS * COLS, seed);
    float *y = malloc(sizeof(float) * ROWS * COLS), *want = malloc(sizeof(float) * ROWS * COLS);
    for (int j = 0; j < COLS; j++) x[j] *= 50.0f;
    CHECK(be->iface->softmax(be, x, ROWS, COLS, y) == 0 && be_sync(be) == 0);
    CHECK(cpu->iface->softmax(cpu, x, ROWS, COLS, want) == 0);
    twin_report("softmax 17 x 1000", twin_err(y, want, (size_t)ROWS * COLS), 1e-5);
    int sets[ROWS];
    for (int r = 0; r < ROWS; r++) sets[r] = r % 3;
    float *g = rand_floats(3 * COLS, seed), *b = rand_floats(3 * COLS, seed), eps[3] = {1e-5f, 1e-3f, 0.1f};
    struct gpuq_layernorm ln = {x, ROWS, COLS, sets, g, b, eps, y}, lw = ln;
    lw.y = want;
    CHECK(be->iface->layernorm(be, &ln) == 0 && be_sync(be) == 0);
    CHECK(cpu->iface->layernorm(cpu, &lw) == 0);
    twin_report("layernorm 17 x 1000, 3 sets", twin_err(y, want, (size_t)ROWS * COLS), 1e-4);
    free(x), free(y), free(want), free(g), free(b);
}

static inline void twin_image(struct gpuq_backend *be, struct gpuq_backend *cpu, unsigned *seed) {
    static const int dims[][5] = {{480, 640, 3, 224, 224}, {31, 17, 1, 64, 80}, {224, 224, 3, 224, 224},
                                  {5, 1000, 4, 3, 999}, {2, 2, 3, 1, 1}};
    enum { N = 5 };
    struct gpuq_image a[N], b[N];
    size_t src = 0, dst = 0;
    for (int i = 0; i < N; i++) {
        src += (size_t)dims[i][0] * dims[i][1] * dims[i][2];
        dst += (size_t)dims[i][2] * dims[i][3] * dims[i][4];
    }
    unsigned char *pix = malloc(src);
    float *y = malloc(dst * sizeof(float)), *want = malloc(dst * sizeof(float));
    float mean[4] = {0.485f, 0.456f, 0.406f, 0.5f}, std[4] = {0.229f, 0.224f, 0.225f, 0.5f};
    for (size_t j = 0; j < src; j++) pix[j] = (unsigned char)((check_rand(seed) + 1) * 127.9f);
    size_t so = 0, d0 = 0;
    for (int i = 0; i < N; i++) {
        const int *d = dims[i];
        a[i] = (struct gpuq_image){pix + so, d[0], d[1], d[2], d[3], d[4], mean, std, y + d0};
        b[i] = a[i];
        b[i].dst = want + d0;
        so += (size_t)d[0] * d[1] * d[2], d0 += (size_t)d[2] * d[3] * d[4];
    }
    CHECK(be->iface->image(be, a, N) == 0 && be_sync(be) == 0);
    CHECK(cpu->iface->image(cpu, b, N) == 0);
    twin_report("image_preprocess, 5 sizes, one call", twin_err(y, want, dst), 1e-6);
    free(pix), free(y), free(want);
}

/* Every op of be against the CPU backend cpu. */
static inline void twin_all(struct gpuq_backend *be, struct gpuq_backend *cpu) {
    unsigned seed = 2024;
    twin_matmul(be, cpu, &seed);
    twin_mlp(be, cpu, GPUQ_PREC_F32, 1e-4, &seed);
    twin_mlp(be, cpu, GPUQ_PREC_BF16, 1e-2, &seed);
    twin_mlp(be, cpu, GPUQ_PREC_F16, 2e-3, &seed);
    twin_knn(be, cpu, &seed);
    twin_rows(be, cpu, &seed);
    twin_image(be, cpu, &seed);
}

#endif
