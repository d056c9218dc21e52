/* publish.c -- writing what the worker answered: each task's result,
 * reply push, webhook record or dead letter and its ack, built into one
 * MULTI/EXEC sent while the next batch computes; a transaction Redis
 * refuses (out of memory, read-only) is built again after a backoff, and
 * only applied writes are counted and logged. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "queue/json.h"
#include "worker/cache.h"
#include "worker/clock.h"
#include "worker/log.h"
#include "worker/worker_int.h"

/* ---- publishing ---- */

/* Encodes t's result into w->sb: as it is, or, when it is larger than
 * Redis takes (a value over proto-max-bulk-len makes Redis drop the
 * connection rather than answer), as a too_large error in its place. */
static int encode_result(struct worker *w, struct worker_task *t, struct gpuq_result *r) {
    msgpack_sbuffer_clear(&w->sb);
    if (gpuq_result_encode(&w->sb, r) != 0) return -1;
    /* JSON text takes a third more for base64 */
    int64_t size = (int64_t)w->sb.size * (t->entry.is_json ? 4 : 3) / 3;
    if (size <= w->st.max_value - 4096) return 0;
    gpuq_job_fail(&t->t.job, GPUQ_ERR_TOO_LARGE, "result of %lld bytes is larger than Redis takes "
                  "(proto-max-bulk-len %lld)", (long long)size, (long long)w->st.max_value);
    r->err = t->t.job.err;
    r->errmsg = t->t.job.errmsg;
    msgpack_sbuffer_clear(&w->sb);
    return gpuq_result_encode(&w->sb, r);
}

/* Adds t's writes to the open transaction: result, reply push, webhook
 * record or dead letter, and its ack. Nothing is counted here: a
 * transaction Redis refuses is built again from the same tasks. */
static void publish_one(struct worker *w, struct worker_task *t) {
    const struct gpuq_entry *e = &t->entry;
    if (e->deleted) {   /* deleted while pending: nothing to run or answer */
        gpuq_stream_ack(&w->st, e->queue, e->id);
        return;
    }
    if (t->decoded == GPUQ_DECODE_UNDECODABLE) {
        msgpack_sbuffer_clear(&w->sb);
        gpuq_error_encode(&w->sb, t->t.job.err, t->t.job.errmsg);
        gpuq_stream_put_dead(&w->st, e->queue, e->payload, w->sb.data, w->sb.size,
                             e->deliveries ? e->deliveries : 1, (struct gpuq_str){NULL, 0});
        gpuq_stream_ack(&w->st, e->queue, e->id);
        return;
    }
    struct gpuq_job *job = &t->t.job;
    if (!t->total_us) {     /* first published; a job failed before compute queued all along */
        t->total_us = gpuq_now_us() - e->enqueued_ms * 1000;
        if (!t->queue_us && job->err) t->queue_us = t->total_us;
    }
    struct gpuq_result r = {
        .id = job->id.ptr ? job->id : e->id,
        .err = job->err,
        .errmsg = job->errmsg,
        .outputs = t->t.outputs,
        .n_outputs = t->t.n_outputs,
        .meta = job->meta,
        .queue_us = t->queue_us,
        .compute_us = t->compute_us,
        .total_us = t->total_us,
        .batch_size = t->batch_rows,
        .worker = w->cfg.consumer,
    };
    if (encode_result(w, t, &r) != 0) {
        log_error("job %.*s: out of memory encoding its result", (int)r.id.len, r.id.ptr);
        gpuq_stream_fail_tx(&w->st);   /* leave it pending rather than ack it unanswered */
        return;
    }
    int64_t ttl = job->result_ttl >= 0 ? job->result_ttl : w->cfg.result_ttl;
    if (e->is_json) {   /* answered in the language it was asked in */
        size_t n;
        char *text = gpuq_json_from_msgpack(w->sb.data, w->sb.size, &n);
        if (!text) {
            log_error("job %.*s: out of memory writing its JSON result", (int)r.id.len, r.id.ptr);
            gpuq_stream_fail_tx(&w->st);
            return;
        }
        gpuq_stream_put_result(&w->st, e->queue, r.id, text, n, ttl, job->reply_to);
        free(text);
    } else {
        gpuq_stream_put_result(&w->st, e->queue, r.id, w->sb.data, w->sb.size, ttl, job->reply_to);
    }
    if (t->cache_raw && !job->err) gpuq_cache_put(&w->st, t, w->cfg.embed_cache_ttl);
    if (job->callback.ptr) {
        gpuq_stream_put_hook(&w->st, e->queue, r.id, job->callback, job->callback_msgpack, w->sb.data,
                             w->sb.size, e->payload);
        w->hooks_written = 1;
    }
    gpuq_stream_ack(&w->st, e->queue, e->id);
}

/* Once t's writes are applied: logs and counts what happened to it. */
static void account(struct worker *w, const struct worker_task *t) {
    const struct gpuq_entry *e = &t->entry;
    const struct gpuq_job *job = &t->t.job;
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
        w->latency_us[w->n_latency++ % GPUQ_LATENCIES] = t->total_us;
        gpuq_metrics_job(w->metrics, e->queue, job->op, t->t.model ? (int)(t->t.model - w->models) : -1,
                         job->err, t->queue_us / 1e6, t->compute_us ? t->compute_us / 1e6 : -1,
                         t->total_us / 1e6);
    }
}

/* Reply lists Redis refused in the last transaction: their jobs' results
 * were written and acked, only the pushes were lost. */
static void report_refused(struct worker *w) {
    int n;
    const struct gpuq_refused *refused = gpuq_stream_refused(&w->st, &n);
    for (int i = 0; i < n; i++) {
        const struct gpuq_refused *f = &refused[i];
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
int gpuq_worker_publish_send(struct worker *w) {
    if (w->n_done == 0 || gpuq_now_us() < w->refused_until_us) return 0;
    int n = 0, kept = 0, q = w->done[0]->entry.queue;
    gpuq_stream_begin(&w->st);
    /* on a cluster, the tasks of the first one's queue; the others wait their turn */
    for (int i = 0; i < w->n_done; i++) {
        struct worker_task *t = w->done[i];
        if (n > 0 && (gpuq_stream_tx_bytes(&w->st) >= PUBLISH_BYTES ||
                      !gpuq_stream_one_tx(&w->st, q, t->entry.queue))) {
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
void gpuq_worker_back_off(struct worker *w, const char *what) {
    w->refused_ms = w->refused_ms ? (w->refused_ms * 2 > 5000 ? 5000 : w->refused_ms * 2) : 100;
    w->refused_until_us = gpuq_now_us() + w->refused_ms * 1000;
    /* out of memory or a read-only replica: looking whether that passed is cheap */
    w->refused_probe = !strncmp(w->st.errstr, "OOM", 3) || !strncmp(w->st.errstr, "READONLY", 8);
    w->refused_bytes = gpuq_stream_tx_bytes(&w->st);
    log_warn("redis refused %s (%s); nothing acked, trying again in %lld ms", what, w->st.errstr,
             (long long)w->refused_ms);
}

/* Reads the sent transaction's replies, then lets its tasks go. When Redis
 * refused it (out of memory, read-only), the tasks are kept and published
 * again after a backoff of 100 ms doubling to 5 s; when it refused some
 * reply lists, at once without those pushes. Returns -1 only when the
 * connection is lost. */
int gpuq_worker_publish_wait(struct worker *w) {
    if (w->n_sending == 0) return 0;
    int rc = gpuq_stream_wait(&w->st);
    if (rc == GPUQ_COMMIT_LOST) {
        log_error("could not write %d results (%s); they stay pending", w->n_sending, w->st.errstr);
        return -1;
    }
    if (rc == GPUQ_COMMIT_RETRY || rc == GPUQ_COMMIT_REFUSED) {
        unsend(w);
        if (rc == GPUQ_COMMIT_REFUSED) gpuq_worker_back_off(w, "the results");
        return 0;
    }
    if (w->refused_ms) log_info("redis takes writes again");
    w->refused_ms = w->refused_until_us = 0;
    if (rc == GPUQ_COMMIT_PARTIAL) log_warn("results written, but a command failed: %s", w->st.errstr);
    report_refused(w);
    for (int i = 0; i < w->n_sending; i++) {
        account(w, w->sending[i]);
        if (w->sending[i]->admitted) gpuq_sched_release(&w->sched, w->sending[i]);
        gpuq_worker_drop_task(w, w->sending[i]);
    }
    w->n_sending = 0;
    if (w->sb.alloc > GPUQ_STREAM_KEEP_BYTES) {     /* an outsized result was encoded */
        msgpack_sbuffer_destroy(&w->sb);
        msgpack_sbuffer_init(&w->sb);
        malloc_trim(0);     /* and what it and its batch freed goes back to the system */
    }
    return 0;
}
