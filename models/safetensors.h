/* safetensors.h -- reader for the safetensors format (8-byte little-endian
 * header length, JSON header, raw little-endian data).
 *
 * gpuq_safetensors_parse does no I/O: it validates a byte image and returns
 * views into it, so it is tested and fuzzed on buffers. */
#ifndef GPUQ_SAFETENSORS_H
#define GPUQ_SAFETENSORS_H

#include "base/tensor.h"

struct gpuq_st_entry {
    char *name;
    struct gpuq_tensor t;   /* data points into the image */
};

struct gpuq_safetensors {
    unsigned char *image;   /* owned only when loaded from a file */
    size_t image_len;
    struct gpuq_st_entry *entries;
    int n_entries;
    char **meta;            /* __metadata__ as key, value, key, value ... */
    int n_meta;
};

/* Parses buf (borrowed: it must outlive st). Returns 0, or -1 with a reason
 * in err; on failure st holds nothing and needs no free. */
int gpuq_safetensors_parse(struct gpuq_safetensors *st, const unsigned char *buf,
                           size_t len, char *err, size_t errlen);

/* Reads path into memory and parses it; st then owns the image. */
int gpuq_safetensors_load(struct gpuq_safetensors *st, const char *path, char *err,
                          size_t errlen);

/* NULL when absent. */
const struct gpuq_tensor *gpuq_safetensors_get(const struct gpuq_safetensors *st,
                                               const char *name);
const char *gpuq_safetensors_meta(const struct gpuq_safetensors *st, const char *key);

/* Copies the float tensor name out as f32 (malloc'd, the caller frees), after
 * checking it has ndim dims equal to shape (-1: any size). NULL with a
 * reason in err when it is missing, not float, or of another shape. */
float *gpuq_safetensors_f32(const struct gpuq_safetensors *st, const char *name, int ndim,
                            const int64_t *shape, char *err, size_t errlen);

/* A model's weight: prefix + name (its %d the layer) as f32 of shape [d0]
 * (d1 0) or [d0, d1] (-1: any size); a LayerNorm's weight and bias may
 * stand under their old names, gamma and beta. NULL with a reason in err. */
float *gpuq_safetensors_take(const struct gpuq_safetensors *st, const char *prefix, const char *name, int layer,
                             int64_t d0, int64_t d1, char *err, size_t errlen);

/* parts weights (names[p] as for _take, of shape [rows[p], d1]) stacked by
 * rows into one malloc'd f32 array: a fused q, k, v or gate, up. NULL with
 * a reason in err. */
float *gpuq_safetensors_stack(const struct gpuq_safetensors *st, const char *prefix, const char *const *names,
                              int parts, int layer, const int64_t *rows, int64_t d1, char *err, size_t errlen);

/* Frees what st holds; accepts a zeroed struct. */
void gpuq_safetensors_free(struct gpuq_safetensors *st);

#endif
