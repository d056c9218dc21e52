/* metrics.c -- a small fixed registry and its Prometheus text rendering. */
#include "worker/metrics.h"

#include <dirent.h>
#include <stddef.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>


#define N_ERR (GPUQ_ERR_WEBHOOK_FAILED + 1)
#define N_SECONDS 14
#define N_ROWS 12

static const double seconds_le[N_SECONDS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                             0.1, 0.2, 0.5, 1, 2, 5, 10};
static const double rows_le[N_ROWS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

struct hist {
    uint64_t buckets[N_SECONDS];    /* per bucket, made cumulative when rendered */
    double sum;
    uint64_t count;
};

/* Histograms are kept per op and model: N_OPS ops (the last one for jobs
 * whose op was not known) by n_models + 1 (the first for no model). */
#define N_OPS (GPUQ_OP_COUNT + 1)

struct timings {
    struct hist queue_s, compute_s, total_s, rows;
};

struct gpuq_metrics {
    pthread_mutex_t lock;
    struct MHD_Daemon *http;
    char **queues, **models;
    int n_queues, n_models;
    char backend[16], device[160];
    uint64_t *jobs;                 /* [queue][op][status] */
    uint64_t *dead;                 /* [queue][reason] */
    int64_t *backlog, *pending;     /* [queue], -1 until sampled */
    struct timings *by;             /* [op][model + 1] */
    double started;                 /* Unix time of creation */
    uint64_t webhooks[2];           /* failed, delivered */
    uint64_t push_failed;           /* reply pushes Redis refused */
    uint64_t cache[2];              /* rows looked up in the cache: missed, found */
    uint64_t batch_trouble[2];      /* split (out of memory), failed */
    int64_t inflight_jobs, inflight_rows, device_bytes;
    int ready;
};

struct gpuq_metrics *gpuq_metrics_create(char *const *queues, int n_queues, const char *const *models,
                                         int n_models, const char *backend, const char *device) {
    struct gpuq_metrics *m = calloc(1, sizeof(*m));
    if (!m) return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->n_queues = n_queues;
    m->n_models = n_models;
    m->queues = calloc((size_t)n_queues, sizeof(char *));
    m->models = calloc((size_t)n_models + 1, sizeof(char *));
    m->jobs = calloc((size_t)n_queues * N_OPS * N_ERR, sizeof(uint64_t));
    m->dead = calloc((size_t)n_queues * N_ERR, sizeof(uint64_t));
    m->backlog = malloc((size_t)n_queues * sizeof(int64_t));
    m->pending = malloc((size_t)n_queues * sizeof(int64_t));
    m->by = calloc((size_t)N_OPS * ((size_t)n_models + 1), sizeof(*m->by));
    if (!m->queues || !m->models || !m->jobs || !m->dead || !m->backlog || !m->pending || !m->by) {
        gpuq_metrics_destroy(m);
        return NULL;
    }
    for (int i = 0; i < n_queues; i++) {
        m->queues[i] = strdup(queues[i]);
        m->backlog[i] = m->pending[i] = -1;
    }
    for (int i = 0; i < n_models; i++) m->models[i] = strdup(models[i]);
    struct timeval now;
    gettimeofday(&now, NULL);
    m->started = (double)now.tv_sec + now.tv_usec / 1e6;
    snprintf(m->backend, sizeof(m->backend), "%s", backend);
    snprintf(m->device, sizeof(m->device), "%s", device);
    m->device_bytes = -1;
    return m;
}

void gpuq_metrics_destroy(struct gpuq_metrics *m) {
    if (!m) return;
    if (m->http) MHD_stop_daemon(m->http);
    for (int i = 0; m->queues && i < m->n_queues; i++) free(m->queues[i]);
    for (int i = 0; m->models && i < m->n_models; i++) free(m->models[i]);
    free(m->queues), free(m->models), free(m->jobs), free(m->dead), free(m->backlog), free(m->pending);
    free(m->by);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void observe(struct hist *h, const double *le, int n, double v) {
    if (v < 0) return;
    for (int i = 0; i < n; i++)
        if (v <= le[i]) {
            h->buckets[i]++;
            break;
        }
    h->sum += v;
    h->count++;
}

/* The timings of op (< 0: not known) and model (< 0: none). */
static struct timings *timings(struct gpuq_metrics *m, int op, int model) {
    if (op < 0 || op >= GPUQ_OP_COUNT) op = N_OPS - 1;
    if (model < 0 || model >= m->n_models) model = -1;
    return &m->by[(size_t)op * ((size_t)m->n_models + 1) + (size_t)(model + 1)];
}

void gpuq_metrics_job(struct gpuq_metrics *m, int queue, int op, int model, enum gpuq_err err,
                      double queue_s, double compute_s, double total_s) {
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    int o = op < 0 || op >= GPUQ_OP_COUNT ? N_OPS - 1 : op;
    m->jobs[((size_t)queue * N_OPS + o) * N_ERR + err]++;
    struct timings *t = timings(m, op, model);
    observe(&t->queue_s, seconds_le, N_SECONDS, queue_s);
    if (err == GPUQ_ERR_NONE) observe(&t->compute_s, seconds_le, N_SECONDS, compute_s);
    observe(&t->total_s, seconds_le, N_SECONDS, total_s);
    pthread_mutex_unlock(&m->lock);
}

#define SET(field, value)                   \
    do {                                    \
        if (!m) return;                     \
        pthread_mutex_lock(&m->lock);       \
        field = value;                      \
        pthread_mutex_unlock(&m->lock);     \
    } while (0)

void gpuq_metrics_batch(struct gpuq_metrics *m, int op, int model, int64_t rows) {
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    observe(&timings(m, op, model)->rows, rows_le, N_ROWS, (double)rows);
    pthread_mutex_unlock(&m->lock);
}

void gpuq_metrics_batch_trouble(struct gpuq_metrics *m, int failed) {
    SET(m->batch_trouble[!!failed], m->batch_trouble[!!failed] + 1);
}

void gpuq_metrics_dead(struct gpuq_metrics *m, int queue, enum gpuq_err reason) {
    SET(m->dead[(size_t)queue * N_ERR + reason], m->dead[(size_t)queue * N_ERR + reason] + 1);
}
void gpuq_metrics_push_failed(struct gpuq_metrics *m, int jobs) {
    SET(m->push_failed, m->push_failed + (uint64_t)jobs);
}
void gpuq_metrics_cache(struct gpuq_metrics *m, int64_t hits, int64_t misses) {
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    m->cache[1] += (uint64_t)hits;
    m->cache[0] += (uint64_t)misses;
    pthread_mutex_unlock(&m->lock);
}
void gpuq_metrics_webhook(struct gpuq_metrics *m, int delivered) {
    SET(m->webhooks[!!delivered], m->webhooks[!!delivered] + 1);
}
void gpuq_metrics_inflight(struct gpuq_metrics *m, int64_t jobs, int64_t rows) {
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    m->inflight_jobs = jobs;
    m->inflight_rows = rows;
    pthread_mutex_unlock(&m->lock);
}
void gpuq_metrics_queue(struct gpuq_metrics *m, int queue, int64_t backlog, int64_t pending) {
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    m->backlog[queue] = backlog;
    m->pending[queue] = pending;
    pthread_mutex_unlock(&m->lock);
}
void gpuq_metrics_device_memory(struct gpuq_metrics *m, int64_t bytes) { SET(m->device_bytes, bytes); }
void gpuq_metrics_ready(struct gpuq_metrics *m, int ready) { SET(m->ready, ready); }

/* ---- rendering ---- */

static void head(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: \\, " and newlines escaped, as the text format wants. */
static void value(FILE *f, const char *v) {
    for (const char *p = v; *p; p++) {
        if (*p == '\n') fputs("\\n", f);
        else fprintf(f, "%s%c", (*p == '"' || *p == '\\') ? "\\" : "", *p);
    }
}

static const char *op_label(int op) { return op < GPUQ_OP_COUNT ? gpuq_op_name((enum gpuq_op)op) : "unknown"; }

/* One histogram per op and model that saw anything; which: the member of
 * struct timings it renders. */
static void hist(FILE *f, const struct gpuq_metrics *m, const char *name, const char *help, size_t which,
                 const double *le, int n) {
    head(f, name, "histogram", help);
    for (int op = 0; op < N_OPS; op++)
        for (int model = -1; model < m->n_models; model++) {
            const struct timings *t = &m->by[(size_t)op * ((size_t)m->n_models + 1) + (size_t)(model + 1)];
            const struct hist *h = (const struct hist *)((const char *)t + which);
            if (!h->count) continue;
            char labels[256];
            snprintf(labels, sizeof(labels), "op=\"%s\",model=\"", op_label(op));
            uint64_t cum = 0;
            for (int i = 0; i <= n; i++) {
                cum += i < n ? h->buckets[i] : 0;
                fprintf(f, "%s_bucket{%s", name, labels);
                value(f, model < 0 ? "" : m->models[model]);
                if (i < n) fprintf(f, "\",le=\"%g\"} %llu\n", le[i], (unsigned long long)cum);
                else fprintf(f, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
            }
            fprintf(f, "%s_sum{%s", name, labels);
            value(f, model < 0 ? "" : m->models[model]);
            fprintf(f, "\"} %.9g\n%s_count{%s", h->sum, name, labels);
            value(f, model < 0 ? "" : m->models[model]);
            fprintf(f, "\"} %llu\n", (unsigned long long)h->count);
        }
}

/* The process_* metrics every Prometheus client library exports. */
static void process(FILE *f, double started) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    head(f, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
    fprintf(f, "process_cpu_seconds_total %.6f\n",
            (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    long pages_virt = 0, pages_rss = 0, page = sysconf(_SC_PAGESIZE);
    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm && fscanf(statm, "%ld %ld", &pages_virt, &pages_rss) == 2) {
        head(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        fprintf(f, "process_resident_memory_bytes %lld\n", (long long)pages_rss * page);
        head(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        fprintf(f, "process_virtual_memory_bytes %lld\n", (long long)pages_virt * page);
    }
    if (statm) fclose(statm);
    DIR *fds = opendir("/proc/self/fd");
    if (fds) {
        int n = 0;
        for (struct dirent *d; (d = readdir(fds));) n += d->d_name[0] != '.';
        closedir(fds);
        head(f, "process_open_fds", "gauge", "Open file descriptors.");
        fprintf(f, "process_open_fds %d\n", n - 1);    /* not the one reading the folder */
    }
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
        head(f, "process_max_fds", "gauge", "Most open file descriptors allowed.");
        fprintf(f, "process_max_fds %llu\n", (unsigned long long)lim.rlim_cur);
    }
    head(f, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
    fprintf(f, "process_start_time_seconds %.3f\n", started);
}

char *gpuq_metrics_render(struct gpuq_metrics *m, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f) return NULL;
    pthread_mutex_lock(&m->lock);
    head(f, "gpuq_jobs_total", "counter", "Jobs answered, by queue, op and status (ok or error code).");
    for (int q = 0; q < m->n_queues; q++)
        for (int op = 0; op < N_OPS; op++)
            for (int e = 0; e < N_ERR; e++) {
                uint64_t v = m->jobs[((size_t)q * N_OPS + op) * N_ERR + e];
                if (v || (e == GPUQ_ERR_NONE && op < GPUQ_OP_COUNT))
                    fprintf(f, "gpuq_jobs_total{queue=\"%s\",op=\"%s\",status=\"%s\"} %llu\n", m->queues[q],
                            op_label(op), e ? gpuq_err_code((enum gpuq_err)e) : "ok", (unsigned long long)v);
            }
    head(f, "gpuq_dead_letters_total", "counter", "Entries dead-lettered, by queue and reason.");
    for (int q = 0; q < m->n_queues; q++)
        for (int e = 1; e < N_ERR; e++)
            if (m->dead[(size_t)q * N_ERR + e] || e == GPUQ_ERR_BAD_REQUEST)
                fprintf(f, "gpuq_dead_letters_total{queue=\"%s\",reason=\"%s\"} %llu\n", m->queues[q],
                        gpuq_err_code((enum gpuq_err)e), (unsigned long long)m->dead[(size_t)q * N_ERR + e]);
    hist(f, m, "gpuq_batch_rows", "Rows in each batch run, by op and model.",
         offsetof(struct timings, rows), rows_le, N_ROWS);
    hist(f, m, "gpuq_queue_seconds", "From enqueue to the start of a job's compute, by op and model.",
         offsetof(struct timings, queue_s), seconds_le, N_SECONDS);
    hist(f, m, "gpuq_compute_seconds", "Compute time of the batches a job ran in, by op and model.",
         offsetof(struct timings, compute_s), seconds_le, N_SECONDS);
    hist(f, m, "gpuq_total_seconds", "From enqueue to the result written, by op and model.",
         offsetof(struct timings, total_s), seconds_le, N_SECONDS);
    head(f, "gpuq_inflight_jobs", "gauge", "Jobs held by the worker.");
    fprintf(f, "gpuq_inflight_jobs %lld\n", (long long)m->inflight_jobs);
    head(f, "gpuq_inflight_rows", "gauge", "Rows held by the worker (bounded by --max-inflight).");
    fprintf(f, "gpuq_inflight_rows %lld\n", (long long)m->inflight_rows);
    head(f, "gpuq_backlog_jobs", "gauge", "Entries not yet delivered to any worker (stream lag).");
    for (int q = 0; q < m->n_queues; q++)
        if (m->backlog[q] >= 0)
            fprintf(f, "gpuq_backlog_jobs{queue=\"%s\"} %lld\n", m->queues[q], (long long)m->backlog[q]);
    head(f, "gpuq_pending_jobs", "gauge", "Entries delivered to workers and not yet acknowledged.");
    for (int q = 0; q < m->n_queues; q++)
        if (m->pending[q] >= 0)
            fprintf(f, "gpuq_pending_jobs{queue=\"%s\"} %lld\n", m->queues[q], (long long)m->pending[q]);
    head(f, "gpuq_batch_trouble_total", "counter", "Batches split for want of device memory, and "
         "batches that failed (their jobs got internal).");
    fprintf(f, "gpuq_batch_trouble_total{kind=\"split\"} %llu\n"
               "gpuq_batch_trouble_total{kind=\"failed\"} %llu\n",
            (unsigned long long)m->batch_trouble[0], (unsigned long long)m->batch_trouble[1]);
    head(f, "gpuq_webhook_deliveries_total", "counter", "Webhook deliveries finished, by outcome.");
    fprintf(f, "gpuq_webhook_deliveries_total{outcome=\"delivered\"} %llu\n"
               "gpuq_webhook_deliveries_total{outcome=\"failed\"} %llu\n",
            (unsigned long long)m->webhooks[1], (unsigned long long)m->webhooks[0]);
    head(f, "gpuq_reply_push_failed_total", "counter", "Results whose reply_to push Redis refused "
         "(wrong type, no permission, another slot); their result keys were written.");
    fprintf(f, "gpuq_reply_push_failed_total %llu\n", (unsigned long long)m->push_failed);
    head(f, "gpuq_cache_rows_total", "counter", "Rows looked up in the result cache (--embed-cache-ttl), "
         "by whether they were found");
    fprintf(f, "gpuq_cache_rows_total{result=\"hit\"} %llu\n", (unsigned long long)m->cache[1]);
    fprintf(f, "gpuq_cache_rows_total{result=\"miss\"} %llu\n", (unsigned long long)m->cache[0]);
    head(f, "gpuq_backend_info", "gauge", "The compute backend and device.");
    fprintf(f, "gpuq_backend_info{backend=\"%s\",device=\"", m->backend);
    value(f, m->device);
    fprintf(f, "\"} 1\n");
    head(f, "gpuq_build_info", "gauge", "1, naming the version.");
    fprintf(f, "gpuq_build_info{version=\"%s\"} 1\n", GPUQ_VERSION);
    if (m->device_bytes >= 0) {
        head(f, "gpuq_device_memory_used_bytes", "gauge", "Device memory in use.");
        fprintf(f, "gpuq_device_memory_used_bytes %lld\n", (long long)m->device_bytes);
    }
    head(f, "gpuq_ready", "gauge", "1 when Redis is reachable and models are loaded.");
    fprintf(f, "gpuq_ready %d\n", m->ready);
    pthread_mutex_unlock(&m->lock);
    process(f, m->started);
    fclose(f);
    return buf;
}

/* ---- HTTP ---- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *data_size, void **state) {
    struct gpuq_metrics *m = cls;
    (void)version, (void)data, (void)data_size, (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, 405, "text/plain", "GET only\n", 9);
    if (strcmp(url, "/metrics") == 0) {
        size_t len = 0;
        char *text = gpuq_metrics_render(m, &len);
        if (!text) return reply(c, 500, "text/plain", "out of memory\n", 14);
        enum MHD_Result rc = reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        free(text);
        return rc;
    }
    if (strcmp(url, "/healthz") == 0) return reply(c, 200, "text/plain", "ok\n", 3);
    if (strcmp(url, "/readyz") == 0) {
        pthread_mutex_lock(&m->lock);
        int ready = m->ready;
        pthread_mutex_unlock(&m->lock);
        return ready ? reply(c, 200, "text/plain", "ready\n", 6)
                     : reply(c, 503, "text/plain", "not ready: Redis unreachable\n", 29);
    }
    return reply(c, 404, "text/plain", "not found: try /metrics, /healthz, /readyz\n", 44);
}

int gpuq_metrics_serve(struct gpuq_metrics *m, const char *addr, char *err, size_t errlen) {
    const char *colon = strrchr(addr, ':');
    char host[256];
    if (!colon || (size_t)(colon - addr) >= sizeof(host) || !colon[1]) {
        snprintf(err, errlen, "--metrics-addr '%s': want HOST:PORT, or :PORT for every interface", addr);
        return -1;
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535) {     /* getaddrinfo would take 80000 as 14464 */
        snprintf(err, errlen, "--metrics-addr '%s': the port is not a number from 1 to 65535", addr);
        return -1;
    }
    if (colon == addr) {    /* ":9100": every interface, IPv6 and IPv4 where the host has both */
        unsigned base = MHD_USE_INTERNAL_POLLING_THREAD;
        m->http = MHD_start_daemon(base | MHD_USE_DUAL_STACK, (uint16_t)port, NULL, NULL, handle, m,
                                   MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
        if (!m->http)   /* no IPv6 on this host */
            m->http = MHD_start_daemon(base, (uint16_t)port, NULL, NULL, handle, m,
                                       MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
        if (!m->http) {
            snprintf(err, errlen, "--metrics-addr '%s': cannot listen (in use?)", addr);
            return -1;
        }
        return 0;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {     /* [::1]:9100 */
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        snprintf(err, errlen, "--metrics-addr '%s': cannot resolve", addr);
        return -1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    m->http = MHD_start_daemon(flags, 0, NULL, NULL, handle, m, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                               MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!m->http) {
        snprintf(err, errlen, "--metrics-addr '%s': cannot listen (in use?)", addr);
        return -1;
    }
    return 0;
}
