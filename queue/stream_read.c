/* stream_read.c -- Redis Streams consumer: reading jobs and webhook
 * entries (new ones, a live worker's own again, prefetched), claiming what
 * dead consumers left pending, and handing back what will not run. */
#include "queue/stream.h"

#include "queue/stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        redisReply *r = gpuq_stream_command(s, 7, argv, NULL);
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
    redisReply *r = gpuq_stream_command(s, argc, argv, NULL);
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
        if (gpuq_stream_use(s, e[i].queue) != 0 || gpuq_stream_simple(s, argc, argv, NULL, NULL) != 0) return -1;
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
    redisReply *pend = gpuq_stream_command(s, 8, xp, NULL);
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
    redisReply *r = gpuq_stream_command(s, argc, argv, NULL);
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
    return gpuq_stream_command(s, argc, argv, NULL);
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
