/* regex.h -- the regular expressions of tokenizer.json (Split and Replace
 * patterns, ByteLevel's GPT-2 pattern) through PCRE2, matched as the
 * `tokenizers` crate's Oniguruma and `regex` matches them: \s is White_Space,
 * \w is Alphabetic, marks, Nd, Pc and the joiners, and the matches are
 * iterated the way onig's find_iter does (an empty match right after a match
 * is skipped). Compiled once at load; matching allocates per call, so one
 * compiled pattern serves many threads. */
#ifndef GPUQ_TOK_REGEX_H
#define GPUQ_TOK_REGEX_H

#include <jansson.h>
#include <stddef.h>

struct tok_regex;

struct tok_span {
    size_t a, b;   /* byte offsets [a, b) */
};

struct tok_spans {
    struct tok_span *v;
    size_t n, cap;
};

/* Compiles pattern, or the literal string when literal is set. NULL with a
 * one-line reason. */
struct tok_regex *tok_regex_new(const char *pattern, size_t len, int literal, char *err,
                                size_t errlen);
void tok_regex_free(struct tok_regex *re);

/* Every match in s[0, n) into out (emptied first). 0, or -1 on no memory or
 * a matching error (a pattern too costly for the input). */
int tok_regex_find(const struct tok_regex *re, const char *s, size_t n, struct tok_spans *out);
/* A Replace or Split pattern of tokenizer.json: {"String": s} (literal)
 * or {"Regex": r}. NULL with a reason. */
struct tok_regex *tok_pattern_parse(json_t *pattern, char *err, size_t errlen);
int tok_spans_add(struct tok_spans *s, size_t a, size_t b);
void tok_spans_free(struct tok_spans *s);

#endif
