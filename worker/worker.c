/* worker.c -- the serving loop (start-up is in start.c).
 *
 * One thread turns the wheel: fetch while there is room (the backlog beyond
 * --max-inflight rows stays in Redis), hand each job to the scheduler (or
 * answer it at once if it is invalid), run the next ready batch, and write
 * every finished job's result, dead letter and ack in one MULTI/EXEC.
 * Nothing is acked before its result is written. If Redis is lost, the
 * worker forgets all it holds, reconnects, and reads its own pending entries
 * again: Redis, not the worker, is the record of what is owed. */
#include "worker/clock.h"
#include "worker/worker.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "queue/json.h"
#include "worker/cache.h"
#include "worker/log.h"
#include "worker/worker_int.h"

static volatile sig_atomic_t stop_requested;
/* when the stop was asked for: the drain bound counts from then, though the
 * loop sees the flag only once the batch under way has finished */
static volatile int64_t stop_asked_us;

static void on_signal(int sig) {
    (void)sig;
    if (!stop_requested) stop_asked_us = gpuq_now_us();    /* clock_gettime: signal-safe */
    stop_requested = 1;
}

/* No new work: asked to stop, or the device is lost. */
static int stopping(const struct worker *w) { return stop_requested || w->device_lost; }

static void sleep_us(int64_t us) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested) {}
}

/* ---- admitting jobs ---- */

static void unhold(struct held *h) {
    if (h && --h->refs == 0) {
        freeReplyObject(h->reply);
        free(h);
    }
}

/* Gives a task back: its job, output and reply reference. */
static void drop_task(struct worker *w, struct gpuq_task *t) {
    if (t->out) gpuq_pool_put(&w->pool, t->out, t->out_bytes);
    gpuq_cache_forget(t);
    gpuq_job_free(&t->job);
    free(t->json_job);
    free(t->own);
    unhold(t->held);
    memset(t, 0, sizeof(*t));
    w->free_slots[w->n_free++] = t;
}

/* An entry that will not run: answered with a dead letter, never an error result. */
static void dead_letter(struct worker *w, struct gpuq_task *t, enum gpuq_err code, const char *why) {
    memset(&t->job, 0, sizeof(t->job));
    msgpack_unpacked_init(&t->job.msg);
    t->job.op = -1;     /* not decoded: its log lines name no op */
    t->decoded = GPUQ_DECODE_UNDECODABLE;
    gpuq_job_fail(&t->job, code, "%s", why);
    w->done[w->n_done++] = t;
}

static void schedule(struct worker *w, struct gpuq_task *t) {
    /* the task slots bound the jobs held, and the scheduler has room for them all */
    if (gpuq_sched_add(&w->sched, t, gpuq_now_us()) != 0) {
        log_error("the scheduler is full with %d task slots: a bug", w->n_slots);
        abort();
    }
    t->admitted = 1;
}

static void admit(struct worker *w, struct gpuq_task *t) {
    const struct gpuq_entry *e = &t->entry;
    if (e->deliveries > w->cfg.max_attempts && !e->deleted && !e->reread) {
        char why[160];
        snprintf(why, sizeof(why), "delivered %lld times, more than --max-attempts %lld: its worker "
                 "died each time", (long long)e->deliveries, (long long)w->cfg.max_attempts);
        dead_letter(w, t, GPUQ_ERR_INTERNAL, why);
        return;
    }
    struct gpuq_str bytes = e->payload;
    msgpack_sbuffer twin = {0, NULL, 0};
    if (e->is_json && e->payload.ptr && !e->deleted) {
        /* the slow path for clients without msgpack: one conversion, then as any job */
        if (gpuq_json_job_to_msgpack(e->payload.ptr, e->payload.len, &twin) == 0) {
            t->json_job = twin.data;
            bytes = (struct gpuq_str){twin.data, twin.size};
        } else {
            msgpack_sbuffer_destroy(&twin);
            bytes.ptr = NULL;
        }
    }
    if (!bytes.ptr || e->deleted) {
        dead_letter(w, t, GPUQ_ERR_BAD_REQUEST, e->is_json ? "json is not a JSON object"
                    : "entry has no job field");
        return;
    }
    t->decoded = gpuq_job_decode(&t->job, bytes.ptr, bytes.len);
    if (t->decoded == GPUQ_DECODE_OK) {
        int64_t deadline = t->job.deadline_ms, timeout = t->job.timeout_ms;
        if (timeout) {  /* saturates: a timeout of 2^63-1 ms is "never", not the past */
            timeout = timeout > INT64_MAX - e->enqueued_ms ? INT64_MAX : e->enqueued_ms + timeout;
            if (!deadline || timeout < deadline) deadline = timeout;
        }
        t->deadline_ms = deadline;
        struct gpuq_str fmt = {NULL, 0};
        if (t->job.reply_to.ptr && gpuq_stream_owns_key(&w->st, t->job.reply_to)) {
            gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "reply_to names one of the queue's own "
                          "keys");
            t->job.reply_to = (struct gpuq_str){NULL, 0};   /* never push to it */
        } else if (gpuq_job_param_str(&t->job, "callback_format", &fmt) > 0 &&
            !(fmt.len == 4 && !memcmp(fmt.ptr, "json", 4)) && !(fmt.len == 7 && !memcmp(fmt.ptr, "msgpack", 7)))
            gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "callback_format must be json or msgpack");
        else if (gpuq_ops_prepare(&w->ops, t) == 0 && !(t->out = gpuq_pool_get(&w->pool, t->out_bytes)))
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "out of memory for the job's outputs");
    }
    if (t->decoded == GPUQ_DECODE_OK && !t->job.err) {
        if (w->salts && t->model && gpuq_cache_name(t, w->salts[t->model - w->models]) == 0) {
            w->lookups[w->n_lookups++] = t;     /* scheduled once the cache is read */
            return;
        }
        schedule(w, t);
        return;
    }
    w->done[w->n_done++] = t;
}

/* Reads the cache for the tasks admitted by the last read: a task found
 * whole is answered at once, the rest are scheduled. */
static void look_up(struct worker *w) {
    int64_t hits, misses;
    if (w->n_lookups == 0) return;
    if (gpuq_cache_lookup(&w->st, w->lookups, w->n_lookups, &hits, &misses) != 0 && !w->cache_told) {
        log_warn("cannot read the embedding cache (%s): computing instead", w->st.errstr);
        w->cache_told = 1;
    }
    gpuq_metrics_cache(w->metrics, hits, misses);
    for (int i = 0; i < w->n_lookups; i++) {
        struct gpuq_task *t = w->lookups[i];
        if (!t->cache_hit) {
            schedule(w, t);
            continue;
        }
        t->rows_done = t->rows;
        gpuq_op_table[t->job.op]->finish(t);
        w->done[w->n_done++] = t;
    }
    w->n_lookups = 0;
}

/* Turns got entries (borrowed from reply) into tasks. */
static void take(struct worker *w, int got, redisReply *reply) {
    struct held *h = malloc(sizeof(*h));
    if (!h) {
        freeReplyObject(reply);
        return;     /* they stay pending for us; read again after a reconnect */
    }
    *h = (struct held){reply, got};
    if (got > w->n_free) {     /* every read asks for no more than the free slots */
        log_error("read %d entries with %d task slots free: a bug", got, w->n_free);
        abort();
    }
    for (int i = 0; i < got; i++) {
        struct gpuq_task *t = w->free_slots[--w->n_free];
        t->entry = w->entries[i];
        t->held = h;
        admit(w, t);
    }
    look_up(w);
}

static int fetch_count(struct worker *w, int count) {
    if (count > w->n_free) count = w->n_free;
    return count > w->cfg.max_batch ? (int)w->cfg.max_batch : count;
}

/* Orders two stream entry ids ("ms-seq"). */
static int id_cmp(const char *a, const char *b) {
    char *end;
    unsigned long long ma = strtoull(a, &end, 10), sa = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
    unsigned long long mb = strtoull(b, &end, 10), sb = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
    return ma != mb ? (ma < mb ? -1 : 1) : sa != sb ? (sa < sb ? -1 : 1) : 0;
}

/* Of got entries read again from our own pending list of one queue, how
 * many this life had read before (a reconnect's re-reads; the rest are
 * left from an earlier life under the same name); then marks them all read. */
static int seen_before(struct worker *w, int got) {
    const struct gpuq_entry *e = w->entries;
    int q = e[0].queue, seen = 0;
    if (w->seen_all || q < w->seen_queue) return got;
    if (q == w->seen_queue)
        while (seen < got && w->seen_from[0] && id_cmp(e[seen].id.ptr, w->seen_from) <= 0) seen++;
    if (q > w->seen_queue || id_cmp(e[got - 1].id.ptr, w->seen_from) > 0 || !w->seen_from[0]) {
        w->seen_queue = q;
        snprintf(w->seen_from, sizeof(w->seen_from), "%s", e[got - 1].id.ptr);
    }
    return seen;
}

/* One XREADGROUP; each entry becomes a task. Returns the count, -1 when Redis failed. */
static int read_into(struct worker *w, int first, int n, int count, int block_ms, const char *from) {
    redisReply *reply = NULL;
    if ((count = fetch_count(w, count)) <= 0) return 0;
    int got = gpuq_stream_read(&w->st, first, n, count, block_ms, from, w->entries, count, &reply);
    if (got <= 0) return got;
    if (from[0] != '>') {
        int seen = seen_before(w, got);
        /* this life held them: never poison, whatever Redis counts (a count
         * set back only when the XCLAIM got through before another drop) */
        for (int i = 0; i < seen; i++) w->entries[i].reread = 1;
        if (seen > 0 && gpuq_stream_undeliver(&w->st, w->entries, seen, 0) != 0) {
            freeReplyObject(reply);
            return -1;
        }
        snprintf(w->pending_from, sizeof(w->pending_from), "%.*s", (int)w->entries[got - 1].id.len,
                 w->entries[got - 1].id.ptr);
    }
    take(w, got, reply);
    return got;
}

/* Whether it is time to look for what dead workers left pending (or a
 * stopping one handed back): every quarter of the idle time, between 50 ms
 * and 5 s, and once our own pending entries are read (so the first look
 * comes before the room fills with new entries). */
static int claim_due(struct worker *w) {
    if (w->pending_queue >= 0) return 0;
    int64_t now = gpuq_now_us(), every = w->cfg.claim_idle_ms * 250;
    if (every < 50000) every = 50000;
    if (every > 5000000) every = 5000000;
    if (now - w->last_claim_us < every) return 0;
    w->last_claim_us = now;
    return 1;
}

/* Takes over jobs dead workers left pending. */
static int claim(struct worker *w) {
    int total = 0;
    for (int q = 0; q < w->st.n_queues; q++) {
        redisReply *reply = NULL;
        int count = fetch_count(w, (int)gpuq_sched_room(&w->sched));
        if (count <= 0) break;
        int got = gpuq_stream_claim(&w->st, GPUQ_STREAM_JOBS, q, w->cfg.claim_idle_ms, count,
                                    w->entries, count, &reply);
        if (got < 0) return -1;
        if (got == 0) continue;
        log_info("claimed %d entries on %s left pending by other consumers", got, w->st.queues[q]);
        take(w, got, reply);
        total += got;
    }
    return total;
}

/* Logs each queue whose master stopped or started answering (on a cluster). */
static void tell_down(struct worker *w) {
    for (int q = 0; q < w->st.n_queues; q++) {
        int down = gpuq_stream_down(&w->st, q);
        if (down == w->down_told[q]) continue;
        w->down_told[q] = (unsigned char)down;
        if (down)
            log_warn("queue %s: its Redis Cluster master does not answer (%s); serving the other "
                     "queues, and trying it again with backoff up to 5 s", w->st.queues[q], w->st.errstr);
        else
            log_info("queue %s: its master answers; served again", w->st.queues[q]);
    }
}

/* Starts reading the own pending entries of the next queue served again,
 * if any. Returns 1 when it did. */
static int rescan_next(struct worker *w) {
    for (int q = 0; q < w->st.n_queues; q++)
        if (w->rescan[q]) {
            w->rescan[q] = 0;
            w->pending_queue = q;
            w->pending_end = q + 1;
            snprintf(w->pending_from, sizeof(w->pending_from), "0");
            return 1;
        }
    return 0;
}

/* Tries the queues whose master did not answer; each served again has its
 * own pending entries read (none of them is held: nothing was read of it). */
static void revive(struct worker *w) {
    if (gpuq_stream_revive(&w->st) > 0)
        for (int q = 0; q < w->st.n_queues; q++)
            if (w->down_told[q] && !gpuq_stream_down(&w->st, q)) w->rescan[q] = 1;
    tell_down(w);
    if (w->pending_queue < 0) rescan_next(w);     /* else when the running scan ends */
}

/* Fetches what there is room for, so that priorities and deadlines order
 * everything the worker may hold: our own pending entries first (after a
 * start or a reconnect), then the queues strictly in order, each until it is
 * drained or the room is used. Blocks briefly only when the worker holds
 * nothing at all. Returns entries read, or -1 when Redis failed. */
static int fetch(struct worker *w, int claim_now) {
    int total = 0, got;
    w->drained = 0;
    if (stopping(w)) return 0;
    revive(w);
    /* our own pending entries first; claiming before that would read what
     * it just claimed a second time (it is pending for us then, too) */
    if (claim_now && w->pending_queue < 0 && (total = claim(w)) < 0) return -1;
    while (w->pending_queue >= 0) {
        int64_t room = gpuq_sched_room(&w->sched);
        if (room <= 0) return total;
        if ((got = read_into(w, w->pending_queue, 1, (int)room, -1, w->pending_from)) < 0) return -1;
        total += got;
        if (got > 0) continue;
        if (++w->pending_queue >= w->pending_end) {
            w->pending_queue = -1;
            if (rescan_next(w)) continue;
            w->seen_all = 1;    /* from now on, only a reconnect reads them again */
            /* then what others left or handed back, before new entries fill the room */
            if (claim_due(w) && (got = claim(w)) < 0) return -1;
            total += got > 0 ? got : 0;
        }
        snprintf(w->pending_from, sizeof(w->pending_from), "0");
    }
    for (int q = 0; q < w->st.n_queues; q++) {
        for (;;) {
            int64_t room = gpuq_sched_room(&w->sched);
            int want = room < w->cfg.max_batch ? (int)room : (int)w->cfg.max_batch;
            if (want > w->n_free) want = w->n_free;
            if (want <= 0) return total;
            if ((got = read_into(w, q, 1, want, -1, ">")) < 0) return -1;
            total += got;
            if (got < want) break;  /* this queue is drained */
        }
    }
    w->drained = 1;     /* every queue read came back short */
    /* block while idle, but not past the next webhook retry due */
    int idle_ms = gpuq_webhooks_idle_ms(w->hooks, gpuq_now_us(), 100);
    if (total == 0 && w->n_done == 0 && w->sched.rows_held == 0 && idle_ms > 0) {
        int64_t room = gpuq_sched_room(&w->sched);
        int want = room < w->cfg.max_batch ? (int)room : (int)w->cfg.max_batch;
        /* one read over all queues; on a cluster one per queue, sharing the wait */
        for (int q = 0, n; q < w->st.n_queues && total == 0; q += n) {
            n = gpuq_stream_read_span(&w->st, q);
            if ((total = read_into(w, q, n, want, n == w->st.n_queues ? idle_ms : idle_ms * n / w->st.n_queues + 1,
                                   ">")) < 0)
                return -1;
        }
        if (total >= want) w->drained = 0;     /* a full read: more may be waiting */
    }
    return total;
}

static void back_off(struct worker *w, const char *what);

/* ---- webhooks ---- */

/* Hands entries read from the webhook streams to the module: new ones (a
 * claimed one may be held already), or with ids, those read again for the
 * deliveries asked by ids (in order). An entry deleted while pending
 * (finished by another worker) is only acked. */
static int hooks_take(struct worker *w, int got, int claimed, const char *const *ids, int n_ids,
                      int64_t now) {
    for (int i = 0, k = 0; i < got; i++) {
        struct gpuq_entry *e = &w->entries[i];
        if (!e->deleted && ids) {
            while (k < n_ids && strcmp(ids[k], e->id.ptr) != 0) k++;
            if (k < n_ids) gpuq_webhooks_attach(w->hooks, ids[k], e, now);
            continue;
        }
        if (!e->deleted) {
            /* no room cannot happen (reads ask for no more than the room):
             * the entry would stay pending, for a claim */
            if ((!claimed || !gpuq_webhooks_holds(w->hooks, e->queue, e->id)) &&
                gpuq_webhooks_add(w->hooks, e, now) != 0)
                log_error("webhook entry %s not taken", e->id.ptr);
            continue;
        }
        gpuq_stream_begin(&w->st);
        gpuq_stream_hook_done(&w->st, e->queue, e->id);
        int rc = gpuq_stream_commit(&w->st);
        if (rc == GPUQ_COMMIT_LOST) return -1;
        if (rc < 0) back_off(w, "a webhook ack");   /* it stays pending meanwhile */
    }
    return 0;
}

/* Reads again the entries of deliveries due for an attempt: between
 * attempts only their ids are held. Returns -1 when Redis failed. */
static int hooks_load(struct worker *w, int64_t now) {
    int chunk = w->cfg.max_batch < 64 ? (int)w->cfg.max_batch : 64;
    if (gpuq_webhooks_due(w->hooks, now) == 0) return 0;
    for (int q = 0; q < w->st.n_queues; q++) {
        const char *ids[GPUQ_WEBHOOKS_MAX_TRANSFERS];
        int n = gpuq_webhooks_ids(w->hooks, q, 1, ids, GPUQ_WEBHOOKS_MAX_TRANSFERS);
        for (int at = 0; at < n; at += chunk) {
            redisReply *reply = NULL;
            int len = n - at < chunk ? n - at : chunk;
            int got = gpuq_stream_load_hooks(&w->st, q, ids + at, len, w->entries, chunk, &reply);
            int rc = got < 0 ? -1 : hooks_take(w, got, 0, ids + at, len, now);
            freeReplyObject(reply);
            if (rc < 0) return -1;
        }
    }
    gpuq_webhooks_loaded(w->hooks);     /* what did not come back is no longer ours */
    return 0;
}

/* Records finished deliveries in one transaction. Returns 0, 1 when Redis
 * refused it (all deliveries held are forgotten), -1 when Redis failed. */
static int hooks_commit(struct worker *w, struct gpuq_delivery **done, int n) {
    gpuq_stream_begin(&w->st);
    for (int i = 0; i < n; i++) {
        struct gpuq_delivery *d = done[i];
        struct gpuq_str id = {d->entry_id, strlen(d->entry_id)};
        if (!d->delivered) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%d attempts to %.*s failed; the last: %s", d->attempts,
                     (int)(d->url.len > 120 ? 120 : d->url.len), d->url.ptr ? d->url.ptr : "", d->error);
            msgpack_sbuffer_clear(&w->sb);
            gpuq_error_encode(&w->sb, GPUQ_ERR_WEBHOOK_FAILED, msg);
            gpuq_stream_put_dead(&w->st, d->queue, d->job, w->sb.data, w->sb.size, d->attempts, d->url);
            log_warn("webhook dead letter: %s", msg);
            gpuq_metrics_dead(w->metrics, d->queue, GPUQ_ERR_WEBHOOK_FAILED);
        }
        gpuq_stream_hook_done(&w->st, d->queue, id);
    }
    int rc = gpuq_stream_commit(&w->st);
    if (rc == GPUQ_COMMIT_LOST) return -1;
    if (rc < 0) {   /* refused: the deliveries stay pending in Redis, claimed again when stale */
        back_off(w, "webhook outcomes");
        gpuq_webhooks_forget_all(w->hooks);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        done[i]->delivered ? w->n_delivered++ : w->n_hooks_failed++;
        gpuq_metrics_webhook(w->metrics, done[i]->delivered);
        gpuq_webhooks_forget(w->hooks, done[i]);
    }
    return 0;
}

/* Moves transfers along and records finished deliveries (delivered: acked
 * and deleted; not: a dead letter too), one transaction per group of
 * queues that may share one. Returns -1 when Redis failed. */
static int hooks_record(struct worker *w) {
    struct gpuq_delivery *done[64];
    int n = gpuq_webhooks_pump(w->hooks, gpuq_now_us(), done, 64), rc = 0;
    for (int i = 0, k; i < n && rc == 0; i = k) {
        k = i + 1;
        for (int j = i + 1; j < n; j++)
            if (gpuq_stream_one_tx(&w->st, done[i]->queue, done[j]->queue)) {
                struct gpuq_delivery *d = done[j];
                memmove(done + k + 1, done + k, (size_t)(j - k) * sizeof(*done));
                done[k++] = d;
            }
        rc = hooks_commit(w, done + i, k - i);
    }
    return rc < 0 ? -1 : 0;
}

/* Records finished deliveries, then takes stale deliveries (on the claim
 * tick) and new ones (whenever there is room and there may be some), keeps
 * held ones fresh and starts those due. Returns -1 when Redis failed. */
static int hooks_step(struct worker *w, int claim_now) {
    struct gpuq_entry *e = w->entries;
    int cap = (int)w->cfg.max_batch, got;
    redisReply *reply = NULL;
    if (hooks_record(w) < 0) return -1;     /* first: what it frees is taken at once */
    int64_t now = gpuq_now_us();
    if (claim_now) {
        for (int q = 0; q < w->st.n_queues; q++) {
            const char *ids[GPUQ_WEBHOOKS_MAX_HELD];
            int n = gpuq_webhooks_ids(w->hooks, q, 0, ids, GPUQ_WEBHOOKS_MAX_HELD);
            for (int at = 0; at < n; at += 64)
                if (gpuq_stream_touch_hooks(&w->st, q, ids + at, n - at < 64 ? n - at : 64) != 0) return -1;
            int room = gpuq_webhooks_room(w->hooks);
            if (room <= 0) continue;
            got = gpuq_stream_claim(&w->st, GPUQ_STREAM_HOOKS, q, w->cfg.claim_idle_ms,
                                    room < cap ? room : cap, e, cap, &reply);
            int rc = got < 0 ? -1 : hooks_take(w, got, 1, NULL, 0, now);
            freeReplyObject(reply);
            reply = NULL;
            if (rc < 0) return -1;
        }
    }
    /* new deliveries: when this worker wrote some, when room came free, or
     * when the last read may have left more; not on a timer */
    int room = gpuq_webhooks_room(w->hooks);
    uint64_t freed = gpuq_webhooks_freed(w->hooks);
    if (room > 0 && (w->hooks_written || w->hooks_more || freed != w->hooks_freed || claim_now)) {
        w->hooks_written = 0;
        w->hooks_freed = freed;
        w->hooks_more = 0;
        /* one read over all queues; on a cluster one per queue */
        for (int q = 0, span; q < w->st.n_queues && (room = gpuq_webhooks_room(w->hooks)) > 0; q += span) {
            int want = room < cap ? room : cap;
            span = gpuq_stream_read_span(&w->st, q);
            if ((got = gpuq_stream_read_hooks(&w->st, q, span, want, e, cap, &reply)) < 0) return -1;
            w->hooks_more |= got == want;
            int rc = hooks_take(w, got, 0, NULL, 0, now);
            freeReplyObject(reply);
            reply = NULL;
            if (rc < 0) return -1;
        }
    }
    if (hooks_load(w, now) < 0) return -1;
    return 0;
}

/* ---- prefetching ---- */

/* Behind a sent transaction, asks for the new entries of the first queue
 * there will be room for once it is applied: Redis answers both while the
 * next batch computes. Returns the count asked for (0: none), or -1. */
static int prefetch_send(struct worker *w) {
    if (w->n_sending == 0 || w->pending_queue >= 0 || stopping(w) || gpuq_stream_down(&w->st, 0) ||
        !gpuq_stream_one_tx(&w->st, 0, w->sending[0]->entry.queue))
        return 0;
    int64_t room = gpuq_sched_room(&w->sched);
    for (int i = 0; i < w->n_sending; i++)
        if (w->sending[i]->admitted) room += w->sending[i]->rows;
    /* only the free slots: if Redis refuses the transaction, its tasks stay
     * held, and the entries read behind it must still find a slot each */
    int64_t count = w->n_free;
    if (count > room) count = room;
    if (count > w->cfg.max_batch) count = w->cfg.max_batch;
    if (count <= 0) return 0;
    return gpuq_stream_prefetch(&w->st, 0, (int)count) == 0 ? (int)count : -1;
}

/* Takes the prefetched entries (right after publish_wait). */
static int prefetch_take(struct worker *w, int count) {
    redisReply *reply = NULL;
    if (count <= 0) return 0;
    int got = gpuq_stream_prefetched(&w->st, w->entries, count, &reply);
    if (got > 0) take(w, got, reply);
    if (got == count) w->drained = 0;   /* more may be waiting */
    return got;
}

/* ---- publishing ---- */

/* Encodes t's result into w->sb: as it is, or, when it is larger than
 * Redis takes (a value over proto-max-bulk-len makes Redis drop the
 * connection rather than answer), as a too_large error in its place. */
static int encode_result(struct worker *w, struct gpuq_task *t, struct gpuq_result *r) {
    msgpack_sbuffer_clear(&w->sb);
    if (gpuq_result_encode(&w->sb, r) != 0) return -1;
    /* JSON text takes a third more for base64 */
    int64_t size = (int64_t)w->sb.size * (t->entry.is_json ? 4 : 3) / 3;
    if (size <= w->st.max_value - 4096) return 0;
    gpuq_job_fail(&t->job, GPUQ_ERR_TOO_LARGE, "result of %lld bytes is larger than Redis takes "
                  "(proto-max-bulk-len %lld)", (long long)size, (long long)w->st.max_value);
    r->err = t->job.err;
    r->errmsg = t->job.errmsg;
    msgpack_sbuffer_clear(&w->sb);
    return gpuq_result_encode(&w->sb, r);
}

/* Adds t's writes to the open transaction: result, reply push, webhook
 * record or dead letter, and its ack. Nothing is counted here: a
 * transaction Redis refuses is built again from the same tasks. */
static void publish_one(struct worker *w, struct gpuq_task *t) {
    const struct gpuq_entry *e = &t->entry;
    if (e->deleted) {   /* deleted while pending: nothing to run or answer */
        gpuq_stream_ack(&w->st, e->queue, e->id);
        return;
    }
    if (t->decoded == GPUQ_DECODE_UNDECODABLE) {
        msgpack_sbuffer_clear(&w->sb);
        gpuq_error_encode(&w->sb, t->job.err, t->job.errmsg);
        gpuq_stream_put_dead(&w->st, e->queue, e->payload, w->sb.data, w->sb.size,
                             e->deliveries ? e->deliveries : 1, (struct gpuq_str){NULL, 0});
        gpuq_stream_ack(&w->st, e->queue, e->id);
        return;
    }
    struct gpuq_job *job = &t->job;
    if (!t->total_us) {     /* first published; a job failed before compute queued all along */
        t->total_us = gpuq_now_us() - e->enqueued_ms * 1000;
        if (!t->queue_us && job->err) t->queue_us = t->total_us;
    }
    struct gpuq_result r = {
        .id = job->id.ptr ? job->id : e->id,
        .err = job->err,
        .errmsg = job->errmsg,
        .outputs = t->outputs,
        .n_outputs = t->n_outputs,
        .meta = job->meta,
        .queue_us = t->queue_us,
        .compute_us = t->compute_us,
        .total_us = t->total_us,
        .batch_size = t->batch_rows,
        .worker = w->cfg.consumer,
    };
    if (encode_result(w, t, &r) != 0) {
        log_error("job %.*s: out of memory encoding its result", (int)r.id.len, r.id.ptr);
        w->st.failed = 1;   /* leave it pending rather than ack it unanswered */
        return;
    }
    int64_t ttl = job->result_ttl >= 0 ? job->result_ttl : w->cfg.result_ttl;
    if (e->is_json) {   /* answered in the language it was asked in */
        size_t n;
        char *text = gpuq_json_from_msgpack(w->sb.data, w->sb.size, &n);
        if (!text) {
            log_error("job %.*s: out of memory writing its JSON result", (int)r.id.len, r.id.ptr);
            w->st.failed = 1;
            return;
        }
        gpuq_stream_put_result(&w->st, e->queue, r.id, text, n, ttl, job->reply_to);
        free(text);
    } else {
        gpuq_stream_put_result(&w->st, e->queue, r.id, w->sb.data, w->sb.size, ttl, job->reply_to);
    }
    if (t->cache_raw && !job->err) gpuq_cache_put(&w->st, t, w->cfg.embed_cache_ttl);
    if (job->callback.ptr) {
        struct gpuq_str fmt = {NULL, 0};
        gpuq_job_param_str(job, "callback_format", &fmt);
        gpuq_stream_put_hook(&w->st, e->queue, r.id, job->callback, fmt.len == 7, w->sb.data,
                             w->sb.size, e->payload);
        w->hooks_written = 1;
    }
    gpuq_stream_ack(&w->st, e->queue, e->id);
}

/* Once t's writes are applied: logs and counts what happened to it. */
static void account(struct worker *w, const struct gpuq_task *t) {
    const struct gpuq_entry *e = &t->entry;
    const struct gpuq_job *job = &t->job;
    struct gpuq_str id = job->id.ptr ? job->id : e->id;
    struct gpuq_log_fields f = {id.ptr, (int)id.len, w->st.queues[e->queue],
                                job->op >= 0 ? gpuq_op_name((enum gpuq_op)job->op) : NULL, job->model.ptr,
                                (int)job->model.len, job->err ? gpuq_err_code(job->err) : NULL};
    if (e->deleted) {
        log_info("entry %s on %s was deleted while pending; acked", e->id.ptr, w->st.queues[e->queue]);
    } else if (t->decoded == GPUQ_DECODE_UNDECODABLE) {
        gpuq_log_job(GPUQ_LOG_WARN, &f, "dead letter %s on %s: %s", e->id.ptr, w->st.queues[e->queue],
                     job->errmsg);
        gpuq_metrics_dead(w->metrics, e->queue, job->err);
        w->n_dead++;
    } else {
        if (job->err) {
            gpuq_log_job(GPUQ_LOG_INFO, &f, "job failed: %s", job->errmsg);
            w->n_failed++;
        } else {
            w->n_ok++;
        }
        gpuq_metrics_job(w->metrics, e->queue, job->op, t->model ? (int)(t->model - w->models) : -1,
                         job->err, t->queue_us / 1e6, t->compute_us ? t->compute_us / 1e6 : -1,
                         t->total_us / 1e6);
    }
}

/* Reply lists Redis refused in the last transaction: their jobs' results
 * were written and acked, only the pushes were lost. */
static void report_refused(struct worker *w) {
    for (int i = 0; i < w->st.n_refused; i++) {
        const struct gpuq_refused *f = &w->st.refused[i];
        log_warn("reply_to '%.*s': push refused for %d job%s, whose results are stored and acked: %s",
                 (int)(f->len > 80 ? 80 : f->len), f->key, f->jobs, f->jobs == 1 ? "" : "s", f->err);
        gpuq_metrics_push_failed(w->metrics, f->jobs);
        w->n_push_failed += (uint64_t)f->jobs;
    }
    gpuq_stream_refused_clear(&w->st);
}

/* A transaction bigger than this is cut: Redis buffers all of it before
 * applying any (client-query-buffer-limit), and so does the worker. */
#define PUBLISH_BYTES (64 << 20)

/* Sends answered tasks' writes as one transaction, without waiting: the
 * next batch computes while Redis applies it. At least one task goes; more
 * while the transaction stays under PUBLISH_BYTES. */
static int publish_send(struct worker *w) {
    if (w->n_done == 0 || gpuq_now_us() < w->refused_until_us) return 0;
    int n = 0, kept = 0, q = w->done[0]->entry.queue;
    gpuq_stream_begin(&w->st);
    /* on a cluster, the tasks of the first one's queue; the others wait their turn */
    for (int i = 0; i < w->n_done; i++) {
        struct gpuq_task *t = w->done[i];
        if (n > 0 && (w->st.tx_bytes >= PUBLISH_BYTES || !gpuq_stream_one_tx(&w->st, q, t->entry.queue))) {
            w->done[kept++] = t;
            continue;
        }
        publish_one(w, t);
        w->sending[n++] = t;
    }
    w->n_sending = n;
    w->n_done = kept;
    return gpuq_stream_send(&w->st);
}

/* The sent tasks go back to be published again, ahead of the others. */
static void unsend(struct worker *w) {
    memmove(w->done + w->n_sending, w->done, (size_t)w->n_done * sizeof(*w->done));
    memcpy(w->done, w->sending, (size_t)w->n_sending * sizeof(*w->done));
    w->n_done += w->n_sending;
    w->n_sending = 0;
}

/* Redis refused a transaction's writes: wait 100 ms, doubling to 5 s. */
static void back_off(struct worker *w, const char *what) {
    w->refused_ms = w->refused_ms ? (w->refused_ms * 2 > 5000 ? 5000 : w->refused_ms * 2) : 100;
    w->refused_until_us = gpuq_now_us() + w->refused_ms * 1000;
    /* out of memory or a read-only replica: looking whether that passed is cheap */
    w->refused_probe = !strncmp(w->st.errstr, "OOM", 3) || !strncmp(w->st.errstr, "READONLY", 8);
    w->refused_bytes = w->st.tx_bytes;
    log_warn("redis refused %s (%s); nothing acked, trying again in %lld ms", what, w->st.errstr,
             (long long)w->refused_ms);
}

/* Reads the sent transaction's replies, then lets its tasks go. When Redis
 * refused it (out of memory, read-only), the tasks are kept and published
 * again after a backoff of 100 ms doubling to 5 s; when it refused some
 * reply lists, at once without those pushes. Returns -1 only when the
 * connection is lost. */
static int publish_wait(struct worker *w) {
    if (w->n_sending == 0) return 0;
    int rc = gpuq_stream_wait(&w->st);
    if (rc == GPUQ_COMMIT_LOST) {
        log_error("could not write %d results (%s); they stay pending", w->n_sending, w->st.errstr);
        return -1;
    }
    if (rc == GPUQ_COMMIT_RETRY || rc == GPUQ_COMMIT_REFUSED) {
        unsend(w);
        if (rc == GPUQ_COMMIT_REFUSED) back_off(w, "the results");
        return 0;
    }
    if (w->refused_ms) log_info("redis takes writes again");
    w->refused_ms = w->refused_until_us = 0;
    if (rc == GPUQ_COMMIT_PARTIAL) log_warn("results written, but a command failed: %s", w->st.errstr);
    report_refused(w);
    for (int i = 0; i < w->n_sending; i++) {
        account(w, w->sending[i]);
        if (w->sending[i]->admitted) gpuq_sched_release(&w->sched, w->sending[i]);
        drop_task(w, w->sending[i]);
    }
    w->n_sending = 0;
    if (w->sb.alloc > GPUQ_STREAM_KEEP_BYTES) {     /* an outsized result was encoded */
        msgpack_sbuffer_destroy(&w->sb);
        msgpack_sbuffer_init(&w->sb);
        malloc_trim(0);     /* and what it and its batch freed goes back to the system */
    }
    return 0;
}

/* While Redis refuses writes: waits out the backoff, but when it refused
 * for want of memory (or as a replica), looks every 250 ms whether that
 * passed, so the worker resumes within a second of memory being freed. */
static void refused_wait(struct worker *w) {
    while (!stop_requested && gpuq_now_us() < w->refused_until_us) {
        int64_t left = w->refused_until_us - gpuq_now_us();
        sleep_us(left < 250000 ? left : 250000);
        if (w->refused_probe && gpuq_stream_writable(&w->st, w->refused_bytes) == 1) w->refused_until_us = 0;
    }
}

/* ---- running ---- */

/* Waits for the oldest batch under way; its finished tasks are answered. */
static void finish_batch(struct worker *w) {
    struct gpuq_batch b;
    gpuq_ops_finish(&w->ops, &b);
    if (b.rc != 0) log_error("batch of %d jobs (%lld rows) failed: %s", b.n, (long long)b.rows, b.why);
    if (b.rc == GPUQ_BE_LOST && !w->device_lost) {
        w->device_lost = 1;
        log_error("the device is lost: no more batches; exiting once results are written");
    }
    w->n_batches++;
    gpuq_sched_finished(&w->sched, b.p, b.n, b.us, b.rc == 0);
    if (b.n > 0)
        gpuq_metrics_batch(w->metrics, b.p[0].t->job.op,
                           b.p[0].t->model ? (int)(b.p[0].t->model - w->models) : -1, b.rows);
    if (b.split) gpuq_metrics_batch_trouble(w->metrics, 0);
    if (b.rc != 0) gpuq_metrics_batch_trouble(w->metrics, 1);
    for (int i = 0; i < b.n; i++) {
        struct gpuq_task *t = b.p[i].t;
        if (t->rows_done == t->rows) w->done[w->n_done++] = t;
    }
}

/* Starts the next ready batch, if any, and finishes the one before it: on
 * a backend with streams the new batch packs and uploads while the older
 * one computes. A batch with nothing behind it is finished at once.
 * Returns 1 when a batch started. */
static int run_batch(struct worker *w, int force, int64_t *wait_us) {
    struct gpuq_task *expired[64];
    int64_t now = gpuq_now_us();
    int n = gpuq_sched_expire(&w->sched, now / 1000, expired, 64);
    for (int i = 0; i < n; i++) {
        gpuq_job_fail(&expired[i]->job, GPUQ_ERR_DEADLINE_EXCEEDED, "deadline passed %lld ms "
                      "before the job could start", (long long)(now / 1000 - expired[i]->deadline_ms));
        w->done[w->n_done++] = expired[i];
    }
    n = w->device_lost ? 0 : gpuq_sched_next(&w->sched, now, force, w->pieces, (int)w->cfg.max_batch,
                                              wait_us);
    if (n > 0) gpuq_ops_start(&w->ops, w->pieces, n);
    int keep = n > 0 && gpuq_ops_async(&w->ops);
    while (gpuq_ops_pending(&w->ops) > keep) finish_batch(w);
    return n > 0;
}

/* Forgets everything held: nothing of it was acked, so Redis keeps it
 * pending for this consumer, to be read again from id 0. */
static void forget_all(struct worker *w) {
    while (gpuq_ops_pending(&w->ops) > 0) finish_batch(w);
    for (int i = 0; i < w->n_slots; i++)
        if (w->slots[i].held) drop_task(w, &w->slots[i]);
    w->sched.n = 0;
    w->sched.rows_held = 0;
    w->sched.held_us = 0;
    gpuq_webhooks_forget_all(w->hooks);     /* pending in Redis: claimed again when stale */
    w->n_done = 0;
    w->n_sending = 0;
    gpuq_stream_refused_clear(&w->st);
    w->refused_ms = w->refused_until_us = 0;
    w->pending_queue = 0;
    w->pending_end = w->st.n_queues;
    memset(w->rescan, 0, (size_t)w->st.n_queues);   /* the scan reads every queue */
    snprintf(w->pending_from, sizeof(w->pending_from), "0");
}

/* Waits for Redis with backoff and jitter. Returns -1 if asked to stop first. */
static int reconnect(struct worker *w) {
    int delay = 100;
    forget_all(w);
    gpuq_metrics_ready(w->metrics, 0);
    while (!stop_requested) {
        log_warn("redis: %s; reconnecting in %d ms", w->st.errstr, delay);
        sleep_us((delay + rand() % (delay / 4 + 1)) * 1000LL);
        if (stop_requested) break;
        if (gpuq_stream_connect(&w->st, 2000) == 0) {
            log_info("redis: reconnected");
            tell_down(w);
            gpuq_metrics_ready(w->metrics, 1);
            return 0;
        }
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }
    return -1;
}

/* Once a second, the gauges that are read rather than counted. */
static int sample(struct worker *w) {
    int64_t now = gpuq_now_us();
    if (!w->metrics || now - w->last_sample_us < 1000000) return 0;
    w->last_sample_us = now;
    gpuq_metrics_inflight(w->metrics, w->n_slots - w->n_free, w->sched.rows_held);
    int64_t used;
    if (w->be.iface->memory_used && w->be.iface->memory_used(&w->be, &used) == 0)
        gpuq_metrics_device_memory(w->metrics, used);
    for (int q = 0; q < w->st.n_queues; q++) {
        int64_t backlog, pending;
        if (gpuq_stream_queue_stats(&w->st, q, &backlog, &pending) != 0) return -1;
        gpuq_metrics_queue(w->metrics, q, backlog, pending);
    }
    return 0;
}

/* On a stop, what is held beyond --max-drain-ms of compute (counted from
 * since_us, when the stop was asked for) and has not started goes back to Redis for other workers to claim at once, its
 * delivery counts set back. If Redis cannot take that, it is computed. */
static int hand_back(struct worker *w, int64_t since_us) {
    struct gpuq_task *back[64];
    int total = 0, n, cap = w->cfg.max_batch < 64 ? (int)w->cfg.max_batch : 64;
    int64_t keep = w->cfg.max_drain_ms * 1000 - (gpuq_now_us() - since_us);
    if (w->cfg.max_drain_ms <= 0) return 0;
    while ((n = gpuq_sched_take_back(&w->sched, keep > 0 ? keep : 0, back, cap)) > 0) {
        for (int i = 0; i < n; i++) w->entries[i] = back[i]->entry;
        if (gpuq_stream_undeliver(&w->st, w->entries, n, w->cfg.claim_idle_ms) != 0) {
            log_warn("could not hand back %d jobs (%s): finishing them", n, w->st.errstr);
            for (int i = 0; i < n; i++) gpuq_sched_add(&w->sched, back[i], gpuq_now_us());
            break;
        }
        for (int i = 0; i < n; i++) drop_task(w, back[i]);
        total += n;
    }
    return total;
}

/* Whether the loop goes on: until stopped and all held is answered; with
 * the device lost, until what is answered is written. */
static int serving(const struct worker *w) {
    if (w->device_lost) return w->n_done > 0 || gpuq_ops_pending(&w->ops) > 0;
    return !stop_requested || w->sched.rows_held > 0 || w->n_done > 0;
}

static void serve(struct worker *w) {
    int told_stopping = 0;
    int64_t stop_us = 0;
    tell_down(w);
    while (serving(w)) {
        if (stopping(w) && !told_stopping) {    /* a Type=notify unit: the drain has begun */
            sd_notify(0, "STOPPING=1\nSTATUS=stopping: finishing the jobs held");
            told_stopping = 1;
            stop_us = stop_requested && stop_asked_us ? stop_asked_us : gpuq_now_us();
            int back = w->device_lost ? 0 : hand_back(w, stop_us);
            if (back > 0)
                log_info("handed back %d jobs not started, beyond --max-drain-ms %lld of compute, for "
                         "other workers to take at once", back, (long long)w->cfg.max_drain_ms);
            if (!w->device_lost)
                log_info("draining %d jobs (%lld rows, about %.1f s of compute)", w->n_slots - w->n_free,
                         (long long)w->sched.rows_held, gpuq_sched_held_us(&w->sched) / 1e6);
        }
        if (w->refused_ms && stop_requested) {
            log_warn("stopping while Redis refuses writes: %d results stay pending for other workers",
                     w->n_done);
            break;
        }
        refused_wait(w);
        int64_t wait_us = -1;
        int claim_now = claim_due(w);
        int fetched = fetch(w, claim_now);
        int prefetch;
        if (fetched >= 0 && publish_send(w) == 0 && (prefetch = prefetch_send(w)) >= 0) {
            /* nothing more can join a batch when the worker may not fetch; and
             * with the backend idle and nothing more waiting, waiting for
             * more only adds latency: batches grow while the backend is busy */
            int force = stopping(w) || gpuq_sched_room(&w->sched) <= 0 ||
                        (w->drained && gpuq_ops_pending(&w->ops) == 0);
            int ran = run_batch(w, force, &wait_us);    /* while Redis applies the last */
            int got = publish_wait(w) == 0 ? prefetch_take(w, prefetch) : -1;
            if (got >= 0 && hooks_step(w, claim_now) == 0 && sample(w) == 0) {
                if (!fetched && !got && !ran && w->n_done == 0) {
                    int64_t poll = w->cfg.max_delay_us / 8 > 100 ? w->cfg.max_delay_us / 8 : 100;
                    if (wait_us > 0 && wait_us < poll) poll = wait_us;
                    /* transfers in flight: wake on them, or after 1 ms for new jobs */
                    if (wait_us < 0 && poll < 1000) poll = 1000;
                    if (!gpuq_webhooks_wait(w->hooks, (int)((poll + 999) / 1000)) && (wait_us > 0 ||
                        gpuq_webhooks_idle_ms(w->hooks, gpuq_now_us(), 10) == 0))
                        sleep_us(poll);
                }
                continue;
            }
        }
        if (stopping(w)) {
            log_warn("stopping with Redis unreachable: %lld rows stay pending for other workers",
                     (long long)w->sched.rows_held);
            break;
        }
        if (reconnect(w) != 0) break;
    }
    if (!told_stopping) sd_notify(0, "STOPPING=1");
    else if (!w->device_lost) log_info("drained in %.2f s", (gpuq_now_us() - stop_us) / 1e6);
    if (gpuq_webhooks_held(w->hooks))
        log_info("%d webhook deliveries left recorded in Redis for any worker to finish",
                 gpuq_webhooks_held(w->hooks));
    if (w->device_lost)
        log_error("exiting with status 1 after losing the device: %lld rows held stay pending, to "
                  "be claimed by other workers after --claim-idle-ms", (long long)w->sched.rows_held);
    forget_all(w);      /* what is still held stays pending in Redis */
    if (!w->device_lost && w->st.rc) {
        int left = gpuq_stream_leave(&w->st);
        if (left > 0) log_info("left the consumer groups: nothing pending under %s", w->cfg.consumer);
    }
}

int gpuq_worker_main(int argc, char **argv) {
    struct worker w;
    char err[512];
    memset(&w, 0, sizeof(w));
    /* a write to a Redis that went away is an error to handle, at start too */
    signal(SIGPIPE, SIG_IGN);
    if (gpuq_worker_start(&w, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "gpuq worker: %s\n", err);
        gpuq_worker_finish(&w);
        return 2;
    }
    if (w.cfg.help) {
        gpuq_config_usage(stdout);
        gpuq_worker_finish(&w);
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;      /* no SA_RESTART: sleeps end early */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    srand((unsigned)gpuq_now_us());
    log_info("ready");
    sd_notifyf(0, "READY=1\nSTATUS=serving %d queue%s", w.cfg.n_queues, w.cfg.n_queues == 1 ? "" : "s");
    serve(&w);
    log_info("stopped: %llu ok, %llu errors, %llu dead letters, %llu batches, %llu webhooks "
             "delivered, %llu failed", (unsigned long long)w.n_ok, (unsigned long long)w.n_failed,
             (unsigned long long)w.n_dead, (unsigned long long)w.n_batches,
             (unsigned long long)w.n_delivered, (unsigned long long)w.n_hooks_failed);
    int lost = w.device_lost;
    gpuq_worker_finish(&w);
    return lost ? 1 : 0;
}
