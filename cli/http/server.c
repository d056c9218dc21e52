/* server.c -- `gpuq http`: libmicrohttpd's side. Each request is routed,
 * its key checked, its body read up to --max-body-bytes, then its route
 * runs; a route that waits for a job's result leaves the connection
 * suspended (no thread is held) until the reply list's reader wakes it. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/http/http.h"
#include "cli/http/main.h"
#include "queue/stream.h"
#include "worker/clock.h"

/* ---- routing ---- */

static enum gpuq_http_route route_of(const char *path, int *is_api) {
    *is_api = 0;
    if (!strcmp(path, "/v1/embeddings") || !strcmp(path, "/embeddings")) return GPUQ_HTTP_ROUTE_EMBEDDINGS;
    if (!strcmp(path, "/v1/models") || !strcmp(path, "/models")) return GPUQ_HTTP_ROUTE_MODELS;
    if (!strcmp(path, "/embed")) return GPUQ_HTTP_ROUTE_EMBED;
    if (!strcmp(path, "/rerank") || !strcmp(path, "/predict") || !strcmp(path, "/embed_sparse") ||
        !strcmp(path, "/tokenize"))
        return GPUQ_HTTP_ROUTE_TEI_OTHER;   /* tei_ops.c's, or 501 */
    if (!strcmp(path, "/v1/jobs")) return GPUQ_HTTP_ROUTE_JOBS_POST;
    if (!strncmp(path, "/v1/jobs/", 9)) return GPUQ_HTTP_ROUTE_JOBS_GET;
    if (!strcmp(path, "/") || !strcmp(path, "/index.html")) return GPUQ_HTTP_ROUTE_DASHBOARD;
    if (!strncmp(path, "/api/", 5)) return *is_api = 1, GPUQ_HTTP_ROUTE_API;
    if (!strcmp(path, "/metrics")) return GPUQ_HTTP_ROUTE_METRICS;
    if (!strcmp(path, "/healthz") || !strcmp(path, "/health")) return GPUQ_HTTP_ROUTE_HEALTH;
    return GPUQ_HTTP_ROUTE_OTHER;
}

/* The method a route takes: 1 POST, 0 GET, -1 either (the API decides). */
static int wants_post(enum gpuq_http_route route) {
    switch (route) {
    case GPUQ_HTTP_ROUTE_EMBEDDINGS: case GPUQ_HTTP_ROUTE_EMBED: case GPUQ_HTTP_ROUTE_TEI_OTHER:
    case GPUQ_HTTP_ROUTE_JOBS_POST: return 1;
    case GPUQ_HTTP_ROUTE_API: return -1;
    default: return 0;
    }
}

const char *gpuq_http_query(struct gpuq_http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

static void health(struct gpuq_http_req *r) {
    int up = gpuq_waiter_up(r->srv->waiter);
    gpuq_http_answer_json(r, up ? 200 : 503, json_pack("{s:s, s:b}", "status", up ? "ok" : "unhealthy", "redis", up));
}

static void metrics(struct gpuq_http_req *r) {
    size_t len = 0;
    char *text = gpuq_http_metrics_text(gpuq_waiter_count(r->srv->waiter), &len);
    if (text) gpuq_http_answer(r, 200, "text/plain; version=0.0.4", text, len);
    else gpuq_http_fail(r, 500, "internal", "out of memory");
}

static void run_route(struct gpuq_http_req *r) {
    switch (r->route) {
    case GPUQ_HTTP_ROUTE_EMBEDDINGS: gpuq_http_embeddings(r); break;
    case GPUQ_HTTP_ROUTE_MODELS: gpuq_http_models(r); break;
    case GPUQ_HTTP_ROUTE_EMBED: gpuq_http_tei_embed(r); break;
    case GPUQ_HTTP_ROUTE_TEI_OTHER:
        if (!strcmp(r->path, "/rerank")) gpuq_http_tei_rerank(r);
        else if (!strcmp(r->path, "/predict")) gpuq_http_tei_predict(r);
        else if (!strcmp(r->path, "/embed_sparse")) gpuq_http_tei_sparse(r);
        else gpuq_http_tei_unserved(r);
        break;
    case GPUQ_HTTP_ROUTE_JOBS_POST: gpuq_http_jobs_post(r); break;
    case GPUQ_HTTP_ROUTE_JOBS_GET: gpuq_http_jobs_get(r); break;
    case GPUQ_HTTP_ROUTE_DASHBOARD: gpuq_http_dash_page(r); break;
    case GPUQ_HTTP_ROUTE_API: gpuq_http_dash_api(r); break;
    case GPUQ_HTTP_ROUTE_METRICS: metrics(r); break;
    case GPUQ_HTTP_ROUTE_HEALTH: health(r); break;
    default: gpuq_http_fail(r, 404, "not_found", "no route %s", r->path); break;
    }
}

/* ---- admission: before the body is read ---- */

static int loopback_host(const char *h) {
    return !strcasecmp(h, "localhost") || !strcmp(h, "::1") || !strncmp(h, "127.", 4);
}

/* Without keys, only Host names of this machine are served, so that a web
 * page cannot reach the front door through a DNS name rebound to 127.0.0.1. */
static int host_ok(struct gpuq_http_req *r) {
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    char name[256];
    if (!h) return 1;   /* HTTP/1.0 */
    if (h[0] == '[') {
        const char *end = strchr(h, ']');
        snprintf(name, sizeof(name), "%.*s", end ? (int)(end - h - 1) : 0, h + 1);
    } else {
        const char *colon = strchr(h, ':');
        snprintf(name, sizeof(name), "%.*s", colon ? (int)(colon - h) : (int)strlen(h), h);
    }
    return loopback_host(name) || !strcasecmp(name, r->srv->cfg.host);
}

/* Checks key, scope, concurrency and size; 0 to go on, -1 answered. */
static int admit(struct gpuq_http_req *r) {
    struct gpuq_http *srv = r->srv;
    int public = r->route == GPUQ_HTTP_ROUTE_DASHBOARD || r->route == GPUQ_HTTP_ROUTE_HEALTH;
    if (srv->keys.n == 0) {
        if (!host_ok(r)) {
            gpuq_http_fail(r, 403, "forbidden", "without --api-key-file only requests to a loopback Host are served");
            return -1;
        }
        r->key = &srv->keys.anonymous;
    } else if (!public) {
        const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7]) {
            gpuq_http_fail(r, 401, "unauthorized", "an API key is required: Authorization: Bearer KEY");
            return -1;
        }
        if (!(r->key = gpuq_http_keys_find(&srv->keys, auth + 7, strlen(auth + 7)))) {
            gpuq_http_fail(r, 401, "unauthorized", "the API key is not valid");
            return -1;
        }
        if (r->is_post && r->key->scope != GPUQ_HTTP_SCOPE_WRITE) {
            gpuq_http_fail(r, 403, "forbidden", "this API key may read only (scope read): %s needs a write key", r->path);
            return -1;
        }
    }
    if (r->key && r->key->queue[0]) r->queue = r->key->queue;
    else if (srv->cfg.route_queue[r->route]) r->queue = srv->cfg.route_queue[r->route];
    else r->queue = srv->cfg.target.queue;
    if (r->is_post) {
        /* JSON only: a form on another site cannot send it without a preflight, which is never answered */
        const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
            gpuq_http_fail(r, 415, "bad_request", "send the body as JSON, with Content-Type: application/json");
            return -1;
        }
        const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)srv->cfg.max_body) {
            gpuq_http_fail(r, 413, "too_large", "the body is %s bytes; at most %lld (--max-body-bytes)", cl,
                           srv->cfg.max_body);
            return -1;
        }
    }
    if (r->key && !public) {
        if (__atomic_add_fetch(&r->key->in_flight, 1, __ATOMIC_ACQ_REL) > srv->cfg.max_concurrency) {
            __atomic_sub_fetch(&r->key->in_flight, 1, __ATOMIC_ACQ_REL);
            r->retry_after = 1;
            gpuq_http_fail(r, 429, "rate_limited", "%lld requests with this key are under way already "
                           "(--max-concurrency)", srv->cfg.max_concurrency);
            return -1;
        }
        r->holds_slot = 1;
    }
    return 0;
}

/* ---- libmicrohttpd's callbacks ---- */

static enum MHD_Result send_answer(struct gpuq_http_req *r) {
    if (!r->answered) gpuq_http_fail(r, 500, "internal", "the route gave no answer (a bug)");
    struct MHD_Response *resp = MHD_create_response_from_buffer(r->resp_len, r->resp, MHD_RESPMEM_MUST_FREE);
    if (!resp) return MHD_NO;
    r->resp = NULL;     /* the response owns it */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype ? r->ctype : "application/json");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->route == GPUQ_HTTP_ROUTE_DASHBOARD)
        MHD_add_response_header(resp, "Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' "
                                "'self'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'");
    if (r->retry_after > 0) {
        char s[16];
        snprintf(s, sizeof(s), "%d", r->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, s);
    }
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    r->queued = 1;
    /* counted as answered now, not when the connection is done with it:
     * the client may be asking again by then */
    gpuq_http_metrics_request(r->route, r->status, gpuq_mono_s() - r->t0);
    gpuq_http_metrics_inflight(-1);
    return ok;
}

static void park(void *ud) { MHD_suspend_connection(((struct gpuq_http_req *)ud)->conn); }

/* The reply list's reader: a result (or a timeout) for a suspended request. */
static void wake(struct gpuq_wait *w) {
    struct gpuq_http_req *r = (struct gpuq_http_req *)((char *)w - offsetof(struct gpuq_http_req, wait));
    MHD_resume_connection(r->conn);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    struct gpuq_http *srv = cls;
    struct gpuq_http_req *r = *con_cls;
    (void)version;
    if (!r) {   /* the headers are in */
        int is_api;
        if (!(r = calloc(1, sizeof(*r)))) return MHD_NO;
        *con_cls = r;
        r->srv = srv;
        r->conn = conn;
        r->t0 = gpuq_mono_s();
        r->wait.wake = wake;
        snprintf(r->path, sizeof(r->path), "%s", url);
        r->route = route_of(r->path, &is_api);
        r->is_post = !strcmp(method, "POST");
        gpuq_http_metrics_inflight(1);
        int want = wants_post(r->route);
        if (strcmp(method, "GET") && strcmp(method, "POST") && strcmp(method, "HEAD")) {
            gpuq_http_fail(r, 405, "method_not_allowed", "%s is not served", method);
            return send_answer(r);
        }
        if (r->route != GPUQ_HTTP_ROUTE_OTHER && want >= 0 && want != r->is_post) {
            gpuq_http_fail(r, 405, "method_not_allowed", "%s takes %s", r->path, want ? "POST" : "GET");
            return send_answer(r);
        }
        if (admit(r) != 0) return send_answer(r);
        return MHD_YES;
    }
    if (r->queued) {    /* answered before the body: what comes is dropped */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (gpuq_mono_s() - r->t0 > srv->cfg.request_timeout) return MHD_NO;   /* a body sent too slowly */
        if (r->too_large || r->len + n > (size_t)srv->cfg.max_body) {
            r->too_large = 1;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1) cap *= 2;
            char *grown = realloc(r->body, cap);
            if (!grown) return MHD_NO;
            r->body = grown;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload, n);
        r->len += n;
        r->body[r->len] = 0;
        return MHD_YES;
    }
    /* the whole request is in, or its result came */
    if (r->waiting) {
        r->finish(r);
        return send_answer(r);
    }
    if (r->too_large) {
        gpuq_http_fail(r, 413, "too_large", "the body is larger than %lld bytes (--max-body-bytes)", srv->cfg.max_body);
        return send_answer(r);
    }
    run_route(r);
    if (r->waiting && !gpuq_waiter_park(srv->waiter, &r->wait, park, r)) return MHD_YES;
    if (r->waiting) r->finish(r);   /* the result came before the request could be suspended */
    return send_answer(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    struct gpuq_http_req *r = *con_cls;
    (void)cls, (void)conn, (void)toe;
    if (!r) return;
    if (r->waiting) gpuq_waiter_remove(r->srv->waiter, &r->wait);
    if (r->holds_slot) __atomic_sub_fetch(&r->key->in_flight, 1, __ATOMIC_ACQ_REL);
    if (!r->queued) {   /* never answered: the client went away, or the connection failed */
        gpuq_http_metrics_request(r->route, 499, gpuq_mono_s() - r->t0);
        gpuq_http_metrics_inflight(-1);
    }
    if (r->ctx_free) r->ctx_free(r->ctx);
    free(r->wait.bytes);
    free(r->resp);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void log_mhd(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fprintf(stderr, "gpuq http: ");
    vfprintf(stderr, fmt, ap);
}

/* ---- the command ---- */

static int listen_addr(const struct gpuq_http_config *c, struct sockaddr_storage *ss, int *v6) {
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    const char *h = !strcasecmp(c->host, "localhost") ? "127.0.0.1" : c->host[0] ? c->host : "0.0.0.0";
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)c->port);
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)c->port);
        *v6 = 1;
        return 0;
    }
    return -1;
}

static int is_loopback(const struct sockaddr_storage *ss) {
    if (ss->ss_family == AF_INET) return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

int gpuq_http_main(int argc, char **argv) {
    struct gpuq_http srv;
    char err[512] = "", suffix[160];
    unsigned char rnd[8];
    struct sockaddr_storage addr;
    sigset_t stop;
    int v6 = 0, result = 2, sig = 0;
    memset(&srv, 0, sizeof(srv));
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);    /* every thread started after this inherits it */
    if (gpuq_http_config_parse(&srv.cfg, argc, argv, err, sizeof(err)) != 0) goto fail;
    if (srv.cfg.help) {
        gpuq_http_config_usage(stdout);
        return 0;
    }
    if (listen_addr(&srv.cfg, &addr, &v6) != 0) {
        snprintf(err, sizeof(err), "--listen %s: want a numeric IPv4 or IPv6 address (or localhost)", srv.cfg.host);
        goto fail;
    }
    if (srv.cfg.api_key_file && gpuq_http_keys_load(&srv.keys, srv.cfg.api_key_file, err, sizeof(err)) != 0) goto fail;
    if (srv.keys.n == 0 && !is_loopback(&addr)) {
        snprintf(err, sizeof(err), "--listen %s:%d: without --api-key-file only a loopback address (127.0.0.1, ::1) "
                 "is served", srv.cfg.host, srv.cfg.port);
        goto fail;
    }
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        snprintf(err, sizeof(err), "no random bytes for the process's job ids");
        goto fail;
    }
    for (int i = 0; i < 8; i++) snprintf(srv.token + 2 * i, 3, "%02x", rnd[i]);
    pthread_mutex_init(&srv.lock, NULL);
    char host[64] = "";
    gethostname(host, sizeof(host) - 1);
    snprintf(suffix, sizeof(suffix), "reply:http:%s:%d:%s", host, (int)getpid(), srv.token);
    gpuq_stream_key(srv.reply_list, sizeof(srv.reply_list), srv.cfg.target.prefix, srv.cfg.target.queue, suffix);
    if (!(srv.pool = gpuq_http_pool_create(&srv.cfg.target))) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (!(srv.waiter = gpuq_waiter_start(&srv.cfg.target, srv.reply_list, err, sizeof(err)))) goto fail;
    srv.daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
            (v6 ? MHD_USE_IPv6 : 0),
        (uint16_t)srv.cfg.port, NULL, NULL, on_request, &srv,
        MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv.cfg.threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)srv.cfg.connection_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)srv.cfg.max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,     /* request line and headers at most */
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &srv,
        MHD_OPTION_END);
    if (!srv.daemon) {
        snprintf(err, sizeof(err), "cannot listen on %s:%d (in use, or not an address of this machine)",
                 srv.cfg.host, srv.cfg.port);
        goto fail;
    }
    fprintf(stderr, "gpuq http %s: listening on http://%s%s%s:%d, queue %s on %s, %s; results on %s\n", GPUQ_VERSION,
            v6 ? "[" : "", srv.cfg.host, v6 ? "]" : "", srv.cfg.port, srv.cfg.target.queue, srv.cfg.target.redis,
            srv.keys.n ? "API keys required" : "no API keys (loopback only)", srv.reply_list);
    sigwait(&stop, &sig);
    fprintf(stderr, "gpuq http: stopping (%s): %d requests waiting are answered 503\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            gpuq_waiter_count(srv.waiter));
    MHD_quiesce_daemon(srv.daemon);
    gpuq_waiter_stop(srv.waiter);   /* every suspended request resumed, answered 503 */
    usleep(200000);                 /* for those answers to go out */
    MHD_stop_daemon(srv.daemon);
    result = 0;
    goto out;
fail:
    if (err[0]) fprintf(stderr, "gpuq http: %s\n", err);
out:
    gpuq_waiter_free(srv.waiter);
    gpuq_http_pool_destroy(srv.pool);
    gpuq_http_keys_free(&srv.keys);
    return result;
}
