/* json.h -- msgpack values as JSON text, for webhook bodies: maps with
 * string keys become objects, bin becomes a base64 string. No I/O. */
#ifndef GPUQ_JSON_H
#define GPUQ_JSON_H

#include <msgpack.h>
#include <stddef.h>

/* Converts the msgpack value in buf. Returns malloc'd JSON text (the caller
 * frees it) and its length, or NULL when buf is not one msgpack value, holds
 * a map key that is not a string, or memory ran out. */
char *gpuq_json_from_msgpack(const char *buf, size_t len, size_t *out_len);

/* Converts a JSON job to its msgpack twin, appended to out: the same map,
 * with each input tensor's base64 "data" as bin (data that is not base64
 * stays a string, for the job decoder to reject). Returns 0, or -1 when the
 * text is not a JSON object (then the job cannot even be answered). */
int gpuq_json_job_to_msgpack(const char *text, size_t len, msgpack_sbuffer *out);

/* Any JSON value (an object, an array, a string, a number...) as its
 * msgpack twin, appended to out. Returns 0, or -1 when text is not JSON. */
int gpuq_json_value_to_msgpack(const char *text, msgpack_sbuffer *out);

/* Standard base64 of n bytes into a malloc'd NUL-terminated string. */
char *gpuq_base64(const void *data, size_t n);

#endif
