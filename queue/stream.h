/* stream.h -- one worker's connection to Redis: reads jobs from the queues'
 * streams through the consumer group, writes results, dead letters and acks
 * in one MULTI/EXEC.
 *
 * Keys, for prefix P and queue Q: P:{Q}:jobs (stream), P:{Q}:result:<id>,
 * P:{Q}:dead (stream). Errors set err and errstr (hiredis style); a lost
 * connection leaves rc NULL until gpuq_stream_connect succeeds again. */
#ifndef GPUQ_STREAM_H
#define GPUQ_STREAM_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "queue/job.h"
#include "queue/url.h"

#define GPUQ_GROUP "workers"
#define GPUQ_HOOK_GROUP "senders"

/* The streams a worker consumes: jobs, and webhook deliveries. */
enum gpuq_stream_kind { GPUQ_STREAM_JOBS, GPUQ_STREAM_HOOKS };

struct gpuq_stream {
    redisContext *rc;
    struct gpuq_redis_url url;
    char prefix[64];
    int n_queues;
    char **queues;          /* names, served in this order */
    char **jobs_keys;       /* P:{Q}:jobs */
    char **dead_keys;       /* P:{Q}:dead */
    char **hook_keys;       /* P:{Q}:webhooks: deliveries owed, group senders */
    char consumer[128];
    int err;                /* 0, or a REDIS_ERR_* code */
    char errstr[128];
    int queued;             /* commands in the open MULTI */
    int failed;             /* an append failed: the MULTI must not be committed */
    int sent;               /* replies owed by a sent transaction */
    struct { const char *key; size_t len; int64_t ttl; } expiring[8];  /* EXPIREs in this MULTI */
    int n_expiring;
};

/* One stream entry, borrowed from the reply it came in. */
struct gpuq_entry {
    int queue;
    struct gpuq_str id;
    struct gpuq_str payload;    /* the job bytes; ptr NULL when the entry had none */
    int is_json;                /* payload came from field json, not job */
    int deleted;                /* a pending entry whose fields were deleted */
    int64_t deliveries;         /* times delivered, this one included */
    const redisReply *fields;   /* all the entry's fields, name then value */
    int64_t enqueued_ms;        /* from the entry id */
};

/* Copies names and builds the keys; no I/O. Returns 0, -1 when out of memory. */
int gpuq_stream_init(struct gpuq_stream *s, const struct gpuq_redis_url *url, const char *prefix,
                     char *const *queues, int n_queues, const char *consumer);
void gpuq_stream_free(struct gpuq_stream *s);

/* (Re)connects, authenticates, selects the db, creates missing consumer
 * groups (at id 0, MKSTREAM). Returns 0 or -1 with errstr. */
int gpuq_stream_connect(struct gpuq_stream *s, int timeout_ms);

/* XREADGROUP from queues [first, first+n): from ">" reads new entries; from
 * an id reads this consumer's own pending entries after that id ("0": all).
 * block_ms < 0 does not block. Fills up to cap entries, borrowed from
 * *reply, which the caller frees with freeReplyObject once done with them
 * (NULL when none were read). Returns the count, or -1 with errstr. */
int gpuq_stream_read(struct gpuq_stream *s, int first, int n, int count, int block_ms,
                     const char *from, struct gpuq_entry *out, int cap, redisReply **reply);

/* A read of new entries from queue q sent behind a sent transaction, so
 * Redis answers it while the caller computes; gpuq_stream_prefetched takes
 * its reply, right after gpuq_stream_wait and before any other command. */
int gpuq_stream_prefetch(struct gpuq_stream *s, int q, int count);
int gpuq_stream_prefetched(struct gpuq_stream *s, struct gpuq_entry *out, int cap,
                           redisReply **reply);

/* The same from the webhook delivery streams (group senders). */
int gpuq_stream_read_hooks(struct gpuq_stream *s, int count, struct gpuq_entry *out, int cap,
                           redisReply **reply);

/* Takes over up to count entries of queue q that other consumers left
 * pending for at least min_idle_ms (XPENDING IDLE, then XCLAIM); for webhook
 * deliveries, this consumer's own too (it keeps those it holds fresh with
 * gpuq_stream_touch_hooks, so a stale one of its own was lost). Each entry's
 * deliveries counts this one. Entries deleted from the stream while pending
 * come back with deleted set. Same ownership as gpuq_stream_read. */
int gpuq_stream_claim(struct gpuq_stream *s, enum gpuq_stream_kind kind, int q,
                      int64_t min_idle_ms, int count, struct gpuq_entry *out, int cap,
                      redisReply **reply);

/* Resets the idle time of webhook entries this worker still holds (XCLAIM
 * JUSTID), so other workers do not take over a delivery waiting to retry. */
int gpuq_stream_touch_hooks(struct gpuq_stream *s, int q, const char *const *ids, int n);

/* Reads webhook entries this worker holds again, fields and all (XCLAIM),
 * for a delivery about to be attempted: between attempts only the entry id
 * is held. At most 64 ids; an id no longer pending here is left out. Same
 * ownership as gpuq_stream_read (*reply is set even when none came). */
int gpuq_stream_load_hooks(struct gpuq_stream *s, int q, const char *const *ids, int n,
                           struct gpuq_entry *out, int cap, redisReply **reply);

/* Queue q's backlog (entries not yet delivered to the group: its lag) and
 * pending entries (delivered, not acked). Returns 0, or -1 with errstr. */
int gpuq_stream_queue_stats(struct gpuq_stream *s, int q, int64_t *backlog, int64_t *pending);

/* The value of field name in an entry, or {NULL, 0}. */
struct gpuq_str gpuq_entry_field(const struct gpuq_entry *e, const char *name);

/* Writing: begin, any number of puts and acks, commit. Nothing is applied
 * unless commit returns 0; then all of it is. */
void gpuq_stream_begin(struct gpuq_stream *s);
void gpuq_stream_put_result(struct gpuq_stream *s, int queue, struct gpuq_str id,
                            const char *bytes, size_t len, int64_t ttl_s,
                            struct gpuq_str reply_to);
/* Records a webhook owed for job id: its result, to be POSTed to url. */
void gpuq_stream_put_hook(struct gpuq_stream *s, int queue, struct gpuq_str id,
                          struct gpuq_str url, int msgpack_body, const char *result, size_t len,
                          struct gpuq_str job);
/* callback: the URL of a failed webhook, or {NULL, 0}. */
void gpuq_stream_put_dead(struct gpuq_stream *s, int queue, struct gpuq_str job,
                          const char *error, size_t error_len, int64_t attempts,
                          struct gpuq_str callback);
/* Acks and deletes a webhook delivery entry. */
void gpuq_stream_hook_done(struct gpuq_stream *s, int queue, struct gpuq_str entry_id);
void gpuq_stream_ack(struct gpuq_stream *s, int queue, struct gpuq_str entry_id);
int gpuq_stream_commit(struct gpuq_stream *s);

/* commit in two halves, so the caller can compute while Redis applies the
 * transaction: send writes it out; wait reads its replies (0, 1 or -1 as
 * commit). No other command may be issued between the two. */
int gpuq_stream_send(struct gpuq_stream *s);
int gpuq_stream_wait(struct gpuq_stream *s);

/* Builds P:{Q}:jobs style keys into buf; returns buf. */
char *gpuq_stream_key(char *buf, size_t cap, const char *prefix, const char *queue,
                      const char *suffix);

#endif
