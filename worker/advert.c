/* advert.c -- a worker's presence in Redis: what it serves (models, backend,
 * batch sizes), written every two seconds to each queue's P:{Q}:workers hash
 * under its consumer name, so that front doors and dashboards can list the
 * live workers and the models they serve (docs/protocol.md, "Presence"). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "models/encoder/encoder.h"
#include "models/family.h"
#include "worker/clock.h"
#include "worker/worker_int.h"

#define EVERY_US 2000000    /* written this often */
#define LIVE_MS 10000       /* an entry is live this long after it was written */
#define KEEP_S 60           /* the hash outlives its last writer this long */

/* The op a model serves first, by what it can do: mlp, knn, embed,
 * rerank (a one-label classifier; classify too), classify, embed_sparse. */
static const char *op_of(const struct gpuq_model *m) {
    const struct gpuq_encoder *e = gpuq_model_encoder(m);
    return gpuq_model_can(m, GPUQ_CAP_MLP) ? "mlp" : gpuq_model_can(m, GPUQ_CAP_INDEX) ? "knn"
           : gpuq_model_can(m, GPUQ_CAP_EMBED) ? "embed" : gpuq_model_can(m, GPUQ_CAP_SPARSE) ? "embed_sparse"
           : e && e->n_labels == 1 ? "rerank" : "classify";
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* {"jobs", "p50", "p99"}: the enqueue-to-result latency in ms of the jobs
 * answered since the last entry (the last GPUQ_LATENCIES of them), then
 * forgotten; NULL when there were none. */
static json_t *latency(struct worker *w) {
    int64_t n = w->n_latency < GPUQ_LATENCIES ? w->n_latency : GPUQ_LATENCIES;
    if (n == 0) return NULL;
    int64_t *v = malloc((size_t)n * sizeof(*v));
    if (!v) return NULL;
    memcpy(v, w->latency_us, (size_t)n * sizeof(*v));
    qsort(v, (size_t)n, sizeof(*v), by_value);
    json_t *o = json_pack("{s:I, s:f, s:f}", "jobs", (json_int_t)w->n_latency, "p50", v[(n - 1) / 2] / 1e3, "p99",
                          v[(n * 99 + 99) / 100 - 1] / 1e3);
    free(v);
    w->n_latency = 0;
    return o;
}

/* The worker's description as JSON text (malloc'd), or NULL. */
static char *describe(struct worker *w, int64_t now_ms) {
    static int64_t started_ms;
    if (!started_ms) started_ms = now_ms;
    json_t *models = json_array(), *queues = json_array();
    for (int i = 0; i < w->n_models; i++) {
        const struct gpuq_model *m = &w->models[i];
        const struct gpuq_encoder *e = gpuq_model_encoder(m);
        json_t *o = json_pack("{s:s, s:s, s:s}", "name", m->name, "family", m->family->name, "op", op_of(m));
        if (e) {
            json_object_set_new(o, "dim", json_integer(e->scorer ? e->n_labels : e->mlm ? e->vocab : gpuq_encoder_dim(e)));
            json_object_set_new(o, "max_length", json_integer(e->max_length));
        } else if (gpuq_model_index(m)) {
            json_object_set_new(o, "dim", json_integer(gpuq_model_in_dim(m)));
            json_object_set_new(o, "rows", json_integer(gpuq_model_out_dim(m)));
        } else {
            json_object_set_new(o, "dim", json_integer(gpuq_model_out_dim(m)));
        }
        json_array_append_new(models, o);
    }
    for (int q = 0; q < w->cfg.n_queues; q++) json_array_append_new(queues, json_string(w->cfg.queues[q]));
    json_t *info = json_pack("{s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                             "consumer", w->cfg.consumer, "version", GPUQ_VERSION, "backend", w->be.desc,
                             "queues", queues, "models", models,
                             "max_batch", (json_int_t)w->cfg.max_batch,
                             "max_batch_tokens", (json_int_t)w->cfg.max_batch_tokens,
                             "jobs_ok", (json_int_t)w->n_ok, "jobs_failed", (json_int_t)w->n_failed,
                             "started_ms", (json_int_t)started_ms, "seen_ms", (json_int_t)now_ms, "expires_ms", (json_int_t)(now_ms + LIVE_MS));
    json_t *lat = latency(w);
    if (info && lat) json_object_set_new(info, "latency_ms", lat);
    else json_decref(lat);
    char *text = info ? json_dumps(info, JSON_COMPACT) : NULL;
    json_decref(info);
    return text;
}

int gpuq_worker_advertise(struct worker *w, int stop) {
    int64_t now = gpuq_now_us();
    if (!stop && now - w->last_advert_us < EVERY_US) return 0;
    w->last_advert_us = now;
    if (stop) return gpuq_stream_advertise(&w->st, NULL, 0, 0);
    char *text = describe(w, now / 1000);
    int result = text ? gpuq_stream_advertise(&w->st, text, strlen(text), KEEP_S) : 0;
    free(text);
    return result;
}
