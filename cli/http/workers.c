/* workers.c -- the live workers of a queue, as they advertise themselves in
 * P:{Q}:workers (docs/protocol.md, "Presence"), and the model a request that
 * names none goes to. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/http/http.h"
#include "queue/stream.h"
#include "worker/clock.h"

#define FORGET_MS 60000     /* an entry expired this long ago is removed */

json_t *gpuq_http_live_workers(struct gpuq_http *srv, const char *queue) {
    char key[512];
    gpuq_stream_key(key, sizeof(key), srv->cfg.target.prefix, queue, "workers");
    struct gpuq_conn *c = gpuq_http_pool_get(srv->pool, queue);
    if (!c) return NULL;
    redisReply *rep = gpuq_conn_command(c, "HGETALL %s", key);
    json_t *live = NULL;
    int64_t now_ms = gpuq_now_us() / 1000;
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
        live = json_array();
        for (size_t i = 0; i + 1 < rep->elements; i += 2) {
            const redisReply *f = rep->element[i], *v = rep->element[i + 1];
            if (v->type != REDIS_REPLY_STRING) continue;
            json_t *w = json_loadb(v->str, v->len, 0, NULL);
            json_int_t expires = json_integer_value(json_object_get(w, "expires_ms"));
            if (json_is_object(w) && expires > now_ms) {
                json_array_append(live, w);
            } else if (expires + FORGET_MS < now_ms && f->type == REDIS_REPLY_STRING) {
                redisReply *d = gpuq_conn_command(c, "HDEL %s %b", key, f->str, f->len);
                freeReplyObject(d);
            }
            json_decref(w);
        }
    }
    gpuq_http_pool_put(srv->pool, queue, c, rep == NULL);
    freeReplyObject(rep);
    return live;
}

const char *gpuq_http_pick_model(struct gpuq_http_req *r, char *buf, size_t cap) {
    static const char *const embed[] = {"embed", NULL};
    return gpuq_http_pick_model_for(r, embed, buf, cap);
}

static int one_of(const char *op, const char *const *ops) {
    for (; op && *ops; ops++)
        if (!strcmp(op, *ops)) return 1;
    return 0;
}

const char *gpuq_http_pick_model_for(struct gpuq_http_req *r, const char *const *ops, char *buf, size_t cap) {
    int embedding = !strcmp(ops[0], "embed");
    if (embedding && r->srv->cfg.default_model) return r->srv->cfg.default_model;
    json_t *workers = gpuq_http_live_workers(r->srv, r->queue);
    size_t i, j;
    json_t *w, *m;
    int found = 0;
    buf[0] = 0;
    json_array_foreach(workers, i, w) json_array_foreach(json_object_get(w, "models"), j, m) {
        const char *op = json_string_value(json_object_get(m, "op"));
        const char *name = json_string_value(json_object_get(m, "name"));
        if (!one_of(op, ops) || !name || !strcmp(name, buf)) continue;
        if (found++) break;
        snprintf(buf, cap, "%s", name);
    }
    json_decref(workers);
    if (found == 1) return buf;
    if (found == 0)
        gpuq_http_fail(r, r->route == GPUQ_HTTP_ROUTE_EMBED ? 424 : 400, "unknown_model",
                       "no model named, and no live worker on queue '%s' serves a model for %s "
                       "(start one with --model NAME=DIR%s)", r->queue, ops[0],
                       embedding ? ", or name one with --default-model" : "");
    else
        gpuq_http_fail(r, 400, "unknown_model", "no model named, and the workers on queue '%s' serve "
                       "several: name one ('model', or --default-model)", r->queue);
    return NULL;
}
