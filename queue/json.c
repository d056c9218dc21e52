/* json.c -- msgpack -> JSON text (a direct writer), JSON jobs -> msgpack on
 * jansson, base64 by OpenSSL. */
#include "queue/json.h"

#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *gpuq_base64(const void *data, size_t n) {
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out) EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    return out;
}

/* ---- msgpack to JSON text ---- */

/* A growing output buffer; oom sticks once memory ran out. */
struct out {
    char *p;
    size_t n, cap;
    int oom;
};

static char *grow(struct out *b, size_t more) {
    if (b->oom) return NULL;
    if (b->n + more > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + more) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    return b->p + b->n;
}

static void put(struct out *b, const char *s, size_t n) {
    char *d = grow(b, n);
    if (!d) return;
    memcpy(d, s, n);
    b->n += n;
}

#define PUT(b, lit) put(b, lit, sizeof(lit) - 1)

/* Length of the well-formed UTF-8 sequence at s (no overlongs, surrogates
 * or code points past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : 2;
    if (s[0] < 0xC2 || s[0] > 0xF4 || n < len) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

/* A JSON string; a byte that is not UTF-8 becomes U+FFFD. */
static void put_str(struct out *b, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    PUT(b, "\"");
    for (size_t i = 0; i < n;) {
        size_t run = i;
        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\') run++;
        put(b, str + i, run - i);
        if ((i = run) == n) break;
        char esc[8];
        if (s[i] >= 0x80) {
            size_t len = utf8_len(s + i, n - i);
            if (len) put(b, str + i, len);
            else PUT(b, "\\ufffd");
            i += len ? len : 1;
            continue;
        }
        if (s[i] == '"' || s[i] == '\\') snprintf(esc, sizeof(esc), "\\%c", s[i]);
        else snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
        put(b, esc, strlen(esc));
        i++;
    }
    PUT(b, "\"");
}

static void put_base64(struct out *b, const char *data, size_t n) {
    PUT(b, "\"");
    char *d = grow(b, 4 * ((n + 2) / 3) + 1);
    if (d) b->n += (size_t)EVP_EncodeBlock((unsigned char *)d, (const unsigned char *)data, (int)n);
    PUT(b, "\"");
}

/* The shortest %g that reads back as the same double; always with a point
 * or an exponent, so it reads back as a float. JSON has no NaN or
 * infinities: those become the strings "NaN", "Infinity", "-Infinity". */
static void put_double(struct out *b, double v) {
    char num[40];
    if (isnan(v) || isinf(v)) {
        const char *s = isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
        put_str(b, s, strlen(s));
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(num, sizeof(num), "%.*g", prec, v);
        if (strtod(num, NULL) == v) break;
    }
    if (!strpbrk(num, ".e")) strcat(num, ".0");
    put(b, num, strlen(num));
}

static void emit(struct out *b, const msgpack_object *o, int key_depth);

/* Keys inside keys deeper than this become the base64 of their msgpack:
 * each level of JSON text in a string escapes the one inside it again, so
 * the text would double with each level. */
#define KEY_DEPTH 4

/* A map key is a JSON string: a str or bin key as its value converts, any
 * other key as its JSON text (inside KEY_DEPTH other keys). */
static void put_key(struct out *b, const msgpack_object *k, int key_depth) {
    if (k->type == MSGPACK_OBJECT_STR || k->type == MSGPACK_OBJECT_BIN) {
        emit(b, k, key_depth);
        return;
    }
    if (key_depth >= KEY_DEPTH) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (msgpack_pack_object(&pk, *k) != 0) b->oom = 1;
        else put_base64(b, sb.data ? sb.data : "", sb.size);
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    size_t at = b->n;
    emit(b, k, key_depth + 1);
    if (b->oom) return;
    size_t n = b->n - at;
    char *text = malloc(n ? n : 1);
    if (!text) {
        b->oom = 1;
        return;
    }
    memcpy(text, b->p + at, n);
    b->n = at;
    put_str(b, text, n);
    free(text);
}

/* msgpack nests at most MSGPACK_EMBED_STACK_SIZE deep, so this recursion
 * is bounded by what msgpack_unpack_next accepts. */
static void emit(struct out *b, const msgpack_object *o, int key_depth) {
    char num[32];
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: PUT(b, "null"); return;
    case MSGPACK_OBJECT_BOOLEAN:
        if (o->via.boolean) PUT(b, "true");
        else PUT(b, "false");
        return;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        put(b, num, (size_t)snprintf(num, sizeof(num), "%llu", (unsigned long long)o->via.u64));
        return;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        put(b, num, (size_t)snprintf(num, sizeof(num), "%lld", (long long)o->via.i64));
        return;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: put_double(b, o->via.f64); return;
    case MSGPACK_OBJECT_STR: put_str(b, o->via.str.ptr, o->via.str.size); return;
    case MSGPACK_OBJECT_BIN: put_base64(b, o->via.bin.ptr, o->via.bin.size); return;
    case MSGPACK_OBJECT_EXT:
        put(b, num, (size_t)snprintf(num, sizeof(num), "{\"ext\":%d,\"data\":", (int)o->via.ext.type));
        put_base64(b, o->via.ext.ptr, o->via.ext.size);
        PUT(b, "}");
        return;
    case MSGPACK_OBJECT_ARRAY:
        PUT(b, "[");
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) PUT(b, ",");
            emit(b, &o->via.array.ptr[i], key_depth);
        }
        PUT(b, "]");
        return;
    case MSGPACK_OBJECT_MAP:
        PUT(b, "{");
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i) PUT(b, ",");
            put_key(b, &o->via.map.ptr[i].key, key_depth);
            PUT(b, ":");
            emit(b, &o->via.map.ptr[i].val, key_depth);
        }
        PUT(b, "}");
        return;
    }
    PUT(b, "null");     /* no other msgpack types exist */
}

char *gpuq_json_from_object(const msgpack_object *o, size_t *out_len) {
    struct out b = {0};
    emit(&b, o, 0);
    char *end = grow(&b, 1);
    if (!end) {
        free(b.p);
        return NULL;
    }
    *end = '\0';
    *out_len = b.n;
    return b.p;
}

char *gpuq_json_from_msgpack(const char *buf, size_t len, size_t *out_len) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    char *text = NULL;
    if (msgpack_unpack_next(&u, buf, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len)
        text = gpuq_json_from_object(&u.data, out_len);
    msgpack_unpacked_destroy(&u);
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
