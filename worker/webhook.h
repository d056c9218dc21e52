/* webhook.h -- delivering results to callback URLs (Standard Webhooks).
 *
 * Deliveries come from the P:{Q}:webhooks streams, where each was recorded
 * with its result. This module copies what it needs, so the Redis reply can
 * go at once. It POSTs through libcurl's multi interface, never blocking the
 * caller, and retries with exponential backoff and jitter, honouring
 * Retry-After. A finished delivery (2xx, or --max-attempts tries used up)
 * comes back from gpuq_webhooks_pump for the caller to record in Redis. */
#ifndef GPUQ_WEBHOOK_H
#define GPUQ_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "queue/stream.h"

struct gpuq_webhooks;

/* What became of one delivery; owned by the module until forgotten. */
struct gpuq_delivery {
    int queue;
    char entry_id[64];          /* of the webhooks stream entry */
    int delivered;              /* 2xx */
    int attempts;
    long status;                /* last HTTP status, 0 if none */
    char error[160];            /* why the last attempt failed */
    struct gpuq_str url, job;   /* for a dead letter */
};

/* secret: "whsec_<base64>" or NULL (then nothing is signed). Returns NULL
 * with err when the secret does not decode or libcurl cannot start. */
struct gpuq_webhooks *gpuq_webhooks_create(const char *secret, int max_attempts,
                                           int64_t backoff_ms, int64_t timeout_ms, char *err,
                                           size_t errlen);
void gpuq_webhooks_destroy(struct gpuq_webhooks *wh);

/* Deliveries that may still be taken. */
int gpuq_webhooks_room(const struct gpuq_webhooks *wh);
/* Deliveries held (waiting, in flight or finished). */
int gpuq_webhooks_held(const struct gpuq_webhooks *wh);

/* Whether the delivery of entry id on queue q is held; and the ids held on
 * q (at most max), borrowed until the next call that changes the set. */
int gpuq_webhooks_holds(const struct gpuq_webhooks *wh, int q, struct gpuq_str id);
int gpuq_webhooks_ids(const struct gpuq_webhooks *wh, int q, const char **ids, int max);

/* Takes a delivery entry (fields id, url, format, result, job); copies it.
 * Returns 0, or -1 when it is malformed (the caller drops it) or no room. */
int gpuq_webhooks_add(struct gpuq_webhooks *wh, const struct gpuq_entry *e);

/* Starts attempts that are due and moves transfers along. Fills out with up
 * to max finished deliveries and returns their count. */
int gpuq_webhooks_pump(struct gpuq_webhooks *wh, int64_t now_us, struct gpuq_delivery **out,
                       int max);

/* Lets a finished delivery go (after the caller recorded it). */
void gpuq_webhooks_forget(struct gpuq_webhooks *wh, struct gpuq_delivery *d);

/* Drops every delivery (after Redis was lost: they stay pending there). */
void gpuq_webhooks_forget_all(struct gpuq_webhooks *wh);

/* Waits up to timeout_ms for transfer activity. Returns 0 at once when no
 * transfer is in flight, so the caller sleeps its own way. */
int gpuq_webhooks_wait(struct gpuq_webhooks *wh, int timeout_ms);

/* Standard Webhooks signature "v1,<base64 HMAC-SHA256 of id.ts.body>" into
 * out. Returns 0, or -1 when out of memory. */
int gpuq_webhook_sign(const unsigned char *key, size_t key_len, const char *id, long long ts,
                      const char *body, size_t body_len, char *out, size_t cap);

#endif
