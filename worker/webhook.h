/* webhook.h -- delivering results to callback URLs (Standard Webhooks).
 *
 * Deliveries come from the P:{Q}:webhooks streams, where each was recorded
 * with its result. This module POSTs through libcurl's multi interface,
 * never blocking the caller, and retries with exponential backoff and
 * jitter, honouring Retry-After. Only a transfer in flight holds its body:
 * a delivery waiting for its retry, for a transfer slot or for room under
 * its host's cap holds its entry id and URL, and the caller reads the entry
 * again (gpuq_stream_load_hooks) when it is due. A finished delivery (2xx;
 * --max-attempts tries used up; an address the rules refuse; an entry with
 * nothing deliverable) comes back from gpuq_webhooks_pump for the caller to
 * record in Redis: delivered, or a dead letter. Nothing is dropped. */
#ifndef GPUQ_WEBHOOK_H
#define GPUQ_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "queue/stream.h"

/* Deliveries held at once (waiting ones included), and transfers in flight. */
#define GPUQ_WEBHOOKS_MAX_HELD 2048
#define GPUQ_WEBHOOKS_MAX_TRANSFERS 512

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

struct gpuq_webhook_opts {
    const char *secret;         /* "whsec_<base64>", or NULL: nothing is signed */
    int max_attempts;
    int64_t backoff_ms, timeout_ms;
    int per_host;               /* transfers to one scheme://host:port at once */
    char **allow;               /* CIDRs opened to webhooks */
    int n_allow;
};

/* Returns NULL with err when the secret or an allowed CIDR does not parse,
 * or libcurl cannot start. */
struct gpuq_webhooks *gpuq_webhooks_create(const struct gpuq_webhook_opts *o, char *err,
                                           size_t errlen);
void gpuq_webhooks_destroy(struct gpuq_webhooks *wh);

/* New deliveries that may be taken now: held places and transfer slots
 * are both free. */
int gpuq_webhooks_room(const struct gpuq_webhooks *wh);
/* Deliveries held (waiting, loading, in flight or finished). */
int gpuq_webhooks_held(const struct gpuq_webhooks *wh);
/* Counts transfers that ended and deliveries let go: when it moved, there
 * is room again, and new deliveries are worth reading. */
uint64_t gpuq_webhooks_freed(const struct gpuq_webhooks *wh);
/* How long the caller may block without delaying a delivery: 0 when work
 * is under way or due, else ms until the next retry is due (at most
 * max_ms), or max_ms when nothing waits. */
int gpuq_webhooks_idle_ms(const struct gpuq_webhooks *wh, int64_t now_us, int max_ms);

/* The entry ids held on queue q (at most max), borrowed until the next call
 * that changes the set; with loading set, only those to read again. */
int gpuq_webhooks_ids(const struct gpuq_webhooks *wh, int q, int loading, const char **ids, int max);

/* Takes a new delivery entry (fields id, url, format, result, job). It
 * starts at once when there is room, else waits without its body. An entry
 * with nothing deliverable finishes at once, to be dead-lettered. Returns 0,
 * or -1 when there was no room to hold it (the caller reads no more than
 * gpuq_webhooks_room). */
int gpuq_webhooks_add(struct gpuq_webhooks *wh, const struct gpuq_entry *e, int64_t now_us);
/* Whether the delivery of entry id on queue q is held. */
int gpuq_webhooks_holds(const struct gpuq_webhooks *wh, int q, struct gpuq_str id);

/* Deliveries due whose entries are to be read again; returns their count.
 * Their ids come from gpuq_webhooks_ids with loading set; each entry read
 * again goes to gpuq_webhooks_attach with the id pointer it was asked by.
 * Those not given back before gpuq_webhooks_loaded are no longer pending
 * here (another worker took them over) and are let go. */
int gpuq_webhooks_due(struct gpuq_webhooks *wh, int64_t now_us);
void gpuq_webhooks_attach(struct gpuq_webhooks *wh, const char *id, const struct gpuq_entry *e,
                          int64_t now_us);
void gpuq_webhooks_loaded(struct gpuq_webhooks *wh);

/* Moves transfers along. Fills out with up to max finished deliveries and
 * returns their count. */
int gpuq_webhooks_pump(struct gpuq_webhooks *wh, int64_t now_us, struct gpuq_delivery **out,
                       int max);

/* Lets a finished delivery go (after the caller recorded it). */
void gpuq_webhooks_forget(struct gpuq_webhooks *wh, struct gpuq_delivery *d);

/* Drops every delivery (after Redis was lost: they stay pending there). */
void gpuq_webhooks_forget_all(struct gpuq_webhooks *wh);

/* Waits up to timeout_ms for transfer activity. Returns 0 at once when no
 * transfer is in flight, so the caller sleeps its own way. */
int gpuq_webhooks_wait(struct gpuq_webhooks *wh, int timeout_ms);

#endif
