/* webhook.c -- Standard Webhooks delivery on libcurl multi and OpenSSL.
 *
 * A delivery held here is WAITING (for its due time, a transfer slot or
 * room under its host's cap; it holds no body), LOADING (the caller reads
 * its entry again), IN_FLIGHT (a transfer, the one state with a body) or
 * FINISHED (for the caller to record; an undelivered one keeps its job for
 * the dead letter). */
#include "worker/webhook.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "queue/job.h"
#include "queue/json.h"
#include "worker/clock.h"
#include "worker/log.h"
#include "worker/webhook_addr.h"
#include "worker/webhook_sign.h"

#define MAX_HELD GPUQ_WEBHOOKS_MAX_HELD
#define MAX_TRANSFERS GPUQ_WEBHOOKS_MAX_TRANSFERS
#define HOSTS 4096                  /* the host table: a power of two, > 2 x MAX_HELD */
#define BODY_BUDGET ((size_t)256 << 20)  /* result bytes in flight; one transfer always may start */

enum state { FREE, WAITING, LOADING, IN_FLIGHT, FINISHED };

struct gpuq_webhooks;

struct slot {
    struct gpuq_delivery d;     /* first: the public view */
    enum state state;
    struct gpuq_webhooks *wh;
    char *url;
    uint64_t host;              /* hash of scheme://host:port */
    size_t size;                /* the result's bytes, counted against BODY_BUDGET */
    int64_t next_at_us;
    char *body, *job;           /* in flight; job also when finished undelivered */
    size_t body_len;
    CURL *easy;
    struct curl_slist *headers;
    char refused[INET6_ADDRSTRLEN];     /* an address the rules refused */
};

struct gpuq_webhooks {
    CURLM *multi;
    int epfd;                   /* the transfers' sockets, as libcurl asks */
    int64_t timer_at_us;        /* when libcurl wants its timeout action; -1: never */
    unsigned char key[256];
    size_t key_len;
    int has_key;
    int told_unsigned;      /* the first unsigned delivery said so in the log */
    int max_attempts, per_host;
    int64_t backoff_ms, timeout_ms;
    struct gpuq_cidr *allow;
    int n_allow;
    int held, busy;             /* busy: loading or in flight */
    int finished;
    size_t busy_bytes;
    int running;                /* transfers in the multi handle */
    uint64_t freed;
    int64_t next_due_us;        /* earliest retry not yet due; INT64_MAX: none */
    int rescan;                 /* room came free: due deliveries may start */
    struct slot slots[MAX_HELD];
    int free_slots[MAX_HELD], n_free;
    struct slot *due[MAX_HELD];     /* scratch for gpuq_webhooks_due */
    struct {
        uint64_t host;          /* 0: empty */
        int busy;
    } hosts[HOSTS];             /* open addressing; emptied when half full */
    int n_hosts;
};

/* ---- the address rules, on the address libcurl connects to ---- */

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a) {
    struct slot *s = clientp;
    struct sockaddr_storage ss;
    if (purpose != CURLSOCKTYPE_IPCXN || a->addrlen > sizeof(ss)) return CURL_SOCKET_BAD;
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, &a->addr, a->addrlen);
    if (!gpuq_webhook_addr_allowed((struct sockaddr *)&ss, s->wh->allow, s->wh->n_allow)) {
        const void *ip = ss.ss_family == AF_INET ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                                                 : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (!inet_ntop(ss.ss_family, ip, s->refused, sizeof(s->refused)))
            snprintf(s->refused, sizeof(s->refused), "?");
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

/* ---- driving libcurl: its sockets in epoll, its timer ---- *
 * With hundreds of transfers waiting on receivers that do not answer, a
 * step costs only the sockets that are ready, not one poll of each. */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
    struct gpuq_webhooks *wh = userp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(wh->epfd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(wh->multi, fd, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.fd = fd};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    if (socketp || epoll_ctl(wh->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        epoll_ctl(wh->epfd, EPOLL_CTL_MOD, fd, &ev);
    curl_multi_assign(wh->multi, fd, wh);     /* known to epoll */
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
    struct gpuq_webhooks *wh = userp;
    (void)multi;
    wh->timer_at_us = timeout_ms < 0 ? -1 : gpuq_now_us() + timeout_ms * 1000;
    return 0;
}

/* Lets libcurl act on the ready sockets and on its timer. */
static void drive(struct gpuq_webhooks *wh, int64_t now_us) {
    struct epoll_event ev[64];
    int still, n = epoll_wait(wh->epfd, ev, 64, 0);
    for (int i = 0; i < n; i++) {
        uint32_t e = ev[i].events;
        int flags = (e & EPOLLIN ? CURL_CSELECT_IN : 0) | (e & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                    (e & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(wh->multi, ev[i].data.fd, flags, &still);
    }
    if (wh->timer_at_us >= 0 && wh->timer_at_us <= now_us) {
        wh->timer_at_us = -1;
        curl_multi_socket_action(wh->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    }
}

/* ---- the table ---- */

struct gpuq_webhooks *gpuq_webhooks_create(const struct gpuq_webhook_opts *o, char *err,
                                           size_t errlen) {
    struct gpuq_webhooks *wh = calloc(1, sizeof(*wh));
    if (!wh || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(wh->multi = curl_multi_init()) ||
        (wh->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        snprintf(err, errlen, "cannot start libcurl");
        if (wh && wh->multi) curl_multi_cleanup(wh->multi);
        free(wh);
        return NULL;
    }
    wh->timer_at_us = -1;
    curl_multi_setopt(wh->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(wh->multi, CURLMOPT_SOCKETDATA, wh);
    curl_multi_setopt(wh->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(wh->multi, CURLMOPT_TIMERDATA, wh);
    wh->max_attempts = o->max_attempts;
    wh->backoff_ms = o->backoff_ms;
    wh->timeout_ms = o->timeout_ms;
    wh->per_host = o->per_host;
    wh->next_due_us = INT64_MAX;
    for (int i = 0; i < MAX_HELD; i++) {
        wh->slots[i].wh = wh;
        wh->free_slots[wh->n_free++] = MAX_HELD - 1 - i;
    }
    if (o->n_allow > 0 && !(wh->allow = calloc((size_t)o->n_allow, sizeof(*wh->allow)))) {
        snprintf(err, errlen, "out of memory");
        gpuq_webhooks_destroy(wh);
        return NULL;
    }
    for (; wh->n_allow < o->n_allow; wh->n_allow++)
        if (gpuq_cidr_parse(o->allow[wh->n_allow], &wh->allow[wh->n_allow]) != 0) {
            snprintf(err, errlen, "--webhook-allow '%s': not an address range such as 10.0.0.0/8 "
                     "or fd00::/8", o->allow[wh->n_allow]);
            gpuq_webhooks_destroy(wh);
            return NULL;
        }
    if (o->secret) {
        const char *b64 = o->secret + 6;   /* after whsec_ */
        size_t n = strlen(b64), pad = 0;
        while (pad < n && b64[n - 1 - pad] == '=') pad++;
        int len = n % 4 == 0 && n / 4 * 3 <= sizeof(wh->key)
                  ? EVP_DecodeBlock(wh->key, (const unsigned char *)b64, (int)n) : -1;
        if (len <= (int)pad) {
            snprintf(err, errlen, "--webhook-secret: the part after whsec_ is not base64");
            gpuq_webhooks_destroy(wh);
            return NULL;
        }
        wh->key_len = (size_t)len - pad;
        wh->has_key = 1;
    }
    return wh;
}

/* The count of busy transfers to host, in the host table. Hosts with none
 * stay in the table until it is half full; then it is built again. */
static int *host_busy(struct gpuq_webhooks *wh, uint64_t host) {
    size_t i = host & (HOSTS - 1);
    while (wh->hosts[i].host && wh->hosts[i].host != host) i = (i + 1) & (HOSTS - 1);
    if (wh->hosts[i].host) return &wh->hosts[i].busy;
    if (++wh->n_hosts > HOSTS / 2) {
        memset(wh->hosts, 0, sizeof(wh->hosts));
        wh->n_hosts = 0;
        for (int k = 0; k < MAX_HELD; k++) {
            const struct slot *s = &wh->slots[k];
            if (s->state == LOADING || s->state == IN_FLIGHT) (*host_busy(wh, s->host))++;
        }
        return host_busy(wh, host);
    }
    wh->hosts[i].host = host;
    return &wh->hosts[i].busy;
}

/* Ends the transfer, if any, and lets go of the body (and the job unless
 * keep_job). */
static void end_attempt(struct gpuq_webhooks *wh, struct slot *s, int keep_job) {
    if (s->easy) {
        curl_multi_remove_handle(wh->multi, s->easy);
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
        wh->running--;
    }
    if (s->state == LOADING || s->state == IN_FLIGHT) {
        (*host_busy(wh, s->host))--;
        wh->busy--;
        wh->busy_bytes -= s->size;
        wh->freed++;
        wh->rescan = 1;
    }
    curl_slist_free_all(s->headers);
    s->headers = NULL;
    free(s->body);
    s->body = NULL;
    if (!keep_job) {
        free(s->job);
        s->job = NULL;
        s->d.job = (struct gpuq_str){NULL, 0};
    }
}

static void clear(struct gpuq_webhooks *wh, struct slot *s) {
    end_attempt(wh, s, 0);
    free(s->url);
    wh->held--;
    wh->finished -= s->state == FINISHED;
    wh->freed++;
    wh->free_slots[wh->n_free++] = (int)(s - wh->slots);
    memset(s, 0, sizeof(*s));
    s->wh = wh;
}

void gpuq_webhooks_destroy(struct gpuq_webhooks *wh) {
    if (!wh) return;
    gpuq_webhooks_forget_all(wh);
    if (wh->multi) curl_multi_cleanup(wh->multi);
    close(wh->epfd);
    curl_global_cleanup();
    free(wh->allow);
    free(wh);
}

int gpuq_webhooks_held(const struct gpuq_webhooks *wh) {
    return wh->held;
}

int gpuq_webhooks_room(const struct gpuq_webhooks *wh) {
    int held = MAX_HELD - wh->held, slots = MAX_TRANSFERS - wh->busy;
    return held < slots ? held : slots;
}

uint64_t gpuq_webhooks_freed(const struct gpuq_webhooks *wh) {
    return wh->freed;
}

int gpuq_webhooks_idle_ms(const struct gpuq_webhooks *wh, int64_t now_us, int max_ms) {
    if (wh->busy > 0 || wh->finished > 0 || wh->rescan || wh->next_due_us <= now_us) return 0;
    int64_t ms = wh->next_due_us == INT64_MAX ? max_ms : (wh->next_due_us - now_us + 999) / 1000;
    return ms < max_ms ? (int)ms : max_ms;
}

int gpuq_webhooks_ids(const struct gpuq_webhooks *wh, int q, int loading, const char **ids, int max) {
    int n = 0;
    for (int i = 0; i < MAX_HELD && n < max; i++) {
        const struct slot *s = &wh->slots[i];
        if (s->state != FREE && s->d.queue == q && (!loading || s->state == LOADING))
            ids[n++] = s->d.entry_id;
    }
    return n;
}

static int can_start(struct gpuq_webhooks *wh, const struct slot *s) {
    if (wh->busy >= MAX_TRANSFERS || (wh->busy > 0 && wh->busy_bytes + s->size > BODY_BUDGET)) return 0;
    return *host_busy(wh, s->host) < wh->per_host;
}

static void take_slot(struct gpuq_webhooks *wh, struct slot *s, enum state state) {
    s->state = state;
    (*host_busy(wh, s->host))++;
    wh->busy++;
    wh->busy_bytes += s->size;
}

/* Why a delivery cannot be made at all: it finishes undelivered at once. */
static void give_up(struct slot *s, const char *why) {
    snprintf(s->d.error, sizeof(s->d.error), "%s", why);
}

static void finish(struct gpuq_webhooks *wh, struct slot *s) {
    s->state = FINISHED;
    wh->finished++;
}

static void wait_until(struct gpuq_webhooks *wh, struct slot *s, int64_t at_us) {
    s->state = WAITING;
    s->next_at_us = at_us;
    if (at_us < wh->next_due_us) wh->next_due_us = at_us;
}

/* ---- attempts ---- */

static size_t discard(char *p, size_t size, size_t n, void *ud) {
    (void)p, (void)ud;
    return size * n;
}

static char *dup_bytes(const char *p, size_t n) {
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, p, n);
        d[n] = '\0';
    }
    return d;
}

static int add_header(struct slot *s, const char *name, const char *value) {
    char line[2048];
    if ((size_t)snprintf(line, sizeof(line), "%s: %s", name, value) >= sizeof(line)) return -1;
    struct curl_slist *l = curl_slist_append(s->headers, line);
    if (!l) return -1;
    s->headers = l;
    return 0;
}

/* Builds the body and headers from entry e and starts the transfer (the
 * slot is taken). Returns 0; -1 when memory ran out (a failed attempt); 1
 * when the entry cannot be delivered at all (finished). */
static int start(struct gpuq_webhooks *wh, struct slot *s, const struct gpuq_entry *e) {
    struct gpuq_str id = gpuq_entry_field(e, "id"), format = gpuq_entry_field(e, "format"),
                    result = gpuq_entry_field(e, "result"), job = gpuq_entry_field(e, "job");
    int msgpack = format.len == 7 && memcmp(format.ptr, "msgpack", 7) == 0, rc = -1;
    char trace[56], ts[24], sig[128], *hid = NULL;
    if (!id.ptr || !result.ptr) {
        give_up(s, "the delivery entry has no id or no result");
        return 1;
    }
    if (job.ptr && !(s->job = dup_bytes(job.ptr, job.len))) return -1;
    s->d.job = (struct gpuq_str){s->job, s->job ? job.len : 0};
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (!gpuq_msgpack_sane(result.ptr, result.len) ||
        msgpack_unpack_next(&u, result.ptr, result.len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != result.len) {
        msgpack_unpacked_destroy(&u);
        give_up(s, "the delivery entry's result is not one msgpack value");
        return 1;
    }
    gpuq_webhook_traceparent_of(&u.data, trace);
    if (msgpack) {
        s->body = dup_bytes(result.ptr, result.len);
        s->body_len = result.len;
    } else {
        s->body = gpuq_json_from_object(&u.data, &s->body_len);
    }
    msgpack_unpacked_destroy(&u);
    long long now = (long long)time(NULL);
    snprintf(ts, sizeof(ts), "%lld", now);
    if (!s->body || !(hid = gpuq_webhook_header_value(id.ptr, id.len))) goto out;
    if (strlen(hid) > 1536) {
        give_up(s, "the job id is too long for a header");
        rc = 1;
        goto out;
    }
    if (add_header(s, "Content-Type", msgpack ? "application/msgpack" : "application/json") ||
        add_header(s, "webhook-id", hid) || add_header(s, "webhook-timestamp", ts) ||
        (trace[0] && add_header(s, "traceparent", trace)) || add_header(s, "Expect", ""))
        goto out;
    if (!wh->has_key && !wh->told_unsigned) {
        wh->told_unsigned = 1;
        log_info("no --webhook-secret: webhooks are sent unsigned (receivers cannot check them)");
    }
    if (wh->has_key && (gpuq_webhook_sign(wh->key, wh->key_len, hid, now, s->body, s->body_len, sig,
                                          sizeof(sig)) != 0 || add_header(s, "webhook-signature", sig)))
        goto out;
    if (!(s->easy = curl_easy_init())) goto out;
    curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
    curl_easy_setopt(s->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(s->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(s->easy, CURLOPT_PROXY, "");      /* the rules judge the receiver, not a proxy */
    curl_easy_setopt(s->easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(s->easy, CURLOPT_OPENSOCKETDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body_len);
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)wh->timeout_ms);
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "gpuq/" GPUQ_VERSION);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
    if (curl_multi_add_handle(wh->multi, s->easy) != CURLM_OK) {
        curl_easy_cleanup(s->easy);
        s->easy = NULL;
        goto out;
    }
    wh->running++;
    s->refused[0] = '\0';
    s->state = IN_FLIGHT;
    s->d.attempts++;
    rc = 0;
out:
    free(hid);
    return rc;
}

/* After a failed attempt: give up, or wait 1x, 2x, 4x ... the base (at most
 * 64x), with +-20% jitter, or longer if the server said Retry-After. */
static void failed(struct gpuq_webhooks *wh, struct slot *s, int64_t now_us, long retry_after_s) {
    if (s->d.attempts >= wh->max_attempts) {
        end_attempt(wh, s, 1);
        finish(wh, s);
        return;
    }
    int shift = s->d.attempts - 1 < 6 ? s->d.attempts - 1 : 6;
    double delay_ms = (double)(wh->backoff_ms << shift) * (0.8 + 0.4 * rand() / (double)RAND_MAX);
    if (retry_after_s > 0 && retry_after_s * 1000.0 > delay_ms)
        delay_ms = retry_after_s < 3600 ? retry_after_s * 1000.0 : 3600000.0;
    end_attempt(wh, s, 0);
    wait_until(wh, s, now_us + (int64_t)(delay_ms * 1000));
}

/* Starts the attempt of a slot already taken; on failure, the attempt
 * counts as failed. */
static void attempt(struct gpuq_webhooks *wh, struct slot *s, const struct gpuq_entry *e, int64_t now_us) {
    int rc = start(wh, s, e);
    if (rc == 1) {
        end_attempt(wh, s, 1);
        finish(wh, s);
    } else if (rc != 0) {
        s->d.attempts++;
        snprintf(s->d.error, sizeof(s->d.error), "could not start the request (out of memory)");
        s->state = IN_FLIGHT;   /* the slot is still taken: failed() lets it go */
        failed(wh, s, now_us, 0);
    }
}

/* The host a URL reaches, as libcurl parses it: a hash of scheme://host:port.
 * Returns 0, or -1 when libcurl cannot parse the URL. */
static int url_host(const char *url, uint64_t *out) {
    CURLU *u = curl_url();
    char *parts[3] = {NULL, NULL, NULL};
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &parts[0], 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &parts[1], 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &parts[2], CURLU_DEFAULT_PORT) == CURLUE_OK) {
        uint64_t h = 1469598103934665603ULL;    /* FNV-1a; the host without case */
        for (int i = 0; i < 3; i++)
            for (const char *p = parts[i]; *p; p++)
                h = (h ^ (unsigned char)(*p | (i == 1 ? 0x20 : 0))) * 1099511628211ULL;
        *out = h ? h : 1;     /* 0 marks an empty place in the host table */
        rc = 0;
    }
    for (int i = 0; i < 3; i++) curl_free(parts[i]);
    curl_url_cleanup(u);
    return rc;
}

int gpuq_webhooks_holds(const struct gpuq_webhooks *wh, int q, struct gpuq_str id) {
    for (int i = 0; i < MAX_HELD; i++) {
        const struct slot *s = &wh->slots[i];
        if (s->state != FREE && s->d.queue == q && strlen(s->d.entry_id) == id.len &&
            memcmp(s->d.entry_id, id.ptr, id.len) == 0)
            return 1;
    }
    return 0;
}

void gpuq_webhooks_attach(struct gpuq_webhooks *wh, const char *id, const struct gpuq_entry *e,
                          int64_t now_us) {
    struct slot *s = (struct slot *)(id - offsetof(struct slot, d.entry_id));
    if (s->state == LOADING) attempt(wh, s, e, now_us);
}

int gpuq_webhooks_add(struct gpuq_webhooks *wh, const struct gpuq_entry *e, int64_t now_us) {
    if (wh->n_free == 0) return -1;
    struct slot *s = &wh->slots[wh->free_slots[--wh->n_free]];
    if (e->id.len >= sizeof(s->d.entry_id)) abort();    /* stream ids are at most 41 bytes */
    wh->held++;
    s->d.queue = e->queue;
    memcpy(s->d.entry_id, e->id.ptr, e->id.len);
    s->d.entry_id[e->id.len] = '\0';
    struct gpuq_str url = gpuq_entry_field(e, "url"), job = gpuq_entry_field(e, "job"),
                    result = gpuq_entry_field(e, "result");
    s->size = result.len;
    if (url.ptr) s->url = dup_bytes(url.ptr, url.len);
    if (!s->url || url_host(s->url, &s->host) != 0) {
        /* nowhere to deliver to; the dead letter keeps the job */
        s->job = job.ptr ? dup_bytes(job.ptr, job.len) : NULL;
        s->d.job = (struct gpuq_str){s->job, s->job ? job.len : 0};
        give_up(s, "the callback URL is missing or not usable");
        finish(wh, s);
    } else if (can_start(wh, s)) {
        take_slot(wh, s, LOADING);
        attempt(wh, s, e, now_us);
    } else {
        wait_until(wh, s, now_us);
    }
    s->d.url = (struct gpuq_str){s->url, s->url ? strlen(s->url) : 0};
    return 0;
}

static int by_due(const void *a, const void *b) {
    const struct slot *x = *(struct slot *const *)a, *y = *(struct slot *const *)b;
    return x->next_at_us < y->next_at_us ? -1 : x->next_at_us > y->next_at_us;
}

int gpuq_webhooks_due(struct gpuq_webhooks *wh, int64_t now_us) {
    if (!wh->rescan && wh->next_due_us > now_us) return 0;
    struct slot **due = wh->due;
    int n = 0, loading = 0;
    wh->rescan = 0;
    wh->next_due_us = INT64_MAX;
    for (int i = 0; i < MAX_HELD; i++) {
        struct slot *s = &wh->slots[i];
        if (s->state != WAITING) continue;
        if (s->next_at_us <= now_us) due[n++] = s;
        else if (s->next_at_us < wh->next_due_us) wh->next_due_us = s->next_at_us;
    }
    qsort(due, (size_t)n, sizeof(due[0]), by_due);      /* the longest overdue first */
    for (int i = 0; i < n && wh->busy < MAX_TRANSFERS; i++)
        if (can_start(wh, due[i])) {
            take_slot(wh, due[i], LOADING);
            loading++;
        }
    return loading;
}

void gpuq_webhooks_loaded(struct gpuq_webhooks *wh) {
    for (int i = 0; i < MAX_HELD; i++)
        if (wh->slots[i].state == LOADING) clear(wh, &wh->slots[i]);
}

static void finish_transfer(struct gpuq_webhooks *wh, CURL *easy, CURLcode rc, int64_t now_us) {
    struct slot *s = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&s);
    long status = 0;
    curl_off_t retry_after = 0;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after);
    }
    s->d.status = status;
    if (rc == CURLE_OK && status >= 200 && status < 300) {
        s->d.delivered = 1;
        end_attempt(wh, s, 0);
        finish(wh, s);
        return;
    }
    if (rc != CURLE_OK && s->refused[0]) {
        snprintf(s->d.error, sizeof(s->d.error), "address not allowed: %s (--webhook-allow opens it)",
                 s->refused);
        end_attempt(wh, s, 1);
        finish(wh, s);
        return;
    }
    if (rc != CURLE_OK)
        snprintf(s->d.error, sizeof(s->d.error), "%s", curl_easy_strerror(rc));
    else
        snprintf(s->d.error, sizeof(s->d.error), "HTTP status %ld", status);
    failed(wh, s, now_us, (status == 429 || status == 503) ? (long)retry_after : 0);
}

int gpuq_webhooks_pump(struct gpuq_webhooks *wh, int64_t now_us, struct gpuq_delivery **out,
                       int max) {
    drive(wh, now_us);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(wh->multi, &left)))
        if (msg->msg == CURLMSG_DONE) finish_transfer(wh, msg->easy_handle, msg->data.result, now_us);
    int n = 0;
    for (int i = 0; i < MAX_HELD && n < max && n < wh->finished; i++)
        if (wh->slots[i].state == FINISHED) out[n++] = &wh->slots[i].d;
    return n;
}

void gpuq_webhooks_forget(struct gpuq_webhooks *wh, struct gpuq_delivery *d) {
    clear(wh, (struct slot *)d);
}

void gpuq_webhooks_forget_all(struct gpuq_webhooks *wh) {
    for (int i = 0; i < MAX_HELD; i++)
        if (wh->slots[i].state != FREE) clear(wh, &wh->slots[i]);
    wh->next_due_us = INT64_MAX;
    wh->rescan = 0;
}

int gpuq_webhooks_wait(struct gpuq_webhooks *wh, int timeout_ms) {
    if (wh->running <= 0) return 0;
    if (wh->timer_at_us >= 0) {
        int64_t ms = (wh->timer_at_us - gpuq_now_us() + 999) / 1000;
        if (ms < timeout_ms) timeout_ms = ms > 0 ? (int)ms : 0;
    }
    struct epoll_event ev;
    epoll_wait(wh->epfd, &ev, 1, timeout_ms);
    return 1;
}
