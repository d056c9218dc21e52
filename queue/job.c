/* job.c -- strict job decoder and result encoder on msgpack-c. */
#include "queue/job.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char *const op_names[] = {
#define GPUQ_OP(id, name) #name,
#include "base/ops.def"
#undef GPUQ_OP
};
_Static_assert(sizeof(op_names) / sizeof(op_names[0]) == GPUQ_OP_COUNT, "one name per op");

static const char *const err_codes[] = {
    "", "bad_request", "unknown_op", "unknown_model", "shape_mismatch",
    "deadline_exceeded", "too_large", "internal", "webhook_failed",
};
_Static_assert(sizeof(err_codes) / sizeof(err_codes[0]) == GPUQ_ERR_WEBHOOK_FAILED + 1,
               "one code per error");

const char *gpuq_op_name(enum gpuq_op op) { return op_names[op]; }
const char *gpuq_err_code(enum gpuq_err err) { return err_codes[err]; }

int gpuq_job_fail(struct gpuq_job *job, enum gpuq_err code, const char *fmt, ...) {
    if (job->err != GPUQ_ERR_NONE) return -1;   /* the first error is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->errmsg, sizeof(job->errmsg), fmt, ap);
    va_end(ap);
    job->err = code;
    return -1;
}

/* ---- a pre-scan: msgpack-c allocates a container's slots from its claimed
 * count before reading them, so a 5-byte message could ask for gigabytes.
 * Every claimed element needs at least one byte, so a count larger than the
 * bytes left is a lie we refuse before unpacking. ---- */

static uint64_t be_read(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

int gpuq_msgpack_sane(const void *buf, size_t len) {
    const unsigned char *p = buf;
    size_t off = 0, pending = 1;
    while (pending > 0) {
        if (off >= len) return 0;
        unsigned b = p[off++];
        pending--;
        int lenbytes = 0, kids = 0;
        uint64_t n = 0, fixed = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) continue;
        if (b <= 0x8f) n = b & 0x0f, kids = 2;
        else if (b <= 0x9f) n = b & 0x0f, kids = 1;
        else if (b <= 0xbf) fixed = b & 0x1f;
        else switch (b) {
            case 0xc4: case 0xd9: lenbytes = 1; break;
            case 0xc5: case 0xda: lenbytes = 2; break;
            case 0xc6: case 0xdb: lenbytes = 4; break;
            case 0xc7: lenbytes = 1, fixed = 1; break;
            case 0xc8: lenbytes = 2, fixed = 1; break;
            case 0xc9: lenbytes = 4, fixed = 1; break;
            case 0xcc: case 0xd0: fixed = 1; break;
            case 0xcd: case 0xd1: fixed = 2; break;
            case 0xca: case 0xce: case 0xd2: fixed = 4; break;
            case 0xcb: case 0xcf: case 0xd3: fixed = 8; break;
            case 0xd4: fixed = 2; break;
            case 0xd5: fixed = 3; break;
            case 0xd6: fixed = 5; break;
            case 0xd7: fixed = 9; break;
            case 0xd8: fixed = 17; break;
            case 0xdc: kids = 1, lenbytes = 2; break;
            case 0xdd: kids = 1, lenbytes = 4; break;
            case 0xde: kids = 2, lenbytes = 2; break;
            case 0xdf: kids = 2, lenbytes = 4; break;
            default: return 0;  /* 0xc1 is never used */
        }
        if ((size_t)lenbytes > len - off) return 0;
        if (lenbytes) n = be_read(p + off, lenbytes), off += (size_t)lenbytes;
        if (kids) {
            if (n * (uint64_t)kids > len - off || pending + n * kids > len - off) return 0;
            pending += (size_t)(n * kids);
        } else {
            uint64_t skip = n + fixed;
            if (skip > len - off) return 0;
            off += (size_t)skip;
        }
    }
    return 1;
}

/* ---- field helpers ---- */

static int key_is(const msgpack_object *k, const char *s) {
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}

static const msgpack_object *map_get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (key_is(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
    return NULL;
}

static int str_cmp(const msgpack_object *a, const msgpack_object *b) {
    if (a->via.str.size != b->via.str.size) return a->via.str.size < b->via.str.size ? -1 : 1;
    return memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size);
}

static int key_cmp(const void *a, const void *b) {
    return str_cmp(*(const msgpack_object *const *)a, *(const msgpack_object *const *)b);
}

/* A string key that map holds twice, or NULL. Small maps are compared pair
 * by pair; a large one is sorted, so a hostile map of 100k keys costs
 * n log n, not n^2. Non-string keys are the caller's to refuse. */
static const msgpack_object *repeated_key(const msgpack_object *map) {
    uint32_t n = map->via.map.size;
    const msgpack_object *found = NULL;
    if (n <= 16) {
        for (uint32_t i = 0; i < n && !found; i++)
            for (uint32_t j = i + 1; j < n && !found; j++) {
                const msgpack_object *a = &map->via.map.ptr[i].key, *b = &map->via.map.ptr[j].key;
                if (a->type == MSGPACK_OBJECT_STR && b->type == MSGPACK_OBJECT_STR && !str_cmp(a, b))
                    found = a;
            }
        return found;
    }
    const msgpack_object **keys = malloc(n * sizeof(*keys));
    uint32_t m = 0;
    if (!keys) return &map->via.map.ptr[0].key;     /* refuse what we cannot check */
    for (uint32_t i = 0; i < n; i++)
        if (map->via.map.ptr[i].key.type == MSGPACK_OBJECT_STR) keys[m++] = &map->via.map.ptr[i].key;
    qsort(keys, m, sizeof(*keys), key_cmp);
    for (uint32_t i = 1; i < m && !found; i++)
        if (!str_cmp(keys[i - 1], keys[i])) found = keys[i];
    free(keys);
    return found;
}

/* Fails the job when map repeats a key; what names the map in the message. */
static int unique_keys(struct gpuq_job *job, const msgpack_object *map, const char *what) {
    const msgpack_object *k = repeated_key(map);
    if (!k) return 0;
    return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "key '%.*s' repeated in %s",
                         (int)(k->via.str.size > 32 ? 32 : k->via.str.size), k->via.str.ptr, what);
}

static int get_int(const msgpack_object *o, int64_t *out) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > INT64_MAX) return -1;
        *out = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return 0;
    }
    return -1;
}

static int nonempty_str(const msgpack_object *o, struct gpuq_str *out) {
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0) return -1;
    out->ptr = o->via.str.ptr;
    out->len = o->via.str.size;
    return 0;
}

/* ids, reply lists and URLs become parts of Redis keys and HTTP headers:
 * take one only when it is 1 to max bytes of UTF-8 with no control
 * character (below 0x20, or 0x7f). Otherwise out stays empty, so nothing is built from it,
 * and the job fails. An absent field, or one of another type (refused in the
 * strict pass), leaves out empty. */
static void take_name(struct gpuq_job *job, const msgpack_object *o, const char *key, size_t max,
                      struct gpuq_str *out) {
    struct gpuq_str v;
    if (nonempty_str(o, &v) != 0) return;
    if (v.len > max) {
        gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s longer than %zu bytes", key, max);
        return;
    }
    for (size_t i = 0; i < v.len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)v.ptr + i,
                                              (utf8proc_ssize_t)(v.len - i), &c);
        if (n < 0) {
            gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s is not UTF-8 (byte %zu)", key, i);
            return;
        }
        if (c < 0x20 || c == 0x7f) {
            gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s holds a control character (byte %zu)",
                          key, i);
            return;
        }
        i += (size_t)n;
    }
    *out = v;
}

/* A str, a non-empty array of str, or a non-empty array of pairs (arrays
 * of two str); each text at most GPUQ_MAX_DOC_BYTES. */
static int decode_text(struct gpuq_job *job, struct gpuq_input *in, const msgpack_object *o) {
    int name_len = (int)(in->name.len > 40 ? 40 : in->name.len);
    int one = o->type == MSGPACK_OBJECT_STR;
    uint32_t n = one ? 1 : o->via.array.size;
    if (n == 0)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': an empty list of texts",
                             name_len, in->name.ptr);
    int pairs = !one && o->via.array.ptr[0].type == MSGPACK_OBJECT_ARRAY;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *row = one ? o : &o->via.array.ptr[i];
        if (pairs && (row->type != MSGPACK_OBJECT_ARRAY || row->via.array.size != 2))
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': pair %u is not an array of "
                                 "two strings", name_len, in->name.ptr, i);
        for (uint32_t k = 0; k < (pairs ? 2u : 1u); k++) {
            const msgpack_object *s = pairs ? &row->via.array.ptr[k] : row;
            if (s->type != MSGPACK_OBJECT_STR)
                return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, pairs ? "input '%.*s': pair %u is not an array "
                                     "of two strings" : "input '%.*s': text %u is not a string", name_len,
                                     in->name.ptr, i);
            if (s->via.str.size > GPUQ_MAX_DOC_BYTES)
                return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': text %u has %u bytes, "
                                     "more than %d", name_len, in->name.ptr, i, s->via.str.size,
                                     GPUQ_MAX_DOC_BYTES);
        }
    }
    in->text = o;
    in->n_texts = n;
    in->pairs = pairs;
    return 0;
}

static int decode_tensor(struct gpuq_job *job, struct gpuq_input *in, const msgpack_object *o) {
    int name_len = (int)(in->name.len > 40 ? 40 : in->name.len);
    const char *name = in->name.ptr;
    if (o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_ARRAY)
        return decode_text(job, in, o);
    if (o->type != MSGPACK_OBJECT_MAP)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': not a tensor map or text",
                             name_len, name);
    if (unique_keys(job, o, "a tensor") != 0) return -1;
    const msgpack_object *dtype = NULL, *shape = NULL, *data = NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (key_is(k, "dtype")) dtype = v;
        else if (key_is(k, "shape")) shape = v;
        else if (key_is(k, "data")) data = v;
        else
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST,
                                 "input '%.*s': unknown tensor key (want dtype, shape, data)",
                                 name_len, name);
    }
    if (!dtype || dtype->type != MSGPACK_OBJECT_STR)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': dtype must be a string",
                             name_len, name);
    int dt = gpuq_dtype_from_name(dtype->via.str.ptr, dtype->via.str.size);
    if (dt < 0)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': unknown dtype '%.*s'",
                             name_len, name, (int)(dtype->via.str.size > 16 ? 16 : dtype->via.str.size),
                             dtype->via.str.ptr);
    in->t.dtype = (enum gpuq_dtype)dt;
    if (!shape || shape->type != MSGPACK_OBJECT_ARRAY)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': shape must be an array",
                             name_len, name);
    if (shape->via.array.size > GPUQ_MAX_DIMS)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': more than %d dims",
                             name_len, name, GPUQ_MAX_DIMS);
    in->t.ndim = (int)shape->via.array.size;
    for (int i = 0; i < in->t.ndim; i++) {
        int64_t d;
        if (get_int(&shape->via.array.ptr[i], &d) != 0 || d < 0)
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST,
                                 "input '%.*s': shape must hold non-negative integers",
                                 name_len, name);
        in->t.shape[i] = d;
    }
    if (!data || data->type != MSGPACK_OBJECT_BIN)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input '%.*s': data must be bin",
                             name_len, name);
    int64_t numel = gpuq_tensor_numel(&in->t);
    size_t isz = gpuq_dtype_size(in->t.dtype);
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / isz ||
        (size_t)numel * isz != data->via.bin.size)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST,
                             "input '%.*s': data has %u bytes, shape and dtype say otherwise",
                             name_len, name, data->via.bin.size);
    in->t.data = data->via.bin.ptr;
    in->t.nbytes = data->via.bin.size;
    return 0;
}

static int decode_inputs(struct gpuq_job *job, const msgpack_object *o) {
    if (o->type != MSGPACK_OBJECT_MAP)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "inputs must be a map of tensors");
    if (o->via.map.size > GPUQ_MAX_INPUTS)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "more than %d inputs", GPUQ_MAX_INPUTS);
    assert(job->n_inputs == 0);     /* a repeated "inputs" key was refused before */
    if (unique_keys(job, o, "inputs") != 0) return -1;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        struct gpuq_input *in = &job->inputs[job->n_inputs];
        if (nonempty_str(&o->via.map.ptr[i].key, &in->name) != 0)
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "input names must be strings");
        if (decode_tensor(job, in, &o->via.map.ptr[i].val) != 0) return -1;
        job->n_inputs++;
    }
    return 0;
}

/* Reads an optional integer field; fails the job when it is not one or is below min. */
static int opt_int(struct gpuq_job *job, const msgpack_object *v, const char *key, int64_t min,
                   int64_t *out) {
    if (!v) return 0;
    if (get_int(v, out) != 0 || *out < min)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s must be an integer >= %lld", key,
                             (long long)min);
    return 0;
}

/* The params' callback_format, read even from a job already failed, whose
 * error result is still POSTed to its callback in the format asked for. */
static void callback_format(struct gpuq_job *job) {
    struct gpuq_str fmt = {NULL, 0};
    if (gpuq_job_param_str(job, "callback_format", &fmt) <= 0) return;
    job->callback_msgpack = fmt.len == 7 && !memcmp(fmt.ptr, "msgpack", 7);
    if (!job->callback_msgpack && !(fmt.len == 4 && !memcmp(fmt.ptr, "json", 4)))
        gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "callback_format must be json or msgpack");
}

enum gpuq_decode gpuq_job_decode(struct gpuq_job *job, const char *buf, size_t len,
                                 const struct gpuq_job_rules *rules) {
    memset(job, 0, sizeof(*job));
    msgpack_unpacked_init(&job->msg);
    job->op = -1;
    job->result_ttl = -1;
    size_t off = 0;
    if (!gpuq_msgpack_sane(buf, len) ||
        msgpack_unpack_next(&job->msg, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
        gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "job is not a msgpack value");
        return GPUQ_DECODE_UNDECODABLE;
    }
    const msgpack_object *root = &job->msg.data;
    if (root->type != MSGPACK_OBJECT_MAP) {
        gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "job is not a msgpack map");
        return GPUQ_DECODE_UNDECODABLE;
    }
    /* First what an error result needs, leniently, so even a bad job is answered. */
    take_name(job, map_get(root, "id"), "id", GPUQ_MAX_ID_LEN, &job->id);
    take_name(job, map_get(root, "reply_to"), "reply_to", GPUQ_MAX_ID_LEN, &job->reply_to);
    take_name(job, map_get(root, "callback"), "callback", 2048, &job->callback);
    job->meta = map_get(root, "meta");
    unique_keys(job, root, "the job");

    /* Then everything, strictly. */
    for (uint32_t i = 0; i < root->via.map.size && job->err == GPUQ_ERR_NONE; i++) {
        const msgpack_object *k = &root->via.map.ptr[i].key, *v = &root->via.map.ptr[i].val;
        if (key_is(k, "op")) {
            if (nonempty_str(v, &job->op_name) != 0) {
                gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "op must be a string");
                break;
            }
            for (int o = 0; o < GPUQ_OP_COUNT; o++)
                if (strlen(op_names[o]) == job->op_name.len &&
                    memcmp(op_names[o], job->op_name.ptr, job->op_name.len) == 0)
                    job->op = o;
        } else if (key_is(k, "inputs")) {
            decode_inputs(job, v);
        } else if (key_is(k, "params")) {
            if (v->type != MSGPACK_OBJECT_MAP) {
                gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "params must be a map");
                break;
            }
            for (uint32_t p = 0; p < v->via.map.size; p++)
                if (v->via.map.ptr[p].key.type != MSGPACK_OBJECT_STR)
                    gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "params keys must be strings");
            unique_keys(job, v, "params");
            job->params = v;
        } else if (key_is(k, "model")) {
            if (nonempty_str(v, &job->model) != 0)
                gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "model must be a string");
        } else if (key_is(k, "callback") && v->type == MSGPACK_OBJECT_STR &&
                   !(v->via.str.size > 7 && !memcmp(v->via.str.ptr, "http://", 7)) &&
                   !(v->via.str.size > 8 && !memcmp(v->via.str.ptr, "https://", 8))) {
            gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "callback must be an http:// or https:// URL");
            job->callback.ptr = NULL;   /* never POST to it */
            job->callback.len = 0;
        } else if (key_is(k, "id") || key_is(k, "reply_to") || key_is(k, "callback")) {
            if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0)
                gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%.*s must be a non-empty string",
                              (int)k->via.str.size, k->via.str.ptr);
        } else if (key_is(k, "deadline_ms")) {
            opt_int(job, v, "deadline_ms", 1, &job->deadline_ms);
        } else if (key_is(k, "timeout_ms")) {
            opt_int(job, v, "timeout_ms", 1, &job->timeout_ms);
        } else if (key_is(k, "priority")) {
            opt_int(job, v, "priority", INT64_MIN, &job->priority);
        } else if (key_is(k, "result_ttl")) {
            opt_int(job, v, "result_ttl", 0, &job->result_ttl);
        } else if (!key_is(k, "meta")) {
            if (k->type == MSGPACK_OBJECT_STR)
                gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "unknown job key '%.*s'",
                              (int)(k->via.str.size > 32 ? 32 : k->via.str.size), k->via.str.ptr);
            else
                gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "job keys must be strings");
        }
    }
    if (job->err == GPUQ_ERR_NONE) {
        if (!job->op_name.ptr)
            gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "missing op");
        else if (job->op < 0)
            gpuq_job_fail(job, GPUQ_ERR_UNKNOWN_OP, "unknown op '%.*s'",
                          (int)(job->op_name.len > 32 ? 32 : job->op_name.len), job->op_name.ptr);
        else if (!map_get(root, "inputs"))
            gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "missing inputs");
    }
    if (job->reply_to.ptr && rules && rules->reserved && rules->reserved(rules->ctx, job->reply_to)) {
        gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "reply_to names one of the queue's own keys");
        job->reply_to = (struct gpuq_str){NULL, 0};     /* never push to it, whatever else is wrong */
    }
    callback_format(job);
    return job->err == GPUQ_ERR_NONE ? GPUQ_DECODE_OK : GPUQ_DECODE_INVALID;
}

void gpuq_job_free(struct gpuq_job *job) {
    if (job) msgpack_unpacked_destroy(&job->msg);
}

const struct gpuq_input *gpuq_job_find(const struct gpuq_job *job, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < job->n_inputs; i++)
        if (job->inputs[i].name.len == n && memcmp(job->inputs[i].name.ptr, name, n) == 0)
            return &job->inputs[i];
    return NULL;
}

const struct gpuq_tensor *gpuq_job_input(const struct gpuq_job *job, const char *name) {
    const struct gpuq_input *in = gpuq_job_find(job, name);
    return in && !in->text ? &in->t : NULL;
}

struct gpuq_str gpuq_input_pair(const struct gpuq_input *in, int64_t i, int second) {
    const msgpack_object *s = &in->text->via.array.ptr[i].via.array.ptr[second ? 1 : 0];
    return (struct gpuq_str){s->via.str.ptr, s->via.str.size};
}

struct gpuq_str gpuq_input_text(const struct gpuq_input *in, int64_t i) {
    const msgpack_object *s = in->text->type == MSGPACK_OBJECT_STR ? in->text
                                                                    : &in->text->via.array.ptr[i];
    return (struct gpuq_str){s->via.str.ptr, s->via.str.size};
}

/* ---- params ---- */

static const msgpack_object *param(struct gpuq_job *job, const char *key) {
    return map_get(job->params, key);
}


static int number(const msgpack_object *v, double *out) {
    int64_t i;
    if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) {
        *out = v->via.f64;
        return 0;
    }
    if (get_int(v, &i) == 0) {
        *out = (double)i;
        return 0;
    }
    return -1;
}

int gpuq_job_param_f64(struct gpuq_job *job, const char *key, double *out) {
    const msgpack_object *v = param(job, key);
    if (!v) return 0;
    if (number(v, out) == 0) return 1;
    return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "param %s must be a number", key);
}

int gpuq_job_param_i64(struct gpuq_job *job, const char *key, int64_t *out) {
    const msgpack_object *v = param(job, key);
    if (!v) return 0;
    if (get_int(v, out) == 0) return 1;
    return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "param %s must be an integer", key);
}

int gpuq_job_param_bool(struct gpuq_job *job, const char *key, int *out) {
    const msgpack_object *v = param(job, key);
    if (!v) return 0;
    if (v->type == MSGPACK_OBJECT_BOOLEAN) {
        *out = v->via.boolean;
        return 1;
    }
    return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "param %s must be a boolean", key);
}

int gpuq_job_param_str(struct gpuq_job *job, const char *key, struct gpuq_str *out) {
    const msgpack_object *v = param(job, key);
    if (!v) return 0;
    if (v->type == MSGPACK_OBJECT_STR) {
        out->ptr = v->via.str.ptr;
        out->len = v->via.str.size;
        return 1;
    }
    return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "param %s must be a string", key);
}

int gpuq_job_param_map(struct gpuq_job *job, const char *key, const msgpack_object **out) {
    const msgpack_object *v = param(job, key);
    if (!v) return 0;
    if (v->type == MSGPACK_OBJECT_MAP) {
        *out = v;
        return 1;
    }
    return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "param %s must be a map", key);
}

int gpuq_job_param_f64s(struct gpuq_job *job, const char *key, double *out, int max, int *n) {
    const msgpack_object *v = param(job, key);
    *n = 0;
    if (!v) return 0;
    if (number(v, out) == 0) {
        *n = 1;
        return 1;
    }
    if (v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size <= (uint32_t)max) {
        for (uint32_t i = 0; i < v->via.array.size; i++)
            if (number(&v->via.array.ptr[i], &out[i]) != 0) goto bad;
        *n = (int)v->via.array.size;
        return 1;
    }
bad:
    return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "param %s must be a number or an array of at "
                         "most %d numbers", key, max);
}

/* ---- results ---- */

static int pack_cstr(msgpack_packer *pk, const char *s) {
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

int gpuq_error_encode(msgpack_sbuffer *sb, enum gpuq_err err, const char *msg) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 2);
    rc |= pack_cstr(&pk, "code") | pack_cstr(&pk, err_codes[err]);
    rc |= pack_cstr(&pk, "message") | pack_cstr(&pk, msg ? msg : "");
    return rc ? -1 : 0;
}

static int pack_tensor(msgpack_packer *pk, const struct gpuq_tensor *t) {
    int rc = msgpack_pack_map(pk, 3);
    rc |= pack_cstr(pk, "dtype") | pack_cstr(pk, gpuq_dtype_name(t->dtype));
    rc |= pack_cstr(pk, "shape") | msgpack_pack_array(pk, (size_t)t->ndim);
    for (int i = 0; i < t->ndim; i++) rc |= msgpack_pack_int64(pk, t->shape[i]);
    rc |= pack_cstr(pk, "data") | msgpack_pack_bin_with_body(pk, t->data, t->nbytes);
    return rc;
}

int gpuq_result_encode(msgpack_sbuffer *sb, const struct gpuq_result *r) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int ok = r->err == GPUQ_ERR_NONE;
    int rc = msgpack_pack_map(&pk, 5 + (r->meta != NULL) + (r->worker != NULL));
    rc |= pack_cstr(&pk, "id") | msgpack_pack_str_with_body(&pk, r->id.ptr, r->id.len);
    rc |= pack_cstr(&pk, "status") | pack_cstr(&pk, ok ? "ok" : "error");
    rc |= pack_cstr(&pk, "outputs") | msgpack_pack_map(&pk, ok ? (size_t)r->n_outputs : 0);
    for (int i = 0; ok && i < r->n_outputs; i++) {
        const struct gpuq_output *out = &r->outputs[i];
        rc |= pack_cstr(&pk, out->name);
        if (!out->texts) {
            rc |= pack_tensor(&pk, &out->t);
            continue;
        }
        rc |= msgpack_pack_array(&pk, (size_t)out->n_texts);
        for (int64_t k = 0; k < out->n_texts; k++)
            rc |= msgpack_pack_str_with_body(&pk, out->texts[k].ptr, out->texts[k].len);
    }
    rc |= pack_cstr(&pk, "error");
    if (ok) rc |= msgpack_pack_nil(&pk);
    else rc |= gpuq_error_encode(sb, r->err, r->errmsg);
    if (r->meta) rc |= pack_cstr(&pk, "meta") | msgpack_pack_object(&pk, *r->meta);
    rc |= pack_cstr(&pk, "timing") | msgpack_pack_map(&pk, 4);
    rc |= pack_cstr(&pk, "queue_us") | msgpack_pack_int64(&pk, r->queue_us);
    rc |= pack_cstr(&pk, "compute_us") | msgpack_pack_int64(&pk, r->compute_us);
    rc |= pack_cstr(&pk, "total_us") | msgpack_pack_int64(&pk, r->total_us);
    rc |= pack_cstr(&pk, "batch_size") | msgpack_pack_int64(&pk, r->batch_size);
    if (r->worker) rc |= pack_cstr(&pk, "worker") | pack_cstr(&pk, r->worker);
    return rc ? -1 : 0;
}
