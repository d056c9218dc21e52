/* url.h -- parser for redis://[[user]:password@]host[:port][/db], the same
 * with rediss:// (TLS), and unix:///path[?db=N]. No I/O. */
#ifndef GPUQ_URL_H
#define GPUQ_URL_H

#include <stddef.h>

struct gpuq_redis_url {
    char host[256];         /* empty for a unix socket */
    int port;
    char path[256];         /* unix socket path */
    char user[128];
    char password[256];     /* empty: no AUTH */
    int db;
    int tls;                /* rediss://: TLS, verified against host */
};

/* Returns 0, or -1 with a reason in err. */
int gpuq_redis_url_parse(struct gpuq_redis_url *u, const char *s, char *err, size_t errlen);

/* Where u points, for messages: "host:port" ("[::1]:6379") or the socket's
 * path; never the password. Returns buf. */
const char *gpuq_redis_url_where(const struct gpuq_redis_url *u, char *buf, size_t len);

#endif
