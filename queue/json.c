/* json.c -- msgpack -> JSON on jansson, base64 by OpenSSL. */
#include "queue/json.h"

#include <jansson.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

char *gpuq_base64(const void *data, size_t n) {
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out) EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    return out;
}

static json_t *convert(const msgpack_object *o, int depth) {
    if (depth > 64) return NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return o->via.u64 > INT64_MAX ? json_real((double)o->via.u64) : json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: return json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: {
        char *b = gpuq_base64(o->via.bin.ptr, o->via.bin.size);
        json_t *s = b ? json_string_nocheck(b) : NULL;
        free(b);
        return s;
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++)
            if (json_array_append_new(a, convert(&o->via.array.ptr[i], depth + 1)) != 0) {
                json_decref(a);
                return NULL;
            }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            json_t *v = k->type == MSGPACK_OBJECT_STR ? convert(&o->via.map.ptr[i].val, depth + 1) : NULL;
            if (!v || json_object_setn_new_nocheck(m, k->via.str.ptr, k->via.str.size, v) != 0) {
                json_decref(v);
                json_decref(m);
                return NULL;
            }
        }
        return m;
    }
    default: return NULL;   /* ext: not part of the protocol */
    }
}

char *gpuq_json_from_msgpack(const char *buf, size_t len, size_t *out_len) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    char *text = NULL;
    if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len) {
        json_t *j = convert(&u.data, 0);
        if (j) {
            text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
        }
    }
    msgpack_unpacked_destroy(&u);
    if (text) *out_len = strlen(text);
    return text;
}
