/* enqueue.c -- `gpuq enqueue`: submit jobs from the shell, optionally wait
 * for their results and print them. */
#include "worker/clock.h"
#include "cli/enqueue.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "queue/client.h"
#include "queue/json.h"
#include "queue/stream.h"
#include "cli/target.h"
#include "cli/npy.h"

#define MAX_ARGS 16

struct input {
    char name[64];
    struct gpuq_tensor t;
    unsigned char *owned;
};

struct args {
    struct gpuq_cli_target t;
    const char *op, *model, *id, *meta, *out;
    const char *params[MAX_ARGS];
    int n_params;
    struct input inputs[MAX_ARGS];
    int n_inputs;
    const char *texts[MAX_ARGS];    /* --text: the input "text", one row each */
    int n_texts;
    long long priority, timeout_ms, deadline_ms, result_ttl, count;
    double wait_s;
    int quiet;
    msgpack_sbuffer meta_packed;    /* --meta as msgpack, packed once */
};

static void usage(FILE *f) {
    fprintf(f,
        "usage: gpuq enqueue --op OP --input NAME=SOURCE [flags]\n\n"
        "Puts jobs on a gpuq queue; with --wait, waits for their results and prints them.\n\n"
        "  --op OP                 ");
    for (int op = 0; op < GPUQ_OP_COUNT; op++)
        fprintf(f, "%s %s", op ? "," : "", gpuq_op_name((enum gpuq_op)op));
    fprintf(f, "\n"
        "  --input NAME=SOURCE      SOURCE: a .npy file, or rand:D1xD2[...][:dtype] (uniform in\n"
        "                           [-1, 1), or [0, 255] for u8; dtype f32 by default); repeatable\n"
        "  --text TEXT              a text of the input \"text\" (embed): one row each; repeatable\n"
        "  --model NAME             model or index the op runs on\n"
        "  --param KEY=VALUE        true/false, a number, [n,n,...] or a string; repeatable\n"
        "  --id ID                  job id (ID-0, ID-1, ... with --count)\n"
        "  --priority N, --timeout-ms N, --deadline-ms N, --result-ttl S\n"
        "  --meta JSON              echoed back in the result: a JSON value ({\"k\": 1} is sent as\n"
        "                           a map), or any other text as a string\n"
        "  --count N                enqueue N copies [1]\n"
        "  --wait SECONDS           wait this long for all results and print them [0: do not wait]\n"
        "  --out DIR                write the first result's outputs as DIR/NAME.npy\n"
        "  --quiet                  with --count: print the summary only\n"
        "  --redis URL, --queue Q, --prefix P   as for gpuq worker (also GPUQ_REDIS, ...)\n"
        "  --redis-ca F, --redis-cert F, --redis-key F, --redis-insecure   rediss://: as for gpuq worker\n");
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    long n;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* rand:2x3:f16 -> random data of that shape and dtype */
static int random_input(struct input *in, const char *spec, char *err, size_t errlen) {
    const char *p = spec + 5, *colon = strchr(p, ':');
    struct gpuq_tensor *t = &in->t;
    t->dtype = GPUQ_DTYPE_F32;
    if (colon) {
        int dt = gpuq_dtype_from_name(colon + 1, strlen(colon + 1));
        if (dt < 0) goto bad;
        t->dtype = (enum gpuq_dtype)dt;
    }
    while (p && *p && *p != ':') {
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 1 || t->ndim == GPUQ_MAX_DIMS) goto bad;
        t->shape[t->ndim++] = d;
        p = *end == 'x' ? end + 1 : end;
    }
    int64_t n = gpuq_tensor_numel(t);
    if (t->ndim == 0 || n < 0 || n > (1 << 28)) goto bad;
    t->nbytes = (size_t)n * gpuq_dtype_size(t->dtype);
    if (!(in->owned = malloc(t->nbytes))) goto bad;
    for (int64_t i = 0; i < n; i++) {
        float v = (float)rand() / ((float)RAND_MAX + 1.0f) * 2.0f - 1.0f;
        unsigned char *dst = in->owned + i * gpuq_dtype_size(t->dtype);
        uint32_t bits;
        memcpy(&bits, &v, 4);
        switch (t->dtype) {
        case GPUQ_DTYPE_F32: memcpy(dst, &v, 4); break;
        case GPUQ_DTYPE_F64: { double d = v; memcpy(dst, &d, 8); break; }
        case GPUQ_DTYPE_BF16: { uint16_t h = (uint16_t)(bits >> 16); memcpy(dst, &h, 2); break; }
        case GPUQ_DTYPE_F16: { /* |v| < 1: normal or zero halves only */
            uint32_t e = (bits >> 23) & 0xff;
            uint16_t h = (uint16_t)((bits >> 16) & 0x8000);
            if (e > 112) h |= (uint16_t)(((e - 112) << 10) | ((bits >> 13) & 0x3ff));
            memcpy(dst, &h, 2);
            break;
        }
        case GPUQ_DTYPE_U8: *dst = (unsigned char)(rand() & 0xff); break;
        case GPUQ_DTYPE_I8: *dst = (unsigned char)(rand() % 255 - 127); break;
        case GPUQ_DTYPE_I32: { int32_t x = rand() % 201 - 100; memcpy(dst, &x, 4); break; }
        default: { int64_t x = rand() % 201 - 100; memcpy(dst, &x, 8); break; }
        }
    }
    t->data = in->owned;
    return 0;
bad:
    snprintf(err, errlen, "--input %s=%s: want rand:D1xD2[...][:dtype]", in->name, spec);
    return -1;
}

static int add_input(struct args *a, const char *spec, char *err, size_t errlen) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= 64 || a->n_inputs == MAX_ARGS) {
        snprintf(err, errlen, "--input '%s': want NAME=FILE.npy or NAME=rand:SHAPE", spec);
        return -1;
    }
    struct input *in = &a->inputs[a->n_inputs++];
    snprintf(in->name, sizeof(in->name), "%.*s", (int)(eq - spec), spec);
    if (strncmp(eq + 1, "rand:", 5) == 0) return random_input(in, eq + 1, err, errlen);
    size_t len;
    char why[128];
    if (!(in->owned = read_file(eq + 1, &len))) {
        snprintf(err, errlen, "--input %s: cannot read %s", in->name, eq + 1);
        return -1;
    }
    if (gpuq_npy_parse(&in->t, in->owned, len, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "--input %s: %s: %s", in->name, eq + 1, why);
        return -1;
    }
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s) {
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Packs a --param value: true/false, integer, number, [n,...] or string. */
static void pack_value(msgpack_packer *pk, const char *v) {
    char *end;
    if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
        v[0] == 't' ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        return;
    }
    long long i = strtoll(v, &end, 10);
    if (*v && !*end) {
        msgpack_pack_int64(pk, i);
        return;
    }
    double d = strtod(v, &end);
    if (*v && !*end) {
        msgpack_pack_double(pk, d);
        return;
    }
    if (v[0] == '[') {
        double vals[256];
        int n = 0;
        const char *p = v + 1;
        while (*p && *p != ']' && n < 256) {
            vals[n++] = strtod(p, &end);
            if (end == p) break;
            p = end;
            while (*p == ',' || *p == ' ') p++;
        }
        msgpack_pack_array(pk, (size_t)n);
        for (int k = 0; k < n; k++) msgpack_pack_double(pk, vals[k]);
        return;
    }
    pack_str(pk, v);
}

static void encode_job(msgpack_sbuffer *sb, const struct args *a, long long i, const char *reply_to) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    char id[256];
    int n = 2 + !!a->model + !!a->id + !!reply_to + (a->n_params > 0) + !!a->meta +
            (a->priority != 0) + (a->timeout_ms > 0) + (a->deadline_ms > 0) + (a->result_ttl >= 0);
    msgpack_pack_map(&pk, (size_t)n);
    pack_str(&pk, "op");
    pack_str(&pk, a->op);
    pack_str(&pk, "inputs");
    msgpack_pack_map(&pk, (size_t)a->n_inputs + (a->n_texts > 0));
    if (a->n_texts) {
        pack_str(&pk, "text");
        msgpack_pack_array(&pk, (size_t)a->n_texts);
        for (int k = 0; k < a->n_texts; k++) pack_str(&pk, a->texts[k]);
    }
    for (int k = 0; k < a->n_inputs; k++) {
        const struct gpuq_tensor *t = &a->inputs[k].t;
        pack_str(&pk, a->inputs[k].name);
        msgpack_pack_map(&pk, 3);
        pack_str(&pk, "dtype");
        pack_str(&pk, gpuq_dtype_name(t->dtype));
        pack_str(&pk, "shape");
        msgpack_pack_array(&pk, (size_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) msgpack_pack_int64(&pk, t->shape[d]);
        pack_str(&pk, "data");
        msgpack_pack_bin_with_body(&pk, t->data, t->nbytes);
    }
    if (a->model) pack_str(&pk, "model"), pack_str(&pk, a->model);
    if (a->id) {
        if (a->count > 1) snprintf(id, sizeof(id), "%s-%lld", a->id, i);
        else snprintf(id, sizeof(id), "%s", a->id);
        pack_str(&pk, "id");
        pack_str(&pk, id);
    }
    if (reply_to) pack_str(&pk, "reply_to"), pack_str(&pk, reply_to);
    if (a->n_params) {
        pack_str(&pk, "params");
        msgpack_pack_map(&pk, (size_t)a->n_params);
        for (int k = 0; k < a->n_params; k++) {
            const char *eq = strchr(a->params[k], '=');
            msgpack_pack_str_with_body(&pk, a->params[k], (size_t)(eq - a->params[k]));
            pack_value(&pk, eq + 1);
        }
    }
    if (a->meta) pack_str(&pk, "meta"), msgpack_sbuffer_write(sb, a->meta_packed.data, a->meta_packed.size);
    if (a->priority) pack_str(&pk, "priority"), msgpack_pack_int64(&pk, a->priority);
    if (a->timeout_ms > 0) pack_str(&pk, "timeout_ms"), msgpack_pack_int64(&pk, a->timeout_ms);
    if (a->deadline_ms > 0) pack_str(&pk, "deadline_ms"), msgpack_pack_int64(&pk, a->deadline_ms);
    if (a->result_ttl >= 0) pack_str(&pk, "result_ttl"), msgpack_pack_int64(&pk, a->result_ttl);
}

/* ---- printing results ---- */

static const msgpack_object *get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static void print_str(const char *label, const msgpack_object *o) {
    if (o && o->type == MSGPACK_OBJECT_STR)
        printf("%s%.*s\n", label, (int)o->via.str.size, o->via.str.ptr);
}

static int64_t get_i64(const msgpack_object *map, const char *key) {
    const msgpack_object *o = get(map, key);
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)o->via.u64 : 0;
}

/* Turns an output map entry back into a tensor view; 0 on success. */
static int as_tensor(const msgpack_object *o, struct gpuq_tensor *t) {
    const msgpack_object *dt = get(o, "dtype"), *sh = get(o, "shape"), *data = get(o, "data");
    memset(t, 0, sizeof(*t));
    if (!dt || dt->type != MSGPACK_OBJECT_STR || !sh || sh->type != MSGPACK_OBJECT_ARRAY ||
        !data || data->type != MSGPACK_OBJECT_BIN || sh->via.array.size > GPUQ_MAX_DIMS)
        return -1;
    int d = gpuq_dtype_from_name(dt->via.str.ptr, dt->via.str.size);
    if (d < 0) return -1;
    t->dtype = (enum gpuq_dtype)d;
    t->ndim = (int)sh->via.array.size;
    for (int i = 0; i < t->ndim; i++) t->shape[i] = (int64_t)sh->via.array.ptr[i].via.u64;
    t->data = data->via.bin.ptr;
    t->nbytes = data->via.bin.size;
    int64_t n = gpuq_tensor_numel(t);
    return n >= 0 && (size_t)n * gpuq_dtype_size(t->dtype) == t->nbytes ? 0 : -1;
}

static void print_result(const msgpack_object *r, const char *out_dir) {
    print_str("id: ", get(r, "id"));
    print_str("status: ", get(r, "status"));
    const msgpack_object *err = get(r, "error"), *outs = get(r, "outputs"), *tm = get(r, "timing");
    if (err && err->type == MSGPACK_OBJECT_MAP) {
        print_str("error.code: ", get(err, "code"));
        print_str("error.message: ", get(err, "message"));
    }
    for (uint32_t i = 0; outs && outs->type == MSGPACK_OBJECT_MAP && i < outs->via.map.size; i++) {
        const msgpack_object *k = &outs->via.map.ptr[i].key;
        struct gpuq_tensor t;
        if (k->type != MSGPACK_OBJECT_STR || as_tensor(&outs->via.map.ptr[i].val, &t) != 0) continue;
        printf("output %.*s: %s [", (int)k->via.str.size, k->via.str.ptr, gpuq_dtype_name(t.dtype));
        for (int d = 0; d < t.ndim; d++) printf("%s%lld", d ? ", " : "", (long long)t.shape[d]);
        printf("]");
        int64_t n = gpuq_tensor_numel(&t), show = n < 8 ? n : 8;
        for (int64_t j = 0; j < show; j++) {
            double v;
            if (t.dtype == GPUQ_DTYPE_I64) {
                int64_t x;
                memcpy(&x, (const char *)t.data + j * 8, 8);
                v = (double)x;
            } else if (t.dtype == GPUQ_DTYPE_I32) {
                int32_t x;
                memcpy(&x, (const char *)t.data + j * 4, 4);
                v = x;
            } else {
                float x;
                memcpy(&x, (const char *)t.data + j * 4, 4);
                v = x;
            }
            printf("%s%.6g", j ? " " : " ", v);
        }
        printf("%s\n", n > show ? " ..." : "");
        if (out_dir) {
            char path[1024];
            snprintf(path, sizeof(path), "%s/%.*s.npy", out_dir, (int)k->via.str.size, k->via.str.ptr);
            FILE *f = fopen(path, "wb");
            if (!f || gpuq_npy_write(f, &t) != 0) fprintf(stderr, "gpuq enqueue: cannot write %s\n", path);
            if (f) fclose(f);
        }
    }
    const msgpack_object *meta = get(r, "meta");
    if (meta) {
        printf("meta: ");
        msgpack_object_print(stdout, *meta);
        printf("\n");
    }
    if (tm)
        printf("timing: queue_us=%lld compute_us=%lld total_us=%lld batch_size=%lld\n",
               (long long)get_i64(tm, "queue_us"), (long long)get_i64(tm, "compute_us"),
               (long long)get_i64(tm, "total_us"), (long long)get_i64(tm, "batch_size"));
    print_str("worker: ", get(r, "worker"));
}

int gpuq_print_result(const char *bytes, size_t len, const char *out_dir, int json) {
    int ok = 0;
    if (len && bytes[0] == '{') {   /* a JSON job's result is JSON text */
        json_t *j = json_loadb(bytes, len, 0, NULL);
        const char *status = json_string_value(json_object_get(j, "status"));
        ok = status && !strcmp(status, "ok");
        json_decref(j);
        printf("%.*s\n", (int)len, bytes);
        return ok;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (msgpack_unpack_next(&u, bytes, len, &off) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *st = get(&u.data, "status");
        ok = st && st->type == MSGPACK_OBJECT_STR && st->via.str.size == 2 && !memcmp(st->via.str.ptr, "ok", 2);
        size_t n = 0;
        char *text = json ? gpuq_json_from_msgpack(bytes, len, &n) : NULL;
        if (text) printf("%.*s\n", (int)n, text);
        else if (json) printf("{\"status\":\"%s\",\"unprintable\":true}\n", ok ? "ok" : "error");
        else print_result(&u.data, out_dir);
        free(text);
    } else {
        printf("(%zu bytes that are not a msgpack result)\n", len);
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Waits for count results on reply_to; prints the first and a summary. */
static int wait_results(struct gpuq_conn *c, const struct args *a, const char *reply_to, double t0) {
    long long ok = 0, failed = 0, got = 0;
    long long *total = calloc((size_t)a->count, sizeof(long long));
    double deadline = gpuq_mono_s() + a->wait_s;
    int rc = 0;
    char err[256];
    while (got < a->count && total) {
        double left = deadline - gpuq_mono_s();
        char *bytes = NULL;
        size_t len = 0;
        int w = left > 0 ? gpuq_client_wait(c, reply_to, left < 0.01 ? 0.01 : left, &bytes, &len,
                                            err, sizeof(err)) : 0;
        if (w < 0) {
            fprintf(stderr, "gpuq enqueue: %s\n", err);
            rc = 1;
            break;
        }
        if (w == 0) {
            fprintf(stderr, "gpuq enqueue: timed out: %lld of %lld results after %.1f s\n", got,
                    a->count, a->wait_s);
            rc = 3;
            break;
        }
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        if (msgpack_unpack_next(&u, bytes, len, &off) == MSGPACK_UNPACK_SUCCESS) {
            const msgpack_object *st = get(&u.data, "status");
            int is_ok = st && st->type == MSGPACK_OBJECT_STR && st->via.str.size == 2;
            is_ok ? ok++ : failed++;
            total[got] = get_i64(get(&u.data, "timing"), "total_us");
            if (got == 0 && !(a->quiet && a->count > 1)) print_result(&u.data, a->out);
        } else {
            failed++;
        }
        got++;
        msgpack_unpacked_destroy(&u);
        free(bytes);
    }
    double elapsed = gpuq_mono_s() - t0;
    if (a->count > 1 && got > 0) {
        qsort(total, (size_t)got, sizeof(long long), cmp_ll);
        printf("%lld results (%lld ok, %lld errors) in %.3f s: %.0f jobs/s; latency p50 %.2f ms, "
               "p99 %.2f ms\n", got, ok, failed, elapsed, got / elapsed, total[got / 2] / 1000.0,
               total[(got * 99) / 100 < got ? (got * 99) / 100 : got - 1] / 1000.0);
    }
    free(total);
    if (rc == 0 && failed) rc = 1;
    return rc;
}

/* The number flags and their ranges, in the order parse_args stores them. */
static const struct number {
    const char *flag;
    double lo, hi;
    int above, integer;
} numbers[] = {{"--wait", 0, 1e9, 0, 0}, {"--priority", -1e15, 1e15, 0, 1}, {"--timeout-ms", 0, 1e15, 1, 1},
               {"--deadline-ms", 0, 1e15, 1, 1}, {"--result-ttl", 0, 1e15, 0, 1}, {"--count", 1, 1e7, 0, 1}};

static int number_flag(const char *f) {
    for (int k = 0; k < (int)(sizeof(numbers) / sizeof(numbers[0])); k++)
        if (!strcmp(f, numbers[k].flag)) return k;
    return -1;
}

static int parse_args(struct args *a, int argc, char **argv, char *err, size_t errlen) {
    gpuq_cli_target_init(&a->t);
    a->count = 1;
    a->result_ttl = -1;
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) return 1;
        if (!strcmp(f, "--quiet")) { a->quiet = 1; continue; }
        if (gpuq_cli_target_switch(&a->t, f)) continue;
        if (!v) {
            snprintf(err, errlen, "%s needs a value", f);
            return -1;
        }
        i++;
        double n;
        int k;
        if (gpuq_cli_target_flag(&a->t, f, v)) continue;
        if (!strcmp(f, "--op")) a->op = v;
        else if (!strcmp(f, "--model")) a->model = v;
        else if (!strcmp(f, "--id")) a->id = v;
        else if (!strcmp(f, "--meta")) a->meta = v;
        else if (!strcmp(f, "--out")) a->out = v;
        else if (!strcmp(f, "--input")) { if (add_input(a, v, err, errlen)) return -1; }
        else if (!strcmp(f, "--param") && strchr(v, '=') && a->n_params < MAX_ARGS) a->params[a->n_params++] = v;
        else if (!strcmp(f, "--text") && a->n_texts < MAX_ARGS) a->texts[a->n_texts++] = v;
        else if (!strcmp(f, "--text")) {
            snprintf(err, errlen, "--text: at most %d", MAX_ARGS);
            return -1;
        }
        else if ((k = number_flag(f)) >= 0) {
            const struct number *d = &numbers[k];
            if (gpuq_cli_number("enqueue", f, v, d->lo, d->above, d->hi, d->integer, &n) != 0) return -2;
            if (k == 0) a->wait_s = n;
            else *(k == 1 ? &a->priority : k == 2 ? &a->timeout_ms : k == 3 ? &a->deadline_ms
                  : k == 4 ? &a->result_ttl : &a->count) = (long long)n;
        } else if (!strcmp(f, "--param")) {
            snprintf(err, errlen, "--param '%s': want KEY=VALUE, at most %d", v, MAX_ARGS);
            return -1;
        } else {
            snprintf(err, errlen, "%s is not a flag of gpuq enqueue (see gpuq enqueue --help)", f);
            return -1;
        }
    }
    if (!a->op) {
        snprintf(err, errlen, "--op is required (see gpuq enqueue --help)");
        return -1;
    }
    if (a->meta && gpuq_json_value_to_msgpack(a->meta, &a->meta_packed) != 0) {
        msgpack_sbuffer_clear(&a->meta_packed);     /* not JSON: the text itself */
        msgpack_packer pk;
        msgpack_packer_init(&pk, &a->meta_packed, msgpack_sbuffer_write);
        pack_str(&pk, a->meta);
    }
    return 0;
}

int gpuq_enqueue_main(int argc, char **argv) {
    struct args a;
    char err[512], key[512], reply_to[512], first_id[64] = "";
    struct gpuq_conn *c = NULL;
    int result = 2;
    memset(&a, 0, sizeof(a));
    msgpack_sbuffer_init(&a.meta_packed);
    srand(1);
    int p = parse_args(&a, argc, argv, err, sizeof(err));
    if (p == 1) {
        usage(stdout);
        result = 0;
        goto out;
    }
    if (p == -2) goto out;     /* the reason is printed */
    if (p != 0) goto fail;
    if (a.out && mkdir(a.out, 0777) != 0 && access(a.out, W_OK) != 0) {
        snprintf(err, sizeof(err), "--out %s: cannot create the folder", a.out);
        goto fail;
    }
    if (!(c = gpuq_cli_connect(&a.t, "enqueue"))) goto out;
    gpuq_stream_key(key, sizeof(key), a.t.prefix, a.t.queue, "jobs");
    char suffix[128];
    snprintf(suffix, sizeof(suffix), "reply:%ld:%d", (long)time(NULL), (int)getpid());
    gpuq_stream_key(reply_to, sizeof(reply_to), a.t.prefix, a.t.queue, suffix);
    double t0 = gpuq_mono_s();
    enum { CHUNK = 1000 };
    msgpack_sbuffer sbs[CHUNK];
    char *jobs[CHUNK];
    size_t lens[CHUNK];
    for (int i = 0; i < CHUNK; i++) msgpack_sbuffer_init(&sbs[i]);
    for (long long done = 0; done < a.count;) {
        int n = a.count - done < CHUNK ? (int)(a.count - done) : CHUNK;
        for (int i = 0; i < n; i++) {
            msgpack_sbuffer_clear(&sbs[i]);
            encode_job(&sbs[i], &a, done + i, a.wait_s > 0 ? reply_to : NULL);
            jobs[i] = sbs[i].data;
            lens[i] = sbs[i].size;
        }
        if (gpuq_client_enqueue(c, key, jobs, lens, n, done ? NULL : first_id, sizeof(first_id), err,
                                sizeof(err)) != 0) {
            for (int i = 0; i < CHUNK; i++) msgpack_sbuffer_destroy(&sbs[i]);
            result = 1;
            goto fail;
        }
        done += n;
    }
    for (int i = 0; i < CHUNK; i++) msgpack_sbuffer_destroy(&sbs[i]);
    if (a.wait_s <= 0) {
        printf("enqueued %lld job%s on %s (first entry %s)\n", a.count, a.count > 1 ? "s" : "", key,
               first_id);
        result = 0;
        goto out;
    }
    result = wait_results(c, &a, reply_to, t0);
    goto out;
fail:
    fprintf(stderr, "gpuq enqueue: %s\n", err);
out:
    gpuq_conn_free(c);
    for (int i = 0; i < a.n_inputs; i++) free(a.inputs[i].owned);
    msgpack_sbuffer_destroy(&a.meta_packed);
    return result;
}
