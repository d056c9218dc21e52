/* knn_binary.c -- the knn op's binary path, on the CPU: Hamming distances
 * by popcount over the index's packed bits, the nearest picked by a
 * counting sort on the distance (ties to the lower index), and optionally
 * those nearest rescored against the index's floats. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "models/index/index.h"
#include "ops/knn.h"

/* dist[i] = popcount(q ^ x_i) over words 64-bit words a row. */
__attribute__((target_clones("arch=icelake-server", "popcnt", "default")))
static void distances(const uint8_t *q, const uint8_t *x, int64_t n, int words, uint32_t *dist) {
    uint64_t qw[64];
    for (int w0 = 0; w0 < words; w0 += 64) {
        int nw = words - w0 < 64 ? words - w0 : 64;
        memcpy(qw, q + (size_t)w0 * 8, (size_t)nw * 8);
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *xi = x + ((size_t)i * words + w0) * 8;
            uint32_t s = 0;
            for (int w = 0; w < nw; w++) {
                uint64_t v;
                memcpy(&v, xi + (size_t)w * 8, 8);
                s += (uint32_t)__builtin_popcountll(qw[w] ^ v);
            }
            dist[i] = w0 ? dist[i] + s : s;
        }
    }
}

/* The c nearest of n by dist (at most maxd), nearest first, ties to the
 * lower index, into out: a histogram of the distances gives the cut, and
 * one pass in index order places each kept index at its distance's slot. */
static void nearest(const uint32_t *dist, int64_t n, int64_t c, int maxd, int64_t *hist,
                    int64_t *out) {
    memset(hist, 0, (size_t)(maxd + 1) * sizeof(*hist));
    for (int64_t i = 0; i < n; i++) hist[dist[i]]++;
    int64_t before = 0;
    int cut = 0;
    for (; cut < maxd && before + hist[cut] < c; cut++) before += hist[cut];
    int64_t pos = 0;
    for (int v = 0; v <= cut; v++) {    /* hist[v] becomes the slot of distance v */
        int64_t h = hist[v];
        hist[v] = pos;
        pos += h;
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = dist[i];
        if (v < (uint32_t)cut || (v == (uint32_t)cut && hist[cut] < c)) out[hist[v]++] = i;
    }
}

struct hit {
    double s;
    int64_t i;
};

static int highest_first(const void *a, const void *b) {
    const struct hit *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int lowest_first(const void *a, const void *b) {
    const struct hit *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* The metric's score of float query q against index row e, in double. */
static double score(const struct gpuq_index *ix, enum gpuq_metric metric, const float *q,
                    double qnorm, int64_t e) {
    const float *x = ix->embeddings + e * ix->dim;
    double s = 0;
    if (metric == GPUQ_METRIC_L2) {
        for (int j = 0; j < ix->dim; j++) s += ((double)q[j] - x[j]) * ((double)q[j] - x[j]);
        return s;
    }
    for (int j = 0; j < ix->dim; j++) s += (double)q[j] * x[j];
    if (metric == GPUQ_METRIC_DOT) return s;
    return qnorm > 0 && ix->norms[e] > 0 ? s / (qnorm * ix->norms[e]) : 0.0;
}

int gpuq_knn_binary_cpu(struct gpuq_backend *be, const struct gpuq_knn *a) {
    const struct gpuq_index *ix = gpuq_model_index(a->index);
    int64_t n = ix->n_rows, most = a->k;
    for (int r = 0; a->cand && r < a->rows; r++)
        if (a->cand[r] > most) most = a->cand[r];
    int maxd = ix->bits_stride * 8;     /* padding bits are clear in both: distances stay <= dim */
    /* scratch: distances [n] | histogram [maxd + 1] | candidates [most] | hits [most] */
    size_t bytes = (size_t)n * 4 + 8 + (size_t)(maxd + 1) * 8 + (size_t)most * (8 + sizeof(struct hit));
    char *scratch = (char *)gpuq_cpu_scratch(be, 0, bytes / sizeof(float) + 1);
    if (!scratch) return GPUQ_BE_FAILED;
    uint32_t *dist = (uint32_t *)scratch;
    int64_t *hist = (int64_t *)(scratch + ((size_t)n * 4 + 7) / 8 * 8), *cand = hist + maxd + 1;
    struct hit *hits = (struct hit *)(cand + most);
    int lowest = a->metric == GPUQ_METRIC_L2;
    for (int r = 0; r < a->rows; r++) {
        int64_t *oi = a->indices + (size_t)r * a->k;
        float *os = a->scores + (size_t)r * a->k;
        int64_t c = a->cand ? a->cand[r] : a->k, kept = c < a->k ? c : a->k;
        distances(a->bits + (size_t)r * ix->bits_stride, ix->bits, n, ix->bits_stride / 8, dist);
        nearest(dist, n, c, maxd, hist, cand);
        if (!a->cand) {
            for (int64_t j = 0; j < kept; j++) oi[j] = cand[j], os[j] = (float)dist[cand[j]];
        } else {
            const float *q = a->q + (size_t)r * ix->dim;
            double qnorm = 0;
            for (int j = 0; j < ix->dim; j++) qnorm += (double)q[j] * q[j];
            qnorm = sqrt(qnorm);
            for (int64_t j = 0; j < c; j++) hits[j] = (struct hit){score(ix, a->metric, q, qnorm, cand[j]), cand[j]};
            qsort(hits, (size_t)c, sizeof(*hits), lowest ? lowest_first : highest_first);
            for (int64_t j = 0; j < kept; j++) oi[j] = hits[j].i, os[j] = (float)hits[j].s;
        }
        for (int64_t j = kept; j < a->k; j++)   /* a row whose job asked for fewer than k */
            oi[j] = INT64_MAX, os[j] = lowest || !a->cand ? INFINITY : -INFINITY;
    }
    return 0;
}
