/* log.h -- one line per event on stderr: time, level, message, and the job's
 * fields where there is a job; as text or JSON. */
#ifndef GPUQ_LOG_H
#define GPUQ_LOG_H

enum gpuq_log_level { GPUQ_LOG_DEBUG, GPUQ_LOG_INFO, GPUQ_LOG_WARN, GPUQ_LOG_ERROR };

/* What a line is about; each field NULL when it does not apply. job_id and
 * model are bytes from a job (not NUL-terminated), with their lengths. */
struct gpuq_log_fields {
    const char *job_id;
    int job_id_len;
    const char *queue, *op;
    const char *model;
    int model_len;
    const char *code;       /* an error code: "unknown_model", ... */
};

void gpuq_log_set_level(enum gpuq_log_level level);
/* json: one JSON object per line ({"ts", "level", "msg"} and the fields
 * given) instead of text. */
void gpuq_log_set_json(int json);
void gpuq_log(enum gpuq_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line about a job: text appends " [job_id=... queue=... ...]". */
void gpuq_log_job(enum gpuq_log_level level, const struct gpuq_log_fields *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...) gpuq_log(GPUQ_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) gpuq_log(GPUQ_LOG_INFO, __VA_ARGS__)
#define log_warn(...) gpuq_log(GPUQ_LOG_WARN, __VA_ARGS__)
#define log_error(...) gpuq_log(GPUQ_LOG_ERROR, __VA_ARGS__)

#endif
