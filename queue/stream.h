/* stream.h -- one worker's connection to Redis: reads jobs from the queues'
 * streams through the consumer group, writes results, dead letters and acks
 * in one MULTI/EXEC.
 *
 * Keys, for prefix P and queue Q: P:{Q}:jobs (stream), P:{Q}:result:<id>,
 * P:{Q}:dead (stream). Errors set err and errstr (hiredis style); a lost
 * connection leaves rc NULL until gpuq_stream_connect succeeds again. */
#ifndef GPUQ_STREAM_H
#define GPUQ_STREAM_H

#include <stdint.h>

#include "queue/cluster.h"
#include "queue/conn.h"
#include "queue/job.h"
#include "queue/url.h"

#define GPUQ_GROUP "workers"
#define GPUQ_HOOK_GROUP "senders"

/* The streams a worker consumes: jobs, and webhook deliveries. */
enum gpuq_stream_kind { GPUQ_STREAM_JOBS, GPUQ_STREAM_HOOKS };

/* The writing half's state: the open transaction, its acks and pushes,
 * and the reply lists Redis refused (queue/stream_int.h). */
struct gpuq_tx;

/* A reply list Redis would not take a push for (wrong type, no permission,
 * another slot): jobs says how many results lost their push to it. */
struct gpuq_refused {
    char *key;
    size_t len;
    char err[96];
    int jobs;
    int queued;             /* refused when queued, so the transaction was retried without it */
};

#define GPUQ_MAX_REFUSED 16
/* Buffers an outsized transaction grew past this are freed after it. */
#define GPUQ_STREAM_KEEP_BYTES ((size_t)16 << 20)

struct gpuq_stream {
    struct gpuq_conn *rc;
    struct gpuq_redis_url url;
    struct gpuq_tls *tls;   /* borrowed: for rediss://, else NULL */
    char prefix[64];
    int n_queues;
    char **queues;          /* names, served in this order */
    char **jobs_keys;       /* P:{Q}:jobs */
    char **dead_keys;       /* P:{Q}:dead */
    char **hook_keys;       /* P:{Q}:webhooks: deliveries owed, group senders */
    char **result_prefixes; /* P:{Q}:result: */
    char **cache_prefixes;  /* P:{Q}:cache: (results kept by content, --embed-cache-ttl) */
    char consumer[128];
    int err;                /* 0, or a REDIS_ERR_* code */
    char errstr[256];
    int64_t max_value;      /* the largest value Redis takes (proto-max-bulk-len) */
    struct gpuq_cluster *cl;    /* on a cluster: the slot map and a connection per master;
                                 * rc is then the connection of the queue last used */
    int slot;               /* on a cluster: the slot of the queue last used */
    int *slots;             /* per queue: its hash slot */
    int64_t *down_until_us; /* on a cluster, per queue: its master did not answer; tried
                             * again from then (0: served) */
    int64_t *down_ms;       /* the backoff doubling from 100 ms to 5 s */
    struct gpuq_tx *tx;     /* the open transaction and what Redis refused in it: private
                             * to queue/ (stream_int.h) */
};

/* One stream entry, borrowed from the reply it came in. */
struct gpuq_entry {
    int queue;
    struct gpuq_str id;
    struct gpuq_str payload;    /* the job bytes; ptr NULL when the entry had none */
    int is_json;                /* payload came from field json, not job */
    int deleted;                /* a pending entry whose fields were deleted */
    int64_t deliveries;         /* times delivered, this one included */
    int reread;                 /* read again by the live consumer that held it: no poison */
    const redisReply *fields;   /* all the entry's fields, name then value */
    int64_t enqueued_ms;        /* from the entry id */
};

/* Copies names and builds the keys; no I/O. tls (for rediss://, else NULL)
 * is borrowed and must outlive s. Returns 0, -1 when out of memory. */
int gpuq_stream_init(struct gpuq_stream *s, const struct gpuq_redis_url *url, struct gpuq_tls *tls,
                     const char *prefix, char *const *queues, int n_queues, const char *consumer);
void gpuq_stream_free(struct gpuq_stream *s);

/* (Re)connects, authenticates, selects the db, creates missing consumer
 * groups (at id 0, MKSTREAM). On a cluster (any node of one may be named)
 * it reads the slot map first and speaks to each queue's master. Returns
 * 0 or -1 with errstr. */
int gpuq_stream_connect(struct gpuq_stream *s, int timeout_ms);

/* On a cluster, a queue whose master does not answer is down: reads of it
 * find nothing while the others are served, and gpuq_stream_revive tries it
 * again with backoff. A single Redis is never partly down: it is all lost. */
int gpuq_stream_down(const struct gpuq_stream *s, int q);

/* Tries the down queues that are due (the slot map read again, the groups
 * made); returns how many are served again. */
int gpuq_stream_revive(struct gpuq_stream *s);

/* XREADGROUP from queues [first, first+n): from ">" reads new entries; from
 * an id reads this consumer's own pending entries after that id ("0": all).
 * block_ms < 0 does not block. Fills up to cap entries, borrowed from
 * *reply, which the caller frees with freeReplyObject once done with them
 * (NULL when none were read). Returns the count, or -1 with errstr. */
int gpuq_stream_read(struct gpuq_stream *s, int first, int n, int count, int block_ms,
                     const char *from, struct gpuq_entry *out, int cap, redisReply **reply);

/* Entries this consumer read again from its own pending list that it had
 * read before in this same life (a reconnect, not a restart): that read
 * was no delivery to another worker, so each count is set back by one
 * (XCLAIM ... RETRYCOUNT JUSTID), in Redis and in e[i].deliveries, and
 * --max-attempts keeps counting only workers that died. With idle_ms > 0
 * they are handed back too: marked idle that long, so that another
 * worker's claim takes them at once. Returns 0, or -1 with errstr. */
int gpuq_stream_undeliver(struct gpuq_stream *s, struct gpuq_entry *e, int n, int64_t idle_ms);

/* A read of new entries from queue q sent behind a sent transaction, so
 * Redis answers it while the caller computes; gpuq_stream_prefetched takes
 * its reply, right after gpuq_stream_wait and before any other command. */
int gpuq_stream_prefetch(struct gpuq_stream *s, int q, int count);
int gpuq_stream_prefetched(struct gpuq_stream *s, struct gpuq_entry *out, int cap,
                           redisReply **reply);

/* The same from the webhook delivery streams (group senders) of queues
 * [first, first+n), without blocking. */
int gpuq_stream_read_hooks(struct gpuq_stream *s, int first, int n, int count,
                           struct gpuq_entry *out, int cap, redisReply **reply);

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

/* ---- writing (publish.c) ----
 *
 * begin, any number of puts and acks, then send and wait (or commit, both
 * at once). All of a transaction is applied or none of it. The acks of a
 * transaction go out as one XACK and one XDEL per stream, so an answered
 * entry leaves the stream with its answer. A reply push is an EVAL that
 * pushes and, only when the push succeeded, sets the list's TTL: the worker
 * never touches a key it could not push to. */

enum gpuq_commit {
    GPUQ_COMMIT_OK = 0,
    GPUQ_COMMIT_PARTIAL = 1,    /* applied, but a command other than a push failed: errstr */
    GPUQ_COMMIT_LOST = -1,      /* the connection is gone (or never was): reconnect */
    GPUQ_COMMIT_REFUSED = -2,   /* Redis refused the writes (out of memory, read-only, no
                                 * permission): nothing applied; errstr; send it again later */
    GPUQ_COMMIT_RETRY = -3      /* nothing applied, because Redis refused some reply lists when
                                 * queued (those are now in refused[]), or the queue's cluster
                                 * slot moved (the map is read again): build it again at once */
};

/* Opens a transaction. refused[] is kept: a transaction built again after
 * GPUQ_COMMIT_RETRY skips the pushes to those lists. */
void gpuq_stream_begin(struct gpuq_stream *s);
/* SET P:{Q}:result:<id> EX ttl_s (none when ttl_s is 0), and a push of the
 * same bytes to reply_to (when set, and not refused). */
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
/* Acks and deletes a webhook delivery entry, or a job entry. The id is
 * borrowed until the transaction is sent. */
void gpuq_stream_hook_done(struct gpuq_stream *s, int queue, struct gpuq_str entry_id);
void gpuq_stream_ack(struct gpuq_stream *s, int queue, struct gpuq_str entry_id);
/* send and wait; returns an enum gpuq_commit. */
int gpuq_stream_commit(struct gpuq_stream *s);

/* commit in two halves, so the caller can compute while Redis applies the
 * transaction: send writes it out (0, or -1 when the connection is gone);
 * wait reads its replies and returns an enum gpuq_commit. No other command
 * may be issued between the two, but for one gpuq_stream_prefetch. */
int gpuq_stream_send(struct gpuq_stream *s);
int gpuq_stream_wait(struct gpuq_stream *s);

/* Whether writes to queues qa and qb may share one transaction: always on
 * a single Redis; on a cluster, only in the same slot. A transaction holds
 * the writes of one queue there, and a prefetch may follow only one of the
 * queue it reads. */
int gpuq_stream_one_tx(const struct gpuq_stream *s, int qa, int qb);

/* How many queues from first one read may cover: on a cluster, one. */
int gpuq_stream_read_span(const struct gpuq_stream *s, int first);

/* The reply lists Redis refused in the last transaction (*n of them),
 * borrowed until gpuq_stream_refused_clear, which forgets them once the
 * caller has reported them. */
const struct gpuq_refused *gpuq_stream_refused(const struct gpuq_stream *s, int *n);
void gpuq_stream_refused_clear(struct gpuq_stream *s);

/* Bytes of values put into the open transaction so far. */
size_t gpuq_stream_tx_bytes(const struct gpuq_stream *s);

/* Spoils the open transaction, as a failed append does: it is not
 * committed, and all it would have acked stays pending. */
void gpuq_stream_fail_tx(struct gpuq_stream *s);

/* Whether Redis looks able to take writes of about need bytes again (INFO:
 * used memory plus twice need below maxmemory, and a master): 1 yes, 0 no,
 * -1 cannot tell. */
int gpuq_stream_writable(struct gpuq_stream *s, size_t need);

/* Reads cached values of queue q by their names (hex digests): one MGET,
 * the reply (an array of n strings or nils) in *reply for the caller to
 * free. 0, or -1 with errstr (the connection is kept unless it failed). */
int gpuq_stream_get_cached(struct gpuq_stream *s, int q, const char *const *names, int n,
                           redisReply **reply);

/* Adds to the open transaction: the cached value called name under queue's
 * cache prefix, for ttl_s seconds. */
void gpuq_stream_put_cached(struct gpuq_stream *s, int queue, const char *name, const void *value,
                            size_t len, int64_t ttl_s);

/* Whether key is one of the served queues' own keys (jobs, dead and webhook
 * streams, result and cache keys), which a job may not name as its reply_to. */
int gpuq_stream_owns_key(const struct gpuq_stream *s, struct gpuq_str key);

/* A clean goodbye: removes this consumer from the groups of every queue
 * where it holds nothing pending, so the group lists live workers only.
 * Returns how many it removed, or -1 with errstr. */
int gpuq_stream_leave(struct gpuq_stream *s);

/* Presence: writes info (JSON text describing this worker) as field
 * <consumer> of every served queue's hash P:{Q}:workers, and keeps the hash
 * for keep_s seconds; with info NULL, removes the field (a clean stop).
 * Readers judge an entry live by the expires_ms it carries. Returns 0, or
 * -1 with errstr when the connection was lost (an error reply is ignored:
 * presence is advice, never a reason to stop serving). */
int gpuq_stream_advertise(struct gpuq_stream *s, const char *info, size_t len, int64_t keep_s);

/* Builds P:{Q}:jobs style keys into buf; returns buf. */
char *gpuq_stream_key(char *buf, size_t cap, const char *prefix, const char *queue,
                      const char *suffix);

#endif
