/* tok_ids.c -- test driver: tokenizes texts with a model folder's tokenizer.
 *   tok_ids DIR MAX_LENGTH < texts
 * Each input line is one text as hex (any bytes, invalid UTF-8 included);
 * each output line is its ids, space-separated. Exit 2 on a load error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tokenizer.h"

static int unhex(const char *s, size_t n, char *out) {
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned v;
        if (sscanf(s + i, "%2x", &v) != 1) return -1;
        out[i / 2] = (char)v;
    }
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
    int32_t *ids = malloc((size_t)(max_length > 2 ? max_length : 2) * sizeof *ids);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        char *text = malloc((size_t)n / 2 + 1);
        if (!text || unhex(line, (size_t)n, text) != 0) { rc = 1; free(text); break; }
        int k = gpuq_tok_encode(t, text, (size_t)n / 2, max_length, ids);
        if (k < 0) printf("error\n");
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        if (k >= 0) printf("\n");
        free(text);
    }
    free(line);
    free(ids);
    gpuq_tok_destroy(t);
    return rc;
}
