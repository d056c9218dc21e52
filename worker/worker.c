/* worker.c -- the serving loop.
 *
 * One thread turns the wheel: fetch while there is room (the backlog beyond
 * --max-inflight rows stays in Redis), hand each job to the scheduler (or
 * answer it at once if it is invalid), run the next ready batch, and write
 * every finished job's result, dead letter and ack in one MULTI/EXEC.
 * Nothing is acked before its result is written. If Redis is lost, the
 * worker forgets all it holds, reconnects, and reads its own pending entries
 * again: Redis, not the worker, is the record of what is owed. */
#include "worker/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "queue/json.h"
#include "queue/stream.h"
#include "worker/log.h"
#include "worker/metrics.h"
#include "worker/ops.h"
#include "worker/sched.h"
#include "worker/webhook.h"

/* A reply from Redis, kept until every entry borrowed from it is answered. */
struct held {
    redisReply *reply;
    int refs;
};

#define POOL_CLASSES 40

struct worker {
    struct gpuq_config cfg;
    struct gpuq_stream st;
    struct gpuq_backend be, cpu;
    struct gpuq_ops ops;
    struct gpuq_sched sched;
    struct gpuq_webhooks *hooks;
    struct gpuq_metrics *metrics;   /* NULL without --metrics-addr */
    int64_t last_sample_us;
    struct gpuq_model *models;
    int n_models;
    int n_slots;
    struct gpuq_task *slots;
    struct gpuq_task **free_slots;
    int n_free;
    struct gpuq_task **done;    /* answered, to be published */
    int n_done;
    struct gpuq_task **sending; /* published, replies not yet read */
    int n_sending;
    struct gpuq_entry *entries; /* one read's worth */
    struct gpuq_piece *pieces;
    void *pool[POOL_CLASSES];   /* free output buffers by size class */
    msgpack_sbuffer sb;
    int pending_queue;          /* reading our own pending entries: this queue; -1 when done */
    char pending_from[64];
    int64_t last_claim_us;
    int hooks_written;          /* this worker recorded deliveries: read them */
    uint64_t n_ok, n_failed, n_dead, n_batches, n_delivered, n_hooks_failed;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(int64_t us) {
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested) {}
}

/* ---- output buffers: power-of-two classes, reused, so a steady stream of
 * jobs allocates nothing ---- */

static int size_class(size_t words) {
    int c = 6;
    while (((size_t)1 << c) < words) c++;
    return c;
}

static float *pool_get(struct worker *w, size_t words) {
    int c = size_class(words);
    if (c >= POOL_CLASSES) return NULL;
    void *p = w->pool[c];
    if (p) {
        w->pool[c] = *(void **)p;
        return p;
    }
    return malloc(((size_t)1 << c) * sizeof(float));
}

static void pool_put(struct worker *w, float *p, size_t words) {
    if (!p) return;
    int c = size_class(words);
    *(void **)p = w->pool[c];
    w->pool[c] = p;
}

static void pool_free(struct worker *w) {
    for (int c = 0; c < POOL_CLASSES; c++)
        while (w->pool[c]) {
            void *p = w->pool[c];
            w->pool[c] = *(void **)p;
            free(p);
        }
}

/* ---- start-up ---- */

static int load_models(struct worker *w, char *err, size_t errlen) {
    w->models = calloc((size_t)w->cfg.n_models + 1, sizeof(*w->models));
    if (!w->models) return -1;
    for (int i = 0; i < w->cfg.n_models; i++) {
        const char *spec = w->cfg.models[i], *eq = strchr(spec, '=');
        char name[128], why[384];
        if (!eq || eq == spec || !eq[1] || (size_t)(eq - spec) >= sizeof(name)) {
            snprintf(err, errlen, "--model '%s': want NAME=PATH", spec);
            return -1;
        }
        snprintf(name, sizeof(name), "%.*s", (int)(eq - spec), spec);
        for (int j = 0; j < w->n_models; j++)
            if (strcmp(w->models[j].name, name) == 0) {
                snprintf(err, errlen, "--model: '%s' given twice", name);
                return -1;
            }
        struct gpuq_model *m = &w->models[w->n_models];
        if (gpuq_model_load(m, name, eq + 1, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "--model %s: %s", name, why);
            return -1;
        }
        w->n_models++;
        if (w->be.iface->model_load(&w->be, m) != 0) {
            snprintf(err, errlen, "--model %s: %s backend: %s", name, w->be.iface->name, w->be.errstr);
            return -1;
        }
    }
    return 0;
}

static void log_summary(struct worker *w, const struct gpuq_redis_url *url) {
    log_info("gpuq %s worker %s: backend %s", GPUQ_VERSION, w->cfg.consumer, w->be.desc);
    char cpu_ops[128] = "";
    for (int op = 0; op < GPUQ_OP_COUNT; op++)
        if (!gpuq_ops_on_backend(&w->ops, (enum gpuq_op)op))
            snprintf(cpu_ops + strlen(cpu_ops), sizeof(cpu_ops) - strlen(cpu_ops), " %s",
                     gpuq_op_name((enum gpuq_op)op));
    if (cpu_ops[0]) log_info("ops on the CPU backend:%s", cpu_ops);
    for (int i = 0; i < w->n_models; i++) {
        const struct gpuq_model *m = &w->models[i];
        if (m->kind == GPUQ_MODEL_MLP)
            log_info("model %s: mlp %d layers, %d -> %d, %s", m->name, m->n_layers,
                     gpuq_model_in_dim(m), gpuq_model_out_dim(m), gpuq_act_name(m->act));
        else
            log_info("model %s: index %lld x %d", m->name, (long long)m->n_rows, m->dim);
    }
    if (w->cfg.metrics_addr) log_info("metrics on http://%s/metrics, /healthz, /readyz", w->cfg.metrics_addr);
    if (!w->cfg.webhook_secret) log_info("no --webhook-secret: webhooks are sent unsigned");
    char queues[256] = "";
    for (int i = 0; i < w->cfg.n_queues; i++)
        snprintf(queues + strlen(queues), sizeof(queues) - strlen(queues), "%s%s", i ? "," : "",
                 w->cfg.queues[i]);
    log_info("serving %s on %s prefix %s: max-batch %lld rows, max-delay %lld us, max-inflight "
             "%lld rows, result-ttl %lld s", queues, url->path[0] ? url->path : url->host,
             w->cfg.prefix, (long long)w->cfg.max_batch, (long long)w->cfg.max_delay_us,
             (long long)w->cfg.max_inflight, (long long)w->cfg.result_ttl);
}

static int start(struct worker *w, int argc, char **argv, char *err, size_t errlen) {
    struct gpuq_redis_url url;
    if (gpuq_config_parse(&w->cfg, argc, argv, err, errlen) != 0) return -1;
    if (w->cfg.help) return 0;
    static const char *levels[] = {"debug", "info", "warn", "error"};
    int level = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(w->cfg.log_level, levels[i]) == 0) level = i;
    if (level < 0) {
        snprintf(err, errlen, "--log-level '%s': want debug, info, warn or error", w->cfg.log_level);
        return -1;
    }
    gpuq_log_set_level((enum gpuq_log_level)level);
    if (strcmp(w->cfg.log_format, "text") != 0 && strcmp(w->cfg.log_format, "json") != 0) {
        snprintf(err, errlen, "--log-format '%s': want text or json", w->cfg.log_format);
        return -1;
    }
    gpuq_log_set_json(strcmp(w->cfg.log_format, "json") == 0);
    if (gpuq_redis_url_parse(&url, w->cfg.redis, err, errlen) != 0) return -1;
    gpuq_backend_cpu_threads((int)w->cfg.cpu_threads);
    if (!(w->hooks = gpuq_webhooks_create(w->cfg.webhook_secret, (int)w->cfg.max_attempts,
                                          w->cfg.webhook_backoff_ms, w->cfg.webhook_timeout_ms, err,
                                          errlen)))
        return -1;
    if (gpuq_backend_create(&w->be, w->cfg.backend, (int)w->cfg.device, err, errlen) != 0) return -1;
    if (gpuq_backend_cpu_init(&w->cpu) != 0) return -1;
    if (load_models(w, err, errlen) != 0) return -1;
    w->ops = (struct gpuq_ops){.be = &w->be, .cpu = &w->cpu, .models = w->models,
                               .n_models = w->n_models};
    /* every job brings at least one row, so rows bound the jobs held */
    w->n_slots = (int)(w->cfg.max_inflight + w->cfg.max_batch);
    w->slots = calloc((size_t)w->n_slots, sizeof(*w->slots));
    w->free_slots = calloc((size_t)w->n_slots, sizeof(*w->free_slots));
    w->done = calloc((size_t)w->n_slots, sizeof(*w->done));
    w->sending = calloc((size_t)w->n_slots, sizeof(*w->sending));
    w->entries = calloc((size_t)w->cfg.max_batch, sizeof(*w->entries));
    w->pieces = calloc((size_t)w->cfg.max_batch, sizeof(*w->pieces));
    if (!w->slots || !w->free_slots || !w->done || !w->sending || !w->entries || !w->pieces ||
        gpuq_sched_init(&w->sched, w->cfg.max_batch, w->cfg.max_delay_us, w->cfg.max_inflight,
                        w->n_slots) != 0)
        return -1;
    for (int i = 0; i < w->n_slots; i++) w->free_slots[w->n_free++] = &w->slots[w->n_slots - 1 - i];
    if (gpuq_stream_init(&w->st, &url, w->cfg.prefix, w->cfg.queues, w->cfg.n_queues,
                         w->cfg.consumer) != 0)
        return -1;
    if (gpuq_stream_connect(&w->st, 2000) != 0) {
        snprintf(err, errlen, "cannot use Redis at %s: %s", url.path[0] ? url.path : url.host,
                 w->st.errstr);
        return -1;
    }
    if (w->cfg.metrics_addr) {
        if (!(w->metrics = gpuq_metrics_create(w->cfg.queues, w->cfg.n_queues, w->be.iface->name, w->be.desc)))
            return -1;
        if (gpuq_metrics_serve(w->metrics, w->cfg.metrics_addr, err, errlen) != 0) return -1;
        gpuq_metrics_ready(w->metrics, 1);
    }
    msgpack_sbuffer_init(&w->sb);
    w->pending_queue = 0;   /* a restarted worker with a fixed --consumer finishes its own */
    snprintf(w->pending_from, sizeof(w->pending_from), "0");
    log_summary(w, &url);
    return 0;
}

static void finish(struct worker *w) {
    for (int i = 0; i < w->n_models; i++) {
        if (w->be.iface) w->be.iface->model_free(&w->be, &w->models[i]);
        gpuq_model_free(&w->models[i]);
    }
    free(w->models);
    gpuq_ops_free(&w->ops);
    gpuq_backend_destroy(&w->be);
    gpuq_backend_destroy(&w->cpu);
    gpuq_stream_free(&w->st);
    gpuq_sched_free(&w->sched);
    gpuq_webhooks_destroy(w->hooks);
    gpuq_metrics_destroy(w->metrics);
    msgpack_sbuffer_destroy(&w->sb);
    pool_free(w);
    free(w->slots);
    free(w->free_slots);
    free(w->done);
    free(w->sending);
    free(w->entries);
    free(w->pieces);
    gpuq_config_free(&w->cfg);
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
    if (t->out) pool_put(w, t->out, t->out_words);
    gpuq_job_free(&t->job);
    free(t->json_job);
    unhold(t->held);
    memset(t, 0, sizeof(*t));
    w->free_slots[w->n_free++] = t;
}

static void admit(struct worker *w, struct gpuq_task *t) {
    const struct gpuq_entry *e = &t->entry;
    if (e->deliveries > w->cfg.max_attempts && !e->deleted) {
        memset(&t->job, 0, sizeof(t->job));
        msgpack_unpacked_init(&t->job.msg);
        t->decoded = GPUQ_DECODE_UNDECODABLE;   /* not to be run again: a dead letter */
        gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "delivered %lld times, more than --max-attempts "
                      "%lld: its worker died each time", (long long)e->deliveries,
                      (long long)w->cfg.max_attempts);
        w->done[w->n_done++] = t;
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
        memset(&t->job, 0, sizeof(t->job));
        msgpack_unpacked_init(&t->job.msg);
        t->decoded = GPUQ_DECODE_UNDECODABLE;
        gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, e->is_json ? "json is not a JSON object"
                      : "entry has no job field");
        w->done[w->n_done++] = t;
        return;
    }
    t->decoded = gpuq_job_decode(&t->job, bytes.ptr, bytes.len);
    if (t->decoded == GPUQ_DECODE_OK) {
        int64_t deadline = t->job.deadline_ms;
        if (t->job.timeout_ms && (!deadline || e->enqueued_ms + t->job.timeout_ms < deadline))
            deadline = e->enqueued_ms + t->job.timeout_ms;
        t->deadline_ms = deadline;
        struct gpuq_str fmt = {NULL, 0};
        if (gpuq_job_param_str(&t->job, "callback_format", &fmt) > 0 &&
            !(fmt.len == 4 && !memcmp(fmt.ptr, "json", 4)) && !(fmt.len == 7 && !memcmp(fmt.ptr, "msgpack", 7)))
            gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "callback_format must be json or msgpack");
        else if (gpuq_ops_prepare(&w->ops, t) == 0 && !(t->out = pool_get(w, t->out_words)))
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "out of memory for the job's outputs");
    }
    if (t->decoded == GPUQ_DECODE_OK && !t->job.err) {
        if (gpuq_sched_add(&w->sched, t, now_us()) == 0) {
            t->admitted = 1;
            return;
        }
        gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "worker full");   /* slots bound it: a bug */
    }
    w->done[w->n_done++] = t;
}

/* Turns got entries (borrowed from reply) into tasks. */
static void take(struct worker *w, int got, redisReply *reply) {
    struct held *h = malloc(sizeof(*h));
    if (!h) {
        freeReplyObject(reply);
        return;     /* they stay pending for us; read again after a reconnect */
    }
    *h = (struct held){reply, got};
    for (int i = 0; i < got; i++) {
        struct gpuq_task *t = w->free_slots[--w->n_free];
        t->entry = w->entries[i];
        t->held = h;
        admit(w, t);
    }
}

static int fetch_count(struct worker *w, int count) {
    if (count > w->n_free) count = w->n_free;
    return count > w->cfg.max_batch ? (int)w->cfg.max_batch : count;
}

/* One XREADGROUP; each entry becomes a task. Returns the count, -1 when Redis failed. */
static int read_into(struct worker *w, int first, int n, int count, int block_ms, const char *from) {
    redisReply *reply = NULL;
    if ((count = fetch_count(w, count)) <= 0) return 0;
    int got = gpuq_stream_read(&w->st, first, n, count, block_ms, from, w->entries, count, &reply);
    if (got <= 0) return got;
    if (from[0] != '>')
        snprintf(w->pending_from, sizeof(w->pending_from), "%.*s", (int)w->entries[got - 1].id.len,
                 w->entries[got - 1].id.ptr);
    take(w, got, reply);
    return got;
}

/* Whether it is time to look for what dead workers left pending: every
 * quarter of the idle time, between 50 ms and 5 s. */
static int claim_due(struct worker *w) {
    int64_t now = now_us(), every = w->cfg.claim_idle_ms * 250;
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

/* Fetches what there is room for, so that priorities and deadlines order
 * everything the worker may hold: our own pending entries first (after a
 * start or a reconnect), then the queues strictly in order, each until it is
 * drained or the room is used. Blocks briefly only when the worker holds
 * nothing at all. Returns entries read, or -1 when Redis failed. */
static int fetch(struct worker *w, int claim_now) {
    int total = 0, got;
    if (stop_requested) return 0;
    /* our own pending entries first; claiming before that would read what
     * it just claimed a second time (it is pending for us then, too) */
    if (claim_now && w->pending_queue < 0 && (total = claim(w)) < 0) return -1;
    while (w->pending_queue >= 0) {
        int64_t room = gpuq_sched_room(&w->sched);
        if (room <= 0) return total;
        if ((got = read_into(w, w->pending_queue, 1, (int)room, -1, w->pending_from)) < 0) return -1;
        total += got;
        if (got > 0) continue;
        if (++w->pending_queue == w->st.n_queues) w->pending_queue = -1;
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
    if (total == 0 && w->n_done == 0 && w->sched.rows_held == 0 && !gpuq_webhooks_held(w->hooks)) {
        int64_t room = gpuq_sched_room(&w->sched);
        return read_into(w, 0, w->st.n_queues, room < w->cfg.max_batch ? (int)room
                         : (int)w->cfg.max_batch, 100, ">");
    }
    return total;
}

/* ---- webhooks ---- */

/* Takes new and stale deliveries, keeps held ones fresh, moves transfers
 * along, and records finished deliveries (delivered: acked and deleted;
 * given up: a dead letter too). Returns -1 when Redis failed. */
static int hooks_step(struct worker *w, int claim_now) {
    struct gpuq_entry *e = w->entries;
    int cap = (int)w->cfg.max_batch, room = gpuq_webhooks_room(w->hooks), got;
    redisReply *reply = NULL;
    if (claim_now) {
        for (int q = 0; q < w->st.n_queues; q++) {
            const char *ids[64];
            int n = gpuq_webhooks_ids(w->hooks, q, ids, 64);
            if (n > 0 && gpuq_stream_touch_hooks(&w->st, q, ids, n) != 0) return -1;
            if (room <= 0) continue;
            got = gpuq_stream_claim(&w->st, GPUQ_STREAM_HOOKS, q, w->cfg.claim_idle_ms,
                                    room < cap ? room : cap, e, cap, &reply);
            if (got < 0) return -1;
            for (int i = 0; i < got; i++)
                if (!gpuq_webhooks_holds(w->hooks, q, e[i].id) && gpuq_webhooks_add(w->hooks, &e[i]) == 0)
                    room--;
            freeReplyObject(reply);
            reply = NULL;
        }
    }
    /* new deliveries are read when this worker wrote some, else on the tick:
     * no extra round trip per batch for queues without webhooks */
    if (room > 0 && (w->hooks_written || claim_now)) {
        w->hooks_written = 0;
        if ((got = gpuq_stream_read_hooks(&w->st, room < cap ? room : cap, e, cap, &reply)) < 0) return -1;
        for (int i = 0; i < got; i++)
            if (gpuq_webhooks_add(w->hooks, &e[i]) != 0) {
                /* malformed: nothing to deliver; do not keep it pending forever */
                log_error("webhook entry %s is malformed; dropped", e[i].id.ptr);
                gpuq_stream_begin(&w->st);
                gpuq_stream_hook_done(&w->st, e[i].queue, e[i].id);
                if (gpuq_stream_commit(&w->st) < 0) return -1;
            }
        freeReplyObject(reply);
    }
    struct gpuq_delivery *done[64];
    int n = gpuq_webhooks_pump(w->hooks, now_us(), done, 64);
    if (n == 0) return 0;
    gpuq_stream_begin(&w->st);
    for (int i = 0; i < n; i++) {
        struct gpuq_delivery *d = done[i];
        struct gpuq_str id = {d->entry_id, strlen(d->entry_id)};
        if (!d->delivered) {
            char msg[256];
            snprintf(msg, sizeof(msg), "%d attempts to %.*s failed; the last: %s", d->attempts,
                     (int)(d->url.len > 120 ? 120 : d->url.len), d->url.ptr, d->error);
            msgpack_sbuffer_clear(&w->sb);
            gpuq_error_encode(&w->sb, GPUQ_ERR_WEBHOOK_FAILED, msg);
            gpuq_stream_put_dead(&w->st, d->queue, d->job, w->sb.data, w->sb.size, d->attempts, d->url);
            log_warn("webhook dead letter: %s", msg);
            gpuq_metrics_dead(w->metrics, d->queue, GPUQ_ERR_WEBHOOK_FAILED);
        }
        gpuq_stream_hook_done(&w->st, d->queue, id);
    }
    if (gpuq_stream_commit(&w->st) < 0) return -1;
    for (int i = 0; i < n; i++) {
        done[i]->delivered ? w->n_delivered++ : w->n_hooks_failed++;
        gpuq_metrics_webhook(w->metrics, done[i]->delivered);
        gpuq_webhooks_forget(w->hooks, done[i]);
    }
    return 0;
}

/* ---- prefetching ---- */

/* Behind a sent transaction, asks for the new entries of the first queue
 * there will be room for once it is applied: Redis answers both while the
 * next batch computes. Returns the count asked for (0: none), or -1. */
static int prefetch_send(struct worker *w) {
    if (w->n_sending == 0 || w->pending_queue >= 0 || stop_requested) return 0;
    int64_t room = gpuq_sched_room(&w->sched);
    for (int i = 0; i < w->n_sending; i++)
        if (w->sending[i]->admitted) room += w->sending[i]->rows;
    int64_t count = w->n_free + w->n_sending;
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
    return got;
}

/* ---- publishing ---- */

static void publish_one(struct worker *w, struct gpuq_task *t) {
    const struct gpuq_entry *e = &t->entry;
    msgpack_sbuffer_clear(&w->sb);
    if (e->deleted) {   /* deleted while pending: nothing to run or answer */
        gpuq_stream_ack(&w->st, e->queue, e->id);
        log_info("entry %s on %s was deleted while pending; acked", e->id.ptr, w->st.queues[e->queue]);
        return;
    }
    if (t->decoded == GPUQ_DECODE_UNDECODABLE) {
        gpuq_error_encode(&w->sb, t->job.err, t->job.errmsg);
        gpuq_stream_put_dead(&w->st, e->queue, e->payload, w->sb.data, w->sb.size,
                             e->deliveries ? e->deliveries : 1, (struct gpuq_str){NULL, 0});
        gpuq_stream_ack(&w->st, e->queue, e->id);
        log_warn("dead letter %s on %s: %s", e->id.ptr, w->st.queues[e->queue], t->job.errmsg);
        gpuq_metrics_dead(w->metrics, e->queue, t->job.err);
        w->n_dead++;
        return;
    }
    struct gpuq_job *job = &t->job;
    struct gpuq_result r = {
        .id = job->id.ptr ? job->id : e->id,
        .err = job->err,
        .errmsg = job->errmsg,
        .outputs = t->outputs,
        .n_outputs = t->n_outputs,
        .meta = job->meta,
        .queue_us = t->queue_us,
        .compute_us = t->compute_us,
        .total_us = now_us() - e->enqueued_ms * 1000,
        .batch_size = t->batch_rows,
        .worker = w->cfg.consumer,
    };
    if (job->err) {
        log_debug("job %.*s: %s: %s", (int)r.id.len, r.id.ptr, gpuq_err_code(job->err), job->errmsg);
        if (!r.queue_us) r.queue_us = r.total_us;
        w->n_failed++;
    } else {
        w->n_ok++;
    }
    if (gpuq_result_encode(&w->sb, &r) != 0) {
        log_error("job %.*s: out of memory encoding its result", (int)r.id.len, r.id.ptr);
        w->st.failed = 1;   /* leave it pending rather than ack it unanswered */
        return;
    }
    gpuq_metrics_job(w->metrics, e->queue, job->op, job->err, r.queue_us / 1e6,
                     r.compute_us ? r.compute_us / 1e6 : -1, r.total_us / 1e6);
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
    if (job->callback.ptr) {
        struct gpuq_str fmt = {NULL, 0};
        gpuq_job_param_str(job, "callback_format", &fmt);
        gpuq_stream_put_hook(&w->st, e->queue, r.id, job->callback, fmt.len == 7, w->sb.data,
                             w->sb.size, e->payload);
        w->hooks_written = 1;
    }
    gpuq_stream_ack(&w->st, e->queue, e->id);
}

/* Sends all answered tasks' writes as one transaction, without waiting:
 * the next batch computes while Redis applies it. */
static int publish_send(struct worker *w) {
    if (w->n_done == 0) return 0;
    gpuq_stream_begin(&w->st);
    for (int i = 0; i < w->n_done; i++) publish_one(w, w->done[i]);
    struct gpuq_task **t = w->sending;
    w->sending = w->done;
    w->n_sending = w->n_done;
    w->done = t;
    w->n_done = 0;
    return gpuq_stream_send(&w->st);
}

/* Reads the sent transaction's replies, then lets its tasks go. */
static int publish_wait(struct worker *w) {
    if (w->n_sending == 0) return 0;
    int rc = gpuq_stream_wait(&w->st);
    if (rc < 0) {
        log_error("could not write %d results (%s); they stay pending", w->n_sending, w->st.errstr);
        return -1;
    }
    if (rc > 0) log_warn("results written, but a command failed: %s", w->st.errstr);
    for (int i = 0; i < w->n_sending; i++) {
        if (w->sending[i]->admitted) gpuq_sched_release(&w->sched, w->sending[i]);
        drop_task(w, w->sending[i]);
    }
    w->n_sending = 0;
    return 0;
}

/* ---- running ---- */

/* Runs the next ready batch, if any. Returns 1 when one ran. */
static int run_batch(struct worker *w, int force, int64_t *wait_us) {
    struct gpuq_task *expired[64];
    int64_t now = now_us();
    int n = gpuq_sched_expire(&w->sched, now / 1000, expired, 64);
    for (int i = 0; i < n; i++) {
        gpuq_job_fail(&expired[i]->job, GPUQ_ERR_DEADLINE_EXCEEDED, "deadline passed %lld ms "
                      "before the job could start", (long long)(now / 1000 - expired[i]->deadline_ms));
        w->done[w->n_done++] = expired[i];
    }
    n = gpuq_sched_next(&w->sched, now, force, w->pieces, (int)w->cfg.max_batch, wait_us);
    if (n == 0) return 0;
    if (gpuq_ops_run(&w->ops, w->pieces, n) != 0)
        log_error("batch of %d pieces failed: %s", n, w->be.errstr);
    w->n_batches++;
    if (w->metrics) {
        int64_t rows = 0;
        for (int i = 0; i < n; i++) rows += w->pieces[i].rows;
        gpuq_metrics_batch(w->metrics, rows);
    }
    for (int i = 0; i < n; i++) {
        struct gpuq_task *t = w->pieces[i].t;
        if (t->rows_done == t->rows) w->done[w->n_done++] = t;
    }
    return 1;
}

/* Forgets everything held: nothing of it was acked, so Redis keeps it
 * pending for this consumer, to be read again from id 0. */
static void forget_all(struct worker *w) {
    for (int i = 0; i < w->n_slots; i++)
        if (w->slots[i].held) drop_task(w, &w->slots[i]);
    w->sched.n = 0;
    w->sched.rows_held = 0;
    gpuq_webhooks_forget_all(w->hooks);     /* pending in Redis: claimed again when stale */
    w->n_done = 0;
    w->n_sending = 0;
    w->pending_queue = 0;
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
            gpuq_metrics_ready(w->metrics, 1);
            return 0;
        }
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }
    return -1;
}

/* Once a second, the gauges that are read rather than counted. */
static int sample(struct worker *w) {
    int64_t now = now_us();
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

static void serve(struct worker *w) {
    while (!stop_requested || w->sched.rows_held > 0 || w->n_done > 0) {
        int64_t wait_us = -1;
        int claim_now = claim_due(w);
        int fetched = fetch(w, claim_now);
        int prefetch;
        if (fetched >= 0 && publish_send(w) == 0 && (prefetch = prefetch_send(w)) >= 0) {
            /* nothing more can join a batch when the worker may not fetch */
            int force = stop_requested || gpuq_sched_room(&w->sched) <= 0;
            int ran = run_batch(w, force, &wait_us);    /* while Redis applies the last */
            int got = publish_wait(w) == 0 ? prefetch_take(w, prefetch) : -1;
            if (got >= 0 && hooks_step(w, claim_now) == 0 && sample(w) == 0) {
                if (!fetched && !got && !ran && w->n_done == 0) {
                    int64_t poll = w->cfg.max_delay_us / 8 > 100 ? w->cfg.max_delay_us / 8 : 100;
                    if (wait_us > 0 && wait_us < poll) poll = wait_us;
                    if (wait_us < 0 && gpuq_webhooks_held(w->hooks)) poll = 10000;
                    if (!gpuq_webhooks_wait(w->hooks, (int)((poll + 999) / 1000)) && (wait_us > 0 ||
                        gpuq_webhooks_held(w->hooks)))
                        sleep_us(poll);
                }
                continue;
            }
        }
        if (stop_requested) {
            log_warn("stopping with Redis unreachable: %lld rows stay pending for other workers",
                     (long long)w->sched.rows_held);
            break;
        }
        if (reconnect(w) != 0) break;
    }
    if (gpuq_webhooks_held(w->hooks))
        log_info("%d webhook deliveries left recorded in Redis for any worker to finish",
                 gpuq_webhooks_held(w->hooks));
}

int gpuq_worker_main(int argc, char **argv) {
    struct worker w;
    char err[512];
    memset(&w, 0, sizeof(w));
    if (start(&w, argc, argv, err, sizeof(err)) != 0) {
        fprintf(stderr, "gpuq worker: %s\n", err);
        finish(&w);
        return 2;
    }
    if (w.cfg.help) {
        gpuq_config_usage(stdout);
        finish(&w);
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;      /* no SA_RESTART: sleeps end early */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)now_us());
    log_info("ready");
    serve(&w);
    log_info("stopped: %llu ok, %llu errors, %llu dead letters, %llu batches, %llu webhooks "
             "delivered, %llu failed", (unsigned long long)w.n_ok, (unsigned long long)w.n_failed,
             (unsigned long long)w.n_dead, (unsigned long long)w.n_batches,
             (unsigned long long)w.n_delivered, (unsigned long long)w.n_hooks_failed);
    finish(&w);
    return 0;
}
