/* openai.c -- OpenAI's embeddings API: POST /v1/embeddings and GET
 * /v1/models, answered in exactly OpenAI's shapes, so that its SDKs and
 * the tools built on them (LangChain's OpenAIEmbeddings, LlamaIndex, ...)
 * work pointed at the front door. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http/embed.h"
#include "queue/json.h"

struct embeddings {
    char model[256];
    int base64;
};

static void finish(struct gpuq_http_req *r) {
    const struct embeddings *e = r->ctx;
    const char *code, *message;
    const float *y;
    const int32_t *tokens;
    int64_t rows, cols, n_tok;
    if (gpuq_http_result_missing(r)) return;
    struct gpuq_http_result *res = gpuq_http_result_parse(r->wait.bytes, r->wait.len);
    int ok = gpuq_http_result_ok(res, &code, &message);
    if (ok < 0) {
        gpuq_http_fail(r, 502, "internal", "the worker's answer is not a result");
    } else if (ok == 0) {
        gpuq_http_fail_result(r, code, message);
    } else if (gpuq_http_result_f32(res, "y", &y, &rows, &cols) != 0 ||
               gpuq_http_result_i32(res, "tokens", &tokens, &n_tok) != 0 || n_tok != rows) {
        gpuq_http_fail(r, 502, "internal", "the worker's result has no f32 [rows, dim] y with i32 tokens");
    } else {
        char *buf = NULL, head[64];
        size_t len = 0, cap = 0;
        long long used = 0;
        float *row = malloc((size_t)(cols ? cols : 1) * sizeof(float));
        gpuq_http_put(&buf, &len, &cap, "{\"object\":\"list\",\"data\":[", 25);
        for (int64_t i = 0; i < rows && row; i++) {
            int32_t t;
            memcpy(&t, (const char *)tokens + i * 4, 4);
            used += t;
            memcpy(row, (const char *)y + i * cols * 4, (size_t)cols * 4);   /* unaligned in the message */
            int n = snprintf(head, sizeof(head), "%s{\"object\":\"embedding\",\"index\":%lld,\"embedding\":",
                             i ? "," : "", (long long)i);
            gpuq_http_put(&buf, &len, &cap, head, (size_t)n);
            if (e->base64) {
                char *b = gpuq_base64(row, (size_t)cols * 4);
                gpuq_http_put(&buf, &len, &cap, "\"", 1);
                if (b) gpuq_http_put(&buf, &len, &cap, b, strlen(b));
                gpuq_http_put(&buf, &len, &cap, "\"}", 2);
                free(b);
                continue;
            }
            gpuq_http_put(&buf, &len, &cap, "[", 1);
            for (int64_t j = 0; j < cols; j++) {
                if (j) gpuq_http_put(&buf, &len, &cap, ",", 1);
                gpuq_http_put_float(&buf, &len, &cap, row[j]);
            }
            gpuq_http_put(&buf, &len, &cap, "]}", 2);
        }
        free(row);
        json_t *tail = json_pack("{s:s, s:{s:I, s:I}}", "model", e->model, "usage", "prompt_tokens",
                                 (json_int_t)used, "total_tokens", (json_int_t)used);
        char *t = json_dumps(tail, JSON_COMPACT);
        json_decref(tail);
        gpuq_http_put(&buf, &len, &cap, "],", 2);
        if (t) gpuq_http_put(&buf, &len, &cap, t + 1, strlen(t) - 1);     /* the object's members and } */
        if (!t || !buf) {
            free(buf);
            gpuq_http_fail(r, 500, "internal", "out of memory");
        } else {
            gpuq_http_answer(r, 200, "application/json", buf, len);
        }
        free(t);
    }
    gpuq_http_result_free(res);
}

void gpuq_http_embeddings(struct gpuq_http_req *r) {
    json_error_t jerr;
    json_t *body = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr), *params = NULL;
    struct embeddings *e = calloc(1, sizeof(*e));
    char picked[256];
    if (!e) {
        gpuq_http_fail(r, 500, "internal", "out of memory");
        goto out;
    }
    if (!json_is_object(body)) {
        gpuq_http_fail(r, 400, "bad_request", body ? "the body must be a JSON object" : "the body is not JSON: %s "
                       "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
        goto out;
    }
    const json_t *input = json_object_get(body, "input"), *model = json_object_get(body, "model");
    const json_t *dims = json_object_get(body, "dimensions"), *fmt = json_object_get(body, "encoding_format");
    if (!input) {
        gpuq_http_fail(r, 400, "bad_request", "'input' is required: a string, an array of strings or of token arrays");
        goto out;
    }
    const char *name = json_string_value(model);
    if (model && !json_is_null(model) && !name) {
        gpuq_http_fail(r, 400, "bad_request", "'model' must be a string");
        goto out;
    }
    if (!name && !(name = gpuq_http_pick_model(r, picked, sizeof(picked)))) goto out;
    snprintf(e->model, sizeof(e->model), "%s", name);
    if (fmt && !json_is_null(fmt)) {
        const char *f = json_string_value(fmt);
        if (!f || (strcmp(f, "float") && strcmp(f, "base64"))) {
            gpuq_http_fail(r, 400, "bad_request", "'encoding_format' must be \"float\" or \"base64\"");
            goto out;
        }
        e->base64 = !strcmp(f, "base64");
    }
    params = json_object();
    if (dims && !json_is_null(dims)) {
        if (!json_is_integer(dims) || json_integer_value(dims) < 1 || json_integer_value(dims) > 1000000) {
            gpuq_http_fail(r, 400, "bad_request", "'dimensions' must be a positive integer");
            goto out;
        }
        json_object_set(params, "dimensions", (json_t *)dims);
    }
    r->ctx = e;
    r->ctx_free = free;
    e = NULL;
    gpuq_http_embed_submit(r, input, "input", ((struct embeddings *)r->ctx)->model, params, finish);
out:
    free(e);
    json_decref(params);
    json_decref(body);
}

void gpuq_http_models(struct gpuq_http_req *r) {
    json_t *workers = gpuq_http_live_workers(r->srv, r->queue), *data = json_array(), *seen = json_object();
    size_t i;
    json_t *w;
    if (!workers) {
        json_decref(data);
        json_decref(seen);
        gpuq_http_fail(r, 503, "unavailable", "the queue cannot be reached");
        return;
    }
    json_array_foreach(workers, i, w) {
        size_t j;
        json_t *m;
        json_array_foreach(json_object_get(w, "models"), j, m) {
            const char *id = json_string_value(json_object_get(m, "name"));
            if (!id || json_object_get(seen, id)) continue;
            json_object_set_new(seen, id, json_true());
            json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:O*, s:O*}", "id", id, "object", "model",
                                                  "created", json_integer_value(json_object_get(w, "started_ms")) / 1000,
                                                  "owned_by", "gpuq", "op", json_object_get(m, "op"),
                                                  "dim", json_object_get(m, "dim")));
        }
    }
    json_decref(workers);
    json_decref(seen);
    gpuq_http_answer_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}
