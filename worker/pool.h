/* pool.h -- output buffers in power-of-two size classes, reused: a steady
 * stream of jobs allocates nothing once the pool has warmed up. One thread. */
#ifndef GPUQ_POOL_H
#define GPUQ_POOL_H

#include <stddef.h>

#define GPUQ_POOL_CLASSES 42
/* Buffers of classes above this (2^24 bytes, 16 MiB) are freed when given
 * back: one outsized job must not hold its memory for good. */
#define GPUQ_POOL_KEEP 24

struct gpuq_out_pool {
    void *free[GPUQ_POOL_CLASSES];  /* free lists, linked through the buffers */
};

/* A buffer of at least bytes bytes, aligned for any type; NULL when out of
 * memory or too large. */
void *gpuq_pool_get(struct gpuq_out_pool *p, size_t bytes);
/* Gives back a buffer got for bytes bytes; accepts NULL. */
void gpuq_pool_put(struct gpuq_out_pool *p, void *buf, size_t bytes);
/* Frees every buffer held. */
void gpuq_pool_free(struct gpuq_out_pool *p);

#endif
