/* stream.c -- Redis Streams consumer: connecting, reconnecting a queue
 * whose master is down, and the commands beside the jobs (the reading
 * half is stream_read.c, the writing half publish.c). */
#include "queue/stream.h"

#include "queue/stream_int.h"

#include "queue/client.h"
#include "queue/slot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void gpuq_stream_set_error(struct gpuq_stream *s, int type, const char *str) {
    s->err = type;
    snprintf(s->errstr, sizeof(s->errstr), "%s", str ? str : "unknown error");
}

void gpuq_stream_drop(struct gpuq_stream *s) {
    if (!s->rc) return;
    gpuq_stream_set_error(s, s->rc->err ? s->rc->err : REDIS_ERR_IO, s->rc->err ? s->rc->errstr
                          : s->cl && s->cl->err[0] ? s->cl->err : "I/O error");
    /* on a cluster every connection goes: the reconnect reads the map again */
    if (s->cl) gpuq_cluster_close(s->cl);
    else gpuq_conn_free(s->rc);
    s->rc = NULL;
}

int gpuq_stream_use(struct gpuq_stream *s, int q) {
    if (!s->cl) return 0;
    s->slot = s->slots[q];
    struct gpuq_conn *rc = gpuq_cluster_conn(s->cl, s->slot);
    if (!rc) {
        gpuq_stream_set_error(s, REDIS_ERR_IO, s->cl->err);
        gpuq_cluster_close(s->cl);
        s->rc = NULL;
        return -1;
    }
    s->rc = rc;
    return 0;
}

int gpuq_stream_one_tx(const struct gpuq_stream *s, int qa, int qb) {
    return !s->cl || s->slots[qa] == s->slots[qb];
}

int gpuq_stream_read_span(const struct gpuq_stream *s, int first) {
    return s->cl ? 1 : s->n_queues - first;
}

char *gpuq_stream_key(char *buf, size_t cap, const char *prefix, const char *queue,
                      const char *suffix) {
    snprintf(buf, cap, "%s:{%s}:%s", prefix, queue, suffix);
    return buf;
}

int gpuq_stream_init(struct gpuq_stream *s, const struct gpuq_redis_url *url, struct gpuq_tls *tls,
                     const char *prefix, char *const *queues, int n_queues, const char *consumer) {
    char key[512];
    memset(s, 0, sizeof(*s));
    s->url = *url;
    s->tls = tls;
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    snprintf(s->consumer, sizeof(s->consumer), "%s", consumer);
    s->queues = calloc((size_t)n_queues, sizeof(char *));
    s->jobs_keys = calloc((size_t)n_queues, sizeof(char *));
    s->dead_keys = calloc((size_t)n_queues, sizeof(char *));
    s->hook_keys = calloc((size_t)n_queues, sizeof(char *));
    s->result_prefixes = calloc((size_t)n_queues, sizeof(char *));
    s->cache_prefixes = calloc((size_t)n_queues, sizeof(char *));
    s->slots = calloc((size_t)n_queues, sizeof(int));
    s->down_until_us = calloc((size_t)n_queues, sizeof(int64_t));
    s->down_ms = calloc((size_t)n_queues, sizeof(int64_t));
    s->tx = calloc(1, sizeof(*s->tx));
    if (!s->queues || !s->jobs_keys || !s->dead_keys || !s->hook_keys || !s->result_prefixes || !s->cache_prefixes ||
        !s->slots || !s->down_until_us || !s->down_ms || !s->tx)
        goto oom;
    s->n_queues = n_queues;
    s->max_value = 512 << 20;   /* Redis's default, until connect reads the real one */
    for (int i = 0; i < n_queues; i++) {
        s->queues[i] = strdup(queues[i]);
        s->jobs_keys[i] = strdup(gpuq_stream_key(key, sizeof(key), prefix, queues[i], "jobs"));
        s->dead_keys[i] = strdup(gpuq_stream_key(key, sizeof(key), prefix, queues[i], "dead"));
        s->hook_keys[i] = strdup(gpuq_stream_key(key, sizeof(key), prefix, queues[i], "webhooks"));
        s->result_prefixes[i] = strdup(gpuq_stream_key(key, sizeof(key), prefix, queues[i], "result:"));
        s->cache_prefixes[i] = strdup(gpuq_stream_key(key, sizeof(key), prefix, queues[i], "cache:"));
        s->slots[i] = gpuq_key_slot(key, strlen(key));
        if (!s->queues[i] || !s->jobs_keys[i] || !s->dead_keys[i] || !s->hook_keys[i] ||
            !s->result_prefixes[i] || !s->cache_prefixes[i])
            goto oom;
    }
    return 0;
oom:
    gpuq_stream_free(s);
    return -1;
}

void gpuq_stream_free(struct gpuq_stream *s) {
    if (!s) return;
    if (s->cl) gpuq_cluster_destroy(s->cl);
    else if (s->rc) gpuq_conn_free(s->rc);
    for (int i = 0; i < s->n_queues; i++) {
        free(s->queues[i]);
        free(s->jobs_keys[i]);
        free(s->dead_keys[i]);
        if (s->hook_keys) free(s->hook_keys[i]);
        if (s->result_prefixes) free(s->result_prefixes[i]);
        if (s->cache_prefixes) free(s->cache_prefixes[i]);
    }
    gpuq_stream_free_writes(s);
    free(s->tx);
    free(s->hook_keys);
    free(s->result_prefixes);
    free(s->cache_prefixes);
    free(s->slots);
    free(s->down_until_us);
    free(s->down_ms);
    free(s->queues);
    free(s->jobs_keys);
    free(s->dead_keys);
    memset(s, 0, sizeof(*s));
}

redisReply *gpuq_stream_command(struct gpuq_stream *s, int argc, const char **argv, const size_t *lens) {
    if (s->cl) {
        /* it may have reopened the connection rc pointed to: rc is set again */
        redisReply *r = gpuq_cluster_command(s->cl, s->slot, argc, argv, lens);
        s->rc = gpuq_cluster_conn(s->cl, s->slot);
        if (!r || !s->rc) {
            gpuq_stream_set_error(s, REDIS_ERR_IO, s->cl->err);
            gpuq_cluster_close(s->cl);
            s->rc = NULL;
            if (r) freeReplyObject(r);
            return NULL;
        }
        return r;
    }
    redisReply *r = gpuq_conn_command_argv(s->rc, argc, argv, lens);
    if (!r) gpuq_stream_drop(s);
    return r;
}

int gpuq_stream_simple(struct gpuq_stream *s, int argc, const char **argv, const char *ok_error,
                       const char *ok_error2) {
    redisReply *r = gpuq_stream_command(s, argc, argv, NULL);
    if (!r) return -1;
    int result = 0;
    if (r->type == REDIS_REPLY_ERROR &&
        !(ok_error && strncmp(r->str, ok_error, strlen(ok_error)) == 0) &&
        !(ok_error2 && strncmp(r->str, ok_error2, strlen(ok_error2)) == 0)) {
        gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->str);
        result = -1;
    }
    freeReplyObject(r);
    return result;
}

int64_t gpuq_stream_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int gpuq_stream_down(const struct gpuq_stream *s, int q) { return s->down_until_us[q] != 0; }

/* Creates queue q's groups. */
static int connect_queue(struct gpuq_stream *s, int q) {
    if (gpuq_stream_use(s, q) != 0) return -1;
    /* replies to a BLOCK read come within a second; 30 s means Redis is gone */
    gpuq_conn_set_timeout(s->rc, 30000);
    gpuq_conn_keepalive(s->rc);
    const char *argv[] = {"XGROUP", "CREATE", s->jobs_keys[q], GPUQ_GROUP, "0", "MKSTREAM"};
    const char *hooks[] = {"XGROUP", "CREATE", s->hook_keys[q], GPUQ_HOOK_GROUP, "0", "MKSTREAM"};
    /* out of memory, Redis refuses even a group that exists: go on, and
     * recreate it if a read says NOGROUP */
    return gpuq_stream_simple(s, 6, argv, "BUSYGROUP", "OOM") != 0 || gpuq_stream_simple(s, 6, hooks, "BUSYGROUP", "OOM") != 0
           ? -1 : 0;
}

static void mark_down(struct gpuq_stream *s, int q) {
    int64_t ms = s->down_ms[q];
    s->down_ms[q] = ms = ms ? (ms * 2 > 5000 ? 5000 : ms * 2) : 100;
    s->down_until_us[q] = gpuq_stream_now_us() + ms * 1000;
}

/* Creates the groups, reads proto-max-bulk-len. On a cluster a queue whose
 * master does not answer is marked down, and the others are served. */
static int connect_queues(struct gpuq_stream *s) {
    int up = -1;
    for (int i = 0; i < s->n_queues; i++) {
        if (s->down_until_us[i] > gpuq_stream_now_us()) continue;   /* not due: not waited on again */
        if (connect_queue(s, i) == 0) {
            s->down_until_us[i] = s->down_ms[i] = 0;
            up = i;
        } else if (s->cl) {
            mark_down(s, i);
        } else {
            return -1;
        }
    }
    if (up < 0 || gpuq_stream_use(s, up) != 0) return 0;     /* all down: revived later */
    /* a value larger than this makes Redis drop the connection, not answer
     * an error: results are held to it (CONFIG may be denied: keep the default) */
    const char *cfg[] = {"CONFIG", "GET", "proto-max-bulk-len"};
    redisReply *r = gpuq_stream_command(s, 3, cfg, NULL);
    if (!r) return -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING)
        s->max_value = strtoll(r->element[1]->str, NULL, 10);
    freeReplyObject(r);
    return 0;
}

/* Connects to a cluster: the map (from the seed or any master seen
 * before), then a connection per master as the queues need them. */
static int connect_cluster(struct gpuq_stream *s, int timeout_ms) {
    if (!s->cl && !(s->cl = gpuq_cluster_create(&s->url, s->tls, timeout_ms))) {
        gpuq_stream_set_error(s, REDIS_ERR_OOM, "out of memory");
        return -1;
    }
    gpuq_cluster_close(s->cl);
    if (gpuq_cluster_refresh(s->cl) != 0) {
        gpuq_stream_set_error(s, REDIS_ERR_IO, s->cl->err);
        return -1;
    }
    return 0;
}

int gpuq_stream_connect(struct gpuq_stream *s, int timeout_ms) {
    char err[256];
    if (s->cl) gpuq_cluster_close(s->cl);
    else if (s->rc) gpuq_conn_free(s->rc);
    s->rc = NULL;
    s->err = 0;
    s->tx->sent = 0;    /* a new connection owes no replies */
    /* a cluster's seed may be a master that died: the map knows the others */
    if (s->cl) return connect_cluster(s, timeout_ms) != 0 ? -1 : connect_queues(s);
    if (!(s->rc = gpuq_redis_connect(&s->url, s->tls, timeout_ms, err, sizeof(err)))) {
        gpuq_stream_set_error(s, REDIS_ERR_IO, err);
        return -1;
    }
    int on = gpuq_cluster_detect(s->rc, err, sizeof(err));
    if (on < 0) {
        gpuq_stream_set_error(s, REDIS_ERR_OTHER, err);
        return -1;
    }
    if (on) {
        gpuq_conn_free(s->rc);
        s->rc = NULL;
        if (connect_cluster(s, timeout_ms) != 0) return -1;
    }
    return connect_queues(s);
}

int gpuq_stream_revive(struct gpuq_stream *s) {
    int revived = 0, refreshed = 0;
    if (!s->cl) return 0;
    for (int q = 0; q < s->n_queues; q++) {
        if (!s->down_until_us[q] || s->down_until_us[q] > gpuq_stream_now_us()) continue;
        if (!refreshed++ && gpuq_cluster_refresh(s->cl) != 0) {   /* a failover moves slots */
            mark_down(s, q);
            continue;
        }
        if (connect_queue(s, q) != 0) {
            mark_down(s, q);
            continue;
        }
        s->down_until_us[q] = s->down_ms[q] = 0;
        revived++;
    }
    return revived;
}

int gpuq_stream_owns_key(const struct gpuq_stream *s, struct gpuq_str key) {
    for (int i = 0; i < s->n_queues; i++) {
        const char *exact[] = {s->jobs_keys[i], s->dead_keys[i], s->hook_keys[i]};
        for (int k = 0; k < 3; k++)
            if (strlen(exact[k]) == key.len && !memcmp(exact[k], key.ptr, key.len)) return 1;
        const char *prefixes[] = {s->result_prefixes[i], s->cache_prefixes[i]};
        for (int k = 0; k < 2; k++) {
            size_t n = strlen(prefixes[k]);
            if (key.len >= n && !memcmp(prefixes[k], key.ptr, n)) return 1;
        }
    }
    return 0;
}

int gpuq_stream_get_cached(struct gpuq_stream *s, int q, const char *const *names, int n,
                           redisReply **reply) {
    size_t plen = strlen(s->cache_prefixes[q]);
    const char **argv = calloc((size_t)n + 1, sizeof(char *));
    char *keys = malloc((size_t)n * (plen + 65));
    int result = -1;
    *reply = NULL;
    if (!argv || !keys) {
        gpuq_stream_set_error(s, REDIS_ERR_OOM, "out of memory");
        goto out;
    }
    argv[0] = "MGET";
    for (int i = 0; i < n; i++) {
        char *k = keys + (size_t)i * (plen + 65);
        snprintf(k, plen + 65, "%s%.64s", s->cache_prefixes[q], names[i]);
        argv[i + 1] = k;
    }
    if (s->down_until_us[q] || (!s->rc && gpuq_stream_connect(s, 2000) != 0) || gpuq_stream_use(s, q) != 0)
        goto out;
    redisReply *r = gpuq_stream_command(s, n + 1, argv, NULL);
    if (!r) goto out;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n) {
        gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->type == REDIS_REPLY_ERROR ? r->str : "MGET: not an array");
        freeReplyObject(r);
        goto out;
    }
    *reply = r;
    result = 0;
out:
    free(argv);
    free(keys);
    return result;
}

/* Looks for "name:<integer>" in an INFO reply; -1 when absent. */
static long long info_field(const char *info, const char *name) {
    const char *p = strstr(info, name);
    return p && p[strlen(name)] == ':' ? strtoll(p + strlen(name) + 1, NULL, 10) : -1;
}

int gpuq_stream_writable(struct gpuq_stream *s, size_t need) {
    const char *mem[] = {"INFO", "memory"}, *repl[] = {"INFO", "replication"};
    if (!s->rc) return -1;
    redisReply *m = gpuq_stream_command(s, 2, mem, NULL);
    if (!m) return -1;
    redisReply *r = gpuq_stream_command(s, 2, repl, NULL);
    int ok = -1;
    if (r && m->type == REDIS_REPLY_STRING && r->type == REDIS_REPLY_STRING) {
        long long used = info_field(m->str, "used_memory"), max = info_field(m->str, "maxmemory");
        /* the transaction's commands are held in Redis before they apply */
        ok = strstr(r->str, "role:master") && (max <= 0 || (used >= 0 && used + 2 * (long long)need < max));
    }
    freeReplyObject(m);
    if (r) freeReplyObject(r);
    return ok;
}

int gpuq_stream_leave(struct gpuq_stream *s) {
    int left = 0;
    if (!s->rc) return -1;
    for (int i = 0; i < s->n_queues; i++)
        for (int hooks = 0; hooks < 2 && !s->down_until_us[i] && gpuq_stream_use(s, i) == 0; hooks++) {
            const char *key = hooks ? s->hook_keys[i] : s->jobs_keys[i];
            const char *group = hooks ? GPUQ_HOOK_GROUP : GPUQ_GROUP;
            const char *xp[] = {"XPENDING", key, group, "-", "+", "1", s->consumer};
            redisReply *r = gpuq_stream_command(s, 7, xp, NULL);
            if (!r) return -1;
            int idle = r->type == REDIS_REPLY_ARRAY && r->elements == 0;
            freeReplyObject(r);
            if (!idle) continue;
            const char *del[] = {"XGROUP", "DELCONSUMER", key, group, s->consumer};
            if (gpuq_stream_simple(s, 5, del, NULL, NULL) != 0) return -1;
            left++;
        }
    return left;
}

int gpuq_stream_advertise(struct gpuq_stream *s, const char *info, size_t len, int64_t keep_s) {
    if (!s->rc) return -1;
    char key[512], keep[24];
    snprintf(keep, sizeof(keep), "%lld", (long long)keep_s);
    for (int q = 0; q < s->n_queues; q++) {
        if (s->down_until_us[q] || gpuq_stream_use(s, q) != 0) continue;
        gpuq_stream_key(key, sizeof(key), s->prefix, s->queues[q], "workers");
        const char *set[] = {"HSET", key, s->consumer, info};
        const size_t set_l[] = {4, strlen(key), strlen(s->consumer), len};
        const char *del[] = {"HDEL", key, s->consumer};
        const char *exp[] = {"EXPIRE", key, keep};
        redisReply *r = info ? gpuq_stream_command(s, 4, set, set_l) : gpuq_stream_command(s, 3, del, NULL);
        if (!r) return -1;
        freeReplyObject(r);
        if (!info) continue;
        if (!(r = gpuq_stream_command(s, 3, exp, NULL))) return -1;
        freeReplyObject(r);
    }
    return 0;
}

int gpuq_stream_queue_stats(struct gpuq_stream *s, int q, int64_t *backlog, int64_t *pending) {
    const char *argv[] = {"XINFO", "GROUPS", s->jobs_keys[q]};
    *backlog = *pending = -1;
    if (s->down_until_us[q]) return 0;
    if (!s->rc || gpuq_stream_use(s, q) != 0) return -1;
    redisReply *r = gpuq_stream_command(s, 3, argv, NULL);
    if (!r) return -1;
    *backlog = *pending = -1;
    for (size_t g = 0; r->type == REDIS_REPLY_ARRAY && g < r->elements; g++) {
        const redisReply *f = r->element[g];
        int ours = 0;
        int64_t lag = -1, pend = -1;
        for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
            const redisReply *k = f->element[i], *v = f->element[i + 1];
            if (k->type != REDIS_REPLY_STRING) continue;
            if (!strcmp(k->str, "name")) ours = v->type == REDIS_REPLY_STRING && !strcmp(v->str, GPUQ_GROUP);
            else if (!strcmp(k->str, "lag") && v->type == REDIS_REPLY_INTEGER) lag = v->integer;
            else if (!strcmp(k->str, "pending") && v->type == REDIS_REPLY_INTEGER) pend = v->integer;
        }
        if (ours) *backlog = lag, *pending = pend;
    }
    int rc = r->type == REDIS_REPLY_ARRAY ? 0 : -1;
    if (rc) gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->type == REDIS_REPLY_ERROR ? r->str : "XINFO GROUPS");
    freeReplyObject(r);
    return rc;
}

