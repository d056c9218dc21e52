/* test_bert.c -- the CPU encoder on a random in-memory model (2 layers,
 * hidden 64): a padding-free batch gives each sequence what it gets alone,
 * whatever its neighbours and length (1 token included); CLS pooling is the
 * first token's state; normalization gives unit rows; bf16 and f16 round
 * the dense weights only, and move the output a little. Agreement with a
 * reference is tests/ref/test_encoder.py (in reduced precision
 * tests/e2e/test_embed.py). */
#include "kernels/bert.h"
#include "kernels/cpu.h"
#include "kernels/model.h"
#include "kernels/tensor.h"
#include "tests/check.h"

enum { H = 64, HEADS = 4, LAYERS = 2, INTER = 128, POS = 32, VOCAB = 50 };

static float *rnd(size_t n, float scale, float offset, unsigned *st) {
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = offset + scale * check_rand(st);
    return v;
}

static void make(struct gpuq_bert *m) {
    unsigned st = 7;
    memset(m, 0, sizeof *m);
    *m = (struct gpuq_bert){.hidden = H, .heads = HEADS, .n_layers = LAYERS, .intermediate = INTER,
                            .max_pos = POS, .vocab = VOCAB, .ln_eps = 1e-12f, .max_length = POS};
    m->word_emb = rnd((size_t)VOCAB * H, 1, 0, &st);
    m->pos_emb = rnd((size_t)POS * H, 1, 0, &st);
    m->type_emb = rnd(H, 1, 0, &st);
    m->emb_ln_g = rnd(H, 0.2f, 1, &st);
    m->emb_ln_b = rnd(H, 0.2f, 0, &st);
    m->layers = calloc(LAYERS, sizeof *m->layers);
    for (int l = 0; l < LAYERS; l++) {
        struct gpuq_bert_layer *y = &m->layers[l];
        y->qkv_w = rnd(3 * H * H, 0.3f, 0, &st), y->qkv_b = rnd(3 * H, 0.1f, 0, &st);
        y->attn_w = rnd(H * H, 0.2f, 0, &st), y->attn_b = rnd(H, 0.1f, 0, &st);
        y->ln1_g = rnd(H, 0.2f, 1, &st), y->ln1_b = rnd(H, 0.2f, 0, &st);
        y->ffn_w1 = rnd(INTER * H, 0.2f, 0, &st), y->ffn_b1 = rnd(INTER, 0.1f, 0, &st);
        y->ffn_w2 = rnd(H * INTER, 0.2f, 0, &st), y->ffn_b2 = rnd(H, 0.1f, 0, &st);
        y->ln2_g = rnd(H, 0.2f, 1, &st), y->ln2_b = rnd(H, 0.2f, 0, &st);
    }
}

static void run_in(const struct gpuq_bert *m, enum gpuq_precision p, const int32_t *ids,
                   const int *lens, int n_seq, enum gpuq_bert_pool pool, int normalize, float *out) {
    int t = 0, longest = 0;
    for (int s = 0; s < n_seq; s++) {
        t += lens[s];
        longest = lens[s] > longest ? lens[s] : longest;
    }
    float *scratch = malloc(gpuq_bert_scratch_floats(m, t, longest) * sizeof *scratch);
    struct gpuq_bert_batch b = {ids, lens, n_seq, pool, normalize, out};
    struct gpuq_backend be = {.precision = p};
    CHECK(gpuq_backend_cpu_open(&be) == 0);
    CHECK(gpuq_bert_forward(&be, m, &b, scratch) == 0);
    be.iface->destroy(&be);
    free(scratch);
}

static void run(const struct gpuq_bert *m, const int32_t *ids, const int *lens, int n_seq,
                enum gpuq_bert_pool pool, int normalize, float *out) {
    run_in(m, GPUQ_PREC_F32, ids, lens, n_seq, pool, normalize, out);
}

/* A bf16 value: the high half of the f32 it was rounded to. */
static uint16_t high_half(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)(u >> 16);
}

/* The CPU backend's model_load rounds the four dense matrices of each
 * layer to p and nothing else; the forward pass in p then moves the
 * embeddings by a little, not nothing. f16 refuses a weight beyond its
 * range. */
static void check_precision(enum gpuq_precision p, double bound, const int32_t *ids, const int *lens, int n) {
    struct gpuq_bert m, f32;
    struct gpuq_backend be = {.precision = p};
    make(&m);
    make(&f32);
    CHECK(gpuq_backend_cpu_open(&be) == 0);
    struct gpuq_model model = {.kind = GPUQ_MODEL_ENCODER, .bert = &m};
    CHECK(be.iface->model_load(&be, &model) == 0);
    int rounded = 1, moved = 0, kept = 1;
    for (size_t i = 0; i < (size_t)INTER * H; i++) {
        rounded &= m.layers[1].ffn_w1[i] == gpuq_cpu_round(p, f32.layers[1].ffn_w1[i]);
        moved += m.layers[1].ffn_w1[i] != f32.layers[1].ffn_w1[i];
    }
    for (size_t i = 0; i < 3 * H * H; i++) rounded &= m.layers[0].qkv_w[i] == gpuq_cpu_round(p, f32.layers[0].qkv_w[i]);
    for (size_t i = 0; i < (size_t)H * INTER; i++) rounded &= m.layers[1].ffn_w2[i] == gpuq_cpu_round(p, f32.layers[1].ffn_w2[i]);
    for (size_t i = 0; i < H * H; i++) rounded &= m.layers[1].attn_w[i] == gpuq_cpu_round(p, f32.layers[1].attn_w[i]);
    kept &= !memcmp(m.word_emb, f32.word_emb, (size_t)VOCAB * H * sizeof(float));
    kept &= !memcmp(m.layers[0].qkv_b, f32.layers[0].qkv_b, 3 * H * sizeof(float));
    kept &= !memcmp(m.layers[1].ln2_g, f32.layers[1].ln2_g, H * sizeof(float));
    CHECK(rounded && moved > INTER * H / 2 && kept);
    /* where the GEMMs take bf16, each layer has its matrices' bf16 copy */
    CHECK(!gpuq_cpu_bf16(&be) || (m.layers[0].w16 && m.layers[1].w16 &&
                                  m.layers[1].w16[3 * H * H + H * H + 5] == high_half(m.layers[1].ffn_w1[5])));
    printf("  %s: %s\n", gpuq_precision_name(p), be.desc);
    float want[5 * H], got[5 * H];
    run(&f32, ids, lens, n, GPUQ_BERT_POOL_MEAN, 1, want);
    run_in(&m, p, ids, lens, n, GPUQ_BERT_POOL_MEAN, 1, got);
    double worst = 0;
    for (int i = 0; i < n * H; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    printf("  %s: largest difference to f32 %.3g (bound %.3g)\n", gpuq_precision_name(p), worst, bound);
    CHECK(worst > 0 && worst <= bound);
    if (p == GPUQ_PREC_F16) {
        f32.layers[1].ffn_w2[5] = 70000.0f;
        model.bert = &f32;
        CHECK(be.iface->model_load(&be, &model) == GPUQ_BE_FAILED && strstr(be.errstr, "layer 1") &&
              strstr(be.errstr, "f16's range"));
    }
    be.iface->destroy(&be);
    gpuq_bert_free(&m);
    gpuq_bert_free(&f32);
}

int main(void) {
    struct gpuq_bert m;
    make(&m);
    enum { N = 5 };
    static const int lens[N] = {7, 1, POS, 2, 13};
    int32_t ids[7 + 1 + POS + 2 + 13];
    unsigned st = 3;
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) ids[i] = (int32_t)((check_rand(&st) + 1) * 0.5f * VOCAB) % VOCAB;
    for (int pool = 0; pool < 2; pool++) {
        float all[N * H], one[H];
        run(&m, ids, lens, N, (enum gpuq_bert_pool)pool, 0, all);
        double worst = 0;
        for (int s = 0, off = 0; s < N; off += lens[s], s++) {
            run(&m, ids + off, &lens[s], 1, (enum gpuq_bert_pool)pool, 0, one);
            for (int j = 0; j < H; j++) worst = fmax(worst, fabs(one[j] - all[s * H + j]));
        }
        CHECK(worst <= 1e-5);
        float norm[N * H];
        run(&m, ids, lens, N, (enum gpuq_bert_pool)pool, 1, norm);
        for (int s = 0; s < N; s++) {
            double n2 = 0, dot = 0, a2 = 0;
            for (int j = 0; j < H; j++) {
                n2 += (double)norm[s * H + j] * norm[s * H + j];
                dot += (double)norm[s * H + j] * all[s * H + j];
                a2 += (double)all[s * H + j] * all[s * H + j];
            }
            CHECK_CLOSE(n2, 1.0, 1e-5);
            CHECK_CLOSE(dot / sqrt(a2), 1.0, 1e-5);   /* the same direction */
        }
    }
    /* a one-token sequence: mean and CLS pooling agree */
    float mean[H], cls[H];
    run(&m, ids, &lens[1], 1, GPUQ_BERT_POOL_MEAN, 0, mean);
    run(&m, ids, &lens[1], 1, GPUQ_BERT_POOL_CLS, 0, cls);
    CHECK(memcmp(mean, cls, sizeof mean) == 0 || fabs(mean[0] - cls[0]) < 1e-6);
    /* and a sequence's state depends on all its tokens: changing the last
     * token changes the first token's pooled state */
    float a[H], b[H];
    run(&m, ids, &lens[0], 1, GPUQ_BERT_POOL_CLS, 0, a);
    ids[6] = (ids[6] + 1) % VOCAB;
    run(&m, ids, &lens[0], 1, GPUQ_BERT_POOL_CLS, 0, b);
    CHECK(fabs(a[0] - b[0]) + fabs(a[1] - b[1]) > 1e-4);
    check_precision(GPUQ_PREC_BF16, 1e-2, ids, lens, N);
    check_precision(GPUQ_PREC_F16, 2e-3, ids, lens, N);
    gpuq_bert_free(&m);
    gpuq_bert_free(NULL);
    return check_done("test_bert");
}
