/* ops_ref.h -- plain C references the backends are checked against, and
 * a runner shared by the CPU and CUDA backend tests. */
#ifndef GPUQ_OPS_REF_H
#define GPUQ_OPS_REF_H

#include "check.h"
#include "kernels/backend.h"

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

static inline void ref_mlp(const struct gpuq_model *m, const float *x, int rows, float *y) {
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

static inline float *rand_floats(size_t n, unsigned *seed) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = check_rand(seed);
    return p;
}

/* A random mlp with the given widths (widths[0] = d_in). */
static inline void rand_mlp(struct gpuq_model *m, const int *widths, int n_layers, enum gpuq_act act,
                     unsigned *seed) {
    memset(m, 0, sizeof(*m));
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
            CHECK(be->iface->matmul(be, &mm, 1) == 0);
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
            CHECK(be->iface->mlp(be, &m, x, rows, y) == 0);
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

#endif
