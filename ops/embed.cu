/* embed.cu -- the text encoder on CUDA: the twin of kernels/bert_cpu.c.
 *
 * Padding-free, as on the CPU: the batch's tokens are back to back, every
 * dense layer is one cuBLAS GEMM over the real tokens, and attention is one
 * fused kernel over (sequence, head, 16 query rows) that streams the
 * sequence's keys through shared memory with an online softmax, so a batch
 * of sequences of any lengths is one launch. The rest is a kernel each:
 * embeddings + LayerNorm, residual + bias + LayerNorm, bias + GELU, pooling.
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
#include "ops/embed.h"

/* ---- the weights on the device ---- */

enum { W_QKV, W_ATTN, W_FFN1, W_FFN2, N_W };   /* matrices, in the precision */
enum { V_QKV, V_ATTN, V_LN1_G, V_LN1_B, V_FFN1, V_FFN2, V_LN2_G, V_LN2_B, N_V };  /* f32 */
enum { E_WORD, E_POS, E_TYPE, E_LN_G, E_LN_B, N_E };

struct dev_layer {
    void *w[N_W];
    float *v[N_V];
};

struct dev_bert {
    float *e[N_E];
    struct dev_layer *layers;
    int n_layers;
    enum gpuq_precision prec;   /* of the matrices and the GEMMs' inputs */
};

/* The head sizes the attention kernel serves: a lane holds up to 4 of a
 * row's columns. */
#define ATT_MAX_HEAD 128

void cuda_bert_free(struct gpuq_model *m) {
    struct dev_bert *d = (struct dev_bert *)m->backend_data;
    if (!d) return;
    for (int i = 0; i < N_E; i++) cudaFree(d->e[i]);
    for (int l = 0; d->layers && l < d->n_layers; l++) {
        for (int i = 0; i < N_W; i++) cudaFree(d->layers[l].w[i]);
        for (int i = 0; i < N_V; i++) cudaFree(d->layers[l].v[i]);
    }
    free(d->layers);
    free(d);
    m->backend_data = NULL;
}

static int load_layer(struct gpuq_backend *be, const struct gpuq_bert *m, const struct gpuq_bert_layer *L,
                      struct dev_layer *D) {
    size_t h = (size_t)m->hidden, in = (size_t)m->intermediate;
    const float *w[N_W] = {L->qkv_w, L->attn_w, L->ffn_w1, L->ffn_w2};
    size_t wn[N_W] = {3 * h * h, h * h, in * h, h * in};
    const float *v[N_V] = {L->qkv_b, L->attn_b, L->ln1_g, L->ln1_b, L->ffn_b1, L->ffn_b2, L->ln2_g, L->ln2_b};
    size_t vn[N_V] = {3 * h, h, h, h, in, h, h, h};
    int rc = 0;
    for (int i = 0; rc == 0 && i < N_W; i++) rc = cuda_upload_weights(be, &D->w[i], w[i], wn[i]);
    for (int i = 0; rc == 0 && i < N_V; i++) rc = cuda_upload(be, (void **)&D->v[i], v[i], vn[i]);
    return rc;
}

int cuda_bert_load(struct gpuq_backend *be, struct gpuq_model *m) {
    const struct gpuq_bert *b = m->bert;
    if (b->hidden / b->heads > ATT_MAX_HEAD) {
        snprintf(be->errstr, sizeof(be->errstr), "attention heads of %d columns (over %d) are not served "
                 "on CUDA", b->hidden / b->heads, ATT_MAX_HEAD);
        return GPUQ_BE_UNSERVED;
    }
    struct dev_bert *d = (struct dev_bert *)calloc(1, sizeof(*d));
    if (!d) return GPUQ_BE_NOMEM;
    m->backend_data = d;
    d->prec = be->precision;
    d->layers = (struct dev_layer *)calloc((size_t)b->n_layers, sizeof(*d->layers));
    if (!d->layers) {
        cuda_bert_free(m);
        return GPUQ_BE_NOMEM;
    }
    d->n_layers = b->n_layers;
    size_t h = (size_t)b->hidden;
    const float *e[N_E] = {b->word_emb, b->pos_emb, b->type_emb, b->emb_ln_g, b->emb_ln_b};
    size_t en[N_E] = {(size_t)b->vocab * h, (size_t)b->max_pos * h, h, h, h};
    int rc = 0;
    for (int i = 0; rc == 0 && i < N_E; i++) rc = cuda_upload(be, (void **)&d->e[i], e[i], en[i]);
    for (int l = 0; rc == 0 && l < b->n_layers; l++) rc = load_layer(be, b, &b->layers[l], &d->layers[l]);
    if (rc != 0) cuda_bert_free(m);
    return rc;
}

/* ---- kernels ---- */

struct emb_tables {
    const float *e[N_E];
};

/* x[t] = LayerNorm(word[id] + pos[position in its sequence] + type), one
 * block per token; off [n_seq + 1] holds the sequences' first tokens. */
__global__ static void embed_kernel(const int *ids, const int *off, int n_seq, struct emb_tables et, float eps,
                                    int h, float *x, void *low, int prec) {
    const float *const *e = et.e;
    int t = blockIdx.x, lo = 0, hi = n_seq - 1;
    while (lo < hi) {   /* the last sequence starting at or before t */
        int mid = (lo + hi + 1) / 2;
        if (off[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    const float *w = e[E_WORD] + (size_t)ids[t] * h, *pe = e[E_POS] + (size_t)(t - off[lo]) * h;
    float *row = x + (size_t)t * h;
    for (int j = threadIdx.x; j < h; j += blockDim.x) row[j] = w[j] + pe[j] + e[E_TYPE][j];
    layernorm_row(row, row, h, e[E_LN_G], e[E_LN_B], eps, low, (size_t)t * h, prec);
}

/* x[t] = LayerNorm(x[t] + (y[t] + bias)): the residual after a projection. */
__global__ static void add_ln_kernel(float *x, const float *y, const float *bias, const float *g,
                                     const float *b, float eps, int h, void *low, int prec) {
    size_t at = (size_t)blockIdx.x * h;
    float *row = x + at;
    for (int j = threadIdx.x; j < h; j += blockDim.x) row[j] += y[at + j] + bias[j];
    layernorm_row(row, row, h, g, b, eps, low, at, prec);
}

/* dst = GELU(y + bias) (erf), over [rows, cols]; dst may be y. */
__global__ static void bias_gelu_kernel(const float *y, void *dst, int prec, const float *bias, long long n,
                                        int cols) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = y[i] + bias[i % cols];
        put(dst, (size_t)i, prec, gpuq_act_apply(GPUQ_ACT_GELU, v));
    }
}

#define ATT_QT 16                       /* query rows per block */
#define ATT_KT 32                       /* keys per tile: one per lane */
#define ATT_WARPS 4
#define ATT_RPW (ATT_QT / ATT_WARPS)    /* query rows per warp */

static size_t att_smem(int dh) { return (size_t)(ATT_QT * dh + ATT_KT * (dh + 1) + ATT_KT * dh) * sizeof(float); }

/* ctx = softmax(Q K^T * scale) V for one sequence (blockIdx.x), one head
 * (blockIdx.y) and ATT_QT of its query rows (blockIdx.z), q, k and v read
 * from qkv [tokens, 3h] plus their bias. Each warp keeps ATT_RPW rows'
 * running max, sum and output (a lane holds columns lane + 32 j, j < DPL)
 * while the keys pass through shared memory ATT_KT at a time: one score
 * per lane, then the tile's probabilities weigh its values. */
template <int DPL>
__global__ static void attention_kernel(const float *qkv, const float *bias, const int *off, int h, int dh,
                                        float scale, void *ctx, int prec) {
    extern __shared__ float sm[];
    float *qs = sm, *ks = qs + ATT_QT * dh, *vs = ks + ATT_KT * (dh + 1);   /* ks padded: no bank conflicts */
    int start = off[blockIdx.x], n = off[blockIdx.x + 1] - start, q0 = blockIdx.z * ATT_QT;
    if (q0 >= n) return;    /* the whole block, before any barrier */
    int qn = min(ATT_QT, n - q0), col = blockIdx.y * dh, ld = 3 * h;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int i = threadIdx.x; i < qn * dh; i += blockDim.x) {
        int r = i / dh, c = i - r * dh;
        qs[i] = qkv[(size_t)(start + q0 + r) * ld + col + c] + bias[col + c];
    }
    float top[ATT_RPW], sum[ATT_RPW], acc[ATT_RPW][DPL];
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        top[i] = -INFINITY;
        sum[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < DPL; j++) acc[i][j] = 0.0f;
    }
    for (int k0 = 0; k0 < n; k0 += ATT_KT) {
        int kn = min(ATT_KT, n - k0);
        __syncthreads();    /* the last tile is used up (and the queries are in) */
        for (int i = threadIdx.x; i < kn * dh; i += blockDim.x) {
            int r = i / dh, c = i - r * dh;
            const float *row = qkv + (size_t)(start + k0 + r) * ld;
            ks[r * (dh + 1) + c] = row[h + col + c] + bias[h + col + c];
            vs[i] = row[2 * h + col + c] + bias[2 * h + col + c];
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_RPW; i++) {
            int r = warp + i * ATT_WARPS;
            if (r >= qn) continue;  /* the same for the whole warp */
            float s = -INFINITY;
            if (lane < kn) {
                float dot = 0.0f;
                for (int c = 0; c < dh; c++) dot += qs[r * dh + c] * ks[lane * (dh + 1) + c];
                s = dot * scale;
            }
            float now = fmaxf(top[i], warp_max(s));
            float p = lane < kn ? expf(s - now) : 0.0f;
            float fade = expf(top[i] - now);    /* 0 on the first tile */
            sum[i] = sum[i] * fade + warp_sum(p);
            top[i] = now;
#pragma unroll
            for (int j = 0; j < DPL; j++) acc[i][j] *= fade;
            for (int k = 0; k < kn; k++) {
                float pk = __shfl_sync(0xffffffffu, p, k);
#pragma unroll
                for (int j = 0; j < DPL; j++)
                    if (lane + 32 * j < dh) acc[i][j] += pk * vs[k * dh + lane + 32 * j];
            }
        }
    }
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        int r = warp + i * ATT_WARPS;
        if (r >= qn) continue;
        size_t at = (size_t)(start + q0 + r) * h + col;
#pragma unroll
        for (int j = 0; j < DPL; j++)
            if (lane + 32 * j < dh) put(ctx, at + lane + 32 * j, prec, acc[i][j] / sum[i]);
    }
}

/* out[s] = the mean of sequence s's rows of x (or its first, cls), then
 * divided by max(|out[s]|, 1e-12) when normalizing; one block per sequence. */
__global__ static void pool_kernel(const float *x, const int *off, int h, int cls, int normalize, float *out) {
    int start = off[blockIdx.x], n = off[blockIdx.x + 1] - start;
    float *y = out + (size_t)blockIdx.x * h;
    double n2 = 0.0;
    for (int j = threadIdx.x; j < h; j += blockDim.x) {
        double acc = 0.0;
        for (int r = 0; r < (cls ? 1 : n); r++) acc += x[(size_t)(start + r) * h + j];
        float v = cls ? (float)acc : (float)(acc / n);
        y[j] = v;
        n2 += (double)v * v;
    }
    if (!normalize) return;     /* the same for the whole block */
    n2 = block_reduce(n2, 0);
    double norm = sqrt(n2) > 1e-12 ? sqrt(n2) : 1e-12;
    for (int j = threadIdx.x; j < h; j += blockDim.x) y[j] = (float)(y[j] / norm);
}

/* ---- the forward pass ---- */

/* y [t, out] = x [t, in] W^T, W [out, in] row-major (column-major:
 * Y^T = W^T' X^T), x and W in the precision, y f32. */
static int dense(struct gpuq_backend *be, enum gpuq_precision p, const void *w, const void *x, int t, int in,
                 int out, float *y) {
    cublasHandle_t blas = cuda_cur(be)->blas;
    float one = 1.0f, zero = 0.0f;
    if (p == GPUQ_PREC_F32)
        BLAS(cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, out, t, in, &one, (const float *)w, in,
                         (const float *)x, in, &zero, y, out));
    else {
        cudaDataType_t lt = p == GPUQ_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
        BLAS(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, out, t, in, &one, w, lt, in, x, lt, in, &zero, y,
                          CUDA_R_32F, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return 0;
}

static int attention(struct gpuq_backend *be, const struct gpuq_bert *m, const float *qkv, const float *bias,
                     const int *off, int n_seq, int max_len, void *ctx, int prec) {
    int dh = m->hidden / m->heads;
    dim3 grid((unsigned)n_seq, (unsigned)m->heads, (unsigned)((max_len + ATT_QT - 1) / ATT_QT));
    size_t smem = att_smem(dh);
    cudaStream_t st = cuda_cur(be)->stream;
    float scale = 1.0f / sqrtf((float)dh);
    if (dh <= 32)
        attention_kernel<1><<<grid, 32 * ATT_WARPS, smem, st>>>(qkv, bias, off, m->hidden, dh, scale, ctx, prec);
    else if (dh <= 64)
        attention_kernel<2><<<grid, 32 * ATT_WARPS, smem, st>>>(qkv, bias, off, m->hidden, dh, scale, ctx, prec);
    else
        attention_kernel<4><<<grid, 32 * ATT_WARPS, smem, st>>>(qkv, bias, off, m->hidden, dh, scale, ctx, prec);
    LAUNCHED();
    return 0;
}

/* Device buffers of the current slot: ids and sequence starts, x, the QKV
 * (and each projection's) output, the attention context then the
 * feed-forward's middle, their rounded copies, the pooled output. */
enum { B_META, B_X, B_QKV, B_MID, B_LOW, B_OUT };

/* One layer, x in place: the GEMMs read x (or its rounded copy in low). */
static int layer(struct gpuq_backend *be, const struct gpuq_bert *m, const struct dev_layer *L,
                 enum gpuq_precision p, void *const *buf, const int *off, int n_seq, int max_len, int t) {
    cudaStream_t st = cuda_cur(be)->stream;
    int h = m->hidden, inter = m->intermediate, rc;
    float *x = (float *)buf[B_X], *qkv = (float *)buf[B_QKV], *mid = (float *)buf[B_MID];
    void *low = p == GPUQ_PREC_F32 ? NULL : buf[B_LOW];
    const void *x_in = low ? low : x;
    void *mid_in = low ? low : mid;
    long long n = (long long)t * inter;
    if ((rc = dense(be, p, L->w[W_QKV], x_in, t, h, 3 * h, qkv)) ||
        (rc = attention(be, m, qkv, L->v[V_QKV], off, n_seq, max_len, mid_in, (int)p)) ||
        (rc = dense(be, p, L->w[W_ATTN], mid_in, t, h, h, qkv)))
        return rc;
    add_ln_kernel<<<t, CUDA_THREADS, 0, st>>>(x, qkv, L->v[V_ATTN], L->v[V_LN1_G], L->v[V_LN1_B], m->ln_eps, h,
                                              low, (int)p);
    LAUNCHED();
    if ((rc = dense(be, p, L->w[W_FFN1], x_in, t, h, inter, mid))) return rc;
    bias_gelu_kernel<<<blocks_for(n), CUDA_THREADS, 0, st>>>(mid, mid_in, (int)p, L->v[V_FFN1], n, inter);
    LAUNCHED();
    if ((rc = dense(be, p, L->w[W_FFN2], mid_in, t, inter, h, qkv))) return rc;
    add_ln_kernel<<<t, CUDA_THREADS, 0, st>>>(x, qkv, L->v[V_FFN2], L->v[V_LN2_G], L->v[V_LN2_B], m->ln_eps, h,
                                              low, (int)p);
    LAUNCHED();
    return 0;
}

extern "C" int gpuq_cuda_embed(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_embed *a = (const struct gpuq_embed *)l->args;
    const struct gpuq_bert *m = a->model->bert;
    const struct dev_bert *d = (const struct dev_bert *)a->model->backend_data;
    if (!d) {
        snprintf(be->errstr, sizeof(be->errstr), "embed: the encoder is not on the device");
        return GPUQ_BE_FAILED;
    }
    int n_seq = a->b.n_seq, t = a->n_tokens, h = m->hidden, rc;
    size_t wide = (size_t)(m->intermediate > h ? m->intermediate : h), tokens = (size_t)t;
    enum gpuq_precision p = d->prec;
    /* the sequences' first tokens, then the end */
    int *starts = (int *)cuda_host(be, cuda_of(be)->cur, GPUQ_STAGING, ((size_t)n_seq + 1) * sizeof(int));
    if (!starts) return GPUQ_BE_NOMEM;
    starts[0] = 0;
    for (int s = 0; s < n_seq; s++) starts[s + 1] = starts[s] + a->b.lens[s];
    void *buf[B_OUT + 1] = {0};
    size_t bytes[B_OUT + 1] = {(tokens + n_seq + 1) * sizeof(int), tokens * h * 4, tokens * 3 * h * 4,
                               tokens * wide * 4, p == GPUQ_PREC_F32 ? 0 : tokens * wide * 2,
                               (size_t)n_seq * h * 4};
    for (int i = 0; i <= B_OUT; i++)
        if (bytes[i] && (rc = cuda_dev(be, i, bytes[i], &buf[i]))) return rc;
    int *ids = (int *)buf[B_META], *off = ids + t;
    if ((rc = cuda_up(be, ids, a->b.ids, tokens * sizeof(int))) ||
        (rc = cuda_up(be, off, starts, ((size_t)n_seq + 1) * sizeof(int))))
        return rc;
    cudaStream_t st = cuda_cur(be)->stream;
    void *low = p == GPUQ_PREC_F32 ? NULL : buf[B_LOW];
    struct emb_tables et = {{d->e[E_WORD], d->e[E_POS], d->e[E_TYPE], d->e[E_LN_G], d->e[E_LN_B]}};
    embed_kernel<<<t, CUDA_THREADS, 0, st>>>(ids, off, n_seq, et, m->ln_eps, h, (float *)buf[B_X], low, (int)p);
    LAUNCHED();
    for (int i = 0; i < m->n_layers; i++)
        if ((rc = layer(be, m, &d->layers[i], p, buf, off, n_seq, a->max_len, t))) return rc;
    pool_kernel<<<n_seq, CUDA_THREADS, 0, st>>>((const float *)buf[B_X], off, h, a->b.pooling == GPUQ_BERT_POOL_CLS,
                                                a->b.normalize, (float *)buf[B_OUT]);
    LAUNCHED();
    return cuda_down(be, a->b.out, buf[B_OUT], (size_t)n_seq * h * 4);
}
