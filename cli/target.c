/* target.c -- the Redis target of the client commands. */
#include "cli/target.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/client.h"
#include "queue/cluster.h"
#include "queue/stream.h"

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

void gpuq_cli_target_init(struct gpuq_cli_target *t) {
    t->redis = env_or("GPUQ_REDIS", "redis://127.0.0.1:6379");
    t->prefix = env_or("GPUQ_PREFIX", "gpuq");
    t->queue = env_or("GPUQ_QUEUE", "default");
}

int gpuq_cli_target_flag(struct gpuq_cli_target *t, const char *flag, const char *value) {
    if (!strcmp(flag, "--redis")) t->redis = value;
    else if (!strcmp(flag, "--prefix")) t->prefix = value;
    else if (!strcmp(flag, "--queue")) t->queue = value;
    else return 0;
    return 1;
}

int gpuq_cli_number(const char *who, const char *flag, const char *v, double min, int above, double max,
                    int integer, double *out) {
    char *end = NULL;
    errno = 0;
    double d = v ? strtod(v, &end) : NAN;
    int ok = v && *v && !*end && !errno && isfinite(d) && (above ? d > min : d >= min) && d <= max &&
             (!integer || d == floor(d));
    if (ok) {
        *out = d;
        return 0;
    }
    char range[96];
    if (max >= INFINITY) snprintf(range, sizeof(range), "%s %.15g", above ? "above" : "of at least", min);
    else if (above) snprintf(range, sizeof(range), "above %.15g, at most %.15g", min, max);
    else snprintf(range, sizeof(range), "from %.15g to %.15g", min, max);
    if (!v) fprintf(stderr, "gpuq %s: %s needs a value: %s %s\n", who, flag, integer ? "an integer" : "a number", range);
    else fprintf(stderr, "gpuq %s: %s '%s': want %s %s\n", who, flag, v, integer ? "an integer" : "a number", range);
    return -1;
}

redisContext *gpuq_cli_connect(const struct gpuq_cli_target *t, const char *who) {
    struct gpuq_redis_url url;
    char err[256];
    redisContext *c = NULL;
    char where[300];
    if (gpuq_redis_url_parse(&url, t->redis, err, sizeof(err)) != 0) {
        fprintf(stderr, "gpuq %s: --redis: %s\n", who, err);
        return NULL;
    }
    if (!(c = gpuq_redis_connect(&url, 2000, err, sizeof(err)))) {
        fprintf(stderr, "gpuq %s: cannot connect to Redis at %s: %s\n", who,
                gpuq_redis_url_where(&url, where, sizeof(where)), err);
        return NULL;
    }
    /* on a cluster, every key of the queue is in its slot: speak to its master */
    if (gpuq_cluster_detect(c, err, sizeof(err)) == 1) {
        char key[512];
        gpuq_stream_key(key, sizeof(key), t->prefix, t->queue, "jobs");
        redisFree(c);
        if (!(c = gpuq_cluster_connect_slot(&url, gpuq_key_slot(key, strlen(key)), 2000, err, sizeof(err))))
            fprintf(stderr, "gpuq %s: %s\n", who, err);
    }
    return c;
}
