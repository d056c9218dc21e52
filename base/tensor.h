/* tensor.h -- dtypes and a borrowed view of an n-dimensional array.
 *
 * A gpuq_tensor never owns its data: the job codec points it into the decoded
 * message, the safetensors loader into the file image. Data may be unaligned,
 * so readers copy it out with memcpy (gpuq_tensor_to_f32) rather than casting. */
#ifndef GPUQ_TENSOR_H
#define GPUQ_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPUQ_MAX_DIMS 8

enum gpuq_dtype {
    GPUQ_DTYPE_F32, GPUQ_DTYPE_F16, GPUQ_DTYPE_BF16, GPUQ_DTYPE_F64,
    GPUQ_DTYPE_I8, GPUQ_DTYPE_U8, GPUQ_DTYPE_I32, GPUQ_DTYPE_I64,
    GPUQ_DTYPE_COUNT
};

struct gpuq_tensor {
    enum gpuq_dtype dtype;
    int ndim;
    int64_t shape[GPUQ_MAX_DIMS];
    const void *data;       /* borrowed, possibly unaligned */
    size_t nbytes;
};

/* Protocol name ("f32") of a dtype, and back. Lookup returns -1 when unknown. */
const char *gpuq_dtype_name(enum gpuq_dtype dt);
int gpuq_dtype_from_name(const char *s, size_t len);
size_t gpuq_dtype_size(enum gpuq_dtype dt);
int gpuq_dtype_is_float(enum gpuq_dtype dt);

/* Number of elements; -1 when the product overflows int64 or a dim is negative. */
int64_t gpuq_tensor_numel(const struct gpuq_tensor *t);

/* Converts all elements to f32 into dst (numel floats). */
void gpuq_tensor_to_f32(const struct gpuq_tensor *t, float *dst);

/* Whether every element of a float tensor is finite (no NaN, no infinity). */
int gpuq_tensor_all_finite(const struct gpuq_tensor *t);

float gpuq_f16_to_f32(uint16_t h);
float gpuq_bf16_to_f32(uint16_t h);

/* x rounded to the nearest bf16 or f16 value (ties to even), as an f32;
 * beyond f16's range it becomes infinite, as a conversion would. */
float gpuq_round_bf16(float x);
float gpuq_round_f16(float x);
/* x as f16 bits, rounded to nearest even (beyond the range: infinite). */
uint16_t gpuq_f32_to_f16(float x);

#ifdef __cplusplus
}
#endif
#endif
