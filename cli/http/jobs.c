/* jobs.c -- putting a request's job on its queue, and waiting for it. */
#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

#include "cli/http/http.h"
#include "queue/stream.h"
#include "worker/clock.h"

/* XADD unless the stream already holds max entries (backlog and pending:
 * answered entries are deleted), in one step. */
static const char *const ADD_BELOW =
    "if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end\n"
    "return redis.call('XADD', KEYS[1], '*', ARGV[2], ARGV[3])";

void gpuq_http_job_id(struct gpuq_http *srv, char *buf, size_t cap) {
    unsigned long long n = __atomic_add_fetch(&srv->next_id, 1, __ATOMIC_RELAXED);
    snprintf(buf, cap, "http-%s-%llu", srv->token, n);
}

/* XADDs; 1 added, 0 the queue is full, -1 Redis failed (err set). */
static int add(struct gpuq_http_req *r, const char *field, const char *bytes, size_t len, char *err,
               size_t errlen) {
    struct gpuq_http *srv = r->srv;
    char key[512], max[24];
    gpuq_stream_key(key, sizeof(key), srv->cfg.target.prefix, r->queue, "jobs");
    struct gpuq_conn *c = gpuq_http_pool_get(srv->pool, r->queue);
    if (!c) {
        snprintf(err, errlen, "cannot reach Redis");
        return -1;
    }
    redisReply *rep;
    if (srv->cfg.max_queue > 0) {
        snprintf(max, sizeof(max), "%lld", srv->cfg.max_queue);
        const char *argv[] = {"EVAL", ADD_BELOW, "1", key, max, field, bytes};
        size_t lens[] = {4, strlen(ADD_BELOW), 1, strlen(key), strlen(max), strlen(field), len};
        rep = gpuq_conn_command_argv(c, 7, argv, lens);
    } else {
        const char *argv[] = {"XADD", key, "*", field, bytes};
        size_t lens[] = {4, strlen(key), 1, strlen(field), len};
        rep = gpuq_conn_command_argv(c, 5, argv, lens);
    }
    int result = -1;
    if (!rep) snprintf(err, errlen, "%s", c->errstr);
    else if (rep->type == REDIS_REPLY_ERROR) snprintf(err, errlen, "%s", rep->str);
    else result = rep->type == REDIS_REPLY_NIL ? 0 : 1;
    gpuq_http_pool_put(srv->pool, r->queue, c, rep == NULL);
    freeReplyObject(rep);
    return result;
}

int gpuq_http_submit(struct gpuq_http_req *r, const char *field, const char *bytes, size_t len,
                     double timeout_s, void (*finish)(struct gpuq_http_req *r)) {
    struct gpuq_http *srv = r->srv;
    char err[256];
    if (finish) {
        r->wait.deadline = gpuq_mono_s() + timeout_s;
        int added = gpuq_waiter_add(srv->waiter, &r->wait);
        if (added == -2) {
            gpuq_http_fail(r, 503, "unavailable", "the front door is shutting down; send the request again");
            return -1;
        }
        if (added != 0) {
            gpuq_http_fail(r, 409, "conflict", "a request waiting for job '%s' is already under way", r->wait.id);
            return -1;
        }
    }
    int added = add(r, field, bytes, len, err, sizeof(err));
    if (added <= 0) {
        if (finish) gpuq_waiter_remove(srv->waiter, &r->wait);
        if (added == 0) {
            r->retry_after = (int)srv->cfg.retry_after;
            gpuq_http_fail(r, 429, "queue_full", "queue '%s' holds %lld jobs already (--max-queue); "
                           "try again later", r->queue, srv->cfg.max_queue);
        } else {
            fprintf(stderr, "gpuq http: enqueue on %s: %s\n", r->queue, err);
            r->retry_after = 1;
            gpuq_http_fail(r, 503, "unavailable", "the queue cannot be reached: %s", err);
        }
        return -1;
    }
    gpuq_http_metrics_enqueued(1);
    if (finish) {
        r->waiting = 1;
        r->finish = finish;
    }
    return 0;
}
