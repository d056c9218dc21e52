/* target.h -- what the client commands (enqueue, dead, stats, wait) share:
 * which Redis, prefix and queue, from flags or GPUQ_* variables. */
#ifndef GPUQ_CLI_H
#define GPUQ_CLI_H

#include "queue/conn.h"

struct gpuq_cli_target {
    const char *redis, *prefix, *queue;
    const char *redis_ca, *redis_cert, *redis_key;  /* rediss:// */
    int redis_insecure;
};

/* Defaults, then GPUQ_REDIS, GPUQ_PREFIX, GPUQ_QUEUE, GPUQ_REDIS_CA,
 * GPUQ_REDIS_CERT, GPUQ_REDIS_KEY, GPUQ_REDIS_INSECURE (1|yes|true). */
void gpuq_cli_target_init(struct gpuq_cli_target *t);

/* Takes --redis, --prefix, --queue, --redis-ca, --redis-cert or --redis-key
 * with its value: 1 when it was one of them, 0 otherwise. */
int gpuq_cli_target_flag(struct gpuq_cli_target *t, const char *flag, const char *value);

/* Takes --redis-insecure, which has no value: 1 when it was it, 0. */
int gpuq_cli_target_switch(struct gpuq_cli_target *t, const char *flag);

/* Reads flag's value v as a number from min to max, an integer when
 * integer; above: more than min rather than at least min. 0 with *out, or
 * -1 after printing "gpuq WHO: FLAG 'V': want ..." to stderr. */
int gpuq_cli_number(const char *who, const char *flag, const char *v, double min, int above, double max,
                    int integer, double *out);

/* Connects; NULL after printing "gpuq WHO: reason" (naming the host and
 * port) to stderr. */
struct gpuq_conn *gpuq_cli_connect(const struct gpuq_cli_target *t, const char *who);

#endif
