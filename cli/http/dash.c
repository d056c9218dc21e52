/* dash.c -- the dashboard: its page (dashboard.html, compiled in as a
 * string at build time) and the JSON it reads: the queues (backlog,
 * pending, rate, dead letters, webhook deliveries owed), the live workers,
 * and the dead letters, with retry (as `gpuq dead retry`) and delete. The
 * page sends the key as a bearer header from fetch(), never a cookie, and
 * changes need a write key and a JSON body: no other site can make a
 * browser send either. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http/dashboard_html.h"
#include "cli/http/http.h"
#include "queue/client.h"
#include "queue/dead.h"
#include "queue/json.h"
#include "worker/clock.h"

void gpuq_http_dash_page(struct gpuq_http_req *r) {
    char *page = malloc(sizeof(gpuq_http_dashboard_html));
    if (!page) {
        gpuq_http_fail(r, 500, "internal", "out of memory");
        return;
    }
    memcpy(page, gpuq_http_dashboard_html, sizeof(gpuq_http_dashboard_html));
    gpuq_http_answer(r, 200, "text/html; charset=utf-8", page, sizeof(gpuq_http_dashboard_html) - 1);
}

/* The queues the front door serves: --queue, the routes' and the keys'. */
static json_t *queues_served(struct gpuq_http *srv) {
    json_t *names = json_array(), *seen = json_object();
    const char *all[GPUQ_HTTP_ROUTE_COUNT + 1];
    int n = 0;
    all[n++] = srv->cfg.target.queue;
    for (int i = 0; i < GPUQ_HTTP_ROUTE_COUNT; i++)
        if (srv->cfg.route_queue[i]) all[n++] = srv->cfg.route_queue[i];
    for (int i = 0; i < n + srv->keys.n; i++) {
        const char *q = i < n ? all[i] : srv->keys.keys[i - n].queue;
        if (!q[0] || json_object_get(seen, q)) continue;
        json_object_set_new(seen, q, json_true());
        json_array_append_new(names, json_string(q));
    }
    json_decref(seen);
    return names;
}

/* Jobs read per second since the last look at queue (0 on the first). */
static double rate(struct gpuq_http *srv, const char *queue, int64_t read) {
    double now = gpuq_mono_s(), result = 0;
    pthread_mutex_lock(&srv->lock);
    struct gpuq_http_rate *q = NULL;
    for (int i = 0; i < srv->n_rates; i++)
        if (!strcmp(srv->rates[i].queue, queue)) q = &srv->rates[i];
    if (!q && srv->n_rates < 64) {
        q = &srv->rates[srv->n_rates++];
        snprintf(q->queue, sizeof(q->queue), "%s", queue);
        q->read = read;
        q->t = now;
    }
    if (q) {
        if (now - q->t >= 0.5 && read >= q->read) {
            q->rate = (double)(read - q->read) / (now - q->t);
            q->read = read;
            q->t = now;
        }
        result = q->rate;
    }
    pthread_mutex_unlock(&srv->lock);
    return result;
}

static void overview(struct gpuq_http_req *r) {
    json_t *names = queues_served(r->srv), *queues = json_array(), *workers = json_array(), *name;
    size_t i;
    char err[256];
    json_array_foreach(names, i, name) {
        const char *q = json_string_value(name);
        struct gpuq_queue_stats st;
        struct gpuq_conn *c = gpuq_http_pool_get(r->srv->pool, q);
        int ok = c && gpuq_client_stats(c, r->srv->cfg.target.prefix, q, &st, err, sizeof(err)) == 0;
        gpuq_http_pool_put(r->srv->pool, q, c, !ok);
        if (!ok) {
            json_array_append_new(queues, json_pack("{s:s, s:s}", "name", q, "error", c ? err : "cannot reach Redis"));
            continue;
        }
        if (st.backlog < 0 && st.length >= 0) st.backlog = st.length;     /* no worker yet: no group */
        json_array_append_new(queues, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:i}", "name", q,
                                                "length", (json_int_t)st.length, "backlog", (json_int_t)st.backlog,
                                                "pending", (json_int_t)st.pending, "dead", (json_int_t)st.dead,
                                                "webhooks", (json_int_t)st.hooks, "rate", rate(r->srv, q, st.read),
                                                "consumers", st.n_consumers));
        json_t *live = gpuq_http_live_workers(r->srv, q), *w;
        size_t j;
        json_array_foreach(live, j, w) {
            json_object_set_new(w, "queue", json_string(q));
            json_array_append(workers, w);
        }
        json_decref(live);
    }
    json_decref(names);
    gpuq_http_answer_json(r, 200, json_pack("{s:o, s:o, s:{s:i, s:b}, s:I}", "queues", queues, "workers", workers,
                                            "front_door", "waiting", gpuq_waiter_count(r->srv->waiter), "redis",
                                            gpuq_waiter_up(r->srv->waiter), "time_ms",
                                            (json_int_t)(gpuq_now_us() / 1000)));
}

/* A dead letter's job as JSON: the job itself (msgpack or JSON bytes), or
 * its first bytes as text when it is neither or too large to show. */
static json_t *job_json(const struct gpuq_str *job) {
    json_t *j = NULL;
    if (job->len > 65536) return json_pack("{s:s, s:I}", "note", "too large to show", "bytes", (json_int_t)job->len);
    if (job->len && job->ptr[0] == '{') {
        j = json_loadb(job->ptr, job->len, 0, NULL);
    } else if (job->len) {
        size_t n;
        char *text = gpuq_json_from_msgpack(job->ptr, job->len, &n);
        if (text) j = json_loadb(text, n, 0, NULL);
        free(text);
    }
    return j ? j : json_stringn_nocheck(job->ptr, job->len < 512 ? job->len : 512);
}

static void add_dead(void *ud, const struct gpuq_dead *d) {
    json_t *list = ud, *error = NULL;
    size_t n;
    char *text = d->error.len ? gpuq_json_from_msgpack(d->error.ptr, d->error.len, &n) : NULL;
    if (text) error = json_loadb(text, n, 0, NULL);
    free(text);
    json_array_append_new(list, json_pack("{s:s%, s:o, s:I, s:o, s:s%}", "id", d->id.ptr, d->id.len, "error",
                                          error ? error : json_object(), "attempts", (json_int_t)d->attempts,
                                          "job", job_json(&d->job), "callback", d->callback.ptr ? d->callback.ptr : "",
                                          d->callback.ptr ? d->callback.len : 0));
}

/* The queue named by the request (?queue= or the body's "queue"), which
 * must be one the front door serves; NULL with the answer set. */
static const char *named_queue(struct gpuq_http_req *r, const char *name, json_t *names) {
    json_t *q;
    size_t i;
    if (!name) name = r->queue;
    json_array_foreach(names, i, q) if (!strcmp(json_string_value(q), name)) return json_string_value(q);
    gpuq_http_fail(r, 404, "not_found", "queue '%s' is not one this front door serves", name);
    return NULL;
}

static void dead_list(struct gpuq_http_req *r, json_t *names) {
    const char *q = named_queue(r, gpuq_http_query(r, "queue"), names);
    char err[256];
    if (!q) return;
    json_t *list = json_array();
    struct gpuq_conn *c = gpuq_http_pool_get(r->srv->pool, q);
    int n = c ? gpuq_dead_list(c, r->srv->cfg.target.prefix, q, "-", 100, add_dead, list, err, sizeof(err)) : -1;
    gpuq_http_pool_put(r->srv->pool, q, c, n < 0);
    if (n < 0) {
        json_decref(list);
        gpuq_http_fail(r, 503, "unavailable", "reading the dead letters: %s", c ? err : "cannot reach Redis");
        return;
    }
    gpuq_http_answer_json(r, 200, json_pack("{s:s, s:o}", "queue", q, "dead", list));
}

static void dead_change(struct gpuq_http_req *r, json_t *names, int retry) {
    json_t *body = json_loadb(r->body ? r->body : "", r->len, 0, NULL);
    const char *id = json_string_value(json_object_get(body, "id"));
    const char *q = named_queue(r, json_string_value(json_object_get(body, "queue")), names);
    char err[256];
    if (!q) goto out;
    if (r->srv->keys.n == 0) {
        gpuq_http_fail(r, 403, "forbidden", "retrying and deleting dead letters needs a write key "
                       "(start gpuq http with --api-key-file)");
        goto out;
    }
    if (!id || !*id || strlen(id) > 64) {
        gpuq_http_fail(r, 400, "bad_request", "want {\"queue\": Q, \"id\": the dead letter's entry id}");
        goto out;
    }
    struct gpuq_conn *c = gpuq_http_pool_get(r->srv->pool, q);
    long long done = !c ? -1 : retry ? gpuq_dead_retry(c, r->srv->cfg.target.prefix, q, id, err, sizeof(err))
                                     : gpuq_dead_purge(c, r->srv->cfg.target.prefix, q, id, err, sizeof(err));
    gpuq_http_pool_put(r->srv->pool, q, c, done < 0);
    if (done < 0) gpuq_http_fail(r, 503, "unavailable", "%s", c ? err : "cannot reach Redis");
    else if (done == 0) gpuq_http_fail(r, 404, "not_found", "no dead letter %s on %s%s", id, q, retry ? " with a job to put back" : "");
    else gpuq_http_answer_json(r, 200, json_pack("{s:s, s:s, s:s}", "queue", q, "id", id, "done", retry ? "retried" : "deleted"));
out:
    json_decref(body);
}

void gpuq_http_dash_api(struct gpuq_http_req *r) {
    json_t *names = queues_served(r->srv);
    if (!strcmp(r->path, "/api/overview") && !r->is_post) overview(r);
    else if (!strcmp(r->path, "/api/dead") && !r->is_post) dead_list(r, names);
    else if (!strcmp(r->path, "/api/dead/retry") && r->is_post) dead_change(r, names, 1);
    else if (!strcmp(r->path, "/api/dead/delete") && r->is_post) dead_change(r, names, 0);
    else gpuq_http_fail(r, 404, "not_found", "no route %s %s", r->is_post ? "POST" : "GET", r->path);
    json_decref(names);
}
