/* bert_cpu.c -- the BERT encoder forward pass on the CPU (OpenBLAS).
 *
 * Padding-free: the batch's tokens are concatenated, so every dense layer is
 * one GEMM over the real tokens only, and attention runs per sequence and
 * head on its own [n, n] scores; no mask, no padding to compute. In reduced
 * precision each dense GEMM's input is rounded first: LayerNorm outputs into
 * ctx, which is free before attention and after the output projection;
 * the context and the GELU output in place. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "kernels/bert.h"
#include "kernels/cpu.h"

/* y[t, out] = x[t, in] W^T + b, W [out, in] row-major. */
static void dense(const float *x, int t, int in, const float *w, const float *b, int out, float *y) {
    for (int r = 0; r < t; r++) memcpy(y + (size_t)r * out, b, (size_t)out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

/* x[r] = LayerNorm(x[r] + add[r]) over h, for t rows (add may be NULL). */
static void add_layernorm(float *x, const float *add, int t, int h, const float *g, const float *b,
                          float eps) {
    for (int r = 0; r < t; r++) {
        float *v = x + (size_t)r * h;
        if (add)
            for (int j = 0; j < h; j++) v[j] += add[(size_t)r * h + j];
        gpuq_cpu_layernorm_row(v, v, h, g, b, eps);
    }
}

static void softmax_rows(float *s, int n) {
    for (int r = 0; r < n; r++) {
        float *v = s + (size_t)r * n, mx = v[0];
        for (int j = 1; j < n; j++) mx = v[j] > mx ? v[j] : mx;
        float sum = 0;
        for (int j = 0; j < n; j++) sum += v[j] = expf(v[j] - mx);
        for (int j = 0; j < n; j++) v[j] /= sum;
    }
}

/* ctx[n, h] = softmax(Q K^T / sqrt(d)) V per head, for one sequence whose
 * q, k, v rows sit in qkv [n, 3h]. */
static void attention(const float *qkv, int n, int h, int heads, float *scores, float *ctx) {
    int d = h / heads;
    float scale = 1.0f / sqrtf((float)d);
    for (int hd = 0; hd < heads; hd++) {
        const float *q = qkv + hd * d, *k = qkv + h + hd * d, *v = qkv + 2 * h + hd * d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, d, scale, q, 3 * h, k, 3 * h, 0.0f,
                    scores, n);
        softmax_rows(scores, n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, n, 1.0f, scores, n, v, 3 * h,
                    0.0f, ctx + hd * d, h);
    }
}

size_t gpuq_bert_scratch_floats(const struct gpuq_bert *m, int n_tokens, int max_len) {
    return (size_t)n_tokens * (5 * (size_t)m->hidden + (size_t)m->intermediate) +
           (size_t)max_len * (size_t)max_len;
}

static void pool(const struct gpuq_bert *m, const struct gpuq_bert_batch *b, const float *x) {
    int h = m->hidden;
    for (int s = 0, off = 0; s < b->n_seq; off += b->lens[s], s++) {
        float *y = b->out + (size_t)s * h;
        if (b->pooling == GPUQ_BERT_POOL_CLS) {
            memcpy(y, x + (size_t)off * h, (size_t)h * sizeof *y);
        } else {
            for (int j = 0; j < h; j++) {
                double acc = 0;
                for (int r = 0; r < b->lens[s]; r++) acc += x[(size_t)(off + r) * h + j];
                y[j] = (float)(acc / b->lens[s]);
            }
        }
        if (b->normalize) {   /* as torch's F.normalize: v / max(|v|, 1e-12) */
            double n2 = 0;
            for (int j = 0; j < h; j++) n2 += (double)y[j] * y[j];
            double norm = sqrt(n2) > 1e-12 ? sqrt(n2) : 1e-12;
            for (int j = 0; j < h; j++) y[j] = (float)(y[j] / norm);
        }
    }
}

void gpuq_bert_forward(const struct gpuq_bert *m, const struct gpuq_bert_batch *b,
                       enum gpuq_precision p, float *scratch) {
    int h = m->hidden, t = 0;
    for (int s = 0; s < b->n_seq; s++) t += b->lens[s];
    size_t th = (size_t)t * h, ti = (size_t)t * m->intermediate;
    float *x = scratch, *qkv = x + th, *ctx = qkv + 3 * th, *inter = ctx + th, *scores = inter + ti;
    for (int s = 0, r = 0; s < b->n_seq; s++)
        for (int q = 0; q < b->lens[s]; q++, r++) {
            const float *w = m->word_emb + (size_t)b->ids[r] * h, *pe = m->pos_emb + (size_t)q * h;
            for (int j = 0; j < h; j++) x[(size_t)r * h + j] = w[j] + pe[j] + m->type_emb[j];
        }
    add_layernorm(x, NULL, t, h, m->emb_ln_g, m->emb_ln_b, m->ln_eps);
    for (int l = 0; l < m->n_layers; l++) {
        const struct gpuq_bert_layer *ly = &m->layers[l];
        dense(gpuq_cpu_round_rows(p, x, th, ctx), t, h, ly->qkv_w, ly->qkv_b, 3 * h, qkv);
        for (int s = 0, off = 0; s < b->n_seq; off += b->lens[s], s++)
            attention(qkv + (size_t)off * 3 * h, b->lens[s], h, m->heads, scores, ctx + (size_t)off * h);
        /* qkv is free again */
        dense(gpuq_cpu_round_rows(p, ctx, th, ctx), t, h, ly->attn_w, ly->attn_b, h, qkv);
        add_layernorm(x, qkv, t, h, ly->ln1_g, ly->ln1_b, m->ln_eps);
        dense(gpuq_cpu_round_rows(p, x, th, ctx), t, h, ly->ffn_w1, ly->ffn_b1, m->intermediate, inter);
        for (size_t i = 0; i < ti; i++)
            inter[i] = gpuq_act_apply(GPUQ_ACT_GELU, inter[i]);
        dense(gpuq_cpu_round_rows(p, inter, ti, inter), t, m->intermediate, ly->ffn_w2, ly->ffn_b2, h, qkv);
        add_layernorm(x, qkv, t, h, ly->ln2_g, ly->ln2_b, m->ln_eps);
    }
    pool(m, b, x);
}
