/* bits.h -- a knn index's binary form, for Hamming search: one bit per
 * component, packed as numpy's packbits does (first component in the high
 * bit of the first byte), each row padded with zero bits to a whole number
 * of 64-bit words. */
#ifndef GPUQ_INDEX_BITS_H
#define GPUQ_INDEX_BITS_H

#include <stddef.h>
#include <stdint.h>

#include "models/index/index.h"
#include "models/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of one packed row of d components, as a client sends it: ceil(d/8). */
static inline int gpuq_index_bits_width(int d) { return (d + 7) / 8; }

/* Sets m->bits and m->bits_stride for an index whose embeddings are loaded:
 * from the file's `binary` tensor (u8 [N, ceil(d/8)], or i8 of those bytes
 * less 128) when st has one, else the sign bits of the embeddings (bit set
 * where the component is > 0). Bits past d in a row are cleared. 0, or -1
 * with a reason in why. */
int gpuq_index_bits_load(struct gpuq_index *m, const struct gpuq_safetensors *st, char *why,
                         size_t whylen);

/* Packs row x of d floats into dst (stride bytes, zero-padded): bit set
 * where x > 0. */
void gpuq_index_bits_pack(const float *x, int d, uint8_t *dst, int stride);

#ifdef __cplusplus
}
#endif
#endif
