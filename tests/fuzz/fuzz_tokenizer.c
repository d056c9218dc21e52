/* fuzz_tokenizer.c -- libFuzzer target: the WordPiece tokenizer on arbitrary
 * bytes (invalid UTF-8 included), under every normalizer setting; the first
 * byte picks the tokenizer and max_length. Every id must be in the vocabulary,
 * [CLS] first and [SEP] last. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tiny_tokenizer.h"
#include "text/tokenizer.h"

/* libFuzzer's entry points */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const specs[] = {
    tiny_tokenizer_json,
    TINY_TOKENIZER_JSON("null"),
    TINY_TOKENIZER_JSON("{\"type\": \"BertNormalizer\", \"clean_text\": false, "
                        "\"handle_chinese_chars\": false, \"strip_accents\": true, \"lowercase\": false}"),
    TINY_TOKENIZER_JSON("{\"type\": \"BertNormalizer\", \"strip_accents\": false, \"lowercase\": true}"),
};
enum { N_SPECS = sizeof specs / sizeof *specs };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct gpuq_tok *toks[N_SPECS];
    char err[256];
    for (int i = 0; i < N_SPECS; i++)
        if (!toks[i] && !(toks[i] = gpuq_tok_parse(specs[i], strlen(specs[i]), NULL, 0, NULL, 0, err, sizeof err)))
            abort();
    if (size < 1) return 0;
    const struct gpuq_tok *t = toks[data[0] % N_SPECS];
    int max_length = 2 + data[0] / N_SPECS;
    int32_t ids[2 + 256];
    int n = gpuq_tok_encode(t, (const char *)data + 1, size - 1, max_length, ids);
    if (n < 2 || n > max_length || ids[0] != 2 || ids[n - 1] != 3) abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= gpuq_tok_vocab_size(t)) abort();
    return 0;
}
