/* job.h -- the job codec: msgpack bytes <-> structs, strict, no I/O.
 *
 * A decoded job borrows from the bytes it was decoded from (strings and
 * tensor data point into them), so the caller keeps those bytes alive until
 * the job is freed. */
#ifndef GPUQ_JOB_H
#define GPUQ_JOB_H

#include <msgpack.h>
#include <stdint.h>

#include "base/tensor.h"
#include "base/op_list.h"

enum gpuq_err {
    GPUQ_ERR_NONE, GPUQ_ERR_BAD_REQUEST, GPUQ_ERR_UNKNOWN_OP, GPUQ_ERR_UNKNOWN_MODEL,
    GPUQ_ERR_SHAPE_MISMATCH, GPUQ_ERR_DEADLINE_EXCEEDED, GPUQ_ERR_TOO_LARGE, GPUQ_ERR_INTERNAL,
    GPUQ_ERR_WEBHOOK_FAILED
};

enum gpuq_decode {
    GPUQ_DECODE_OK,         /* a valid job */
    GPUQ_DECODE_INVALID,    /* a map, but invalid: job->err says why; answer with an error result */
    GPUQ_DECODE_UNDECODABLE /* not msgpack, or not a map: nothing to answer, dead-letter it */
};

struct gpuq_str {
    const char *ptr;        /* not NUL-terminated */
    size_t len;
};

#define GPUQ_MAX_INPUTS 8
#define GPUQ_MAX_ID_LEN 512
/* A text input's strings are at most GPUQ_MAX_DOC_BYTES each (a document
 * the embed op cuts into chunks); an op that takes a text whole takes at
 * most GPUQ_MAX_TEXT_BYTES. */
#define GPUQ_MAX_TEXT_BYTES 65536
#define GPUQ_MAX_DOC_BYTES (8 << 20)

/* An input is a tensor, or text: a msgpack str (one row) or a non-empty
 * array of str (one row each), every str at most GPUQ_MAX_DOC_BYTES.
 * Text bytes are taken as they are; invalid UTF-8 is the op's to read. */
struct gpuq_input {
    struct gpuq_str name;
    struct gpuq_tensor t;       /* a tensor input */
    const msgpack_object *text; /* a text input, else NULL */
    int64_t n_texts;            /* its rows */
    int pairs;                  /* text rows are pairs of str (gpuq_input_pair) */
};

struct gpuq_job {
    msgpack_unpacked msg;   /* owns the decoded object tree */
    int op;                 /* enum gpuq_op; -1 when unknown */
    struct gpuq_str op_name, id, reply_to, callback, model;
    struct gpuq_input inputs[GPUQ_MAX_INPUTS];
    int n_inputs;
    const msgpack_object *params;   /* a map, or NULL */
    const msgpack_object *meta;     /* anything, or NULL */
    int64_t deadline_ms;    /* 0: none */
    int64_t timeout_ms;     /* 0: none */
    int64_t priority;
    int64_t result_ttl;     /* -1: the worker's default */
    int callback_msgpack;   /* params' callback_format is "msgpack": webhooks carry msgpack, not JSON */
    enum gpuq_err err;      /* set with GPUQ_DECODE_INVALID */
    char errmsg[160];
};

/* What a job may not ask of this worker, beyond what the protocol refuses:
 * reserved says whether a key is one reply_to may not name (the served
 * queues' own keys). */
struct gpuq_job_rules {
    int (*reserved)(const void *ctx, struct gpuq_str key);
    const void *ctx;
};

/* Decodes len bytes at buf into job, and validates all of it that needs no
 * op or model: its fields, reply_to against rules (NULL: none), and
 * callback_format. Even an INVALID job has id, reply_to, callback,
 * callback_msgpack and meta filled in where they were usable, so it can be
 * answered; a reply_to it may not name is left empty, never pushed to.
 * gpuq_job_free must be called whatever the outcome. */
enum gpuq_decode gpuq_job_decode(struct gpuq_job *job, const char *buf, size_t len,
                                 const struct gpuq_job_rules *rules);

/* Whether buf is one msgpack value whose containers claim no more elements
 * than bytes remain: msgpack-c allocates a container's slots from its claimed
 * count, so unpack only what passes. */
int gpuq_msgpack_sane(const void *buf, size_t len);
void gpuq_job_free(struct gpuq_job *job);

/* Marks the job failed with code and a printf-style message; returns -1. */
int gpuq_job_fail(struct gpuq_job *job, enum gpuq_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The tensor input called name, or NULL (also when it is text). */
const struct gpuq_tensor *gpuq_job_input(const struct gpuq_job *job, const char *name);
/* The input called name, tensor or text, or NULL. */
const struct gpuq_input *gpuq_job_find(const struct gpuq_job *job, const char *name);
/* Text i (< in->n_texts) of a text input of single texts; the first or
 * second text of pair i of one of pairs. */
struct gpuq_str gpuq_input_text(const struct gpuq_input *in, int64_t i);
struct gpuq_str gpuq_input_pair(const struct gpuq_input *in, int64_t i, int second);

/* Typed params: 0 when absent (out untouched), 1 when read, -1 (and the job
 * failed with bad_request) when present with the wrong type. */
int gpuq_job_param_f64(struct gpuq_job *job, const char *key, double *out);
int gpuq_job_param_i64(struct gpuq_job *job, const char *key, int64_t *out);
int gpuq_job_param_bool(struct gpuq_job *job, const char *key, int *out);
int gpuq_job_param_str(struct gpuq_job *job, const char *key, struct gpuq_str *out);
int gpuq_job_param_map(struct gpuq_job *job, const char *key, const msgpack_object **out);
/* A number or an array of at most max numbers; *n says how many were read. */
int gpuq_job_param_f64s(struct gpuq_job *job, const char *key, double *out, int max, int *n);

const char *gpuq_op_name(enum gpuq_op op);
const char *gpuq_err_code(enum gpuq_err err);

/* ---- results ---- */

struct gpuq_output {
    const char *name;
    struct gpuq_tensor t;
    const struct gpuq_str *texts;   /* not NULL: the output is these n_texts strings, not t */
    int64_t n_texts;
};

struct gpuq_result {
    struct gpuq_str id;
    enum gpuq_err err;          /* NONE: status ok */
    const char *errmsg;
    const struct gpuq_output *outputs;
    int n_outputs;
    const msgpack_object *meta;
    int64_t queue_us, compute_us, total_us, batch_size;
    const char *worker;
};

/* Appends the msgpack result map to sb. Returns 0, -1 when out of memory. */
int gpuq_result_encode(msgpack_sbuffer *sb, const struct gpuq_result *r);

/* Appends the error map {"code", "message"} to sb. */
int gpuq_error_encode(msgpack_sbuffer *sb, enum gpuq_err err, const char *msg);

#endif
