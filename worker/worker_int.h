/* worker_int.h -- the worker's state, shared by its start-up (start.c) and
 * its loop (worker.c). Private to worker/. */
#ifndef GPUQ_WORKER_INT_H
#define GPUQ_WORKER_INT_H

#include <msgpack.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "queue/stream.h"
#include "worker/config.h"
#include "worker/metrics.h"
#include "worker/ops.h"
#include "worker/pool.h"
#include "worker/sched.h"
#include "worker/task.h"
#include "worker/webhook.h"

/* A reply from Redis, kept until every entry borrowed from it is answered. */
struct held {
    redisReply *reply;
    int refs;
};

struct worker {
    struct gpuq_config cfg;
    struct gpuq_stream st;
    struct gpuq_tls *tls;           /* rediss://: the TLS every connection uses; else NULL */
    struct gpuq_backend be, cpu;
    struct gpuq_ops ops;
    struct gpuq_sched sched;
    struct gpuq_webhooks *hooks;
    struct gpuq_metrics *metrics;   /* NULL without --metrics-addr */
    int64_t last_sample_us;
    int64_t last_advert_us;     /* presence last written (advert.c) */
    /* the enqueue-to-result latency of the jobs answered since then (the
     * last GPUQ_LATENCIES of them), for the presence entry's percentiles */
#define GPUQ_LATENCIES 1024
    int64_t latency_us[GPUQ_LATENCIES];
    int64_t n_latency;
    struct gpuq_model *models;
    int n_models;
    int n_slots;
    struct worker_task *slots;
    struct worker_task **free_slots;
    int n_free;
    struct worker_task **done;      /* answered, to be published */
    int n_done;
    struct worker_task **sending;   /* published, replies not yet read */
    int n_sending;
    struct gpuq_entry *entries; /* one read's worth */
    struct gpuq_piece *pieces;
    struct gpuq_out_pool pool;      /* output buffers */
    msgpack_sbuffer sb;
    int drained;                /* the last reads found nothing more waiting */
    int skip_reads;             /* reads fetch may skip while it holds work: the last read
                                 * found the only queue drained */
    struct worker_task **lookups;   /* admitted by the last read, to look up in the cache */
    int n_lookups;
    int cache_told;             /* a failed cache read was logged */
    char (*salts)[96];          /* per model: its fingerprint and the precision, naming cached rows */
    int pending_queue;          /* reading our own pending entries: this queue; -1 when done */
    char pending_from[64];
    int pending_end;            /* ... up to this queue */
    unsigned char *down_told;   /* per queue: its master's silence was logged */
    unsigned char *rescan;      /* per queue: served again, its own pending entries to read */
    int seen_all;               /* this life has read all its pending entries once */
    int seen_queue;             /* else it has read those before seen_from on this queue */
    char seen_from[64];         /* (and all of the queues before it) */
    int64_t last_claim_us;
    int hooks_written;          /* this worker recorded deliveries: read them */
    int hooks_more;             /* the last read of deliveries filled its count */
    uint64_t hooks_freed;       /* gpuq_webhooks_freed at that read */
    int device_lost;            /* a sticky device error: finish writing, exit 1 */
    int64_t refused_ms;         /* Redis refuses writes: the backoff, 0 when it takes them */
    int64_t refused_until_us;   /* no publishing before this */
    int refused_probe;          /* the refusal is one gpuq_stream_writable sees pass */
    size_t refused_bytes;       /* the size of the refused transaction's values */
    uint64_t n_ok, n_failed, n_dead, n_batches, n_delivered, n_hooks_failed, n_push_failed;
};

/* Parses flags, loads models, connects; logs the summary once all is up.
 * Returns 0, or -1 with a one-line reason in err. finish accepts any state
 * start left. */
int gpuq_worker_start(struct worker *w, int argc, char **argv, char *err, size_t errlen);
void gpuq_worker_finish(struct worker *w);

/* Gives a task back: its job, output, cache rows and reply reference
 * (worker.c). */
void gpuq_worker_drop_task(struct worker *w, struct worker_task *t);

/* Webhook deliveries (hooks.c): records finished ones, then takes stale
 * ones (on the claim tick) and new ones, keeps held ones fresh and starts
 * those due. Returns -1 when Redis failed. */
int gpuq_worker_hooks_step(struct worker *w, int claim_now);

/* Presence (advert.c): writes what this worker serves to each queue's
 * P:{Q}:workers every two seconds (stop: removes it). -1 when Redis was
 * lost. */
int gpuq_worker_advertise(struct worker *w, int stop);

/* Publishing (publish.c). Sends answered tasks' writes as one transaction
 * without waiting; 0, or -1 when Redis failed. */
int gpuq_worker_publish_send(struct worker *w);
/* Reads the sent transaction's replies and lets its tasks go, or keeps
 * them to send again after a backoff when Redis refused it. Returns -1
 * only when the connection is lost. */
int gpuq_worker_publish_wait(struct worker *w);
/* Redis refused writes: the next attempt waits 100 ms, doubling to 5 s. */
void gpuq_worker_back_off(struct worker *w, const char *what);

#endif
