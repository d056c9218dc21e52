/* tokenizer.h -- Hugging Face BERT WordPiece tokenization, id for id.
 *
 * Reproduces what the `tokenizers` package does with a BertNormalizer,
 * BertPreTokenizer and WordPiece model, as sentence-transformers calls it:
 * added (special) tokens typed in a text are matched literally first; the
 * rest is cleaned (control characters dropped, whitespace folded to ' '),
 * CJK ideographs padded with spaces, accents stripped (NFD, nonspacing marks
 * dropped) and lower-cased as the config says, split on whitespace and
 * punctuation, and each word cut into the longest vocabulary pieces ("##"
 * after the first), [UNK] for a word with no cut or over
 * max_input_chars_per_word characters; then [CLS] ... [SEP], truncated.
 *
 * Invalid UTF-8 is never an error: each maximal ill-formed subsequence reads
 * as U+FFFD, as Python's bytes.decode("utf-8", "replace") reads it, which the
 * cleanup then drops like the real U+FFFD.
 *
 * No I/O except gpuq_tok_load, which reads the model folder. */
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

/* Tokenizes text[0, len) into ids[0, max_length): [CLS] pieces [SEP], the
 * pieces cut from the end to fit. Returns the number of ids (2 at least), or
 * -1 when max_length < 2 or memory runs out. */
int gpuq_tok_encode(const struct gpuq_tok *t, const char *text, size_t len, int max_length,
                    int32_t *ids);

int gpuq_tok_vocab_size(const struct gpuq_tok *t);      /* highest id + 1 */
/* tokenizer_config.json's model_max_length; 0 when absent or huge. */
int gpuq_tok_model_max_length(const struct gpuq_tok *t);
/* The text of id, or NULL. */
const char *gpuq_tok_token(const struct gpuq_tok *t, int id);

#endif
