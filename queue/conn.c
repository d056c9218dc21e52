/* conn.c -- a Redis connection over TCP (hiredis alone) or TLS (OpenSSL
 * for the bytes, hiredis for the protocol). */
#include "queue/conn.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The one place err and errstr are set (hiredis's __redisSetError). */
static void set_error(struct gpuq_conn *c, int type, const char *str) {
    c->err = type;
    snprintf(c->errstr, sizeof(c->errstr), "%s", str && *str ? str : "unknown error");
}

/* Over TCP: takes the context's error. A plain connection dropped before
 * its first reply is often one to a TLS-only port: said so. */
static void take_error(struct gpuq_conn *c) {
    int tcp = c->rc->connection_type == REDIS_CONN_TCP;
    set_error(c, c->rc->err ? c->rc->err : REDIS_ERR_IO, c->rc->err ? c->rc->errstr : "I/O error");
    if (tcp && !c->answered && (c->err == REDIS_ERR_EOF || strstr(c->errstr, strerror(ECONNRESET))))
        snprintf(c->errstr + strlen(c->errstr), sizeof(c->errstr) - strlen(c->errstr),
                 " (a TLS port? rediss:// speaks TLS)");
}

/* After a failed SSL_read or SSL_write: why, in hiredis's words where
 * hiredis has some, so that callers and logs read the same either way.
 * Under TLS 1.3 a server that wants a client certificate says so after the
 * handshake, and its alert is often lost to the reset: a TLS connection
 * dropped before its first reply says that may be why. */
static void ssl_error(struct gpuq_conn *c, int ret) {
    int e = SSL_get_error(c->ssl, ret), saved = errno;
    char buf[128];
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ret == 0 && !ERR_peek_error())) {
        set_error(c, REDIS_ERR_EOF, "Server closed the connection");
    } else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
               (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK))) {
        set_error(c, REDIS_ERR_IO, "Resource temporarily unavailable");   /* the timeout */
    } else if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
        set_error(c, REDIS_ERR_IO, strerror(saved));
    } else {
        int r = ERR_GET_REASON(ERR_peek_last_error());
        int refused = r == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED || r == SSL_R_TLSV1_ALERT_UNKNOWN_CA ||
                      r == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE || r == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN;
        snprintf(buf, sizeof(buf), "TLS: %s%s", gpuq_tls_reason("I/O error"),
                 refused ? " (Redis wants a client certificate it trusts: --redis-cert)" : "");
        set_error(c, REDIS_ERR_IO, buf);
        return;
    }
    if (!c->answered && (c->err == REDIS_ERR_EOF ||
                         (e == SSL_ERROR_SYSCALL && (saved == ECONNRESET || saved == EPIPE))))
        snprintf(c->errstr + strlen(c->errstr), sizeof(c->errstr) - strlen(c->errstr),
                 " (refused after the handshake: no client certificate it trusts? --redis-cert)");
    ERR_clear_error();
}

struct gpuq_conn *gpuq_conn_open(const struct gpuq_redis_url *u, struct gpuq_tls *tls,
                                 int timeout_ms, char *err, size_t errlen) {
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000}, was[2];
    socklen_t len = sizeof(was[0]);
    struct gpuq_conn *c = calloc(1, sizeof(*c));
    assert(!u->tls || tls);     /* rediss:// is set up by the caller */
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->rc = u->path[0] ? redisConnectUnixWithTimeout(u->path, tv)
                       : redisConnectWithTimeout(u->host, u->port, tv);
    if (!c->rc || c->rc->err) {
        snprintf(err, errlen, "%s", c->rc ? c->rc->errstr : "out of memory");
        goto fail;
    }
    if (!u->tls) return c;
    /* the handshake has the connect's time; the socket's own timeouts after */
    if (getsockopt(c->rc->fd, SOL_SOCKET, SO_RCVTIMEO, &was[0], &len) != 0 ||
        getsockopt(c->rc->fd, SOL_SOCKET, SO_SNDTIMEO, &was[1], &len) != 0 ||
        setsockopt(c->rc->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(c->rc->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
        snprintf(err, errlen, "setsockopt: %s", strerror(errno));
        goto fail;
    }
    if (!(c->ssl = gpuq_tls_open(tls, c->rc->fd, u->host, err, errlen))) goto fail;
    if (setsockopt(c->rc->fd, SOL_SOCKET, SO_RCVTIMEO, &was[0], sizeof(was[0])) != 0 ||
        setsockopt(c->rc->fd, SOL_SOCKET, SO_SNDTIMEO, &was[1], sizeof(was[1])) != 0) {
        snprintf(err, errlen, "setsockopt: %s", strerror(errno));
        goto fail;
    }
    if (!(c->reader = redisReaderCreate())) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return c;
fail:
    gpuq_conn_free(c);
    return NULL;
}

void gpuq_conn_free(struct gpuq_conn *c) {
    if (!c) return;
    /* no close_notify: closing the socket is goodbye enough for Redis, as
     * over TCP, and writing it to a peer already gone would raise SIGPIPE */
    SSL_free(c->ssl);
    if (c->reader) redisReaderFree(c->reader);
    if (c->rc) redisFree(c->rc);
    free(c->obuf);
    free(c->cmd);
    free(c);
}

int gpuq_conn_set_timeout(struct gpuq_conn *c, int timeout_ms) {
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (redisSetTimeout(c->rc, tv) == REDIS_OK) return 0;
    take_error(c);
    return -1;
}

int gpuq_conn_keepalive(struct gpuq_conn *c) {
    if (redisEnableKeepAlive(c->rc) == REDIS_OK) return 0;
    take_error(c);
    return -1;
}

/* TLS: adds len bytes to the output buffer. */
static int put(struct gpuq_conn *c, const char *cmd, size_t len) {
    if (c->olen + len > c->ocap) {
        size_t cap = c->ocap ? c->ocap : 16384;
        while (cap < c->olen + len) cap *= 2;
        char *b = realloc(c->obuf, cap);
        if (!b) {
            set_error(c, REDIS_ERR_OOM, "Out of memory");
            return -1;
        }
        c->obuf = b;
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, cmd, len);
    c->olen += len;
    return 0;
}

/* v's decimal digits at p; how many. */
static size_t put_decimal(char *p, size_t v) {
    char d[24];
    size_t n = 0;
    do d[n++] = (char)('0' + v % 10);
    while (v /= 10);
    for (size_t i = 0; i < n; i++) p[i] = d[n - 1 - i];
    return n;
}

int gpuq_resp_format(char **buf, size_t *len, size_t *cap, int argc, const char **argv, const size_t *lens) {
    size_t need = 1 + 24 + 2;
    for (int i = 0; i < argc; i++) need += 1 + 24 + 2 + (lens ? lens[i] : strlen(argv[i])) + 2;
    if (*len + need > *cap) {
        size_t n = *cap ? *cap : 16384;
        while (n < *len + need) n *= 2;
        char *b = realloc(*buf, n);
        if (!b) return -1;
        *buf = b;
        *cap = n;
    }
    char *p = *buf + *len;
    *p++ = '*';
    p += put_decimal(p, (size_t)argc);
    *p++ = '\r', *p++ = '\n';
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        *p++ = '$';
        p += put_decimal(p, n);
        *p++ = '\r', *p++ = '\n';
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r', *p++ = '\n';
    }
    *len = (size_t)(p - *buf);
    return 0;
}

/* The most room kept for formatting the next command. */
#define CMD_KEEP ((size_t)1 << 20)

int gpuq_conn_append(struct gpuq_conn *c, int argc, const char **argv, const size_t *lens) {
    size_t len = 0;
    if (gpuq_resp_format(&c->cmd, &len, &c->cmd_cap, argc, argv, lens) != 0) {
        set_error(c, REDIS_ERR_OOM, "Out of memory");
        return -1;
    }
    int rc = gpuq_conn_append_formatted(c, c->cmd, len);
    if (c->cmd_cap > CMD_KEEP) {    /* an outsized command's room is given back */
        free(c->cmd);
        c->cmd = NULL;
        c->cmd_cap = 0;
    }
    return rc;
}

int gpuq_conn_append_formatted(struct gpuq_conn *c, const char *cmd, size_t len) {
    if (c->ssl) return put(c, cmd, len);
    if (redisAppendFormattedCommand(c->rc, cmd, len) == REDIS_OK) return 0;
    take_error(c);
    return -1;
}

static int vappendf(struct gpuq_conn *c, const char *format, va_list ap) {
    if (!c->ssl) {
        if (redisvAppendCommand(c->rc, format, ap) == REDIS_OK) return 0;
        take_error(c);
        return -1;
    }
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, format, ap);
    if (len < 0) {
        set_error(c, REDIS_ERR_OTHER, len == -2 ? "Invalid format string" : "Out of memory");
        return -1;
    }
    int result = put(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return result;
}

int gpuq_conn_appendf(struct gpuq_conn *c, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    int result = vappendf(c, format, ap);
    va_end(ap);
    return result;
}

int gpuq_conn_flush(struct gpuq_conn *c) {
    if (c->err) return -1;
    if (!c->ssl) {
        int done = 0;
        while (!done)
            if (redisBufferWrite(c->rc, &done) != REDIS_OK) {
                take_error(c);
                return -1;
            }
        return 0;
    }
    size_t off = 0;
    ERR_clear_error();
    while (off < c->olen) {
        size_t n = c->olen - off;
        int w = SSL_write(c->ssl, c->obuf + off, n > INT_MAX ? INT_MAX : (int)n);
        if (w <= 0) {
            ssl_error(c, w);
            return -1;
        }
        off += (size_t)w;
    }
    c->olen = 0;
    if (c->ocap > ((size_t)16 << 20)) {     /* an outsized pipeline's */
        free(c->obuf);
        c->obuf = NULL;
        c->ocap = 0;
    }
    return 0;
}

/* TLS: the next reply, reading as much as it takes. */
static int tls_reply(struct gpuq_conn *c, void **r) {
    char buf[16384];
    if (redisReaderGetReply(c->reader, r) != REDIS_OK) goto protocol;
    if (*r) return 0;
    if (gpuq_conn_flush(c) != 0) return -1;
    while (!*r) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, sizeof(buf));
        if (n <= 0) {
            ssl_error(c, n);
            return -1;
        }
        if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK ||
            redisReaderGetReply(c->reader, r) != REDIS_OK)
            goto protocol;
    }
    return 0;
protocol:
    set_error(c, c->reader->err ? c->reader->err : REDIS_ERR_PROTOCOL, c->reader->errstr);
    return -1;
}

int gpuq_conn_reply(struct gpuq_conn *c, redisReply **r) {
    void *reply = NULL;
    *r = NULL;
    if (c->err) return -1;
    if (c->ssl ? tls_reply(c, &reply) != 0 : redisGetReply(c->rc, &reply) != REDIS_OK) {
        if (!c->ssl) take_error(c);
        return -1;
    }
    c->answered = 1;
    *r = reply;
    return 0;
}

redisReply *gpuq_conn_command_argv(struct gpuq_conn *c, int argc, const char **argv,
                                   const size_t *lens) {
    redisReply *r = NULL;
    if (gpuq_conn_append(c, argc, argv, lens) != 0 || gpuq_conn_reply(c, &r) != 0) return NULL;
    return r;
}

redisReply *gpuq_conn_command(struct gpuq_conn *c, const char *format, ...) {
    redisReply *r = NULL;
    va_list ap;
    va_start(ap, format);
    int queued = vappendf(c, format, ap);
    va_end(ap);
    if (queued != 0 || gpuq_conn_reply(c, &r) != 0) return NULL;
    return r;
}
