/* config.c -- one table drives flags, environment variables and --help. */
#include "worker/config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum kind { STR, INT, LIST, BOOL };   /* BOOL: a flag alone, or =yes|no; its variable 1|0 */

static const struct opt {
    const char *flag, *env, *arg;
    enum kind kind;
    size_t off, count_off;  /* count_off: for LIST */
    const char *def;
    int64_t min, max;
    const char *help;
} opts[] = {
#define O(f) offsetof(struct gpuq_config, f)
    {"redis", "GPUQ_REDIS", "URL", STR, O(redis), 0, "redis://127.0.0.1:6379", 0, 0,
     "Redis to serve (redis://[:password@]host:port[/db], rediss://... for TLS, unix:///path)"},
    {"redis-ca", "GPUQ_REDIS_CA", "FILE", STR, O(redis_ca), 0, NULL, 0, 0,
     "rediss://: PEM CA certificates to trust instead of the system's"},
    {"redis-cert", "GPUQ_REDIS_CERT", "FILE", STR, O(redis_cert), 0, NULL, 0, 0,
     "rediss://: PEM client certificate, for Redis with tls-auth-clients (mutual TLS)"},
    {"redis-key", "GPUQ_REDIS_KEY", "FILE", STR, O(redis_key), 0, NULL, 0, 0,
     "rediss://: the client certificate's PEM private key (default: in --redis-cert)"},
    {"redis-insecure", "GPUQ_REDIS_INSECURE", NULL, BOOL, O(redis_insecure), 0, NULL, 0, 0,
     "rediss://: do NOT verify Redis's certificate or name (encrypted, but anyone on the path "
     "can pose as Redis); for tests only"},
    {"queue", "GPUQ_QUEUE", "NAME", LIST, O(queues), O(n_queues), "default", 0, 0,
     "queue to serve; repeatable, earlier queues strictly first"},
    {"prefix", "GPUQ_PREFIX", "P", STR, O(prefix), 0, "gpuq", 0, 0, "key prefix"},
    {"model", "GPUQ_MODEL", "NAME=PATH", LIST, O(models), O(n_models), NULL, 0, 0,
     "load a safetensors mlp or knn index, or a text encoder folder; repeatable"},
    {"backend", "GPUQ_BACKEND", "auto|cpu|cuda", STR, O(backend), 0, "auto", 0, 0,
     "auto: CUDA when a device is usable, else CPU"},
    {"precision", "GPUQ_PRECISION", "f32|bf16|f16", STR, O(precision), 0, "f32", 0, 0,
     "mlp and text encoder GEMMs: weights and inputs rounded to it, sums in f32 (bf16/f16: "
     "tensor cores)"},
    {"cpu-threads", "GPUQ_CPU_THREADS", "N", INT, O(cpu_threads), 0, "0", 0, 1024,
     "threads for CPU compute (0: all cores); leave Redis a core when it shares the host"},
    {"device", "GPUQ_DEVICE", "N", INT, O(device), 0, "0", 0, 1024, "CUDA device"},
    {"max-batch", "GPUQ_MAX_BATCH", "N", INT, O(max_batch), 0, "256", 1, 1 << 20,
     "most rows in one batch"},
    {"max-batch-tokens", "GPUQ_MAX_BATCH_TOKENS", "N", INT, O(max_batch_tokens), 0, "16384", 1,
     1 << 24, "most tokens in one embed batch (a longer text runs alone)"},
    {"max-delay-us", "GPUQ_MAX_DELAY_US", "N", INT, O(max_delay_us), 0, "2000", 0, 60000000,
     "longest a job waits for its batch to fill"},
    {"max-inflight", "GPUQ_MAX_INFLIGHT", "N", INT, O(max_inflight), 0, "0", 0, 1 << 24,
     "most rows held in the worker; beyond it the backlog waits in Redis (0: 4 x max-batch)"},
    {"max-drain-ms", "GPUQ_MAX_DRAIN_MS", "N", INT, O(max_drain_ms), 0, "20000", 0, 3600000,
     "hold no more work than the backend finishes in this long, by its measured pace, so that a "
     "stop drains within it (0: rows alone bound it)"},
    {"embed-cache-ttl", "GPUQ_EMBED_CACHE_TTL", "S", INT, O(embed_cache_ttl), 0, "0", 0, 2592000,
     "keep embeddings computed in Redis this many seconds, and take a text's from there (0: off)"},
    {"max-result-bytes", "GPUQ_MAX_RESULT_BYTES", "N", INT, O(max_result_bytes), 0, "67108864",
     1, INT64_C(1) << 40, "largest result a job may ask for; larger ones are too_large at once"},
    {"max-attempts", "GPUQ_MAX_ATTEMPTS", "N", INT, O(max_attempts), 0, "5", 1, 1000,
     "deliveries of a job (and webhook tries) before it is dead-lettered"},
    {"claim-idle-ms", "GPUQ_CLAIM_IDLE_MS", "N", INT, O(claim_idle_ms), 0, "30000", 1, INT32_MAX,
     "pending jobs idle this long are claimed from dead workers"},
    {"result-ttl", "GPUQ_RESULT_TTL", "S", INT, O(result_ttl), 0, "3600", 0, INT32_MAX,
     "default result lifetime in seconds (0: do not store result keys)"},
    {"webhook-secret", "GPUQ_WEBHOOK_SECRET", "whsec_...", STR, O(webhook_secret), 0, NULL, 0, 0,
     "Standard Webhooks signing secret"},
    {"webhook-timeout-ms", "GPUQ_WEBHOOK_TIMEOUT_MS", "N", INT, O(webhook_timeout_ms), 0, "10000",
     1, 600000, "time allowed for one webhook attempt"},
    {"webhook-backoff-ms", "GPUQ_WEBHOOK_BACKOFF_MS", "N", INT, O(webhook_backoff_ms), 0, "1000",
     1, 3600000, "wait before the first webhook retry; doubles each try, up to 64x"},
    {"webhook-allow", "GPUQ_WEBHOOK_ALLOW", "CIDR", LIST, O(webhook_allow), O(n_webhook_allow), NULL,
     0, 0, "open a refused address range (loopback, private, link-local...) to webhooks; repeatable"},
    {"webhook-per-host", "GPUQ_WEBHOOK_PER_HOST", "N", INT, O(webhook_per_host), 0, "8", 1, 512,
     "most webhook transfers to one host at once"},
    {"metrics-addr", "GPUQ_METRICS_ADDR", "HOST:PORT", STR, O(metrics_addr), 0, NULL, 0, 0,
     "serve /metrics and /healthz (off by default)"},
    {"consumer", "GPUQ_CONSUMER", "NAME", STR, O(consumer), 0, NULL, 0, 0,
     "consumer name in the group (default host:pid)"},
    {"log-level", "GPUQ_LOG_LEVEL", "LEVEL", STR, O(log_level), 0, "info", 0, 0,
     "debug, info, warn or error"},
    {"log-format", "GPUQ_LOG_FORMAT", "text|json", STR, O(log_format), 0, "text", 0, 0,
     "log lines as text, or as one JSON object each"},
#undef O
};
#define N_OPTS (int)(sizeof(opts) / sizeof(opts[0]))

/* Former names, still read (scripts and deploy files use them): the flag
 * stands for option `now`'s (of two such flags the last given counts, as
 * for any repeated flag), and the variable for its variable, which wins
 * when both are set. */
static const struct alias {
    const char *flag, *env, *now;
} aliases[] = {
    {"mlp-precision", "GPUQ_MLP_PRECISION", "precision"},
};
#define N_ALIASES (int)(sizeof(aliases) / sizeof(aliases[0]))

static int set(struct gpuq_config *c, const struct opt *o, const char *val, int from_env,
               char *err, size_t errlen) {
    char *base = (char *)c;
    const char *src = from_env ? o->env : o->flag;
    const char *dash = from_env ? "" : "--";
    if (o->kind == STR) {
        char **p = (char **)(base + o->off);
        free(*p);
        return (*p = strdup(val)) ? 0 : -1;
    }
    if (o->kind == BOOL) {
        static const char *const words[] = {"0", "no", "false", "off", "1", "yes", "true", "on"};
        for (int i = 0; i < 8; i++)
            if (strcasecmp(val, words[i]) == 0) {
                *(int64_t *)(base + o->off) = i >= 4;
                return 0;
            }
        snprintf(err, errlen, "%s%s: '%s' is not yes or no", dash, src, val);
        return -1;
    }
    if (o->kind == INT) {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s%s: '%s' is not an integer in [%lld, %lld]", dash, src, val,
                     (long long)o->min, (long long)o->max);
            return -1;
        }
        *(int64_t *)(base + o->off) = v;
        return 0;
    }
    /* LIST: the environment gives a comma-separated list; a flag one item */
    char ***list = (char ***)(base + o->off);
    int *n = (int *)(base + o->count_off);
    const char *p = val;
    do {
        const char *comma = from_env ? strchr(p, ',') : NULL;
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0) {
            snprintf(err, errlen, "%s%s: empty item", dash, src);
            return -1;
        }
        char **grown = realloc(*list, (size_t)(*n + 1) * sizeof(char *));
        if (!grown) return -1;
        *list = grown;
        if (!((*list)[*n] = strndup(p, len))) return -1;
        (*n)++;
        p = comma ? comma + 1 : NULL;
    } while (p);
    return 0;
}

static const struct opt *find(const char *flag, size_t len) {
    for (int i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, flag, len) == 0) return &opts[i];
    for (int i = 0; i < N_ALIASES; i++)
        if (strlen(aliases[i].flag) == len && strncmp(aliases[i].flag, flag, len) == 0)
            return find(aliases[i].now, strlen(aliases[i].now));
    return NULL;
}

/* o's variable, else its former name's. */
static const char *env_of(const struct opt *o) {
    const char *v = getenv(o->env);
    for (int i = 0; i < N_ALIASES && (!v || !*v); i++)
        if (strcmp(aliases[i].now, o->flag) == 0) v = getenv(aliases[i].env);
    return v;
}

static void clear_list(struct gpuq_config *c, const struct opt *o) {
    char ***list = (char ***)((char *)c + o->off);
    int *n = (int *)((char *)c + o->count_off);
    for (int i = 0; i < *n; i++) free((*list)[i]);
    free(*list);
    *list = NULL;
    *n = 0;
}

int gpuq_config_parse(struct gpuq_config *c, int argc, char **argv, char *err, size_t errlen) {
    char seen[N_OPTS] = {0}, given[N_OPTS] = {0};
    memset(c, 0, sizeof(*c));
    snprintf(err, errlen, "out of memory");
    for (int i = 0; i < N_OPTS; i++) {
        const char *env = env_of(&opts[i]);
        if (!env || !*env) continue;
        if (set(c, &opts[i], env, 1, err, errlen) != 0) return -1;
        given[i] = 1;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            c->help = 1;
            return 0;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see gpuq worker --help)", a);
            return -1;
        }
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        const struct opt *o = find(a + 2, len);
        if (!o) {
            snprintf(err, errlen, "unknown flag '%.*s' (see gpuq worker --help)", (int)len + 2, a);
            return -1;
        }
        const char *val = eq ? eq + 1 : o->kind == BOOL ? "yes" : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) {
            snprintf(err, errlen, "--%s needs a value (%s)", o->flag, o->arg);
            return -1;
        }
        /* a repeated list flag adds to the flags, and replaces the variable's list */
        if (o->kind == LIST && !seen[o - opts]) clear_list(c, o);
        seen[o - opts] = given[o - opts] = 1;
        if (set(c, o, val, 0, err, errlen) != 0) return -1;
    }
    for (int i = 0; i < N_OPTS; i++) {   /* defaults for what nothing set */
        if (!opts[i].def || given[i]) continue;
        if (set(c, &opts[i], opts[i].def, 0, err, errlen) != 0) return -1;
    }
    if (!c->consumer) {
        char host[200], name[256];
        if (gethostname(host, sizeof(host)) != 0) snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(name, sizeof(name), "%s:%d", host, (int)getpid());
        if (!(c->consumer = strdup(name))) return -1;
    }
    if (c->max_inflight == 0) c->max_inflight = 4 * c->max_batch;
    if (c->max_inflight < c->max_batch) {
        snprintf(err, errlen, "--max-inflight (%lld) must be at least --max-batch (%lld)",
                 (long long)c->max_inflight, (long long)c->max_batch);
        return -1;
    }
    if (c->webhook_secret && strncmp(c->webhook_secret, "whsec_", 6) != 0) {
        snprintf(err, errlen, "--webhook-secret must start with whsec_");
        return -1;
    }
    return 0;
}

void gpuq_config_free(struct gpuq_config *c) {
    if (!c) return;
    for (int i = 0; i < N_OPTS; i++) {
        if (opts[i].kind == STR) free(*(char **)((char *)c + opts[i].off));
        if (opts[i].kind == LIST) clear_list(c, &opts[i]);
    }
    memset(c, 0, sizeof(*c));
}

void gpuq_config_usage(FILE *f) {
    fprintf(f, "usage: gpuq worker [flags]\n\n"
               "Serves gpuq queues on Redis: fetches jobs, batches them, computes, writes results.\n"
               "Every flag also reads GPUQ_<FLAG>; a flag wins over its variable.\n\n");
    for (int i = 0; i < N_OPTS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", opts[i].flag, opts[i].arg ? opts[i].arg : "");
        fprintf(f, "  %-32s %s", left, opts[i].help);
        if (opts[i].def) fprintf(f, " [%s]", opts[i].def);
        fprintf(f, "\n");
    }
    for (int i = 0; i < N_ALIASES; i++)
        fprintf(f, "  --%-30s former name of --%s, still read (so is %s)\n", aliases[i].flag,
                aliases[i].now, aliases[i].env);
}
