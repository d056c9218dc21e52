/* worker.c -- the serving loop.
 *
 * One cycle: fetch up to --max-batch entries (waiting at most --max-delay-us
 * after the first for more), decode them, check deadlines and shapes, sort the
 * valid jobs by batch key, run each batch on the backend, then write every
 * result, dead letter and ack in one MULTI/EXEC. Nothing is acked before its
 * result is written; if the write fails, the entries stay pending for this
 * consumer and are read again (id 0) once Redis is back. */
#include "worker/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "queue/stream.h"
#include "worker/log.h"
#include "worker/ops.h"

struct worker {
    struct gpuq_config cfg;
    struct gpuq_stream st;
    struct gpuq_backend be;
    struct gpuq_ops ops;
    struct gpuq_model *models;
    int n_models;
    int cap;                    /* entries in one cycle */
    int n;
    struct gpuq_task *tasks;
    struct gpuq_task **order;
    struct gpuq_entry *entries;
    redisReply **replies;       /* what the entries borrow from */
    int n_replies;
    float *out;                 /* outputs of one cycle */
    size_t out_cap;
    msgpack_sbuffer sb;
    int need_pending;           /* re-read our own pending entries first */
    uint64_t n_ok, n_failed, n_dead, n_batches;
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

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_requested) {}
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
    if (gpuq_redis_url_parse(&url, w->cfg.redis, err, errlen) != 0) return -1;
    if (gpuq_backend_create(&w->be, w->cfg.backend, (int)w->cfg.device, err, errlen) != 0) return -1;
    if (load_models(w, err, errlen) != 0) return -1;
    w->ops.be = &w->be;
    w->ops.models = w->models;
    w->ops.n_models = w->n_models;
    if (gpuq_stream_init(&w->st, &url, w->cfg.prefix, w->cfg.queues, w->cfg.n_queues,
                         w->cfg.consumer) != 0)
        return -1;
    if (gpuq_stream_connect(&w->st, 2000) != 0) {
        snprintf(err, errlen, "cannot use Redis at %s: %s",
                 url.path[0] ? url.path : url.host, w->st.errstr);
        return -1;
    }
    w->cap = (int)w->cfg.max_batch;
    w->tasks = calloc((size_t)w->cap, sizeof(*w->tasks));
    w->order = calloc((size_t)w->cap, sizeof(*w->order));
    w->entries = calloc((size_t)w->cap, sizeof(*w->entries));
    w->replies = calloc((size_t)w->cap + 1, sizeof(*w->replies));
    if (!w->tasks || !w->order || !w->entries || !w->replies) return -1;
    msgpack_sbuffer_init(&w->sb);
    w->need_pending = 1;    /* a restarted worker with a fixed --consumer finishes its own */
    /* the summary comes once everything is up: a failed start says one line */
    log_info("gpuq %s worker %s: backend %s", GPUQ_VERSION, w->cfg.consumer, w->be.desc);
    for (int i = 0; i < w->n_models; i++) {
        const struct gpuq_model *m = &w->models[i];
        if (m->kind == GPUQ_MODEL_MLP)
            log_info("model %s: mlp %d layers, %d -> %d, %s", m->name, m->n_layers,
                     gpuq_model_in_dim(m), gpuq_model_out_dim(m), gpuq_act_name(m->act));
        else
            log_info("model %s: index %lld x %d", m->name, (long long)m->n_rows, m->dim);
    }
    char queues[256] = "";
    for (int i = 0; i < w->cfg.n_queues; i++)
        snprintf(queues + strlen(queues), sizeof(queues) - strlen(queues), "%s%s", i ? "," : "",
                 w->cfg.queues[i]);
    if (w->cfg.metrics_addr) log_warn("--metrics-addr: metrics are not served by this version");
    if (w->cfg.webhook_secret) log_warn("--webhook-secret: webhooks are not sent by this version");
    log_info("serving %s on %s prefix %s: max-batch %lld rows, max-delay %lld us, result-ttl %lld s",
             queues, url.path[0] ? url.path : url.host, w->cfg.prefix, (long long)w->cfg.max_batch,
             (long long)w->cfg.max_delay_us, (long long)w->cfg.result_ttl);
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
    gpuq_stream_free(&w->st);
    msgpack_sbuffer_destroy(&w->sb);
    free(w->tasks);
    free(w->order);
    free(w->entries);
    free(w->replies);
    free(w->out);
    gpuq_config_free(&w->cfg);
}

/* ---- fetch ---- */

/* One XREADGROUP into the cycle's entries; -1 when Redis failed. */
static int read_into(struct worker *w, int first, int n, int block_ms, int pending) {
    redisReply *reply;
    int got = gpuq_stream_read(&w->st, first, n, w->cap - w->n, block_ms, pending,
                               w->entries + w->n, w->cap - w->n, &reply);
    if (got < 0) return -1;
    if (got > 0) w->replies[w->n_replies++] = reply;   /* entries borrow from it */
    else freeReplyObject(reply);
    w->n += got;
    return got;
}

/* Gathers up to cap entries: queues strictly in order, then waits up to
 * max-delay for the batch to fill. The wait polls rather than using BLOCK:
 * Redis times out blocked readers on its cron tick (100 ms at hz 10), far
 * coarser than a delay of a few milliseconds. Returns -1 when Redis failed. */
static int fetch(struct worker *w) {
    int nq = w->st.n_queues;
    int64_t first_us = 0, poll_us = w->cfg.max_delay_us / 8;
    if (poll_us < 100) poll_us = 100;
    if (w->need_pending) {
        if (read_into(w, 0, nq, -1, 1) < 0) return -1;
        w->need_pending = 0;
        if (w->n) return 0;
    }
    while (!stop_requested && w->n < w->cap) {
        int before = w->n;
        for (int q = 0; q < nq && w->n < w->cap; q++)
            if (read_into(w, q, 1, -1, 0) < 0) return -1;
        if (w->n == w->cap) break;
        if (w->n == 0) {    /* idle: an XADD wakes a blocked reader at once */
            if (read_into(w, 0, nq, 100, 0) < 0) return -1;
            continue;
        }
        if (!first_us) first_us = now_us();
        int64_t left = w->cfg.max_delay_us - (now_us() - first_us);
        if (left <= 0) break;
        if (w->n == before) {   /* nothing new: sleep a slice of the delay */
            struct timespec ts = {0, (long)((left < poll_us ? left : poll_us) * 1000)};
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

/* ---- decode, batch, run ---- */

static int cmp_tasks(const void *x, const void *y) {
    const struct gpuq_task *a = *(struct gpuq_task *const *)x, *b = *(struct gpuq_task *const *)y;
    int c = gpuq_ops_compare(a, b);
    return c ? c : (a < b ? -1 : a > b);    /* stable: arrival order within a batch */
}

static void prepare(struct worker *w, struct gpuq_task *t, const struct gpuq_entry *e) {
    t->entry = *e;
    if (!e->payload.ptr || e->deleted || e->is_json) {
        memset(&t->job, 0, sizeof(t->job));
        msgpack_unpacked_init(&t->job.msg);
        t->decoded = GPUQ_DECODE_UNDECODABLE;
        gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, e->is_json
                      ? "JSON jobs (field json) are not served by this worker version"
                      : "entry has no job field");
        return;
    }
    t->decoded = gpuq_job_decode(&t->job, e->payload.ptr, e->payload.len);
    if (t->decoded != GPUQ_DECODE_OK) return;
    int64_t now_ms = now_us() / 1000, deadline = t->job.deadline_ms;
    if (t->job.timeout_ms && (!deadline || e->enqueued_ms + t->job.timeout_ms < deadline))
        deadline = e->enqueued_ms + t->job.timeout_ms;
    if (deadline && now_ms > deadline) {
        gpuq_job_fail(&t->job, GPUQ_ERR_DEADLINE_EXCEEDED, "deadline passed %lld ms before the "
                      "job could start", (long long)(now_ms - deadline));
        return;
    }
    gpuq_ops_prepare(&w->ops, t);
}

/* Runs every valid task, batch by batch. Returns -1 only when out of memory. */
static int execute(struct worker *w) {
    int n = 0;
    size_t floats = 0;
    for (int i = 0; i < w->n; i++)
        if (w->tasks[i].decoded == GPUQ_DECODE_OK && w->tasks[i].job.err == GPUQ_ERR_NONE) {
            w->order[n++] = &w->tasks[i];
            floats += w->tasks[i].out_floats;
        }
    if (floats > w->out_cap) {
        float *p = realloc(w->out, floats * sizeof(float));
        if (!p) return -1;
        w->out = p;
        w->out_cap = floats;
    }
    qsort(w->order, (size_t)n, sizeof(*w->order), cmp_tasks);
    float *out = w->out;
    for (int i = 0; i < n;) {
        int j = i + 1, rows = w->order[i]->rows;
        while (j < n && gpuq_ops_compare(w->order[i], w->order[j]) == 0 &&
               rows + w->order[j]->rows <= w->cfg.max_batch)
            rows += w->order[j++]->rows;
        if (gpuq_ops_run(&w->ops, w->order + i, j - i, out) != 0)
            log_error("batch of %d jobs (%d rows) failed: %s", j - i, rows, w->be.errstr);
        w->n_batches++;
        for (int k = i; k < j; k++) out += w->order[k]->out_floats;
        i = j;
    }
    return 0;
}

/* ---- publish ---- */

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
        gpuq_stream_put_dead(&w->st, e->queue, e->payload, w->sb.data, w->sb.size, 1);
        gpuq_stream_ack(&w->st, e->queue, e->id);
        log_warn("dead letter %s on %s: %s", e->id.ptr, w->st.queues[e->queue], t->job.errmsg);
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
        r.queue_us = r.total_us;
        w->n_failed++;
    } else {
        w->n_ok++;
    }
    if (gpuq_result_encode(&w->sb, &r) != 0) {
        log_error("job %.*s: out of memory encoding its result", (int)r.id.len, r.id.ptr);
        w->st.failed = 1;   /* leave it pending rather than ack it unanswered */
        return;
    }
    int64_t ttl = job->result_ttl >= 0 ? job->result_ttl : w->cfg.result_ttl;
    gpuq_stream_put_result(&w->st, e->queue, r.id, w->sb.data, w->sb.size, ttl, job->reply_to);
    gpuq_stream_ack(&w->st, e->queue, e->id);
}

static int publish(struct worker *w) {
    gpuq_stream_begin(&w->st);
    for (int i = 0; i < w->n; i++) publish_one(w, &w->tasks[i]);
    int rc = gpuq_stream_commit(&w->st);
    if (rc > 0) log_warn("results written, but a command failed: %s", w->st.errstr);
    return rc < 0 ? -1 : 0;
}

static void release(struct worker *w) {
    for (int i = 0; i < w->n; i++) gpuq_job_free(&w->tasks[i].job);
    for (int i = 0; i < w->n_replies; i++) freeReplyObject(w->replies[i]);
    memset(w->tasks, 0, (size_t)w->n * sizeof(*w->tasks));
    w->n = 0;
    w->n_replies = 0;
}

/* Waits for Redis with backoff and jitter. Returns -1 if asked to stop first. */
static int reconnect(struct worker *w) {
    int delay = 100;
    while (!stop_requested) {
        log_warn("redis: %s; reconnecting in %d ms", w->st.errstr, delay);
        sleep_ms(delay + rand() % (delay / 4 + 1));
        if (stop_requested) break;
        if (gpuq_stream_connect(&w->st, 2000) == 0) {
            log_info("redis: reconnected");
            w->need_pending = 1;
            return 0;
        }
        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }
    return -1;
}

static void serve(struct worker *w) {
    while (!stop_requested) {
        if (fetch(w) != 0) {
            release(w);     /* nothing was acked: those entries stay pending */
            if (reconnect(w) != 0) break;
            continue;
        }
        if (w->n == 0) continue;
        for (int i = 0; i < w->n; i++) prepare(w, &w->tasks[i], &w->entries[i]);
        if (execute(w) != 0) {
            log_error("out of memory for a cycle's outputs; its jobs stay pending");
            release(w);
            sleep_ms(1000);
            continue;
        }
        if (publish(w) != 0) {
            log_error("could not write results of %d jobs (%s); they stay pending", w->n,
                      w->st.errstr);
            release(w);
            if (!w->st.rc && reconnect(w) != 0) break;
            continue;
        }
        release(w);
    }
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
    log_info("stopped: %llu ok, %llu errors, %llu dead letters, %llu batches",
             (unsigned long long)w.n_ok, (unsigned long long)w.n_failed,
             (unsigned long long)w.n_dead, (unsigned long long)w.n_batches);
    finish(&w);
    return 0;
}
