/* ops_ref.h -- plain C references the backends are checked against, and
 * a runner shared by the CPU and CUDA backend tests. */
#ifndef GPUQ_OPS_REF_H
#define GPUQ_OPS_REF_H

#include "check.h"
#include "kernels/backend.h"
#include "models/family.h"
#include "models/index/index.h"
#include "models/mlp/mlp.h"
#include "ops/image_preprocess.h"
#include "ops/knn.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/mlp.h"
#include "ops/softmax.h"
#include "ops/table.h"
#include "ops/twin.h"
#include "queue/job.h"

/* c = alpha * op(a) op(b), one matrix, in double */
static inline void ref_matmul(const struct gpuq_matmul *mm, const float *a, const float *b, float *c) {
    for (int i = 0; i < mm->m; i++)
        for (int j = 0; j < mm->n; j++) {
            double s = 0;
            for (int p = 0; p < mm->k; p++) {
                float x = mm->trans_a ? a[p * mm->m + i] : a[i * mm->k + p];
                float y = mm->trans_b ? b[j * mm->k + p] : b[p * mm->n + j];
                s += (double)x * y;
            }
            c[i * mm->n + j] = (float)(mm->alpha * s);
        }
}

static inline void ref_mlp(const struct gpuq_model *model, const float *x, int rows, float *y) {
    const struct gpuq_mlp *m = gpuq_model_mlp(model);
    float *in = malloc((size_t)rows * 4096 * sizeof(float)), *out = malloc((size_t)rows * 4096 * sizeof(float));
    memcpy(in, x, (size_t)rows * m->layers[0].d_in * sizeof(float));
    for (int l = 0; l < m->n_layers; l++) {
        const struct gpuq_mlp_layer *L = &m->layers[l];
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < L->d_out; o++) {
                double s = L->b[o];
                for (int i = 0; i < L->d_in; i++) s += (double)in[r * L->d_in + i] * L->w[o * L->d_in + i];
                out[r * L->d_out + o] = gpuq_act_apply(l == m->n_layers - 1 ? GPUQ_ACT_NONE : m->act, (float)s);
            }
        float *t = in;
        in = out;
        out = t;
    }
    memcpy(y, in, (size_t)rows * m->layers[m->n_layers - 1].d_out * sizeof(float));
    free(in);
    free(out);
}

/* A backend with streams has its outputs once the slot is synced. */
static inline int be_sync(struct gpuq_backend *be) {
    return be->iface->sync ? be->iface->sync(be, 0) : 0;
}

static inline float *rand_floats(size_t n, unsigned *seed) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = check_rand(seed);
    return p;
}

/* A random mlp with the given widths (widths[0] = d_in). */
static inline void rand_mlp(struct gpuq_model *model, const int *widths, int n_layers, enum gpuq_act act,
                     unsigned *seed) {
    memset(model, 0, sizeof(*model));
    struct gpuq_mlp *m = calloc(1, sizeof(*m));
    model->family = &gpuq_family_mlp;
    model->impl = m;
    m->n_layers = n_layers;
    m->act = act;
    m->layers = calloc((size_t)n_layers, sizeof(*m->layers));
    for (int l = 0; l < n_layers; l++) {
        m->layers[l].d_in = widths[l];
        m->layers[l].d_out = widths[l + 1];
        m->layers[l].w = rand_floats((size_t)widths[l] * widths[l + 1], seed);
        m->layers[l].b = rand_floats((size_t)widths[l + 1], seed);
        if (widths[l + 1] > m->max_width) m->max_width = widths[l + 1];
    }
}

/* Checks be's matmul against ref_matmul for every transpose, a batch with
 * broadcast b, and awkward sizes; and its mlp for every activation.
 * tol is relative (f32 sums of different order differ). */
static inline void check_backend(struct gpuq_backend *be, double tol) {
    unsigned seed = 42;
    static const int sizes[][4] = {{1, 1, 1, 1}, {3, 5, 7, 2}, {17, 1, 33, 4}, {64, 48, 96, 3},
                                   {1, 300, 2, 1}, {129, 65, 31, 5}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
        for (int t = 0; t < 4; t++) {
            struct gpuq_matmul mm = {.trans_a = t & 1, .trans_b = t >> 1, .m = sizes[s][0],
                                     .n = sizes[s][1], .k = sizes[s][2], .count = sizes[s][3],
                                     .alpha = s % 2 ? 0.5f : 1.0f};
            size_t na = (size_t)mm.m * mm.k, nb = (size_t)mm.k * mm.n, nc = (size_t)mm.m * mm.n;
            int broadcast_b = s == 3;
            float *a = rand_floats(na * mm.count, &seed), *b = rand_floats(nb * mm.count, &seed);
            float *c = calloc(nc * mm.count, sizeof(float)), *want = calloc(nc, sizeof(float));
            mm.a = a, mm.b = b, mm.c = c;
            mm.stride_a = (int64_t)na;
            mm.stride_b = broadcast_b ? 0 : (int64_t)nb;
            struct gpuq_matmuls one = {&mm, 1};
            CHECK(gpuq_backend_run(be, GPUQ_OP_MATMUL, (int64_t)mm.count * mm.m, &one) == 0 &&
                  be_sync(be) == 0);
            double worst = 0;
            for (int i = 0; i < mm.count; i++) {
                ref_matmul(&mm, a + i * na, b + (broadcast_b ? 0 : i * nb), want);
                for (size_t j = 0; j < nc; j++) {
                    double d = fabs(c[i * nc + j] - want[j]) / (1.0 + fabs(want[j]));
                    if (d > worst) worst = d;
                }
            }
            if (worst > tol)
                fprintf(stderr, "  matmul %dx%dx%d trans %d: error %g\n", mm.m, mm.n, mm.k, t, worst);
            CHECK(worst <= tol);
            free(a), free(b), free(c), free(want);
        }
    static const int widths[][4] = {{16, 32, 8, 0}, {1, 1, 1, 0}, {300, 257, 3, 0}};
    for (int w = 0; w < 3; w++)
        for (int act = GPUQ_ACT_RELU; act <= GPUQ_ACT_TANH; act++) {
            struct gpuq_model m;
            int rows = w == 1 ? 1 : 37;
            rand_mlp(&m, widths[w], 2, (enum gpuq_act)act, &seed);
            CHECK(be->iface->model_load(be, &m) == 0);
            float *x = rand_floats((size_t)rows * widths[w][0], &seed);
            float *y = calloc((size_t)rows * widths[w][2], sizeof(float));
            float *want = calloc((size_t)rows * widths[w][2], sizeof(float));
            struct gpuq_mlp_args args = {&m, x, rows, y};
            CHECK(gpuq_backend_run(be, GPUQ_OP_MLP, rows, &args) == 0 && be_sync(be) == 0);
            ref_mlp(&m, x, rows, want);
            double worst = 0;
            for (int j = 0; j < rows * widths[w][2]; j++) {
                double d = fabs(y[j] - want[j]) / (1.0 + fabs(want[j]));
                if (d > worst) worst = d;
            }
            if (worst > tol) fprintf(stderr, "  mlp %d act %d: error %g\n", w, act, worst);
            CHECK(worst <= tol);
            be->iface->model_free(be, &m);
            gpuq_model_free(&m);
            free(x), free(y), free(want);
        }
}


/* ---- knn, softmax, layernorm, image ---- */

struct ref_hit {
    double s;
    int64_t i;
};

static int ref_lowest;
static int cmp_hit(const void *x, const void *y) {
    const struct ref_hit *a = x, *b = y;
    if (a->s != b->s) return (ref_lowest ? a->s < b->s : a->s > b->s) ? -1 : 1;
    return a->i < b->i ? -1 : 1;
}

static inline void check_knn(struct gpuq_backend *be, double tol, unsigned *seed) {
    struct gpuq_index ix = {.n_rows = 300, .dim = 16};
    struct gpuq_model model = {.name = "ix", .family = &gpuq_family_index, .impl = &ix};
    ix.embeddings = rand_floats(300 * 16, seed);
    memcpy(ix.embeddings + 16 * 7, ix.embeddings + 16 * 3, 16 * sizeof(float));   /* a tie */
    ix.norms = malloc(300 * sizeof(float));
    for (int r = 0; r < 300; r++) {
        double n2 = 0;
        for (int j = 0; j < 16; j++) n2 += (double)ix.embeddings[r * 16 + j] * ix.embeddings[r * 16 + j];
        ix.norms[r] = (float)sqrt(n2);
    }
    CHECK(be->iface->model_load(be, &model) == 0);
    int rows = 9, k = 7;
    float *q = rand_floats((size_t)rows * 16, seed), *scores = malloc((size_t)rows * k * sizeof(float));
    memcpy(q, ix.embeddings + 16 * 3, 16 * sizeof(float));    /* row 0 finds rows 3 and 7 */
    int64_t *idx = malloc((size_t)rows * k * sizeof(int64_t));
    struct ref_hit hits[300];
    for (int metric = GPUQ_METRIC_COSINE; metric <= GPUQ_METRIC_L2; metric++) {
        struct gpuq_knn args = {&model, (enum gpuq_metric)metric, k, q, rows, idx, scores, NULL, NULL};
        CHECK(gpuq_backend_run(be, GPUQ_OP_KNN, rows, &args) == 0 && be_sync(be) == 0);
        ref_lowest = metric == GPUQ_METRIC_L2;
        int bad = 0;
        for (int r = 0; r < rows; r++) {
            double qn = 0;
            for (int j = 0; j < 16; j++) qn += (double)q[r * 16 + j] * q[r * 16 + j];
            for (int e = 0; e < 300; e++) {
                double dot = 0, d2 = 0;
                for (int j = 0; j < 16; j++) {
                    double a = q[r * 16 + j], b = ix.embeddings[e * 16 + j];
                    dot += a * b;
                    d2 += (a - b) * (a - b);
                }
                hits[e].i = e;
                hits[e].s = metric == GPUQ_METRIC_DOT ? dot
                          : metric == GPUQ_METRIC_L2 ? d2 : dot / (sqrt(qn) * ix.norms[e]);
            }
            qsort(hits, 300, sizeof(hits[0]), cmp_hit);
            for (int j = 0; j < k; j++) {
                /* near-equal scores may swap; the score at each rank must match */
                if (fabs(scores[r * k + j] - hits[j].s) > tol * (1 + fabs(hits[j].s))) bad++;
                if (idx[r * k + j] != hits[j].i && fabs(hits[j].s - scores[r * k + j]) > 1e-4) bad++;
            }
        }
        if (bad) fprintf(stderr, "  knn metric %d: %d mismatches\n", metric, bad);
        CHECK(bad == 0);
        if (metric != GPUQ_METRIC_DOT) CHECK(idx[0] == 3 && idx[1] == 7);   /* tie to the lower index */
    }
    be->iface->model_free(be, &model);
    free(ix.embeddings), free(ix.norms), free(q), free(scores), free(idx);
}

static inline void check_rows(struct gpuq_backend *be, double tol, unsigned *seed) {
    int rows = 5, cols = 33;
    float *x = rand_floats((size_t)rows * cols, seed), *y = malloc((size_t)rows * cols * sizeof(float));
    for (int j = 0; j < cols; j++) x[j] *= 80.0f;   /* large logits: must not overflow */
    struct gpuq_softmax sm = {x, rows, cols, y};
    CHECK(gpuq_backend_run(be, GPUQ_OP_SOFTMAX, rows, &sm) == 0 && be_sync(be) == 0);
    for (int r = 0; r < rows; r++) {
        double mx = -1e30, sum = 0, err = 0;
        for (int j = 0; j < cols; j++) mx = fmax(mx, x[r * cols + j]);
        for (int j = 0; j < cols; j++) sum += exp(x[r * cols + j] - mx);
        for (int j = 0; j < cols; j++) err = fmax(err, fabs(y[r * cols + j] - exp(x[r * cols + j] - mx) / sum));
        CHECK(err <= tol);
    }
    /* layernorm: row 0..2 use set 0 (identity affine), rows 3..4 set 1 */
    int sets[5] = {0, 0, 0, 1, 1};
    float *g = rand_floats(2 * (size_t)cols, seed), *b = rand_floats(2 * (size_t)cols, seed);
    float eps[2] = {1e-5f, 0.5f};
    for (int j = 0; j < cols; j++) g[j] = 1.0f, b[j] = 0.0f;
    struct gpuq_layernorm ln = {x, rows, cols, sets, g, b, eps, y};
    CHECK(gpuq_backend_run(be, GPUQ_OP_LAYERNORM, rows, &ln) == 0 && be_sync(be) == 0);
    for (int r = 0; r < rows; r++) {
        double mean = 0, var = 0, err = 0;
        for (int j = 0; j < cols; j++) mean += x[r * cols + j];
        mean /= cols;
        for (int j = 0; j < cols; j++) var += (x[r * cols + j] - mean) * (x[r * cols + j] - mean);
        var /= cols;
        for (int j = 0; j < cols; j++) {
            int s = sets[r];
            double want = (x[r * cols + j] - mean) / sqrt(var + eps[s]) * g[s * cols + j] + b[s * cols + j];
            err = fmax(err, fabs(y[r * cols + j] - want) / (1 + fabs(want)));
        }
        CHECK(err <= tol);
    }
    free(x), free(y), free(g), free(b);
}

/* Reference bilinear resize: OpenCV INTER_LINEAR's float formula. */
static inline double ref_pixel(const unsigned char *src, int h, int w, int c, int H, int W, int ch,
                               int oy, int ox) {
    double sy = (oy + 0.5) * h / H - 0.5, sx = (ox + 0.5) * w / W - 0.5;
    if (sy < 0) sy = 0;
    if (sx < 0) sx = 0;
    int y0 = (int)floor(sy), x0 = (int)floor(sx);
    if (y0 > h - 1) y0 = h - 1;
    if (x0 > w - 1) x0 = w - 1;
    int y1 = y0 + 1 < h ? y0 + 1 : h - 1, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
    double fy = sy - y0, fx = sx - x0;
    double v00 = src[(y0 * w + x0) * c + ch], v01 = src[(y0 * w + x1) * c + ch];
    double v10 = src[(y1 * w + x0) * c + ch], v11 = src[(y1 * w + x1) * c + ch];
    return (v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy;
}

static inline void check_image(struct gpuq_backend *be, double tol, unsigned *seed) {
    static const int dims[][5] = {{7, 5, 3, 14, 10}, {20, 30, 1, 5, 7}, {4, 4, 3, 4, 4}, {1, 1, 2, 3, 2}};
    struct gpuq_image ims[4];
    float mean[3] = {0.5f, 0.25f, 0.0f}, std[3] = {0.5f, 2.0f, 1.0f};
    unsigned char *src[4];
    for (int i = 0; i < 4; i++) {
        const int *d = dims[i];
        src[i] = malloc((size_t)d[0] * d[1] * d[2]);
        for (int j = 0; j < d[0] * d[1] * d[2]; j++) src[i][j] = (unsigned char)((check_rand(seed) + 1) * 127.9f);
        ims[i] = (struct gpuq_image){src[i], d[0], d[1], d[2], d[3], d[4], mean, std,
                                     malloc((size_t)d[2] * d[3] * d[4] * sizeof(float))};
    }
    struct gpuq_images four = {ims, 4};
    CHECK(gpuq_backend_run(be, GPUQ_OP_IMAGE_PREPROCESS, 4, &four) == 0 && be_sync(be) == 0);
    for (int i = 0; i < 4; i++) {
        const int *d = dims[i];
        double err = 0;
        for (int ch = 0; ch < d[2]; ch++)
            for (int y = 0; y < d[3]; y++)
                for (int x = 0; x < d[4]; x++) {
                    double want = (ref_pixel(src[i], d[0], d[1], d[2], d[3], d[4], ch, y, x) / 255.0 - mean[ch]) / std[ch];
                    err = fmax(err, fabs(ims[i].dst[(ch * d[3] + y) * d[4] + x] - want));
                }
        if (err > tol) fprintf(stderr, "  image %d: error %g\n", i, err);
        CHECK(err <= tol);
        free(src[i]), free(ims[i].dst);
    }
}

/* Prints a twin check op by op; every op must agree. */
static inline void check_twin(const struct gpuq_twin *t) {
    for (int k = 0; k < GPUQ_OP_COUNT; k++)
        printf("  %-18s max error %-10.3g tolerance %.3g%s\n", gpuq_op_name((enum gpuq_op)k),
               t->err[k], t->tol[k], t->failed & (1u << k) ? "  FAILED" : "");
    if (t->why[0]) printf("  %s\n", t->why);
    CHECK(t->failed == 0);
}

/* The row ops a backend implements, against references. */
static inline void check_backend_rows(struct gpuq_backend *be, double tol) {
    unsigned seed = 7;
    if (be->kernel[GPUQ_OP_KNN]) check_knn(be, tol, &seed);
    if (be->kernel[GPUQ_OP_SOFTMAX] && be->kernel[GPUQ_OP_LAYERNORM]) check_rows(be, tol, &seed);
    if (be->kernel[GPUQ_OP_IMAGE_PREPROCESS]) check_image(be, tol, &seed);
}

#endif
