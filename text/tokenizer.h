/* tokenizer.h -- Hugging Face tokenizers, id for id.
 *
 * A tokenizer is the pipeline a model folder's tokenizer.json names, run as
 * the `tokenizers` package runs it: added tokens cut out of the text; the
 * normalizer (BertNormalizer, NFC/NFD/NFKC/NFKD, Lowercase, Strip, Nmt,
 * StripAccents, Replace, Prepend, Precompiled, ByteLevel, Sequence); the
 * pre-tokenizer (BertPreTokenizer, Whitespace, WhitespaceSplit, Punctuation,
 * CharDelimiterSplit, Metaspace, ByteLevel, Split, Digits, FixedLength,
 * UnicodeScripts, Sequence); the model (WordPiece, Unigram, BPE with byte-level BPE,
 * WordLevel); truncation (longest first, OnlyFirst or OnlySecond; right or
 * left); the post-processor
 * (BertProcessing, RobertaProcessing, TemplateProcessing, ByteLevel,
 * Sequence). A folder with only vocab.txt is a BERT WordPiece pipeline, as
 * transformers builds it. A component that is not implemented fails the
 * load with one line naming it.
 *
 * Invalid UTF-8 is never an error: each maximal ill-formed subsequence reads
 * as U+FFFD, as Python's bytes.decode("utf-8", "replace") reads it.
 *
 * Unicode tables: BERT's control, accent and punctuation classes are
 * Unicode 8.0's and the normalization forms' and scripts' 9.0's, as the
 * reference has them. A character first assigned in Unicode 15.0 or later may still
 * split differently in a regex pre-tokenizer (Debian's PCRE2 knows Unicode
 * 14), in Digits or in Lowercase (utf8proc knows 15.0; the reference 16.0).
 *
 * No I/O except gpuq_tok_load, which reads the model folder. A loaded
 * tokenizer is read-only: any number of threads may encode with it. */
#ifndef GPUQ_TOKENIZER_H
#define GPUQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct gpuq_tok;   /* opaque */

/* Loads the tokenizer of a model folder: tokenizer.json when present, else
 * vocab.txt + tokenizer_config.json. Returns NULL with a one-line reason. */
struct gpuq_tok *gpuq_tok_load(const char *dir, char *err, size_t errlen);

/* The same from memory: tokenizer_json (a tokenizer.json), or vocab_txt
 * (a vocab.txt) with config_json (tokenizer_config.json, may be NULL); the
 * unused one is NULL. Strings are borrowed for the call only. */
struct gpuq_tok *gpuq_tok_parse(const char *tokenizer_json, size_t tj_len,
                                const char *vocab_txt, size_t vocab_len,
                                const char *config_json, size_t config_len,
                                char *err, size_t errlen);

void gpuq_tok_destroy(struct gpuq_tok *t);

/* Tokenizes text[0, len) into ids[0, max_length): the model's ids cut to
 * fit (from the end, or the start when the folder truncates left), inside
 * the post-processor's special tokens. Returns the number of ids, or -1 when
 * max_length is under gpuq_tok_special_count(t, 0) (or 1), memory runs out,
 * the model has no unknown token for a piece it cannot cut, or (as the
 * reference fails) the folder's OnlyFirst/OnlySecond truncation cannot cut
 * the text it names. */
int gpuq_tok_encode(const struct gpuq_tok *t, const char *text, size_t len, int max_length,
                    int32_t *ids);

/* The same for a pair (a, b) as `tokenizers` encodes (a, b) with
 * truncation at max_length: the longer text cut first. b NULL encodes a
 * alone. type_ids, when not NULL, gets the token type of each id. */
int gpuq_tok_encode_pair(const struct gpuq_tok *t, const char *a, size_t alen, const char *b,
                         size_t blen, int max_length, int32_t *ids, int32_t *type_ids);

/* A text's tokens before truncation and special tokens, each with the bytes
 * of the original text it comes from, [start, end), as `tokenizers`'
 * encode(text, add_special_tokens=False).offsets has them: for the
 * normalizers and pre-tokenizers that text/spans.c and text/norm_align.c
 * name; word is 1 where a token begins a pre-tokenized word (or is an added
 * token), so that a cut before it splits no word. */
struct gpuq_tok_spans {
    int32_t *ids;
    int64_t *start, *end;
    uint8_t *word;
    size_t n, cap;
};

/* Fills out (zeroed, or reused after gpuq_tok_spans_free) with the tokens
 * of text[0, len). 0, or -1 on no memory or a piece the model cannot cut. */
int gpuq_tok_spans(const struct gpuq_tok *t, const char *text, size_t len, struct gpuq_tok_spans *out);
void gpuq_tok_spans_free(struct gpuq_tok_spans *s);

/* The post-processor's special tokens around ids[0, n) of one text, into
 * out (room for n + gpuq_tok_special_count(t, 0)). Returns the count. */
int gpuq_tok_wrap(const struct gpuq_tok *t, const int32_t *ids, int n, int32_t *out);

/* How many special tokens the post-processor adds to one text (pair 0) or a pair. */
int gpuq_tok_special_count(const struct gpuq_tok *t, int pair);
/* The padding id (tokenizer_config.json's pad_token, else tokenizer.json's
 * padding), -1 when the folder names none; and whether it pads on the left
 * (padding_side, else the padding's direction). */
int gpuq_tok_pad_id(const struct gpuq_tok *t);
int gpuq_tok_padding_left(const struct gpuq_tok *t);

int gpuq_tok_vocab_size(const struct gpuq_tok *t);      /* highest id + 1 */
/* tokenizer_config.json's model_max_length; 0 when absent or huge. */
int gpuq_tok_model_max_length(const struct gpuq_tok *t);
/* The text of id, or NULL. */
const char *gpuq_tok_token(const struct gpuq_tok *t, int id);

#endif
