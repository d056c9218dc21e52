/* decoder_cpu.c -- the decoder embedder's forward pass on the CPU (oneDNN
 * GEMMs, kernels/cpu_gemm.h); what it computes is kernels/decoder.h's.
 *
 * Padding-free, as the encoder: the batch's tokens are concatenated, every
 * projection is one GEMM over the real tokens only, and attention runs per
 * sequence, causal, in blocks of ATT_BLOCK queries: a block's scores cover
 * the keys up to its last query only (those above the diagonal inside the
 * block computed and masked), so a long sequence needs heads * ATT_BLOCK *
 * n floats of scores, not heads * n * n, and half the work. Grouped
 * heads read their key/value head in place: the query heads that share one
 * are the same offset r within each group, so for each r one GEMM batched
 * over the groups strides the queries by a group and the keys by a head. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/decoder.h"

#define ATT_BLOCK 128

/* y[t, out] = x[t, in] W^T (+ bias), or y += that where add (the residual,
 * added in the GEMM's own pass); the input as precision p's GEMMs take it:
 * bf16 into x16 where the layer has a bf16 copy, else rounded in place (x
 * is a GEMM input only). */
static int gemm(struct gpuq_backend *be, float *x, int64_t t, int64_t in, const float *w, const uint16_t *w16,
                const float *bias, int64_t out, float *y, uint16_t *x16, int add) {
    if (w16) gpuq_cpu_gemm_to_bf16(x, (size_t)(t * in), x16);
    const float *xin = w16 ? NULL : gpuq_cpu_round_rows(be->precision, x, (size_t)(t * in), x);
    struct gpuq_cpu_gemm_args a = {
        .batch = 1, .m = t, .n = out, .k = in, .type = w16 ? GPUQ_CPU_GEMM_BF16 : GPUQ_CPU_GEMM_F32,
        .a = w16 ? (const void *)x16 : xin, .a_row = in, .a_col = 1, .b = w16 ? (const void *)w16 : w,
        .b_row = 1, .b_col = in, .c = y, .c_row = out, .c_col = 1, .alpha = 1.0f, .bias = bias,
        .accumulate = add};
    return gpuq_cpu_gemm(be, &a);
}

/* y = RMSNorm(x) * g over n values, the mean square in double; y may be x. */
static void rmsnorm(const float *x, float *y, int n, const float *g, float eps) {
    double ss = 0;
    for (int j = 0; j < n; j++) ss += (double)x[j] * x[j];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int j = 0; j < n; j++) y[j] = g[j] * (x[j] * scale);
}

static void rmsnorm_rows(const float *x, float *y, int rows, int n, const float *g, float eps) {
    for (int r = 0; r < rows; r++) rmsnorm(x + (size_t)r * n, y + (size_t)r * n, n, g, eps);
}

/* The rotary table (kernels/decoder.h): the angle in f32 as transformers'
 * rotary embedding computes it (its inv_freq, and the angle a product in
 * f32), so long sequences turn as they do there. */
void gpuq_decoder_rope_table(const struct gpuq_decoder *d, int max_len, float *cs) {
    int half = d->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf((float)d->rope_theta, (float)(2 * i) / (float)d->head_dim);
        for (int p = 0; p < max_len; p++) {
            float a = (float)p * inv;
            cs[(size_t)p * d->head_dim + i] = cosf(a);
            cs[(size_t)p * d->head_dim + half + i] = sinf(a);
        }
    }
}

/* v [hd] rotated by position row cs (rotate-half: element i pairs with
 * i + hd / 2). */
static void rope(float *v, const float *cs, int hd) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float x1 = v[i], x2 = v[i + half], c = cs[i], s = cs[half + i];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
    }
}

/* Qwen3's RMSNorm per head of q and k, then the rotary positions, on the
 * qkv rows of one sequence of n tokens (positions 0 .. n - 1). */
static void qk_prepare(const struct gpuq_decoder *d, const struct gpuq_dec_layer *ly, float *qkv, int n,
                       const float *cs) {
    int hd = d->head_dim, w = gpuq_decoder_qkv_width(d), heads = d->heads + d->kv_heads;
    for (int p = 0; p < n; p++)
        for (int hh = 0; hh < heads; hh++) {
            float *v = qkv + (size_t)p * w + (size_t)hh * hd;
            if (d->qk_norm)
                rmsnorm(v, v, hd, ly->w[hh < d->heads ? GPUQ_DEC_Q_NORM : GPUQ_DEC_K_NORM], d->rms_eps);
            rope(v, cs + (size_t)p * hd, hd);
        }
}

/* A block's scores [heads, m, keys] (row i: query position q0 + i) to the
 * numerators of their causal softmax (keys past q0 + i masked with -inf,
 * so they weigh e^-87, below the sum's last bit), inv [heads, m] to 1 /
 * each row's sum. */
static void causal_softmax(float *s, int heads, int m, int keys, int q0, float *inv) {
    for (int hh = 0; hh < heads; hh++)
        for (int i = 0; i < m; i++) {
            float *v = s + ((size_t)hh * m + i) * keys;
            for (int j = q0 + i + 1; j < keys; j++) v[j] = -INFINITY;
        }
    gpuq_cpu_softmax_rows(s, heads * m, keys, inv);
}

/* ctx [n, heads * hd] = causal softmax(Q K^T / sqrt(hd)) V for one
 * sequence whose q, k, v rows sit in qkv [n, (heads + 2 kv) * hd]; query
 * head g * rep + r reads key/value head g. scores holds heads *
 * min(n, ATT_BLOCK) * n floats. */
static int attention(struct gpuq_backend *be, const struct gpuq_decoder *d, const float *qkv, int n, float *scores,
                     float *ctx) {
    int64_t hd = d->head_dim, w = gpuq_decoder_qkv_width(d), kv = d->kv_heads, rep = d->heads / d->kv_heads;
    int64_t qd = d->heads * hd;
    int rc = 0;
    for (int q0 = 0; q0 < n && !rc; q0 += ATT_BLOCK) {
        int m = n - q0 < ATT_BLOCK ? n - q0 : ATT_BLOCK, keys = q0 + m;
        int64_t mk = (int64_t)m * keys;
        const float *q = qkv + (size_t)q0 * w;
        for (int64_t r = 0; r < rep && !rc; r++) {
            struct gpuq_cpu_gemm_args qk = {
                .batch = (int)kv, .m = m, .n = keys, .k = hd, .type = GPUQ_CPU_GEMM_F32,
                .a = q + r * hd, .a_row = w, .a_col = 1, .a_batch = rep * hd,
                .b = qkv + qd, .b_row = 1, .b_col = w, .b_batch = hd,
                .c = scores + r * mk, .c_row = keys, .c_col = 1, .c_batch = rep * mk,
                .alpha = 1.0f / sqrtf((float)hd)};
            rc = gpuq_cpu_gemm(be, &qk);
        }
        if (rc) break;
        float *inv = scores + (size_t)d->heads * mk;
        causal_softmax(scores, d->heads, m, keys, q0, inv);
        for (int64_t r = 0; r < rep && !rc; r++) {
            struct gpuq_cpu_gemm_args pv = {
                .batch = (int)kv, .m = m, .n = hd, .k = keys, .type = GPUQ_CPU_GEMM_F32,
                .a = scores + r * mk, .a_row = keys, .a_col = 1, .a_batch = rep * mk,
                .b = qkv + qd + kv * hd, .b_row = w, .b_col = 1, .b_batch = hd,
                .c = ctx + (size_t)q0 * qd + r * hd, .c_row = qd, .c_col = 1, .c_batch = rep * hd, .alpha = 1.0f};
            rc = gpuq_cpu_gemm(be, &pv);
        }
        if (!rc) gpuq_cpu_divide_heads(ctx + (size_t)q0 * qd, m, d->heads, hd, qd, inv);
    }
    return rc;
}

/* Floats of scores, and their rows' 1 / sum, for a longest sequence of max_len. */
static size_t score_floats(const struct gpuq_decoder *d, int max_len) {
    size_t m = (size_t)(max_len < ATT_BLOCK ? max_len : ATT_BLOCK);
    return (size_t)d->heads * m * ((size_t)max_len + 1);
}

/* act [rows, inner] = SiLU(gate) * up from gu's rows [gate | up]: SiLU(g) =
 * g / (1 + e^-g), as g e^g / (1 + e^g) where g < 0, so e^x is only ever
 * taken of x <= 0. Vector code for the CPU backend's ISA. */
static inline __attribute__((always_inline)) void swiglu_body(const float *gu, int rows, int inner, float *act) {
    for (int r = 0; r < rows; r++) {
        const float *g = gu + (size_t)r * 2 * inner, *u = g + inner;
        float *a = act + (size_t)r * inner;
#pragma omp simd
        for (int j = 0; j < inner; j++) {
            float x = g[j], e = gpuq_exp_nonpositive(-fabsf(x)), one = 1.0f, num;
            uint32_t bx, be, bo;
            memcpy(&bx, &x, 4), memcpy(&be, &e, 4), memcpy(&bo, &one, 4);
            uint32_t neg = (uint32_t)((int32_t)bx >> 31);   /* all ones where x < 0: a select on the bits */
            uint32_t bn = (be & neg) | (bo & ~neg);
            memcpy(&num, &bn, 4);
            a[j] = x * num / (1.0f + e) * u[j];
        }
    }
}

GPUQ_CPU_VECTOR(swiglu, (const float *gu, int rows, int inner, float *act), (gu, rows, inner, act))

/* Floats a token needs in a block's buffers: xn, qkv, ctx, gate/up, act. */
static size_t block_floats(const struct gpuq_decoder *d) {
    return (size_t)d->hidden + (size_t)gpuq_decoder_qkv_width(d) + (size_t)d->heads * d->head_dim +
           3 * (size_t)d->intermediate;
}

/* Tokens in a block of the layers' loop: about BLOCK_FLOATS of activations,
 * all layers run on one block before the next, so that the buffers (and
 * oneDNN's packing buffers, sized by the rows of a GEMM) stay small however
 * large the batch; a longer sequence is a block alone. */
#define BLOCK_FLOATS ((size_t)6 << 20)

static int block_tokens(const struct gpuq_decoder *d, int n_tokens, int max_len) {
    size_t fit = BLOCK_FLOATS / block_floats(d);
    return gpuq_cpu_block_tokens(fit < INT_MAX ? (int)fit : INT_MAX, n_tokens, max_len);
}

/* The bf16 GEMM input's floats for tb tokens. */
static size_t x16_floats(const struct gpuq_decoder *d, size_t tb) {
    return (tb * (size_t)gpuq_decoder_gemm_in_width(d) + 1) / 2;
}

/* The scratch, in order: x [t, h]; the rotary table [L, hd]; a block's
 * xn [tb, h], qkv [tb, w], ctx [tb, heads * hd], gate/up [tb, 2 i], act
 * [tb, i]; scores (score_floats); the block's bf16 GEMM input; the head's
 * work. */
size_t gpuq_decoder_scratch_floats(const struct gpuq_decoder *d, int n_tokens, int max_len) {
    size_t tb = (size_t)block_tokens(d, n_tokens, max_len);
    return (size_t)n_tokens * d->hidden + (size_t)max_len * d->head_dim + tb * block_floats(d) +
           score_floats(d, max_len) + x16_floats(d, tb) + gpuq_encoder_head_floats(&d->st, n_tokens);
}

/* The layers on x [t, h], the rows of lens[0..n_seq) (t tokens, the longest
 * longest), in place; cs the rotary table; the buffers each layer needs in
 * scratch. */
static int layers(struct gpuq_backend *be, const struct gpuq_decoder *d, const int *lens, int n_seq, int t,
                  int longest, float *x, const float *cs, float *scratch) {
    int h = d->hidden, inner = d->intermediate, w = gpuq_decoder_qkv_width(d), qd = d->heads * d->head_dim, rc = 0;
    float *xn = scratch, *qkv = xn + (size_t)t * h, *ctx = qkv + (size_t)t * w;
    float *gu = ctx + (size_t)t * qd, *act = gu + (size_t)t * 2 * inner, *scores = act + (size_t)t * inner;
    uint16_t *x16 = (uint16_t *)(scores + score_floats(d, longest));
    int bf16 = gpuq_cpu_bf16(be);
    for (int l = 0; l < d->n_layers && !rc; l++) {
        const struct gpuq_dec_layer *ly = &d->layers[l];
        const uint16_t *const *w16 = (const uint16_t *const *)ly->w16, *none[GPUQ_DEC_W16S] = {NULL};
        if (!bf16) w16 = none;
        rmsnorm_rows(x, xn, t, h, ly->w[GPUQ_DEC_IN_NORM], d->rms_eps);
        rc = gemm(be, xn, t, h, ly->w[GPUQ_DEC_QKV_W], w16[GPUQ_DEC_W16_QKV], ly->w[GPUQ_DEC_QKV_B], w, qkv, x16, 0);
        for (int s = 0, off = 0; s < n_seq && !rc; off += lens[s], s++) {
            qk_prepare(d, ly, qkv + (size_t)off * w, lens[s], cs);
            rc = attention(be, d, qkv + (size_t)off * w, lens[s], scores, ctx + (size_t)off * qd);
        }
        /* the output and down projections add themselves to x, the residual */
        if (!rc) rc = gemm(be, ctx, t, qd, ly->w[GPUQ_DEC_O_W], w16[GPUQ_DEC_W16_O], NULL, h, x, x16, 1);
        if (rc) break;
        rmsnorm_rows(x, xn, t, h, ly->w[GPUQ_DEC_POST_NORM], d->rms_eps);
        rc = gemm(be, xn, t, h, ly->w[GPUQ_DEC_GATE_UP_W], w16[GPUQ_DEC_W16_GATE_UP], NULL, 2 * inner, gu, x16, 0);
        if (rc) break;
        swiglu(gu, t, inner, act);
        rc = gemm(be, act, t, inner, ly->w[GPUQ_DEC_DOWN_W], w16[GPUQ_DEC_W16_DOWN], NULL, h, x, x16, 1);
    }
    return rc;
}

int gpuq_decoder_forward_cpu(struct gpuq_backend *be, const struct gpuq_decoder *d,
                             const struct gpuq_encode_batch *b, float *scratch) {
    int h = d->hidden, t = 0, longest = 0, rc = 0;
    for (int s = 0; s < b->n_seq; s++) t += b->lens[s], longest = b->lens[s] > longest ? b->lens[s] : longest;
    int tb = block_tokens(d, t, longest);
    float *x = scratch, *cs = x + (size_t)t * h, *rest = cs + (size_t)longest * d->head_dim;
    for (int r = 0; r < t; r++) memcpy(x + (size_t)r * h, d->embed + (size_t)b->ids[r] * h, (size_t)h * sizeof *x);
    gpuq_decoder_rope_table(d, longest, cs);
    /* blocks of whole sequences of at most tb tokens, each through every layer */
    for (int s0 = 0, s1, off = 0, n, most; s0 < b->n_seq && !rc; off += n, s0 = s1) {
        s1 = gpuq_cpu_block_next(b->lens, b->n_seq, s0, tb, &n, &most);
        rc = layers(be, d, b->lens + s0, s1 - s0, n, most, x + (size_t)off * h, cs, rest);
    }
    if (rc) return rc;
    rmsnorm_rows(x, x, t, h, d->norm, d->rms_eps);
    float *work = rest + (size_t)tb * block_floats(d) + score_floats(d, longest) + x16_floats(d, (size_t)tb);
    return gpuq_encoder_head_cpu(be, &d->st, b, x, work);
}
