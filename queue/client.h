/* client.h -- the producer's side of the protocol: connect, enqueue jobs,
 * wait for results. Used by `gpuq enqueue`; a client in any other language
 * does the same with its own Redis library. */
#ifndef GPUQ_CLIENT_H
#define GPUQ_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "queue/conn.h"
#include "queue/url.h"

/* Connects (over TLS through tls for rediss://), authenticates and selects
 * the db. Returns the connection, or NULL with a reason in err. The caller
 * frees it with gpuq_conn_free. */
struct gpuq_conn *gpuq_redis_connect(const struct gpuq_redis_url *u, struct gpuq_tls *tls,
                                     int timeout_ms, char *err, size_t errlen);

/* XADDs n jobs (field `job`) to stream_key in one pipeline. Returns 0, or -1
 * with err; ids receives the first entry id when not NULL. */
int gpuq_client_enqueue(struct gpuq_conn *c, const char *stream_key, char *const *jobs,
                        const size_t *lens, int n, char *first_id, size_t id_cap, char *err,
                        size_t errlen);

/* BLPOPs one result from list, waiting up to timeout_s. Returns 1 with a
 * malloc'd copy in *bytes (caller frees), 0 on timeout, -1 with err. */
int gpuq_client_wait(struct gpuq_conn *c, const char *list, double timeout_s, char **bytes,
                     size_t *len, char *err, size_t errlen);

/* A queue at a glance. Counts are -1 where the key does not exist yet. */
struct gpuq_queue_stats {
    int64_t length;         /* entries in the stream; -1: no stream */
    int64_t backlog;        /* not yet delivered to the group (lag) */
    int64_t pending;        /* delivered, not acked */
    int64_t read;           /* delivered ever (entries-read) */
    int64_t dead, hooks;    /* dead letters; webhook deliveries owed */
    int n_consumers;
    struct {
        char name[128];
        int64_t pending, idle_ms;
    } consumers[32];
};

/* Reads st for prefix/queue without creating anything. 0, or -1 with err. */
int gpuq_client_stats(struct gpuq_conn *c, const char *prefix, const char *queue,
                      struct gpuq_queue_stats *st, char *err, size_t errlen);

/* GETs the result of job id; 1 with a malloc'd copy, 0 when absent, -1. */
int gpuq_client_result(struct gpuq_conn *c, const char *prefix, const char *queue, const char *id,
                       char **bytes, size_t *len, char *err, size_t errlen);

#endif
