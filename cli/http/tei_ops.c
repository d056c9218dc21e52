/* tei_ops.c -- text-embeddings-inference's /rerank, /predict and
 * /embed_sparse, as TEI's API shapes them, over the rerank, classify and
 * embed_sparse ops: each request one JSON job on the queue, its result
 * turned into TEI's answer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/http/http.h"
#include "queue/json.h"

/* The request body as a JSON object, or NULL with the answer set. */
static json_t *body_of(struct gpuq_http_req *r) {
    json_error_t jerr;
    json_t *body = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr);
    if (json_is_object(body)) return body;
    gpuq_http_fail(r, 422, "bad_request", body ? "the body must be a JSON object" : "the body is not JSON: %s "
                   "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
    json_decref(body);
    return NULL;
}

/* A TEI boolean field: 0/1, dflt when absent or null; -1 (answered) otherwise. */
static int flag(struct gpuq_http_req *r, const json_t *body, const char *name, int dflt) {
    const json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return dflt;
    if (json_is_boolean(v)) return json_is_true(v);
    gpuq_http_fail(r, 422, "bad_request", "'%s' must be true or false", name);
    return -1;
}

/* An array of n strings (n <= the request's input limit), or 0 with the answer set. */
static size_t strings(struct gpuq_http_req *r, const json_t *v, const char *what) {
    size_t i, n = json_array_size(v);
    const json_t *s;
    if (!json_is_array(v) || n == 0) {
        gpuq_http_fail(r, 422, "bad_request", "'%s' must be a non-empty array of strings", what);
        return 0;
    }
    if (n > (size_t)r->srv->cfg.max_inputs) {
        gpuq_http_fail(r, 413, "too_large", "'%s' holds %zu items, more than --max-inputs %lld", what, n,
                       r->srv->cfg.max_inputs);
        return 0;
    }
    json_array_foreach(v, i, s) if (!json_is_string(s)) {
        gpuq_http_fail(r, 422, "bad_request", "'%s' item %zu is not a string", what, i);
        return 0;
    }
    return n;
}

/* Puts the job {op, model, inputs, params} on the queue and waits for its
 * result (finish answers). Takes inputs and params. */
static void submit(struct gpuq_http_req *r, const char *op, const char *model, json_t *inputs, json_t *params,
                   void (*finish)(struct gpuq_http_req *r)) {
    gpuq_http_job_id(r->srv, r->wait.id, sizeof(r->wait.id));
    json_t *job = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:i, s:I}", "op", op, "model", model, "id", r->wait.id,
                            "reply_to", r->srv->reply_list, "inputs", inputs, "params", params, "result_ttl", 0,
                            "timeout_ms", (json_int_t)ceil(r->srv->cfg.request_timeout * 1000));
    /* as msgpack, so that the result comes back as msgpack too */
    char *text = job ? json_dumps(job, JSON_COMPACT) : NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (!text || gpuq_json_job_to_msgpack(text, strlen(text), &sb) != 0)
        gpuq_http_fail(r, 500, "internal", "out of memory");
    else
        gpuq_http_submit(r, "job", sb.data, sb.size, r->srv->cfg.request_timeout, finish);
    msgpack_sbuffer_destroy(&sb);
    free(text);
    json_decref(job);
}

/* The result, or NULL with the answer set (timed out, an error result, not a result). */
static struct gpuq_http_result *result_of(struct gpuq_http_req *r) {
    const char *code, *message;
    if (gpuq_http_result_missing(r)) return NULL;
    struct gpuq_http_result *res = gpuq_http_result_parse(r->wait.bytes, r->wait.len);
    int ok = gpuq_http_result_ok(res, &code, &message);
    if (ok > 0) return res;
    if (ok < 0) gpuq_http_fail(r, 424, "internal", "the worker's answer is not a result");
    else gpuq_http_fail_result(r, code, message);
    gpuq_http_result_free(res);
    return NULL;
}

static float f32_at(const void *p, int64_t i) {
    float f;
    memcpy(&f, (const char *)p + i * 4, 4);
    return f;
}

static int32_t i32_at(const void *p, int64_t i) {
    int32_t v;
    memcpy(&v, (const char *)p + i * 4, 4);
    return v;
}

/* ---- /rerank: {query, texts, raw_scores, return_text} -> [{index, score, text?}], best first ---- */

static void release(void *json) { json_decref(json); }

static void rerank_done(struct gpuq_http_req *r) {
    struct gpuq_http_result *res = result_of(r);
    const void *scores, *order;
    int64_t n[1], k[1];
    if (!res) return;
    if (gpuq_http_result_tensor(res, "scores", "f32", 1, n, &scores) != 0 ||
        gpuq_http_result_tensor(res, "order", "i32", 1, k, &order) != 0) {
        gpuq_http_fail(r, 424, "internal", "the worker's rerank result has no scores and order");
    } else {
        const json_t *texts = r->ctx;     /* the request's texts when return_text */
        json_t *out = json_array();
        for (int64_t i = 0; i < k[0]; i++) {
            int32_t at = i32_at(order, i);
            if (at < 0 || at >= n[0]) continue;
            json_t *o = json_pack("{s:i, s:f}", "index", (int)at, "score", (double)f32_at(scores, at));
            if (texts) json_object_set(o, "text", json_array_get(texts, (size_t)at));
            json_array_append_new(out, o);
        }
        gpuq_http_answer_json(r, 200, out);     /* takes out */
    }
    gpuq_http_result_free(res);
}

void gpuq_http_tei_rerank(struct gpuq_http_req *r) {
    static const char *const ops[] = {"rerank", NULL};
    json_t *body = body_of(r);
    char picked[256];
    const char *model;
    if (!body) return;
    const json_t *query = json_object_get(body, "query"), *texts = json_object_get(body, "texts"),
                 *name = json_object_get(body, "model");
    int raw = flag(r, body, "raw_scores", 0), ret = raw < 0 ? -1 : flag(r, body, "return_text", 0);
    if (raw < 0 || ret < 0) goto out;
    if (!json_is_string(query)) {
        gpuq_http_fail(r, 422, "bad_request", "'query' is required: a string");
        goto out;
    }
    if (!strings(r, texts, "texts")) goto out;
    if (!(model = json_is_string(name) ? json_string_value(name) : gpuq_http_pick_model_for(r, ops, picked, sizeof picked)))
        goto out;
    if (ret) {
        r->ctx = json_incref((json_t *)texts);
        r->ctx_free = release;
    }
    submit(r, "rerank", model, json_pack("{s:O, s:O}", "query", query, "documents", texts),
           json_pack("{s:b}", "raw_scores", raw), rerank_done);
out:
    json_decref(body);
}

/* ---- /predict: {inputs, raw_scores} -> [{label, score}] best first, per input ---- */

static void predict_done(struct gpuq_http_req *r) {
    struct gpuq_http_result *res = result_of(r);
    const void *scores;
    int64_t shape[2];
    json_t *labels = res ? gpuq_http_result_texts(res, "labels") : NULL;
    if (!res) return;
    if (!labels || gpuq_http_result_tensor(res, "scores", "f32", 2, shape, &scores) != 0 ||
        (int64_t)json_array_size(labels) != shape[1]) {
        gpuq_http_fail(r, 424, "internal", "the worker's classify result has no scores and labels");
    } else {
        json_t *rows = json_array();
        for (int64_t i = 0; i < shape[0]; i++) {
            json_t *row = json_array();
            int64_t n = shape[1];
            int *taken = calloc((size_t)n, sizeof(int));
            for (int64_t k = 0; taken && k < n; k++) {   /* highest first, ties to the lower label */
                int64_t best = -1;
                for (int64_t j = 0; j < n; j++)
                    if (!taken[j] && (best < 0 || f32_at(scores, i * n + j) > f32_at(scores, i * n + best))) best = j;
                taken[best] = 1;
                json_array_append_new(row, json_pack("{s:f, s:O}", "score", (double)f32_at(scores, i * n + best),
                                                     "label", json_array_get(labels, (size_t)best)));
            }
            free(taken);
            json_array_append_new(rows, row);
        }
        /* one input (a string, or one pair): one list, as TEI answers */
        json_t *one = r->ctx ? json_incref(json_array_get(rows, 0)) : json_incref(rows);
        gpuq_http_answer_json(r, 200, one);     /* takes one */
        json_decref(rows);
    }
    json_decref(labels);
    gpuq_http_result_free(res);
}

void gpuq_http_tei_predict(struct gpuq_http_req *r) {
    static const char *const ops[] = {"classify", "rerank", NULL};
    json_t *body = body_of(r), *inputs = NULL;
    char picked[256];
    const char *model, *field = "text";
    if (!body) return;
    const json_t *in = json_object_get(body, "inputs"), *name = json_object_get(body, "model");
    int raw = flag(r, body, "raw_scores", 0), one = json_is_string(in);
    if (raw < 0) goto out;
    /* a string; a pair [a, b]; an array of strings (other than two); an array of pairs */
    if (one) {
        inputs = json_incref((json_t *)in);
    } else if (json_is_array(in) && json_array_size(in) == 2 && json_is_string(json_array_get(in, 0)) &&
               json_is_string(json_array_get(in, 1))) {     /* as TEI reads it: one pair, not two texts */
        inputs = json_pack("[O]", in), field = "pairs", one = 1;
    } else if (json_is_array(in) && json_is_array(json_array_get(in, 0))) {
        size_t i;
        json_t *p;
        json_array_foreach(in, i, p) if (json_array_size(p) != 2) {
            gpuq_http_fail(r, 422, "bad_request", "'inputs' item %zu is not a pair of strings", i);
            goto out;
        }
        inputs = json_incref((json_t *)in), field = "pairs";
    } else if (strings(r, in, "inputs")) {
        inputs = json_incref((json_t *)in);
    } else {
        goto out;
    }
    if (json_array_size(inputs) > (size_t)r->srv->cfg.max_inputs) {
        gpuq_http_fail(r, 413, "too_large", "'inputs' holds more than --max-inputs %lld items", r->srv->cfg.max_inputs);
        goto out;
    }
    if (!(model = json_is_string(name) ? json_string_value(name) : gpuq_http_pick_model_for(r, ops, picked, sizeof picked)))
        goto out;
    r->ctx = one ? (void *)1 : NULL;
    submit(r, "classify", model, json_pack("{s:O}", field, inputs),
           raw ? json_pack("{s:s}", "function", "none") : json_object(), predict_done);
out:
    json_decref(inputs);
    json_decref(body);
}

/* ---- /embed_sparse: {inputs} -> [[{index, value}]] per input ---- */

static void sparse_done(struct gpuq_http_req *r) {
    struct gpuq_http_result *res = result_of(r);
    const void *idx, *val, *off;
    int64_t n[1], m[1], rows[1];
    if (!res) return;
    if (gpuq_http_result_tensor(res, "indices", "i32", 1, n, &idx) != 0 ||
        gpuq_http_result_tensor(res, "values", "f32", 1, m, &val) != 0 ||
        gpuq_http_result_tensor(res, "offsets", "i64", 1, rows, &off) != 0 || n[0] != m[0] || rows[0] < 1) {
        gpuq_http_fail(r, 424, "internal", "the worker's embed_sparse result has no indices, values and offsets");
    } else {
        json_t *out = json_array();
        for (int64_t i = 0; i + 1 < rows[0]; i++) {
            int64_t a, b;
            memcpy(&a, (const char *)off + i * 8, 8);
            memcpy(&b, (const char *)off + (i + 1) * 8, 8);
            json_t *row = json_array();
            for (int64_t j = a; j < b && j < n[0] && j >= 0; j++)
                json_array_append_new(row, json_pack("{s:i, s:f}", "index", (int)i32_at(idx, j), "value",
                                                     (double)f32_at(val, j)));
            json_array_append_new(out, row);
        }
        gpuq_http_answer_json(r, 200, out);     /* takes out */
    }
    gpuq_http_result_free(res);
}

void gpuq_http_tei_sparse(struct gpuq_http_req *r) {
    static const char *const ops[] = {"embed_sparse", NULL};
    json_t *body = body_of(r);
    char picked[256];
    const char *model;
    if (!body) return;
    const json_t *in = json_object_get(body, "inputs"), *name = json_object_get(body, "model");
    if (!json_is_string(in) && !strings(r, in, "inputs")) goto out;
    if (!(model = json_is_string(name) ? json_string_value(name) : gpuq_http_pick_model_for(r, ops, picked, sizeof picked)))
        goto out;
    submit(r, "embed_sparse", model, json_pack("{s:O}", "text", in), json_object(), sparse_done);
out:
    json_decref(body);
}
