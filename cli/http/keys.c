/* keys.c -- reading the key file and checking bearer tokens. */
#include "cli/http/keys.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hex_digest(const char *s, unsigned char out[32]) {
    if (strlen(s) != 64) return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int j = 0; j < 2; j++) {
            char ch = (char)tolower((unsigned char)s[2 * i + j]);
            if (ch >= '0' && ch <= '9') v = v * 16 + (unsigned)(ch - '0');
            else if (ch >= 'a' && ch <= 'f') v = v * 16 + (unsigned)(ch - 'a' + 10);
            else return -1;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* One line's words into k; 0, 1 when blank, or -1 with err. */
static int parse_line(char *line, struct gpuq_http_key *k, char *why, size_t whylen) {
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *words[4], *save = NULL;
    int n = 0;
    for (char *w = strtok_r(line, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
        if (n == 3) {
            snprintf(why, whylen, "too many words: want DIGEST [read|write] [QUEUE]");
            return -1;
        }
        words[n++] = w;
    }
    if (n == 0) return 1;
    memset(k, 0, sizeof(*k));
    k->scope = GPUQ_HTTP_SCOPE_WRITE;
    if (hex_digest(words[0], k->digest) != 0) {
        snprintf(why, whylen, "want the key's SHA-256 digest in hex (64 characters), not the key; "
                 "printf %%s \"$KEY\" | sha256sum gives it");
        return -1;
    }
    int w = 1;
    if (w < n && (!strcmp(words[w], "read") || !strcmp(words[w], "write")))
        k->scope = words[w++][0] == 'r' ? GPUQ_HTTP_SCOPE_READ : GPUQ_HTTP_SCOPE_WRITE;
    if (w < n) {
        if (strlen(words[w]) >= sizeof(k->queue) || strchr(words[w], '{') || strchr(words[w], '}')) {
            snprintf(why, whylen, "queue '%s': want a queue name of at most 127 bytes, no braces", words[w]);
            return -1;
        }
        snprintf(k->queue, sizeof(k->queue), "%s", words[w++]);
    }
    if (w < n) {
        snprintf(why, whylen, "'%s': want DIGEST [read|write] [QUEUE]", words[w]);
        return -1;
    }
    return 0;
}

int gpuq_http_keys_load(struct gpuq_http_keys *k, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    char line[1024], why[200];
    int lineno = 0, result = 0;
    if (!f) {
        snprintf(err, errlen, "--api-key-file %s: cannot read it", path);
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        struct gpuq_http_key key;
        lineno++;
        int r = parse_line(line, &key, why, sizeof(why));
        if (r == 1) continue;
        if (r < 0) {
            snprintf(err, errlen, "--api-key-file %s:%d: %s", path, lineno, why);
            result = -1;
            break;
        }
        struct gpuq_http_key *grown = realloc(k->keys, (size_t)(k->n + 1) * sizeof(*grown));
        if (!grown) {
            snprintf(err, errlen, "out of memory");
            result = -1;
            break;
        }
        key.line = lineno;
        k->keys = grown;
        k->keys[k->n++] = key;
    }
    fclose(f);
    if (result == 0 && k->n == 0) {
        snprintf(err, errlen, "--api-key-file %s: no key in it", path);
        result = -1;
    }
    return result;
}

void gpuq_http_keys_free(struct gpuq_http_keys *k) {
    free(k->keys);
    k->keys = NULL;
    k->n = 0;
}

struct gpuq_http_key *gpuq_http_keys_find(struct gpuq_http_keys *k, const char *token, size_t len) {
    unsigned char d[32];
    struct gpuq_http_key *found = NULL;
    SHA256((const unsigned char *)token, len, d);
    for (int i = 0; i < k->n; i++)      /* every key compared, whichever matches */
        if (CRYPTO_memcmp(d, k->keys[i].digest, 32) == 0) found = &k->keys[i];
    return found;
}
