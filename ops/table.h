/* table.h -- backends with their kernel tables bound from the ops'
 * descriptors: what the worker and the tests create. */
#ifndef GPUQ_OP_TABLE_H
#define GPUQ_OP_TABLE_H

#include "kernels/backend.h"

/* gpuq_backend_open, then each op's kernel and reserve for the backend's
 * kind (NULL where the op has no kernel there: it runs on the CPU). 0, or
 * -1 with err. */
int gpuq_backend_create(struct gpuq_backend *be, const char *kind, int device, char *err,
                        size_t errlen);

/* A CPU backend, every op bound. 0, or -1 out of memory. */
int gpuq_backend_cpu_init(struct gpuq_backend *be);

#endif
