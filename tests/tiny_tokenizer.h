/* tiny_tokenizer.h -- a small BERT tokenizer.json for unit tests and the
 * fuzzer: a dozen pieces behind any normalizer. */
#ifndef GPUQ_TINY_TOKENIZER_H
#define GPUQ_TINY_TOKENIZER_H

#define TINY_SPECIAL(id, s) "{\"id\": " #id ", \"content\": \"" s "\", \"special\": true, \"normalized\": false}"

#define TINY_TOKENIZER_JSON(normalizer)                                                             \
    "{\"added_tokens\": [" TINY_SPECIAL(0, "[PAD]") "," TINY_SPECIAL(1, "[UNK]") ","                \
    TINY_SPECIAL(2, "[CLS]") "," TINY_SPECIAL(3, "[SEP]") "," TINY_SPECIAL(4, "[MASK]") "],"         \
    " \"normalizer\": " normalizer ","                                                              \
    " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"                                          \
    " \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 3],"                   \
    " \"cls\": [\"[CLS]\", 2]},"                                                                    \
    " \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\","                                \
    " \"continuing_subword_prefix\": \"##\", \"max_input_chars_per_word\": 100,"                     \
    " \"vocab\": {\"[PAD]\": 0, \"[UNK]\": 1, \"[CLS]\": 2, \"[SEP]\": 3, \"[MASK]\": 4, \"un\": 5," \
    " \"##aff\": 6, \"##able\": 7, \"cafe\": 8, \",\": 9, \"\\u4e2d\": 10, \"a\": 11, \"##a\": 12,"  \
    " \"i\": 13, \"\\u0307\": 14, \"hello\": 15}}}"

static const char tiny_tokenizer_json[] = TINY_TOKENIZER_JSON(
    "{\"type\": \"BertNormalizer\", \"clean_text\": true, \"handle_chinese_chars\": true,"
    " \"strip_accents\": null, \"lowercase\": true}");

#endif
