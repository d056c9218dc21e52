/* client.c -- connecting, enqueueing and waiting on hiredis. */
#include "queue/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run(redisContext *c, int argc, const char **argv, char *err, size_t errlen) {
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    int result = 0;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s: %s", argv[0], r ? r->str : c->errstr);
        result = -1;
    }
    freeReplyObject(r);
    return result;
}

redisContext *gpuq_redis_connect(const struct gpuq_redis_url *u, int timeout_ms, char *err,
                                 size_t errlen) {
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = u->path[0] ? redisConnectUnixWithTimeout(u->path, tv)
                                 : redisConnectWithTimeout(u->host, u->port, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "%s", c ? c->errstr : "out of memory");
        goto fail;
    }
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
    if (c) redisFree(c);
    return NULL;
}

int gpuq_client_enqueue(redisContext *c, const char *stream_key, char *const *jobs,
                        const size_t *lens, int n, char *first_id, size_t id_cap, char *err,
                        size_t errlen) {
    int result = 0;
    for (int i = 0; i < n; i++) {
        const char *argv[] = {"XADD", stream_key, "*", "job", jobs[i]};
        size_t argl[] = {4, strlen(stream_key), 1, 3, lens[i]};
        if (redisAppendCommandArgv(c, 5, argv, argl) != REDIS_OK) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
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

int gpuq_client_wait(redisContext *c, const char *list, double timeout_s, char **bytes,
                     size_t *len, char *err, size_t errlen) {
    char t[32];
    snprintf(t, sizeof(t), "%.3f", timeout_s);
    redisReply *r = redisCommand(c, "BLPOP %s %s", list, t);
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
