/* url.c -- Redis URL parsing. */
#include "queue/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int copy(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap) return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int parse_int(const char *s, size_t n, int lo, int hi, int *out) {
    char buf[16], *end;
    if (n == 0 || copy(buf, sizeof(buf), s, n) != 0) return -1;
    long v = strtol(buf, &end, 10);
    if (*end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int gpuq_redis_url_parse(struct gpuq_redis_url *u, const char *s, char *err, size_t errlen) {
    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (strncmp(s, "unix://", 7) == 0) {
        const char *p = s + 7, *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || p[0] != '/' || copy(u->path, sizeof(u->path), p, n) != 0) goto bad;
        if (q && (strncmp(q, "?db=", 4) != 0 || parse_int(q + 4, strlen(q + 4), 0, 1 << 20, &u->db)))
            goto bad;
        return 0;
    }
    if (strncmp(s, "rediss://", 9) == 0) u->tls = 1;
    else if (strncmp(s, "redis://", 8) != 0) goto bad;
    const char *p = s + 8 + u->tls, *at = strrchr(p, '@'), *slash;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) goto bad;   /* redis://user@host: a user needs a password */
        if (copy(u->user, sizeof(u->user), p, (size_t)(colon - p)) != 0 ||
            copy(u->password, sizeof(u->password), colon + 1, (size_t)(at - colon - 1)) != 0)
            goto bad;
        p = at + 1;
    }
    slash = strchr(p, '/');
    size_t hostport = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hostport);
    size_t hostlen = colon ? (size_t)(colon - p) : hostport;
    if (hostlen == 0 || copy(u->host, sizeof(u->host), p, hostlen) != 0) goto bad;
    if (colon && parse_int(colon + 1, hostport - hostlen - 1, 1, 65535, &u->port) != 0) goto bad;
    if (slash && slash[1] && parse_int(slash + 1, strlen(slash + 1), 0, 1 << 20, &u->db) != 0)
        goto bad;
    return 0;
bad:
    /* the URL may hold a password: never echo it */
    snprintf(err, errlen, "bad Redis URL (want redis://[:password@]host:port[/db], the same "
             "with rediss:// for TLS, or unix:///path)");
    return -1;
}

const char *gpuq_redis_url_where(const struct gpuq_redis_url *u, char *buf, size_t len) {
    if (u->path[0]) snprintf(buf, len, "%s", u->path);
    else if (strchr(u->host, ':')) snprintf(buf, len, "[%s]:%d", u->host, u->port);
    else snprintf(buf, len, "%s:%d", u->host, u->port);
    return buf;
}
