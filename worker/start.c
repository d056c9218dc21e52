/* start.c -- bringing a worker up (flags, backend, models, Redis, metrics)
 * and taking it down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/table.h"
#include "ops/twin.h"
#include "worker/log.h"
#include "worker/cache.h"
#include "worker/worker_int.h"

/* Loads the models, and each on the backend. A model the device cannot
 * take (out of memory, a family or shape its kernels do not serve) is
 * prepared on the CPU backend instead and its batches run there; the
 * other models' stay on the device. Any other failure ends the start. */
static int load_models(struct worker *w, char *err, size_t errlen) {
    w->models = calloc((size_t)w->cfg.n_models + 1, sizeof(*w->models));
    if (!w->models) return -1;
    for (int i = 0; i < w->cfg.n_models; i++) {
        const char *spec = w->cfg.models[i], *eq = strchr(spec, '=');
        char name[128], why[384];
        if (!eq || eq == spec || !eq[1] || (size_t)(eq - spec) >= sizeof(name)) {
            snprintf(err, errlen, "--model '%s': want NAME=PATH", spec);
            return -1;
        }
        snprintf(name, sizeof(name), "%.*s", (int)(eq - spec), spec);
        for (int j = 0; j < w->n_models; j++)
            if (strcmp(w->models[j].name, name) == 0) {
                snprintf(err, errlen, "--model: '%s' given twice", name);
                return -1;
            }
        struct gpuq_model *m = &w->models[w->n_models];
        if (gpuq_model_load(m, name, eq + 1, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "--model %s: %s", name, why);
            return -1;
        }
        w->n_models++;
        int rc = w->be.iface->model_load(&w->be, m);
        if (rc != 0 && ((rc != GPUQ_BE_NOMEM && rc != GPUQ_BE_UNSERVED) ||
                        w->be.iface->model_load == w->cpu.iface->model_load)) {
            snprintf(err, errlen, "--model %s: %s backend: %s", name, w->be.iface->name, w->be.errstr);
            return -1;
        }
        if (rc == 0) continue;
        log_warn("--model %s: not on the %s backend (%s): its jobs run on the CPU backend", name,
                 w->be.iface->name, w->be.errstr);
        m->on_cpu = 1;
        w->cpu.precision = w->be.precision;
        if (w->cpu.iface->model_load(&w->cpu, m) != 0) {
            snprintf(err, errlen, "--model %s: cpu backend: %s", name, w->cpu.errstr);
            return -1;
        }
    }
    return 0;
}

/* A device backend's ops against the CPU on small random inputs: an op
 * that disagrees, or fails, loses its kernel and is served by the CPU. */
static int check_twin(struct worker *w, char *err, size_t errlen) {
    if (w->be.iface->kind == GPUQ_BACKEND_CPU) return 0;
    struct gpuq_twin t;
    gpuq_twin_check(&w->be, &w->cpu, 0, &t);
    double worst = 0;
    for (int op = 0; op < GPUQ_OP_COUNT; op++) {
        if (t.failed & (1u << op)) {
            log_error("%s on %s disagrees with the CPU backend (error %.3g, tolerance %.3g%s%s): "
                      "served by the CPU backend", gpuq_op_name((enum gpuq_op)op),
                      w->be.iface->name, t.err[op], t.tol[op], t.why[0] ? "; " : "", t.why);
            if (gpuq_ops_to_cpu(&w->ops, (enum gpuq_op)op) != 0) {
                snprintf(err, errlen, "%s on the CPU backend: %s", gpuq_op_name((enum gpuq_op)op),
                         w->cpu.errstr);
                return -1;
            }
        } else if (t.err[op] > worst) {
            worst = t.err[op];
        }
    }
    log_info("start-up check: %s ops agree with the CPU backend (largest error %.3g)",
             t.failed ? "the other" : "all", worst);
    return 0;
}

/* For rediss://: the TLS context from --redis-ca, --redis-cert, --redis-key
 * and --redis-insecure, which is said loudly. Given without rediss://,
 * those are ignored, and that is said. */
static int setup_tls(struct worker *w, const struct gpuq_redis_url *url, char *err, size_t errlen) {
    const struct gpuq_config *c = &w->cfg;
    struct gpuq_tls_opts o = {.ca_file = c->redis_ca, .cert_file = c->redis_cert,
                              .key_file = c->redis_key, .insecure = (int)c->redis_insecure};
    if (!url->tls) {
        if (o.ca_file || o.cert_file || o.key_file || o.insecure)
            log_warn("--redis-ca, --redis-cert, --redis-key and --redis-insecure are for rediss:// "
                     "URLs: ignored for %s", url->path[0] ? "a unix socket" : "redis://");
        return 0;
    }
    if (!(w->tls = gpuq_tls_create(&o, err, errlen))) return -1;
    if (o.insecure)
        log_warn("--redis-insecure: Redis's TLS certificate and name are NOT verified: anyone on "
                 "the path can pose as Redis and read or change jobs and results");
    return 0;
}

static void log_summary(struct worker *w, const struct gpuq_redis_url *url) {
    log_info("gpuq %s worker %s: backend %s%s%s", GPUQ_VERSION, w->cfg.consumer, w->be.desc,
             w->be.note[0] ? "; " : "", w->be.note);
    if (w->be.precision != GPUQ_PREC_F32)
        log_info("precision %s for mlp and text encoders: GEMM weights and inputs rounded to it, "
                 "sums in f32", gpuq_precision_name(w->be.precision));
    char cpu_ops[128] = "";
    for (int op = 0; op < GPUQ_OP_COUNT; op++)
        if (!gpuq_ops_on_backend(&w->ops, (enum gpuq_op)op))
            snprintf(cpu_ops + strlen(cpu_ops), sizeof(cpu_ops) - strlen(cpu_ops), " %s",
                     gpuq_op_name((enum gpuq_op)op));
    if (cpu_ops[0]) log_info("ops on the CPU backend:%s", cpu_ops);
    for (int i = 0; i < w->n_models; i++) {
        char what[256];
        gpuq_model_describe(&w->models[i], what, sizeof what);
        log_info("model %s: %s", w->models[i].name, what);
    }
    if (w->cfg.metrics_addr) log_info("metrics on http://%s/metrics, /healthz, /readyz", w->cfg.metrics_addr);
    if (w->cfg.embed_cache_ttl > 0)
        log_info("embedding cache: results kept in Redis for %lld s (P:{Q}:cache:*)",
                 (long long)w->cfg.embed_cache_ttl);
    char queues[256] = "";
    for (int i = 0; i < w->cfg.n_queues; i++)
        snprintf(queues + strlen(queues), sizeof(queues) - strlen(queues), "%s%s", i ? "," : "",
                 w->cfg.queues[i]);
    log_info("serving %s on %s%s prefix %s: max-batch %lld rows, max-delay %lld us, max-inflight "
             "%lld rows, max-drain %lld ms, result-ttl %lld s", queues, url->path[0] ? url->path : url->host,
             url->tls ? (w->tls && w->cfg.redis_insecure ? " (TLS, unverified)" : " (TLS)") : "",
             w->cfg.prefix, (long long)w->cfg.max_batch, (long long)w->cfg.max_delay_us,
             (long long)w->cfg.max_inflight, (long long)w->cfg.max_drain_ms, (long long)w->cfg.result_ttl);
}

int gpuq_worker_start(struct worker *w, int argc, char **argv, char *err, size_t errlen) {
    struct gpuq_redis_url url;
    if (gpuq_config_parse(&w->cfg, argc, argv, err, errlen) != 0) return -1;
    if (w->cfg.help) return 0;
    static const char *levels[] = {"debug", "info", "warn", "error"};
    int level = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(w->cfg.log_level, levels[i]) == 0) level = i;
    if (level < 0) {
        snprintf(err, errlen, "--log-level '%s': want debug, info, warn or error", w->cfg.log_level);
        return -1;
    }
    gpuq_log_set_level((enum gpuq_log_level)level);
    if (strcmp(w->cfg.log_format, "text") != 0 && strcmp(w->cfg.log_format, "json") != 0) {
        snprintf(err, errlen, "--log-format '%s': want text or json", w->cfg.log_format);
        return -1;
    }
    gpuq_log_set_json(strcmp(w->cfg.log_format, "json") == 0);
    if (gpuq_redis_url_parse(&url, w->cfg.redis, err, errlen) != 0) return -1;
    if (setup_tls(w, &url, err, errlen) != 0) return -1;
    gpuq_backend_cpu_threads((int)w->cfg.cpu_threads);
    struct gpuq_webhook_opts hook_opts = {
        .secret = w->cfg.webhook_secret, .max_attempts = (int)w->cfg.max_attempts,
        .backoff_ms = w->cfg.webhook_backoff_ms, .timeout_ms = w->cfg.webhook_timeout_ms,
        .per_host = (int)w->cfg.webhook_per_host, .allow = w->cfg.webhook_allow,
        .n_allow = w->cfg.n_webhook_allow};
    if (!(w->hooks = gpuq_webhooks_create(&hook_opts, err, errlen))) return -1;
    int precision = gpuq_precision_from_name(w->cfg.precision);
    if (precision < 0) {
        snprintf(err, errlen, "--precision '%s': want f32, bf16 or f16", w->cfg.precision);
        return -1;
    }
    if (gpuq_backend_create(&w->be, w->cfg.backend, (int)w->cfg.device, err, errlen) != 0) return -1;
    const char *fault = getenv("GPUQ_FAULT");    /* tests: a device that fails */
    if (fault && *fault && gpuq_backend_fault(&w->be, fault, err, errlen) != 0) return -1;
    w->be.precision = (enum gpuq_precision)precision;
    if (gpuq_backend_cpu_init(&w->cpu) != 0) return -1;
    if (load_models(w, err, errlen) != 0) return -1;
    w->ops = (struct gpuq_ops){.be = &w->be, .cpu = &w->cpu, .models = w->models,
                               .n_models = w->n_models, .max_result_bytes = w->cfg.max_result_bytes};
    if (gpuq_ops_init(&w->ops, (int)w->cfg.max_batch) != 0) return -1;
    /* buffers are sized for the ops the device kept */
    int rc = w->be.iface->reserve ? w->be.iface->reserve(&w->be, (int)w->cfg.max_batch) : 0;
    if (rc == GPUQ_BE_NOMEM) {
        log_warn("%s backend: no room to size buffers for --max-batch %lld (%s): batches that do "
                 "not fit will run in parts", w->be.iface->name, (long long)w->cfg.max_batch,
                 w->be.errstr);
    } else if (rc != 0) {
        snprintf(err, errlen, "%s backend: cannot size buffers for --max-batch %lld: %s",
                 w->be.iface->name, (long long)w->cfg.max_batch, w->be.errstr);
        return -1;
    }
    /* every job brings at least one row, so rows bound the jobs held */
    w->n_slots = (int)(w->cfg.max_inflight + w->cfg.max_batch);
    w->slots = calloc((size_t)w->n_slots, sizeof(*w->slots));
    w->free_slots = calloc((size_t)w->n_slots, sizeof(*w->free_slots));
    w->done = calloc((size_t)w->n_slots, sizeof(*w->done));
    w->lookups = calloc((size_t)w->n_slots, sizeof(*w->lookups));
    w->sending = calloc((size_t)w->n_slots, sizeof(*w->sending));
    w->entries = calloc((size_t)w->cfg.max_batch, sizeof(*w->entries));
    w->pieces = calloc((size_t)w->cfg.max_batch, sizeof(*w->pieces));
    if (!w->slots || !w->free_slots || !w->done || !w->lookups || !w->sending || !w->entries || !w->pieces ||
        gpuq_sched_init(&w->sched, w->cfg.max_batch, w->cfg.max_batch_tokens, w->cfg.max_delay_us, w->cfg.max_inflight,
                        w->n_slots) != 0)
        return -1;
    gpuq_sched_set_drain(&w->sched, w->cfg.max_drain_ms * 1000);
    for (int i = 0; i < w->n_slots; i++) w->free_slots[w->n_free++] = &w->slots[w->n_slots - 1 - i];
    if (gpuq_stream_init(&w->st, &url, w->tls, w->cfg.prefix, w->cfg.queues, w->cfg.n_queues,
                         w->cfg.consumer) != 0)
        return -1;
    if (w->cfg.embed_cache_ttl > 0) {   /* cached rows are named by what made them */
        if (!(w->salts = calloc((size_t)w->n_models + 1, sizeof(*w->salts)))) return -1;
        for (int i = 0; i < w->n_models; i++) {
            char fp[65];
            if (gpuq_cache_fingerprint(strchr(w->cfg.models[i], '=') + 1, fp) != 0) {
                snprintf(err, errlen, "--model %s: cannot read its files to name its cached results",
                         w->models[i].name);
                return -1;
            }
            snprintf(w->salts[i], sizeof(w->salts[i]), "%s:%s", fp, gpuq_precision_name(w->be.precision));
        }
    }
    if (!(w->down_told = calloc((size_t)w->cfg.n_queues, 1)) ||
        !(w->rescan = calloc((size_t)w->cfg.n_queues, 1)))
        return -1;
    if (gpuq_stream_connect(&w->st, 2000) != 0) {
        char where[300];
        snprintf(err, errlen, "cannot use Redis at %s: %s", gpuq_redis_url_where(&url, where, sizeof(where)),
                 w->st.errstr);
        return -1;
    }
    if (w->cfg.metrics_addr) {
        const char **models = calloc((size_t)w->n_models + 1, sizeof(*models));
        if (!models) return -1;
        for (int i = 0; i < w->n_models; i++) models[i] = w->models[i].name;
        w->metrics = gpuq_metrics_create(w->cfg.queues, w->cfg.n_queues, models, w->n_models,
                                         w->be.iface->name, w->be.desc);
        free(models);
        if (!w->metrics) return -1;
        if (gpuq_metrics_serve(w->metrics, w->cfg.metrics_addr, err, errlen) != 0) return -1;
        gpuq_metrics_ready(w->metrics, 1);
    }
    msgpack_sbuffer_init(&w->sb);
    w->pending_queue = 0;   /* a restarted worker with a fixed --consumer finishes its own */
    w->pending_end = w->cfg.n_queues;
    snprintf(w->pending_from, sizeof(w->pending_from), "0");
    log_summary(w, &url);
    /* injected faults are meant for the jobs */
    return fault && *fault ? 0 : check_twin(w, err, errlen);
}

void gpuq_worker_finish(struct worker *w) {
    for (int i = 0; i < w->n_models; i++) {
        if (w->be.iface) w->be.iface->model_free(&w->be, &w->models[i]);
        gpuq_model_free(&w->models[i]);
    }
    free(w->models);
    gpuq_ops_free(&w->ops);
    gpuq_backend_destroy(&w->be);
    gpuq_backend_destroy(&w->cpu);
    gpuq_stream_free(&w->st);
    gpuq_tls_destroy(w->tls);
    gpuq_sched_free(&w->sched);
    gpuq_webhooks_destroy(w->hooks);
    gpuq_metrics_destroy(w->metrics);
    msgpack_sbuffer_destroy(&w->sb);
    gpuq_pool_free(&w->pool);
    free(w->slots);
    free(w->free_slots);
    free(w->lookups);
    free(w->down_told);
    free(w->salts);
    free(w->rescan);
    free(w->done);
    free(w->sending);
    free(w->entries);
    free(w->pieces);
    gpuq_config_free(&w->cfg);
}

