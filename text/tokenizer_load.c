/* tokenizer_load.c -- builds a gpuq_tok from a model folder's tokenizer.json,
 * or from vocab.txt + tokenizer_config.json as transformers converts them.
 * Anything but a BERT WordPiece pipeline is refused with a one-line reason. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer_int.h"

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto out; } while (0)

static int flag(json_t *obj, const char *key, int dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* A special token named in tokenizer_config.json: a string or {"content": ...}. */
static const char *token_name(json_t *cfg, const char *key, const char *dflt) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static int add_literal(struct gpuq_tok *t, const char *text, int id) {
    size_t len = strlen(text);
    if (!len) return 0;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->added[i].text, text, len) == 0) return 0;
    struct added_token *na = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *na);
    if (!na) return -1;
    t->added = na;
    char *copy = strdup(text);
    if (!copy) return -1;
    t->added[t->n_added++] = (struct added_token){copy, len, id};
    return 0;
}

/* model_max_length; 0 when absent or not a usable length (some configs say 1e30). */
static int max_length_of(json_t *cfg) {
    json_t *v = json_object_get(cfg, "model_max_length");
    double d = json_is_number(v) ? json_number_value(v) : 0;
    return d >= 1 && d <= 1 << 20 ? (int)d : 0;
}

static int set_prefix(struct gpuq_tok *t, const char *p) {
    size_t n = strlen(p);
    if (n >= sizeof t->prefix) return -1;
    memcpy(t->prefix, p, n + 1);
    t->prefix_len = n;
    return 0;
}

/* The id a TemplateProcessing's special-token piece stands for. */
static int template_id(json_t *pp, json_t *piece) {
    json_t *name = json_object_get(json_object_get(piece, "SpecialToken"), "id");
    json_t *st = json_object_get(json_object_get(pp, "special_tokens"), json_string_value(name));
    json_t *ids = json_object_get(st, "ids");
    if (!json_is_string(name) || json_array_size(ids) != 1) return -1;
    json_int_t id = json_integer_value(json_array_get(ids, 0));
    return json_is_integer(json_array_get(ids, 0)) && id >= 0 && id < 1 << 24 ? (int)id : -1;
}

static int bert_id(json_t *pp, const char *key) {
    json_t *v = json_array_get(json_object_get(pp, key), 1);
    return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 1 << 24
               ? (int)json_integer_value(v) : -1;
}

/* [CLS] and [SEP] from the post-processor: "[CLS] $A [SEP]" only. */
static int read_post(struct gpuq_tok *t, json_t *pp) {
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (type && strcmp(type, "BertProcessing") == 0) {
        t->cls_id = bert_id(pp, "cls");
        t->sep_id = bert_id(pp, "sep");
    } else if (type && strcmp(type, "TemplateProcessing") == 0) {
        json_t *single = json_object_get(pp, "single");
        if (json_array_size(single) != 3 ||
            !json_object_get(json_array_get(single, 1), "Sequence"))
            return -1;
        t->cls_id = template_id(pp, json_array_get(single, 0));
        t->sep_id = template_id(pp, json_array_get(single, 2));
    } else {
        return -1;
    }
    return t->cls_id >= 0 && t->sep_id >= 0 ? 0 : -1;
}

static int parse_tokenizer_json(struct gpuq_tok *t, json_t *root, char *err, size_t errlen) {
    int result = -1;
    json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type || strcmp(type, "WordPiece") != 0)
        FAIL("tokenizer.json: model type %s, not WordPiece (only BERT tokenizers are served)",
             type ? type : "missing");
    json_t *norm = json_object_get(root, "normalizer");
    if (!json_is_null(norm) && norm) {
        const char *nt = json_string_value(json_object_get(norm, "type"));
        if (!nt || strcmp(nt, "BertNormalizer") != 0)
            FAIL("tokenizer.json: normalizer %s, not BertNormalizer", nt ? nt : "unnamed");
        t->clean_text = flag(norm, "clean_text", 1);
        t->handle_chinese = flag(norm, "handle_chinese_chars", 1);
        t->lowercase = flag(norm, "lowercase", 1);
        t->strip_accents = flag(norm, "strip_accents", t->lowercase);   /* null follows lowercase */
    }
    const char *pt = json_string_value(json_object_get(json_object_get(root, "pre_tokenizer"), "type"));
    if (!pt || strcmp(pt, "BertPreTokenizer") != 0)
        FAIL("tokenizer.json: pre_tokenizer %s, not BertPreTokenizer", pt ? pt : "missing");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) FAIL("tokenizer.json: model.vocab is not an object");
    if (gpuq_vocab_init(&t->vocab, (int)json_object_size(vocab)) != 0)
        FAIL("tokenizer.json: vocabulary too large");
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach(vocab, key, klen, val) {
        if (!json_is_integer(val) || gpuq_vocab_add(&t->vocab, key, klen, (int)json_integer_value(val)) != 0)
            FAIL("tokenizer.json: bad vocabulary entry \"%.40s\"", key);
    }
    size_t i;
    json_array_foreach(added, i, val) {
        const char *content = json_string_value(json_object_get(val, "content"));
        json_t *id = json_object_get(val, "id");
        if (!content || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= 1 << 24)
            FAIL("tokenizer.json: bad added token %zu", i);
        if (flag(val, "normalized", !flag(val, "special", 0)) || flag(val, "lstrip", 0) ||
            flag(val, "rstrip", 0) || flag(val, "single_word", 0))
            FAIL("tokenizer.json: added token \"%.40s\" is normalized, stripped or single-word: not supported",
                 content);
        if (add_literal(t, content, (int)json_integer_value(id)) != 0) FAIL("out of memory");
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    t->unk_id = gpuq_vocab_find(&t->vocab, unk ? unk : "[UNK]", strlen(unk ? unk : "[UNK]"));
    if (t->unk_id < 0) FAIL("tokenizer.json: unk_token is not in the vocabulary");
    json_t *pfx = json_object_get(model, "continuing_subword_prefix");
    if (set_prefix(t, json_is_string(pfx) ? json_string_value(pfx) : "##") != 0)
        FAIL("tokenizer.json: continuing_subword_prefix too long");
    json_t *mc = json_object_get(model, "max_input_chars_per_word");
    if (json_is_integer(mc))
        t->max_word_chars = json_integer_value(mc) < 0 ? 0
                          : json_integer_value(mc) > 1 << 20 ? 1 << 20 : (int)json_integer_value(mc);
    if (read_post(t, json_object_get(root, "post_processor")) != 0)
        FAIL("tokenizer.json: post_processor is not [CLS] $A [SEP] (BertProcessing or TemplateProcessing)");
    result = 0;
out:
    return result;
}

/* vocab.txt: one token per line, its id the line number; a line keeps any
 * '\r' (transformers strips only the '\n'). */
static int parse_vocab_txt(struct gpuq_tok *t, const char *s, size_t len, json_t *cfg, char *err,
                           size_t errlen) {
    int result = -1, lines = 0;
    for (size_t i = 0; i < len; i++) lines += s[i] == '\n';
    if (gpuq_vocab_init(&t->vocab, lines + 1) != 0) FAIL("vocab.txt: too large");
    int id = 0;
    for (size_t pos = 0; pos < len; id++) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - s) : len;
        if (gpuq_vocab_add(&t->vocab, s + pos, end - pos, id) != 0)
            FAIL("vocab.txt: bad token on line %d", id + 1);
        pos = end + 1;
    }
    t->lowercase = flag(cfg, "do_lower_case", 1);
    t->strip_accents = flag(cfg, "strip_accents", t->lowercase);
    t->handle_chinese = flag(cfg, "tokenize_chinese_chars", 1);
    t->clean_text = 1;
    set_prefix(t, "##");
    static const char *const keys[] = {"unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    static const char *const dflt[] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};
    int ids[5];
    for (int k = 0; k < 5; k++) {
        const char *name = token_name(cfg, keys[k], dflt[k]);
        ids[k] = gpuq_vocab_find(&t->vocab, name, strlen(name));
        if (ids[k] < 0) FAIL("vocab.txt: %s \"%.40s\" is not in the vocabulary", keys[k], name);
        if (add_literal(t, name, ids[k]) != 0) FAIL("out of memory");
    }
    t->unk_id = ids[0], t->sep_id = ids[1], t->cls_id = ids[3];
    result = 0;
out:
    return result;
}

struct gpuq_tok *gpuq_tok_parse(const char *tokenizer_json, size_t tj_len, const char *vocab_txt,
                                size_t vocab_len, const char *config_json, size_t config_len,
                                char *err, size_t errlen) {
    int result = -1;
    json_t *root = NULL, *cfg = NULL;
    json_error_t jerr;
    struct gpuq_tok *t = calloc(1, sizeof *t);
    if (!t) FAIL("out of memory");
    t->max_word_chars = 100;
    if (config_json && !(cfg = json_loadb(config_json, config_len, 0, &jerr)))
        FAIL("tokenizer_config.json: %s (line %d)", jerr.text, jerr.line);
    t->model_max_length = max_length_of(cfg);
    if (tokenizer_json) {
        if (!(root = json_loadb(tokenizer_json, tj_len, 0, &jerr)))
            FAIL("tokenizer.json: %s (line %d)", jerr.text, jerr.line);
        result = parse_tokenizer_json(t, root, err, errlen);
    } else if (vocab_txt) {
        result = parse_vocab_txt(t, vocab_txt, vocab_len, cfg, err, errlen);
    } else {
        FAIL("no tokenizer.json and no vocab.txt");
    }
out:
    json_decref(root);
    json_decref(cfg);
    if (result != 0) {
        gpuq_tok_destroy(t);
        return NULL;
    }
    return t;
}

/* The whole file, or NULL (errno ENOENT when it is not there). */
static char *slurp(const char *dir, const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (!buf && errno == ENOENT) errno = EIO;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

struct gpuq_tok *gpuq_tok_load(const char *dir, char *err, size_t errlen) {
    size_t tj_len = 0, vocab_len = 0, cfg_len = 0;
    struct gpuq_tok *t = NULL;
    char *tj = NULL, *vocab = NULL, *cfg = NULL;
    errno = 0;
    if (!(tj = slurp(dir, "tokenizer.json", &tj_len)) && errno != ENOENT)
        FAIL("%s/tokenizer.json: cannot read it", dir);
    if (!tj && !(vocab = slurp(dir, "vocab.txt", &vocab_len)))
        FAIL("%s: no tokenizer.json and no vocab.txt", dir);
    errno = 0;
    if (!(cfg = slurp(dir, "tokenizer_config.json", &cfg_len)) && errno != ENOENT)
        FAIL("%s/tokenizer_config.json: cannot read it", dir);
    t = gpuq_tok_parse(tj, tj_len, vocab, vocab_len, cfg, cfg_len, err, errlen);
out:
    free(tj);
    free(vocab);
    free(cfg);
    return t;
}

void gpuq_tok_destroy(struct gpuq_tok *t) {
    if (!t) return;
    gpuq_vocab_free(&t->vocab);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].text);
    free(t->added);
    free(t);
}

int gpuq_tok_vocab_size(const struct gpuq_tok *t) {
    int n = t->vocab.size;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id >= n) n = t->added[i].id + 1;
    return n;
}

int gpuq_tok_model_max_length(const struct gpuq_tok *t) { return t->model_max_length; }

const char *gpuq_tok_token(const struct gpuq_tok *t, int id) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return t->added[i].text;
    return id >= 0 && id < t->vocab.n_ids ? t->vocab.text[id] : NULL;
}
