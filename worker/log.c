/* log.c -- stderr logging. */
#include "worker/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static enum gpuq_log_level min_level = GPUQ_LOG_INFO;
static const char *names[] = {"debug", "info", "warn", "error"};

void gpuq_log_set_level(enum gpuq_log_level level) { min_level = level; }

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
    /* one write per line, so lines from threads never interleave */
    fprintf(stderr, "%s.%03dZ %-5s %s\n", ts, (int)(tv.tv_usec / 1000), names[level], line);
}
