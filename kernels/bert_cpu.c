/* bert_cpu.c -- the BERT encoder forward pass on the CPU (oneDNN GEMMs,
 * kernels/cpu_gemm.h).
 *
 * Padding-free: the batch's tokens are concatenated, so every dense layer is
 * one GEMM over the real tokens only, and attention runs per sequence and
 * head on its own [n, n] scores (the heads batched in one GEMM); no mask,
 * no padding to compute. Biases, and GELU after the first feed-forward
 * GEMM, are the GEMMs' own post-ops. In reduced precision each dense GEMM's
 * input is rounded first: into x16 as bf16 where the GEMMs take bf16 (the
 * GELU output leaves its GEMM in bf16, into inter), else rounded in f32:
 * LayerNorm outputs into ctx, which is free before attention and after the
 * output projection; the context and the GELU output in place. */
#include <math.h>
#include <string.h>

#include "kernels/bert.h"
#include "kernels/cpu.h"

/* The GEMM input for a dense layer: x[n] as precision p's GEMMs take it:
 * into x16 as bf16 where the layer has a bf16 copy (w16), else rounded to p
 * into dst (which may be x). */
struct dense_in {
    const float *x;
    const uint16_t *x16;
};

static struct dense_in dense_in(struct gpuq_backend *be, const float *x, size_t n, const uint16_t *w16,
                                uint16_t *x16, float *dst) {
    if (w16) {
        gpuq_cpu_gemm_to_bf16(x, n, x16);
        return (struct dense_in){NULL, x16};
    }
    return (struct dense_in){gpuq_cpu_round_rows(be->precision, x, n, dst), NULL};
}

/* y[t, out] = act(x[t, in] W^T + b), W [out, in] row-major, its bf16 copy
 * w16 or NULL; y of type y_type (bf16: the next GEMM's input as is). */
static int dense(struct gpuq_backend *be, struct dense_in x, int t, int in, const float *w,
                 const uint16_t *w16, const float *b, int out, enum gpuq_act act, void *y,
                 enum gpuq_cpu_gemm_type y_type) {
    struct gpuq_cpu_gemm_args a = {
        .batch = 1, .m = t, .n = out, .k = in, .type = w16 ? GPUQ_CPU_GEMM_BF16 : GPUQ_CPU_GEMM_F32,
        .a = w16 ? (const void *)x.x16 : x.x, .a_row = in, .a_col = 1,
        .b = w16 ? (const void *)w16 : w, .b_row = 1, .b_col = in,
        .c = y, .c_row = out, .c_col = 1, .c_type = y_type, .alpha = 1.0f, .bias = b, .act = act};
    return gpuq_cpu_gemm(be, &a);
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

/* e^x for x <= 0 (a shifted score), within 2 ulp of expf, where it is
 * not below f32's normal range (e^-87), in straight-line arithmetic the
 * compiler vectorizes: x = n ln 2 + r, |r| <= ln 2 / 2, e^r by Cephes'
 * polynomial, 2^n put in the exponent bits. */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round to nearest */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* Each of rows rows of n scores to its softmax. Vector code for the host's
 * widest of AVX-512, AVX2 and the x86-64 baseline, chosen at load. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void softmax_rows(float *s, int rows, int n) {
    for (int r = 0; r < rows; r++) {
        float *v = s + (size_t)r * n, mx = v[0], sum = 0;
#pragma omp simd reduction(max : mx)
        for (int j = 1; j < n; j++) mx = v[j] > mx ? v[j] : mx;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; j++) sum += v[j] = exp_nonpositive(v[j] - mx);
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) v[j] *= inv;
    }
}

/* ctx[n, h] = softmax(Q K^T / sqrt(d)) V, all heads at once (two batched
 * GEMMs over the heads), for one sequence whose q, k, v rows sit in
 * qkv [n, 3h]; scores holds heads * n * n floats. */
static int attention(struct gpuq_backend *be, const float *qkv, int n, int h, int heads, float *scores,
                     float *ctx) {
    int64_t d = h / heads, nn = (int64_t)n * n;
    struct gpuq_cpu_gemm_args qk = {
        .batch = heads, .m = n, .n = n, .k = d, .type = GPUQ_CPU_GEMM_F32,
        .a = qkv, .a_row = 3 * h, .a_col = 1, .a_batch = d,
        .b = qkv + h, .b_row = 1, .b_col = 3 * h, .b_batch = d,
        .c = scores, .c_row = n, .c_col = 1, .c_batch = nn, .alpha = 1.0f / sqrtf((float)d)};
    struct gpuq_cpu_gemm_args pv = {
        .batch = heads, .m = n, .n = d, .k = n, .type = GPUQ_CPU_GEMM_F32,
        .a = scores, .a_row = n, .a_col = 1, .a_batch = nn,
        .b = qkv + 2 * h, .b_row = 3 * h, .b_col = 1, .b_batch = d,
        .c = ctx, .c_row = h, .c_col = 1, .c_batch = d, .alpha = 1.0f};
    int rc = gpuq_cpu_gemm(be, &qk);
    if (rc) return rc;
    softmax_rows(scores, heads * n, n);
    return gpuq_cpu_gemm(be, &pv);
}

size_t gpuq_bert_scratch_floats(const struct gpuq_bert *m, int n_tokens, int max_len) {
    size_t wide = (size_t)(m->intermediate > m->hidden ? m->intermediate : m->hidden);
    return (size_t)n_tokens * (5 * (size_t)m->hidden + (size_t)m->intermediate) +
           (size_t)m->heads * max_len * max_len + ((size_t)n_tokens * wide + 1) / 2;
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

int gpuq_bert_forward(struct gpuq_backend *be, const struct gpuq_bert *m,
                      const struct gpuq_bert_batch *b, float *scratch) {
    int h = m->hidden, inner = m->intermediate, t = 0, heads = m->heads, rc = 0;
    for (int s = 0; s < b->n_seq; s++) t += b->lens[s];
    size_t th = (size_t)t * h, ti = (size_t)t * inner;
    float *x = scratch, *qkv = x + th, *ctx = qkv + 3 * th, *inter = ctx + th, *scores = inter + ti;
    int longest = 0;
    for (int s = 0; s < b->n_seq; s++) longest = b->lens[s] > longest ? b->lens[s] : longest;
    uint16_t *x16 = (uint16_t *)(scores + (size_t)heads * longest * longest);
    int bf16 = gpuq_cpu_bf16(be);
    const enum gpuq_cpu_gemm_type f32 = GPUQ_CPU_GEMM_F32;
    for (int s = 0, r = 0; s < b->n_seq; s++)
        for (int q = 0; q < b->lens[s]; q++, r++) {
            const float *w = m->word_emb + (size_t)b->ids[r] * h, *pe = m->pos_emb + (size_t)q * h;
            for (int j = 0; j < h; j++) x[(size_t)r * h + j] = w[j] + pe[j] + m->type_emb[j];
        }
    add_layernorm(x, NULL, t, h, m->emb_ln_g, m->emb_ln_b, m->ln_eps);
    for (int l = 0; l < m->n_layers && !rc; l++) {
        const struct gpuq_bert_layer *ly = &m->layers[l];
        /* the bf16 copies of the four matrices, one after another */
        const uint16_t *w16[4] = {NULL};
        if (bf16 && ly->w16) {
            w16[0] = ly->w16, w16[1] = w16[0] + (size_t)3 * h * h;
            w16[2] = w16[1] + (size_t)h * h, w16[3] = w16[2] + (size_t)inner * h;
        }
        rc = dense(be, dense_in(be, x, th, w16[0], x16, ctx), t, h, ly->qkv_w, w16[0], ly->qkv_b, 3 * h,
                   GPUQ_ACT_NONE, qkv, f32);
        for (int s = 0, off = 0; s < b->n_seq && !rc; off += b->lens[s], s++)
            rc = attention(be, qkv + (size_t)off * 3 * h, b->lens[s], h, heads, scores, ctx + (size_t)off * h);
        /* qkv is free again */
        if (!rc) rc = dense(be, dense_in(be, ctx, th, w16[1], x16, ctx), t, h, ly->attn_w, w16[1],
                            ly->attn_b, h, GPUQ_ACT_NONE, qkv, f32);
        if (rc) break;
        add_layernorm(x, qkv, t, h, ly->ln1_g, ly->ln1_b, m->ln_eps);
        /* in bf16 the GELU output leaves the GEMM rounded, as the next one takes it */
        int direct = w16[2] && w16[3];
        rc = dense(be, dense_in(be, x, th, w16[2], x16, ctx), t, h, ly->ffn_w1, w16[2], ly->ffn_b1, inner,
                   GPUQ_ACT_GELU, inter, direct ? GPUQ_CPU_GEMM_BF16 : f32);
        struct dense_in gelu = direct ? (struct dense_in){NULL, (const uint16_t *)inter}
                                      : dense_in(be, inter, ti, w16[3], x16, inter);
        if (!rc) rc = dense(be, gelu, t, inner, ly->ffn_w2, w16[3], ly->ffn_b2, h, GPUQ_ACT_NONE, qkv, f32);
        if (!rc) add_layernorm(x, qkv, t, h, ly->ln2_g, ly->ln2_b, m->ln_eps);
    }
    if (!rc) pool(m, b, x);
    return rc;
}
