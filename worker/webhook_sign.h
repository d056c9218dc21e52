/* webhook_sign.h -- a webhook request's computed parts: the signature, safe
 * header values, the traceparent passed on (worker/webhook_sign.c). */
#ifndef GPUQ_WEBHOOK_SIGN_H
#define GPUQ_WEBHOOK_SIGN_H

#include <msgpack.h>
#include <stddef.h>

/* Standard Webhooks signature "v1,<base64 HMAC-SHA256 of id.ts.body>" into
 * out. Returns 0, or -1 when out of memory. */
int gpuq_webhook_sign(const unsigned char *key, size_t key_len, const char *id, long long ts,
                      const char *body, size_t body_len, char *out, size_t cap);

/* A header value from job-controlled bytes: bytes outside visible ASCII,
 * and '%', percent-encoded. Returns a malloc'd string, or NULL. */
char *gpuq_webhook_header_value(const char *s, size_t n);

/* Whether s is a W3C traceparent this worker passes on (version 00 form:
 * lowercase hex, non-zero ids; a later version's first four fields). */
int gpuq_webhook_traceparent_ok(const char *s, size_t n);

/* The result's meta.traceparent, when it is one to pass on, into out[56]
 * (empty when there is none). */
void gpuq_webhook_traceparent_of(const msgpack_object *res, char *out);

#endif
