/* twin.c -- a backend against its CPU twin, op by op, on the same fresh
 * random inputs, packed back to back as the worker packs a batch. A worker
 * runs the small set at start and serves an op that disagrees on the CPU;
 * the tests run the large set. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"

static const char *kernel_names[GPUQ_K_COUNT] = {"matmul", "mlp", "knn", "softmax", "layernorm",
                                                 "image_preprocess"};

const char *gpuq_kernel_name(enum gpuq_kernel k) { return kernel_names[k]; }

/* Uniform in [-1, 1); deterministic, so a failure can be replayed. */
static float rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

static float *rnd_floats(size_t n, unsigned *s) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = rnd(s);
    return p;
}

double gpuq_twin_err(const float *x, const float *want, size_t n, int scaled) {
    double worst = 0, top = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - want[i]) / (scaled ? 1.0 : 1.0 + fabs(want[i]));
        if (!(d <= worst)) worst = d;
        if (fabs(want[i]) > top) top = fabs(want[i]);
    }
    return scaled && top > 0 ? worst / top : worst;
}

struct run {
    struct gpuq_backend *be, *cpu;
    struct gpuq_twin *out;
    unsigned seed;
    int large;
};

/* Notes the outcome of one op of be: rc from its call (then its sync). */
static int ran(struct run *r, enum gpuq_kernel k, int rc) {
    if (rc == 0 && r->be->iface->sync) rc = r->be->iface->sync(r->be, 0);
    if (rc != 0 && !(r->out->failed & (1u << k)))
        snprintf(r->out->why, sizeof(r->out->why), "%s: %s", kernel_names[k], r->be->errstr);
    if (rc != 0) r->out->failed |= 1u << k;
    return rc;
}

static void note(struct run *r, enum gpuq_kernel k, double err) {
    if (!(err <= r->out->err[k])) r->out->err[k] = err;
    if (!(err <= r->out->tol[k])) r->out->failed |= 1u << k;
}

static void twin_matmul(struct run *r) {
    static const int small[][6] = {{3, 5, 7, 2, 0, 1}, {4, 4, 4, 3, 1, 0}};
    static const int large[][6] = {     /* m, n, k, count, trans_a, trans_b */
        {7, 5, 3, 4, 0, 0}, {16, 32, 8, 2, 1, 0}, {33, 1, 65, 3, 1, 1}, {128, 96, 256, 2, 0, 1}};
    const int(*s)[6] = r->large ? large : small;
    int ng = r->large ? 4 : 2;
    struct gpuq_matmul g[4];
    size_t fa = 0, fb = 0, fc = 0;
    for (int i = 0; i < ng; i++) {
        fa += (size_t)s[i][3] * s[i][0] * s[i][2];
        fb += (size_t)s[i][3] * s[i][2] * s[i][1];
        fc += (size_t)s[i][3] * s[i][0] * s[i][1];
    }
    float *a = rnd_floats(fa, &r->seed), *b = rnd_floats(fb, &r->seed);
    float *c = calloc(fc, sizeof(float)), *want = calloc(fc, sizeof(float));
    int rc = 0;
    for (int pass = 0; a && b && c && want && rc == 0 && pass < 2; pass++) {
        size_t oa = 0, ob = 0, oc = 0;
        for (int i = 0; i < ng; i++) {
            const int *d = s[i];
            g[i] = (struct gpuq_matmul){d[4], d[5], d[0], d[1], d[2], d[3], i % 2 ? 0.5f : 1.0f, a + oa,
                                        (int64_t)d[0] * d[2], b + ob, (int64_t)d[2] * d[1],
                                        (pass ? want : c) + oc};
            oa += (size_t)d[3] * d[0] * d[2], ob += (size_t)d[3] * d[2] * d[1], oc += (size_t)d[3] * d[0] * d[1];
        }
        rc = pass ? r->cpu->iface->matmul(r->cpu, g, ng) : ran(r, GPUQ_K_MATMUL, r->be->iface->matmul(r->be, g, ng));
    }
    if (rc == 0) note(r, GPUQ_K_MATMUL, gpuq_twin_err(c, want, fc, 0));
    free(a), free(b), free(c), free(want);
}

static void twin_mlp(struct run *r) {
    int widths[3] = {32, 64, 16}, rows = 8;
    if (r->large) widths[0] = 256, widths[1] = 512, widths[2] = 128, rows = 100;
    struct gpuq_mlp_layer layers[2];
    struct gpuq_model m = {.kind = GPUQ_MODEL_MLP, .n_layers = 2, .layers = layers,
                           .act = GPUQ_ACT_GELU, .max_width = widths[1]};
    for (int l = 0; l < 2; l++) {
        layers[l] = (struct gpuq_mlp_layer){widths[l], widths[l + 1],
                                            rnd_floats((size_t)widths[l] * widths[l + 1], &r->seed),
                                            rnd_floats((size_t)widths[l + 1], &r->seed)};
    }
    float *x = rnd_floats((size_t)rows * widths[0], &r->seed);
    float *y = calloc((size_t)rows * widths[2], sizeof(float)), *want = calloc((size_t)rows * widths[2], sizeof(float));
    enum gpuq_precision saved = r->cpu->precision;
    r->cpu->precision = r->be->precision;
    /* the CPU rounds the host weights in place first: both start from them */
    if (x && y && want && layers[0].w && layers[0].b && layers[1].w && layers[1].b &&
        r->cpu->iface->model_load(r->cpu, &m) == 0 && ran(r, GPUQ_K_MLP, r->be->iface->model_load(r->be, &m)) == 0) {
        if (ran(r, GPUQ_K_MLP, r->be->iface->mlp(r->be, &m, x, rows, y)) == 0 &&
            r->cpu->iface->mlp(r->cpu, &m, x, rows, want) == 0)
            note(r, GPUQ_K_MLP, gpuq_twin_err(y, want, (size_t)rows * widths[2], r->be->precision != GPUQ_PREC_F32));
        r->be->iface->model_free(r->be, &m);
    }
    r->cpu->precision = saved;
    for (int l = 0; l < 2; l++) free(layers[l].w), free(layers[l].b);
    free(x), free(y), free(want);
}

static void twin_knn(struct run *r) {
    int n = r->large ? 40000 : 20000, d = r->large ? 64 : 8, rows = r->large ? 33 : 3;
    static const int ks_small[] = {1, 20}, ks_large[] = {1, 100, 4096};
    struct gpuq_model ix = {.kind = GPUQ_MODEL_INDEX, .n_rows = n, .dim = d};
    ix.embeddings = rnd_floats((size_t)n * d, &r->seed);
    ix.norms = malloc((size_t)n * sizeof(float));
    float *q = rnd_floats((size_t)rows * d, &r->seed);
    size_t most = (size_t)rows * 4096;
    float *s1 = malloc(most * sizeof(float)), *s2 = malloc(most * sizeof(float));
    int64_t *i1 = malloc(most * sizeof(int64_t)), *i2 = malloc(most * sizeof(int64_t));
    if (!ix.embeddings || !ix.norms || !q || !s1 || !s2 || !i1 || !i2) goto out;
    for (int e = 0; e < n; e++) {
        double n2 = 0;
        for (int j = 0; j < d; j++) n2 += (double)ix.embeddings[(size_t)e * d + j] * ix.embeddings[(size_t)e * d + j];
        ix.norms[e] = (float)sqrt(n2);
    }
    if (ran(r, GPUQ_K_KNN, r->be->iface->model_load(r->be, &ix)) != 0) goto out;
    for (int ki = 0; ki < (r->large ? 3 : 2); ki++)
        for (int metric = GPUQ_METRIC_COSINE; metric <= GPUQ_METRIC_L2; metric++) {
            int k = r->large ? ks_large[ki] : ks_small[ki];
            struct gpuq_knn a = {&ix, (enum gpuq_metric)metric, k, q, rows, i1, s1}, b = a;
            b.indices = i2, b.scores = s2;
            if (ran(r, GPUQ_K_KNN, r->be->iface->knn(r->be, &a)) != 0 || r->cpu->iface->knn(r->cpu, &b) != 0)
                break;
            /* near-equal scores may swap places; each rank's score must match */
            for (size_t j = 0; j < (size_t)rows * k; j++)
                if (i1[j] < 0 || i1[j] >= n) note(r, GPUQ_K_KNN, INFINITY);
            note(r, GPUQ_K_KNN, gpuq_twin_err(s1, s2, (size_t)rows * k, 0));
        }
    r->be->iface->model_free(r->be, &ix);
out:
    free(ix.embeddings), free(ix.norms), free(q), free(s1), free(s2), free(i1), free(i2);
}

static void twin_rows(struct run *r) {
    int rows = r->large ? 17 : 3, cols = r->large ? 1000 : 100, sets[17];
    float *x = rnd_floats((size_t)rows * cols, &r->seed), *g = rnd_floats(3 * (size_t)cols, &r->seed);
    float *b = rnd_floats(3 * (size_t)cols, &r->seed), eps[3] = {1e-5f, 1e-3f, 0.1f};
    float *y = malloc(sizeof(float) * rows * cols), *want = malloc(sizeof(float) * rows * cols);
    if (x && g && b && y && want) {
        for (int j = 0; j < cols; j++) x[j] *= 50.0f;      /* large logits */
        if (ran(r, GPUQ_K_SOFTMAX, r->be->iface->softmax(r->be, x, rows, cols, y)) == 0 &&
            r->cpu->iface->softmax(r->cpu, x, rows, cols, want) == 0)
            note(r, GPUQ_K_SOFTMAX, gpuq_twin_err(y, want, (size_t)rows * cols, 0));
        for (int i = 0; i < rows; i++) sets[i] = i % 3;
        struct gpuq_layernorm ln = {x, rows, cols, sets, g, b, eps, y}, lw = ln;
        lw.y = want;
        if (ran(r, GPUQ_K_LAYERNORM, r->be->iface->layernorm(r->be, &ln)) == 0 &&
            r->cpu->iface->layernorm(r->cpu, &lw) == 0)
            note(r, GPUQ_K_LAYERNORM, gpuq_twin_err(y, want, (size_t)rows * cols, 0));
    }
    free(x), free(g), free(b), free(y), free(want);
}

static void twin_image(struct run *r) {
    static const int small[][5] = {{7, 5, 3, 4, 6}, {20, 30, 1, 9, 7}};
    static const int large[][5] = {{480, 640, 3, 224, 224}, {31, 17, 1, 64, 80}, {224, 224, 3, 224, 224},
                                   {5, 1000, 4, 3, 999}, {2, 2, 3, 1, 1}};
    const int(*dims)[5] = r->large ? large : small;
    int n = r->large ? 5 : 2;
    struct gpuq_image a[5], b[5];
    size_t src = 0, dst = 0;
    for (int i = 0; i < n; i++) {
        src += (size_t)dims[i][0] * dims[i][1] * dims[i][2];
        dst += (size_t)dims[i][2] * dims[i][3] * dims[i][4];
    }
    unsigned char *pix = malloc(src);
    float *y = malloc(dst * sizeof(float)), *want = malloc(dst * sizeof(float));
    float mean[4] = {0.485f, 0.456f, 0.406f, 0.5f}, std[4] = {0.229f, 0.224f, 0.225f, 0.5f};
    if (pix && y && want) {
        for (size_t j = 0; j < src; j++) pix[j] = (unsigned char)((rnd(&r->seed) + 1) * 127.9f);
        size_t so = 0, d0 = 0;
        for (int i = 0; i < n; i++) {
            const int *d = dims[i];
            a[i] = (struct gpuq_image){pix + so, d[0], d[1], d[2], d[3], d[4], mean, std, y + d0};
            b[i] = a[i];
            b[i].dst = want + d0;
            so += (size_t)d[0] * d[1] * d[2], d0 += (size_t)d[2] * d[3] * d[4];
        }
        if (ran(r, GPUQ_K_IMAGE, r->be->iface->image(r->be, a, n)) == 0 &&
            r->cpu->iface->image(r->cpu, b, n) == 0)
            note(r, GPUQ_K_IMAGE, gpuq_twin_err(y, want, dst, 0));
    }
    free(pix), free(y), free(want);
}

void gpuq_twin_check(struct gpuq_backend *be, struct gpuq_backend *cpu, int large,
                     struct gpuq_twin *out) {
    static const double tol[GPUQ_K_COUNT] = {1e-5, 1e-4, 1e-4, 1e-5, 1e-4, 1e-5};
    memset(out, 0, sizeof(*out));
    memcpy(out->tol, tol, sizeof(tol));
    /* reduced precision: a rounding that falls the other way moves an
     * element by a step of the next layer's input */
    if (be->precision == GPUQ_PREC_BF16) out->tol[GPUQ_K_MLP] = 1e-2;
    if (be->precision == GPUQ_PREC_F16) out->tol[GPUQ_K_MLP] = 2e-3;
    struct run r = {be, cpu, out, 2024, large};
    const struct gpuq_backend_i *i = be->iface;
    if (i->matmul) twin_matmul(&r);
    if (i->mlp) twin_mlp(&r);
    if (i->knn) twin_knn(&r);
    if (i->softmax && i->layernorm) twin_rows(&r);
    if (i->image) twin_image(&r);
}
