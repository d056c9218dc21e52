/* waiter.h -- one reply list per process and one thread that pops every
 * result pushed there (BLPOP) and hands each to the request waiting for its
 * job id, as the clients' single waiter does. Knows nothing of HTTP: a
 * waiting request is a struct gpuq_wait with a wake callback. */
#ifndef GPUQ_HTTP_WAITER_H
#define GPUQ_HTTP_WAITER_H

#include <stddef.h>

#include "cli/target.h"

struct gpuq_wait {
    char id[160];               /* the job id the result will carry */
    double deadline;            /* monotonic seconds: past it, timed_out */
    /* filled by the waiter, then wake is called (under the waiter's lock,
     * and only for a parked wait: see gpuq_waiter_park) */
    char *bytes;                /* the result (msgpack or JSON text), malloc'd; the owner frees */
    size_t len;
    int done, timed_out, stopped;   /* stopped: the front door is shutting down */
    int parked;
    void (*wake)(struct gpuq_wait *w);
    struct gpuq_wait *next, *prev;  /* the waiter's list */
};

struct gpuq_waiter;

/* Connects (its own connection, blocking on list) and starts the thread.
 * NULL with err when Redis cannot be reached. */
struct gpuq_waiter *gpuq_waiter_start(const struct gpuq_cli_target *t, const char *list, char *err,
                                      size_t errlen);
/* Stops the thread and fails every wait still registered (stopped); later
 * adds are refused. free (after the last request ended) frees. */
void gpuq_waiter_stop(struct gpuq_waiter *wt);
void gpuq_waiter_free(struct gpuq_waiter *wt);

/* Registers w (id, deadline and wake set) before its job is enqueued, so
 * its result cannot come first. 0, -1 when a wait for the same id is
 * already registered, -2 when the waiter is stopping. */
int gpuq_waiter_add(struct gpuq_waiter *wt, struct gpuq_wait *w);
/* Unregisters w if it still is (its job was never enqueued). */
void gpuq_waiter_remove(struct gpuq_waiter *wt, struct gpuq_wait *w);
/* Under the waiter's lock: when w is done already, returns 1 and parks
 * nothing; else calls park(ud) (which suspends the request), marks w parked
 * so that its wake will be called, and returns 0. */
int gpuq_waiter_park(struct gpuq_waiter *wt, struct gpuq_wait *w, void (*park)(void *ud), void *ud);
/* Waits registered now; whether the reader's connection is up. */
int gpuq_waiter_count(struct gpuq_waiter *wt);
int gpuq_waiter_up(struct gpuq_waiter *wt);

#endif
