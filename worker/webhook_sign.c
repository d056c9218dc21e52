/* webhook_sign.c -- what a webhook request carries that is computed, not
 * delivered: the Standard Webhooks signature, header values made safe from
 * job-controlled bytes, and the traceparent passed on. No I/O. */
#include "worker/webhook_sign.h"

#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/json.h"

int gpuq_webhook_sign(const unsigned char *key, size_t key_len, const char *id, long long ts,
                      const char *body, size_t body_len, char *out, size_t cap) {
    char stamp[32];
    int n = snprintf(stamp, sizeof(stamp), ".%lld.", ts);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0), OSSL_PARAM_END};
    int ok = ctx && EVP_MAC_init(ctx, key, key_len, params) &&
             EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) &&
             EVP_MAC_update(ctx, (const unsigned char *)stamp, (size_t)n) &&
             EVP_MAC_update(ctx, (const unsigned char *)body, body_len) &&
             EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    char *b64 = ok ? gpuq_base64(mac, mac_len) : NULL;
    if (!b64) return -1;
    snprintf(out, cap, "v1,%s", b64);
    free(b64);
    return 0;
}

char *gpuq_webhook_header_value(const char *s, size_t n) {
    char *out = malloc(3 * n + 1), *p = out;
    for (size_t i = 0; out && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && c != '%') *p++ = (char)c;
        else p += sprintf(p, "%%%02X", c);
    }
    if (p) *p = '\0';
    return out;
}

static int hex_run(const char *s, size_t n) {
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return -1;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

int gpuq_webhook_traceparent_ok(const char *s, size_t n) {
    if (n < 55 || (n > 55 && (s[55] != '-' || memcmp(s, "00", 2) == 0))) return 0;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-' || memcmp(s, "ff", 2) == 0) return 0;
    return hex_run(s, 2) >= 0 && hex_run(s + 3, 32) == 1 && hex_run(s + 36, 16) == 1 &&
           hex_run(s + 53, 2) >= 0;
}

void gpuq_webhook_traceparent_of(const msgpack_object *res, char *out) {
    out[0] = '\0';
    for (int depth = 0; depth < 2 && res && res->type == MSGPACK_OBJECT_MAP; depth++) {
        const char *want = depth == 0 ? "meta" : "traceparent";
        const msgpack_object *next = NULL;
        for (uint32_t i = 0; i < res->via.map.size; i++) {
            const msgpack_object *k = &res->via.map.ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(want) &&
                memcmp(k->via.str.ptr, want, k->via.str.size) == 0)
                next = &res->via.map.ptr[i].val;
        }
        if (depth == 1 && next && next->type == MSGPACK_OBJECT_STR &&
            gpuq_webhook_traceparent_ok(next->via.str.ptr, next->via.str.size))
            snprintf(out, 56, "%.55s", next->via.str.ptr);
        res = next;
    }
}
