/* tensor.c -- dtype table and conversions to f32. */
#include "base/tensor.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
    int is_float;
} dtypes[GPUQ_DTYPE_COUNT] = {
    [GPUQ_DTYPE_F32] = {"f32", 4, 1},  [GPUQ_DTYPE_F16] = {"f16", 2, 1},
    [GPUQ_DTYPE_BF16] = {"bf16", 2, 1}, [GPUQ_DTYPE_F64] = {"f64", 8, 1},
    [GPUQ_DTYPE_I8] = {"i8", 1, 0},    [GPUQ_DTYPE_U8] = {"u8", 1, 0},
    [GPUQ_DTYPE_I32] = {"i32", 4, 0},  [GPUQ_DTYPE_I64] = {"i64", 8, 0},
};

const char *gpuq_dtype_name(enum gpuq_dtype dt) { return dtypes[dt].name; }
size_t gpuq_dtype_size(enum gpuq_dtype dt) { return dtypes[dt].size; }
int gpuq_dtype_is_float(enum gpuq_dtype dt) { return dtypes[dt].is_float; }

int gpuq_dtype_from_name(const char *s, size_t len) {
    for (int i = 0; i < GPUQ_DTYPE_COUNT; i++)
        if (strlen(dtypes[i].name) == len && memcmp(dtypes[i].name, s, len) == 0) return i;
    return -1;
}

int64_t gpuq_tensor_numel(const struct gpuq_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0) return -1;
        if (t->shape[i] != 0 && n > INT64_MAX / t->shape[i]) return -1;
        n *= t->shape[i];
    }
    return n;
}

float gpuq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalize */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float gpuq_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float gpuq_round_bf16(float x) {
    uint32_t bits;
    memcpy(&bits, &x, 4);
    if ((bits & 0x7f800000u) != 0x7f800000u) {     /* not inf or nan */
        bits += 0x7fffu + ((bits >> 16) & 1);
        bits &= 0xffff0000u;
    }
    memcpy(&x, &bits, 4);
    return x;
}

float gpuq_round_f16(float x) {
    if (!isfinite(x) || x == 0.0f) return x;
    int e;
    frexpf(x, &e);                  /* |x| in [2^(e-1), 2^e) */
    if (e < -13) e = -13;           /* subnormals: a fixed quantum of 2^-24 */
    float q = ldexpf(1.0f, e - 11); /* 11 significant bits */
    float r = nearbyintf(x / q) * q;
    return fabsf(r) > 65504.0f ? copysignf(INFINITY, x) : r;
}

uint16_t gpuq_f32_to_f16(float x) {
    float r = gpuq_round_f16(x);    /* an f16 value exactly, or infinite, or NaN */
    uint16_t sign = signbit(r) ? 0x8000 : 0;
    float a = fabsf(r);
    if (isnan(r)) return sign | 0x7e00;
    if (isinf(r)) return sign | 0x7c00;
    if (a < 6.103515625e-05f) return sign | (uint16_t)(a * 16777216.0f);     /* subnormal: k * 2^-24 */
    int e;
    float m = frexpf(a, &e);        /* a = m 2^e, m in [0.5, 1): f16 exponent e - 1 + 15 */
    return sign | (uint16_t)((e + 14) << 10) | (uint16_t)((m * 2.0f - 1.0f) * 1024.0f);
}

#define CONVERT(T, EXPR)                                     \
    for (int64_t i = 0; i < n; i++) {                        \
        T v;                                                 \
        memcpy(&v, src + i * sizeof(T), sizeof(T));          \
        dst[i] = (EXPR);                                     \
    }

void gpuq_tensor_to_f32(const struct gpuq_tensor *t, float *dst) {
    const unsigned char *src = t->data;
    int64_t n = gpuq_tensor_numel(t);
    switch (t->dtype) {
    case GPUQ_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
    case GPUQ_DTYPE_F16: CONVERT(uint16_t, gpuq_f16_to_f32(v)); break;
    case GPUQ_DTYPE_BF16: CONVERT(uint16_t, gpuq_bf16_to_f32(v)); break;
    case GPUQ_DTYPE_F64: CONVERT(double, (float)v); break;
    case GPUQ_DTYPE_I8: CONVERT(int8_t, (float)v); break;
    case GPUQ_DTYPE_U8: CONVERT(uint8_t, (float)v); break;
    case GPUQ_DTYPE_I32: CONVERT(int32_t, (float)v); break;
    case GPUQ_DTYPE_I64: CONVERT(int64_t, (float)v); break;
    default: break;
    }
}

/* As the kernels will see it: converted to f32, a block at a time (an f64
 * beyond f32's range is infinite there too). */
int gpuq_tensor_all_finite(const struct gpuq_tensor *t) {
    float buf[256];
    int64_t n = gpuq_tensor_numel(t);
    size_t isz = gpuq_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i += 256) {
        struct gpuq_tensor part = {t->dtype, 1, {n - i < 256 ? n - i : 256}, NULL, 0};
        part.data = (const unsigned char *)t->data + (size_t)i * isz;
        gpuq_tensor_to_f32(&part, buf);
        for (int64_t j = 0; j < part.shape[0]; j++)
            if (!isfinite(buf[j])) return 0;
    }
    return 1;
}
