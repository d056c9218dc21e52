/* result.c -- reading a worker's result (msgpack) for the routes that turn
 * it into their own shape. */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http/http.h"

struct gpuq_http_result {
    msgpack_unpacked u;
    char code[64], message[512];
    int ok;
    const msgpack_object *outputs;
};

static const msgpack_object *get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            !memcmp(k->via.str.ptr, key, k->via.str.size))
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static void copy_str(char *dst, size_t cap, const msgpack_object *o) {
    if (!o || o->type != MSGPACK_OBJECT_STR) return;
    size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
    memcpy(dst, o->via.str.ptr, n);
    dst[n] = 0;
}

struct gpuq_http_result *gpuq_http_result_parse(const char *bytes, size_t len) {
    struct gpuq_http_result *res = calloc(1, sizeof(*res));
    size_t off = 0;
    if (!res) return NULL;
    msgpack_unpacked_init(&res->u);
    if (msgpack_unpack_next(&res->u, bytes, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        res->u.data.type != MSGPACK_OBJECT_MAP) {
        gpuq_http_result_free(res);
        return NULL;
    }
    const msgpack_object *st = get(&res->u.data, "status"), *err = get(&res->u.data, "error");
    res->ok = st && st->type == MSGPACK_OBJECT_STR && st->via.str.size == 2 && !memcmp(st->via.str.ptr, "ok", 2);
    snprintf(res->code, sizeof(res->code), "internal");
    snprintf(res->message, sizeof(res->message), "the worker's result carries no error message");
    copy_str(res->code, sizeof(res->code), get(err, "code"));
    copy_str(res->message, sizeof(res->message), get(err, "message"));
    res->outputs = get(&res->u.data, "outputs");
    return res;
}

void gpuq_http_result_free(struct gpuq_http_result *res) {
    if (!res) return;
    msgpack_unpacked_destroy(&res->u);
    free(res);
}

int gpuq_http_result_ok(const struct gpuq_http_result *res, const char **code, const char **message) {
    if (!res) return -1;
    *code = res->code;
    *message = res->message;
    return res->ok;
}

/* Output name with dtype and rank: its shape and data. */
static int output(const struct gpuq_http_result *res, const char *name, const char *dtype, uint32_t rank,
                  int64_t *shape, const char **data, size_t *nbytes) {
    uint64_t size = !strcmp(dtype, "i64") || !strcmp(dtype, "f64") ? 8 : 4;
    const msgpack_object *t = get(res->outputs, name);
    const msgpack_object *dt = get(t, "dtype"), *sh = get(t, "shape"), *d = get(t, "data");
    if (!dt || dt->type != MSGPACK_OBJECT_STR || dt->via.str.size != strlen(dtype) ||
        memcmp(dt->via.str.ptr, dtype, dt->via.str.size) || !sh || sh->type != MSGPACK_OBJECT_ARRAY ||
        sh->via.array.size != rank || !d || d->type != MSGPACK_OBJECT_BIN)
        return -1;
    uint64_t n = 1;
    for (uint32_t i = 0; i < rank; i++) {
        if (sh->via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return -1;
        shape[i] = (int64_t)sh->via.array.ptr[i].via.u64;
        n *= sh->via.array.ptr[i].via.u64;
    }
    if (n * size != d->via.bin.size) return -1;
    *data = d->via.bin.ptr;
    *nbytes = d->via.bin.size;
    return 0;
}

int gpuq_http_result_f32(const struct gpuq_http_result *res, const char *name, const float **data,
                         int64_t *rows, int64_t *cols) {
    int64_t shape[2] = {0, 0};
    const char *p;
    size_t n;
    if (output(res, name, "f32", 2, shape, &p, &n) != 0) return -1;
    *data = (const float *)(const void *)p;     /* msgpack bin data: copied out by the caller */
    *rows = shape[0];
    *cols = shape[1];
    return 0;
}

int gpuq_http_result_i32(const struct gpuq_http_result *res, const char *name, const int32_t **data,
                         int64_t *n) {
    int64_t shape[1] = {0};
    const char *p;
    size_t nb;
    if (output(res, name, "i32", 1, shape, &p, &nb) != 0) return -1;
    *data = (const int32_t *)(const void *)p;
    *n = shape[0];
    return 0;
}

int gpuq_http_result_tensor(const struct gpuq_http_result *res, const char *name, const char *dtype, int rank,
                            int64_t *shape, const void **data) {
    const char *p;
    size_t nb;
    if (output(res, name, dtype, (uint32_t)rank, shape, &p, &nb) != 0) return -1;
    *data = p;
    return 0;
}

json_t *gpuq_http_result_texts(const struct gpuq_http_result *res, const char *name) {
    const msgpack_object *t = get(res->outputs, name);
    if (!t || t->type != MSGPACK_OBJECT_ARRAY) return NULL;
    json_t *out = json_array();
    for (uint32_t i = 0; out && i < t->via.array.size; i++) {
        const msgpack_object *s = &t->via.array.ptr[i];
        json_array_append_new(out, s->type == MSGPACK_OBJECT_STR ? json_stringn(s->via.str.ptr, s->via.str.size)
                                                                 : json_null());
    }
    return out;
}

int gpuq_http_result_missing(struct gpuq_http_req *r) {
    if (r->wait.stopped) {
        gpuq_http_fail(r, 503, "unavailable", "the front door is shutting down; send the request again");
        return 1;
    }
    if (r->wait.timed_out || !r->wait.bytes) {
        gpuq_http_fail(r, 504, "deadline_exceeded", "no result within %.0f s (the job stays queued and "
                       "may still run; its result is not kept)", r->srv->cfg.request_timeout);
        return 1;
    }
    return 0;
}
