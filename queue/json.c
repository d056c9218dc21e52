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

/* ---- JSON jobs to msgpack ---- */

/* Decodes base64 into a malloc'd buffer; NULL when it is not base64. */
static unsigned char *unbase64(const char *s, size_t n, size_t *out_len) {
    size_t pad = 0;
    if (n % 4 != 0) return NULL;
    while (pad < 2 && pad < n && s[n - 1 - pad] == '=') pad++;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (!out) return NULL;
    int got = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
    if (got < 0 || (size_t)got < pad) {
        free(out);
        return NULL;
    }
    *out_len = (size_t)got - pad;
    return out;
}

/* depth 1: the job; 2: its inputs; 3: a tensor, whose "data" is base64 */
static int pack(msgpack_packer *pk, json_t *j, int depth, int in_inputs) {
    if (depth > 64) return -1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        size_t klen;
        if (msgpack_pack_map(pk, json_object_size(j))) return -1;
        json_object_keylen_foreach(j, k, klen, v) {
            if (msgpack_pack_str_with_body(pk, k, klen)) return -1;
            int tensor_data = in_inputs == 2 && klen == 4 && !memcmp(k, "data", 4) && json_is_string(v);
            if (tensor_data) {
                size_t n;
                unsigned char *bin = unbase64(json_string_value(v), json_string_length(v), &n);
                if (bin) {
                    int rc = msgpack_pack_bin_with_body(pk, bin, n);
                    free(bin);
                    if (rc) return -1;
                    continue;
                }
            }
            int next = depth == 1 && klen == 6 && !memcmp(k, "inputs", 6) ? 1 : in_inputs ? in_inputs + 1 : 0;
            if (pack(pk, v, depth + 1, next)) return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if (msgpack_pack_array(pk, json_array_size(j))) return -1;
        for (size_t i = 0; i < json_array_size(j); i++)
            if (pack(pk, json_array_get(j, i), depth + 1, 0)) return -1;
        return 0;
    }
    case JSON_STRING: return msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return msgpack_pack_int64(pk, json_integer_value(j));
    case JSON_REAL: return msgpack_pack_double(pk, json_real_value(j));
    case JSON_TRUE: return msgpack_pack_true(pk);
    case JSON_FALSE: return msgpack_pack_false(pk);
    default: return msgpack_pack_nil(pk);
    }
}

int gpuq_json_job_to_msgpack(const char *text, size_t len, msgpack_sbuffer *out) {
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = json_is_object(j) ? pack(&pk, j, 1, 0) : -1;
    json_decref(j);
    return rc;
}

int gpuq_json_value_to_msgpack(const char *text, msgpack_sbuffer *out) {
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = j ? pack(&pk, j, 2, 0) : -1;
    json_decref(j);
    return rc;
}
