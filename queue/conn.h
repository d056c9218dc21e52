/* conn.h -- one blocking connection to a Redis, plain or TLS, with the few
 * operations gpuq needs: run a command, or pipeline (append, flush, read
 * replies in order). Commands given as argv are written as RESP here
 * (gpuq_resp_format: in place, where hiredis would format them apart and
 * copy them); hiredis formats the printf-style ones and parses the replies
 * either way. hiredis 0.14 cannot do TLS I/O, so over rediss:// the bytes
 * go through an OpenSSL session on hiredis's socket and into a redisReader
 * of our own. Over TCP or a unix socket the hiredis context does the I/O. */
#ifndef GPUQ_CONN_H
#define GPUQ_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "queue/tls.h"
#include "queue/url.h"

struct gpuq_conn {
    int err;                /* 0, or a REDIS_ERR_* code: the connection is then useless */
    char errstr[192];
    redisContext *rc;       /* the socket (connect, timeouts, keepalive, close) */
    struct ssl_st *ssl;     /* TLS: the session over rc's socket; NULL over TCP */
    redisReader *reader;    /* TLS: replies parsed from what ssl decrypts */
    char *obuf;             /* TLS: commands formatted, not yet written */
    size_t olen, ocap;
    char *cmd;              /* the command gpuq_conn_append formats, kept for the next */
    size_t cmd_cap;
    int answered;           /* a reply came: the server speaks our protocol */
};

/* Connects to u (TLS through tls when u->tls; tls may be NULL otherwise),
 * timeout_ms bounding the connect and the handshake. No command is sent.
 * Returns the connection, or NULL with a one-line reason in err. The
 * caller frees it with gpuq_conn_free (NULL is fine). */
struct gpuq_conn *gpuq_conn_open(const struct gpuq_redis_url *u, struct gpuq_tls *tls,
                                 int timeout_ms, char *err, size_t errlen);
void gpuq_conn_free(struct gpuq_conn *c);

/* Read and write timeout from now on (0: none), and TCP keepalive. 0 or -1. */
int gpuq_conn_set_timeout(struct gpuq_conn *c, int timeout_ms);
int gpuq_conn_keepalive(struct gpuq_conn *c);

/* Queues a command to be written by the next flush or reply: argv (lens
 * NULL: strlen), a command already in RESP (redisFormatCommand*), or a
 * hiredis format ("XLEN %s", "%b" for binary). 0, or -1 with err. */
int gpuq_conn_append(struct gpuq_conn *c, int argc, const char **argv, const size_t *lens);
int gpuq_conn_append_formatted(struct gpuq_conn *c, const char *cmd, size_t len);
int gpuq_conn_appendf(struct gpuq_conn *c, const char *format, ...);

/* Writes a command as RESP (the array of bulk strings hiredis's
 * redisFormatCommandArgv makes; lens NULL: strlen) at the end of *buf,
 * *len bytes used of *cap, grown as needed. 0, or -1 when out of memory. */
int gpuq_resp_format(char **buf, size_t *len, size_t *cap, int argc, const char **argv, const size_t *lens);

/* Writes every queued command, blocking. 0, or -1 with err. */
int gpuq_conn_flush(struct gpuq_conn *c);

/* The next reply, in the order the commands were queued: writes what is
 * queued first, then blocks (up to the timeout) until it came. 0 with *r
 * (the caller frees it with freeReplyObject; an error reply is a reply),
 * or -1 with err and *r NULL. */
int gpuq_conn_reply(struct gpuq_conn *c, redisReply **r);

/* append and reply at once: the reply, or NULL with err. */
redisReply *gpuq_conn_command_argv(struct gpuq_conn *c, int argc, const char **argv,
                                   const size_t *lens);
redisReply *gpuq_conn_command(struct gpuq_conn *c, const char *format, ...);

#endif
