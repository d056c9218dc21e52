/* tokenizer_load.c -- builds a gpuq_tok from a model folder's tokenizer.json
 * (each component read by its own room), or from vocab.txt +
 * tokenizer_config.json as transformers converts them to a BERT pipeline. A
 * component the file names that is not implemented is refused with a
 * one-line reason, never run differently. */
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

/* model_max_length; 0 when absent or not a usable length (some configs say 1e30). */
static int max_length_of(json_t *cfg) {
    json_t *v = json_object_get(cfg, "model_max_length");
    double d = json_is_number(v) ? json_number_value(v) : 0;
    return d >= 1 && d <= 1 << 20 ? (int)d : 0;
}

static int parse_model(struct tok_model *m, json_t *j, char *err, size_t errlen) {
    const char *type = json_string_value(json_object_get(j, "type"));
    m->unk_id = -1;
    if (!type && json_object_get(j, "merges")) type = "BPE";   /* old files name no type */
    if (type && strcmp(type, "WordPiece") == 0) {
        m->kind = TOK_MODEL_WORDPIECE;
        return tok_wordpiece_parse(m, j, err, errlen);
    }
    if (type && strcmp(type, "Unigram") == 0) {
        m->kind = TOK_MODEL_UNIGRAM;
        return tok_unigram_parse(m, j, err, errlen);
    }
    if (type && strcmp(type, "BPE") == 0) {
        m->kind = TOK_MODEL_BPE;
        return tok_bpe_parse(m, j, err, errlen);
    }
    if (type && strcmp(type, "WordLevel") == 0) {
        m->kind = TOK_MODEL_WORDLEVEL;
        return tok_wordlevel_parse(m, j, err, errlen);
    }
    m->kind = TOK_MODEL_WORDPIECE;   /* nothing to free */
    snprintf(err, errlen, "tokenizer.json: model '%.40s' is not supported", type ? type : "(no type)");
    return -1;
}

/* "Left" or "left" in obj[key]: 1; 0 otherwise. */
static int is_left(json_t *obj, const char *key) {
    const char *v = json_string_value(json_object_get(obj, key));
    return v && (strcmp(v, "Left") == 0 || strcmp(v, "left") == 0);
}

/* Which side padding and truncation take. tokenizer_config.json's
 * padding_side and truncation_side win where set, as transformers passes
 * them to the tokenizer; else tokenizer.json's padding and truncation. The
 * pad id: tokenizer_config.json's pad_token, else tokenizer.json's pad_id. */
static void read_sides(struct gpuq_tok *t, json_t *root, json_t *cfg) {
    json_t *pad = json_object_get(root, "padding"), *trunc = json_object_get(root, "truncation");
    json_t *id = json_object_get(pad, "pad_id");
    const char *name = token_name(cfg, "pad_token", NULL);
    t->pad_id = name ? tok_token_to_id(t, name, strlen(name)) : json_is_integer(id) ? (int)json_integer_value(id) : -1;
    t->pad_left = json_object_get(cfg, "padding_side") ? is_left(cfg, "padding_side") : is_left(pad, "direction");
    t->trunc_left = json_object_get(cfg, "truncation_side") ? is_left(cfg, "truncation_side")
                                                             : is_left(trunc, "direction");
}

static int parse_tokenizer_json(struct gpuq_tok *t, json_t *root, json_t *cfg, char *err, size_t errlen) {
    int result = -1;
    json_t *norm = json_object_get(root, "normalizer"), *pre = json_object_get(root, "pre_tokenizer");
    json_t *trunc = json_object_get(root, "truncation");
    if (parse_model(&t->model, json_object_get(root, "model"), err, errlen) != 0) goto out;
    if (norm && !json_is_null(norm)) {
        if (!(t->norm = calloc(1, sizeof *t->norm))) FAIL("out of memory");
        if (tok_norm_parse(t->norm, norm, err, errlen) != 0) goto out;
    }
    if (pre && !json_is_null(pre)) {
        if (!(t->pretok = calloc(1, sizeof *t->pretok))) FAIL("out of memory");
        if (tok_pretok_parse(t->pretok, pre, err, errlen) != 0) goto out;
    }
    if (tok_post_parse(&t->post, json_object_get(root, "post_processor"), err, errlen) != 0) goto out;
    const char *strategy = json_string_value(json_object_get(trunc, "strategy"));
    if (strategy && strcmp(strategy, "OnlyFirst") == 0) t->trunc = TOK_TRUNC_ONLY_FIRST;
    else if (strategy && strcmp(strategy, "OnlySecond") == 0) t->trunc = TOK_TRUNC_ONLY_SECOND;
    else if (strategy && strcmp(strategy, "LongestFirst") != 0)
        FAIL("tokenizer.json: truncation strategy '%.40s' is not supported", strategy);
    /* new added tokens are numbered from the model's vocabulary size */
    json_t *pieces = json_object_get(json_object_get(root, "model"), "vocab");
    t->next_id = json_is_array(pieces) ? (int)json_array_size(pieces) : t->model.vocab.n_tokens;
    size_t i;
    json_t *val;
    json_array_foreach(json_object_get(root, "added_tokens"), i, val) {
        const char *content = json_string_value(json_object_get(val, "content"));
        if (!content) FAIL("tokenizer.json: added token %zu has no content", i);
        int special = flag(val, "special", 0);
        if (tok_added_add(t, content, special, flag(val, "single_word", 0), flag(val, "lstrip", 0),
                          flag(val, "rstrip", 0), flag(val, "normalized", !special)) != 0)
            FAIL("out of memory");
    }
    if (tok_added_index(t) != 0) FAIL("out of memory");
    read_sides(t, root, cfg);
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
    struct tok_model *m = &t->model;
    m->kind = TOK_MODEL_WORDPIECE;
    if (gpuq_vocab_init(&m->vocab, lines + 1) != 0) FAIL("vocab.txt: too large");
    int id = 0;
    for (size_t pos = 0; pos < len; id++) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - s) : len;
        if (gpuq_vocab_add(&m->vocab, s + pos, end - pos, id) != 0)
            FAIL("vocab.txt: bad token on line %d", id + 1);
        pos = end + 1;
    }
    m->max_word_chars = 100;
    if (!(m->prefix = strdup("##")) || !(t->norm = calloc(1, sizeof *t->norm)) ||
        !(t->pretok = calloc(1, sizeof *t->pretok)))
        FAIL("out of memory");
    t->norm->kind = TOK_NORM_BERT;
    t->norm->lowercase = flag(cfg, "do_lower_case", 1);
    t->norm->strip_accents = flag(cfg, "strip_accents", t->norm->lowercase);
    t->norm->handle_chinese = flag(cfg, "tokenize_chinese_chars", 1);
    t->norm->clean_text = 1;
    t->pretok->kind = TOK_PRETOK_BERT;
    t->next_id = m->vocab.n_tokens;
    static const char *const keys[] = {"unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    static const char *const dflt[] = {"[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};
    int ids[5];
    for (int k = 0; k < 5; k++) {
        const char *name = token_name(cfg, keys[k], dflt[k]);
        ids[k] = gpuq_vocab_find(&m->vocab, name, strlen(name));
        if (ids[k] < 0) FAIL("vocab.txt: %s \"%.40s\" is not in the vocabulary", keys[k], name);
        if (tok_added_add(t, name, 1, 0, 0, 0, 0) != 0) FAIL("out of memory");
    }
    if (tok_added_index(t) != 0) FAIL("out of memory");
    m->unk_id = ids[0];
    t->post.kind = TOK_POST_BERT;
    t->post.sep = ids[1];
    t->post.cls = ids[3];
    read_sides(t, NULL, cfg);
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
    if (config_json && !(cfg = json_loadb(config_json, config_len, 0, &jerr)))
        FAIL("tokenizer_config.json: %s (line %d)", jerr.text, jerr.line);
    t->model_max_length = max_length_of(cfg);
    if (tokenizer_json) {
        if (!(root = json_loadb(tokenizer_json, tj_len, JSON_ALLOW_NUL, &jerr)))
            FAIL("tokenizer.json: %s (line %d)", jerr.text, jerr.line);
        result = parse_tokenizer_json(t, root, cfg, err, errlen);
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
    tok_model_free(&t->model);
    tok_norm_free(t->norm);
    free(t->norm);
    tok_pretok_free(t->pretok);
    free(t->pretok);
    tok_post_free(&t->post);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].text);
        free(t->added[i].match);
    }
    free(t->added);
    free(t->raw_set.order);
    free(t->norm_set.order);
    free(t);
}

int tok_model_vocab(struct tok_model *m, json_t *vocab, char *err, size_t errlen) {
    if (!json_is_object(vocab)) {
        snprintf(err, errlen, "tokenizer.json: model.vocab is not an object");
        return -1;
    }
    if (gpuq_vocab_init(&m->vocab, (int)json_object_size(vocab)) != 0) {
        snprintf(err, errlen, "tokenizer.json: vocabulary too large");
        return -1;
    }
    const char *key;
    size_t klen;
    json_t *val;
    json_object_keylen_foreach(vocab, key, klen, val) {
        if (!json_is_integer(val) || gpuq_vocab_add(&m->vocab, key, klen, (int)json_integer_value(val)) != 0) {
            snprintf(err, errlen, "tokenizer.json: bad vocabulary entry \"%.40s\"", key);
            return -1;
        }
    }
    return 0;
}

void tok_model_free(struct tok_model *m) {
    gpuq_vocab_free(&m->vocab);
    free(m->prefix);
    free(m->suffix);
    free(m->scores);
    free(m->sorted);
    free(m->lens);
    tok_bpe_free(m);
    memset(m, 0, sizeof *m);
}

int gpuq_tok_vocab_size(const struct gpuq_tok *t) {
    int n = t->model.vocab.size;
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id >= n) n = t->added[i].id + 1;
    return n;
}

int gpuq_tok_model_max_length(const struct gpuq_tok *t) { return t->model_max_length; }

const char *gpuq_tok_token(const struct gpuq_tok *t, int id) {
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return t->added[i].text;
    return id >= 0 && id < t->model.vocab.n_ids ? t->model.vocab.text[id] : NULL;
}

int gpuq_tok_pad_id(const struct gpuq_tok *t) { return t->pad_id; }

int gpuq_tok_padding_left(const struct gpuq_tok *t) { return t->pad_left; }

int gpuq_tok_special_count(const struct gpuq_tok *t, int pair) { return tok_post_added(&t->post, pair); }
