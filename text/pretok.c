/* pretok.c -- see pretok.h. A split marks the piece's bytes as matches or
 * not (a regex's matches, or each character a predicate accepts), folds the
 * marks by the behaviour as `tokenizers` does, and keeps what is not removed. */
#include "text/pretok.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mark {
    size_t a, b;
    int match;
};

struct marks {
    struct mark *v;
    size_t n, cap;
};

static int mark(struct marks *m, size_t a, size_t b, int match) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        struct mark *v = realloc(m->v, cap * sizeof *v);
        if (!v) return -1;
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = (struct mark){a, b, match};
    return 0;
}

/* Each character pred accepts is a match of its own. */
static int mark_chars(const char *s, size_t n, int (*pred)(int32_t, int32_t), int32_t arg,
                      struct marks *m) {
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s + i, n - i, &c);
        if (pred(c, arg)) {
            if ((last < i && mark(m, last, i, 0)) || mark(m, i, i + k, 1)) return -1;
            last = i + k;
        }
        i += k;
    }
    return last < n ? mark(m, last, n, 0) : 0;
}

static int mark_regex(const char *s, size_t n, const struct tok_regex *re, int invert,
                      struct marks *m) {
    struct tok_spans sp = {0};
    int result = tok_regex_find(re, s, n, &sp);
    size_t prev = 0;
    for (size_t i = 0; result == 0 && i < sp.n; i++) {
        if (prev != sp.v[i].a) result = mark(m, prev, sp.v[i].a, invert);
        if (result == 0) result = mark(m, sp.v[i].a, sp.v[i].b, !invert);
        prev = sp.v[i].b;
    }
    if (result == 0 && prev != n) result = mark(m, prev, n, invert);
    tok_spans_free(&sp);
    return result;
}

/* Folds the marks by behaviour (in place) and adds the kept spans as pieces. */
static int emit(const char *s, struct marks *m, enum tok_split_behavior bh, size_t head,
                struct tok_pieces *out) {
    size_t k = 0;
    int prev_match = 0;
    if (bh == TOK_SPLIT_MERGED_WITH_NEXT) {   /* fold from the end */
        for (size_t i = m->n; i-- > 0;) {
            struct mark x = m->v[i];
            if (x.match && !prev_match && k) m->v[m->n - k].a = x.a;
            else m->v[m->n - ++k] = (struct mark){x.a, x.b, 0};
            prev_match = x.match;
        }
        memmove(m->v, m->v + m->n - k, k * sizeof *m->v);
    } else {
        for (size_t i = 0; i < m->n; i++) {
            struct mark x = m->v[i];
            int merge = bh == TOK_SPLIT_CONTIGUOUS ? x.match == prev_match
                      : bh == TOK_SPLIT_MERGED_WITH_PREVIOUS ? x.match && !prev_match : 0;
            if (merge && k) m->v[k - 1].b = x.b;
            else m->v[k++] = (struct mark){x.a, x.b, bh == TOK_SPLIT_REMOVED && x.match};
            prev_match = x.match;
        }
    }
    m->n = k;
    for (size_t i = 0; i < k; i++)
        if (!m->v[i].match &&
            tok_pieces_add(out, s + m->v[i].a, m->v[i].b - m->v[i].a, head > m->v[i].a ? head - m->v[i].a : 0, -1))
            return -1;
    return 0;
}

static int pred_space(int32_t c, int32_t arg) { (void)arg; return tok_is_whitespace(c); }
static int pred_punct(int32_t c, int32_t arg) { (void)arg; return tok_is_punct(c); }
static int pred_digit(int32_t c, int32_t arg) { (void)arg; return tok_is_numeric(c); }
static int pred_equal(int32_t c, int32_t arg) { return c == arg; }

int32_t tok_byte_char(unsigned char b) {
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae)) return b;
    int n = 0;   /* the how-manieth unprintable byte this is */
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || x >= 0xae)) n++;
    return 256 + n;
}

/* The piece with ' ' replaced and the prefix put, as Metaspace does; *head
 * becomes the result's (the prefix aligns to the first character). */
static int metaspace_text(const struct tok_pretok *p, const char *s, size_t n, size_t *head,
                          struct tok_buf *o) {
    char rep[4];
    size_t rl = tok_utf8_put(p->delimiter, rep), h = *head;
    int starts = n >= rl && memcmp(s, rep, rl) == 0;
    if (n && s[0] == ' ') starts = 1;   /* it will once replaced */
    int put = !starts && (p->prepend == TOK_PREPEND_ALWAYS || (p->prepend == TOK_PREPEND_FIRST && h));
    if (put && tok_buf_put(o, rep, rl)) return -1;
    for (size_t i = 0; i < n; i++) {
        if (i == h) *head = o->n;
        if (s[i] == ' ' ? tok_buf_put(o, rep, rl) : tok_buf_put(o, s + i, 1)) return -1;
    }
    if (h >= n) *head = o->n;
    return 0;
}

/* UnicodeScripts: a cut where the script changes. A space (and a character
 * of no script) belongs to no script and stays with the piece before it;
 * those before the first scripted character are dropped, as there. */
static int script_of(int32_t c) {
    if (c == ' ') return 0;
    if (c == 0x30fc) return tok_script9(0x4e00);   /* KATAKANA-HIRAGANA PROLONGED SOUND MARK: Han */
    return tok_script9(c);
}

static int scripts(const char *s, size_t n, size_t head, struct tok_pieces *out) {
    size_t start = n;   /* no piece yet */
    int last = -1;
    for (size_t i = 0; i < n;) {
        int32_t c;
        size_t k = tok_utf8_next((const unsigned char *)s + i, n - i, &c);
        int sc = script_of(c);
        if (sc && sc != last) {
            if (start < i && tok_pieces_add(out, s + start, i - start, head > start ? head - start : 0, -1))
                return -1;
            start = i;
        }
        if (sc) last = sc;
        i += k;
    }
    return start < n ? tok_pieces_add(out, s + start, n - start, head > start ? head - start : 0, -1) : 0;
}

/* Cuts one piece s[0, n) into out. */
static int cut(const struct tok_pretok *p, const char *s, size_t n, size_t head, struct tok_pieces *out) {
    struct marks m = {0};
    struct tok_buf b = {0};
    int result = -1;
    switch (p->kind) {
    case TOK_PRETOK_BERT: {
        struct tok_pieces words = {0};
        result = mark_chars(s, n, pred_space, 0, &m) || emit(s, &m, TOK_SPLIT_REMOVED, head, &words);
        for (size_t i = 0; result == 0 && i < words.n; i++) {
            const struct tok_piece *w = &words.v[i];
            m.n = 0;
            result = mark_chars(words.text.s + w->off, w->len, pred_punct, 0, &m) ||
                     emit(words.text.s + w->off, &m, TOK_SPLIT_ISOLATED, w->head, out);
        }
        tok_pieces_free(&words);
        break;
    }
    case TOK_PRETOK_WHITESPACE:
        result = mark_regex(s, n, p->re, 1, &m) || emit(s, &m, TOK_SPLIT_REMOVED, head, out);
        break;
    case TOK_PRETOK_WHITESPACE_SPLIT:
        result = mark_chars(s, n, pred_space, 0, &m) || emit(s, &m, TOK_SPLIT_REMOVED, head, out);
        break;
    case TOK_PRETOK_PUNCTUATION:
        result = mark_chars(s, n, pred_punct, 0, &m) || emit(s, &m, p->behavior, head, out);
        break;
    case TOK_PRETOK_CHAR_DELIMITER:
        result = mark_chars(s, n, pred_equal, p->delimiter, &m) || emit(s, &m, TOK_SPLIT_REMOVED, head, out);
        break;
    case TOK_PRETOK_DIGITS:
        result = mark_chars(s, n, pred_digit, 0, &m) ||
                 emit(s, &m, p->individual_digits ? TOK_SPLIT_ISOLATED : TOK_SPLIT_CONTIGUOUS, head, out);
        break;
    case TOK_PRETOK_SPLIT:
        result = mark_regex(s, n, p->re, p->invert, &m) || emit(s, &m, p->behavior, head, out);
        break;
    case TOK_PRETOK_METASPACE:
        result = tok_buf_put(&b, "", 0) || metaspace_text(p, s, n, &head, &b);
        if (result == 0)
            result = p->split ? mark_chars(b.s, b.n, pred_equal, p->delimiter, &m) ||
                                    emit(b.s, &m, TOK_SPLIT_MERGED_WITH_NEXT, head, out)
                              : tok_pieces_add(out, b.s, b.n, head, -1);
        break;
    case TOK_PRETOK_BYTE_LEVEL: {
        struct tok_pieces words = {0};
        int prefix = p->add_prefix_space && (n == 0 || s[0] != ' ');
        result = tok_buf_put(&b, " ", (size_t)prefix) || tok_buf_put(&b, s, n);
        if (head && prefix) head++;   /* the space aligns to the first character */
        if (result == 0)
            result = p->re ? mark_regex(b.s, b.n, p->re, 0, &m) || emit(b.s, &m, TOK_SPLIT_ISOLATED, head, &words)
                           : tok_pieces_add(&words, b.s, b.n, head, -1);
        for (size_t i = 0; result == 0 && i < words.n; i++) {
            struct tok_buf mapped = {0};
            const struct tok_piece *w = &words.v[i];
            size_t mapped_head = 0;
            for (size_t j = 0; result == 0 && j < w->len; j++) {
                result = tok_buf_putc(&mapped, tok_byte_char((unsigned char)words.text.s[w->off + j]));
                if (j < w->head) mapped_head = mapped.n;
            }
            if (result == 0) result = tok_pieces_add(out, mapped.s, mapped.n, mapped_head, -1);
            tok_buf_free(&mapped);
        }
        tok_pieces_free(&words);
        break;
    }
    case TOK_PRETOK_FIXED_LENGTH:   /* pieces of length characters */
        result = 0;
        for (size_t i = 0, start = 0, chars = 0; result == 0 && i < n; chars++) {
            int32_t c;
            i += tok_utf8_next((const unsigned char *)s + i, n - i, &c);
            if ((chars + 1) % p->length == 0 || i == n) {
                result = tok_pieces_add(out, s + start, i - start, head > start ? head - start : 0, -1);
                start = i;
            }
        }
        break;
    case TOK_PRETOK_UNICODE_SCRIPTS:
        result = scripts(s, n, head, out);
        break;
    case TOK_PRETOK_SEQUENCE:
        break;
    }
    free(m.v);
    tok_buf_free(&b);
    return result ? -1 : 0;
}

int tok_pretok_apply(const struct tok_pretok *p, struct tok_pieces *pieces) {
    if (p->kind == TOK_PRETOK_SEQUENCE) {
        for (int i = 0; i < p->n_seq; i++)
            if (tok_pretok_apply(&p->seq[i], pieces) != 0) return -1;
        return 0;
    }
    struct tok_pieces out = {0};
    for (size_t i = 0; i < pieces->n; i++) {
        const struct tok_piece *w = &pieces->v[i];
        if (cut(p, pieces->text.s + w->off, w->len, w->head, &out) != 0) {
            tok_pieces_free(&out);
            return -1;
        }
    }
    tok_pieces_free(pieces);
    *pieces = out;
    return 0;
}

/* ---- reading tokenizer.json ---- */

#define WHITESPACE_PATTERN "\\w+|[^\\w\\s]+"
#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static int flag(json_t *obj, const char *key, int dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* The single character of a JSON string, or -1. */
static int32_t one_char(json_t *v) {
    const char *s = json_string_value(v);
    if (!s || !*s) return -1;
    int32_t c;
    size_t n = strlen(s);
    return tok_utf8_next((const unsigned char *)s, n, &c) == n && c != 0xfffd ? c : -1;
}

static int behavior(json_t *v, enum tok_split_behavior dflt, enum tok_split_behavior *out) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                        "Contiguous"};
    *out = dflt;
    if (!v) return 0;
    for (int i = 0; i < 5; i++)
        if (json_is_string(v) && strcmp(json_string_value(v), names[i]) == 0) {
            *out = (enum tok_split_behavior)i;
            return 0;
        }
    return -1;
}

static const struct { const char *name; enum tok_pretok_kind kind; } kinds[] = {
    {"BertPreTokenizer", TOK_PRETOK_BERT}, {"Whitespace", TOK_PRETOK_WHITESPACE},
    {"WhitespaceSplit", TOK_PRETOK_WHITESPACE_SPLIT}, {"Punctuation", TOK_PRETOK_PUNCTUATION},
    {"CharDelimiterSplit", TOK_PRETOK_CHAR_DELIMITER}, {"Metaspace", TOK_PRETOK_METASPACE},
    {"ByteLevel", TOK_PRETOK_BYTE_LEVEL}, {"Split", TOK_PRETOK_SPLIT}, {"Digits", TOK_PRETOK_DIGITS},
    {"FixedLength", TOK_PRETOK_FIXED_LENGTH}, {"UnicodeScripts", TOK_PRETOK_UNICODE_SCRIPTS},
    {"Sequence", TOK_PRETOK_SEQUENCE},
};

int tok_pretok_parse(struct tok_pretok *p, json_t *j, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    const char *type = json_string_value(json_object_get(j, "type"));
    size_t k = 0, nk = sizeof kinds / sizeof *kinds;
    while (k < nk && !(type && strcmp(type, kinds[k].name) == 0)) k++;
    if (k == nk) {
        snprintf(err, errlen, "tokenizer.json: pre_tokenizer '%.40s' is not supported",
                 type ? type : "(no type)");
        return -1;
    }
    p->kind = kinds[k].kind;
    switch (p->kind) {
    case TOK_PRETOK_WHITESPACE:
        p->re = tok_regex_new(WHITESPACE_PATTERN, strlen(WHITESPACE_PATTERN), 0, err, errlen);
        return p->re ? 0 : -1;
    case TOK_PRETOK_PUNCTUATION:
        if (behavior(json_object_get(j, "behavior"), TOK_SPLIT_ISOLATED, &p->behavior) != 0) break;
        return 0;
    case TOK_PRETOK_CHAR_DELIMITER:
        if ((p->delimiter = one_char(json_object_get(j, "delimiter"))) < 0) break;
        return 0;
    case TOK_PRETOK_DIGITS:
        p->individual_digits = flag(j, "individual_digits", 0);
        return 0;
    case TOK_PRETOK_FIXED_LENGTH: {
        json_t *len = json_object_get(j, "length");
        p->length = 5;
        if (len && (!json_is_integer(len) || json_integer_value(len) < 1)) break;
        if (len) p->length = (size_t)json_integer_value(len);
        return 0;
    }
    case TOK_PRETOK_SPLIT:
        if (behavior(json_object_get(j, "behavior"), TOK_SPLIT_REMOVED, &p->behavior) != 0 ||
            !json_object_get(j, "behavior"))
            break;
        p->invert = flag(j, "invert", 0);
        p->re = tok_pattern_parse(json_object_get(j, "pattern"), err, errlen);
        return p->re ? 0 : -1;
    case TOK_PRETOK_METASPACE: {
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        if ((p->delimiter = one_char(json_object_get(j, "replacement"))) < 0) break;
        p->split = flag(j, "split", 1);
        if (!scheme)   /* files before prepend_scheme: add_prefix_space */
            p->prepend = flag(j, "add_prefix_space", 1) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
        else if (strcmp(scheme, "always") == 0) p->prepend = TOK_PREPEND_ALWAYS;
        else if (strcmp(scheme, "first") == 0) p->prepend = TOK_PREPEND_FIRST;
        else if (strcmp(scheme, "never") == 0) p->prepend = TOK_PREPEND_NEVER;
        else break;
        return 0;
    }
    case TOK_PRETOK_BYTE_LEVEL:
        p->add_prefix_space = flag(j, "add_prefix_space", 1);
        if (!flag(j, "use_regex", 1)) return 0;
        p->re = tok_regex_new(GPT2_PATTERN, strlen(GPT2_PATTERN), 0, err, errlen);
        return p->re ? 0 : -1;
    case TOK_PRETOK_SEQUENCE: {
        json_t *list = json_object_get(j, "pretokenizers");
        if (!json_is_array(list)) break;
        if (!(p->seq = calloc(json_array_size(list) + 1, sizeof *p->seq))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < json_array_size(list); i++) {
            p->n_seq++;
            if (tok_pretok_parse(&p->seq[i], json_array_get(list, i), err, errlen) != 0) return -1;
        }
        return 0;
    }
    default:
        return 0;
    }
    snprintf(err, errlen, "tokenizer.json: pre_tokenizer %s is malformed or has an unsupported option", type);
    return -1;
}

void tok_pretok_free(struct tok_pretok *p) {
    if (!p) return;
    tok_regex_free(p->re);
    for (int i = 0; i < p->n_seq; i++) tok_pretok_free(&p->seq[i]);
    free(p->seq);
    memset(p, 0, sizeof *p);
}
