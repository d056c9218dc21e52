/* config.c -- `gpuq http`'s flags; each also reads GPUQ_<FLAG> (--listen <->
 * GPUQ_LISTEN), and a flag wins over the variable, as for gpuq worker. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http/http.h"

enum kind { STR, NUM, ROUTE_QUEUE };

static const struct flag {
    const char *name;
    enum kind kind;
    double lo, hi;
    int integer;
} flags[] = {
    {"--listen", STR, 0, 0, 0},          {"--api-key-file", STR, 0, 0, 0},
    {"--default-model", STR, 0, 0, 0},   {"--route-queue", ROUTE_QUEUE, 0, 0, 0},
    {"--max-body-bytes", NUM, 64, 1 << 30, 1}, {"--max-inputs", NUM, 1, 1000000, 1},
    {"--max-concurrency", NUM, 1, 1000000, 1}, {"--max-queue", NUM, 0, 1e12, 1},
    {"--request-timeout", NUM, 0.1, 3600, 0},  {"--connection-timeout", NUM, 1, 3600, 1},
    {"--threads", NUM, 1, 256, 1},             {"--max-connections", NUM, 4, 100000, 1},
    {"--retry-after", NUM, 1, 3600, 1},
};
#define N_FLAGS ((int)(sizeof(flags) / sizeof(flags[0])))

void gpuq_http_config_usage(FILE *f) {
    fprintf(f,
        "usage: gpuq http [flags]\n\n"
        "A front door over the queue: OpenAI's POST /v1/embeddings and GET /v1/models, TEI's\n"
        "POST /embed, POST /v1/jobs and GET /v1/jobs/{id}, a dashboard at /, and /metrics. Each\n"
        "request becomes a job; results come back on one reply list. It holds no model.\n\n"
        "  --listen HOST:PORT        where to listen [127.0.0.1:8080]; without --api-key-file only\n"
        "                            a loopback address is allowed\n"
        "  --api-key-file FILE       bearer keys, as SHA-256 digests: DIGEST [read|write] [QUEUE] a line\n"
        "  --default-model NAME      the model of requests that name none (TEI's /embed) [the one\n"
        "                            embedding model live workers serve]\n"
        "  --route-queue ROUTE=Q     the queue of a route: embeddings, embed, jobs, models; repeatable\n"
        "  --max-body-bytes N        larger request bodies get 413 [4194304]\n"
        "  --max-inputs N            most inputs in one embedding request [2048]\n"
        "  --max-concurrency N       most requests under way per key (429 beyond) [256]\n"
        "  --max-queue N             429 with Retry-After while the queue holds N jobs; 0: no limit [100000]\n"
        "  --request-timeout S       no result by then: 504; also the job's timeout_ms [30]\n"
        "  --connection-timeout S    a connection idle this long is closed [10]\n"
        "  --threads N               request threads [4]\n"
        "  --max-connections N       open connections at most [1024]\n"
        "  --retry-after S           the Retry-After of a 429 for a full queue [1]\n"
        "  --redis URL, --queue Q, --prefix P   as for gpuq worker (also GPUQ_REDIS, ...)\n"
        "  --redis-ca F, --redis-cert F, --redis-key F, --redis-insecure   rediss://: as for gpuq worker\n");
}

static int set(struct gpuq_http_config *c, const struct flag *f, const char *v, char *err, size_t errlen) {
    if (f->kind == STR) {
        if (!strcmp(f->name, "--listen")) {
            const char *colon = strrchr(v, ':');
            char *end;
            long port = colon ? strtol(colon + 1, &end, 10) : -1;
            size_t hl = colon ? (size_t)(colon - v) : 0;
            if (!colon || !colon[1] || *end || port < 0 || port > 65535 || hl >= sizeof(c->host)) {
                snprintf(err, errlen, "--listen '%s': want HOST:PORT, as 127.0.0.1:8080", v);
                return -1;
            }
            memcpy(c->host, v, hl);
            c->host[hl] = 0;
            if (hl >= 2 && c->host[0] == '[' && c->host[hl - 1] == ']') {   /* [::1]:8080 */
                memmove(c->host, c->host + 1, hl - 2);
                c->host[hl - 2] = 0;
            }
            c->port = (int)port;
        } else if (!strcmp(f->name, "--api-key-file")) {
            c->api_key_file = *v ? v : NULL;
        } else {
            c->default_model = *v ? v : NULL;
        }
        return 0;
    }
    if (f->kind == ROUTE_QUEUE) {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", v);
        for (char *save = NULL, *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(item, '=');
            int r1 = -1, r2 = -1;
            if (eq) {
                *eq = 0;
                if (!strcmp(item, "embeddings")) r1 = GPUQ_HTTP_ROUTE_EMBEDDINGS;
                else if (!strcmp(item, "embed")) r1 = GPUQ_HTTP_ROUTE_EMBED;
                else if (!strcmp(item, "models")) r1 = GPUQ_HTTP_ROUTE_MODELS;
                else if (!strcmp(item, "jobs")) r1 = GPUQ_HTTP_ROUTE_JOBS_POST, r2 = GPUQ_HTTP_ROUTE_JOBS_GET;
            }
            if (r1 < 0 || !eq[1] || strchr(eq + 1, '{') || strchr(eq + 1, '}')) {
                snprintf(err, errlen, "--route-queue '%s': want ROUTE=QUEUE, ROUTE one of embeddings, embed, "
                         "models, jobs", v);
                return -1;
            }
            /* the value lives as long as argv or the environment; the copy is ours */
            c->route_queue[r1] = strdup(eq + 1);
            if (r2 >= 0) c->route_queue[r2] = strdup(eq + 1);
        }
        return 0;
    }
    double n;
    if (gpuq_cli_number("http", f->name, v, f->lo, 0, f->hi, f->integer, &n) != 0) {
        err[0] = 0;     /* said on stderr already */
        (void)errlen;
        return -1;
    }
    if (!strcmp(f->name, "--max-body-bytes")) c->max_body = (long long)n;
    else if (!strcmp(f->name, "--max-inputs")) c->max_inputs = (long long)n;
    else if (!strcmp(f->name, "--max-concurrency")) c->max_concurrency = (long long)n;
    else if (!strcmp(f->name, "--max-queue")) c->max_queue = (long long)n;
    else if (!strcmp(f->name, "--request-timeout")) c->request_timeout = n;
    else if (!strcmp(f->name, "--connection-timeout")) c->connection_timeout = n;
    else if (!strcmp(f->name, "--threads")) c->threads = (long long)n;
    else if (!strcmp(f->name, "--max-connections")) c->max_connections = (long long)n;
    else c->retry_after = n;
    return 0;
}

int gpuq_http_config_parse(struct gpuq_http_config *c, int argc, char **argv, char *err, size_t errlen) {
    memset(c, 0, sizeof(*c));
    gpuq_cli_target_init(&c->target);
    snprintf(c->host, sizeof(c->host), "127.0.0.1");
    c->port = 8080;
    c->max_body = 4 << 20;
    c->max_inputs = 2048;
    c->max_concurrency = 256;
    c->max_queue = 100000;
    c->request_timeout = 30;
    c->connection_timeout = 10;
    c->threads = 4;
    c->max_connections = 1024;
    c->retry_after = 1;
    for (int k = 0; k < N_FLAGS; k++) {     /* GPUQ_<FLAG> first: a flag wins */
        char env[64] = "GPUQ_";
        for (const char *p = flags[k].name + 2; *p && strlen(env) < sizeof(env) - 1; p++)
            env[strlen(env) + 1] = 0, env[strlen(env)] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        const char *v = getenv(env);
        if (v && *v && set(c, &flags[k], v, err, errlen) != 0) {
            snprintf(err + strlen(err), errlen - strlen(err), " (from %s)", env);
            return -1;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            c->help = 1;
            return 0;
        }
        if (gpuq_cli_target_switch(&c->target, f)) continue;
        int k = 0;
        while (k < N_FLAGS && strcmp(flags[k].name, f)) k++;
        if (k == N_FLAGS && strncmp(f, "--redis", 7) && strcmp(f, "--queue") && strcmp(f, "--prefix")) {
            snprintf(err, errlen, "%s is not a flag of gpuq http (see gpuq http --help)", f);
            return -1;
        }
        if (!v) {
            snprintf(err, errlen, "%s needs a value", f);
            return -1;
        }
        i++;
        if (k == N_FLAGS) gpuq_cli_target_flag(&c->target, f, v);
        else if (set(c, &flags[k], v, err, errlen) != 0) return -1;
    }
    if (strchr(c->target.queue, '{') || strchr(c->target.queue, '}') || !*c->target.queue) {
        snprintf(err, errlen, "--queue '%s': want a name with no braces", c->target.queue);
        return -1;
    }
    return 0;
}
