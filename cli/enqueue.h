/* enqueue.h -- `gpuq enqueue`. */
#ifndef GPUQ_ENQUEUE_H
#define GPUQ_ENQUEUE_H

#include <stddef.h>

/* Returns the process exit status: 0 ok, 1 an error result or Redis error,
 * 2 bad flags or unreachable Redis, 3 timed out waiting. */
int gpuq_enqueue_main(int argc, char **argv);

/* Prints a result (msgpack, or JSON text from a JSON job) for a person, or
 * with json as one line of JSON (tensor data base64, as JSON results are);
 * with out_dir, writes its outputs there as NAME.npy. Returns 1 when its
 * status is ok, else 0. */
int gpuq_print_result(const char *bytes, size_t len, const char *out_dir, int json);

#endif
