/* encoder_twin.c -- the twin check of the ops that run a text model
 * (embed, rerank, classify, embed_sparse): random encoders of each
 * family's shape, and random decoders (embed), through the backend and
 * the CPU. */
#include <stdlib.h>

#include "models/decoder/decoder.h"
#include "models/family.h"
#include "ops/embed.h"
#include "ops/twin.h"

enum { TWIN_VOCAB = 50 };

struct fill {
    struct gpuq_twin_run *r;
    int ok;
};

static void fill_weight(void *ctx, const struct gpuq_weight *w, int slot, int layer, int64_t d0, int64_t d1) {
    struct fill *f = ctx;
    (void)slot, (void)layer, (void)d0, (void)d1;
    if (!*w->data) f->ok &= (*w->data = gpuq_twin_floats(f->r, w->n)) != NULL;
}

/* A random encoder of the shape with positions for max_len tokens. -1
 * when out of memory (e then frees what it holds). */
static int random_encoder(struct gpuq_twin_run *r, struct gpuq_encoder *e, const struct gpuq_encoder_twin *sh, int max_len) {
    *e = (struct gpuq_encoder){.family = "twin", .hidden = sh->h, .heads = sh->heads, .n_layers = sh->layers,
                               .intermediate = 2 * sh->h, .vocab = sh->mlm > 1 ? sh->mlm : TWIN_VOCAB,
                               .n_types = sh->pad_id < 0 ? 2 : 0,
                               .ln_eps = 1e-12f, .act = GPUQ_ACT_GELU, .pad_id = sh->pad_id,
                               .rel_buckets = sh->rel_buckets, .rel_max_distance = 128};
    e->max_pos = max_len + (sh->pad_id < 0 ? 0 : sh->pad_id + 1);
    if (!(e->layers = calloc((size_t)sh->layers, sizeof(*e->layers)))) return -1;
    if (sh->labels) {   /* a classifier's head: pre-classifier, then one logit per label */
        if (!(e->dense = calloc(2, sizeof(*e->dense)))) return -1;
        e->n_dense = 2;
        e->dense[0] = (struct gpuq_dense){.d_in = sh->h, .d_out = sh->h, .act = GPUQ_ACT_TANH};
        e->dense[1] = (struct gpuq_dense){.d_in = sh->h, .d_out = sh->labels, .act = GPUQ_ACT_NONE};
        e->scorer = 1;
        e->n_labels = sh->labels;
    } else if (sh->mlm) {
        if (!(e->mlm = calloc(1, sizeof(*e->mlm)))) return -1;
        if (sh->mlm > 1 && !(e->mlm->decoder = gpuq_twin_floats(r, (size_t)e->vocab * sh->h))) return -1;
    } else if (sh->dense) {
        if (!(e->dense = calloc(1, sizeof(*e->dense)))) return -1;
        e->n_dense = 1;
        *e->dense = (struct gpuq_dense){.d_in = sh->h, .d_out = sh->dense, .act = GPUQ_ACT_TANH};
    }
    struct fill f = {r, 1};
    gpuq_encoder_weights(e, fill_weight, &f);
    return f.ok ? 0 : -1;
}

/* The longest of n_seq lengths. */
static int longest_of(const int *lens, int n_seq) {
    int most = 0;
    for (int s = 0; s < n_seq; s++) most = lens[s] > most ? lens[s] : most;
    return most;
}

/* Batch b (its lens, n_seq, pooling and normalize set) of random ids under
 * vocab, and random token types where types, through model (its weights
 * made) on r's backend and on the CPU: the error of the dim outputs per
 * sequence noted for r's op. */
static void run_batch(struct gpuq_twin_run *r, struct gpuq_model *model, struct gpuq_encode_batch b, int vocab,
                      int types, int dim) {
    int t = 0;
    for (int s = 0; s < b.n_seq; s++) t += b.lens[s];
    int32_t *ids = malloc((size_t)t * sizeof(*ids)), *ty = types ? malloc((size_t)t * sizeof(*ty)) : NULL;
    float *y = calloc((size_t)b.n_seq * dim, sizeof(float)), *want = calloc((size_t)b.n_seq * dim, sizeof(float));
    for (int i = 0; ids && i < t; i++) ids[i] = (int32_t)((gpuq_twin_rnd(r) + 1.0f) * 0.5f * (vocab - 1));
    for (int i = 0; ty && i < t; i++) ty[i] = gpuq_twin_rnd(r) > 0;
    if (ids && (ty || !types) && y && want && gpuq_twin_load(r, model) == 0) {
        b.ids = ids, b.types = ty, b.out = y;
        struct gpuq_embed on_be = {model, b, t, longest_of(b.lens, b.n_seq)}, on_cpu = on_be;
        on_cpu.b.out = want;
        if (gpuq_twin_both(r, b.n_seq, &on_be, &on_cpu) == 0)
            gpuq_twin_note(r, gpuq_twin_err(y, want, (size_t)b.n_seq * dim, 0));
        r->be->iface->model_free(r->be, model);
    }
    free(ids), free(ty), free(y), free(want);
}

void gpuq_encoder_twin_batch(struct gpuq_twin_run *r, const struct gpuq_encoder_twin *sh, const int *lens, int n_seq) {
    static const struct gpuq_family arch = {.name = "twin", .arch = GPUQ_ARCH_ENCODER};
    int vocab = sh->mlm > 1 ? sh->mlm : TWIN_VOCAB;
    struct gpuq_encoder e;
    struct gpuq_model model = {.name = "twin", .family = &arch, .impl = &e};
    if (random_encoder(r, &e, sh, longest_of(lens, n_seq)) == 0)
        run_batch(r, &model, (struct gpuq_encode_batch){.lens = lens, .n_seq = n_seq,
                                                        .pooling = sh->labels ? GPUQ_POOL_CLS : sh->pool,
                                                        .normalize = sh->labels ? 0 : sh->normalize},
                  vocab, sh->labels != 0, sh->mlm ? vocab : sh->labels ? sh->labels : sh->dense ? sh->dense : sh->h);
    gpuq_encoder_free(&e);
}


/* A random decoder of the shape with positions for max_len tokens, its
 * st pooling the last token. -1 when out of memory (d then frees what it
 * holds). */
static int random_decoder(struct gpuq_twin_run *r, struct gpuq_decoder *d, const struct gpuq_decoder_twin *sh,
                          int max_len) {
    *d = (struct gpuq_decoder){.family = "twin", .hidden = sh->h, .heads = sh->heads, .kv_heads = sh->kv_heads,
                               .head_dim = sh->head_dim, .n_layers = sh->layers, .intermediate = 2 * sh->h,
                               .vocab = TWIN_VOCAB, .max_pos = max_len, .rms_eps = 1e-6f, .rope_theta = 1e6,
                               .qk_norm = sh->qkv_bias == 0, .qkv_bias = sh->qkv_bias};
    d->st = (struct gpuq_encoder){.family = "twin", .hidden = sh->h, .vocab = TWIN_VOCAB, .max_pos = max_len,
                                  .pad_id = -1, .pooling = GPUQ_POOL_LAST};
    if (!(d->layers = calloc((size_t)sh->layers, sizeof(*d->layers)))) return -1;
    if (sh->dense) {
        if (!(d->st.dense = calloc(1, sizeof(*d->st.dense)))) return -1;
        d->st.n_dense = 1;
        *d->st.dense = (struct gpuq_dense){.d_in = sh->h, .d_out = sh->dense, .act = GPUQ_ACT_NONE};
    }
    struct fill f = {r, 1};
    gpuq_decoder_weights(d, fill_weight, &f);
    return f.ok ? 0 : -1;
}

void gpuq_decoder_twin_batch(struct gpuq_twin_run *r, const struct gpuq_decoder_twin *sh, const int *lens, int n_seq) {
    static const struct gpuq_family arch = {.name = "twin", .arch = GPUQ_ARCH_DECODER};
    struct gpuq_decoder d;
    struct gpuq_model model = {.name = "twin", .family = &arch, .impl = &d};
    if (random_decoder(r, &d, sh, longest_of(lens, n_seq)) == 0)
        run_batch(r, &model, (struct gpuq_encode_batch){.lens = lens, .n_seq = n_seq, .pooling = GPUQ_POOL_LAST,
                                                        .normalize = 1},
                  TWIN_VOCAB, 0, sh->dense ? sh->dense : sh->h);
    gpuq_decoder_free(&d);
}
