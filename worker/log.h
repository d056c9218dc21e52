/* log.h -- one line per event on stderr: time, level, message; as text or JSON. */
#ifndef GPUQ_LOG_H
#define GPUQ_LOG_H

enum gpuq_log_level { GPUQ_LOG_DEBUG, GPUQ_LOG_INFO, GPUQ_LOG_WARN, GPUQ_LOG_ERROR };

void gpuq_log_set_level(enum gpuq_log_level level);
/* json: one JSON object per line ({"ts", "level", "msg"}) instead of text. */
void gpuq_log_set_json(int json);
void gpuq_log(enum gpuq_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) gpuq_log(GPUQ_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) gpuq_log(GPUQ_LOG_INFO, __VA_ARGS__)
#define log_warn(...) gpuq_log(GPUQ_LOG_WARN, __VA_ARGS__)
#define log_error(...) gpuq_log(GPUQ_LOG_ERROR, __VA_ARGS__)

#endif
