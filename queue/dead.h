/* dead.h -- the dead-letter stream P:{Q}:dead: list, put back, purge. */
#ifndef GPUQ_DEAD_H
#define GPUQ_DEAD_H

#include <stdint.h>

#include "queue/conn.h"
#include "queue/job.h"

struct gpuq_dead {
    struct gpuq_str id;         /* the dead letter's own entry id */
    struct gpuq_str job;        /* the original job bytes (may be empty) */
    struct gpuq_str error;      /* msgpack {code, message} */
    struct gpuq_str callback;   /* for a failed webhook */
    int64_t attempts;
};

/* Calls fn for up to count dead letters from start ("-": the oldest).
 * Returns how many, or -1 with err. */
int gpuq_dead_list(struct gpuq_conn *c, const char *prefix, const char *queue, const char *start,
                   int count, void (*fn)(void *ud, const struct gpuq_dead *d), void *ud,
                   char *err, size_t errlen);

/* Puts dead letter id back on its queue (XADD job, XDEL dead, one
 * transaction). Returns 1 when done, 0 when it had no job bytes to put back
 * or does not exist, -1 with err. */
int gpuq_dead_retry(struct gpuq_conn *c, const char *prefix, const char *queue, const char *id,
                    char *err, size_t errlen);

/* Deletes dead letter id, or all of them when id is NULL. Returns how many
 * were deleted, or -1 with err. */
long long gpuq_dead_purge(struct gpuq_conn *c, const char *prefix, const char *queue, const char *id,
                          char *err, size_t errlen);

#endif
