/* log.c -- stderr logging. */
#include "worker/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static enum gpuq_log_level min_level = GPUQ_LOG_INFO;
static int as_json;
static const char *names[] = {"debug", "info", "warn", "error"};

void gpuq_log_set_level(enum gpuq_log_level level) { min_level = level; }
void gpuq_log_set_json(int json) { as_json = json; }

void gpuq_log(enum gpuq_log_level level, const char *fmt, ...) {
    if (level < min_level) return;
    char line[1024], ts[32];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    char when[48];
    snprintf(when, sizeof(when), "%s.%03dZ", ts, (int)(tv.tv_usec / 1000));
    if (as_json) {
        json_t *o = json_pack("{s:s,s:s,s:s}", "ts", when, "level", names[level], "msg", line);
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (text) fprintf(stderr, "%s\n", text);
        free(text);
        json_decref(o);
        return;
    }
    /* one write per line, so lines from threads never interleave */
    fprintf(stderr, "%s %-5s %s\n", when, names[level], line);
}
