/* pool.c -- size-class free lists of output buffers. */
#include "worker/pool.h"

#include <stdlib.h>

static int size_class(size_t bytes) {
    int c = 8;
    while (c < GPUQ_POOL_CLASSES && ((size_t)1 << c) < bytes) c++;
    return c;
}

void *gpuq_pool_get(struct gpuq_out_pool *p, size_t bytes) {
    int c = size_class(bytes);
    if (c >= GPUQ_POOL_CLASSES) return NULL;
    void *b = p->free[c];
    if (b) {
        p->free[c] = *(void **)b;
        return b;
    }
    return malloc((size_t)1 << c);
}

void gpuq_pool_put(struct gpuq_out_pool *p, void *buf, size_t bytes) {
    if (!buf) return;
    int c = size_class(bytes);
    if (c > GPUQ_POOL_KEEP) {   /* an outsized job's: give it back, not to the pool */
        free(buf);
        return;
    }
    *(void **)buf = p->free[c];
    p->free[c] = buf;
}

void gpuq_pool_free(struct gpuq_out_pool *p) {
    for (int c = 0; c < GPUQ_POOL_CLASSES; c++)
        while (p->free[c]) {
            void *b = p->free[c];
            p->free[c] = *(void **)b;
            free(b);
        }
}
