/* jobs_api.c -- any job, in the protocol's JSON form: POST /v1/jobs puts it
 * on the queue (?wait=S: and answers its result), GET /v1/jobs/{id} reads
 * its stored result. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http/http.h"
#include "queue/json.h"
#include "queue/stream.h"

/* The result as JSON text (a JSON job's result is JSON already). */
static void answer_result(struct gpuq_http_req *r, const char *bytes, size_t len) {
    if (len && bytes[0] == '{') {
        char *copy = malloc(len + 1);
        if (copy) memcpy(copy, bytes, len), copy[len] = 0;
        if (copy) gpuq_http_answer(r, 200, "application/json", copy, len);
        else gpuq_http_fail(r, 500, "internal", "out of memory");
        return;
    }
    size_t n = 0;
    char *text = gpuq_json_from_msgpack(bytes, len, &n);
    if (text) gpuq_http_answer(r, 200, "application/json", text, n);
    else gpuq_http_fail(r, 502, "internal", "the stored result is neither msgpack nor JSON");
}

static void finish(struct gpuq_http_req *r) {
    if (gpuq_http_result_missing(r)) return;
    answer_result(r, r->wait.bytes, r->wait.len);
}

static int valid_id(const char *s, size_t n) {
    if (n == 0 || n > 159) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

void gpuq_http_jobs_post(struct gpuq_http_req *r) {
    json_error_t jerr;
    json_t *job = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr);
    const char *wait = gpuq_http_query(r, "wait");
    double wait_s = 0;
    char *text = NULL;
    if (!json_is_object(job)) {
        gpuq_http_fail(r, 400, "bad_request", job ? "a job is a JSON object" : "the body is not JSON: %s "
                       "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_string(json_object_get(job, "op"))) {
        gpuq_http_fail(r, 400, "bad_request", "'op' is required: the op's name, a string");
        goto out;
    }
    if (json_object_get(job, "reply_to")) {
        gpuq_http_fail(r, 400, "bad_request", "'reply_to' is the front door's to set: use ?wait=S to wait for "
                       "the result, or GET /v1/jobs/{id}");
        goto out;
    }
    if (wait) {
        char *end;
        wait_s = strtod(wait, &end);
        if (!*wait || *end || !isfinite(wait_s) || wait_s <= 0 || wait_s > r->srv->cfg.request_timeout) {
            gpuq_http_fail(r, 400, "bad_request", "?wait=%s: want seconds above 0, at most %.0f (--request-timeout)",
                           wait, r->srv->cfg.request_timeout);
            goto out;
        }
    }
    const json_t *id = json_object_get(job, "id");
    if (id && (!json_is_string(id) || !valid_id(json_string_value(id), json_string_length(id)))) {
        gpuq_http_fail(r, 400, "bad_request", "'id' must be a string of 1 to 159 bytes with no control characters");
        goto out;
    }
    if (id) snprintf(r->wait.id, sizeof(r->wait.id), "%s", json_string_value(id));
    else gpuq_http_job_id(r->srv, r->wait.id, sizeof(r->wait.id));
    json_object_set_new(job, "id", json_string(r->wait.id));
    if (wait_s > 0) json_object_set_new(job, "reply_to", json_string(r->srv->reply_list));
    if (!(text = json_dumps(job, JSON_COMPACT))) {
        gpuq_http_fail(r, 500, "internal", "out of memory");
        goto out;
    }
    if (gpuq_http_submit(r, "json", text, strlen(text), wait_s, wait_s > 0 ? finish : NULL) != 0) goto out;
    if (wait_s <= 0) {
        char where[256];
        snprintf(where, sizeof(where), "/v1/jobs/%s", r->wait.id);
        gpuq_http_answer_json(r, 202, json_pack("{s:s, s:s, s:s, s:s}", "id", r->wait.id, "queue", r->queue,
                                                "status", "queued", "result", where));
    }
out:
    free(text);
    json_decref(job);
}

void gpuq_http_jobs_get(struct gpuq_http_req *r) {
    const char *id = r->path + strlen("/v1/jobs/");
    char key[1024];
    if (!valid_id(id, strlen(id))) {
        gpuq_http_fail(r, 400, "bad_request", "a job id is 1 to 159 bytes with no control characters");
        return;
    }
    gpuq_stream_key(key, sizeof(key), r->srv->cfg.target.prefix, r->queue, "result:");
    snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s", id);
    struct gpuq_conn *c = gpuq_http_pool_get(r->srv->pool, r->queue);
    redisReply *rep = c ? gpuq_conn_command(c, "GET %s", key) : NULL;
    if (!rep) gpuq_http_fail(r, 503, "unavailable", "the queue cannot be reached");
    else if (rep->type == REDIS_REPLY_STRING) answer_result(r, rep->str, rep->len);
    else if (rep->type == REDIS_REPLY_NIL)
        gpuq_http_fail(r, 404, "not_found", "no result for job '%s' on queue '%s' (not done yet, expired, or "
                       "sent with result_ttl 0)", id, r->queue);
    else gpuq_http_fail(r, 502, "internal", "reading the result: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "?");
    if (c) gpuq_http_pool_put(r->srv->pool, r->queue, c, rep == NULL);
    freeReplyObject(rep);
}
