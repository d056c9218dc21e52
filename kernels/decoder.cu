/* decoder.cu -- the decoder embedder on CUDA (kernels/decoder.h): the twin
 * of kernels/decoder_cpu.c.
 *
 * Padding-free, as the encoder: the batch's tokens are back to back, every
 * projection is one cuBLAS GEMM over the real tokens (the output and down
 * projections add themselves to the residual: beta 1), and attention is
 * the fused kernel of kernels/attention.cu, causal, each query head reading
 * its group's key/value head in place. Between the q/k/v GEMM and the
 * attention one kernel adds Qwen2's biases, takes Qwen3's RMSNorm per head
 * and turns q and k by the rotary table (made on the host with the batch,
 * as the CPU's), once per token rather than once per query tile. The rest
 * is a kernel each: the embedding rows, RMSNorm (which writes the next
 * GEMM's input in the precision), SiLU(gate) * up; then the encoder's head
 * (cuda_text_head). Sums of squares in double, as on the CPU.
 *
 * In reduced precision (bf16, f16) the four weight matrices of a layer and
 * every GEMM's input are rounded to it (tensor cores, f32 sums). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "kernels/decoder.h"

/* ---- the weights on the device ---- */

struct dev_decoder {
    float *embed, *norm;
    void *(*layers)[GPUQ_DEC_LAYER_SLOTS];  /* GEMM matrices in the precision, the rest f32 */
    int n_layers;
    struct cuda_dense dense;                /* st's Dense modules */
    enum gpuq_precision prec;
};

extern "C" void cuda_decoder_free(struct gpuq_model *m) {
    struct dev_decoder *d = (struct dev_decoder *)m->backend_data;
    if (!d) return;
    cudaFree(d->embed);
    cudaFree(d->norm);
    for (int l = 0; d->layers && l < d->n_layers; l++)
        for (int i = 0; i < GPUQ_DEC_LAYER_SLOTS; i++) cudaFree(d->layers[l][i]);
    cuda_dense_free(&d->dense);
    free(d->layers);
    free(d);
    m->backend_data = NULL;
}

static void upload_weight(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0, int64_t d1) {
    struct cuda_upload *u = (struct cuda_upload *)ctx;
    struct dev_decoder *d = (struct dev_decoder *)u->dev;
    (void)d0;
    cuda_upload_weight(u, slot < GPUQ_DEC_LAYER_SLOTS ? &d->layers[layer][slot]
                          : slot == GPUQ_DEC_EMBED ? (void **)&d->embed
                          : slot == GPUQ_DEC_NORM ? (void **)&d->norm
                          : d1 ? (void **)&d->dense.w[layer] : (void **)&d->dense.b[layer], w);
}

extern "C" int cuda_decoder_load(struct gpuq_backend *be, struct gpuq_model *m) {
    struct gpuq_decoder *dec = gpuq_model_decoder(m);
    if (dec->head_dim > CUDA_ATT_MAX_HEAD) {
        snprintf(be->errstr, sizeof(be->errstr), "attention heads of %d columns (over %d) are not served on CUDA",
                 dec->head_dim, CUDA_ATT_MAX_HEAD);
        return GPUQ_BE_UNSERVED;
    }
    struct dev_decoder *d = (struct dev_decoder *)calloc(1, sizeof(*d));
    if (!d) return GPUQ_BE_NOMEM;
    m->backend_data = d;
    d->prec = be->precision;
    d->layers = (void *(*)[GPUQ_DEC_LAYER_SLOTS])calloc((size_t)dec->n_layers, sizeof(*d->layers));
    if (!d->layers || cuda_dense_alloc(&d->dense, dec->st.n_dense)) {
        cuda_decoder_free(m);
        return GPUQ_BE_NOMEM;
    }
    d->n_layers = dec->n_layers;
    struct cuda_upload u = {be, d, 0};
    gpuq_decoder_weights(dec, upload_weight, &u);
    if (u.rc != 0) cuda_decoder_free(m);
    return u.rc;
}

/* ---- kernels ---- */

/* x [t, h] = the embedding rows of ids. */
__global__ static void embed_kernel(const int *ids, const float *embed, int h, long long n, float *x) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) x[i] = embed[(size_t)ids[i / h] * h + i % h];
}

/* out = RMSNorm(in) * g over h values, one block per row, in precision
 * prec; out may be in (a thread reads only the columns it writes). */
__global__ static void rmsnorm_kernel(const float *in, void *out, int prec, const float *g, float eps, int h) {
    size_t at = (size_t)blockIdx.x * h;
    const float *row = in + at;
    double ss = 0.0;
    for (int j = threadIdx.x; j < h; j += blockDim.x) ss += (double)row[j] * row[j];
    ss = block_reduce(ss, 0);
    float scale = (float)(1.0 / sqrt(ss / h + eps));
    for (int j = threadIdx.x; j < h; j += blockDim.x) put(out, at + j, prec, g[j] * (row[j] * scale));
}

/* Head blockIdx.y of token blockIdx.x's row of qkv [t, w], in place: plus
 * its bias (Qwen2); a q or k head then normed by qn or kn (Qwen3) and
 * turned by the rotary table's row of the token's position (rotate-half:
 * column i pairs with i + hd / 2); a value head (only launched with a
 * bias) takes the bias alone. */
__global__ static void prepare_kernel(float *qkv, int w, const float *bias, const float *qn, const float *kn,
                                      const int *pos, const float *cs, int heads, int kv, int hd, float eps) {
    int hh = blockIdx.y, half = hd / 2;
    float *v = qkv + (size_t)blockIdx.x * w + (size_t)hh * hd;
    const float *bb = bias ? bias + (size_t)hh * hd : NULL;
    if (hh >= heads + kv) {
        for (int j = threadIdx.x; j < hd; j += blockDim.x) v[j] += bb[j];
        return;
    }
    const float *g = hh < heads ? qn : kn;
    float scale = 1.0f;
    if (g) {    /* the same for the whole block */
        double ss = 0.0;
        for (int j = threadIdx.x; j < hd; j += blockDim.x) {
            float x = v[j] + (bb ? bb[j] : 0.0f);
            ss += (double)x * x;
        }
        ss = block_reduce(ss, 0);   /* every read of v is done before the writes below */
        scale = (float)(1.0 / sqrt(ss / hd + eps));
    }
    const float *row = cs + (size_t)pos[blockIdx.x] * hd;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float x1 = v[i] + (bb ? bb[i] : 0.0f), x2 = v[i + half] + (bb ? bb[i + half] : 0.0f);
        if (g) x1 = g[i] * (x1 * scale), x2 = g[i + half] * (x2 * scale);
        float c = row[i], s = row[half + i];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
    }
}

/* act [rows, inner] = SiLU(gate) * up from gu's rows [gate | up], in
 * precision prec. */
__global__ static void swiglu_kernel(const float *gu, void *act, int prec, long long n, int inner) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i < n; i += (long long)gridDim.x * blockDim.x) {
        long long r = i / inner, j = i - r * inner;
        const float *row = gu + (size_t)r * 2 * inner;
        put(act, (size_t)i, prec, gpuq_act_apply(GPUQ_ACT_SILU, row[j]) * row[inner + j]);
    }
}

/* ---- the forward pass ---- */

/* Device buffers of the current slot: ids, positions, sequence starts and
 * the rotary table; x, the residual stream; the q/k/v rows; the gate/up
 * rows, then the head's work; every GEMM's input in the precision (the
 * normed rows, the attention's context, SiLU(gate) * up, one at a time). */
enum { B_META, B_X, B_QKV, B_MID, B_LOW, B_BUFS };

#define LW(slot) (L[(slot)])
#define LF(slot) ((const float *)L[(slot)])

static int layer(struct gpuq_backend *be, const struct gpuq_decoder *m, void *const *L, enum gpuq_precision p,
                 void *const *buf, const int *off, const int *pos, const float *cs, int n_seq, int max_len, int t) {
    cudaStream_t st = cuda_cur(be)->stream;
    int h = m->hidden, hd = m->head_dim, w = gpuq_decoder_qkv_width(m), qd = m->heads * hd;
    int inner = m->intermediate, rc;
    float *x = (float *)buf[B_X], *qkv = (float *)buf[B_QKV], *gu = (float *)buf[B_MID];
    void *low = buf[B_LOW];
    rmsnorm_kernel<<<t, CUDA_THREADS, 0, st>>>(x, low, (int)p, LF(GPUQ_DEC_IN_NORM), m->rms_eps, h);
    LAUNCHED();
    if ((rc = cuda_gemm(be, p, LW(GPUQ_DEC_QKV_W), low, t, h, w, qkv, 0.0f))) return rc;
    const float *bias = m->qkv_bias ? LF(GPUQ_DEC_QKV_B) : NULL;
    dim3 grid((unsigned)t, (unsigned)(m->heads + m->kv_heads + (bias ? m->kv_heads : 0)));
    prepare_kernel<<<grid, 64, 0, st>>>(qkv, w, bias, m->qk_norm ? LF(GPUQ_DEC_Q_NORM) : NULL,
                                         m->qk_norm ? LF(GPUQ_DEC_K_NORM) : NULL, pos, cs, m->heads, m->kv_heads,
                                         hd, m->rms_eps);
    LAUNCHED();
    struct cuda_attention a = {qkv, NULL, off, n_seq, max_len, w, 0, qd, qd + m->kv_heads * hd, m->heads,
                               m->kv_heads, hd, 1, {NULL, NULL, 0}, low, qd, (int)p};
    if ((rc = cuda_attention(be, &a)) || (rc = cuda_gemm(be, p, LW(GPUQ_DEC_O_W), low, t, qd, h, x, 1.0f)))
        return rc;
    rmsnorm_kernel<<<t, CUDA_THREADS, 0, st>>>(x, low, (int)p, LF(GPUQ_DEC_POST_NORM), m->rms_eps, h);
    LAUNCHED();
    if ((rc = cuda_gemm(be, p, LW(GPUQ_DEC_GATE_UP_W), low, t, h, 2 * inner, gu, 0.0f))) return rc;
    long long n = (long long)t * inner;
    swiglu_kernel<<<blocks_for(n), CUDA_THREADS, 0, st>>>(gu, low, (int)p, n, inner);
    LAUNCHED();
    return cuda_gemm(be, p, LW(GPUQ_DEC_DOWN_W), low, t, inner, h, x, 1.0f);
}

extern "C" int cuda_decoder_forward(struct gpuq_backend *be, const struct gpuq_model *model,
                                    const struct gpuq_encode_batch *b, int n_tokens, int max_len) {
    const struct gpuq_decoder *m = gpuq_model_decoder(model);
    const struct dev_decoder *d = (const struct dev_decoder *)model->backend_data;
    if (!d) {
        snprintf(be->errstr, sizeof(be->errstr), "the decoder is not on the device");
        return GPUQ_BE_FAILED;
    }
    int n_seq = b->n_seq, t = n_tokens, h = m->hidden, hd = m->head_dim, rc;
    size_t tokens = (size_t)t;
    size_t wide = (size_t)gpuq_decoder_gemm_in_width(m), inner = (size_t)m->intermediate;
    /* on the host: each token's position, the sequences' first tokens then
     * the end, the rotary table (after them, at a whole float) */
    size_t n_meta = tokens + (size_t)n_seq + 1, n_cs = (size_t)max_len * hd;
    int *meta = (int *)cuda_host(be, cuda_of(be)->cur, GPUQ_STAGING, (n_meta + n_cs) * 4);
    if (!meta) return GPUQ_BE_NOMEM;
    int *pos = meta, *starts = pos + t;
    float *cs = (float *)(starts + n_seq + 1);
    starts[0] = 0;
    for (int s = 0; s < n_seq; s++) {
        starts[s + 1] = starts[s] + b->lens[s];
        for (int q = 0; q < b->lens[s]; q++) pos[starts[s] + q] = q;
    }
    gpuq_decoder_rope_table(m, max_len, cs);
    size_t mid = tokens * 2 * inner, head = gpuq_encoder_head_floats(&m->st, n_seq);
    mid = head > mid ? head : mid;
    void *buf[B_BUFS] = {0};
    size_t bytes[B_BUFS] = {(tokens + n_meta + n_cs) * 4, tokens * h * 4, tokens * gpuq_decoder_qkv_width(m) * 4,
                            mid * 4, tokens * wide * (d->prec == GPUQ_PREC_F32 ? 4 : 2)};
    for (int i = 0; i < B_BUFS; i++)
        if ((rc = cuda_dev(be, i, bytes[i], &buf[i]))) return rc;
    int *ids = (int *)buf[B_META], *dpos = ids + t, *off = dpos + t;
    const float *dcs = (const float *)(off + n_seq + 1);
    if ((rc = cuda_up(be, ids, b->ids, tokens * 4)) || (rc = cuda_up(be, dpos, meta, (n_meta + n_cs) * 4)))
        return rc;
    cudaStream_t st = cuda_cur(be)->stream;
    float *x = (float *)buf[B_X];
    embed_kernel<<<blocks_for((long long)t * h), CUDA_THREADS, 0, st>>>(ids, d->embed, h, (long long)t * h, x);
    LAUNCHED();
    for (int l = 0; l < m->n_layers; l++)
        if ((rc = layer(be, m, d->layers[l], d->prec, buf, off, dpos, dcs, n_seq, max_len, t))) return rc;
    rmsnorm_kernel<<<t, CUDA_THREADS, 0, st>>>(x, x, (int)GPUQ_PREC_F32, d->norm, m->rms_eps, h);
    LAUNCHED();
    return cuda_text_head(be, &m->st, &d->dense, b, x, off, (float *)buf[B_MID]);
}
