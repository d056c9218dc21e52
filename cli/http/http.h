/* http.h -- what the rooms of `gpuq http` share: its settings, the server's
 * state and one request's. The front door is stateless: each request
 * becomes a job on a queue, and its result comes back through the one
 * reply list of the process (waiter.h). */
#ifndef GPUQ_HTTP_H
#define GPUQ_HTTP_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli/http/keys.h"
#include "cli/http/metrics.h"
#include "cli/http/pool.h"
#include "cli/http/waiter.h"
#include "cli/target.h"

struct MHD_Connection;
struct MHD_Daemon;

struct gpuq_http_config {
    struct gpuq_cli_target target;
    char host[256];
    int port;
    const char *api_key_file, *default_model;
    long long max_body, max_inputs, max_concurrency, max_queue, threads, max_connections;
    double request_timeout, connection_timeout, retry_after;
    const char *route_queue[GPUQ_HTTP_ROUTE_COUNT];     /* --route-queue ROUTE=Q */
    int help;
};

struct gpuq_http_rate {         /* a queue's jobs read per second, for the dashboard */
    char queue[128];
    int64_t read;
    double t, rate;
};

struct gpuq_http {
    struct gpuq_http_config cfg;
    struct gpuq_http_keys keys;
    struct gpuq_http_pool *pool;
    struct gpuq_waiter *waiter;
    char reply_list[512];
    char token[40];             /* this process's part of every job id */
    unsigned long long next_id;
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock;       /* rates */
    struct gpuq_http_rate rates[64];
    int n_rates;
};

struct gpuq_http_req {
    struct gpuq_http *srv;
    struct MHD_Connection *conn;
    enum gpuq_http_route route;
    int is_post;
    char path[1024];
    struct gpuq_http_key *key;
    const char *queue;          /* the queue this request's jobs go to */
    double t0;                  /* monotonic, when the headers came */
    int holds_slot;             /* counted in key->in_flight */
    /* the body */
    char *body;
    size_t len, cap;
    int too_large;
    /* the answer */
    int status;
    char *resp;
    size_t resp_len;
    const char *ctype;
    int retry_after;            /* seconds, 0: no header */
    int answered, queued;
    /* waiting for a job's result */
    struct gpuq_wait wait;
    int waiting;
    void (*finish)(struct gpuq_http_req *r);    /* with wait's result: builds the answer */
    void *ctx;
    void (*ctx_free)(void *ctx);
};

/* ---- answers (reply.c) ---- */

/* The answer is text (owned: freed with the request). */
void gpuq_http_answer(struct gpuq_http_req *r, int status, const char *ctype, char *owned, size_t len);
/* The answer is json (its reference taken). */
void gpuq_http_answer_json(struct gpuq_http_req *r, int status, json_t *json);
/* An error: {"error": {"message", "type", "code"}} (TEI's routes: {"error",
 * "error_type", "code"}); code is the protocol's error code or the front
 * door's own (unauthorized, forbidden, not_found, rate_limited, ...). */
void gpuq_http_fail(struct gpuq_http_req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* An error result's {code, message} as an answer, with the status the code
 * maps to (bad_request 400, unknown_model 404, too_large 413, deadline_exceeded
 * 504, ...). */
void gpuq_http_fail_result(struct gpuq_http_req *r, const char *code, const char *message);

/* ---- jobs (jobs.c) ---- */

/* A new job id, unique to this process: "http-<token>-<n>". */
void gpuq_http_job_id(struct gpuq_http *srv, char *buf, size_t cap);
/* Puts a job (field "job": msgpack, or "json": JSON text) on r's queue.
 * With finish, waits for its result first (r->wait.id must be the job's id
 * and the job's reply_to srv->reply_list): the request is suspended until
 * the result, or timeout_s, and then finish builds the answer. Returns 0,
 * or -1 with the answer set (queue full 429, Redis down 503, duplicate id 409). */
int gpuq_http_submit(struct gpuq_http_req *r, const char *field, const char *bytes, size_t len,
                     double timeout_s, void (*finish)(struct gpuq_http_req *r));

/* ---- results (result.c) ---- */

/* A result unpacked: status, the error, the outputs by name. */
struct gpuq_http_result;
struct gpuq_http_result *gpuq_http_result_parse(const char *bytes, size_t len);
void gpuq_http_result_free(struct gpuq_http_result *res);
/* 1 ok, 0 an error result (code and message set), -1 not a result. */
int gpuq_http_result_ok(const struct gpuq_http_result *res, const char **code, const char **message);
/* Output name as f32 rows: data (borrowed) with rows and cols; or i32
 * counts. 0, or -1 when absent or not of that dtype and rank. */
int gpuq_http_result_f32(const struct gpuq_http_result *res, const char *name, const float **data,
                         int64_t *rows, int64_t *cols);
int gpuq_http_result_i32(const struct gpuq_http_result *res, const char *name, const int32_t **data,
                         int64_t *n);
/* Output name of dtype ("f32", "i32", "i64") and rank: its shape and data
 * (borrowed, unaligned: memcpy it). 0, or -1 when absent or otherwise. */
int gpuq_http_result_tensor(const struct gpuq_http_result *res, const char *name, const char *dtype, int rank,
                            int64_t *shape, const void **data);
/* A text output (a list of strings) as a JSON array, or NULL. */
json_t *gpuq_http_result_texts(const struct gpuq_http_result *res, const char *name);
/* The result answered by finish with no result: timed out (504) or the
 * front door stopping (503). 1 when it answered, 0 when there is a result. */
int gpuq_http_result_missing(struct gpuq_http_req *r);

/* ---- routes ---- */

void gpuq_http_embeddings(struct gpuq_http_req *r);    /* openai.c: POST /v1/embeddings */
void gpuq_http_models(struct gpuq_http_req *r);        /* openai.c: GET /v1/models */
void gpuq_http_tei_embed(struct gpuq_http_req *r);     /* tei.c: POST /embed */
void gpuq_http_tei_unserved(struct gpuq_http_req *r);  /* tei.c: /tokenize */
void gpuq_http_tei_rerank(struct gpuq_http_req *r);    /* tei_ops.c: POST /rerank */
void gpuq_http_tei_predict(struct gpuq_http_req *r);   /* tei_ops.c: POST /predict */
void gpuq_http_tei_sparse(struct gpuq_http_req *r);    /* tei_ops.c: POST /embed_sparse */
void gpuq_http_jobs_post(struct gpuq_http_req *r);     /* jobs_api.c: POST /v1/jobs */
void gpuq_http_jobs_get(struct gpuq_http_req *r);      /* jobs_api.c: GET /v1/jobs/{id} */
void gpuq_http_dash_page(struct gpuq_http_req *r);     /* dash.c: GET / */
void gpuq_http_dash_api(struct gpuq_http_req *r);      /* dash.c: /api/... */

/* The models live workers serve on queue (workers.c): a JSON array of the
 * advertised worker entries not yet expired (references owned by the
 * caller), or NULL when Redis cannot be read. */
json_t *gpuq_http_live_workers(struct gpuq_http *srv, const char *queue);

/* The model for an embedding request that names none: --default-model, or
 * the one encoder live workers advertise on r's queue. NULL with the answer
 * set when there is none or several. */
const char *gpuq_http_pick_model(struct gpuq_http_req *r, char *buf, size_t cap);
/* The same for a route whose models advertise one of ops (NULL-terminated). */
const char *gpuq_http_pick_model_for(struct gpuq_http_req *r, const char *const *ops, char *buf, size_t cap);

/* A query parameter of the request, or NULL. */
const char *gpuq_http_query(struct gpuq_http_req *r, const char *name);

/* ---- settings (config.c) ---- */

/* Parses flags and GPUQ_* variables. 0, or -1 with a one-line reason. */
int gpuq_http_config_parse(struct gpuq_http_config *c, int argc, char **argv, char *err, size_t errlen);
void gpuq_http_config_usage(FILE *f);

#endif
