/* cpu_ops.c -- knn, softmax, layernorm and image preprocessing on the CPU. */
#include "kernels/cpu_ops.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- knn: blocked GEMM against the index, then a running top-k per row ---- */

#define KNN_BLOCK 4096

/* Is (s1, i1) a better hit than (s2, i2)? Higher score first, or lower for
 * l2; ties to the lower index, so results never depend on batching. */
static int better(int lowest, float s1, int64_t i1, float s2, int64_t i2) {
    if (s1 != s2) return lowest ? s1 < s2 : s1 > s2;
    return i1 < i2;
}

/* The k kept hits of a row form a heap whose root is the worst of them. */
static void sift_down(int lowest, float *s, int64_t *ix, int k, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < k && better(lowest, s[w], ix[w], s[l], ix[l])) w = l;
        if (r < k && better(lowest, s[w], ix[w], s[r], ix[r])) w = r;
        if (w == i) return;
        float ts = s[i];
        int64_t ti = ix[i];
        s[i] = s[w], ix[i] = ix[w];
        s[w] = ts, ix[w] = ti;
        i = w;
    }
}

int gpuq_cpu_knn(struct gpuq_backend *be, const struct gpuq_knn *q) {
    const struct gpuq_model *ix = q->index;
    int d = ix->dim, k = q->k, lowest = q->metric == GPUQ_METRIC_L2;
    int64_t n = ix->n_rows;
    /* scratch: queries [rows, d] | a block of scores [rows, KNN_BLOCK] | |q|^2 [rows] */
    float *qn = gpuq_cpu_scratch(be, 0, (size_t)q->rows * (d + KNN_BLOCK + 1));
    if (!qn) return -1;
    float *block = qn + (size_t)q->rows * d, *qnorm2 = block + (size_t)q->rows * KNN_BLOCK;
    memcpy(qn, q->q, (size_t)q->rows * d * sizeof(float));
    for (int r = 0; r < q->rows; r++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)qn[r * d + j] * qn[r * d + j];
        qnorm2[r] = (float)s;
        if (q->metric == GPUQ_METRIC_COSINE && s > 0)
            for (int j = 0; j < d; j++) qn[r * d + j] /= (float)sqrt(s);
    }
    /* heaps start full of "worst possible" hits */
    for (int64_t i = 0; i < (int64_t)q->rows * k; i++) {
        q->scores[i] = lowest ? INFINITY : -INFINITY;
        q->indices[i] = INT64_MAX;
    }
    for (int64_t b0 = 0; b0 < n; b0 += KNN_BLOCK) {
        int nb = (int)(n - b0 < KNN_BLOCK ? n - b0 : KNN_BLOCK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, q->rows, nb, d, 1.0f, qn, d,
                    ix->embeddings + b0 * d, d, 0.0f, block, nb);
        for (int r = 0; r < q->rows; r++) {
            float *hs = q->scores + (size_t)r * k;
            int64_t *hi = q->indices + (size_t)r * k;
            for (int j = 0; j < nb; j++) {
                float dot = block[(size_t)r * nb + j], s = dot;
                int64_t id = b0 + j;
                if (q->metric == GPUQ_METRIC_COSINE)
                    s = ix->norms[id] > 0 ? dot / ix->norms[id] : 0.0f;
                else if (q->metric == GPUQ_METRIC_L2)
                    s = fmaxf(qnorm2[r] + ix->norms[id] * ix->norms[id] - 2.0f * dot, 0.0f);
                if (better(lowest, s, id, hs[0], hi[0])) {
                    hs[0] = s, hi[0] = id;
                    sift_down(lowest, hs, hi, k, 0);
                }
            }
        }
    }
    /* heap -> best first: repeatedly move the worst to the end */
    for (int r = 0; r < q->rows; r++) {
        float *hs = q->scores + (size_t)r * k;
        int64_t *hi = q->indices + (size_t)r * k;
        for (int end = k - 1; end > 0; end--) {
            float ts = hs[0];
            int64_t ti = hi[0];
            hs[0] = hs[end], hi[0] = hi[end];
            hs[end] = ts, hi[end] = ti;
            sift_down(lowest, hs, hi, end, 0);
        }
    }
    return 0;
}

/* ---- softmax and layernorm, row by row ---- */

int gpuq_cpu_softmax(struct gpuq_backend *be, const float *x, int rows, int cols, float *y) {
    (void)be;
    for (int r = 0; r < rows; r++) {
        const float *in = x + (size_t)r * cols;
        float *out = y + (size_t)r * cols, mx = -INFINITY;
        double sum = 0;
        for (int j = 0; j < cols; j++) mx = fmaxf(mx, in[j]);
        for (int j = 0; j < cols; j++) sum += out[j] = expf(in[j] - mx);
        for (int j = 0; j < cols; j++) out[j] = (float)(out[j] / sum);
    }
    return 0;
}

int gpuq_cpu_layernorm(struct gpuq_backend *be, const struct gpuq_layernorm *ln) {
    (void)be;
    int cols = ln->cols;
    for (int r = 0; r < ln->rows; r++) {
        const float *in = ln->x + (size_t)r * cols;
        float *out = ln->y + (size_t)r * cols;
        int set = ln->row_set[r];
        const float *g = ln->gamma + (size_t)set * cols, *b = ln->beta + (size_t)set * cols;
        double mean = 0, var = 0;
        for (int j = 0; j < cols; j++) mean += in[j];
        mean /= cols;
        for (int j = 0; j < cols; j++) var += (in[j] - mean) * (in[j] - mean);
        var /= cols;
        float inv = (float)(1.0 / sqrt(var + ln->eps[set]));
        for (int j = 0; j < cols; j++) out[j] = (float)(in[j] - mean) * inv * g[j] + b[j];
    }
    return 0;
}

/* ---- image preprocessing: bilinear resize, half-pixel centers ---- */

/* Source coordinate of output index o for a resize from `in` to `out`
 * pixels, as OpenCV's INTER_LINEAR: edges clamp, no antialiasing. */
static void src_coord(int o, int in, int out, int *i0, int *i1, float *frac) {
    float s = ((float)o + 0.5f) * ((float)in / (float)out) - 0.5f;
    if (s < 0) s = 0;
    int f = (int)s;
    if (f > in - 1) f = in - 1;
    *i0 = f;
    *i1 = f + 1 < in ? f + 1 : in - 1;
    *frac = s - (float)f;
    if (*i0 == *i1) *frac = 0;
}

int gpuq_cpu_image(struct gpuq_backend *be, const struct gpuq_image *ims, int n) {
    (void)be;
    for (const struct gpuq_image *im = ims; im < ims + n; im++) {
        int c = im->c, W = im->out_w, H = im->out_h;
        for (int y = 0; y < H; y++) {
            int y0, y1;
            float fy;
            src_coord(y, im->h, H, &y0, &y1, &fy);
            for (int x = 0; x < W; x++) {
                int x0, x1;
                float fx;
                src_coord(x, im->w, W, &x0, &x1, &fx);
                const unsigned char *p00 = im->src + ((size_t)y0 * im->w + x0) * c,
                                    *p01 = im->src + ((size_t)y0 * im->w + x1) * c,
                                    *p10 = im->src + ((size_t)y1 * im->w + x0) * c,
                                    *p11 = im->src + ((size_t)y1 * im->w + x1) * c;
                for (int ch = 0; ch < c; ch++) {
                    float top = p00[ch] + (p01[ch] - p00[ch]) * fx;
                    float bot = p10[ch] + (p11[ch] - p10[ch]) * fx;
                    float v = top + (bot - top) * fy;
                    im->dst[((size_t)ch * H + y) * W + x] = (v / 255.0f - im->mean[ch]) / im->std[ch];
                }
            }
        }
    }
    return 0;
}
