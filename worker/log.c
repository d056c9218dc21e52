/* log.c -- stderr logging. */
#include "worker/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum gpuq_log_level min_level = GPUQ_LOG_INFO;
static int as_json;
static const char *names[] = {"debug", "info", "warn", "error"};

void gpuq_log_set_level(enum gpuq_log_level level) { min_level = level; }
void gpuq_log_set_json(int json) { as_json = json; }

/* A JSON string of len bytes; bytes that are not UTF-8 (a job's id or a
 * message quoting it) become '?', so the line is never dropped. */
static json_t *text(const char *s, int len) {
    if (len < 0) len = (int)strlen(s);
    json_t *j = json_stringn(s, (size_t)len);
    if (j) return j;
    char *copy = malloc((size_t)len + 1);
    if (!copy) return NULL;
    for (int i = 0; i < len; i++) copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    j = json_stringn(copy, (size_t)len);
    free(copy);
    return j;
}

/* The fields as (name, bytes, length), those not given skipped. */
#define N_FIELDS 5
static int fields_of(const struct gpuq_log_fields *f, const char **name, const char **v, int *len) {
    int n = 0;
    if (!f) return 0;
#define FIELD(key, ptr, l) if (ptr) name[n] = key, v[n] = ptr, len[n] = l, n++
    FIELD("job_id", f->job_id, f->job_id_len);
    FIELD("queue", f->queue, -1);
    FIELD("op", f->op, -1);
    FIELD("model", f->model, f->model_len);
    FIELD("code", f->code, -1);
#undef FIELD
    return n;
}

static void emit(enum gpuq_log_level level, const struct gpuq_log_fields *f, const char *fmt, va_list ap) {
    char line[1024], ts[32], when[48];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when, sizeof(when), "%s.%03dZ", ts, (int)(tv.tv_usec / 1000));
    vsnprintf(line, sizeof(line), fmt, ap);
    const char *name[N_FIELDS], *v[N_FIELDS];
    int len[N_FIELDS], n = fields_of(f, name, v, len);
    if (as_json) {
        json_t *o = json_pack("{s:s,s:s,s:o*}", "ts", when, "level", names[level], "msg", text(line, -1));
        for (int i = 0; o && i < n; i++) json_object_set_new(o, name[i], text(v[i], len[i]));
        char *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (out) fprintf(stderr, "%s\n", out);
        free(out);
        json_decref(o);
        return;
    }
    char extra[512] = "";
    for (int i = 0, at = 0; i < n && at < (int)sizeof(extra); i++)
        at += snprintf(extra + at, sizeof(extra) - (size_t)at, "%s%s=%.*s", i ? " " : " [", name[i],
                       len[i] < 0 ? (int)strlen(v[i]) : (len[i] > 128 ? 128 : len[i]), v[i]);
    /* one write per line, so lines from threads never interleave */
    fprintf(stderr, "%s %-5s %s%s%s\n", when, names[level], line, extra, n ? "]" : "");
}

void gpuq_log(enum gpuq_log_level level, const char *fmt, ...) {
    if (level < min_level) return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, NULL, fmt, ap);
    va_end(ap);
}

void gpuq_log_job(enum gpuq_log_level level, const struct gpuq_log_fields *f, const char *fmt, ...) {
    if (level < min_level) return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, f, fmt, ap);
    va_end(ap);
}
