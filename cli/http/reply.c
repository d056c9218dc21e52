/* reply.c -- answers: JSON bodies and errors in the shapes clients expect
 * (OpenAI's on most routes, TEI's on TEI's routes). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/http/http.h"

void gpuq_http_answer(struct gpuq_http_req *r, int status, const char *ctype, char *owned, size_t len) {
    free(r->resp);
    r->status = status;
    r->ctype = ctype;
    r->resp = owned;
    r->resp_len = len;
    r->answered = 1;
}

void gpuq_http_answer_json(struct gpuq_http_req *r, int status, json_t *json) {
    char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);
    if (!text) {
        gpuq_http_answer(r, 500, "application/json", strdup("{\"error\":{\"message\":\"out of memory\","
                         "\"type\":\"server_error\",\"code\":\"internal\"}}"), 0);
        r->resp_len = r->resp ? strlen(r->resp) : 0;
        return;
    }
    gpuq_http_answer(r, status, "application/json", text, strlen(text));
}

static const char *openai_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 504: return "timeout_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* TEI's error_type for a status (its ErrorType, as its examples write it). */
static const char *tei_type(int status) {
    switch (status) {
    case 429: return "overloaded";
    case 424: case 500: case 504: return "backend";
    case 503: return "unhealthy";
    default: return "validation";
    }
}

void gpuq_http_fail(struct gpuq_http_req *r, int status, const char *code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *body;
    if (r->route == GPUQ_HTTP_ROUTE_EMBED || r->route == GPUQ_HTTP_ROUTE_TEI_OTHER)
        body = json_pack("{s:s, s:s, s:s}", "error", msg, "error_type", tei_type(status), "code", code);
    else
        body = json_pack("{s:{s:s, s:s, s:s}}", "error", "message", msg, "type", openai_type(status), "code", code);
    gpuq_http_answer_json(r, status, body);
}

void gpuq_http_fail_result(struct gpuq_http_req *r, const char *code, const char *message) {
    int tei = r->route == GPUQ_HTTP_ROUTE_EMBED;
    int status = 500;
    if (!strcmp(code, "bad_request") || !strcmp(code, "shape_mismatch")) status = tei ? 413 : 400;
    else if (!strcmp(code, "unknown_model")) status = tei ? 424 : 404;
    else if (!strcmp(code, "unknown_op")) status = 501;
    else if (!strcmp(code, "too_large")) status = 413;
    else if (!strcmp(code, "deadline_exceeded")) status = 504;
    else if (tei) status = 424;
    gpuq_http_fail(r, status, code, "%s", message ? message : code);
}
