/* fuzz_json.c -- libFuzzer target: any msgpack value becomes JSON text that
 * a strict JSON parser (jansson) reads back; nothing is refused. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/job.h"
#include "queue/json.h"

/* libFuzzer's entry points */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0, n = 0;
    if (gpuq_msgpack_sane(data, size) &&
        msgpack_unpack_next(&u, (const char *)data, size, &off) == MSGPACK_UNPACK_SUCCESS) {
        char *text = gpuq_json_from_object(&u.data, &n);
        if (!text) abort();     /* only out of memory may refuse */
        json_error_t err;
        json_t *j = json_loadb(text, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        /* not JSON; jansson alone refuses \u0000 in a key and integers past
         * 2^63 - 1, which JSON allows */
        if (!j && !strstr(err.text, "NUL byte in object key") && !strstr(err.text, "too big integer"))
            abort();
        json_decref(j);
        free(text);
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}
