/* pool.h -- the front door's Redis connections for enqueueing and reading:
 * per queue (on a Redis Cluster each queue's master), a stack of idle
 * connections that request threads borrow and give back. */
#ifndef GPUQ_HTTP_POOL_H
#define GPUQ_HTTP_POOL_H

#include "cli/target.h"

struct gpuq_http_pool;

/* base names the Redis and prefix; no connection is made yet. NULL when
 * out of memory. */
struct gpuq_http_pool *gpuq_http_pool_create(const struct gpuq_cli_target *base);
void gpuq_http_pool_destroy(struct gpuq_http_pool *p);

/* A connection for queue (made when none is idle), or NULL when Redis
 * cannot be reached. Give it back with put; broken: it is closed instead. */
struct gpuq_conn *gpuq_http_pool_get(struct gpuq_http_pool *p, const char *queue);
void gpuq_http_pool_put(struct gpuq_http_pool *p, const char *queue, struct gpuq_conn *c, int broken);

#endif
