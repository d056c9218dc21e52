/* tei.c -- text-embeddings-inference's API: POST /embed answered as TEI
 * answers it ([[floats]], errors as {"error", "error_type"}); /rerank,
 * /predict and /embed_sparse are tei_ops.c's; /tokenize is answered 501. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/http/embed.h"

static void finish(struct gpuq_http_req *r) {
    const char *code, *message;
    const float *y;
    int64_t rows, cols;
    if (gpuq_http_result_missing(r)) return;
    struct gpuq_http_result *res = gpuq_http_result_parse(r->wait.bytes, r->wait.len);
    int ok = gpuq_http_result_ok(res, &code, &message);
    if (ok < 0) {
        gpuq_http_fail(r, 424, "internal", "the worker's answer is not a result");
    } else if (ok == 0) {
        gpuq_http_fail_result(r, code, message);
    } else if (gpuq_http_result_f32(res, "y", &y, &rows, &cols) != 0) {
        gpuq_http_fail(r, 424, "internal", "the worker's result has no f32 [rows, dim] y");
    } else {
        char *buf = NULL;
        size_t len = 0, cap = 0;
        gpuq_http_put(&buf, &len, &cap, "[", 1);
        for (int64_t i = 0; i < rows; i++) {
            gpuq_http_put(&buf, &len, &cap, i ? ",[" : "[", i ? 2 : 1);
            for (int64_t j = 0; j < cols; j++) {
                float f;
                memcpy(&f, (const char *)y + (i * cols + j) * 4, 4);
                if (j) gpuq_http_put(&buf, &len, &cap, ",", 1);
                gpuq_http_put_float(&buf, &len, &cap, f);
            }
            gpuq_http_put(&buf, &len, &cap, "]", 1);
        }
        if (gpuq_http_put(&buf, &len, &cap, "]", 1) != 0) gpuq_http_fail(r, 500, "internal", "out of memory");
        else gpuq_http_answer(r, 200, "application/json", buf, len);
    }
    gpuq_http_result_free(res);
}

/* A TEI boolean field: 0/1, the default when absent or null, -1 otherwise. */
static int flag(const json_t *body, const char *name, int dflt) {
    const json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return dflt;
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

void gpuq_http_tei_embed(struct gpuq_http_req *r) {
    json_error_t jerr;
    json_t *body = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr), *params = json_object();
    char picked[256];
    const char *model;
    if (!json_is_object(body)) {
        gpuq_http_fail(r, 422, "bad_request", body ? "the body must be a JSON object" : "the body is not JSON: %s "
                       "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
        goto out;
    }
    const json_t *inputs = json_object_get(body, "inputs"), *dir = json_object_get(body, "truncation_direction");
    const json_t *prompt = json_object_get(body, "prompt_name"), *dims = json_object_get(body, "dimensions");
    int normalize = flag(body, "normalize", 1), truncate = flag(body, "truncate", 0);
    if (!inputs) {
        gpuq_http_fail(r, 422, "bad_request", "'inputs' is required: a string, an array of strings or of token arrays");
        goto out;
    }
    if (normalize < 0 || truncate < 0) {
        gpuq_http_fail(r, 422, "bad_request", "'%s' must be true or false", normalize < 0 ? "normalize" : "truncate");
        goto out;
    }
    json_object_set_new(params, "normalize", json_boolean(normalize));
    json_object_set_new(params, "truncate", json_boolean(truncate));
    if (dir && !json_is_null(dir)) {
        const char *d = json_string_value(dir);
        if (!d || (strcasecmp(d, "left") && strcasecmp(d, "right"))) {
            gpuq_http_fail(r, 422, "bad_request", "'truncation_direction' must be \"left\" or \"right\"");
            goto out;
        }
        json_object_set_new(params, "truncation_direction", json_string(tolower((unsigned char)d[0]) == 'l' ? "left" : "right"));
    }
    if (prompt && !json_is_null(prompt)) {
        if (!json_is_string(prompt)) {
            gpuq_http_fail(r, 422, "bad_request", "'prompt_name' must be a string");
            goto out;
        }
        json_object_set(params, "prompt_name", (json_t *)prompt);
    }
    if (dims && !json_is_null(dims)) {
        if (!json_is_integer(dims) || json_integer_value(dims) < 1 || json_integer_value(dims) > 1000000) {
            gpuq_http_fail(r, 422, "bad_request", "'dimensions' must be a positive integer");
            goto out;
        }
        json_object_set(params, "dimensions", (json_t *)dims);
    }
    if (!(model = gpuq_http_pick_model(r, picked, sizeof(picked)))) goto out;
    gpuq_http_embed_submit(r, inputs, "inputs", model, params, finish);
out:
    json_decref(params);
    json_decref(body);
}

void gpuq_http_tei_unserved(struct gpuq_http_req *r) {
    gpuq_http_fail(r, 501, "unknown_op", "%s is not served: the workers have no tokenize op (the embed ops "
                   "return each text's token count)", r->path);
}
