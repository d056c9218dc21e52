/* safetensors.c -- validating safetensors reader on top of jansson. */
#include "models/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name; enum gpuq_dtype dt; } st_dtypes[] = {
    {"F32", GPUQ_DTYPE_F32}, {"F16", GPUQ_DTYPE_F16}, {"BF16", GPUQ_DTYPE_BF16},
    {"F64", GPUQ_DTYPE_F64}, {"I8", GPUQ_DTYPE_I8},   {"U8", GPUQ_DTYPE_U8},
    {"I32", GPUQ_DTYPE_I32}, {"I64", GPUQ_DTYPE_I64},
};

static int parse_entry(struct gpuq_st_entry *e, const char *name, json_t *v,
                       const unsigned char *data, size_t data_len, char *err, size_t errlen) {
    json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offs) ||
        json_array_size(offs) != 2) {
        snprintf(err, errlen, "tensor '%s': needs dtype, shape and data_offsets", name);
        return -1;
    }
    int found = -1;
    for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
        if (strcmp(st_dtypes[i].name, json_string_value(dtype)) == 0) found = (int)i;
    if (found < 0) {
        snprintf(err, errlen, "tensor '%s': unsupported dtype %s", name, json_string_value(dtype));
        return -1;
    }
    e->t.dtype = st_dtypes[found].dt;
    if (json_array_size(shape) > GPUQ_MAX_DIMS) {
        snprintf(err, errlen, "tensor '%s': more than %d dims", name, GPUQ_MAX_DIMS);
        return -1;
    }
    e->t.ndim = (int)json_array_size(shape);
    for (int i = 0; i < e->t.ndim; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0) {
            snprintf(err, errlen, "tensor '%s': bad shape", name);
            return -1;
        }
        e->t.shape[i] = json_integer_value(d);
    }
    json_t *b = json_array_get(offs, 0), *end = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(end)) {
        snprintf(err, errlen, "tensor '%s': bad data_offsets", name);
        return -1;
    }
    json_int_t lo = json_integer_value(b), hi = json_integer_value(end);
    int64_t numel = gpuq_tensor_numel(&e->t);
    if (lo < 0 || hi < lo || (uint64_t)hi > data_len || numel < 0 ||
        (uint64_t)numel > (uint64_t)(hi - lo) / gpuq_dtype_size(e->t.dtype) ||
        (uint64_t)numel * gpuq_dtype_size(e->t.dtype) != (uint64_t)(hi - lo)) {
        snprintf(err, errlen, "tensor '%s': data_offsets do not match shape or file size", name);
        return -1;
    }
    e->t.data = data + lo;
    e->t.nbytes = (size_t)(hi - lo);
    e->name = strdup(name);
    return e->name ? 0 : -1;
}

static int parse_meta(struct gpuq_safetensors *st, json_t *meta, char *err, size_t errlen) {
    if (!json_is_object(meta)) {
        snprintf(err, errlen, "__metadata__ is not an object");
        return -1;
    }
    st->meta = calloc(2 * json_object_size(meta) + 1, sizeof(char *));
    if (!st->meta) return -1;
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v)) {
            snprintf(err, errlen, "__metadata__ value of '%s' is not a string", k);
            return -1;
        }
        st->meta[st->n_meta++] = strdup(k);
        st->meta[st->n_meta++] = strdup(json_string_value(v));
        if (!st->meta[st->n_meta - 1] || !st->meta[st->n_meta - 2]) return -1;
    }
    return 0;
}

int gpuq_safetensors_parse(struct gpuq_safetensors *st, const unsigned char *buf, size_t len,
                           char *err, size_t errlen) {
    int result = -1;
    json_t *root = NULL;
    memset(st, 0, sizeof(*st));
    snprintf(err, errlen, "out of memory");
    if (len < 8) {
        snprintf(err, errlen, "file too short for a safetensors header");
        goto out;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > len - 8) {
        snprintf(err, errlen, "not a safetensors file: its header length (%llu bytes) exceeds the "
                 "file's size", (unsigned long long)hlen);
        goto out;
    }
    json_error_t jerr;
    root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "not a safetensors file: its header is not a JSON object%s%s",
                 root ? "" : ": ", root ? "" : jerr.text);
        goto out;
    }
    const unsigned char *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    st->entries = calloc(json_object_size(root) + 1, sizeof(*st->entries));
    if (!st->entries) goto out;
    const char *name;
    json_t *v;
    json_object_foreach(root, name, v) {
        if (strcmp(name, "__metadata__") == 0) {
            if (parse_meta(st, v, err, errlen) != 0) goto out;
            continue;
        }
        if (!json_is_object(v)) {
            snprintf(err, errlen, "tensor '%s' is not an object", name);
            goto out;
        }
        if (parse_entry(&st->entries[st->n_entries], name, v, data, data_len, err, errlen) != 0)
            goto out;
        st->n_entries++;
    }
    result = 0;
out:
    json_decref(root);
    if (result != 0) gpuq_safetensors_free(st);
    return result;
}

int gpuq_safetensors_load(struct gpuq_safetensors *st, const char *path, char *err,
                          size_t errlen) {
    int result = -1;
    unsigned char *image = NULL;
    memset(st, 0, sizeof(*st));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0) goto io_error;
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) goto io_error;
    image = malloc(size ? (size_t)size : 1);
    if (!image) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (fread(image, 1, (size_t)size, f) != (size_t)size) goto io_error;
    char why[200];
    if (gpuq_safetensors_parse(st, image, (size_t)size, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto out;
    }
    st->image = image;
    st->image_len = (size_t)size;
    image = NULL;
    result = 0;
    goto out;
io_error:
    snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
out:
    free(image);
    fclose(f);
    return result;
}

const struct gpuq_tensor *gpuq_safetensors_get(const struct gpuq_safetensors *st,
                                               const char *name) {
    for (int i = 0; i < st->n_entries; i++)
        if (strcmp(st->entries[i].name, name) == 0) return &st->entries[i].t;
    return NULL;
}

const char *gpuq_safetensors_meta(const struct gpuq_safetensors *st, const char *key) {
    for (int i = 0; i + 1 < st->n_meta; i += 2)
        if (strcmp(st->meta[i], key) == 0) return st->meta[i + 1];
    return NULL;
}

void gpuq_safetensors_free(struct gpuq_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n_entries; i++) free(st->entries[i].name);
    for (int i = 0; i < st->n_meta; i++) free(st->meta[i]);
    free(st->entries);
    free(st->meta);
    free(st->image);
    memset(st, 0, sizeof(*st));
}

float *gpuq_safetensors_f32(const struct gpuq_safetensors *st, const char *name, int ndim,
                       const int64_t *shape, char *err, size_t errlen) {
    const struct gpuq_tensor *t = gpuq_safetensors_get(st, name);
    if (!t) {
        snprintf(err, errlen, "missing tensor %s", name);
        return NULL;
    }
    if (!gpuq_dtype_is_float(t->dtype) || t->ndim != ndim) {
        snprintf(err, errlen, "tensor %s: want a %d-d float tensor", name, ndim);
        return NULL;
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] >= 0 && t->shape[i] != shape[i]) {
            snprintf(err, errlen, "tensor %s: dim %d is %lld, want %lld", name, i,
                     (long long)t->shape[i], (long long)shape[i]);
            return NULL;
        }
        if (t->shape[i] < 1 || t->shape[i] > INT32_MAX) {
            snprintf(err, errlen, "tensor %s: dim %d out of range", name, i);
            return NULL;
        }
    }
    float *out = malloc((size_t)gpuq_tensor_numel(t) * sizeof(float));
    if (!out) {
        snprintf(err, errlen, "tensor %s: out of memory", name);
        return NULL;
    }
    gpuq_tensor_to_f32(t, out);
    return out;
}

float *gpuq_safetensors_take(const struct gpuq_safetensors *st, const char *prefix, const char *name, int layer,
                             int64_t d0, int64_t d1, char *err, size_t errlen) {
    char base[256], full[300];
    int64_t shape[2] = {d0, d1};
    snprintf(base, sizeof base, name, layer);
    snprintf(full, sizeof full, "%s%s", prefix, base);
    size_t n = strlen(full);
    if (!gpuq_safetensors_get(st, full) && n > 16 && !strcmp(full + n - 16, "LayerNorm.weight"))
        strcpy(full + n - 6, "gamma");
    else if (!gpuq_safetensors_get(st, full) && n > 14 && !strcmp(full + n - 14, "LayerNorm.bias"))
        strcpy(full + n - 4, "beta");
    return gpuq_safetensors_f32(st, full, d1 ? 2 : 1, shape, err, errlen);
}

float *gpuq_safetensors_stack(const struct gpuq_safetensors *st, const char *prefix, const char *const *names,
                              int parts, int layer, const int64_t *rows, int64_t d1, char *err, size_t errlen) {
    size_t cols = d1 ? (size_t)d1 : 1, n = 0, at = 0;
    for (int p = 0; p < parts; p++) n += (size_t)rows[p] * cols;
    float *out = malloc(n * sizeof(float));
    if (!out) return snprintf(err, errlen, "out of memory"), NULL;
    for (int p = 0; p < parts; p++) {
        float *part = gpuq_safetensors_take(st, prefix, names[p], layer, rows[p], d1, err, errlen);
        if (!part) return free(out), NULL;
        memcpy(out + at, part, (size_t)rows[p] * cols * sizeof(float));
        at += (size_t)rows[p] * cols;
        free(part);
    }
    return out;
}
