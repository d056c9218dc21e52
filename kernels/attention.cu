/* attention.cu -- the fused attention kernel of the text models on CUDA
 * (kernels/cuda_int.h's cuda_attention): the encoder's (kernels/encoder.cu:
 * every key, MPNet's relative bias) and the decoder's (kernels/decoder.cu:
 * causal, grouped-query heads).
 *
 * One block per (sequence, query head, ATT_QT of its query rows) streams
 * the sequence's keys through shared memory ATT_KT at a time with an online
 * softmax, so a batch of sequences of any lengths is one launch and no
 * score matrix is ever written. Each warp keeps ATT_RPW rows' running max,
 * sum and output (a lane holds columns lane + 32 j, j < DPL): one score per
 * lane, then the tile's probabilities weigh its values. A query head reads
 * its group's key/value head where it sits in the projection's rows, not a
 * copy; a causal block stops at the keys of its own last query and masks
 * those past each row's. */
#include <math.h>
#include <stdio.h>

#include "kernels/cuda_int.h"

#define ATT_QT 16                       /* query rows per block */
#define ATT_KT 32                       /* keys per tile: one per lane */
#define ATT_WARPS 4
#define ATT_RPW (ATT_QT / ATT_WARPS)    /* query rows per warp */

static size_t att_smem(int dh) { return (size_t)(ATT_QT * dh + ATT_KT * (dh + 1) + ATT_KT * dh) * sizeof(float); }

/* The input's element: a projection's output plus its bias, if any. */
__device__ static inline float at_col(const struct cuda_attention &a, int token, int col) {
    return a.qkv[(size_t)token * a.ld + col] + (a.bias ? a.bias[col] : 0.0f);
}

template <int DPL>
__global__ static void attention_kernel(struct cuda_attention a, float scale) {
    extern __shared__ float sm[];
    int dh = a.dh;
    float *qs = sm, *ks = qs + ATT_QT * dh, *vs = ks + ATT_KT * (dh + 1);   /* ks padded: no bank conflicts */
    int start = a.off[blockIdx.x], n = a.off[blockIdx.x + 1] - start, q0 = blockIdx.z * ATT_QT;
    if (q0 >= n) return;    /* the whole block, before any barrier */
    int qn = min(ATT_QT, n - q0), head = blockIdx.y, group = head / (a.heads / a.kv_heads);
    int qc = a.q_col + head * dh, kc = a.k_col + group * dh, vc = a.v_col + group * dh;
    int keys = a.causal ? q0 + qn : n;      /* no row of a causal block sees past its last */
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int i = threadIdx.x; i < qn * dh; i += blockDim.x) {
        int r = i / dh, c = i - r * dh;
        qs[i] = at_col(a, start + q0 + r, qc + c);
    }
    float top[ATT_RPW], sum[ATT_RPW], acc[ATT_RPW][DPL];
#pragma unroll
    for (int i = 0; i < ATT_RPW; i++) {
        top[i] = -INFINITY;
        sum[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < DPL; j++) acc[i][j] = 0.0f;
    }
    for (int k0 = 0; k0 < keys; k0 += ATT_KT) {
        int kn = min(ATT_KT, keys - k0);
        __syncthreads();    /* the last tile is used up (and the queries are in) */
        for (int i = threadIdx.x; i < kn * dh; i += blockDim.x) {
            int r = i / dh, c = i - r * dh;
            ks[r * (dh + 1) + c] = at_col(a, start + k0 + r, kc + c);
            vs[i] = at_col(a, start + k0 + r, vc + c);
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_RPW; i++) {
            int r = warp + i * ATT_WARPS;
            if (r >= qn) continue;  /* the same for the whole warp */
            float s = -INFINITY;
            if (lane < kn && (!a.causal || k0 + lane <= q0 + r)) {
                float dot = 0.0f;
                for (int c = 0; c < dh; c++) dot += qs[r * dh + c] * ks[lane * (dh + 1) + c];
                s = dot * scale;
                if (a.rel.table)
                    s += a.rel.table[a.rel.bucket[k0 + lane - (q0 + r) + a.rel.span] * gridDim.y + blockIdx.y];
            }
            /* a row's first tile holds key 0, which every row sees: now is finite from there on */
            float now = fmaxf(top[i], warp_max(s));
            float p = s == -INFINITY ? 0.0f : expf(s - now);
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
        size_t at = (size_t)(start + q0 + r) * a.ctx_ld + (size_t)head * dh;
#pragma unroll
        for (int j = 0; j < DPL; j++)
            if (lane + 32 * j < dh) put(a.ctx, at + lane + 32 * j, a.prec, acc[i][j] / sum[i]);
    }
}

int cuda_attention(struct gpuq_backend *be, const struct cuda_attention *a) {
    if (a->dh < 1 || a->dh > CUDA_ATT_MAX_HEAD || a->kv_heads < 1 || a->heads % a->kv_heads) {
        snprintf(be->errstr, sizeof(be->errstr), "attention: %d heads of %d columns over %d key/value heads "
                 "are not served on CUDA", a->heads, a->dh, a->kv_heads);
        return GPUQ_BE_FAILED;
    }
    dim3 grid((unsigned)a->n_seq, (unsigned)a->heads, (unsigned)((a->max_len + ATT_QT - 1) / ATT_QT));
    size_t smem = att_smem(a->dh);
    cudaStream_t st = cuda_cur(be)->stream;
    float scale = 1.0f / sqrtf((float)a->dh);
    if (a->dh <= 32) attention_kernel<1><<<grid, 32 * ATT_WARPS, smem, st>>>(*a, scale);
    else if (a->dh <= 64) attention_kernel<2><<<grid, 32 * ATT_WARPS, smem, st>>>(*a, scale);
    else attention_kernel<4><<<grid, 32 * ATT_WARPS, smem, st>>>(*a, scale);
    LAUNCHED();
    return 0;
}
