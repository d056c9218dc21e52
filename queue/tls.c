/* tls.c -- rediss:// sessions on OpenSSL. */
#include "queue/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gpuq_tls {
    SSL_CTX *ctx;
    int insecure;
};

const char *gpuq_tls_reason(const char *fallback) {
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return why ? why : fallback;
}

/* Whether flag's file can be read; when not, why in err. OpenSSL's own
 * words for a missing file are "system lib". */
static int readable(const char *flag, const char *path, char *err, size_t errlen) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (path && !f) snprintf(err, errlen, "%s %s: %s", flag, path, strerror(errno));
    if (f) fclose(f);
    return !path || f;
}

struct gpuq_tls *gpuq_tls_create(const struct gpuq_tls_opts *o, char *err, size_t errlen) {
    struct gpuq_tls *t = NULL;
    const char *key = o->key_file ? o->key_file : o->cert_file;
    if (!readable("--redis-ca", o->ca_file, err, errlen) ||
        !readable("--redis-cert", o->cert_file, err, errlen) ||
        !readable("--redis-key", o->key_file, err, errlen))
        return NULL;
    ERR_clear_error();
    t = calloc(1, sizeof(*t));
    if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
        snprintf(err, errlen, "TLS: %s", gpuq_tls_reason("out of memory"));
        goto fail;
    }
    t->insecure = o->insecure;
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* a server that closes without close_notify (CLIENT KILL) is an end of
     * stream, as on TCP, not a protocol error */
    SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_verify(t->ctx, o->insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (o->ca_file ? SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1
                   : SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
        snprintf(err, errlen, "%s%s: %s", o->ca_file ? "--redis-ca " : "the system's CA store",
                 o->ca_file ? o->ca_file : "", gpuq_tls_reason("cannot be read"));
        goto fail;
    }
    if (o->key_file && !o->cert_file) {
        snprintf(err, errlen, "--redis-key needs --redis-cert");
        goto fail;
    }
    if (o->cert_file && SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_file) != 1) {
        snprintf(err, errlen, "--redis-cert %s: %s", o->cert_file, gpuq_tls_reason("cannot be read"));
        goto fail;
    }
    if (o->cert_file && (SSL_CTX_use_PrivateKey_file(t->ctx, key, SSL_FILETYPE_PEM) != 1 ||
                         SSL_CTX_check_private_key(t->ctx) != 1)) {
        if (o->key_file)
            snprintf(err, errlen, "--redis-key %s: %s", key, gpuq_tls_reason("not the certificate's key"));
        else
            snprintf(err, errlen, "--redis-cert %s: no private key in it (--redis-key FILE)", key);
        ERR_clear_error();
        goto fail;
    }
    return t;
fail:
    gpuq_tls_destroy(t);
    return NULL;
}

void gpuq_tls_destroy(struct gpuq_tls *t) {
    if (!t) return;
    SSL_CTX_free(t->ctx);
    free(t);
}

/* Why a handshake failed: the certificate check's verdict when it was the
 * cause, else OpenSSL's reason, with a hint where it means plain TCP. */
static void handshake_error(SSL *ssl, int ret, char *err, size_t errlen) {
    long v = SSL_get_verify_result(ssl);
    int e = SSL_get_error(ssl, ret);
    int untrusted = v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                    v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                    v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                    v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                    v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
    if (v != X509_V_OK) {
        snprintf(err, errlen, "TLS: certificate verify failed: %s%s", X509_verify_cert_error_string(v),
                 untrusted ? " (not from a CA trusted here: --redis-ca?)" : "");
        ERR_clear_error();
        return;
    }
    unsigned long code = ERR_peek_last_error();
    int plain = ERR_GET_REASON(code) == SSL_R_WRONG_VERSION_NUMBER ||
                ERR_GET_REASON(code) == SSL_R_PACKET_LENGTH_TOO_LONG;
    if (e == SSL_ERROR_SYSCALL && !code)
        snprintf(err, errlen, "TLS: the server closed the connection in the handshake");
    else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        snprintf(err, errlen, "TLS: no handshake in time (a plain TCP port? redis:// speaks TCP)");
    else
        snprintf(err, errlen, "TLS: %s%s", gpuq_tls_reason("handshake failed"),
                 plain ? " (a plain TCP port? redis:// speaks TCP)" : "");
    ERR_clear_error();
}

struct ssl_st *gpuq_tls_open(struct gpuq_tls *t, int fd, const char *host, char *err,
                             size_t errlen) {
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    ERR_clear_error();
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        snprintf(err, errlen, "TLS: %s", gpuq_tls_reason("out of memory"));
        goto fail;
    }
    /* SNI is for names only (RFC 6066); an address is matched as one */
    if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) {
        snprintf(err, errlen, "TLS: host name %s: %s", host, gpuq_tls_reason("refused"));
        goto fail;
    }
    if (!t->insecure && (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
                               : SSL_set1_host(ssl, host)) != 1) {
        snprintf(err, errlen, "TLS: cannot check the certificate for %s", host);
        goto fail;
    }
    int ret = SSL_connect(ssl);
    if (ret != 1) {
        handshake_error(ssl, ret, err, errlen);
        goto fail;
    }
    return ssl;
fail:
    SSL_free(ssl);
    return NULL;
}
