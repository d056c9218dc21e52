/* metrics.c -- counting requests, and their Prometheus text. */
#include "cli/http/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_names[] = {
#define X(id, name) name,
    GPUQ_HTTP_ROUTES(X)
#undef X
};
_Static_assert(sizeof(route_names) / sizeof(route_names[0]) == GPUQ_HTTP_ROUTE_COUNT, "one name a route");

static const int statuses[] = {200, 202, 400, 401, 403, 404, 405, 409, 413, 415, 421, 429, 500, 501, 502, 503, 504};
#define N_STATUS ((int)(sizeof(statuses) / sizeof(statuses[0])) + 1)    /* + "other" */
static const double bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_BOUNDS ((int)(sizeof(bounds) / sizeof(bounds[0])))

static unsigned long long requests[GPUQ_HTTP_ROUTE_COUNT][N_STATUS];
static unsigned long long buckets[GPUQ_HTTP_ROUTE_COUNT][N_BOUNDS + 1];
static unsigned long long sum_us[GPUQ_HTTP_ROUTE_COUNT];
static long inflight, enqueued;

void gpuq_http_metrics_request(enum gpuq_http_route route, int status, double seconds) {
    int s = N_STATUS - 1;
    for (int i = 0; i < N_STATUS - 1; i++)
        if (statuses[i] == status) s = i;
    __atomic_add_fetch(&requests[route][s], 1, __ATOMIC_RELAXED);
    int b = 0;
    while (b < N_BOUNDS && seconds > bounds[b]) b++;
    __atomic_add_fetch(&buckets[route][b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&sum_us[route], (unsigned long long)(seconds * 1e6), __ATOMIC_RELAXED);
}

void gpuq_http_metrics_inflight(int delta) { __atomic_add_fetch(&inflight, delta, __ATOMIC_RELAXED); }
void gpuq_http_metrics_enqueued(long n) { __atomic_add_fetch(&enqueued, n, __ATOMIC_RELAXED); }

struct out {
    char *buf;
    size_t len, cap;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->buf ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (o->buf && o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = (o->cap + (size_t)n + 1) * 2;
        char *grown = realloc(o->buf, cap);
        if (!grown) return;
        o->buf = grown;
        o->cap = cap;
    }
}

char *gpuq_http_metrics_text(int waiting, size_t *len) {
    struct out o = {0};
    put(&o, "# HELP gpuq_http_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE gpuq_http_requests_total counter\n");
    for (int r = 0; r < GPUQ_HTTP_ROUTE_COUNT; r++)
        for (int s = 0; s < N_STATUS; s++) {
            unsigned long long n = __atomic_load_n(&requests[r][s], __ATOMIC_RELAXED);
            if (!n) continue;
            if (s < N_STATUS - 1)
                put(&o, "gpuq_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", route_names[r], statuses[s], n);
            else
                put(&o, "gpuq_http_requests_total{route=\"%s\",status=\"other\"} %llu\n", route_names[r], n);
        }
    put(&o, "# HELP gpuq_http_request_duration_seconds Time from a request's headers to its answer.\n"
            "# TYPE gpuq_http_request_duration_seconds histogram\n");
    for (int r = 0; r < GPUQ_HTTP_ROUTE_COUNT; r++) {
        unsigned long long cum = 0;
        for (int b = 0; b <= N_BOUNDS; b++) cum += __atomic_load_n(&buckets[r][b], __ATOMIC_RELAXED);
        if (!cum) continue;
        unsigned long long acc = 0;
        for (int b = 0; b < N_BOUNDS; b++) {
            acc += __atomic_load_n(&buckets[r][b], __ATOMIC_RELAXED);
            put(&o, "gpuq_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", route_names[r],
                bounds[b], acc);
        }
        put(&o, "gpuq_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", route_names[r], cum);
        put(&o, "gpuq_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[r],
            __atomic_load_n(&sum_us[r], __ATOMIC_RELAXED) / 1e6);
        put(&o, "gpuq_http_request_duration_seconds_count{route=\"%s\"} %llu\n", route_names[r], cum);
    }
    put(&o, "# HELP gpuq_http_requests_in_flight Requests received and not yet answered.\n"
            "# TYPE gpuq_http_requests_in_flight gauge\n"
            "gpuq_http_requests_in_flight %ld\n", __atomic_load_n(&inflight, __ATOMIC_RELAXED));
    put(&o, "# HELP gpuq_http_reply_waits Requests waiting for a result on the reply list.\n"
            "# TYPE gpuq_http_reply_waits gauge\n"
            "gpuq_http_reply_waits %d\n", waiting);
    put(&o, "# HELP gpuq_http_jobs_enqueued_total Jobs the front door put on queues.\n"
            "# TYPE gpuq_http_jobs_enqueued_total counter\n"
            "gpuq_http_jobs_enqueued_total %ld\n", __atomic_load_n(&enqueued, __ATOMIC_RELAXED));
    put(&o, "# HELP gpuq_http_build_info The front door's version.\n"
            "# TYPE gpuq_http_build_info gauge\n"
            "gpuq_http_build_info{version=\"%s\"} 1\n", GPUQ_VERSION);
    *len = o.len;
    return o.buf;
}
