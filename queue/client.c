/* client.c -- connecting, enqueueing and waiting. */
#include "queue/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run(struct gpuq_conn *c, int argc, const char **argv, char *err, size_t errlen) {
    redisReply *r = gpuq_conn_command_argv(c, argc, argv, NULL);
    int result = 0;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s: %s", argv[0], r ? r->str : c->errstr);
        result = -1;
    }
    freeReplyObject(r);
    return result;
}

struct gpuq_conn *gpuq_redis_connect(const struct gpuq_redis_url *u, struct gpuq_tls *tls,
                                     int timeout_ms, char *err, size_t errlen) {
    struct gpuq_conn *c = gpuq_conn_open(u, tls, timeout_ms, err, errlen);
    if (!c) return NULL;
    if (u->password[0]) {
        const char *a3[] = {"AUTH", u->user, u->password};
        if (run(c, u->user[0] ? 3 : 2, u->user[0] ? a3 : (const char *[]){"AUTH", u->password}, err,
                errlen) != 0)
            goto fail;
    }
    if (u->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[] = {"SELECT", db};
        if (run(c, 2, argv, err, errlen) != 0) goto fail;
    }
    return c;
fail:
    gpuq_conn_free(c);
    return NULL;
}

int gpuq_client_enqueue(struct gpuq_conn *c, const char *stream_key, char *const *jobs,
                        const size_t *lens, int n, char *first_id, size_t id_cap, char *err,
                        size_t errlen) {
    int result = 0;
    for (int i = 0; i < n; i++) {
        const char *argv[] = {"XADD", stream_key, "*", "job", jobs[i]};
        size_t argl[] = {4, strlen(stream_key), 1, 3, lens[i]};
        if (gpuq_conn_append(c, 5, argv, argl) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (gpuq_conn_reply(c, &r) != 0) {
            snprintf(err, errlen, "XADD: %s", c->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "XADD: %s", r->str);
            result = -1;
        } else if (i == 0 && first_id && r->type == REDIS_REPLY_STRING) {
            snprintf(first_id, id_cap, "%s", r->str);
        }
        freeReplyObject(r);
    }
    return result;
}

int gpuq_client_wait(struct gpuq_conn *c, const char *list, double timeout_s, char **bytes,
                     size_t *len, char *err, size_t errlen) {
    char t[32];
    snprintf(t, sizeof(t), "%.3f", timeout_s);
    redisReply *r = gpuq_conn_command(c, "BLPOP %s %s", list, t);
    int result = -1;
    if (!r) {
        snprintf(err, errlen, "BLPOP: %s", c->errstr);
        return -1;
    }
    if (r->type == REDIS_REPLY_NIL) {
        result = 0;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               r->element[1]->type == REDIS_REPLY_STRING) {
        *len = r->element[1]->len;
        *bytes = malloc(*len ? *len : 1);
        if (*bytes) {
            memcpy(*bytes, r->element[1]->str, *len);
            result = 1;
        } else {
            snprintf(err, errlen, "out of memory");
        }
    } else {
        snprintf(err, errlen, "BLPOP: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    return result;
}

static int64_t xlen(struct gpuq_conn *c, const char *key) {
    redisReply *r = gpuq_conn_command(c, "XLEN %s", key);
    int64_t n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

/* The integer field name of a flat [name, value, ...] reply, or -1. */
static int64_t field_int(const redisReply *f, const char *name) {
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING && !strcmp(f->element[i]->str, name))
            return f->element[i + 1]->type == REDIS_REPLY_INTEGER ? f->element[i + 1]->integer : -1;
    return -1;
}

static const char *field_str(const redisReply *f, const char *name) {
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING && !strcmp(f->element[i]->str, name))
            return f->element[i + 1]->type == REDIS_REPLY_STRING ? f->element[i + 1]->str : NULL;
    return NULL;
}

int gpuq_client_stats(struct gpuq_conn *c, const char *prefix, const char *queue,
                      struct gpuq_queue_stats *st, char *err, size_t errlen) {
    char jobs[512], dead[512], hooks[512];
    snprintf(jobs, sizeof(jobs), "%s:{%s}:jobs", prefix, queue);
    snprintf(dead, sizeof(dead), "%s:{%s}:dead", prefix, queue);
    snprintf(hooks, sizeof(hooks), "%s:{%s}:webhooks", prefix, queue);
    memset(st, 0, sizeof(*st));
    st->backlog = st->pending = st->read = -1;
    redisReply *t = gpuq_conn_command(c, "TYPE %s", jobs);   /* XLEN says 0 for a missing key */
    int missing = t && t->type == REDIS_REPLY_STATUS && !strcmp(t->str, "none");
    freeReplyObject(t);
    if ((st->length = missing ? -1 : xlen(c, jobs)) < 0 && c->err) {
        snprintf(err, errlen, "%s", c->errstr);
        return -1;
    }
    st->dead = xlen(c, dead);
    st->hooks = xlen(c, hooks);
    redisReply *r = gpuq_conn_command(c, "XINFO GROUPS %s", jobs);
    for (size_t g = 0; r && r->type == REDIS_REPLY_ARRAY && g < r->elements; g++) {
        const char *name = field_str(r->element[g], "name");
        if (!name || strcmp(name, "workers") != 0) continue;
        st->backlog = field_int(r->element[g], "lag");
        st->pending = field_int(r->element[g], "pending");
        st->read = field_int(r->element[g], "entries-read");
    }
    freeReplyObject(r);
    r = gpuq_conn_command(c, "XINFO CONSUMERS %s workers", jobs);
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements && st->n_consumers < 32; i++) {
        const char *name = field_str(r->element[i], "name");
        snprintf(st->consumers[st->n_consumers].name, sizeof(st->consumers[0].name), "%s", name ? name : "?");
        st->consumers[st->n_consumers].pending = field_int(r->element[i], "pending");
        st->consumers[st->n_consumers].idle_ms = field_int(r->element[i], "idle");
        st->n_consumers++;
    }
    freeReplyObject(r);
    if (c->err) {
        snprintf(err, errlen, "%s", c->errstr);
        return -1;
    }
    return 0;
}

int gpuq_client_result(struct gpuq_conn *c, const char *prefix, const char *queue, const char *id,
                       char **bytes, size_t *len, char *err, size_t errlen) {
    char key[1024];
    snprintf(key, sizeof(key), "%s:{%s}:result:%s", prefix, queue, id);
    const char *argv[] = {"GET", key};
    redisReply *r = gpuq_conn_command_argv(c, 2, argv, NULL);
    int result = -1;
    if (!r) {
        snprintf(err, errlen, "GET: %s", c->errstr);
        return -1;
    }
    if (r->type == REDIS_REPLY_NIL) {
        result = 0;
    } else if (r->type == REDIS_REPLY_STRING && (*bytes = malloc(r->len + 1))) {
        memcpy(*bytes, r->str, r->len);
        *len = r->len;
        result = 1;
    } else {
        snprintf(err, errlen, "GET: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    return result;
}
