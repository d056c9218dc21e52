/* json.h -- msgpack values as JSON text, for webhook bodies and JSON
 * results, losslessly: maps become objects whose keys are strings (a str or
 * bin key as its value converts, any other key as its JSON text), bin
 * becomes a base64 string, ext becomes {"ext": type, "data": base64}. A key
 * inside more than 4 other non-string keys becomes the base64 of its
 * msgpack, so nested keys cannot make the text grow exponentially.
 * Floats keep every bit (NaN and the infinities as the strings "NaN",
 * "Infinity", "-Infinity"); a str byte that is not UTF-8 becomes U+FFFD.
 * No I/O. */
#ifndef GPUQ_JSON_H
#define GPUQ_JSON_H

#include <msgpack.h>
#include <stddef.h>

/* Converts the msgpack value in buf. Returns malloc'd NUL-terminated JSON
 * text (the caller frees it) and its length, or NULL when buf is not one
 * msgpack value or memory ran out. */
char *gpuq_json_from_msgpack(const char *buf, size_t len, size_t *out_len);
/* The same for a value already unpacked; NULL only when memory ran out. */
char *gpuq_json_from_object(const msgpack_object *o, size_t *out_len);

/* Converts a JSON job to its msgpack twin, appended to out: the same map,
 * with each input tensor's base64 "data" as bin (data that is not base64
 * stays a string, for the job decoder to reject). Returns 0, or -1 when the
 * text is not a JSON object (then the job cannot even be answered). */
int gpuq_json_job_to_msgpack(const char *text, size_t len, msgpack_sbuffer *out);

/* Standard base64 of n bytes into a malloc'd NUL-terminated string. */
char *gpuq_base64(const void *data, size_t n);

#endif
