/* dead.c -- dead letters on hiredis. */
#include "queue/dead.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/stream.h"

static int field_is(const redisReply *k, const char *name) {
    return k->type == REDIS_REPLY_STRING && k->len == strlen(name) && memcmp(k->str, name, k->len) == 0;
}

static void parse(const redisReply *e, struct gpuq_dead *d) {
    memset(d, 0, sizeof(*d));
    d->id.ptr = e->element[0]->str;
    d->id.len = e->element[0]->len;
    const redisReply *f = e->elements > 1 ? e->element[1] : NULL;
    for (size_t i = 0; f && f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        struct gpuq_str s = {v->str, v->len};
        if (v->type != REDIS_REPLY_STRING) continue;
        if (field_is(k, "job")) d->job = s;
        else if (field_is(k, "error")) d->error = s;
        else if (field_is(k, "callback")) d->callback = s;
        else if (field_is(k, "attempts")) d->attempts = strtoll(v->str, NULL, 10);
    }
}

static redisReply *range(struct gpuq_conn *c, const char *key, const char *start, const char *end,
                         int count, char *err, size_t errlen) {
    char n[24];
    snprintf(n, sizeof(n), "%d", count);
    const char *argv[] = {"XRANGE", key, start, end, "COUNT", n};
    redisReply *r = gpuq_conn_command_argv(c, 6, argv, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "XRANGE: %s", r ? (r->type == REDIS_REPLY_ERROR ? r->str : "bad reply") : c->errstr);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

int gpuq_dead_list(struct gpuq_conn *c, const char *prefix, const char *queue, const char *start,
                   int count, void (*fn)(void *ud, const struct gpuq_dead *d), void *ud,
                   char *err, size_t errlen) {
    char key[512];
    gpuq_stream_key(key, sizeof(key), prefix, queue, "dead");
    redisReply *r = range(c, key, start, "+", count, err, errlen);
    if (!r) return -1;
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1) continue;
        struct gpuq_dead d;
        parse(e, &d);
        fn(ud, &d);
        n++;
    }
    freeReplyObject(r);
    return n;
}

int gpuq_dead_retry(struct gpuq_conn *c, const char *prefix, const char *queue, const char *id,
                    char *err, size_t errlen) {
    char dead[512], jobs[512];
    gpuq_stream_key(dead, sizeof(dead), prefix, queue, "dead");
    gpuq_stream_key(jobs, sizeof(jobs), prefix, queue, "jobs");
    redisReply *r = range(c, dead, id, id, 1, err, errlen);
    if (!r) return -1;
    int result = 0;
    struct gpuq_dead d;
    if (r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY) {
        parse(r->element[0], &d);
        if (d.job.len > 0) {
            /* a JSON job goes back as one: no msgpack job starts with '{' */
            const char *argv[] = {"XADD", jobs, "*", d.job.ptr[0] == '{' ? "json" : "job", d.job.ptr};
            size_t lens[] = {4, strlen(jobs), 1, strlen(argv[3]), d.job.len};
            const char *del[] = {"XDEL", dead, id};
            gpuq_conn_appendf(c, "MULTI");
            gpuq_conn_append(c, 5, argv, lens);
            gpuq_conn_append(c, 3, del, NULL);
            gpuq_conn_appendf(c, "EXEC");
            result = 1;
            for (int i = 0; i < 4; i++) {
                redisReply *x = NULL;
                if (gpuq_conn_reply(c, &x) != 0) {
                    snprintf(err, errlen, "retry: %s", c->errstr);
                    result = -1;
                    break;
                }
                if (i == 3 && x->type != REDIS_REPLY_ARRAY) {
                    snprintf(err, errlen, "retry: transaction failed");
                    result = -1;
                }
                freeReplyObject(x);
            }
        }
    }
    freeReplyObject(r);
    return result;
}

long long gpuq_dead_purge(struct gpuq_conn *c, const char *prefix, const char *queue, const char *id,
                          char *err, size_t errlen) {
    char dead[512];
    gpuq_stream_key(dead, sizeof(dead), prefix, queue, "dead");
    redisReply *r = id ? gpuq_conn_command(c, "XDEL %s %s", dead, id) : gpuq_conn_command(c, "XLEN %s", dead);
    long long n = -1;
    if (r && r->type == REDIS_REPLY_INTEGER) n = r->integer;
    else snprintf(err, errlen, "%s", r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
    freeReplyObject(r);
    if (!id && n >= 0) {
        r = gpuq_conn_command(c, "DEL %s", dead);
        if (!r || r->type == REDIS_REPLY_ERROR) n = -1, snprintf(err, errlen, "DEL failed");
        freeReplyObject(r);
    }
    return n;
}
