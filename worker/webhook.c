/* webhook.c -- Standard Webhooks delivery on libcurl multi and OpenSSL. */
#include "worker/webhook.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/json.h"

#define MAX_DELIVERIES 64

enum state { FREE, WAITING, IN_FLIGHT, FINISHED };

struct slot {
    struct gpuq_delivery d;     /* first: the public view */
    enum state state;
    char *id, *url, *body, *job;
    size_t body_len, job_len;
    int msgpack;
    int64_t next_at_us;
    CURL *easy;
    struct curl_slist *headers;
};

struct gpuq_webhooks {
    CURLM *multi;
    unsigned char key[256];
    size_t key_len;
    int has_key;
    int max_attempts;
    int64_t backoff_ms, timeout_ms;
    int running;
    struct slot slots[MAX_DELIVERIES];
};

int gpuq_webhook_sign(const unsigned char *key, size_t key_len, const char *id, long long ts,
                      const char *body, size_t body_len, char *out, size_t cap) {
    char head[600];
    int n = snprintf(head, sizeof(head), "%s.%lld.", id, ts);
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t mac_len = 0;
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0), OSSL_PARAM_END};
    int ok = ctx && EVP_MAC_init(ctx, key, key_len, params) &&
             EVP_MAC_update(ctx, (const unsigned char *)head, (size_t)n) &&
             EVP_MAC_update(ctx, (const unsigned char *)body, body_len) &&
             EVP_MAC_final(ctx, mac, &mac_len, sizeof(mac));
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    char *b64 = ok ? gpuq_base64(mac, mac_len) : NULL;
    if (!b64) return -1;
    snprintf(out, cap, "v1,%s", b64);
    free(b64);
    return 0;
}

struct gpuq_webhooks *gpuq_webhooks_create(const char *secret, int max_attempts,
                                           int64_t backoff_ms, int64_t timeout_ms, char *err,
                                           size_t errlen) {
    struct gpuq_webhooks *wh = calloc(1, sizeof(*wh));
    if (!wh || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(wh->multi = curl_multi_init())) {
        snprintf(err, errlen, "cannot start libcurl");
        free(wh);
        return NULL;
    }
    wh->max_attempts = max_attempts;
    wh->backoff_ms = backoff_ms;
    wh->timeout_ms = timeout_ms;
    if (secret) {
        const char *b64 = secret + 6;   /* after whsec_ */
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

static void clear(struct gpuq_webhooks *wh, struct slot *s) {
    if (s->easy) {
        curl_multi_remove_handle(wh->multi, s->easy);
        curl_easy_cleanup(s->easy);
        wh->running--;
    }
    curl_slist_free_all(s->headers);
    free(s->id), free(s->url), free(s->body), free(s->job);
    memset(s, 0, sizeof(*s));
}

void gpuq_webhooks_destroy(struct gpuq_webhooks *wh) {
    if (!wh) return;
    gpuq_webhooks_forget_all(wh);
    if (wh->multi) curl_multi_cleanup(wh->multi);
    curl_global_cleanup();
    free(wh);
}

int gpuq_webhooks_held(const struct gpuq_webhooks *wh) {
    int n = 0;
    for (int i = 0; i < MAX_DELIVERIES; i++) n += wh->slots[i].state != FREE;
    return n;
}

int gpuq_webhooks_room(const struct gpuq_webhooks *wh) {
    return MAX_DELIVERIES - gpuq_webhooks_held(wh);
}

int gpuq_webhooks_holds(const struct gpuq_webhooks *wh, int q, struct gpuq_str id) {
    for (int i = 0; i < MAX_DELIVERIES; i++) {
        const struct slot *s = &wh->slots[i];
        if (s->state != FREE && s->d.queue == q && strlen(s->d.entry_id) == id.len &&
            memcmp(s->d.entry_id, id.ptr, id.len) == 0)
            return 1;
    }
    return 0;
}

int gpuq_webhooks_ids(const struct gpuq_webhooks *wh, int q, const char **ids, int max) {
    int n = 0;
    for (int i = 0; i < MAX_DELIVERIES && n < max; i++)
        if (wh->slots[i].state != FREE && wh->slots[i].d.queue == q) ids[n++] = wh->slots[i].d.entry_id;
    return n;
}

static char *dup_str(struct gpuq_str s) {
    char *p = malloc(s.len + 1);
    if (p) {
        memcpy(p, s.ptr, s.len);
        p[s.len] = '\0';
    }
    return p;
}

int gpuq_webhooks_add(struct gpuq_webhooks *wh, const struct gpuq_entry *e) {
    struct slot *s = NULL;
    for (int i = 0; i < MAX_DELIVERIES && !s; i++)
        if (wh->slots[i].state == FREE) s = &wh->slots[i];
    struct gpuq_str id = gpuq_entry_field(e, "id"), url = gpuq_entry_field(e, "url"),
                    format = gpuq_entry_field(e, "format"), result = gpuq_entry_field(e, "result"),
                    job = gpuq_entry_field(e, "job");
    if (!s || !id.ptr || !url.ptr || !result.ptr || e->id.len >= sizeof(s->d.entry_id)) return -1;
    s->msgpack = format.len == 7 && memcmp(format.ptr, "msgpack", 7) == 0;
    s->id = dup_str(id);
    s->url = dup_str(url);
    s->job = job.ptr ? dup_str(job) : NULL;
    s->job_len = job.len;
    if (s->msgpack) {
        s->body = malloc(result.len ? result.len : 1);
        if (s->body) memcpy(s->body, result.ptr, result.len);
        s->body_len = result.len;
    } else {
        s->body = gpuq_json_from_msgpack(result.ptr, result.len, &s->body_len);
    }
    if (!s->id || !s->url || !s->body || (job.ptr && !s->job)) {
        clear(wh, s);
        return -1;
    }
    s->d.queue = e->queue;
    snprintf(s->d.entry_id, sizeof(s->d.entry_id), "%.*s", (int)e->id.len, e->id.ptr);
    s->d.url = (struct gpuq_str){s->url, url.len};
    s->d.job = (struct gpuq_str){s->job, s->job_len};
    s->state = WAITING;
    s->next_at_us = 0;
    return 0;
}

static size_t discard(char *p, size_t size, size_t n, void *ud) {
    (void)p, (void)ud;
    return size * n;
}

/* Starts one attempt. Returns 0, or -1 (counted as a failed attempt). */
static int start(struct gpuq_webhooks *wh, struct slot *s) {
    char h[4][600];
    long long ts = (long long)time(NULL);
    snprintf(h[0], sizeof(h[0]), "Content-Type: application/%s", s->msgpack ? "msgpack" : "json");
    snprintf(h[1], sizeof(h[1]), "webhook-id: %s", s->id);
    snprintf(h[2], sizeof(h[2]), "webhook-timestamp: %lld", ts);
    strcpy(h[3], "webhook-signature: ");
    if (wh->has_key && gpuq_webhook_sign(wh->key, wh->key_len, s->id, ts, s->body, s->body_len,
                                         h[3] + strlen(h[3]), sizeof(h[3]) - strlen(h[3])) != 0)
        return -1;
    for (int i = 0; i < (wh->has_key ? 4 : 3); i++) {
        struct curl_slist *l = curl_slist_append(s->headers, h[i]);
        if (!l) return -1;
        s->headers = l;
    }
    if (!(s->easy = curl_easy_init())) return -1;
    curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
    curl_easy_setopt(s->easy, CURLOPT_PROTOCOLS_STR, "http,https");
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
        return -1;
    }
    wh->running++;
    s->state = IN_FLIGHT;
    s->d.attempts++;
    return 0;
}

/* After a failed attempt: give up, or wait 1x, 2x, 4x ... the base (at most
 * 64x), with +-20% jitter, or longer if the server said Retry-After. */
static void failed(struct gpuq_webhooks *wh, struct slot *s, int64_t now_us, long retry_after_s) {
    if (s->d.attempts >= wh->max_attempts) {
        s->state = FINISHED;
        return;
    }
    int shift = s->d.attempts - 1 < 6 ? s->d.attempts - 1 : 6;
    double delay_ms = (double)(wh->backoff_ms << shift) * (0.8 + 0.4 * rand() / (double)RAND_MAX);
    if (retry_after_s > 0 && retry_after_s * 1000.0 > delay_ms)
        delay_ms = retry_after_s < 3600 ? retry_after_s * 1000.0 : 3600000.0;
    s->next_at_us = now_us + (int64_t)(delay_ms * 1000);
    s->state = WAITING;
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
    curl_multi_remove_handle(wh->multi, easy);
    curl_easy_cleanup(easy);
    s->easy = NULL;
    curl_slist_free_all(s->headers);
    s->headers = NULL;
    wh->running--;
    s->d.status = status;
    if (rc == CURLE_OK && status >= 200 && status < 300) {
        s->d.delivered = 1;
        s->state = FINISHED;
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
    for (int i = 0; i < MAX_DELIVERIES; i++) {
        struct slot *s = &wh->slots[i];
        if (s->state == WAITING && s->next_at_us <= now_us && start(wh, s) != 0) {
            s->d.attempts++;
            snprintf(s->d.error, sizeof(s->d.error), "could not start the request");
            failed(wh, s, now_us, 0);
        }
    }
    int still;
    curl_multi_perform(wh->multi, &still);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(wh->multi, &left)))
        if (msg->msg == CURLMSG_DONE) finish_transfer(wh, msg->easy_handle, msg->data.result, now_us);
    int n = 0;
    for (int i = 0; i < MAX_DELIVERIES && n < max; i++)
        if (wh->slots[i].state == FINISHED) out[n++] = &wh->slots[i].d;
    return n;
}

void gpuq_webhooks_forget(struct gpuq_webhooks *wh, struct gpuq_delivery *d) {
    clear(wh, (struct slot *)d);
}

void gpuq_webhooks_forget_all(struct gpuq_webhooks *wh) {
    for (int i = 0; i < MAX_DELIVERIES; i++)
        if (wh->slots[i].state != FREE) clear(wh, &wh->slots[i]);
}

int gpuq_webhooks_wait(struct gpuq_webhooks *wh, int timeout_ms) {
    if (wh->running <= 0) return 0;
    int fds = 0;
    curl_multi_poll(wh->multi, NULL, 0, timeout_ms, &fds);
    return 1;
}
