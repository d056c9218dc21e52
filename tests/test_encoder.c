/* test_encoder.c -- the CPU encoder on a random in-memory model (2 layers,
 * hidden 64): a padding-free batch gives each sequence what it gets alone,
 * whatever its neighbours and length (1 token included); CLS pooling is the
 * first token's state; normalization gives unit rows; bf16 and f16 round
 * the dense weights only, and move the output a little. Agreement with a
 * reference is tests/ref/test_encoder.py (in reduced precision
 * tests/e2e/test_embed.py). */
#include "kernels/cpu.h"
#include "kernels/encoder.h"
#include "models/model.h"
#include "base/tensor.h"
#include "tests/check.h"

enum { H = 64, HEADS = 4, LAYERS = 2, INTER = 128, POS = 32, VOCAB = 50 };

static float rnd1(float scale, float offset, unsigned *st) { return offset + scale * check_rand(st); }

static void fill(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0, int64_t d1) {
    unsigned *st = ctx;
    (void)layer, (void)d0;
    int gamma = slot == GPUQ_ENC_LN_G || slot == GPUQ_ENC_LN1_G || slot == GPUQ_ENC_LN2_G;
    float scale = gamma ? 0.2f : slot == GPUQ_ENC_QKV_W ? 0.3f : d1 ? 0.2f : 0.1f;
    if (slot <= GPUQ_ENC_TYPE) scale = 1;
    *w->data = malloc(w->n * sizeof(float));
    for (size_t i = 0; i < w->n; i++) (*w->data)[i] = rnd1(scale, gamma ? 1 : 0, st);
}

static const struct gpuq_family arch = {.name = "test", .arch = GPUQ_ARCH_ENCODER};

/* BERT's shape, or with pad_id >= 0 RoBERTa's positions (pad_id + 1 + i)
 * and no token types; rel_buckets: MPNet's relative bias. */
static void make_as(struct gpuq_encoder *m, int pad_id, int rel_buckets) {
    unsigned st = 7;
    *m = (struct gpuq_encoder){.family = "test", .hidden = H, .heads = HEADS, .n_layers = LAYERS,
                               .intermediate = INTER, .max_pos = POS + (pad_id < 0 ? 0 : pad_id + 1),
                               .vocab = VOCAB, .n_types = pad_id < 0 ? 2 : 0, .ln_eps = 1e-12f,
                               .act = GPUQ_ACT_GELU, .pad_id = pad_id, .rel_buckets = rel_buckets,
                               .rel_max_distance = 128, .max_length = POS};
    m->layers = calloc(LAYERS, sizeof *m->layers);
    gpuq_encoder_weights(m, fill, &st);
}

static void make(struct gpuq_encoder *m) { make_as(m, -1, 0); }

static void run_in(const struct gpuq_encoder *m, enum gpuq_precision p, const int32_t *ids,
                   const int *lens, int n_seq, enum gpuq_pool pool, int normalize, float *out) {
    int t = 0, longest = 0;
    for (int s = 0; s < n_seq; s++) {
        t += lens[s];
        longest = lens[s] > longest ? lens[s] : longest;
    }
    float *scratch = malloc(gpuq_encoder_scratch_floats(m, t, longest) * sizeof *scratch);
    struct gpuq_encode_batch b = {.ids = ids, .lens = lens, .n_seq = n_seq, .pooling = pool, .normalize = normalize,
                                  .out = out};
    struct gpuq_backend be = {.precision = p};
    CHECK(gpuq_backend_cpu_open(&be) == 0);
    CHECK(gpuq_encoder_forward_cpu(&be, m, &b, scratch) == 0);
    be.iface->destroy(&be);
    free(scratch);
}

static void run(const struct gpuq_encoder *m, const int32_t *ids, const int *lens, int n_seq,
                enum gpuq_pool pool, int normalize, float *out) {
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
    struct gpuq_encoder m, f32;
    struct gpuq_backend be = {.precision = p};
    make(&m);
    make(&f32);
    CHECK(gpuq_backend_cpu_open(&be) == 0);
    struct gpuq_model model = {.name = "test", .family = &arch, .impl = &m};
    CHECK(be.iface->model_load(&be, &model) == 0);
    int rounded = 1, moved = 0, kept = 1;
    for (size_t i = 0; i < (size_t)INTER * H; i++) {
        rounded &= GPUQ_LW(&m.layers[1], GPUQ_ENC_FFN_W1)[i] == gpuq_cpu_round(p, GPUQ_LW(&f32.layers[1], GPUQ_ENC_FFN_W1)[i]);
        moved += GPUQ_LW(&m.layers[1], GPUQ_ENC_FFN_W1)[i] != GPUQ_LW(&f32.layers[1], GPUQ_ENC_FFN_W1)[i];
    }
    for (size_t i = 0; i < 3 * H * H; i++) rounded &= GPUQ_LW(&m.layers[0], GPUQ_ENC_QKV_W)[i] == gpuq_cpu_round(p, GPUQ_LW(&f32.layers[0], GPUQ_ENC_QKV_W)[i]);
    for (size_t i = 0; i < (size_t)H * INTER; i++) rounded &= GPUQ_LW(&m.layers[1], GPUQ_ENC_FFN_W2)[i] == gpuq_cpu_round(p, GPUQ_LW(&f32.layers[1], GPUQ_ENC_FFN_W2)[i]);
    for (size_t i = 0; i < H * H; i++) rounded &= GPUQ_LW(&m.layers[1], GPUQ_ENC_ATTN_W)[i] == gpuq_cpu_round(p, GPUQ_LW(&f32.layers[1], GPUQ_ENC_ATTN_W)[i]);
    kept &= !memcmp(m.emb[GPUQ_ENC_WORD], f32.emb[GPUQ_ENC_WORD], (size_t)VOCAB * H * sizeof(float));
    kept &= !memcmp(GPUQ_LW(&m.layers[0], GPUQ_ENC_QKV_B), GPUQ_LW(&f32.layers[0], GPUQ_ENC_QKV_B), 3 * H * sizeof(float));
    kept &= !memcmp(GPUQ_LW(&m.layers[1], GPUQ_ENC_LN2_G), GPUQ_LW(&f32.layers[1], GPUQ_ENC_LN2_G), H * sizeof(float));
    CHECK(rounded && moved > INTER * H / 2 && kept);
    /* where the GEMMs take bf16, each layer has its matrices' bf16 copy */
    CHECK(!gpuq_cpu_bf16(&be) || (m.layers[0].w16[0] && m.layers[1].w16[3] &&
                                  m.layers[1].w16[2][5] == high_half(GPUQ_LW(&m.layers[1], GPUQ_ENC_FFN_W1)[5])));
    printf("  %s: %s\n", gpuq_precision_name(p), be.desc);
    float want[5 * H], got[5 * H];
    run(&f32, ids, lens, n, GPUQ_POOL_MEAN, 1, want);
    run_in(&m, p, ids, lens, n, GPUQ_POOL_MEAN, 1, got);
    double worst = 0;
    for (int i = 0; i < n * H; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    printf("  %s: largest difference to f32 %.3g (bound %.3g)\n", gpuq_precision_name(p), worst, bound);
    CHECK(worst > 0 && worst <= bound);
    if (p == GPUQ_PREC_F16) {
        GPUQ_LW(&f32.layers[1], GPUQ_ENC_FFN_W2)[5] = 70000.0f;
        model.impl = &f32;
        CHECK(be.iface->model_load(&be, &model) == GPUQ_BE_FAILED && strstr(be.errstr, "f16's range"));
    }
    be.iface->destroy(&be);
    gpuq_encoder_free(&m);
    gpuq_encoder_free(&f32);
}

/* The poolings against mean pooling: mean_sqrt_len is mean * sqrt(n),
 * max is never below the mean, weighted mean of one token is that token,
 * lasttoken is the last token's state (the CLS of nothing else). */
static void check_pooling(const struct gpuq_encoder *m, const int32_t *ids, int n) {
    float mean[H], sq[H], mx[H], w1[H], c1[H], last[H];
    run(m, ids, &n, 1, GPUQ_POOL_MEAN, 0, mean);
    run(m, ids, &n, 1, GPUQ_POOL_MEAN_SQRT_LEN, 0, sq);
    run(m, ids, &n, 1, GPUQ_POOL_MAX, 0, mx);
    run(m, ids, &n, 1, GPUQ_POOL_LAST, 0, last);
    int one = 1;
    run(m, ids, &one, 1, GPUQ_POOL_WEIGHTED_MEAN, 0, w1);
    run(m, ids, &one, 1, GPUQ_POOL_CLS, 0, c1);
    double worst = 0;
    int below = 0;
    for (int j = 0; j < H; j++) {
        worst = fmax(worst, fabs(sq[j] - mean[j] * sqrt((double)n)));
        below += mx[j] < mean[j] - 1e-6f;
        worst = fmax(worst, fabs(w1[j] - c1[j]));
    }
    CHECK(worst < 1e-5 && !below && memcmp(last, mean, sizeof last) != 0);
}

/* RoBERTa's positions: with pad id 1, a sequence without it reads rows 2,
 * 3, ...; BERT's scheme on the table two rows on gives the same. A pad id
 * inside the sequence keeps row 1 and does not advance the count. */
static void check_positions(const int32_t *ids, int n) {
    struct gpuq_encoder r, shifted;
    make_as(&r, 1, 0);
    shifted = r;
    shifted.pad_id = -1;
    shifted.emb[GPUQ_ENC_POS] = r.emb[GPUQ_ENC_POS] + 2 * H;
    shifted.max_pos = POS;
    int32_t seq[POS];
    for (int i = 0; i < n; i++) seq[i] = ids[i] == 1 ? 2 : ids[i];
    float a[H], b[H], c[H];
    run(&r, seq, &n, 1, GPUQ_POOL_MEAN, 0, a);
    run(&shifted, seq, &n, 1, GPUQ_POOL_MEAN, 0, b);
    double worst = 0;
    for (int j = 0; j < H; j++) worst = fmax(worst, fabs(a[j] - b[j]));
    CHECK(worst < 1e-6);
    seq[2] = 1;
    run(&r, seq, &n, 1, GPUQ_POOL_MEAN, 0, a);
    run(&shifted, seq, &n, 1, GPUQ_POOL_MEAN, 0, c);
    CHECK(memcmp(a, c, sizeof a) != 0);
    gpuq_encoder_free(&r);
}

/* MPNet's buckets (T5's bidirectional ones), and its bias: a table of
 * zeros changes nothing, a random one changes the output. */
static void check_rel_bias(const int32_t *ids, int n) {
    CHECK(gpuq_encoder_rel_bucket(0, 32, 128) == 0 && gpuq_encoder_rel_bucket(-1, 32, 128) == 1 &&
          gpuq_encoder_rel_bucket(1, 32, 128) == 17 && gpuq_encoder_rel_bucket(-20, 32, 128) == 10 &&
          gpuq_encoder_rel_bucket(20, 32, 128) == 26 && gpuq_encoder_rel_bucket(-200, 32, 128) == 15 &&
          gpuq_encoder_rel_bucket(200, 32, 128) == 31);
    struct gpuq_encoder r, plain;
    make_as(&r, -1, 32);
    plain = r;
    plain.rel_buckets = 0;
    float a[H], b[H];
    run(&r, ids, &n, 1, GPUQ_POOL_MEAN, 0, a);
    run(&plain, ids, &n, 1, GPUQ_POOL_MEAN, 0, b);
    CHECK(memcmp(a, b, sizeof a) != 0);
    memset(r.emb[GPUQ_ENC_REL_BIAS], 0, 32 * HEADS * sizeof(float));
    run(&r, ids, &n, 1, GPUQ_POOL_MEAN, 0, a);
    double worst = 0;
    for (int j = 0; j < H; j++) worst = fmax(worst, fabs(a[j] - b[j]));
    CHECK(worst < 1e-6);
    gpuq_encoder_free(&r);
}

int main(void) {
    struct gpuq_encoder m;
    make(&m);
    enum { N = 5 };
    static const int lens[N] = {7, 1, POS, 2, 13};
    int32_t ids[7 + 1 + POS + 2 + 13];
    unsigned st = 3;
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) ids[i] = (int32_t)((check_rand(&st) + 1) * 0.5f * VOCAB) % VOCAB;
    for (int pool = 0; pool < 2; pool++) {
        float all[N * H], one[H];
        run(&m, ids, lens, N, (enum gpuq_pool)pool, 0, all);
        double worst = 0;
        for (int s = 0, off = 0; s < N; off += lens[s], s++) {
            run(&m, ids + off, &lens[s], 1, (enum gpuq_pool)pool, 0, one);
            for (int j = 0; j < H; j++) worst = fmax(worst, fabs(one[j] - all[s * H + j]));
        }
        CHECK(worst <= 1e-5);
        float norm[N * H];
        run(&m, ids, lens, N, (enum gpuq_pool)pool, 1, norm);
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
    run(&m, ids, &lens[1], 1, GPUQ_POOL_MEAN, 0, mean);
    run(&m, ids, &lens[1], 1, GPUQ_POOL_CLS, 0, cls);
    CHECK(memcmp(mean, cls, sizeof mean) == 0 || fabs(mean[0] - cls[0]) < 1e-6);
    /* and a sequence's state depends on all its tokens: changing the last
     * token changes the first token's pooled state */
    float a[H], b[H];
    run(&m, ids, &lens[0], 1, GPUQ_POOL_CLS, 0, a);
    ids[6] = (ids[6] + 1) % VOCAB;
    run(&m, ids, &lens[0], 1, GPUQ_POOL_CLS, 0, b);
    CHECK(fabs(a[0] - b[0]) + fabs(a[1] - b[1]) > 1e-4);
    check_pooling(&m, ids, lens[0]);
    check_positions(ids, lens[0]);
    check_rel_bias(ids, lens[0]);
    check_precision(GPUQ_PREC_BF16, 1e-2, ids, lens, N);
    check_precision(GPUQ_PREC_F16, 2e-3, ids, lens, N);
    gpuq_encoder_free(&m);
    gpuq_encoder_free(NULL);
    return check_done("test_encoder");
}
