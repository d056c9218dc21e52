/* encoder_embed.c -- test driver: sentence embeddings of texts with a model
 * folder of any encoder or decoder family (its tokenizer, its forward pass
 * and sentence-transformers modules) on the CPU.
 *   encoder_embed DIR [--batch N] [--max-length N] [--pool MODE] [--normalize 0|1]
 *              [--precision f32|bf16|f16] < texts
 * Each input line is one text as hex; each output line is its token count
 * then its embedding. Texts go through the encoder N per padding-free batch
 * (default: all at once). Exit 2 on a load error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/decoder.h"
#include "kernels/encoder.h"
#include "text/tokenizer.h"

struct texts {
    char **s;
    size_t *len;
    int n;
};

static void read_texts(struct texts *tx) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    memset(tx, 0, sizeof *tx);
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        tx->s = realloc(tx->s, (size_t)(tx->n + 1) * sizeof *tx->s);
        tx->len = realloc(tx->len, (size_t)(tx->n + 1) * sizeof *tx->len);
        char *t = malloc((size_t)n / 2 + 1);
        for (ssize_t i = 0; i + 1 < n; i += 2) {
            unsigned v = 0;
            sscanf(line + i, "%2x", &v);
            t[i / 2] = (char)v;
        }
        tx->s[tx->n] = t;
        tx->len[tx->n++] = (size_t)n / 2;
    }
    free(line);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: encoder_embed DIR [--batch N] [--max-length N] [--pool MODE] [--normalize 0|1]\n");
        return 2;
    }
    char err[1024];
    struct gpuq_model model;
    if (gpuq_model_load(&model, "test", argv[1], err, sizeof err) != 0) {
        fprintf(stderr, "encoder_embed: %s\n", err);
        return 2;
    }
    if (!gpuq_model_can(&model, GPUQ_CAP_EMBED)) {
        fprintf(stderr, "encoder_embed: not a text embedder\n");
        return 2;
    }
    const struct gpuq_encoder *m = gpuq_model_text(&model);
    const struct gpuq_decoder *dec = gpuq_model_decoder(&model);
    const struct gpuq_tok *tok = model.tok;
    struct gpuq_encode_batch b = {.pooling = m->pooling, .normalize = m->normalize};
    struct gpuq_backend be = {.precision = GPUQ_PREC_F32};   /* rounds the weights for --precision */
    int per_batch = 1 << 30, max_length = m->max_length, dim = gpuq_encoder_dim(m);
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) per_batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-length")) max_length = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pool")) b.pooling = (enum gpuq_pool)gpuq_pool_from_name(argv[i + 1], strlen(argv[i + 1]));
        else if (!strcmp(argv[i], "--normalize")) b.normalize = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision")) be.precision = (enum gpuq_precision)gpuq_precision_from_name(argv[i + 1]);
    }
    const char *why = (int)be.precision < 0 ? "--precision: want f32, bf16 or f16"
                      : (int)b.pooling < 0 ? "--pool: not a pooling mode"
                      : gpuq_backend_cpu_open(&be) != 0 ? "cannot open the CPU backend"
                      : be.iface->model_load(&be, &model) != 0 ? be.errstr : NULL;
    if (why) {
        fprintf(stderr, "encoder_embed: %s\n", why);
        if (be.iface) be.iface->destroy(&be);
        gpuq_model_free(&model);
        return 2;
    }
    struct texts tx;
    read_texts(&tx);
    int32_t *ids = malloc((size_t)(tx.n + 1) * (size_t)max_length * sizeof *ids);
    int *lens = malloc((size_t)(tx.n + 1) * sizeof *lens);
    float *out = malloc((size_t)(tx.n + 1) * (size_t)dim * sizeof *out);
    int total = 0;
    for (int i = 0; i < tx.n; i++) {
        lens[i] = gpuq_tok_encode(tok, tx.s[i], tx.len[i], max_length, ids + total);
        total += lens[i];
    }
    for (int first = 0, off = 0; first < tx.n; first += per_batch) {
        int n = tx.n - first < per_batch ? tx.n - first : per_batch, t = 0, longest = 0;
        for (int i = first; i < first + n; i++) {
            t += lens[i];
            longest = lens[i] > longest ? lens[i] : longest;
        }
        size_t floats = dec ? gpuq_decoder_scratch_floats(dec, t, longest) : gpuq_encoder_scratch_floats(m, t, longest);
        float *scratch = malloc(floats * sizeof *scratch);
        b.ids = ids + off;
        b.lens = lens + first;
        b.n_seq = n;
        b.out = out + (size_t)first * dim;
        if ((dec ? gpuq_decoder_forward_cpu(&be, dec, &b, scratch) : gpuq_encoder_forward_cpu(&be, m, &b, scratch)) != 0) {
            fprintf(stderr, "encoder_embed: %s\n", be.errstr);
            return 1;
        }
        free(scratch);
        off += t;
    }
    for (int i = 0; i < tx.n; i++) {
        printf("%d", lens[i]);
        for (int j = 0; j < dim; j++) printf(" %.9g", out[(size_t)i * dim + j]);
        printf("\n");
        free(tx.s[i]);
    }
    free(tx.s);
    free(tx.len);
    free(ids);
    free(lens);
    free(out);
    be.iface->destroy(&be);
    gpuq_model_free(&model);
    return 0;
}
