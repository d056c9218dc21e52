/* target.h -- what the client commands (enqueue, dead, stats, wait) share:
 * which Redis, prefix and queue, from flags or GPUQ_* variables. */
#ifndef GPUQ_CLI_H
#define GPUQ_CLI_H

#include <hiredis/hiredis.h>

struct gpuq_cli_target {
    const char *redis, *prefix, *queue;
};

/* Defaults, then GPUQ_REDIS, GPUQ_PREFIX, GPUQ_QUEUE. */
void gpuq_cli_target_init(struct gpuq_cli_target *t);

/* Takes --redis, --prefix or --queue with its value: 1 when it was one of
 * them, 0 otherwise. */
int gpuq_cli_target_flag(struct gpuq_cli_target *t, const char *flag, const char *value);

/* Connects; NULL after printing "gpuq WHO: reason" to stderr. */
redisContext *gpuq_cli_connect(const struct gpuq_cli_target *t, const char *who);

#endif
