/* target.c -- the Redis target of the client commands. */
#include "cli/target.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "queue/client.h"
#include "queue/cluster.h"
#include "queue/stream.h"

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

void gpuq_cli_target_init(struct gpuq_cli_target *t) {
    const char *insecure = env_or("GPUQ_REDIS_INSECURE", "0");
    t->redis = env_or("GPUQ_REDIS", "redis://127.0.0.1:6379");
    t->prefix = env_or("GPUQ_PREFIX", "gpuq");
    t->queue = env_or("GPUQ_QUEUE", "default");
    t->redis_ca = env_or("GPUQ_REDIS_CA", NULL);
    t->redis_cert = env_or("GPUQ_REDIS_CERT", NULL);
    t->redis_key = env_or("GPUQ_REDIS_KEY", NULL);
    t->redis_insecure = !strcmp(insecure, "1") || !strcasecmp(insecure, "yes") ||
                        !strcasecmp(insecure, "true") || !strcasecmp(insecure, "on");
}

int gpuq_cli_target_flag(struct gpuq_cli_target *t, const char *flag, const char *value) {
    if (!strcmp(flag, "--redis")) t->redis = value;
    else if (!strcmp(flag, "--prefix")) t->prefix = value;
    else if (!strcmp(flag, "--queue")) t->queue = value;
    else if (!strcmp(flag, "--redis-ca")) t->redis_ca = value;
    else if (!strcmp(flag, "--redis-cert")) t->redis_cert = value;
    else if (!strcmp(flag, "--redis-key")) t->redis_key = value;
    else return 0;
    return 1;
}

int gpuq_cli_target_switch(struct gpuq_cli_target *t, const char *flag) {
    if (strcmp(flag, "--redis-insecure") != 0) return 0;
    t->redis_insecure = 1;
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

struct gpuq_conn *gpuq_cli_connect(const struct gpuq_cli_target *t, const char *who) {
    struct gpuq_redis_url url;
    char err[256];
    struct gpuq_conn *c = NULL;
    struct gpuq_tls *tls = NULL;
    char where[300];
    struct gpuq_tls_opts o = {.ca_file = t->redis_ca, .cert_file = t->redis_cert,
                              .key_file = t->redis_key, .insecure = t->redis_insecure};
    if (gpuq_redis_url_parse(&url, t->redis, err, sizeof(err)) != 0) {
        fprintf(stderr, "gpuq %s: --redis: %s\n", who, err);
        return NULL;
    }
    /* every session holds the context it was made with: freed here, it lives on in them */
    if (url.tls && !(tls = gpuq_tls_create(&o, err, sizeof(err)))) {
        fprintf(stderr, "gpuq %s: %s\n", who, err);
        return NULL;
    }
    if (url.tls && o.insecure)
        fprintf(stderr, "gpuq %s: warning: --redis-insecure: Redis's TLS certificate is NOT "
                "verified\n", who);
    if (!(c = gpuq_redis_connect(&url, tls, 2000, err, sizeof(err)))) {
        fprintf(stderr, "gpuq %s: cannot connect to Redis at %s: %s\n", who,
                gpuq_redis_url_where(&url, where, sizeof(where)), err);
        gpuq_tls_destroy(tls);
        return NULL;
    }
    /* on a cluster, every key of the queue is in its slot: speak to its master */
    int cluster = gpuq_cluster_detect(c, err, sizeof(err));
    if (cluster < 0) {     /* the first command: a TLS or protocol mismatch shows here */
        fprintf(stderr, "gpuq %s: cannot use Redis at %s: %s\n", who,
                gpuq_redis_url_where(&url, where, sizeof(where)), err);
        gpuq_conn_free(c);
        c = NULL;
    } else if (cluster == 1) {
        char key[512];
        gpuq_stream_key(key, sizeof(key), t->prefix, t->queue, "jobs");
        gpuq_conn_free(c);
        if (!(c = gpuq_cluster_connect_slot(&url, tls, gpuq_key_slot(key, strlen(key)), 2000, err,
                                            sizeof(err))))
            fprintf(stderr, "gpuq %s: %s\n", who, err);
    }
    gpuq_tls_destroy(tls);
    return c;
}
