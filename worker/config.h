/* config.h -- `gpuq worker` flags, each also read from GPUQ_<FLAG>; a flag
 * wins over its variable. */
#ifndef GPUQ_CONFIG_H
#define GPUQ_CONFIG_H

#include <stdint.h>
#include <stdio.h>

struct gpuq_config {
    char *redis;
    char *redis_ca, *redis_cert, *redis_key;   /* rediss:// */
    int64_t redis_insecure;
    char **queues;
    int n_queues;
    char *prefix;
    char **models;          /* NAME=PATH */
    int n_models;
    char *backend;
    int64_t device;
    char *precision;        /* mlp and encoders; --mlp-precision is its former name */
    int64_t cpu_threads;
    int64_t max_batch;
    int64_t max_batch_tokens;
    int64_t max_delay_us;
    int64_t max_inflight;
    int64_t max_drain_ms;
    int64_t embed_cache_ttl;
    int64_t max_result_bytes;
    int64_t max_attempts;
    int64_t claim_idle_ms;
    int64_t result_ttl;
    char *webhook_secret;
    int64_t webhook_timeout_ms;
    int64_t webhook_backoff_ms;
    char **webhook_allow;   /* CIDRs */
    int n_webhook_allow;
    int64_t webhook_per_host;
    char *metrics_addr;
    char *consumer;
    char *log_level;
    char *log_format;
    int help;
};

/* Fills c from defaults, then the environment, then argv (after the
 * subcommand). Returns 0, or -1 with a one-line reason in err. */
int gpuq_config_parse(struct gpuq_config *c, int argc, char **argv, char *err, size_t errlen);
void gpuq_config_free(struct gpuq_config *c);
void gpuq_config_usage(FILE *f);

#endif
