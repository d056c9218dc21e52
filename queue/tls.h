/* tls.h -- the TLS of rediss:// on OpenSSL: one context per process (what
 * to trust, which client certificate to show), and a verified session over
 * a socket already connected. Knows nothing of Redis. */
#ifndef GPUQ_TLS_H
#define GPUQ_TLS_H

#include <stddef.h>

struct gpuq_tls_opts {
    const char *ca_file;    /* PEM CAs to trust instead of the system's; NULL: the system store */
    const char *cert_file;  /* PEM client certificate (chain) for mutual TLS, or NULL */
    const char *key_file;   /* its private key; NULL: in cert_file */
    int insecure;           /* no certificate or name check at all */
};

/* The SSL_CTX, opaque. */
struct gpuq_tls;

/* Loads the trust store and the client certificate. Returns the context,
 * or NULL with a one-line reason in err (naming the file at fault). The
 * caller frees it with gpuq_tls_destroy (NULL is fine). */
struct gpuq_tls *gpuq_tls_create(const struct gpuq_tls_opts *o, char *err, size_t errlen);
void gpuq_tls_destroy(struct gpuq_tls *t);

/* Runs the handshake over the blocking socket fd for host: SNI when host
 * is a name, and the certificate checked against the trust store and host
 * (its DNS names, or its IP addresses when host is one) unless insecure.
 * The socket's timeouts bound it. Returns the session (an SSL *, which the
 * caller frees with SSL_free and which does not own fd), or NULL with a
 * one-line reason in err. */
struct ssl_st *gpuq_tls_open(struct gpuq_tls *t, int fd, const char *host, char *err,
                             size_t errlen);

/* Why the last failed OpenSSL call of this thread failed, as a short
 * phrase ("tlsv13 alert certificate required"); fallback when none is
 * queued. Clears the thread's error queue. */
const char *gpuq_tls_reason(const char *fallback);

#endif
