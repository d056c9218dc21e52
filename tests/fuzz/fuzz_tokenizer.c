/* fuzz_tokenizer.c -- libFuzzer target: arbitrary bytes (invalid UTF-8
 * included) through every kind of tokenizer pipeline, one text or a pair:
 * BERT WordPiece under each normalizer setting, a Unigram behind NFKC,
 * Replace, Strip and Metaspace with byte fallback and a pair template, a
 * RoBERTa-style byte-level BPE, and a Qwen-style one behind a Split regex;
 * plus the tokenizer folders listed in GPUQ_FUZZ_TOKENIZERS (':'-separated;
 * scripts/fuzz builds XLM-R, RoBERTa and Qwen ones, Precompiled included).
 * The first byte picks the tokenizer, pair or not and max_length, the second
 * where a pair is cut. The ids must fit max_length, lie in the vocabulary,
 * and the type ids be 0 or 1. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tiny_tokenizer.h"
#include "text/pretok.h"
#include "text/tokenizer.h"

/* libFuzzer's entry point */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define UNIGRAM_JSON                                                                                  \
    "{\"added_tokens\": [{\"id\": 0, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"  \
    " {\"id\": 1, \"content\": \"</s>\", \"special\": true, \"normalized\": false},"                     \
    " {\"id\": 2, \"content\": \"<unk>\", \"special\": true, \"normalized\": false},"                    \
    " {\"id\": 9, \"content\": \"<mask>\", \"special\": true, \"normalized\": false, \"lstrip\": true}],"  \
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFKC\"},"                 \
    " {\"type\": \"Replace\", \"pattern\": {\"Regex\": \" {2,}\"}, \"content\": \" \"},"                 \
    " {\"type\": \"Strip\", \"strip_left\": false, \"strip_right\": true}]},"                          \
    " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\","                       \
    " \"prepend_scheme\": \"first\", \"split\": true},"                                                 \
    " \"post_processor\": {\"type\": \"TemplateProcessing\","                                            \
    " \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]," \
    " \"pair\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}," \
    " {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [0]}," \
    " \"</s>\": {\"id\": \"</s>\", \"ids\": [1]}}},"                                                      \
    " \"model\": {\"type\": \"Unigram\", \"unk_id\": 2, \"byte_fallback\": true, \"vocab\": [[\"<s>\", 0.0],"  \
    " [\"</s>\", 0.0], [\"<unk>\", 0.0], [\"\\u2581\", -2.0], [\"a\", -3.0], [\"ab\", -3.5], [\"\\u2581ab\", -4.0]," \
    " [\"<0xC3>\", -5.0], [\"<0xA9>\", -5.0], [\"<mask>\", 0.0], [\"b\", -3.0], [\"\\u00e9\", -6.0]]}}"

/* A byte-level BPE: the 256 byte characters, a few merges, then the
 * pre-tokenizer and post-processor given. */
static char *byte_level(const char *pre, const char *post, int ignore_merges) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    if (!s) abort();
    n += (size_t)snprintf(s + n, cap - n,
                          "{\"added_tokens\": [{\"id\": 260, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
                          " {\"id\": 261, \"content\": \"</s>\", \"special\": true, \"normalized\": false},"
                          " {\"id\": 262, \"content\": \"<mask>\", \"special\": true, \"normalized\": false, \"lstrip\": true}],"
                          " \"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": %s, \"post_processor\": %s,"
                          " \"model\": {\"type\": \"BPE\", \"ignore_merges\": %s, \"vocab\": {",
                          pre, post, ignore_merges ? "true" : "false");
    for (int b = 0; b < 256; b++)
        n += (size_t)snprintf(s + n, cap - n, "\"\\u%04x\": %d, ", (unsigned)tok_byte_char((unsigned char)b), b);
    n += (size_t)snprintf(s + n, cap - n, "\"\\u0120t\": 256, \"he\": 257, \"\\u0120the\": 258, \"\\u0120thee\": 259},"
                                          " \"merges\": [\"\\u0120 t\", \"h e\", \"\\u0120t he\", \"\\u0120the e\"]}}");
    return s;
}

enum { N_BUILTIN = 8, MAX_TOKS = 32 };

static struct gpuq_tok *toks[MAX_TOKS];
static int n_toks;

static void load_all(void) {
    char err[256];
    char *bpe[] = {
        byte_level("{\"type\": \"ByteLevel\", \"add_prefix_space\": false}",
                   "{\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", 261], \"cls\": [\"<s>\", 260]}", 0),
        byte_level("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\":"
                   " \"(?i:'s|'t)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s+(?!\\\\S)|\\\\s+\"},"
                   " \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false,"
                   " \"use_regex\": false}]}",
                   "{\"type\": \"BertProcessing\", \"sep\": [\"</s>\", 261], \"cls\": [\"<s>\", 260]}", 1),
    };
    const char *specs[N_BUILTIN] = {
        tiny_tokenizer_json,
        TINY_TOKENIZER_JSON("null"),
        TINY_TOKENIZER_JSON("{\"type\": \"BertNormalizer\", \"clean_text\": false, "
                            "\"handle_chinese_chars\": false, \"strip_accents\": true, \"lowercase\": false}"),
        TINY_TOKENIZER_JSON("{\"type\": \"BertNormalizer\", \"strip_accents\": false, \"lowercase\": true}"),
        UNIGRAM_JSON, bpe[0], bpe[1], UNIGRAM_JSON,
    };
    for (int i = 0; i < N_BUILTIN; i++)
        if (!(toks[n_toks++] = gpuq_tok_parse(specs[i], strlen(specs[i]), NULL, 0, NULL, 0, err, sizeof err))) {
            fprintf(stderr, "fuzz_tokenizer: spec %d: %s\n", i, err);
            abort();
        }
    free(bpe[0]);
    free(bpe[1]);
    const char *dirs = getenv("GPUQ_FUZZ_TOKENIZERS");
    for (const char *p = dirs; p && *p && n_toks < MAX_TOKS;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", (int)len, p);
        if (!(toks[n_toks++] = gpuq_tok_load(dir, err, sizeof err))) {
            fprintf(stderr, "fuzz_tokenizer: %s: %s\n", dir, err);
            abort();
        }
        p = end ? end + 1 : p + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!n_toks) load_all();
    if (size < 2) return 0;
    const struct gpuq_tok *t = toks[data[0] % n_toks];
    int pair = (data[0] / n_toks) & 1;
    int max_length = 4 + (data[0] / n_toks / 2) % 64 * 4;
    size_t len = size - 2, cut = len * data[1] / 256;
    const char *text = (const char *)data + 2;
    int32_t ids[4 + 64 * 4], types[4 + 64 * 4];
    int n = gpuq_tok_encode_pair(t, text, pair ? cut : len, pair ? text + cut : NULL, len - cut, max_length,
                                 ids, types);
    if (n < gpuq_tok_special_count(t, pair) || n > max_length) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= gpuq_tok_vocab_size(t) || types[i] < 0 || types[i] > 1) abort();
    /* the whole text's tokens with their bytes: within the text (not always in
     * order: `tokenizers` trims a ByteLevel token's offsets past its neighbour's) */
    struct gpuq_tok_spans sp = {0};
    if (gpuq_tok_spans(t, text, len, &sp) == 0)
        for (size_t i = 0; i < sp.n; i++)
            if (sp.ids[i] < 0 || sp.ids[i] >= gpuq_tok_vocab_size(t) || sp.start[i] < 0 ||
                sp.start[i] > sp.end[i] || sp.end[i] > (int64_t)len)
                abort();
    gpuq_tok_spans_free(&sp);
    return 0;
}
