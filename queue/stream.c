/* stream.c -- Redis Streams consumer: connecting and reading
 * (the writing half is publish.c). */
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

/* Runs one command (on a cluster, on the master of the slot last used,
 * following MOVED and ASK); returns the reply, or NULL with errstr
 * (connection dropped on I/O errors). An error reply is returned as it is. */
static redisReply *command(struct gpuq_stream *s, int argc, const char **argv, const size_t *lens) {
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

/* Runs a command whose reply only says whether it worked; an error that
 * starts with ok_error, or ok_error2, counts as working. */
static int simple(struct gpuq_stream *s, int argc, const char **argv, const char *ok_error,
                  const char *ok_error2) {
    redisReply *r = command(s, argc, argv, NULL);
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

static int64_t now_us(void) {
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
    return simple(s, 6, argv, "BUSYGROUP", "OOM") != 0 || simple(s, 6, hooks, "BUSYGROUP", "OOM") != 0
           ? -1 : 0;
}

static void mark_down(struct gpuq_stream *s, int q) {
    int64_t ms = s->down_ms[q];
    s->down_ms[q] = ms = ms ? (ms * 2 > 5000 ? 5000 : ms * 2) : 100;
    s->down_until_us[q] = now_us() + ms * 1000;
}

/* Creates the groups, reads proto-max-bulk-len. On a cluster a queue whose
 * master does not answer is marked down, and the others are served. */
static int connect_queues(struct gpuq_stream *s) {
    int up = -1;
    for (int i = 0; i < s->n_queues; i++) {
        if (s->down_until_us[i] > now_us()) continue;   /* not due: not waited on again */
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
    redisReply *r = command(s, 3, cfg, NULL);
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
        if (!s->down_until_us[q] || s->down_until_us[q] > now_us()) continue;
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
    redisReply *r = command(s, n + 1, argv, NULL);
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
    redisReply *m = command(s, 2, mem, NULL);
    if (!m) return -1;
    redisReply *r = command(s, 2, repl, NULL);
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
            redisReply *r = command(s, 7, xp, NULL);
            if (!r) return -1;
            int idle = r->type == REDIS_REPLY_ARRAY && r->elements == 0;
            freeReplyObject(r);
            if (!idle) continue;
            const char *del[] = {"XGROUP", "DELCONSUMER", key, group, s->consumer};
            if (simple(s, 5, del, NULL, NULL) != 0) return -1;
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
        redisReply *r = info ? command(s, 4, set, set_l) : command(s, 3, del, NULL);
        if (!r) return -1;
        freeReplyObject(r);
        if (!info) continue;
        if (!(r = command(s, 3, exp, NULL))) return -1;
        freeReplyObject(r);
    }
    return 0;
}

/* The enqueue time an entry id carries. A client may choose its own ids:
 * clamped so that microseconds from it never overflow. */
static int64_t id_ms(const char *id) {
    long long ms = strtoll(id, NULL, 10);
    return ms < 0 ? 0 : ms > INT64_MAX / 1000 ? INT64_MAX / 1000 : ms;
}

static void take_fields(struct gpuq_entry *e, const redisReply *fields) {
    if (!fields || fields->type != REDIS_REPLY_ARRAY) {
        e->deleted = 1;
        return;
    }
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
        const redisReply *k = fields->element[f], *v = fields->element[f + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        int is_job = k->len == 3 && memcmp(k->str, "job", 3) == 0;
        int is_json = k->len == 4 && memcmp(k->str, "json", 4) == 0;
        if (is_job || (is_json && !e->payload.ptr)) {
            e->payload.ptr = v->str;
            e->payload.len = v->len;
            e->is_json = is_json;
        }
    }
}

/* Fills entries from an array of [id, fields] (an XCLAIM reply). */
static int take_entries(struct gpuq_stream *s, int q, const redisReply *arr, struct gpuq_entry *out,
                        int cap) {
    int got = 0;
    (void)s;
    for (size_t j = 0; arr->type == REDIS_REPLY_ARRAY && j < arr->elements && got < cap; j++) {
        const redisReply *e = arr->element[j];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 || e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        struct gpuq_entry *en = &out[got++];
        memset(en, 0, sizeof(*en));
        en->queue = q;
        en->id.ptr = e->element[0]->str;
        en->id.len = e->element[0]->len;
        en->enqueued_ms = id_ms(e->element[0]->str);
        en->deliveries = 1;
        en->fields = e->elements > 1 ? e->element[1] : NULL;
        take_fields(en, en->fields);
    }
    return got;
}

static int queue_of(const struct gpuq_stream *s, char **keys, const redisReply *key) {
    for (int i = 0; i < s->n_queues; i++)
        if (strlen(keys[i]) == key->len && memcmp(keys[i], key->str, key->len) == 0) return i;
    return -1;
}

/* Builds XREADGROUP on keys[first, first+n) of one kind into argv (room for
 * 8 + 2 * 16); returns argc. */
static int read_args(struct gpuq_stream *s, char **keys, const char *group, int first, int n,
                     const char *count_s, const char *block_s, const char *from, const char **argv) {
    int argc = 0;
    if (n > 16) n = 16;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = group;
    argv[argc++] = s->consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count_s;
    if (block_s) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block_s;
    }
    argv[argc++] = "STREAMS";
    for (int i = 0; i < n; i++) argv[argc++] = keys[first + i];
    for (int i = 0; i < n; i++) argv[argc++] = from;
    return argc;
}

/* Turns an XREADGROUP reply into entries; takes r (kept in *reply when it
 * holds entries, freed otherwise). */
static int read_reply(struct gpuq_stream *s, char **keys, redisReply *r, struct gpuq_entry *out,
                      int cap, redisReply **reply) {
    if (r->type == REDIS_REPLY_ERROR) {
        gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->str);
        int nogroup = strncmp(r->str, "NOGROUP", 7) == 0;
        /* a blocked read whose stream moved to another master: the next read follows */
        int moved = s->cl && strncmp(r->str, "UNBLOCKED", 9) == 0;
        freeReplyObject(r);
        if (moved) return 0;
        /* Redis lost its data (restart without persistence, FLUSHALL): recreate */
        if (nogroup && gpuq_stream_connect(s, 2000) == 0) return 0;
        return -1;
    }
    int got = 0;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *st = r->element[i];
        if (st->type != REDIS_REPLY_ARRAY || st->elements != 2) continue;
        int q = queue_of(s, keys, st->element[0]);
        if (q >= 0) got += take_entries(s, q, st->element[1], out + got, cap - got);
    }
    if (got > 0) *reply = r;
    else freeReplyObject(r);
    return got;
}

/* Entries read again from this consumer's own pending list are deliveries
 * like any other (Redis counts them): a worker restarted under the same
 * name after dying on a job must see the count grow, or the job is never
 * dead-lettered. Takes the counts from XPENDING, one call per queue. */
static int own_deliveries(struct gpuq_stream *s, char **keys, const char *group,
                          struct gpuq_entry *e, int n) {
    for (int i = 0, j; i < n; i = j) {
        char cnt[24];
        for (j = i; j < n && e[j].queue == e[i].queue; j++) {}
        snprintf(cnt, sizeof(cnt), "%d", j - i);
        const char *argv[] = {"XPENDING", keys[e[i].queue], group, e[i].id.ptr, e[j - 1].id.ptr,
                              cnt, s->consumer};
        redisReply *r = command(s, 7, argv, NULL);
        if (!r) return -1;
        for (size_t k = 0, m = (size_t)i; r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
            const redisReply *p = r->element[k];
            if (p->type != REDIS_REPLY_ARRAY || p->elements < 4 || p->element[3]->type != REDIS_REPLY_INTEGER)
                continue;
            while ((int)m < j && strcmp(e[m].id.ptr, p->element[0]->str) != 0) m++;
            if ((int)m < j) e[m].deliveries = p->element[3]->integer;
        }
        freeReplyObject(r);
    }
    return 0;
}

static int read_group(struct gpuq_stream *s, char **keys, const char *group, int first, int n,
                      int count, int block_ms, const char *from, struct gpuq_entry *out, int cap,
                      redisReply **reply) {
    const char *argv[8 + 2 * 16];
    char count_s[24], block_s[24];
    *reply = NULL;
    if (s->down_until_us[first]) return 0;
    if ((!s->rc && gpuq_stream_connect(s, 2000) != 0) || gpuq_stream_use(s, first) != 0) return -1;
    snprintf(count_s, sizeof(count_s), "%d", count);
    snprintf(block_s, sizeof(block_s), "%d", block_ms);
    int argc = read_args(s, keys, group, first, n, count_s, block_ms >= 0 ? block_s : NULL, from, argv);
    redisReply *r = command(s, argc, argv, NULL);
    if (!r) return -1;
    int got = read_reply(s, keys, r, out, cap, reply);
    if (got > 0 && from[0] != '>' && own_deliveries(s, keys, group, out, got) != 0) {
        freeReplyObject(*reply);
        *reply = NULL;
        return -1;
    }
    return got;
}

int gpuq_stream_undeliver(struct gpuq_stream *s, struct gpuq_entry *e, int n, int64_t idle_ms) {
    /* one XCLAIM per run of entries of one queue with the same count */
    for (int i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && j - i < 64 && e[j].queue == e[i].queue &&
                        e[j].deliveries == e[i].deliveries; j++) {}
        if (e[i].deliveries <= 0 || (e[i].deliveries == 1 && idle_ms <= 0)) continue;
        const char *argv[64 + 10];
        char cnt[24], idle[24];
        int argc = 0;
        snprintf(cnt, sizeof(cnt), "%lld", (long long)e[i].deliveries - 1);
        argv[argc++] = "XCLAIM";
        argv[argc++] = s->jobs_keys[e[i].queue];
        argv[argc++] = GPUQ_GROUP;
        argv[argc++] = s->consumer;
        argv[argc++] = "0";
        for (int k = i; k < j; k++) argv[argc++] = e[k].id.ptr;
        if (idle_ms > 0) {
            snprintf(idle, sizeof(idle), "%lld", (long long)idle_ms);
            argv[argc++] = "IDLE";
            argv[argc++] = idle;
        }
        argv[argc++] = "RETRYCOUNT";
        argv[argc++] = cnt;
        argv[argc++] = "JUSTID";
        if (gpuq_stream_use(s, e[i].queue) != 0 || simple(s, argc, argv, NULL, NULL) != 0) return -1;
        for (int k = i; k < j; k++) e[k].deliveries--;
    }
    return 0;
}

int gpuq_stream_prefetch(struct gpuq_stream *s, int q, int count) {
    const char *argv[8 + 2 * 16];
    char count_s[24];
    if (!s->rc || gpuq_stream_use(s, q) != 0) return -1;
    snprintf(count_s, sizeof(count_s), "%d", count);
    int argc = read_args(s, s->jobs_keys, GPUQ_GROUP, q, 1, count_s, NULL, ">", argv);
    if (gpuq_conn_append(s->rc, argc, argv, NULL) != 0 || gpuq_conn_flush(s->rc) != 0) {
        gpuq_stream_drop(s);
        return -1;
    }
    return 0;
}

int gpuq_stream_prefetched(struct gpuq_stream *s, struct gpuq_entry *out, int cap,
                           redisReply **reply) {
    redisReply *r = NULL;
    *reply = NULL;
    if (!s->rc || gpuq_conn_reply(s->rc, &r) != 0 || !r) {
        gpuq_stream_drop(s);
        return -1;
    }
    return read_reply(s, s->jobs_keys, r, out, cap, reply);
}

int gpuq_stream_read(struct gpuq_stream *s, int first, int n, int count, int block_ms,
                     const char *from, struct gpuq_entry *out, int cap, redisReply **reply) {
    return read_group(s, s->jobs_keys, GPUQ_GROUP, first, n, count, block_ms, from, out, cap, reply);
}

int gpuq_stream_read_hooks(struct gpuq_stream *s, int first, int n, int count,
                           struct gpuq_entry *out, int cap, redisReply **reply) {
    return read_group(s, s->hook_keys, GPUQ_HOOK_GROUP, first, n, count, -1, ">", out, cap, reply);
}

struct gpuq_str gpuq_entry_field(const struct gpuq_entry *e, const char *name) {
    struct gpuq_str v = {NULL, 0};
    const redisReply *f = e->fields;
    size_t n = strlen(name);
    for (size_t i = 0; f && f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING && f->element[i]->len == n &&
            memcmp(f->element[i]->str, name, n) == 0 && f->element[i + 1]->type == REDIS_REPLY_STRING) {
            v.ptr = f->element[i + 1]->str;
            v.len = f->element[i + 1]->len;
        }
    return v;
}

int gpuq_stream_claim(struct gpuq_stream *s, enum gpuq_stream_kind kind, int q,
                      int64_t min_idle_ms, int count, struct gpuq_entry *out, int cap,
                      redisReply **reply) {
    const char *key = kind == GPUQ_STREAM_JOBS ? s->jobs_keys[q] : s->hook_keys[q];
    const char *group = kind == GPUQ_STREAM_JOBS ? GPUQ_GROUP : GPUQ_HOOK_GROUP;
    char idle[24], cnt[24];
    *reply = NULL;
    if (s->down_until_us[q]) return 0;
    if ((!s->rc && gpuq_stream_connect(s, 2000) != 0) || gpuq_stream_use(s, q) != 0) return -1;
    snprintf(idle, sizeof(idle), "%lld", (long long)min_idle_ms);
    snprintf(cnt, sizeof(cnt), "%d", count);
    const char *xp[] = {"XPENDING", key, group, "IDLE", idle, "-", "+", cnt};
    redisReply *pend = command(s, 8, xp, NULL);
    if (!pend) return -1;
    if (pend->type != REDIS_REPLY_ARRAY) {
        gpuq_stream_set_error(s, REDIS_ERR_OTHER, pend->type == REDIS_REPLY_ERROR ? pend->str : "XPENDING");
        freeReplyObject(pend);
        return -1;
    }
    /* others' entries only: ours are already held by this worker */
    const char **argv = malloc((pend->elements + 5) * sizeof(char *));
    int64_t *deliveries = malloc((pend->elements + 1) * sizeof(int64_t));
    int argc = 0, got = 0;
    if (!argv || !deliveries) goto out;
    argv[argc++] = "XCLAIM";
    argv[argc++] = key;
    argv[argc++] = group;
    argv[argc++] = s->consumer;
    argv[argc++] = idle;
    for (size_t i = 0; i < pend->elements; i++) {
        const redisReply *p = pend->element[i];
        if (p->type != REDIS_REPLY_ARRAY || p->elements < 4 || p->element[1]->type != REDIS_REPLY_STRING ||
            (kind == GPUQ_STREAM_JOBS && strcmp(p->element[1]->str, s->consumer) == 0))
            continue;
        deliveries[argc - 5] = p->element[3]->type == REDIS_REPLY_INTEGER ? p->element[3]->integer : 1;
        argv[argc++] = p->element[0]->str;
    }
    if (argc == 5) goto out;
    redisReply *r = command(s, argc, argv, NULL);
    if (!r) {
        got = -1;
        goto out;
    }
    got = take_entries(s, q, r, out, cap);
    /* XCLAIM returns claimed entries in the order asked for: match the counts */
    for (int i = 0, a = 5; i < got; i++) {
        while (a < argc && strcmp(argv[a], out[i].id.ptr) != 0) a++;
        out[i].deliveries = a < argc ? deliveries[a - 5] + 1 : 1;
    }
    if (got > 0) *reply = r;
    else freeReplyObject(r);
out:
    free(argv);
    free(deliveries);
    freeReplyObject(pend);
    return got;
}

/* XCLAIM of up to 64 of this worker's own webhook entries on queue q, with
 * min-idle 0: resets their idle time. */
static redisReply *claim_own(struct gpuq_stream *s, int q, const char *const *ids, int n, int justid) {
    const char *argv[6 + 64];
    int argc = 0;
    if (n > 64) n = 64;
    argv[argc++] = "XCLAIM";
    argv[argc++] = s->hook_keys[q];
    argv[argc++] = GPUQ_HOOK_GROUP;
    argv[argc++] = s->consumer;
    argv[argc++] = "0";
    for (int i = 0; i < n; i++) argv[argc++] = ids[i];
    if (justid) argv[argc++] = "JUSTID";
    if (gpuq_stream_use(s, q) != 0) return NULL;
    return command(s, argc, argv, NULL);
}

int gpuq_stream_touch_hooks(struct gpuq_stream *s, int q, const char *const *ids, int n) {
    if (s->down_until_us[q]) return 0;
    redisReply *r = claim_own(s, q, ids, n, 1);
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

int gpuq_stream_load_hooks(struct gpuq_stream *s, int q, const char *const *ids, int n,
                           struct gpuq_entry *out, int cap, redisReply **reply) {
    *reply = NULL;
    if (s->down_until_us[q]) return 0;
    redisReply *r = claim_own(s, q, ids, n, 0);
    *reply = r;
    return r ? take_entries(s, q, r, out, cap) : -1;
}

int gpuq_stream_queue_stats(struct gpuq_stream *s, int q, int64_t *backlog, int64_t *pending) {
    const char *argv[] = {"XINFO", "GROUPS", s->jobs_keys[q]};
    *backlog = *pending = -1;
    if (s->down_until_us[q]) return 0;
    if (!s->rc || gpuq_stream_use(s, q) != 0) return -1;
    redisReply *r = command(s, 3, argv, NULL);
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

