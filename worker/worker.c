/* worker.c -- the serving loop (start-up is in start.c, publishing in
 * publish.c, the webhook streams in hooks.c).
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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "base/invariant.h"
#include "queue/json.h"
#include "worker/cache.h"
#include "worker/log.h"
#include "worker/worker_int.h"

/* SIGTERM and SIGINT are blocked in every thread from the start, so that
 * none lands in a compute thread (oneDNN's OpenMP pool) or cuts a syscall
 * short there; the loop takes them with sigtimedwait, and its sleeps are
 * waits for them. */
static sigset_t stop_signals;
static int stop_requested;
static int64_t stop_asked_us;   /* when the loop took the stop: the drain bound counts from then */

/* Takes a pending stop signal, waiting for one up to us (0: not at all). */
static void take_signals(int64_t us) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    if (stop_requested) return;
    if (sigtimedwait(&stop_signals, NULL, &ts) > 0) {
        stop_requested = 1;
        stop_asked_us = gpuq_now_us();
    }
}

/* No new work: asked to stop, or the device is lost. */
static int stopping(const struct worker *w) { return stop_requested || w->device_lost; }

/* Sleeps us, or less when asked to stop. */
static void sleep_us(int64_t us) {
    int64_t end = gpuq_now_us() + us;
    while (!stop_requested && (us = end - gpuq_now_us()) > 0) take_signals(us);
}

/* ---- admitting jobs ---- */

static void unhold(struct held *h) {
    if (h && --h->refs == 0) {
        freeReplyObject(h->reply);
        free(h);
    }
}

/* Gives a task back: its job, output and reply reference. */
void gpuq_worker_drop_task(struct worker *w, struct worker_task *t) {
    if (t->t.out) gpuq_pool_put(&w->pool, t->t.out, t->t.out_bytes);
    gpuq_cache_forget(t);
    gpuq_job_free(&t->t.job);
    free(t->json_job);
    free(t->t.own);
    unhold(t->held);
    memset(t, 0, sizeof(*t));
    GPUQ_INVARIANT(w->n_free < w->n_slots);
    w->free_slots[w->n_free++] = t;
}

/* t is answered: published with the next batch of results. */
static void answered(struct worker *w, struct worker_task *t) {
    GPUQ_INVARIANT(w->n_done < w->n_slots);
    w->done[w->n_done++] = t;
}

/* Keys no job may name as its reply_to: the served queues' own. */
static int owns_key(const void *st, struct gpuq_str key) { return gpuq_stream_owns_key(st, key); }

/* An entry that will not run: answered with a dead letter, never an error result. */
static void dead_letter(struct worker *w, struct worker_task *t, enum gpuq_err code, const char *why) {
    memset(&t->t.job, 0, sizeof(t->t.job));
    msgpack_unpacked_init(&t->t.job.msg);
    t->t.job.op = -1;   /* not decoded: its log lines name no op */
    t->decoded = GPUQ_DECODE_UNDECODABLE;
    gpuq_job_fail(&t->t.job, code, "%s", why);
    answered(w, t);
}

static void schedule(struct worker *w, struct worker_task *t) {
    /* the task slots bound the jobs held, and the scheduler has room for them all */
    if (gpuq_sched_add(&w->sched, t, gpuq_now_us()) != 0) {
        log_error("the scheduler is full with %d task slots: a bug", w->n_slots);
        abort();
    }
    t->admitted = 1;
}

static void admit(struct worker *w, struct worker_task *t) {
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
    struct gpuq_job *job = &t->t.job;
    const struct gpuq_job_rules rules = {owns_key, &w->st};
    t->decoded = gpuq_job_decode(job, bytes.ptr, bytes.len, &rules);
    if (t->decoded == GPUQ_DECODE_OK) {
        int64_t deadline = job->deadline_ms, timeout = job->timeout_ms;
        if (timeout) {  /* saturates: a timeout of 2^63-1 ms is "never", not the past */
            timeout = timeout > INT64_MAX - e->enqueued_ms ? INT64_MAX : e->enqueued_ms + timeout;
            if (!deadline || timeout < deadline) deadline = timeout;
        }
        t->deadline_ms = deadline;
        if (gpuq_ops_prepare(&w->ops, &t->t) == 0 && !(t->t.out = gpuq_pool_get(&w->pool, t->t.out_bytes)))
            gpuq_job_fail(job, GPUQ_ERR_INTERNAL, "out of memory for the job's outputs");
    }
    if (t->decoded == GPUQ_DECODE_OK && !job->err) {
        if (w->salts && t->t.model && gpuq_cache_name(t, w->salts[t->t.model - w->models]) == 0) {
            w->lookups[w->n_lookups++] = t;     /* scheduled once the cache is read */
            return;
        }
        schedule(w, t);
        return;
    }
    answered(w, t);
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
        struct worker_task *t = w->lookups[i];
        if (!t->cache_hit) {
            schedule(w, t);
            continue;
        }
        t->rows_done = t->t.rows;
        GPUQ_INVARIANT(t->t.job.op >= 0 && t->t.job.op < GPUQ_OP_COUNT);
        gpuq_op_table[t->t.job.op]->finish(&t->t);
        answered(w, t);
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
    GPUQ_INVARIANT(got <= w->n_free);      /* every read asks for no more than the free slots */
    for (int i = 0; i < got; i++) {
        struct worker_task *t = w->free_slots[--w->n_free];
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
    /* the last read just found the only queue drained: with a job held or
     * results to write, go on to them without another round trip (the next
     * transaction reads behind itself); at most twice, the job's run and
     * its results' write */
    if (w->skip_reads > 0 && !claim_now && w->pending_queue < 0 && (w->sched.rows_held > 0 || w->n_done > 0)) {
        w->skip_reads--;
        w->drained = 1;
        return 0;
    }
    w->skip_reads = 0;
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
    w->skip_reads = w->drained && w->st.n_queues == 1 ? 2 : 0;
    return total;
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
        if (w->sending[i]->admitted) room += w->sending[i]->t.rows;
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
    w->skip_reads = got >= 0 && got < count && w->st.n_queues == 1 ? 2 : 0;
    return got;
}

/* ---- waiting out a refusal ---- */

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
        struct worker_task *t = worker_task_of(b.p[i].t);
        if (t->rows_done == t->t.rows) answered(w, t);
    }
}

/* Starts the next ready batch, if any, and finishes the one before it: on
 * a backend with streams the new batch packs and uploads while the older
 * one computes. A batch with nothing behind it is finished at once.
 * Returns 1 when a batch started. */
static int run_batch(struct worker *w, int force, int64_t *wait_us) {
    struct worker_task *expired[64];
    int64_t now = gpuq_now_us();
    int n = gpuq_sched_expire(&w->sched, now / 1000, expired, 64);
    for (int i = 0; i < n; i++) {
        gpuq_job_fail(&expired[i]->t.job, GPUQ_ERR_DEADLINE_EXCEEDED, "deadline passed %lld ms "
                      "before the job could start", (long long)(now / 1000 - expired[i]->deadline_ms));
        answered(w, expired[i]);
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
        if (w->slots[i].held) gpuq_worker_drop_task(w, &w->slots[i]);
    w->sched.n = 0;
    w->sched.rows_held = 0;
    w->sched.held_us = 0;
    gpuq_webhooks_forget_all(w->hooks);     /* pending in Redis: claimed again when stale */
    w->n_done = 0;
    w->n_sending = 0;
    w->skip_reads = 0;
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
    struct worker_task *back[64];
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
        for (int i = 0; i < n; i++) gpuq_worker_drop_task(w, back[i]);
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
    while (take_signals(0), serving(w)) {
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
        if (fetched >= 0 && gpuq_worker_publish_send(w) == 0 && (prefetch = prefetch_send(w)) >= 0) {
            /* nothing more can join a batch when the worker may not fetch; and
             * with the backend idle and nothing more waiting, waiting for
             * more only adds latency: batches grow while the backend is busy */
            int force = stopping(w) || gpuq_sched_room(&w->sched) <= 0 ||
                        (w->drained && gpuq_ops_pending(&w->ops) == 0);
            int ran = run_batch(w, force, &wait_us);    /* while Redis applies the last */
            int got = gpuq_worker_publish_wait(w) == 0 ? prefetch_take(w, prefetch) : -1;
            if (got >= 0 && gpuq_worker_hooks_step(w, claim_now) == 0 && sample(w) == 0 &&
                gpuq_worker_advertise(w, 0) == 0) {
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
    if (w->st.rc) gpuq_worker_advertise(w, 1);
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
    /* before any thread exists, so that every one inherits the mask */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
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
    srand((unsigned)gpuq_now_us());
    gpuq_worker_advertise(&w, 0);   /* listed as live from the start */
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
