/* publish.c -- the writing half of a worker's connection: a batch's results,
 * dead letters, webhook records and acks in one MULTI/EXEC, and what Redis
 * refused in it told apart, so one job's bad reply list costs that job its
 * push and nothing more. */
#include "queue/stream.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/slot.h"
#include "queue/stream_int.h"

/* An entry to XACK and XDEL when the transaction is sent. */
struct gpuq_ack {
    int queue;
    int hook;               /* a webhook delivery entry, not a job entry */
    struct gpuq_str id;
};

/* Values pushed to one reply list, linked through gpuq_pushed.next. */
struct gpuq_push {
    int queue;
    struct gpuq_str key;    /* borrowed from the job until the transaction is sent */
    int64_t ttl;            /* the longest any of its results asks for */
    int head, tail, n;
};

struct gpuq_pushed {
    size_t off, len;        /* in arena */
    int next;
};

/* Pushes, then sets the TTL only if the push succeeded: a key of another
 * type, or one the user may not write, is never given a TTL. (The #!lua
 * line needs Redis 7.) */
static const char push_script[] =
    "#!lua\n"   /* a flagged script: refused when queued if Redis is out of memory */
    "local n = redis.pcall('RPUSH', KEYS[1], unpack(ARGV, 2))\n"
    "if type(n) == 'table' and n.err then return n end\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[1])\n"
    "return n\n";

/* Lua's unpack() takes at most a few thousand values: longer runs of
 * values for one list go out as several EVALs. */
#define VALUES_PER_EVAL 1000

/* grows *p, of *cap elements of size sz, to hold at least want */
static int grow(void **p, int *cap, int want, size_t sz) {
    if (want <= *cap) return 0;
    int n = *cap ? *cap : 64;
    while (n < want) n *= 2;
    void *q = realloc(*p, (size_t)n * sz);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

void gpuq_stream_free_writes(struct gpuq_stream *s) {
    if (!s->tx) return;     /* gpuq_stream_init ran out of memory */
    free(s->tx->tags);
    free(s->tx->acks);
    free(s->tx->pushes);
    free(s->tx->vals);
    free(s->tx->arena);
    free(s->tx->txbuf);
    gpuq_stream_refused_clear(s);
    s->tx->tags = NULL, s->tx->acks = NULL, s->tx->pushes = NULL, s->tx->vals = NULL, s->tx->arena = NULL;
    s->tx->txbuf = NULL;
    s->tx->cap_tags = s->tx->cap_acks = s->tx->cap_pushes = s->tx->cap_vals = 0;
    s->tx->arena_cap = s->tx->txbuf_cap = 0;
}

/* Notes that the transaction writes to queue q: on a cluster all of it must
 * be in one slot (the caller's to see to, with gpuq_stream_one_tx). */
static void to_queue(struct gpuq_stream *s, int q) {
    if (s->tx->tx_queue < 0) s->tx->tx_queue = q;
    assert(gpuq_stream_one_tx(s, s->tx->tx_queue, q));
}

/* Formats one command into the transaction's buffer: it goes to Redis, in
 * its place, when the transaction is sent. */
static void append(struct gpuq_stream *s, int argc, const char **argv, const size_t *lens) {
    if (gpuq_resp_format(&s->tx->txbuf, &s->tx->txbuf_len, &s->tx->txbuf_cap, argc, argv, lens) != 0) {
        s->tx->failed = 1;
        return;
    }
    s->tx->n_cmds++;
}

/* Sends one command now, into hiredis's buffer, tagged with the push it
 * carries (-1: none), so its reply can be told apart. */
static void send_now(struct gpuq_stream *s, int argc, const char **argv, const size_t *lens, int tag) {
    if (!s->rc || grow((void **)&s->tx->tags, &s->tx->cap_tags, s->tx->queued + 1, sizeof(int)) != 0 ||
        gpuq_conn_append(s->rc, argc, argv, lens) != 0) {
        s->tx->failed = 1;
        return;
    }
    s->tx->tags[s->tx->queued++] = tag;
}

void gpuq_stream_begin(struct gpuq_stream *s) {
    for (int i = 0; i < s->tx->n_refused; i++)
        if (s->tx->refused[i].queued) s->tx->refused[i].jobs = 0;  /* counted again as they are put */
    s->tx->queued = 0;
    s->tx->tx_queue = -1;
    s->tx->n_cmds = 0;
    s->tx->failed = 0;
    s->tx->tx_bytes = 0;
    s->tx->n_acks = s->tx->n_pushes = s->tx->n_vals = 0;
    s->tx->arena_len = s->tx->txbuf_len = 0;
}

static struct gpuq_refused *refused(struct gpuq_stream *s, struct gpuq_str key) {
    for (int i = 0; i < s->tx->n_refused; i++)
        if (s->tx->refused[i].len == key.len && !memcmp(s->tx->refused[i].key, key.ptr, key.len))
            return &s->tx->refused[i];
    return NULL;
}

/* Whether Redis refused a command for its key (no permission, another
 * slot, a key of another type), not for its own state (out of memory,
 * read-only, loading, a cluster slot moving), which refuses everything alike. */
static int about_the_key(const char *err) {
    static const char *const codes[] = {"NOPERM", "CROSSSLOT", "WRONGTYPE"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (!strncmp(err, codes[i], strlen(codes[i])) && err[strlen(codes[i])] == ' ') return 1;
    return 0;
}

/* Records that Redis refused a push to key; NULL when too many were. */
static struct gpuq_refused *refuse(struct gpuq_stream *s, struct gpuq_str key, const char *err,
                                   int queued) {
    struct gpuq_refused *r = refused(s, key);
    if (!r) {
        if (s->tx->n_refused == GPUQ_MAX_REFUSED) return NULL;
        r = &s->tx->refused[s->tx->n_refused];
        if (!(r->key = malloc(key.len))) return NULL;
        memcpy(r->key, key.ptr, key.len);
        r->len = key.len;
        r->jobs = 0;
        s->tx->n_refused++;
    }
    snprintf(r->err, sizeof(r->err), "%s", err);
    r->queued = queued;
    return r;
}

const struct gpuq_refused *gpuq_stream_refused(const struct gpuq_stream *s, int *n) {
    *n = s->tx->n_refused;
    return s->tx->refused;
}

size_t gpuq_stream_tx_bytes(const struct gpuq_stream *s) { return s->tx->tx_bytes; }

void gpuq_stream_fail_tx(struct gpuq_stream *s) { s->tx->failed = 1; }

void gpuq_stream_refused_clear(struct gpuq_stream *s) {
    for (int i = 0; i < s->tx->n_refused; i++) free(s->tx->refused[i].key);
    s->tx->n_refused = 0;
}

/* Files a value under its reply list, copying the bytes, which the caller
 * reuses. Recent lists are looked up, so the jobs of one client, which
 * share a list, share one EVAL; a list seen again later gets another. */
static void push(struct gpuq_stream *s, int queue, struct gpuq_str key, const char *bytes,
                 size_t len, int64_t ttl) {
    struct gpuq_push *p = NULL;
    for (int i = s->tx->n_pushes - 1; i >= 0 && i >= s->tx->n_pushes - 8 && !p; i--)
        if (s->tx->pushes[i].queue == queue && s->tx->pushes[i].key.len == key.len &&
            !memcmp(s->tx->pushes[i].key.ptr, key.ptr, key.len))
            p = &s->tx->pushes[i];
    if (s->tx->arena_len + len > s->tx->arena_cap) {
        size_t cap = s->tx->arena_cap ? s->tx->arena_cap : 65536;
        while (cap < s->tx->arena_len + len) cap *= 2;
        char *a = realloc(s->tx->arena, cap);
        if (!a) goto oom;
        s->tx->arena = a;
        s->tx->arena_cap = cap;
    }
    if (grow((void **)&s->tx->vals, &s->tx->cap_vals, s->tx->n_vals + 1, sizeof(*s->tx->vals)) != 0) goto oom;
    if (!p) {
        if (grow((void **)&s->tx->pushes, &s->tx->cap_pushes, s->tx->n_pushes + 1, sizeof(*s->tx->pushes)) != 0)
            goto oom;
        p = &s->tx->pushes[s->tx->n_pushes++];
        *p = (struct gpuq_push){queue, key, ttl, -1, -1, 0};
    }
    memcpy(s->tx->arena + s->tx->arena_len, bytes, len);
    s->tx->vals[s->tx->n_vals] = (struct gpuq_pushed){s->tx->arena_len, len, -1};
    s->tx->arena_len += len;
    if (p->tail >= 0) s->tx->vals[p->tail].next = s->tx->n_vals;
    else p->head = s->tx->n_vals;
    p->tail = s->tx->n_vals++;
    p->n++;
    if (ttl > p->ttl) p->ttl = ttl;
    return;
oom:
    s->tx->failed = 1;
}

void gpuq_stream_put_result(struct gpuq_stream *s, int queue, struct gpuq_str id,
                            const char *bytes, size_t len, int64_t ttl_s,
                            struct gpuq_str reply_to) {
    char key[1024], ttl[24];
    to_queue(s, queue);
    s->tx->tx_bytes += len;
    if (ttl_s > 0) {
        size_t pre = strlen(s->result_prefixes[queue]);
        if (pre + id.len >= sizeof(key)) {      /* the codec bounds id lengths */
            s->tx->failed = 1;
            return;
        }
        memcpy(key, s->result_prefixes[queue], pre);
        memcpy(key + pre, id.ptr, id.len);
        const char *argv[] = {"SET", key, bytes, "EX", ttl};
        size_t lens[] = {3, pre + id.len, len, 2, (size_t)snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s)};
        append(s, 5, argv, lens);
    }
    if (!reply_to.ptr) return;
    struct gpuq_refused *r = refused(s, reply_to);
    if (r) {
        r->jobs++;      /* refused earlier in this transaction: its result key stands */
        return;
    }
    /* a reply list with no result TTL still expires, after a day */
    push(s, queue, reply_to, bytes, len, ttl_s > 0 ? ttl_s : 86400);
    s->tx->tx_bytes += len;
}

void gpuq_stream_put_cached(struct gpuq_stream *s, int queue, const char *name, const void *value,
                            size_t len, int64_t ttl_s) {
    char key[1024], ttl[24];
    to_queue(s, queue);
    snprintf(key, sizeof(key), "%s%.64s", s->cache_prefixes[queue], name);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
    const char *argv[] = {"SET", key, value, "EX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    s->tx->tx_bytes += len;
    append(s, 5, argv, lens);
}

void gpuq_stream_put_dead(struct gpuq_stream *s, int queue, struct gpuq_str job,
                          const char *error, size_t error_len, int64_t attempts,
                          struct gpuq_str callback) {
    char att[24];
    to_queue(s, queue);
    snprintf(att, sizeof(att), "%lld", (long long)attempts);
    const char *argv[] = {"XADD", s->dead_keys[queue], "*", "job", job.ptr ? job.ptr : "",
                          "error", error, "attempts", att, "callback", callback.ptr};
    size_t lens[] = {4, strlen(s->dead_keys[queue]), 1, 3, job.ptr ? job.len : 0, 5, error_len, 8,
                     strlen(att), 8, callback.len};
    s->tx->tx_bytes += lens[4];
    append(s, callback.ptr ? 11 : 9, argv, lens);
}

void gpuq_stream_put_hook(struct gpuq_stream *s, int queue, struct gpuq_str id,
                          struct gpuq_str url, int msgpack_body, const char *result, size_t len,
                          struct gpuq_str job) {
    to_queue(s, queue);
    const char *argv[] = {"XADD", s->hook_keys[queue], "*", "id", id.ptr, "url", url.ptr,
                          "format", msgpack_body ? "msgpack" : "json", "result", result,
                          "job", job.ptr ? job.ptr : ""};
    size_t lens[] = {4, strlen(s->hook_keys[queue]), 1, 2, id.len, 3, url.len, 6,
                     msgpack_body ? 7 : 4, 6, len, 3, job.ptr ? job.len : 0};
    s->tx->tx_bytes += len + lens[12];
    append(s, 13, argv, lens);
}

static void ack(struct gpuq_stream *s, int queue, int hook, struct gpuq_str id) {
    to_queue(s, queue);
    if (grow((void **)&s->tx->acks, &s->tx->cap_acks, s->tx->n_acks + 1, sizeof(*s->tx->acks)) != 0) {
        s->tx->failed = 1;
        return;
    }
    s->tx->acks[s->tx->n_acks++] = (struct gpuq_ack){queue, hook, id};
}

void gpuq_stream_hook_done(struct gpuq_stream *s, int queue, struct gpuq_str entry_id) {
    ack(s, queue, 1, entry_id);
}

void gpuq_stream_ack(struct gpuq_stream *s, int queue, struct gpuq_str entry_id) {
    ack(s, queue, 0, entry_id);
}

/* ---- sending ---- */

/* Whether push p goes before the transaction: on a cluster, a list in
 * another slot than its queue cannot be in the same MULTI. */
static int pushed_first(const struct gpuq_stream *s, int p) {
    const struct gpuq_push *g = &s->tx->pushes[p];
    return s->cl && gpuq_key_slot(g->key.ptr, g->key.len) != s->slots[g->queue];
}

/* Pushes to a list in another slot at once, on its own master (wherever
 * MOVED and ASK say it is), before the transaction that acks its jobs is
 * sent. A refusal about the list costs its jobs their push; anything else
 * (a master unreachable, out of memory) fails the transaction, to be sent
 * again later, so a reply is never lost. */
static void push_elsewhere(struct gpuq_stream *s, int p, int argc, const char **argv,
                           const size_t *lens) {
    const struct gpuq_push *g = &s->tx->pushes[p];
    redisReply *r = gpuq_cluster_command(s->cl, gpuq_key_slot(g->key.ptr, g->key.len), argc, argv,
                                         lens);
    struct gpuq_refused *f;
    if (!r) {
        gpuq_stream_set_error(s, REDIS_ERR_IO, s->cl->err);
        s->tx->failed = 1;
    } else if (r->type == REDIS_REPLY_ERROR && !about_the_key(r->str)) {
        gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->str);
        s->tx->failed = 1;
    } else if (r->type == REDIS_REPLY_ERROR && (f = refuse(s, g->key, r->str, 0))) {
        f->jobs += g->n;
    }
    if (r) freeReplyObject(r);
}

/* The grouped pushes of one kind: EVAL script 1 list ttl value... */
static void send_pushes(struct gpuq_stream *s, int first, const char **argv, size_t *lens) {
    for (int p = 0; p < s->tx->n_pushes; p++) {
        const struct gpuq_push *g = &s->tx->pushes[p];
        char ttl[24];
        if (pushed_first(s, p) != first) continue;
        snprintf(ttl, sizeof(ttl), "%lld", (long long)g->ttl);
        for (int v = g->head; v >= 0;) {
            int argc = 0;
            argv[argc] = "EVAL", lens[argc++] = 4;
            argv[argc] = push_script, lens[argc++] = sizeof(push_script) - 1;
            argv[argc] = "1", lens[argc++] = 1;
            argv[argc] = g->key.ptr, lens[argc++] = g->key.len;
            argv[argc] = ttl, lens[argc++] = strlen(ttl);
            for (; v >= 0 && argc < 5 + VALUES_PER_EVAL; v = s->tx->vals[v].next) {
                argv[argc] = s->tx->arena + s->tx->vals[v].off;
                lens[argc++] = s->tx->vals[v].len;
            }
            if (first) push_elsewhere(s, p, argc, argv, lens);
            else send_now(s, argc, argv, lens, p);
        }
    }
}

/* One XACK and one XDEL per stream, each with all of its ids. */
static void send_acks(struct gpuq_stream *s, const char **argv, size_t *lens) {
    for (int q = 0; q < s->n_queues; q++)
        for (int hook = 0; hook < 2; hook++) {
            const char *key = hook ? s->hook_keys[q] : s->jobs_keys[q];
            const char *group = hook ? GPUQ_HOOK_GROUP : GPUQ_GROUP;
            int n = 3;
            for (int i = 0; i < s->tx->n_acks; i++)
                if (s->tx->acks[i].queue == q && s->tx->acks[i].hook == hook) {
                    argv[n] = s->tx->acks[i].id.ptr;
                    lens[n++] = s->tx->acks[i].id.len;
                }
            if (n == 3) continue;
            argv[0] = "XACK", lens[0] = 4;
            argv[1] = key, lens[1] = strlen(key);
            argv[2] = group, lens[2] = strlen(group);
            send_now(s, n, argv, lens, -1);
            argv[1] = "XDEL", lens[1] = 4;
            argv[2] = key, lens[2] = strlen(key);
            send_now(s, n - 1, argv + 1, lens + 1, -1);
        }
}

/* In this order: pushes to lists in other slots (on a cluster, each on its
 * master, answered at once), then MULTI, the buffered commands, the pushes
 * in the queue's slot, the acks, EXEC. So a reply is pushed before its job
 * is acked, never after. */
int gpuq_stream_send(struct gpuq_stream *s) {
    int most = s->tx->n_acks > VALUES_PER_EVAL ? s->tx->n_acks : VALUES_PER_EVAL;
    const char **argv = malloc((size_t)(most + 8) * sizeof(*argv));
    size_t *lens = malloc((size_t)(most + 8) * sizeof(*lens));
    const char *multi[] = {"MULTI"};
    if (argv && lens && s->cl) send_pushes(s, 1, argv, lens);
    if (s->cl && gpuq_stream_use(s, s->tx->tx_queue < 0 ? 0 : s->tx->tx_queue) != 0) s->tx->failed = 1;
    if (argv && lens && s->rc) {
        send_now(s, 1, multi, NULL, -1);
        if (grow((void **)&s->tx->tags, &s->tx->cap_tags, s->tx->queued + s->tx->n_cmds, sizeof(int)) != 0 ||
            (s->tx->txbuf_len && gpuq_conn_append_formatted(s->rc, s->tx->txbuf, s->tx->txbuf_len) != 0))
            s->tx->failed = 1;
        for (int i = 0; i < s->tx->n_cmds && !s->tx->failed; i++) s->tx->tags[s->tx->queued++] = -1;
        send_pushes(s, 0, argv, lens);
        send_acks(s, argv, lens);
    } else {
        s->tx->failed = 1;
    }
    free(argv);
    free(lens);
    if (s->tx->txbuf_cap > GPUQ_STREAM_KEEP_BYTES) {    /* an outsized batch's */
        free(s->tx->txbuf);
        s->tx->txbuf = NULL;
        s->tx->txbuf_cap = 0;
    }
    if (!s->rc) return -1;
    if (s->tx->queued > 0) {
        const char *end[] = {s->tx->failed ? "DISCARD" : "EXEC"};
        send_now(s, 1, end, NULL, -1);
    }
    s->tx->sent = s->tx->queued;
    if (gpuq_conn_flush(s->rc) != 0) {
        gpuq_stream_drop(s);
        return -1;
    }
    return 0;
}

/* The EXEC reply of an applied transaction: element j answers the command
 * after MULTI's j. A failed push is that list's jobs' loss; anything else
 * is reported. */
static int applied(struct gpuq_stream *s, const redisReply *r) {
    int result = GPUQ_COMMIT_OK;
    for (size_t j = 0; j < r->elements && (int)j + 1 < s->tx->queued; j++) {
        if (r->element[j]->type != REDIS_REPLY_ERROR) continue;
        int tag = s->tx->tags[(int)j + 1];
        if (tag >= 0) {
            struct gpuq_refused *f = refuse(s, s->tx->pushes[tag].key, r->element[j]->str, 0);
            if (f) f->jobs += s->tx->pushes[tag].n;     /* every job that list had */
        } else if (result == GPUQ_COMMIT_OK) {
            gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->element[j]->str);
            result = GPUQ_COMMIT_PARTIAL;
        }
    }
    return result;
}

int gpuq_stream_wait(struct gpuq_stream *s) {
    int expect = s->tx->sent, pushes_refused = 0, others_refused = 0, result = GPUQ_COMMIT_OK;
    char redirected[128] = "";
    s->tx->sent = 0;
    if (!s->rc) return GPUQ_COMMIT_LOST;
    for (int i = 0; i < expect; i++) {
        redisReply *r = NULL;
        if (gpuq_conn_reply(s->rc, &r) != 0 || !r) {
            gpuq_stream_drop(s);
            return GPUQ_COMMIT_LOST;
        }
        int tag = i < s->tx->queued ? s->tx->tags[i] : -1;
        if (redirected[0] || (s->cl && r->type == REDIS_REPLY_ERROR && gpuq_cluster_redirected(r->str))) {
            /* the queue's slot moved or moves: nothing was applied */
            if (!redirected[0]) snprintf(redirected, sizeof(redirected), "%s", r->str);
        } else if (i == expect - 1) {
            if (r->type == REDIS_REPLY_ARRAY && !s->tx->failed) {
                result = applied(s, r);
            } else if (!others_refused && !pushes_refused) {
                gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->type == REDIS_REPLY_ERROR ? r->str
                                      : "transaction not applied");
                others_refused = 1;
            }
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* refused when queued: the whole transaction is discarded */
            if (tag >= 0 && about_the_key(r->str) && refuse(s, s->tx->pushes[tag].key, r->str, 1)) {
                pushes_refused = 1;
            } else if (!others_refused) {
                gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->str);
                others_refused = 1;
            }
        }
        freeReplyObject(r);
    }
    if (s->tx->failed && !others_refused)
        gpuq_stream_set_error(s, REDIS_ERR_OOM, "could not queue the transaction");
    if (s->tx->arena_cap > GPUQ_STREAM_KEEP_BYTES) {    /* an outsized batch's copies */
        free(s->tx->arena);
        s->tx->arena = NULL;
        s->tx->arena_cap = 0;
    }
    /* the queue's slot moved (its pending entries with it): build the
     * transaction again for the new master at once; it is moving (ASK,
     * TRYAGAIN) or the cluster is down: later. Nothing is read again, so
     * no entry counts a delivery more. */
    if (redirected[0]) {
        gpuq_stream_set_error(s, REDIS_ERR_OTHER, redirected);
        return gpuq_cluster_moved(s->cl, redirected) == 0 ? GPUQ_COMMIT_RETRY : GPUQ_COMMIT_REFUSED;
    }
    if (s->tx->failed || others_refused) return GPUQ_COMMIT_REFUSED;
    if (pushes_refused) return GPUQ_COMMIT_RETRY;
    return result;
}

int gpuq_stream_commit(struct gpuq_stream *s) {
    if (gpuq_stream_send(s) != 0) return GPUQ_COMMIT_LOST;
    return gpuq_stream_wait(s);
}
