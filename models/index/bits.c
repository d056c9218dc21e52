/* bits.c -- a knn index's binary form (models/index/bits.h). */
#include "models/index/bits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gpuq_index_bits_pack(const float *x, int d, uint8_t *dst, int stride) {
    memset(dst, 0, (size_t)stride);
    for (int j = 0; j < d; j++)
        if (x[j] > 0) dst[j >> 3] |= (uint8_t)(0x80u >> (j & 7));
}

/* The bits past d in the last byte of a row: those a client's padding may set. */
static uint8_t tail_mask(int d) { return d % 8 ? (uint8_t)(0xffu << (8 - d % 8)) : 0xff; }

int gpuq_index_bits_load(struct gpuq_index *m, const struct gpuq_safetensors *st, char *why,
                         size_t whylen) {
    int width = gpuq_index_bits_width(m->dim);
    m->bits_stride = (width + 7) / 8 * 8;
    m->bits = calloc((size_t)m->n_rows, (size_t)m->bits_stride);
    if (!m->bits) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    const struct gpuq_tensor *b = gpuq_safetensors_get(st, "binary");
    if (!b) {
        for (int64_t r = 0; r < m->n_rows; r++)
            gpuq_index_bits_pack(m->embeddings + r * m->dim, m->dim, m->bits + r * m->bits_stride,
                                 m->bits_stride);
        return 0;
    }
    if ((b->dtype != GPUQ_DTYPE_U8 && b->dtype != GPUQ_DTYPE_I8) || b->ndim != 2 ||
        b->shape[0] != m->n_rows || b->shape[1] != width) {
        snprintf(why, whylen, "the tensor binary must be u8 or i8 [%lld, %d], the embeddings' "
                 "packed bits", (long long)m->n_rows, width);
        return -1;
    }
    const uint8_t *src = b->data;
    uint8_t flip = b->dtype == GPUQ_DTYPE_I8 ? 0x80 : 0;    /* int8 holds the byte less 128 */
    for (int64_t r = 0; r < m->n_rows; r++) {
        uint8_t *dst = m->bits + r * m->bits_stride;
        for (int j = 0; j < width; j++) dst[j] = src[r * width + j] ^ flip;
        dst[width - 1] &= tail_mask(m->dim);
    }
    return 0;
}
