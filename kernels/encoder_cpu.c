/* encoder_cpu.c -- the text encoder's forward pass on the CPU (oneDNN
 * GEMMs, kernels/cpu_gemm.h); what it computes is kernels/encoder.h's.
 *
 * Padding-free: the batch's tokens are concatenated, so every dense layer is
 * one GEMM over the real tokens only, and attention runs per sequence and
 * head on its own [n, n] scores (the heads batched in one GEMM); no mask,
 * no padding to compute. The layers run on blocks of whole sequences of
 * about BLOCK_TOKENS tokens, all layers on one block before the next
 * (gpuq_cpu_block_next), so a
 * layer's activations are still in cache when the next step reads them (a
 * batch of 16k tokens run layer by layer spent a quarter of its bf16 time
 * fetching them back from memory). Biases, GELU after the first
 * feed-forward GEMM and the residual adds after the output projections are
 * the GEMMs' own post-ops. In reduced precision each dense GEMM's input is
 * rounded first: into x16 as bf16 where the GEMMs take bf16 (written by the
 * LayerNorms and the attention row by row; the GELU output leaves its GEMM
 * in bf16, into inter), else rounded in f32: LayerNorm outputs into ctx,
 * which is free before attention and after the output projection; the
 * context and the GELU output in place. */
#include <math.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/encoder.h"

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
 * w16 or NULL; y of type y_type (bf16: the next GEMM's input as is), or
 * with y_type RESIDUAL, y[t, out] += x[t, in] W^T + b (f32). */
#define RESIDUAL ((enum gpuq_cpu_gemm_type)-1)

static int dense(struct gpuq_backend *be, struct dense_in x, int t, int in, const float *w,
                 const uint16_t *w16, const float *b, int out, enum gpuq_act act, void *y,
                 enum gpuq_cpu_gemm_type y_type) {
    int residual = y_type == RESIDUAL;
    struct gpuq_cpu_gemm_args a = {
        .batch = 1, .m = t, .n = out, .k = in, .type = w16 ? GPUQ_CPU_GEMM_BF16 : GPUQ_CPU_GEMM_F32,
        .a = w16 ? (const void *)x.x16 : x.x, .a_row = in, .a_col = 1,
        .b = w16 ? (const void *)w16 : w, .b_row = 1, .b_col = in,
        .c = y, .c_row = out, .c_col = 1, .c_type = residual ? GPUQ_CPU_GEMM_F32 : y_type, .alpha = 1.0f,
        .bias = b, .act = act, .accumulate = residual};
    return gpuq_cpu_gemm(be, &a);
}

/* x[r] = LayerNorm(x[r] + add[r]) over h, for t rows (add may be NULL);
 * where x16 is not NULL, also in bf16 into x16, each row while it is in
 * cache (the next GEMM's input). */
static void add_layernorm(float *x, const float *add, int t, int h, const float *g, const float *b,
                          float eps, uint16_t *x16) {
    for (int r = 0; r < t; r++) {
        float *v = x + (size_t)r * h;
        if (add)
            for (int j = 0; j < h; j++) v[j] += add[(size_t)r * h + j];
        gpuq_cpu_layernorm_row(v, v, h, g, b, eps);
        if (x16) gpuq_cpu_gemm_to_bf16(v, (size_t)h, x16 + (size_t)r * h);
    }
}

/* A row of scores: n of them, padded to whole vectors of 16 so that the
 * softmax's loops have no scalar remainder. */
static int64_t scores_ld(int n) { return ((int64_t)n + 15) & ~(int64_t)15; }

/* The scores of an n-token sequence and each row's 1 / sum. */
static size_t scores_floats(const struct gpuq_encoder *e, int n) { return (size_t)e->heads * n * (scores_ld(n) + 1); }

/* ctx[n, h] = softmax(Q K^T / sqrt(d) + bias) V, all heads at once (two
 * batched GEMMs over the heads), for one sequence whose q, k, v rows sit in
 * qkv [n, 3h]; scores holds scores_floats(n) floats, [heads, n] rows of
 * scores_ld(n) then their 1 / sum; bias, where not NULL, is laid out as
 * scores are, its padding 0. Where ctx16 is not NULL, ctx also in bf16 there. */
static int attention(struct gpuq_backend *be, const float *qkv, int n, int h, int heads, const float *bias,
                     float *scores, float *ctx, uint16_t *ctx16) {
    int64_t d = h / heads, ld = scores_ld(n), nn = (int64_t)n * ld;
    struct gpuq_cpu_gemm_args qk = {
        .batch = heads, .m = n, .n = n, .k = d, .type = GPUQ_CPU_GEMM_F32,
        .a = qkv, .a_row = 3 * h, .a_col = 1, .a_batch = d,
        .b = qkv + h, .b_row = 1, .b_col = 3 * h, .b_batch = d,
        .c = scores, .c_row = ld, .c_col = 1, .c_batch = nn, .alpha = 1.0f / sqrtf((float)d)};
    struct gpuq_cpu_gemm_args pv = {
        .batch = heads, .m = n, .n = d, .k = n, .type = GPUQ_CPU_GEMM_F32,
        .a = scores, .a_row = ld, .a_col = 1, .a_batch = nn,
        .b = qkv + 2 * h, .b_row = 3 * h, .b_col = 1, .b_batch = d,
        .c = ctx, .c_row = h, .c_col = 1, .c_batch = d, .alpha = 1.0f};
    int rc = gpuq_cpu_gemm(be, &qk);
    if (rc) return rc;
    for (int64_t r = 0; r < heads * n && ld > n; r++)
        for (int64_t j = n; j < ld; j++) scores[r * ld + j] = -INFINITY;
    if (bias)
        for (int64_t i = 0; i < heads * nn; i++) scores[i] += bias[i];
    float *inv = scores + heads * nn;
    gpuq_cpu_softmax_rows(scores, heads * n, ld, inv);
    if ((rc = gpuq_cpu_gemm(be, &pv))) return rc;
    gpuq_cpu_divide_heads(ctx, n, heads, d, h, inv);
    if (ctx16)
        for (int i = 0; i < n; i++) gpuq_cpu_gemm_to_bf16(ctx + (size_t)i * h, (size_t)h, ctx16 + (size_t)i * h);
    return 0;
}

int gpuq_encoder_rel_bucket(int rel, int buckets, int max_distance) {
    int n = -rel, half = buckets / 2, exact = half / 2, ret = n < 0 ? half : 0;
    n = n < 0 ? -n : n;
    if (n < exact) return ret + n;
    /* f32 throughout, as torch computes it: log(n / exact) / log(max / exact) * (half - exact) */
    float big = logf((float)n / (float)exact) / (float)log((double)max_distance / exact) * (float)(half - exact);
    int v = exact + (int)big;
    return ret + (v < half - 1 ? v : half - 1);
}

/* The widest of the hidden size and the Dense modules' outputs. */
static size_t head_width(const struct gpuq_encoder *e) {
    size_t w = (size_t)e->hidden;
    for (int d = 0; d < e->n_dense; d++) w = (size_t)e->dense[d].d_out > w ? (size_t)e->dense[d].d_out : w;
    return w;
}

#define SPARSE_BLOCK 64

/* Tokens in a block of the layers' loop (gpuq_cpu_block_tokens). */
#define BLOCK_TOKENS 2048

static int block_tokens(int n_tokens, int max_len) { return gpuq_cpu_block_tokens(BLOCK_TOKENS, n_tokens, max_len); }

size_t gpuq_encoder_scratch_floats(const struct gpuq_encoder *e, int n_tokens, int max_len) {
    size_t h = (size_t)e->hidden, wide = (size_t)(e->intermediate > e->hidden ? e->intermediate : e->hidden);
    size_t sq = scores_floats(e, max_len), tb = (size_t)block_tokens(n_tokens, max_len);
    size_t tail = gpuq_encoder_head_floats(e, n_tokens);
    if (e->mlm && tail < (size_t)SPARSE_BLOCK * (h + (size_t)e->vocab)) tail = (size_t)SPARSE_BLOCK * (h + (size_t)e->vocab);
    return (size_t)n_tokens * h + tb * (4 * h + (size_t)e->intermediate) + sq + (tb * wide + 1) / 2 +
           (e->rel_buckets ? sq : 0) + tail;
}

/* The relative position bias of an n-token sequence, [heads, n] rows of
 * scores_ld(n), their padding 0. */
static void rel_bias(const struct gpuq_encoder *e, int n, float *bias) {
    int64_t ld = scores_ld(n);
    memset(bias, 0, scores_floats(e, n) * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            const float *row = e->emb[GPUQ_ENC_REL_BIAS] +
                               (size_t)gpuq_encoder_rel_bucket(j - i, e->rel_buckets, e->rel_max_distance) * e->heads;
            for (int hd = 0; hd < e->heads; hd++) bias[((size_t)hd * n + i) * ld + j] = row[hd];
        }
}

/* y [h] = sentence-transformers' pooling of a sequence's n rows x [n, h]. */
static void pool_one(enum gpuq_pool mode, const float *x, int n, int h, float *y) {
    if (mode == GPUQ_POOL_CLS || mode == GPUQ_POOL_LAST) {
        memcpy(y, x + (size_t)(mode == GPUQ_POOL_CLS ? 0 : n - 1) * h, (size_t)h * sizeof *y);
        return;
    }
    for (int j = 0; j < h; j++) {
        double acc = mode == GPUQ_POOL_MAX ? -INFINITY : 0, wsum = 0;
        for (int r = 0; r < n; r++) {
            double v = x[(size_t)r * h + j], w = mode == GPUQ_POOL_WEIGHTED_MEAN ? r + 1 : 1;
            if (mode == GPUQ_POOL_MAX) acc = v > acc ? v : acc;
            else acc += w * v, wsum += w;
        }
        y[j] = (float)(mode == GPUQ_POOL_MAX ? acc : mode == GPUQ_POOL_MEAN_SQRT_LEN ? acc / sqrt((double)n)
                       : acc / wsum);
    }
}

size_t gpuq_encoder_head_floats(const struct gpuq_encoder *e, int n_seq) {
    return 2 * (size_t)n_seq * head_width(e);
}

int gpuq_encoder_head_cpu(struct gpuq_backend *be, const struct gpuq_encoder *e, const struct gpuq_encode_batch *b,
                          const float *x, float *work) {
    int h = e->hidden, dim = gpuq_encoder_dim(e), rc = 0;
    size_t half = (size_t)b->n_seq * head_width(e);
    float *y = e->n_dense ? work : b->out;
    for (int s = 0, off = 0; s < b->n_seq; off += b->lens[s], s++)
        pool_one(b->pooling, x + (size_t)off * h, b->lens[s], h, y + (size_t)s * h);
    for (int d = 0; d < e->n_dense && !rc; d++) {
        const struct gpuq_dense *D = &e->dense[d];
        float *to = d == e->n_dense - 1 ? b->out : y == work ? work + half : work;
        rc = gpuq_cpu_dense(be, y, NULL, b->n_seq, D->d_in, D->w, NULL, D->d_out, D->b, D->act, to);
        y = to;
    }
    for (int s = 0; s < b->n_seq && b->normalize && !rc; s++) {   /* as torch's F.normalize */
        float *v = b->out + (size_t)s * dim;
        double n2 = 0;
        for (int j = 0; j < dim; j++) n2 += (double)v[j] * v[j];
        double norm = sqrt(n2) > 1e-12 ? sqrt(n2) : 1e-12;
        for (int j = 0; j < dim; j++) v[j] = (float)(v[j] / norm);
    }
    return rc;
}

/* SPLADE's vector of each sequence: the masked-LM logits of its tokens,
 * log(1 + ReLU), the max over the tokens (NaN where any token's logit is
 * NaN, which ReLU and max would hide), into b->out [n_seq, vocab]; in
 * blocks of SPARSE_BLOCK tokens, t [block, h] then logits [block, vocab] in
 * work. */
static int sparse(struct gpuq_backend *be, const struct gpuq_encoder *e, const struct gpuq_encode_batch *b,
                  const float *x, float *work) {
    const struct gpuq_mlm *M = e->mlm;
    int h = e->hidden, v = e->vocab, rc = 0;
    float *t = work, *logits = work + (size_t)SPARSE_BLOCK * h;
    const float *dec = M->decoder ? M->decoder : e->emb[GPUQ_ENC_WORD];
    memset(b->out, 0, (size_t)b->n_seq * v * sizeof(float));     /* log1p(relu(.)) >= 0 */
    for (int s = 0, off = 0; s < b->n_seq && !rc; off += b->lens[s], s++) {
        float *y = b->out + (size_t)s * v;
        for (int r0 = 0; r0 < b->lens[s] && !rc; r0 += SPARSE_BLOCK) {
            int n = b->lens[s] - r0 < SPARSE_BLOCK ? b->lens[s] - r0 : SPARSE_BLOCK;
            rc = gpuq_cpu_dense(be, x + (size_t)(off + r0) * h, NULL, n, h, M->w, NULL, h, M->b, e->act, t);
            for (int r = 0; r < n && !rc; r++) gpuq_cpu_layernorm_row(t + (size_t)r * h, t + (size_t)r * h, h,
                                                                      M->ln_g, M->ln_b, e->ln_eps);
            if (!rc) rc = gpuq_cpu_dense(be, t, NULL, n, h, dec, NULL, v, M->bias, GPUQ_ACT_NONE, logits);
            for (int r = 0; r < n && !rc; r++)
                for (int j = 0; j < v; j++) {
                    float z = logits[(size_t)r * v + j];
                    if (isnan(z)) y[j] = z;     /* kept: the op answers an overflow, not a weight of 0 */
                    else if (z > 0 && (z = log1pf(z)) > y[j]) y[j] = z;
                }
        }
    }
    return rc;
}

/* x [t, h] = LayerNorm(word + position + type 0) of every token. */
static void embed_tokens(const struct gpuq_encoder *e, const struct gpuq_encode_batch *b, float *x) {
    int h = e->hidden;
    const float *type = e->n_types ? e->emb[GPUQ_ENC_TYPE] : NULL;
    for (int s = 0, r = 0; s < b->n_seq; s++) {
        int seen = 0;
        for (int q = 0; q < b->lens[s]; q++, r++) {
            const float *w = e->emb[GPUQ_ENC_WORD] + (size_t)b->ids[r] * h;
            const float *pe = e->emb[GPUQ_ENC_POS] + (size_t)gpuq_encoder_position(e, b->ids[r], q, &seen) * h;
            const float *te = type ? type + (size_t)gpuq_encoder_type(e, b->types, r) * h : NULL;
            float *v = x + (size_t)r * h;
            for (int j = 0; j < h; j++) v[j] = w[j] + pe[j] + (te ? te[j] : 0.0f);
        }
    }
}

/* The layers on x [t, h], the rows of lens[0..n_seq) (t tokens, the longest
 * longest), in place; the buffers each layer needs in scratch. */
static int layers(struct gpuq_backend *be, const struct gpuq_encoder *e, const int *lens, int n_seq, int t,
                  int longest, float *x, float *scratch) {
    int h = e->hidden, inner = e->intermediate, heads = e->heads, rc = 0;
    size_t th = (size_t)t * h, ti = (size_t)t * inner, sq = scores_floats(e, longest);
    float *qkv = scratch, *ctx = qkv + 3 * th, *inter = ctx + th, *scores = inter + ti;
    uint16_t *x16 = (uint16_t *)(scores + sq);
    size_t wide = (size_t)(inner > h ? inner : h);
    float *bias = scores + sq + ((size_t)t * wide + 1) / 2;
    int bf16 = gpuq_cpu_bf16(be);
    const enum gpuq_cpu_gemm_type f32 = GPUQ_CPU_GEMM_F32;
    for (int l = 0; l < e->n_layers && !rc; l++) {
        const struct gpuq_enc_layer *ly = &e->layers[l];
        const uint16_t *const *w16 = (const uint16_t *const *)ly->w16, *none[4] = {NULL};
        if (!bf16) w16 = none;
        /* in bf16, past the first layer the last LayerNorm left its output in x16 too */
        struct dense_in in = l > 0 && w16[0] ? (struct dense_in){NULL, x16} : dense_in(be, x, th, w16[0], x16, ctx);
        rc = dense(be, in, t, h, GPUQ_LW(ly, GPUQ_ENC_QKV_W), w16[0],
                   GPUQ_LW(ly, GPUQ_ENC_QKV_B), 3 * h, GPUQ_ACT_NONE, qkv, f32);
        for (int s = 0, off = 0; s < n_seq && !rc; off += lens[s], s++) {
            if (e->rel_buckets) rel_bias(e, lens[s], bias);
            rc = attention(be, qkv + (size_t)off * 3 * h, lens[s], h, heads, e->rel_buckets ? bias : NULL,
                           scores, ctx + (size_t)off * h, w16[1] ? x16 + (size_t)off * h : NULL);
        }
        /* the output projection adds itself to x, the residual */
        in = w16[1] ? (struct dense_in){NULL, x16} : dense_in(be, ctx, th, w16[1], x16, ctx);
        if (!rc) rc = dense(be, in, t, h, GPUQ_LW(ly, GPUQ_ENC_ATTN_W), w16[1],
                            GPUQ_LW(ly, GPUQ_ENC_ATTN_B), h, GPUQ_ACT_NONE, x, RESIDUAL);
        if (rc) break;
        add_layernorm(x, NULL, t, h, GPUQ_LW(ly, GPUQ_ENC_LN1_G), GPUQ_LW(ly, GPUQ_ENC_LN1_B), e->ln_eps,
                      w16[2] ? x16 : NULL);
        /* in bf16 the activation's output leaves the GEMM rounded, as the next one takes it */
        int direct = w16[2] && w16[3];
        in = w16[2] ? (struct dense_in){NULL, x16} : dense_in(be, x, th, w16[2], x16, ctx);
        rc = dense(be, in, t, h, GPUQ_LW(ly, GPUQ_ENC_FFN_W1), w16[2],
                   GPUQ_LW(ly, GPUQ_ENC_FFN_B1), inner, e->act, inter, direct ? GPUQ_CPU_GEMM_BF16 : f32);
        struct dense_in mid = direct ? (struct dense_in){NULL, (const uint16_t *)inter}
                                     : dense_in(be, inter, ti, w16[3], x16, inter);
        if (!rc) rc = dense(be, mid, t, inner, GPUQ_LW(ly, GPUQ_ENC_FFN_W2), w16[3], GPUQ_LW(ly, GPUQ_ENC_FFN_B2), h,
                            GPUQ_ACT_NONE, x, RESIDUAL);
        if (!rc) add_layernorm(x, NULL, t, h, GPUQ_LW(ly, GPUQ_ENC_LN2_G), GPUQ_LW(ly, GPUQ_ENC_LN2_B), e->ln_eps,
                               bf16 && l + 1 < e->n_layers && e->layers[l + 1].w16[0] ? x16 : NULL);
    }
    return rc;
}

int gpuq_encoder_forward_cpu(struct gpuq_backend *be, const struct gpuq_encoder *e,
                             const struct gpuq_encode_batch *b, float *scratch) {
    int h = e->hidden, t = 0, rc = 0, longest = 0;
    for (int s = 0; s < b->n_seq; s++) t += b->lens[s], longest = b->lens[s] > longest ? b->lens[s] : longest;
    int tb = block_tokens(t, longest);
    float *x = scratch, *rest = x + (size_t)t * h;
    embed_tokens(e, b, x);
    add_layernorm(x, NULL, t, h, e->emb[GPUQ_ENC_LN_G], e->emb[GPUQ_ENC_LN_B], e->ln_eps, NULL);
    /* blocks of whole sequences of at most tb tokens, each through every layer */
    for (int s0 = 0, s1, off = 0, n, most; s0 < b->n_seq && !rc; off += n, s0 = s1) {
        s1 = gpuq_cpu_block_next(b->lens, b->n_seq, s0, tb, &n, &most);
        rc = layers(be, e, b->lens + s0, s1 - s0, n, most, x + (size_t)off * h, rest);
    }
    /* the tail past the layers' buffers, sized for a block */
    size_t sq = scores_floats(e, longest), wide = (size_t)(e->intermediate > h ? e->intermediate : h);
    float *work = rest + (size_t)tb * (4 * h + e->intermediate) + sq + ((size_t)tb * wide + 1) / 2 +
                  (e->rel_buckets ? sq : 0);
    return rc ? rc : e->mlm ? sparse(be, e, b, x, work) : gpuq_encoder_head_cpu(be, e, b, x, work);
}
