/* hooks.c -- the worker's side of the webhook streams: taking deliveries
 * owed (new, claimed from dead workers, or due for another attempt), and
 * recording what became of them (delivered: acked and deleted; failed: a
 * dead letter too) in one transaction per group of queues that may share
 * one. The transfers themselves are webhook.c's. */
#include <stdio.h>
#include <string.h>

#include "worker/clock.h"
#include "worker/log.h"
#include "worker/worker_int.h"

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
        if (rc < 0) gpuq_worker_back_off(w, "a webhook ack");   /* it stays pending meanwhile */
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
        gpuq_worker_back_off(w, "webhook outcomes");
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
int gpuq_worker_hooks_step(struct worker *w, int claim_now) {
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
