/* embed.c -- embedding requests as embed jobs. */
#include "cli/http/embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pack_str(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

/* A JSON scalar as msgpack: 0, or -1 for anything else. */
static int pack_scalar(msgpack_packer *pk, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_STRING: msgpack_pack_str_with_body(pk, json_string_value(v), json_string_length(v)); return 0;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(v)); return 0;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(v)); return 0;
    case JSON_TRUE: msgpack_pack_true(pk); return 0;
    case JSON_FALSE: msgpack_pack_false(pk); return 0;
    default: return -1;
    }
}

/* Whether v is an array of token ids (non-negative integers below 2^31). */
static int is_ids(const json_t *v) {
    if (!json_is_array(v) || json_array_size(v) == 0) return 0;
    return json_is_integer(json_array_get(v, 0));
}

static int check_ids(struct gpuq_http_req *r, const json_t *v, const char *what, size_t row) {
    size_t i;
    const json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 2147483647) {
            gpuq_http_fail(r, r->route == GPUQ_HTTP_ROUTE_EMBED ? 422 : 400, "bad_request",
                           "%s[%zu][%zu]: want a token id, an integer from 0 to 2147483647", what, row, i);
            return -1;
        }
    }
    return 0;
}

static void pack_tensor_i64(msgpack_packer *pk, int64_t rows, int64_t cols, const int64_t *data) {
    msgpack_pack_map(pk, 3);
    pack_str(pk, "dtype");
    pack_str(pk, "i64");
    pack_str(pk, "shape");
    msgpack_pack_array(pk, 2);
    msgpack_pack_int64(pk, rows);
    msgpack_pack_int64(pk, cols);
    pack_str(pk, "data");
    msgpack_pack_bin_with_body(pk, data, (size_t)(rows * cols) * 8);
}

/* Packs token id rows, right-padded, with their attention mask. */
static int pack_ids(struct gpuq_http_req *r, msgpack_packer *pk, const json_t *rows, size_t n) {
    size_t width = 0;
    for (size_t i = 0; i < n; i++) {
        size_t w = json_array_size(json_array_get(rows, i));
        if (w > width) width = w;
    }
    size_t cells = n * width > 0 ? n * width : 1;
    int64_t *ids = calloc(cells, 8), *mask = calloc(cells, 8);
    if (!ids || !mask) {
        free(ids);
        free(mask);
        gpuq_http_fail(r, 500, "internal", "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *row = json_array_get(rows, i);
        for (size_t j = 0; j < json_array_size(row); j++) {
            ids[i * width + j] = json_integer_value(json_array_get(row, j));
            mask[i * width + j] = 1;
        }
    }
    pack_str(pk, "input_ids");
    pack_tensor_i64(pk, (int64_t)n, (int64_t)width, ids);
    pack_str(pk, "attention_mask");
    pack_tensor_i64(pk, (int64_t)n, (int64_t)width, mask);
    free(ids);
    free(mask);
    return 0;
}

int gpuq_http_embed_job(struct gpuq_http_req *r, const json_t *input, const char *what, const char *model,
                        const json_t *params, msgpack_sbuffer *out) {
    int bad = r->route == GPUQ_HTTP_ROUTE_EMBED ? 422 : 400;
    json_t *one = NULL;
    const json_t *rows = input;
    int ids = 0;
    size_t n;
    /* one text, or one row of ids: a batch of one */
    if (json_is_string(input) || is_ids(input)) rows = one = json_pack("[O]", input);
    if (!json_is_array(rows) || json_array_size(rows) == 0) {
        gpuq_http_fail(r, bad, "bad_request", "%s: want a string, an array of strings or an array of "
                       "token id arrays, not empty", what);
        goto fail;
    }
    n = json_array_size(rows);
    if ((long long)n > r->srv->cfg.max_inputs) {
        gpuq_http_fail(r, 413, "too_large", "%s: %zu inputs in one request; at most %lld (--max-inputs)",
                       what, n, r->srv->cfg.max_inputs);
        goto fail;
    }
    ids = json_is_array(json_array_get(rows, 0));
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(rows, i);
        if (ids ? !json_is_array(v) || json_array_size(v) == 0 : !json_is_string(v)) {
            gpuq_http_fail(r, bad, "bad_request", "%s[%zu]: want %s, as the first input is", what, i,
                           ids ? "a non-empty array of token ids" : "a string");
            goto fail;
        }
        if (ids && check_ids(r, v, what, i) != 0) goto fail;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    size_t n_params = params ? json_object_size(params) : 0;
    msgpack_pack_map(&pk, 7 + (n_params > 0));
    pack_str(&pk, "op");
    pack_str(&pk, "embed");
    pack_str(&pk, "model");
    pack_str(&pk, model);
    pack_str(&pk, "id");
    pack_str(&pk, r->wait.id);
    pack_str(&pk, "reply_to");
    pack_str(&pk, r->srv->reply_list);
    pack_str(&pk, "result_ttl");
    msgpack_pack_int64(&pk, 0);
    pack_str(&pk, "timeout_ms");
    msgpack_pack_int64(&pk, (int64_t)ceil(r->srv->cfg.request_timeout * 1000));
    pack_str(&pk, "inputs");
    if (ids) {
        msgpack_pack_map(&pk, 2);
        if (pack_ids(r, &pk, rows, n) != 0) goto fail;
    } else {
        msgpack_pack_map(&pk, 1);
        pack_str(&pk, "text");
        msgpack_pack_array(&pk, n);
        for (size_t i = 0; i < n; i++) {
            const json_t *v = json_array_get(rows, i);
            msgpack_pack_str_with_body(&pk, json_string_value(v), json_string_length(v));
        }
    }
    if (n_params) {
        const char *k;
        const json_t *v;
        pack_str(&pk, "params");
        msgpack_pack_map(&pk, n_params);
        json_object_foreach((json_t *)params, k, v) {
            pack_str(&pk, k);
            if (pack_scalar(&pk, v) != 0) msgpack_pack_nil(&pk);   /* the route checked its params */
        }
    }
    json_decref(one);
    return (int)n;
fail:
    json_decref(one);
    return -1;
}

int gpuq_http_embed_submit(struct gpuq_http_req *r, const json_t *input, const char *what, const char *model,
                           const json_t *params, void (*finish)(struct gpuq_http_req *r)) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    gpuq_http_job_id(r->srv, r->wait.id, sizeof(r->wait.id));
    int result = gpuq_http_embed_job(r, input, what, model, params, &sb) < 0 ? -1
                 : gpuq_http_submit(r, "job", sb.data, sb.size, r->srv->cfg.request_timeout, finish);
    msgpack_sbuffer_destroy(&sb);
    return result;
}

int gpuq_http_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (!*buf && *cap) return -1;   /* an earlier append failed */
    if (*len + n + 1 > *cap) {
        size_t c = (*cap ? *cap : 4096);
        while (c < *len + n + 1) c *= 2;
        char *grown = realloc(*buf, c);
        if (!grown) {
            free(*buf);
            *buf = NULL;
            return -1;
        }
        *buf = grown;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

void gpuq_http_put_float(char **buf, size_t *len, size_t *cap, float f) {
    char t[32];
    int n;
    if (!isfinite(f)) {
        n = snprintf(t, sizeof(t), "null");
    } else {
        /* fewest digits that read back as the same float */
        n = 0;
        for (int digits = 6; digits <= 9; digits++) {
            n = snprintf(t, sizeof(t), "%.*g", digits, (double)f);
            if (strtof(t, NULL) == f) break;
        }
    }
    gpuq_http_put(buf, len, cap, t, (size_t)n);
}
