/* regex.c -- see regex.h. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "text/regex.h"

#include <jansson.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/ustr.h"

struct tok_regex {
    pcre2_code *code;
};

/* Rust's and Oniguruma's Unicode classes, which PCRE2's UCP classes are not
 * (its \s lacks U+0085, its \w takes No and lacks the marks). */
#define SPACE_SET "\\t-\\r\\x{20}\\x{85}\\p{Z}"
#define WORD_SET "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}"

/* Rewrites \s \S \w \W (outside and inside brackets) into explicit sets;
 * a negated class inside brackets cannot be written so and is refused. */
static int rewrite(const char *p, size_t n, struct tok_buf *out) {
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *set = e == 's' || e == 'S' ? SPACE_SET : e == 'w' || e == 'W' ? WORD_SET : NULL;
            int neg = e == 'S' || e == 'W';
            if (set && in_class && neg) return -1;
            if (set) {
                int r = in_class ? tok_buf_put(out, set, strlen(set))
                                 : (tok_buf_put(out, neg ? "[^" : "[", neg ? 2 : 1) ||
                                    tok_buf_put(out, set, strlen(set)) || tok_buf_put(out, "]", 1));
                if (r) return -1;
            } else if (tok_buf_put(out, p + i, 2)) {
                return -1;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            if (tok_buf_put(out, p + i, 1)) return -1;
            /* a ']' first in the class (after an optional '^') is literal */
            if (i + 1 < n && p[i + 1] == '^') { if (tok_buf_put(out, "^", 1)) return -1; i++; }
            if (i + 1 < n && p[i + 1] == ']') { if (tok_buf_put(out, "]", 1)) return -1; i++; }
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        if (tok_buf_put(out, &c, 1)) return -1;
    }
    return 0;
}

struct tok_regex *tok_regex_new(const char *pattern, size_t len, int literal, char *err,
                                size_t errlen) {
    struct tok_buf pat = {0};
    struct tok_regex *re = calloc(1, sizeof *re);
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    if (!re || (literal ? tok_buf_put(&pat, pattern, len) : rewrite(pattern, len, &pat)) != 0) {
        snprintf(err, errlen, "regex \"%.40s\": not supported", pattern);
        free(re);
        tok_buf_free(&pat);
        return NULL;
    }
    int code;
    PCRE2_SIZE at;
    re->code = pcre2_compile((PCRE2_SPTR)pat.s, pat.n, opts, &code, &at, NULL);
    tok_buf_free(&pat);
    if (!re->code) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(code, msg, sizeof msg);
        snprintf(err, errlen, "regex \"%.40s\": %s", pattern, (char *)msg);
        free(re);
        return NULL;
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);   /* the interpreter when JIT is absent */
    return re;
}

void tok_regex_free(struct tok_regex *re) {
    if (!re) return;
    pcre2_code_free(re->code);
    free(re);
}

int tok_spans_add(struct tok_spans *s, size_t a, size_t b) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct tok_span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return -1;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (struct tok_span){a, b};
    return 0;
}

void tok_spans_free(struct tok_spans *s) {
    free(s->v);
    memset(s, 0, sizeof *s);
}

static size_t char_len(const char *s, size_t n, size_t at) {
    int32_t c;
    return at < n ? tok_utf8_next((const unsigned char *)s + at, n - at, &c) : 1;
}

int tok_regex_find(const struct tok_regex *re, const char *s, size_t n, struct tok_spans *out) {
    out->n = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md) return -1;
    int result = 0;
    size_t from = 0, last_end = (size_t)-1;
    while (from <= n) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) { result = -1; break; }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (a == b && b == last_end) {   /* onig: no empty match right after a match */
            from += char_len(s, n, from);
            continue;
        }
        if (tok_spans_add(out, a, b) != 0) { result = -1; break; }
        last_end = b;
        from = a == b ? b + char_len(s, n, b) : b;
    }
    pcre2_match_data_free(md);
    return result;
}

struct tok_regex *tok_pattern_parse(json_t *pattern, char *err, size_t errlen) {
    json_t *s = json_object_get(pattern, "String"), *r = json_object_get(pattern, "Regex");
    if (json_is_string(s)) return tok_regex_new(json_string_value(s), json_string_length(s), 1, err, errlen);
    if (json_is_string(r)) return tok_regex_new(json_string_value(r), json_string_length(r), 0, err, errlen);
    snprintf(err, errlen, "tokenizer.json: a pattern is neither String nor Regex");
    return NULL;
}
