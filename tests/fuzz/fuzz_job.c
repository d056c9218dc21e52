/* fuzz_job.c -- libFuzzer target: the job decoder on arbitrary bytes, then
 * every accessor a worker calls on what it accepted, and the decoder's
 * promises checked (abort when broken).
 *
 * Besides libFuzzer's byte mutations, a structure-aware mutator decodes an
 * input as msgpack and changes its shape the ways a hostile client would:
 * repeats a map entry (a key twice), drops one, moves a value elsewhere,
 * puts edge integers and protocol keys in. Byte flips alone rarely keep a
 * map's count and its entries in step; this does, so it finds what a
 * repeated "inputs" did to the inputs array in seconds. tests/fuzz/job.dict
 * holds the protocol's keys, msgpack-encoded, for the byte mutations. */
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/job.h"

/* libFuzzer's entry points */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static void check_promises(const struct gpuq_job *job) {
    if (job->n_inputs < 0 || job->n_inputs > GPUQ_MAX_INPUTS) abort();
    const struct gpuq_str *names[] = {&job->id, &job->reply_to, &job->callback};
    for (int k = 0; k < 3; k++) {
        if (!names[k]->ptr) continue;
        if (names[k]->len == 0 || names[k]->len > 2048) abort();
        for (size_t i = 0; i < names[k]->len; i++)
            if ((unsigned char)names[k]->ptr[i] < 0x20 || names[k]->ptr[i] == 0x7f) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct gpuq_job job;
    enum gpuq_decode d = gpuq_job_decode(&job, (const char *)data, size, NULL);
    if (d != GPUQ_DECODE_UNDECODABLE) check_promises(&job);
    if (d == GPUQ_DECODE_OK) {
        double x;
        int64_t i;
        int b, n;
        double arr[16];
        struct gpuq_str s;
        gpuq_job_param_f64(&job, "alpha", &x);
        gpuq_job_param_i64(&job, "k", &i);
        gpuq_job_param_bool(&job, "trans_a", &b);
        gpuq_job_param_str(&job, "metric", &s);
        gpuq_job_param_f64s(&job, "mean", arr, 16, &n);
        for (int k = 0; k < job.n_inputs; k++) {
            /* decoded texts and pairs are safe to read in full */
            const struct gpuq_input *in = &job.inputs[k];
            volatile uint8_t seen = 0;
            for (int64_t r = 0; in->text && r < in->n_texts; r++)
                for (int second = 0; second < (in->pairs ? 2 : 1); second++) {
                    struct gpuq_str t = in->pairs ? gpuq_input_pair(in, r, second) : gpuq_input_text(in, r);
                    if (t.len > GPUQ_MAX_DOC_BYTES) abort();
                    for (size_t j = 0; j < t.len; j++) seen += (uint8_t)t.ptr[j];
                }
            (void)seen;
            if (in->text) continue;
            /* decoded tensors are safe to read in full */
            const struct gpuq_tensor *t = &job.inputs[k].t;
            volatile uint8_t sum = 0;
            for (size_t j = 0; j < t->nbytes; j++) sum += ((const uint8_t *)t->data)[j];
            (void)sum;
        }
    }
    gpuq_job_free(&job);
    return 0;
}

/* ---- the structure-aware mutator ---- */

static unsigned rnd(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Collects the maps of the tree, up to cap. */
static int maps_of(msgpack_object *o, msgpack_object **out, int n, int cap) {
    if (n >= cap) return n;
    if (o->type == MSGPACK_OBJECT_MAP) {
        out[n++] = o;
        for (uint32_t i = 0; i < o->via.map.size; i++) n = maps_of(&o->via.map.ptr[i].val, out, n, cap);
    } else if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) n = maps_of(&o->via.array.ptr[i], out, n, cap);
    }
    return n;
}

static const char *const protocol_keys[] = {
    "op", "inputs", "params", "model", "id", "reply_to", "callback", "deadline_ms", "timeout_ms",
    "priority", "result_ttl", "meta", "dtype", "shape", "data", "x", "a", "b", "q", "image", "text", "pairs",
    "query", "documents",
};

static void mutate_map(msgpack_zone *z, msgpack_object *m, unsigned *seed) {
    uint32_t n = m->via.map.size;
    msgpack_object_kv *kv = m->via.map.ptr;
    switch (rnd(seed) % 5) {
    case 0:     /* repeat an entry: the same key twice */
    case 1: {
        if (n == 0) return;
        msgpack_object_kv *grown = msgpack_zone_malloc(z, (n + 1) * sizeof(*grown));
        if (!grown) return;
        memcpy(grown, kv, n * sizeof(*kv));
        grown[n] = kv[rnd(seed) % n];
        m->via.map.ptr = grown;
        m->via.map.size = n + 1;
        break;
    }
    case 2:     /* drop an entry */
        if (n == 0) return;
        kv[rnd(seed) % n] = kv[n - 1];
        m->via.map.size = n - 1;
        break;
    case 3: {   /* a protocol key in place of another */
        if (n == 0) return;
        const char *k = protocol_keys[rnd(seed) % (sizeof(protocol_keys) / sizeof(*protocol_keys))];
        msgpack_object *key = &kv[rnd(seed) % n].key;
        key->type = MSGPACK_OBJECT_STR;
        key->via.str.ptr = k;
        key->via.str.size = (uint32_t)strlen(k);
        break;
    }
    default: {  /* an edge integer for a value */
        static const int64_t edges[] = {0, -1, 1, INT64_MAX, INT64_MIN, INT32_MAX, 1LL << 40};
        if (n == 0) return;
        msgpack_object *v = &kv[rnd(seed) % n].val;
        int64_t e = edges[rnd(seed) % (sizeof(edges) / sizeof(*edges))];
        v->type = e < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER : MSGPACK_OBJECT_POSITIVE_INTEGER;
        if (e < 0) v->via.i64 = e;
        else v->via.u64 = (uint64_t)e;
        break;
    }
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    struct gpuq_job job;
    size_t out = 0;
    /* msgpack-c trusts a container's claimed count: only what the decoder's
     * own checks let through is unpacked (and then mutated in its zone) */
    if (rnd(&seed) % 2) return LLVMFuzzerMutate(data, size, max_size);
    if (gpuq_job_decode(&job, (const char *)data, size, NULL) == GPUQ_DECODE_UNDECODABLE) {
        gpuq_job_free(&job);
        return LLVMFuzzerMutate(data, size, max_size);
    }
    msgpack_object *maps[64];
    for (int i = 0, times = 1 + (int)(rnd(&seed) % 3); i < times; i++) {
        int n = maps_of(&job.msg.data, maps, 0, 64);    /* anew: a map may have become a number */
        if (n > 0) mutate_map(job.msg.zone, maps[rnd(&seed) % (unsigned)n], &seed);
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (msgpack_pack_object(&pk, job.msg.data) == 0 && sb.size <= max_size) {
        memcpy(data, sb.data, sb.size);
        out = sb.size;
    }
    msgpack_sbuffer_destroy(&sb);
    gpuq_job_free(&job);
    return out ? out : LLVMFuzzerMutate(data, size, max_size);
}
