/* keys.h -- bearer API keys: a file of SHA-256 digests (hex), one key a
 * line, each with an optional scope (read: GET only; write: everything, the
 * default) and an optional queue its jobs go to. Blank lines and # comments
 * are skipped. The file never holds a key itself:
 *
 *     # printf %s "$KEY" | sha256sum
 *     5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8 write
 *     9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 read
 *     ...                                                              write tenant-a
 */
#ifndef GPUQ_HTTP_KEYS_H
#define GPUQ_HTTP_KEYS_H

#include <stddef.h>

enum gpuq_http_scope { GPUQ_HTTP_SCOPE_READ = 1, GPUQ_HTTP_SCOPE_WRITE = 2 };

struct gpuq_http_key {
    unsigned char digest[32];
    enum gpuq_http_scope scope;
    char queue[128];            /* "" : the route's or --queue's */
    int line;                   /* in the file, for the log */
    int in_flight;              /* requests under way with it (atomic) */
};

struct gpuq_http_keys {
    struct gpuq_http_key *keys;
    int n;
    struct gpuq_http_key anonymous; /* no keys configured: every request's */
};

/* Reads path. 0, or -1 with "FILE:LINE: reason" in err. */
int gpuq_http_keys_load(struct gpuq_http_keys *k, const char *path, char *err, size_t errlen);
void gpuq_http_keys_free(struct gpuq_http_keys *k);

/* The key whose digest is SHA-256(token), compared in constant time; NULL
 * when none matches. */
struct gpuq_http_key *gpuq_http_keys_find(struct gpuq_http_keys *k, const char *token, size_t len);

#endif
