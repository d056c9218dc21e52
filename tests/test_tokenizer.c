/* test_tokenizer.c -- the tokenizer on a tiny WordPiece vocabulary: the
 * pipeline's steps one by one, truncation, pairs with type ids, invalid
 * UTF-8, the vocab.txt path, and the loader's one-line refusals of what is
 * not implemented. The token-for-token comparisons with Hugging Face
 * `tokenizers` are tests/ref/test_tokenizer.py (the real BERT model),
 * test_tokenizers.py (every pipeline kind) and test_tokenizer_unicode.py. */
#include "text/tokenizer.h"
#include "tests/check.h"
#include "tests/tiny_tokenizer.h"
#include "text/vocab.h"

static struct gpuq_tok *tiny(void) {
    char err[256];
    struct gpuq_tok *t = gpuq_tok_parse(tiny_tokenizer_json, sizeof tiny_tokenizer_json - 1, NULL,
                                        0, NULL, 0, err, sizeof err);
    if (!t) fprintf(stderr, "tiny tokenizer: %s\n", err);
    return t;
}

/* Encodes text and compares with want[0, n). */
static int encodes_to(const struct gpuq_tok *t, const char *text, size_t len, int max_length,
                      const int32_t *want, int n) {
    int32_t ids[64];
    int k = gpuq_tok_encode(t, text, len, max_length, ids);
    if (k != n) return 0;
    return memcmp(ids, want, (size_t)n * sizeof *ids) == 0;
}
#define ENC(t, s, maxlen, ...)                                                           \
    do {                                                                                 \
        static const int32_t want_[] = {__VA_ARGS__};                                    \
        CHECK(encodes_to(t, s, sizeof s - 1, maxlen, want_, sizeof want_ / sizeof *want_)); \
    } while (0)

static void test_pipeline(void) {
    struct gpuq_tok *t = tiny();
    CHECK(t != NULL);
    if (!t) return;
    ENC(t, "", 64, 2, 3);                                 /* empty: [CLS][SEP] */
    ENC(t, " \t\n\xe3\x80\x80 ", 64, 2, 3);               /* whitespace only */
    ENC(t, "unaffable", 64, 2, 5, 6, 7, 3);               /* greedy longest match, ## */
    ENC(t, "UNAFFABLE", 64, 2, 5, 6, 7, 3);               /* lower-cased */
    ENC(t, "Caf\xc3\xa9,cafe\xcc\x81", 64, 2, 8, 9, 8, 3); /* accents stripped, precomposed or not */
    ENC(t, "a\xe4\xb8\xad" "a", 64, 2, 11, 10, 11, 3);    /* CJK split out of a word */
    ENC(t, "unx", 64, 2, 1, 3);                           /* no piece for "x": the word is [UNK] */
    ENC(t, "hel\x01lo\xe2\x80\x8b", 64, 2, 15, 3);        /* control and format characters dropped */
    ENC(t, "a[MASK]a [mask]", 64, 2, 11, 4, 11, 1, 1, 1, 3); /* only the literal special token counts */
    ENC(t, "aaaa", 64, 2, 11, 12, 12, 12, 3);
    ENC(t, "\xc4\xb0", 64, 2, 13, 3);                     /* U+0130: NFD, dot dropped, i */
    ENC(t, "un un un un", 4, 2, 5, 5, 3);                 /* truncation keeps [SEP] */
    ENC(t, "un un", 2, 2, 3);
    ENC(t, "hel\xfflo \xc3 \xe2\x82", 64, 2, 15, 3);      /* invalid UTF-8 reads as U+FFFD, dropped */
    ENC(t, "\xed\xa0\x80\xf4\x90\x80\x80", 64, 2, 3);     /* surrogates, beyond U+10FFFF */
    char word[102];
    memset(word, 'a', sizeof word);
    CHECK(encodes_to(t, word, 100, 64, (const int32_t[]){2, 11, 12, 12}, 0) == 0);
    int32_t ids[200];
    CHECK(gpuq_tok_encode(t, word, 100, 200, ids) == 102 && ids[1] == 11 && ids[100] == 12);
    CHECK(gpuq_tok_encode(t, word, 101, 200, ids) == 3 && ids[1] == 1);   /* over 100 chars */
    CHECK(gpuq_tok_encode(t, word, 4, 1, ids) == -1);
    CHECK(gpuq_tok_vocab_size(t) == 16);
    CHECK_STR(gpuq_tok_token(t, 7), "##able");
    gpuq_tok_destroy(t);
}

/* A long text is read only as far as it fits, and gives the same ids as
 * its first part would. */
static void test_long_text(void) {
    struct gpuq_tok *t = tiny();
    if (!t) return;
    size_t n = 1 << 20;
    char *s = malloc(n);
    for (size_t i = 0; i < n; i += 3) memcpy(s + i, i + 3 <= n ? "un " : "un", i + 3 <= n ? 3 : n - i);
    int32_t ids[512];
    CHECK(gpuq_tok_encode(t, s, n, 512, ids) == 512);
    CHECK(ids[0] == 2 && ids[1] == 5 && ids[510] == 5 && ids[511] == 3);
    free(s);
    gpuq_tok_destroy(t);
}

/* Pairs: [CLS] A [SEP] B [SEP] with type ids, cut longest first. */
static void test_pair(void) {
    struct gpuq_tok *t = tiny();
    if (!t) return;
    int32_t ids[16], types[16];
    CHECK(gpuq_tok_special_count(t, 0) == 2 && gpuq_tok_special_count(t, 1) == 3);
    CHECK(gpuq_tok_encode_pair(t, "un", 2, "a", 1, 16, ids, types) == 5);
    CHECK(memcmp(ids, (int32_t[]){2, 5, 3, 11, 3}, 5 * sizeof *ids) == 0);
    CHECK(memcmp(types, (int32_t[]){0, 0, 0, 1, 1}, 5 * sizeof *types) == 0);
    /* 3 + 1 pieces in room for 3: the longer text gives one up */
    CHECK(gpuq_tok_encode_pair(t, "un un un", 8, "a", 1, 6, ids, types) == 6);
    CHECK(memcmp(ids, (int32_t[]){2, 5, 5, 3, 11, 3}, 6 * sizeof *ids) == 0);
    /* both too long: half each, the odd one to the second */
    CHECK(gpuq_tok_encode_pair(t, "un un un", 8, "a a a a", 7, 8, ids, types) == 8);
    CHECK(memcmp(ids, (int32_t[]){2, 5, 5, 3, 11, 11, 11, 3}, 8 * sizeof *ids) == 0);
    CHECK(gpuq_tok_encode_pair(t, "un", 2, "a", 1, 2, ids, types) == -1);   /* no room for the specials */
    CHECK(gpuq_tok_encode_pair(t, "un", 2, NULL, 0, 4, ids, NULL) == 3);   /* NULL b: one text */
    CHECK(gpuq_tok_pad_id(t) == -1 && gpuq_tok_padding_left(t) == 0);
    gpuq_tok_destroy(t);
    static const char cfg[] = "{\"pad_token\": \"[PAD]\", \"padding_side\": \"left\"}";
    char err[256];
    t = gpuq_tok_parse(tiny_tokenizer_json, sizeof tiny_tokenizer_json - 1, NULL, 0, cfg, sizeof cfg - 1, err,
                       sizeof err);
    CHECK(t && gpuq_tok_pad_id(t) == 0 && gpuq_tok_padding_left(t) == 1);
    gpuq_tok_destroy(t);
}

static void refuses(const char *json, const char *want) {
    char err[256] = "";
    struct gpuq_tok *t = gpuq_tok_parse(json, strlen(json), NULL, 0, NULL, 0, err, sizeof err);
    CHECK(t == NULL);
    CHECK(strstr(err, want) != NULL);
    if (!strstr(err, want)) fprintf(stderr, "  got \"%s\", want \"%s\"\n", err, want);
    gpuq_tok_destroy(t);
}

static void test_refusals(void) {
    refuses("{", "tokenizer.json:");
    refuses("{\"model\": {\"type\": \"WordLevels\"}}", "model 'WordLevels' is not supported");
    refuses("{\"model\": {\"type\": \"BPE\"}}", "BPE needs a vocab object and a merges list");
#define WP "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"a\": 1}}, "
    refuses(WP "\"normalizer\": {\"type\": \"Nmts\"}}", "normalizer 'Nmts' is not supported");
    refuses(WP "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, "
            "{\"type\": \"Bytes\"}]}}", "normalizer 'Bytes' is not supported");
    refuses(WP "\"pre_tokenizer\": {\"type\": \"UnicodeScript\"}}", "pre_tokenizer 'UnicodeScript' is not supported");
    refuses(WP "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
            "\"behavior\": \"Isolated\"}}", "regex \"(\"");
    refuses(WP "\"post_processor\": {\"type\": \"Fancy\"}}", "post_processor 'Fancy' is not supported");
    refuses(WP "\"truncation\": {\"strategy\": \"OnlyThird\", \"max_length\": 8}}", "truncation strategy 'OnlyThird'");
    refuses(WP "\"normalizer\": {\"type\": \"Precompiled\", \"precompiled_charsmap\": \"AAA\"}}",
            "precompiled_charsmap is malformed");
    refuses("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "unk_token");
    refuses("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"b\": 0}}}", "bad vocabulary entry");
    refuses("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", "BPE merge 0");
    refuses("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [], \"dropout\": 0.1}}", "dropout");
    refuses("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]], \"unk_id\": 3}}", "unk_id");
#undef WP
    char err[256];
    CHECK(gpuq_tok_parse(NULL, 0, NULL, 0, NULL, 0, err, sizeof err) == NULL);
    CHECK(gpuq_tok_load("/nonexistent", err, sizeof err) == NULL &&
          strstr(err, "no tokenizer.json and no vocab.txt"));
}

static void test_vocab_txt(void) {
    static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\nHello\n";
    static const char cfg[] = "{\"do_lower_case\": false, \"model_max_length\": 128, "
                              "\"cls_token\": {\"content\": \"[CLS]\"}}";
    char err[256];
    struct gpuq_tok *t = gpuq_tok_parse(NULL, 0, vocab, sizeof vocab - 1, cfg, sizeof cfg - 1, err,
                                        sizeof err);
    CHECK(t != NULL);
    if (!t) return;
    ENC(t, "Hello hellos [SEP]", 16, 2, 7, 5, 6, 3, 3);
    CHECK(gpuq_tok_model_max_length(t) == 128);
    gpuq_tok_destroy(t);
    static const char huge[] = "{\"model_max_length\": 1e30}";
    t = gpuq_tok_parse(NULL, 0, vocab, sizeof vocab - 1, huge, sizeof huge - 1, err, sizeof err);
    CHECK(t && gpuq_tok_model_max_length(t) == 0);
    ENC(t, "Hello", 16, 2, 5, 3);   /* do_lower_case defaults to true */
    gpuq_tok_destroy(t);
    static const char unk[] = "{\"unk_token\": \"<unk>\"}";
    CHECK(gpuq_tok_parse(NULL, 0, vocab, sizeof vocab - 1, unk, sizeof unk - 1, err, sizeof err) == NULL);
    CHECK(strstr(err, "unk_token \"<unk>\" is not in the vocabulary") != NULL);
}

static void test_vocab(void) {
    struct gpuq_vocab v;
    CHECK(gpuq_vocab_init(&v, 3) == 0);
    CHECK(gpuq_vocab_add(&v, "a", 1, 0) == 0 && gpuq_vocab_add(&v, "b", 1, 7) == 0);
    CHECK(gpuq_vocab_add(&v, "a", 1, 2) == 0);   /* moved, as a dict would */
    CHECK(gpuq_vocab_find(&v, "a", 1) == 2 && gpuq_vocab_find(&v, "b", 1) == 7);
    CHECK(gpuq_vocab_find(&v, "c", 1) == -1 && gpuq_vocab_find(&v, "ab", 2) == -1);
    CHECK(gpuq_vocab_add(&v, "c", 1, 7) == -1);  /* two texts on one id */
    CHECK(gpuq_vocab_add(&v, "d\0", 2, 3) == 0);   /* a NUL inside a token */
    CHECK(gpuq_vocab_find(&v, "d\0", 2) == 3 && gpuq_vocab_find(&v, "d", 1) == -1);
    CHECK(v.size == 8);
    gpuq_vocab_free(&v);
    gpuq_vocab_free(NULL);
}

int main(void) {
    test_pipeline();
    test_long_text();
    test_pair();
    test_refusals();
    test_vocab_txt();
    test_vocab();
    return check_done("test_tokenizer");
}
