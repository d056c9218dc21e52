/* npy.h -- NumPy .npy arrays for `gpuq enqueue`: parse bytes (no I/O) and
 * write a tensor as .npy. */
#ifndef GPUQ_NPY_H
#define GPUQ_NPY_H

#include <stdio.h>

#include "base/tensor.h"

/* Parses a .npy image; t->data points into buf. Returns 0 or -1 with err. */
int gpuq_npy_parse(struct gpuq_tensor *t, const unsigned char *buf, size_t len, char *err,
                   size_t errlen);

/* Writes t as a version 1.0 .npy file. Returns 0 or -1 (errno set). */
int gpuq_npy_write(FILE *f, const struct gpuq_tensor *t);

#endif
