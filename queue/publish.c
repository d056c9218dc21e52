/* publish.c -- the writing half of a worker's connection: a batch's results,
 * dead letters, webhook records and acks in one MULTI/EXEC, and what Redis
 * refused in it told apart, so one job's bad reply list costs that job its
 * push and nothing more. */
#include "queue/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/stream_int.h"

/* An entry to XACK and XDEL when the transaction is sent. */
struct gpuq_ack {
    int queue;
    int hook;               /* a webhook delivery entry, not a job entry */
    struct gpuq_str id;
};

/* Values pushed to one reply list, linked through gpuq_pushed.next. */
struct gpuq_push {
    struct gpuq_str key;    /* borrowed from the job until the transaction is sent */
    int64_t ttl;            /* the longest any of its results asks for */
    int head, tail, n;
};

struct gpuq_pushed {
    size_t off, len;        /* in arena */
    int next;
};

/* Pushes, then sets the TTL only if the push succeeded: a key of another
 * type, or one the user may not write, is never given a TTL. */
static const char push_script[] =
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
    free(s->tags);
    free(s->acks);
    free(s->pushes);
    free(s->vals);
    free(s->arena);
    gpuq_stream_refused_clear(s);
    s->tags = NULL, s->acks = NULL, s->pushes = NULL, s->vals = NULL, s->arena = NULL;
    s->cap_tags = s->cap_acks = s->cap_pushes = s->cap_vals = 0;
    s->arena_cap = 0;
}

/* Appends one command, tagged with the push it carries (-1: none). */
static void append(struct gpuq_stream *s, int argc, const char **argv, const size_t *lens, int tag) {
    if (!s->rc || grow((void **)&s->tags, &s->cap_tags, s->queued + 1, sizeof(int)) != 0 ||
        redisAppendCommandArgv(s->rc, argc, argv, lens) != REDIS_OK) {
        s->failed = 1;
        return;
    }
    s->tags[s->queued++] = tag;
}

void gpuq_stream_begin(struct gpuq_stream *s) {
    const char *argv[] = {"MULTI"};
    s->queued = 0;
    s->failed = 0;
    s->tx_bytes = 0;
    s->n_acks = s->n_pushes = s->n_vals = 0;
    s->arena_len = 0;
    append(s, 1, argv, NULL, -1);
}

static struct gpuq_refused *refused(struct gpuq_stream *s, struct gpuq_str key) {
    for (int i = 0; i < s->n_refused; i++)
        if (s->refused[i].len == key.len && !memcmp(s->refused[i].key, key.ptr, key.len))
            return &s->refused[i];
    return NULL;
}

/* Records that Redis refused a push to key; NULL when too many were. */
static struct gpuq_refused *refuse(struct gpuq_stream *s, struct gpuq_str key, const char *err,
                                   int queued) {
    struct gpuq_refused *r = refused(s, key);
    if (!r) {
        if (s->n_refused == GPUQ_MAX_REFUSED) return NULL;
        r = &s->refused[s->n_refused];
        if (!(r->key = malloc(key.len))) return NULL;
        memcpy(r->key, key.ptr, key.len);
        r->len = key.len;
        r->jobs = 0;
        s->n_refused++;
    }
    snprintf(r->err, sizeof(r->err), "%s", err);
    r->queued = queued;
    return r;
}

void gpuq_stream_refused_clear(struct gpuq_stream *s) {
    for (int i = 0; i < s->n_refused; i++) free(s->refused[i].key);
    s->n_refused = 0;
}

/* Files a value under its reply list, copying the bytes, which the caller
 * reuses. Recent lists are looked up, so the jobs of one client, which
 * share a list, share one EVAL; a list seen again later gets another. */
static void push(struct gpuq_stream *s, struct gpuq_str key, const char *bytes, size_t len,
                 int64_t ttl) {
    struct gpuq_push *p = NULL;
    for (int i = s->n_pushes - 1; i >= 0 && i >= s->n_pushes - 8 && !p; i--)
        if (s->pushes[i].key.len == key.len && !memcmp(s->pushes[i].key.ptr, key.ptr, key.len))
            p = &s->pushes[i];
    if (s->arena_len + len > s->arena_cap) {
        size_t cap = s->arena_cap ? s->arena_cap : 65536;
        while (cap < s->arena_len + len) cap *= 2;
        char *a = realloc(s->arena, cap);
        if (!a) goto oom;
        s->arena = a;
        s->arena_cap = cap;
    }
    if (grow((void **)&s->vals, &s->cap_vals, s->n_vals + 1, sizeof(*s->vals)) != 0) goto oom;
    if (!p) {
        if (grow((void **)&s->pushes, &s->cap_pushes, s->n_pushes + 1, sizeof(*s->pushes)) != 0)
            goto oom;
        p = &s->pushes[s->n_pushes++];
        *p = (struct gpuq_push){key, ttl, -1, -1, 0};
    }
    memcpy(s->arena + s->arena_len, bytes, len);
    s->vals[s->n_vals] = (struct gpuq_pushed){s->arena_len, len, -1};
    s->arena_len += len;
    if (p->tail >= 0) s->vals[p->tail].next = s->n_vals;
    else p->head = s->n_vals;
    p->tail = s->n_vals++;
    p->n++;
    if (ttl > p->ttl) p->ttl = ttl;
    return;
oom:
    s->failed = 1;
}

void gpuq_stream_put_result(struct gpuq_stream *s, int queue, struct gpuq_str id,
                            const char *bytes, size_t len, int64_t ttl_s,
                            struct gpuq_str reply_to) {
    char key[1024], ttl[24];
    s->tx_bytes += len;
    if (ttl_s > 0) {
        int n = snprintf(key, sizeof(key), "%s%.*s", s->result_prefixes[queue], (int)id.len, id.ptr);
        if (n >= (int)sizeof(key)) s->failed = 1;   /* the codec bounds id lengths */
        snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_s);
        const char *argv[] = {"SET", key, bytes, "EX", ttl};
        size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
        append(s, 5, argv, lens, -1);
    }
    if (!reply_to.ptr) return;
    struct gpuq_refused *r = refused(s, reply_to);
    if (r) {
        r->jobs++;      /* refused earlier in this transaction: its result key stands */
        return;
    }
    /* a reply list with no result TTL still expires, after a day */
    push(s, reply_to, bytes, len, ttl_s > 0 ? ttl_s : 86400);
    s->tx_bytes += len;
}

void gpuq_stream_put_dead(struct gpuq_stream *s, int queue, struct gpuq_str job,
                          const char *error, size_t error_len, int64_t attempts,
                          struct gpuq_str callback) {
    char att[24];
    snprintf(att, sizeof(att), "%lld", (long long)attempts);
    const char *argv[] = {"XADD", s->dead_keys[queue], "*", "job", job.ptr ? job.ptr : "",
                          "error", error, "attempts", att, "callback", callback.ptr};
    size_t lens[] = {4, strlen(s->dead_keys[queue]), 1, 3, job.ptr ? job.len : 0, 5, error_len, 8,
                     strlen(att), 8, callback.len};
    s->tx_bytes += lens[4];
    append(s, callback.ptr ? 11 : 9, argv, lens, -1);
}

void gpuq_stream_put_hook(struct gpuq_stream *s, int queue, struct gpuq_str id,
                          struct gpuq_str url, int msgpack_body, const char *result, size_t len,
                          struct gpuq_str job) {
    const char *argv[] = {"XADD", s->hook_keys[queue], "*", "id", id.ptr, "url", url.ptr,
                          "format", msgpack_body ? "msgpack" : "json", "result", result,
                          "job", job.ptr ? job.ptr : ""};
    size_t lens[] = {4, strlen(s->hook_keys[queue]), 1, 2, id.len, 3, url.len, 6,
                     msgpack_body ? 7 : 4, 6, len, 3, job.ptr ? job.len : 0};
    s->tx_bytes += len + lens[12];
    append(s, 13, argv, lens, -1);
}

static void ack(struct gpuq_stream *s, int queue, int hook, struct gpuq_str id) {
    if (grow((void **)&s->acks, &s->cap_acks, s->n_acks + 1, sizeof(*s->acks)) != 0) {
        s->failed = 1;
        return;
    }
    s->acks[s->n_acks++] = (struct gpuq_ack){queue, hook, id};
}

void gpuq_stream_hook_done(struct gpuq_stream *s, int queue, struct gpuq_str entry_id) {
    ack(s, queue, 1, entry_id);
}

void gpuq_stream_ack(struct gpuq_stream *s, int queue, struct gpuq_str entry_id) {
    ack(s, queue, 0, entry_id);
}

/* ---- sending ---- */

/* The grouped pushes: EVAL script 1 list ttl value... */
static void append_pushes(struct gpuq_stream *s, const char **argv, size_t *lens) {
    for (int p = 0; p < s->n_pushes; p++) {
        const struct gpuq_push *g = &s->pushes[p];
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%lld", (long long)g->ttl);
        for (int v = g->head; v >= 0;) {
            int argc = 0;
            argv[argc] = "EVAL", lens[argc++] = 4;
            argv[argc] = push_script, lens[argc++] = sizeof(push_script) - 1;
            argv[argc] = "1", lens[argc++] = 1;
            argv[argc] = g->key.ptr, lens[argc++] = g->key.len;
            argv[argc] = ttl, lens[argc++] = strlen(ttl);
            for (; v >= 0 && argc < 5 + VALUES_PER_EVAL; v = s->vals[v].next) {
                argv[argc] = s->arena + s->vals[v].off;
                lens[argc++] = s->vals[v].len;
            }
            append(s, argc, argv, lens, p);
        }
    }
}

/* One XACK and one XDEL per stream, each with all of its ids. */
static void append_acks(struct gpuq_stream *s, const char **argv, size_t *lens) {
    for (int q = 0; q < s->n_queues; q++)
        for (int hook = 0; hook < 2; hook++) {
            const char *key = hook ? s->hook_keys[q] : s->jobs_keys[q];
            const char *group = hook ? GPUQ_HOOK_GROUP : GPUQ_GROUP;
            int n = 3;
            for (int i = 0; i < s->n_acks; i++)
                if (s->acks[i].queue == q && s->acks[i].hook == hook) {
                    argv[n] = s->acks[i].id.ptr;
                    lens[n++] = s->acks[i].id.len;
                }
            if (n == 3) continue;
            argv[0] = "XACK", lens[0] = 4;
            argv[1] = key, lens[1] = strlen(key);
            argv[2] = group, lens[2] = strlen(group);
            append(s, n, argv, lens, -1);
            argv[1] = "XDEL", lens[1] = 4;
            argv[2] = key, lens[2] = strlen(key);
            append(s, n - 1, argv + 1, lens + 1, -1);
        }
}

int gpuq_stream_send(struct gpuq_stream *s) {
    int most = s->n_acks > VALUES_PER_EVAL ? s->n_acks : VALUES_PER_EVAL;
    const char **argv = malloc((size_t)(most + 8) * sizeof(*argv));
    size_t *lens = malloc((size_t)(most + 8) * sizeof(*lens));
    if (argv && lens) {
        append_pushes(s, argv, lens);
        append_acks(s, argv, lens);
    } else {
        s->failed = 1;
    }
    free(argv);
    free(lens);
    const char *end[] = {s->failed ? "DISCARD" : "EXEC"};
    append(s, 1, end, NULL, -1);
    s->sent = s->queued;    /* MULTI, the commands and EXEC: queued counts all */
    if (!s->rc) return -1;
    int done = 0;
    while (!done)
        if (redisBufferWrite(s->rc, &done) != REDIS_OK) {
            gpuq_stream_drop(s);
            return -1;
        }
    return 0;
}

/* Jobs whose push a refused reply list cost them. */
static int jobs_of(const struct gpuq_stream *s, int push) {
    return s->pushes[push].n;
}

/* The EXEC reply of an applied transaction: element i answers command i+1.
 * A failed push is that list's jobs' loss; anything else is reported. */
static int applied(struct gpuq_stream *s, const redisReply *r) {
    int result = GPUQ_COMMIT_OK;
    for (size_t j = 0; j < r->elements && (int)j + 1 < s->queued; j++) {
        if (r->element[j]->type != REDIS_REPLY_ERROR) continue;
        int tag = s->tags[j + 1];
        if (tag >= 0) {
            struct gpuq_refused *f = refuse(s, s->pushes[tag].key, r->element[j]->str, 0);
            if (f) f->jobs += jobs_of(s, tag);
        } else if (result == GPUQ_COMMIT_OK) {
            gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->element[j]->str);
            result = GPUQ_COMMIT_PARTIAL;
        }
    }
    return result;
}

int gpuq_stream_wait(struct gpuq_stream *s) {
    int expect = s->sent, pushes_refused = 0, others_refused = 0, result = GPUQ_COMMIT_OK;
    s->sent = 0;
    if (!s->rc) return GPUQ_COMMIT_LOST;
    for (int i = 0; i < expect; i++) {
        redisReply *r = NULL;
        if (redisGetReply(s->rc, (void **)&r) != REDIS_OK || !r) {
            gpuq_stream_drop(s);
            return GPUQ_COMMIT_LOST;
        }
        if (i == expect - 1) {
            if (r->type == REDIS_REPLY_ARRAY && !s->failed) {
                result = applied(s, r);
            } else if (!others_refused && !pushes_refused) {
                gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->type == REDIS_REPLY_ERROR ? r->str
                                      : "transaction not applied");
                others_refused = 1;
            }
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* refused when queued: the whole transaction is discarded */
            int tag = i < s->queued ? s->tags[i] : -1;
            if (tag >= 0 && refuse(s, s->pushes[tag].key, r->str, 1)) {
                pushes_refused = 1;
            } else if (!others_refused) {
                gpuq_stream_set_error(s, REDIS_ERR_OTHER, r->str);
                others_refused = 1;
            }
        }
        freeReplyObject(r);
    }
    if (s->failed && !others_refused)
        gpuq_stream_set_error(s, REDIS_ERR_OOM, "could not queue the transaction");
    if (s->failed || others_refused) return GPUQ_COMMIT_REFUSED;
    if (pushes_refused) return GPUQ_COMMIT_RETRY;
    return result;
}

int gpuq_stream_commit(struct gpuq_stream *s) {
    if (gpuq_stream_send(s) != 0) return GPUQ_COMMIT_LOST;
    return gpuq_stream_wait(s);
}
