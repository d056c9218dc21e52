/* waiter.c -- the reply list's reader thread and the table of waits. */
#include "cli/http/waiter.h"

#include <jansson.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/clock.h"

#define BUCKETS 4096

struct gpuq_waiter {
    struct gpuq_cli_target target;
    char list[512];
    struct gpuq_conn *c;        /* the reader's own connection; NULL while reconnecting */
    pthread_t thread;
    pthread_mutex_t lock;
    int stop, up, count;
    struct gpuq_wait *buckets[BUCKETS];
};

static unsigned hash(const char *s) {
    unsigned h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % BUCKETS;
}

static void unlink_wait(struct gpuq_waiter *wt, struct gpuq_wait *w) {
    if (w->prev) w->prev->next = w->next;
    else wt->buckets[hash(w->id)] = w->next;
    if (w->next) w->next->prev = w->prev;
    w->next = w->prev = NULL;
    wt->count--;
}

/* Ends w (unlinked already): done, and woken if parked. Lock held. */
static void finish(struct gpuq_wait *w) {
    w->done = 1;
    if (w->parked && w->wake) w->wake(w);
}

/* The id a result carries: msgpack map or JSON object. 0, or -1. */
static int result_id(const char *b, size_t n, char *id, size_t cap) {
    int result = -1;
    if (n && b[0] == '{') {
        json_t *j = json_loadb(b, n, 0, NULL);
        const char *s = json_string_value(json_object_get(j, "id"));
        if (s && strlen(s) < cap) snprintf(id, cap, "%s", s), result = 0;
        json_decref(j);
        return result;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, b, n, &off) == MSGPACK_UNPACK_SUCCESS && u.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
            if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 2 && !memcmp(k->via.str.ptr, "id", 2) &&
                v->type == MSGPACK_OBJECT_STR && v->via.str.size < cap) {
                memcpy(id, v->via.str.ptr, v->via.str.size);
                id[v->via.str.size] = 0;
                result = 0;
            }
        }
    msgpack_unpacked_destroy(&u);
    return result;
}

static void deliver(struct gpuq_waiter *wt, const char *b, size_t n) {
    char id[160];
    if (result_id(b, n, id, sizeof(id)) != 0) return;    /* not a result: nobody waits for it */
    pthread_mutex_lock(&wt->lock);
    struct gpuq_wait *w = wt->buckets[hash(id)];
    while (w && strcmp(w->id, id) != 0) w = w->next;
    if (w && (w->bytes = malloc(n ? n : 1))) {
        memcpy(w->bytes, b, n);
        w->len = n;
        unlink_wait(wt, w);
        finish(w);
    }
    pthread_mutex_unlock(&wt->lock);
}

/* Times out the waits past their deadline (or all, when stopping); returns
 * the nearest deadline left, or now + 1 s. */
static double expire(struct gpuq_waiter *wt, int all) {
    double now = gpuq_mono_s(), next = now + 1;
    pthread_mutex_lock(&wt->lock);
    for (int b = 0; b < BUCKETS; b++)
        for (struct gpuq_wait *w = wt->buckets[b], *nx; w; w = nx) {
            nx = w->next;
            if (all || w->deadline <= now) {
                unlink_wait(wt, w);
                if (all) w->stopped = 1;
                else w->timed_out = 1;
                finish(w);
            } else if (w->deadline < next) {
                next = w->deadline;
            }
        }
    pthread_mutex_unlock(&wt->lock);
    return next;
}

static void *run(void *arg) {
    struct gpuq_waiter *wt = arg;
    double next_expiry = 0, backoff = 0.1;
    while (!__atomic_load_n(&wt->stop, __ATOMIC_ACQUIRE)) {
        double now = gpuq_mono_s();
        if (now >= next_expiry) next_expiry = expire(wt, 0);
        if (!wt->c) {
            struct timespec ts = {0, (long)(backoff * 1e9)};
            nanosleep(&ts, NULL);
            backoff = backoff * 2 > 2 ? 2 : backoff * 2;
            if ((wt->c = gpuq_cli_connect(&wt->target, "http"))) {
                gpuq_conn_set_timeout(wt->c, 5000);   /* a block is 0.1 s at most */
                backoff = 0.1;
            }
            __atomic_store_n(&wt->up, wt->c != NULL, __ATOMIC_RELEASE);
            continue;
        }
        /* a short block, so that deadlines and a stop are seen promptly */
        double wait = next_expiry - now;
        if (wait > 0.1) wait = 0.1;
        if (wait < 0.01) wait = 0.01;
        redisReply *r = gpuq_conn_command(wt->c, "BLPOP %s %.3f", wt->list, wait);
        if (!r) {
            fprintf(stderr, "gpuq http: reply list reader: %s; reconnecting\n", wt->c->errstr);
            gpuq_conn_free(wt->c);
            wt->c = NULL;
            __atomic_store_n(&wt->up, 0, __ATOMIC_RELEASE);
            continue;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->type == REDIS_REPLY_STRING)
            deliver(wt, r->element[1]->str, r->element[1]->len);
        freeReplyObject(r);
    }
    return NULL;
}

struct gpuq_waiter *gpuq_waiter_start(const struct gpuq_cli_target *t, const char *list, char *err,
                                      size_t errlen) {
    struct gpuq_waiter *wt = calloc(1, sizeof(*wt));
    if (!wt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    wt->target = *t;
    snprintf(wt->list, sizeof(wt->list), "%s", list);
    pthread_mutex_init(&wt->lock, NULL);
    if (!(wt->c = gpuq_cli_connect(t, "http"))) {
        snprintf(err, errlen, "cannot reach Redis for the reply list");
        goto fail;
    }
    gpuq_conn_set_timeout(wt->c, 5000);   /* a block is 0.1 s at most */
    wt->up = 1;
    if (pthread_create(&wt->thread, NULL, run, wt) != 0) {
        snprintf(err, errlen, "cannot start the reply list's thread");
        goto fail;
    }
    return wt;
fail:
    gpuq_conn_free(wt->c);
    pthread_mutex_destroy(&wt->lock);
    free(wt);
    return NULL;
}

void gpuq_waiter_stop(struct gpuq_waiter *wt) {
    if (!wt || __atomic_exchange_n(&wt->stop, 1, __ATOMIC_ACQ_REL)) return;
    pthread_join(wt->thread, NULL);
    expire(wt, 1);
}

void gpuq_waiter_free(struct gpuq_waiter *wt) {
    if (!wt) return;
    gpuq_waiter_stop(wt);
    gpuq_conn_free(wt->c);
    pthread_mutex_destroy(&wt->lock);
    free(wt);
}

int gpuq_waiter_add(struct gpuq_waiter *wt, struct gpuq_wait *w) {
    unsigned h = hash(w->id);
    int result = 0;
    w->done = w->timed_out = w->stopped = w->parked = 0;
    w->bytes = NULL;
    w->len = 0;
    pthread_mutex_lock(&wt->lock);
    struct gpuq_wait *o = wt->buckets[h];
    while (o && strcmp(o->id, w->id) != 0) o = o->next;
    if (o || wt->stop) {
        result = wt->stop ? -2 : -1;
    } else {
        w->prev = NULL;
        w->next = wt->buckets[h];
        if (w->next) w->next->prev = w;
        wt->buckets[h] = w;
        wt->count++;
    }
    pthread_mutex_unlock(&wt->lock);
    return result;
}

void gpuq_waiter_remove(struct gpuq_waiter *wt, struct gpuq_wait *w) {
    pthread_mutex_lock(&wt->lock);
    if (!w->done) {
        unlink_wait(wt, w);
        w->done = 1;
    }
    pthread_mutex_unlock(&wt->lock);
}

int gpuq_waiter_park(struct gpuq_waiter *wt, struct gpuq_wait *w, void (*park)(void *ud), void *ud) {
    int done;
    pthread_mutex_lock(&wt->lock);
    done = w->done;
    if (!done) {
        park(ud);
        w->parked = 1;
    }
    pthread_mutex_unlock(&wt->lock);
    return done;
}

int gpuq_waiter_count(struct gpuq_waiter *wt) {
    pthread_mutex_lock(&wt->lock);
    int n = wt->count;
    pthread_mutex_unlock(&wt->lock);
    return n;
}

int gpuq_waiter_up(struct gpuq_waiter *wt) { return __atomic_load_n(&wt->up, __ATOMIC_ACQUIRE); }
