/* tok_ids.c -- test driver: tokenizes texts with a model folder's tokenizer.
 *   tok_ids DIR MAX_LENGTH < texts
 * Each input line is one text as hex (any bytes, invalid UTF-8 included),
 * or a pair as two hex texts joined by ','; each output line is the ids,
 * space-separated, and for a pair '|' and the type ids. "error" when the
 * encoder fails. Exit 2 on a load error.
 *   tok_ids DIR spans < texts
 * prints each text's tokens before truncation and special tokens as
 * id:start:end:word (gpuq_tok_spans). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int unhex(const char *s, size_t n, char *out) {
    for (size_t i = 0; i + 1 < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i / 2] = (char)(hi << 4 | lo);
    }
    return 0;
}

/* One text's tokens with their spans. */
static int spans_line(const struct gpuq_tok *t, const char *line, size_t n) {
    char *a = malloc(n / 2 + 1);
    struct gpuq_tok_spans s = {0};
    if (!a || unhex(line, n, a) != 0) {
        free(a);
        return -1;
    }
    if (gpuq_tok_spans(t, a, n / 2, &s) != 0) printf("error");
    else
        for (size_t i = 0; i < s.n; i++)
            printf(i ? " %d:%lld:%lld:%d" : "%d:%lld:%lld:%d", s.ids[i], (long long)s.start[i],
                   (long long)s.end[i], s.word[i]);
    printf("\n");
    gpuq_tok_spans_free(&s);
    free(a);
    return 0;
}

/* Encodes one input line (hex, or hex,hex) and prints the result. */
static int run_line(const struct gpuq_tok *t, const char *line, size_t n, int max_length,
                    int32_t *ids, int32_t *types) {
    const char *comma = memchr(line, ',', n);
    size_t na = comma ? (size_t)(comma - line) : n, nb = comma ? n - na - 1 : 0;
    char *a = malloc(na / 2 + 1), *b = malloc(nb / 2 + 1);
    if (!a || !b || unhex(line, na, a) != 0 || (comma && unhex(comma + 1, nb, b) != 0)) {
        free(a);
        free(b);
        return -1;
    }
    int k = gpuq_tok_encode_pair(t, a, na / 2, comma ? b : NULL, nb / 2, max_length, ids, types);
    if (k < 0) printf("error");
    for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
    if (comma && k >= 0) {
        printf("|");
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", types[i]);
    }
    printf("\n");
    free(a);
    free(b);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: tok_ids DIR MAX_LENGTH < hex-lines\n");
        return 2;
    }
    char err[256];
    struct gpuq_tok *t = gpuq_tok_load(argv[1], err, sizeof err);
    if (!t) {
        fprintf(stderr, "tok_ids: %s\n", err);
        return 2;
    }
    int max_length = atoi(argv[2]);
    size_t cap_ids = (size_t)(max_length > 2 ? max_length : 2);
    int32_t *ids = malloc(cap_ids * sizeof *ids), *types = malloc(cap_ids * sizeof *types);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if ((strcmp(argv[2], "spans") == 0 ? spans_line(t, line, (size_t)n)
                                           : run_line(t, line, (size_t)n, max_length, ids, types)) != 0) { rc = 1; break; }
    }
    free(line);
    free(ids);
    free(types);
    gpuq_tok_destroy(t);
    return rc;
}
