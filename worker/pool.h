/* pool.h -- output buffers in power-of-two size classes, reused: a steady
 * stream of jobs allocates nothing once the pool has warmed up. One thread. */
#ifndef GPUQ_POOL_H
#define GPUQ_POOL_H

#include <stddef.h>

#define GPUQ_POOL_CLASSES 40
/* Buffers of classes above this (2^22 words, 16 MiB) are freed when given
 * back: one outsized job must not hold its memory for good. */
#define GPUQ_POOL_KEEP 22

struct gpuq_pool {
    void *free[GPUQ_POOL_CLASSES];  /* free lists, linked through the buffers */
};

/* A buffer of at least words floats; NULL when out of memory or too large. */
float *gpuq_pool_get(struct gpuq_pool *p, size_t words);
/* Gives back a buffer got for words floats; accepts NULL. */
void gpuq_pool_put(struct gpuq_pool *p, float *buf, size_t words);
/* Frees every buffer held. */
void gpuq_pool_free(struct gpuq_pool *p);

#endif
