/* encoder.cu -- the text encoder on CUDA (kernels/encoder.h): the twin of
 * kernels/encoder_cpu.c.
 *
 * Padding-free, as on the CPU: the batch's tokens are back to back, every
 * dense layer is one cuBLAS GEMM over the real tokens, and attention is
 * the fused kernel of kernels/attention.cu, one launch for a batch of
 * sequences of any lengths. The rest is a kernel each: embeddings +
 * LayerNorm, residual + bias + LayerNorm, bias + activation; then the
 * sentence-transformers modules (cuda_text_head, here: pooling, the Dense
 * modules as f32 cuBLAS GEMMs, normalization), which the decoder's forward
 * pass (kernels/decoder.cu) shares. Position rows, and the relative bias's buckets, are worked out on
 * the host with the batch.
 * LayerNorm statistics, mean pooling and the L2 norm are summed in double,
 * as on the CPU. The weights are uploaded once, at model load.
 *
 * In reduced precision (bf16, f16) the four weight matrices of a layer and
 * every GEMM's input are rounded to it (tensor cores, f32 sums); the kernel
 * that makes a GEMM's input writes it rounded. Everything else is f32. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "kernels/encoder.h"

/* ---- the weights on the device ---- */

enum { N_E = GPUQ_ENC_REL_BIAS + 1 };

struct dev_layer {
    void *w[GPUQ_ENC_LAYER_SLOTS];      /* GEMM matrices in the precision, the rest f32 */
};

struct dev_encoder {
    float *e[N_E];
    struct dev_layer *layers;
    int n_layers;
    struct cuda_dense dense;
    float *mlm[6];              /* the masked-LM head's (struct gpuq_mlm's order), f32; [4] NULL: tied */
    enum gpuq_precision prec;   /* of the matrices and the GEMMs' inputs */
};

extern "C" void cuda_encoder_free(struct gpuq_model *m) {
    struct dev_encoder *d = (struct dev_encoder *)m->backend_data;
    if (!d) return;
    for (int i = 0; i < N_E; i++) cudaFree(d->e[i]);
    for (int i = 0; i < 6; i++) cudaFree(d->mlm[i]);
    for (int l = 0; d->layers && l < d->n_layers; l++)
        for (int i = 0; i < GPUQ_ENC_LAYER_SLOTS; i++) cudaFree(d->layers[l].w[i]);
    cuda_dense_free(&d->dense);
    free(d->layers);
    free(d);
    m->backend_data = NULL;
}

/* Each weight of the encoder's list to its place on the device. */
static void upload_weight(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0, int64_t d1) {
    struct cuda_upload *u = (struct cuda_upload *)ctx;
    struct dev_encoder *d = (struct dev_encoder *)u->dev;
    (void)d0;
    cuda_upload_weight(u, slot < N_E ? (void **)&d->e[slot]
                          : slot < GPUQ_ENC_SLOTS ? &d->layers[layer].w[slot - GPUQ_ENC_FIRST_LAYER_SLOT]
                          : slot > GPUQ_ENC_SLOTS ? (void **)&d->mlm[layer]
                          : d1 ? (void **)&d->dense.w[layer] : (void **)&d->dense.b[layer], w);
}

extern "C" int cuda_encoder_load(struct gpuq_backend *be, struct gpuq_model *m) {
    struct gpuq_encoder *e = gpuq_model_encoder(m);
    if (e->hidden / e->heads > CUDA_ATT_MAX_HEAD) {
        snprintf(be->errstr, sizeof(be->errstr), "attention heads of %d columns (over %d) are not served "
                 "on CUDA", e->hidden / e->heads, CUDA_ATT_MAX_HEAD);
        return GPUQ_BE_UNSERVED;
    }
    struct dev_encoder *d = (struct dev_encoder *)calloc(1, sizeof(*d));
    if (!d) return GPUQ_BE_NOMEM;
    m->backend_data = d;
    d->prec = be->precision;
    d->layers = (struct dev_layer *)calloc((size_t)e->n_layers, sizeof(*d->layers));
    if (!d->layers || cuda_dense_alloc(&d->dense, e->n_dense)) {
        cuda_encoder_free(m);
        return GPUQ_BE_NOMEM;
    }
    d->n_layers = e->n_layers;
    struct cuda_upload u = {be, d, 0};
    gpuq_encoder_weights(e, upload_weight, &u);
    if (u.rc != 0) cuda_encoder_free(m);
    return u.rc;
}

/* ---- kernels ---- */

struct emb_tables {
    const float *e[N_E];    /* e[GPUQ_ENC_TYPE] NULL: no token types */
};

/* x[t] = LayerNorm(word[id] + pos[its position row] + type[its type]),
 * one block per token; pos and types hold each token's rows. */
__global__ static void embed_kernel(const int *ids, const int *pos, const int *types, struct emb_tables et, float eps,
                                    int h, float *x, void *low, int prec) {
    const float *const *e = et.e;
    int t = blockIdx.x;
    const float *w = e[GPUQ_ENC_WORD] + (size_t)ids[t] * h, *pe = e[GPUQ_ENC_POS] + (size_t)pos[t] * h;
    const float *type = e[GPUQ_ENC_TYPE] ? e[GPUQ_ENC_TYPE] + (size_t)types[t] * h : NULL;
    float *row = x + (size_t)t * h;
    for (int j = threadIdx.x; j < h; j += blockDim.x) row[j] = w[j] + pe[j] + (type ? type[j] : 0.0f);
    layernorm_row(row, row, h, e[GPUQ_ENC_LN_G], e[GPUQ_ENC_LN_B], eps, low, (size_t)t * h, prec);
}

/* x[t] = LayerNorm(x[t] + (y[t] + bias)): the residual after a projection. */
__global__ static void add_ln_kernel(float *x, const float *y, const float *bias, const float *g,
                                     const float *b, float eps, int h, void *low, int prec) {
    size_t at = (size_t)blockIdx.x * h;
    float *row = x + at;
    for (int j = threadIdx.x; j < h; j += blockDim.x) row[j] += y[at + j] + bias[j];
    layernorm_row(row, row, h, g, b, eps, low, at, prec);
}

/* dst = act(y + bias), over [rows, cols]; dst may be y. */
__global__ static void bias_act_kernel(const float *y, void *dst, int prec, const float *bias, long long n,
                                       int cols, int act) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = y[i] + bias[i % cols];
        put(dst, (size_t)i, prec, gpuq_act_apply((enum gpuq_act)act, v));
    }
}

/* out[s] = sentence-transformers' pooling (enum gpuq_pool) of sequence
 * s's rows of x, sums in double as on the CPU; one block per sequence. */
__global__ static void pool_kernel(const float *x, const int *off, int h, int mode, float *out) {
    int start = off[blockIdx.x], n = off[blockIdx.x + 1] - start;
    float *y = out + (size_t)blockIdx.x * h;
    for (int j = threadIdx.x; j < h; j += blockDim.x) {
        if (mode == GPUQ_POOL_CLS || mode == GPUQ_POOL_LAST) {
            y[j] = x[(size_t)(start + (mode == GPUQ_POOL_CLS ? 0 : n - 1)) * h + j];
            continue;
        }
        double acc = mode == GPUQ_POOL_MAX ? -INFINITY : 0.0, wsum = 0.0;
        for (int r = 0; r < n; r++) {
            double v = x[(size_t)(start + r) * h + j], w = mode == GPUQ_POOL_WEIGHTED_MEAN ? r + 1 : 1;
            if (mode == GPUQ_POOL_MAX) acc = fmax(acc, v);
            else acc += w * v, wsum += w;
        }
        y[j] = (float)(mode == GPUQ_POOL_MAX ? acc : mode == GPUQ_POOL_MEAN_SQRT_LEN ? acc / sqrt((double)n)
                       : acc / wsum);
    }
}

/* Each row of y [rows, h] divided by max(|row|, 1e-12); one block per row. */
__global__ static void normalize_kernel(float *y, int h) {
    float *row = y + (size_t)blockIdx.x * h;
    double n2 = 0.0;
    for (int j = threadIdx.x; j < h; j += blockDim.x) n2 += (double)row[j] * row[j];
    n2 = block_reduce(n2, 0);
    double norm = sqrt(n2) > 1e-12 ? sqrt(n2) : 1e-12;
    for (int j = threadIdx.x; j < h; j += blockDim.x) row[j] = (float)(row[j] / norm);
}

/* ---- the forward pass ---- */

/* Attention over the QKV GEMM's output [t, 3h] plus its bias, every key
 * (kernels/attention.cu). */
static int attention(struct gpuq_backend *be, const struct gpuq_encoder *m, const float *qkv, const float *bias,
                     const int *off, int n_seq, int max_len, void *ctx, enum gpuq_precision p,
                     struct cuda_rel_bias rel) {
    int h = m->hidden;
    struct cuda_attention a = {qkv, bias, off, n_seq, max_len, 3 * h, 0, h, 2 * h, m->heads, m->heads,
                               h / m->heads, 0, rel, ctx, h, (int)p};
    return cuda_attention(be, &a);
}

/* Device buffers of the current slot: ids, position rows, sequence starts
 * and buckets; x; the QKV (and each projection's) output; the attention
 * context then the feed-forward's middle; their rounded copies; the pooled
 * output and the Dense modules' (two of the widest). */
enum { B_META, B_X, B_QKV, B_MID, B_LOW, B_OUT };

#define LW(L, slot) ((L)->w[(slot) - GPUQ_ENC_FIRST_LAYER_SLOT])

/* One layer, x in place: the GEMMs read x (or its rounded copy in low). */
static int layer(struct gpuq_backend *be, const struct gpuq_encoder *m, const struct dev_layer *L,
                 enum gpuq_precision p, void *const *buf, const int *off, int n_seq, int max_len, int t,
                 struct cuda_rel_bias rel) {
    cudaStream_t st = cuda_cur(be)->stream;
    int h = m->hidden, inter = m->intermediate, rc;
    float *x = (float *)buf[B_X], *qkv = (float *)buf[B_QKV], *mid = (float *)buf[B_MID];
    void *low = p == GPUQ_PREC_F32 ? NULL : buf[B_LOW];
    const void *x_in = low ? low : x;
    void *mid_in = low ? low : mid;
    long long n = (long long)t * inter;
    const float *const *v = (const float *const *)L->w;
#define V(slot) v[(slot) - GPUQ_ENC_FIRST_LAYER_SLOT]
    if ((rc = cuda_gemm(be, p, LW(L, GPUQ_ENC_QKV_W), x_in, t, h, 3 * h, qkv, 0.0f)) ||
        (rc = attention(be, m, qkv, V(GPUQ_ENC_QKV_B), off, n_seq, max_len, mid_in, p, rel)) ||
        (rc = cuda_gemm(be, p, LW(L, GPUQ_ENC_ATTN_W), mid_in, t, h, h, qkv, 0.0f)))
        return rc;
    add_ln_kernel<<<t, CUDA_THREADS, 0, st>>>(x, qkv, V(GPUQ_ENC_ATTN_B), V(GPUQ_ENC_LN1_G), V(GPUQ_ENC_LN1_B),
                                              m->ln_eps, h, low, (int)p);
    LAUNCHED();
    if ((rc = cuda_gemm(be, p, LW(L, GPUQ_ENC_FFN_W1), x_in, t, h, inter, mid, 0.0f))) return rc;
    bias_act_kernel<<<blocks_for(n), CUDA_THREADS, 0, st>>>(mid, mid_in, (int)p, V(GPUQ_ENC_FFN_B1), n, inter,
                                                            (int)m->act);
    LAUNCHED();
    if ((rc = cuda_gemm(be, p, LW(L, GPUQ_ENC_FFN_W2), mid_in, t, inter, h, qkv, 0.0f))) return rc;
    add_ln_kernel<<<t, CUDA_THREADS, 0, st>>>(x, qkv, V(GPUQ_ENC_FFN_B2), V(GPUQ_ENC_LN2_G), V(GPUQ_ENC_LN2_B),
                                              m->ln_eps, h, low, (int)p);
#undef V
    LAUNCHED();
    return 0;
}

/* Pooling, the Dense modules (f32) and normalization, into out on the host. */
int cuda_dense_alloc(struct cuda_dense *d, int n) {
    d->w = (float **)calloc((size_t)n + 1, sizeof(float *));
    d->b = (float **)calloc((size_t)n + 1, sizeof(float *));
    d->n = d->w && d->b ? n : 0;
    return d->w && d->b ? 0 : GPUQ_BE_NOMEM;
}

void cuda_dense_free(struct cuda_dense *d) {
    for (int i = 0; i < d->n; i++) cudaFree(d->w[i]), cudaFree(d->b[i]);
    free(d->w);
    free(d->b);
    *d = (struct cuda_dense){NULL, NULL, 0};
}

int cuda_text_head(struct gpuq_backend *be, const struct gpuq_encoder *m, const struct cuda_dense *dense,
                   const struct gpuq_encode_batch *b, const float *x, const int *off, float *work) {
    size_t half = gpuq_encoder_head_floats(m, b->n_seq) / 2;
    cudaStream_t st = cuda_cur(be)->stream;
    int n = b->n_seq, rc, width = m->hidden;
    float *y = work;
    pool_kernel<<<n, CUDA_THREADS, 0, st>>>(x, off, m->hidden, (int)b->pooling, y);
    LAUNCHED();
    for (int i = 0; i < m->n_dense; i++) {
        const struct gpuq_dense *D = &m->dense[i];
        float *to = y == work ? work + half : work;
        long long cells = (long long)n * D->d_out;
        if ((rc = cuda_gemm(be, GPUQ_PREC_F32, dense->w[i], y, n, D->d_in, D->d_out, to, 0.0f))) return rc;
        bias_act_kernel<<<blocks_for(cells), CUDA_THREADS, 0, st>>>(to, to, (int)GPUQ_PREC_F32, dense->b[i], cells,
                                                                    D->d_out, (int)D->act);
        LAUNCHED();
        y = to, width = D->d_out;
    }
    if (b->normalize) {
        normalize_kernel<<<n, CUDA_THREADS, 0, st>>>(y, width);
        LAUNCHED();
    }
    return cuda_down(be, b->out, y, (size_t)n * width * 4);
}

/* ---- SPLADE's head (kernels/encoder_cpu.c's sparse, the same sums) ---- */

/* y = LayerNorm(y) per row of h values, one block per row. */
__global__ static void ln_kernel(float *y, const float *g, const float *b, float eps, int h) {
    float *row = y + (size_t)blockIdx.x * h;
    layernorm_row(row, row, h, g, b, eps, NULL, 0, 0);
}

/* Sequence s0 + blockIdx.x of a block whose tokens' logits [.., vocab]
 * start at token first (off: every sequence's first token): y[s, j] = the
 * max over its tokens of log(1 + ReLU(logit + bias[j])), 0 where none is
 * positive, NaN where any is NaN (which ReLU and the max would hide). */
__global__ static void sparse_pool_kernel(const float *logits, const float *bias, const int *off, int s0,
                                          int first, int vocab, float *y) {
    int s = s0 + blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= vocab) return;
    float top = 0.0f;
    for (int r = off[s]; r < off[s + 1]; r++) {
        float z = logits[(size_t)(r - first) * vocab + j] + (bias ? bias[j] : 0.0f);
        if (isnan(z)) top = z;
        else if (z > 0.0f && (z = log1pf(z)) > top) top = z;
    }
    y[(size_t)s * vocab + j] = top;
}

/* Logits of at most this many floats at a time: blocks of whole sequences
 * of up to SPARSE_FLOATS / vocab tokens (a longer sequence is a block alone). */
#define SPARSE_FLOATS ((size_t)32 << 20)

static size_t sparse_block_tokens(const struct gpuq_encoder *m, int n_tokens, int max_len) {
    size_t fit = SPARSE_FLOATS / (size_t)m->vocab, most = fit > (size_t)max_len ? fit : (size_t)max_len;
    return most < (size_t)n_tokens ? most : (size_t)n_tokens;
}

/* Per block: the head's transform (f32 GEMM, bias and activation,
 * LayerNorm) into t, its logits over the vocabulary (the tied word
 * embeddings where it has no decoder of its own) into logits, pooled per
 * sequence into y [n_seq, vocab]; then y to b->out. */
static int sparse_head(struct gpuq_backend *be, const struct gpuq_encoder *m, const struct dev_encoder *d,
                       const struct gpuq_encode_batch *b, const float *x, const int *off, int n_tokens, int max_len,
                       float *t, float *logits, float *y) {
    cudaStream_t st = cuda_cur(be)->stream;
    int h = m->hidden, v = m->vocab, rc;
    size_t fit = sparse_block_tokens(m, n_tokens, max_len);
    const float *dec = d->mlm[4] ? d->mlm[4] : d->e[GPUQ_ENC_WORD];
    for (int s0 = 0, s1, first = 0, n; s0 < b->n_seq; s0 = s1, first += n) {
        for (s1 = s0, n = 0; s1 < b->n_seq && (s1 == s0 || (size_t)(n + b->lens[s1]) <= fit); s1++) n += b->lens[s1];
        long long cells = (long long)n * h;
        if ((rc = cuda_gemm(be, GPUQ_PREC_F32, d->mlm[0], x + (size_t)first * h, n, h, h, t, 0.0f))) return rc;
        bias_act_kernel<<<blocks_for(cells), CUDA_THREADS, 0, st>>>(t, t, (int)GPUQ_PREC_F32, d->mlm[1], cells, h,
                                                                    (int)m->act);
        LAUNCHED();
        ln_kernel<<<n, CUDA_THREADS, 0, st>>>(t, d->mlm[2], d->mlm[3], m->ln_eps, h);
        LAUNCHED();
        if ((rc = cuda_gemm(be, GPUQ_PREC_F32, dec, t, n, h, v, logits, 0.0f))) return rc;
        dim3 grid((unsigned)(s1 - s0), (unsigned)((v + CUDA_THREADS - 1) / CUDA_THREADS));
        sparse_pool_kernel<<<grid, CUDA_THREADS, 0, st>>>(logits, d->mlm[5], off, s0, first, v, y);
        LAUNCHED();
    }
    return cuda_down(be, b->out, y, (size_t)b->n_seq * v * 4);
}

extern "C" int cuda_encoder_forward(struct gpuq_backend *be, const struct gpuq_model *model,
                                    const struct gpuq_encode_batch *b, int n_tokens, int max_len) {
    const struct gpuq_encoder *m = gpuq_model_encoder(model);
    const struct dev_encoder *d = (const struct dev_encoder *)model->backend_data;
    if (!d) {
        snprintf(be->errstr, sizeof(be->errstr), "the encoder is not on the device");
        return GPUQ_BE_FAILED;
    }
    int n_seq = b->n_seq, t = n_tokens, h = m->hidden, rc, span = max_len - 1;
    int n_buckets = m->rel_buckets ? 2 * span + 1 : 0;
    size_t wide = (size_t)(m->intermediate > h ? m->intermediate : h), tokens = (size_t)t;
    size_t head = m->mlm ? (size_t)n_seq * m->vocab : gpuq_encoder_head_floats(m, n_seq);
    size_t mid = tokens * wide, logits = m->mlm ? sparse_block_tokens(m, t, max_len) * (size_t)m->vocab : 0;
    enum gpuq_precision p = d->prec;
    /* on the host: each token's position row and type row, the sequences'
     * first tokens then the end, and the bucket of each distance from -span
     * to span */
    size_t n_meta = 2 * tokens + (size_t)n_seq + 1 + (size_t)n_buckets;
    int *meta = (int *)cuda_host(be, cuda_of(be)->cur, GPUQ_STAGING, n_meta * sizeof(int));
    if (!meta) return GPUQ_BE_NOMEM;
    int *pos = meta, *types = pos + t, *starts = types + t, *buckets = starts + n_seq + 1;
    for (int r = 0; r < t; r++) types[r] = gpuq_encoder_type(m, b->types, r);
    starts[0] = 0;
    for (int s = 0; s < n_seq; s++) {
        int seen = 0;
        starts[s + 1] = starts[s] + b->lens[s];
        for (int q = 0; q < b->lens[s]; q++)
            pos[starts[s] + q] = gpuq_encoder_position(m, b->ids[starts[s] + q], q, &seen);
    }
    for (int i = 0; i < n_buckets; i++) buckets[i] = gpuq_encoder_rel_bucket(i - span, m->rel_buckets, m->rel_max_distance);
    void *buf[B_OUT + 1] = {0};
    size_t bytes[B_OUT + 1] = {(tokens + n_meta) * sizeof(int), tokens * h * 4, tokens * 3 * h * 4,
                               (mid > logits ? mid : logits) * 4, p == GPUQ_PREC_F32 ? 0 : tokens * wide * 2,
                               head * 4};
    for (int i = 0; i <= B_OUT; i++)
        if (bytes[i] && (rc = cuda_dev(be, i, bytes[i], &buf[i]))) return rc;
    int *ids = (int *)buf[B_META], *dpos = ids + t, *dtypes = dpos + t, *off = dtypes + t, *dbuckets = off + n_seq + 1;
    if ((rc = cuda_up(be, ids, b->ids, tokens * sizeof(int))) || (rc = cuda_up(be, dpos, meta, n_meta * sizeof(int))))
        return rc;
    cudaStream_t st = cuda_cur(be)->stream;
    void *low = p == GPUQ_PREC_F32 ? NULL : buf[B_LOW];
    struct emb_tables et;
    for (int i = 0; i < N_E; i++) et.e[i] = d->e[i];
    if (!m->n_types) et.e[GPUQ_ENC_TYPE] = NULL;
    embed_kernel<<<t, CUDA_THREADS, 0, st>>>(ids, dpos, dtypes, et, m->ln_eps, h, (float *)buf[B_X], low, (int)p);
    LAUNCHED();
    struct cuda_rel_bias rel = {m->rel_buckets ? d->e[GPUQ_ENC_REL_BIAS] : NULL, dbuckets, span};
    for (int i = 0; i < m->n_layers; i++)
        if ((rc = layer(be, m, &d->layers[i], p, buf, off, n_seq, max_len, t, rel))) return rc;
    if (m->mlm)
        return sparse_head(be, m, d, b, (const float *)buf[B_X], off, t, max_len, (float *)buf[B_QKV],
                           (float *)buf[B_MID], (float *)buf[B_OUT]);
    return cuda_text_head(be, m, &d->dense, b, (const float *)buf[B_X], off, (float *)buf[B_OUT]);
}
