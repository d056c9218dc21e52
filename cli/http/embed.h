/* embed.h -- an embedding request as an embed job, and its result as rows:
 * what the OpenAI and TEI routes share. */
#ifndef GPUQ_HTTP_EMBED_H
#define GPUQ_HTTP_EMBED_H

#include <jansson.h>
#include <msgpack.h>

#include "cli/http/http.h"

/* Packs an embed job for input (a string, an array of strings, an array of
 * token ids, or an array of such arrays: TEI's and OpenAI's shapes) on model,
 * with params (a JSON object of scalars, borrowed; may be NULL), id and the
 * front door's reply list, result_ttl 0 and timeout_ms from the request
 * timeout. Returns the number of rows, or -1 with the answer set (what is
 * wrong with input, named as the route calls it: what). */
int gpuq_http_embed_job(struct gpuq_http_req *r, const json_t *input, const char *what, const char *model,
                        const json_t *params, msgpack_sbuffer *out);

/* Submits it and waits (gpuq_http_submit): 0, or -1 with the answer set. */
int gpuq_http_embed_submit(struct gpuq_http_req *r, const json_t *input, const char *what, const char *model,
                           const json_t *params, void (*finish)(struct gpuq_http_req *r));

/* Appends float f as JSON, shortest text that reads back the same float. */
void gpuq_http_put_float(char **buf, size_t *len, size_t *cap, float f);
/* Appends n bytes of text; -1 when out of memory (then *buf is freed). */
int gpuq_http_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

#endif
