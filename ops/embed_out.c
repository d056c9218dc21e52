/* embed_out.c -- Matryoshka dimensions and compact dtypes for embed's y. */
#include "ops/embed_out.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/tensor.h"

static const char *const dtype_names[] = {"f32", "f16", "int8", "uint8", "binary", "ubinary"};
#define N_DTYPES (int)(sizeof(dtype_names) / sizeof(dtype_names[0]))

static int is_binary(int dt) { return dt == GPUQ_EMBED_BINARY || dt == GPUQ_EMBED_UBINARY; }

int gpuq_embed_out_read(struct gpuq_task *t, int hidden, struct gpuq_embed_out *o) {
    struct gpuq_job *job = &t->job;
    struct gpuq_str dt = {NULL, 0};
    int64_t dims = hidden;
    *o = (struct gpuq_embed_out){hidden, GPUQ_EMBED_F32, 0};
    if (gpuq_job_param_i64(job, "dimensions", &dims) < 0 || gpuq_job_param_str(job, "dtype", &dt) < 0) return -1;
    if (dims < 1 || dims > hidden)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "embed: dimensions must be 1 to %d (the model's)",
                             hidden);
    o->dims = (int)dims;
    if (dt.ptr) {
        o->dtype = -1;
        for (int i = 0; i < N_DTYPES; i++)
            if (strlen(dtype_names[i]) == dt.len && !memcmp(dtype_names[i], dt.ptr, dt.len)) o->dtype = i;
        if (o->dtype < 0)
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "embed: dtype must be f32, f16, int8, uint8, "
                                 "binary or ubinary");
    }
    if (is_binary(o->dtype) && o->dims % 8)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "embed: dtype %s packs 8 components a byte: "
                             "dimensions must be a multiple of 8", dtype_names[o->dtype]);
    double *r = malloc(2 * (size_t)o->dims * sizeof(double));
    int n = 0, rc = r ? gpuq_job_param_f64s(job, "ranges", r, 2 * o->dims, &n) : -1;
    if (rc == 0) {      /* none given */
        free(r);
        return 0;
    }
    if (o->dtype != GPUQ_EMBED_INT8 && o->dtype != GPUQ_EMBED_UINT8) {
        free(r);
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "embed: ranges go with dtype int8 or uint8");
    }
    int ordered = rc > 0 && n == 2 * o->dims;
    for (int i = 0; ordered && i < o->dims; i++) ordered = r[i] <= r[o->dims + i] && isfinite(r[i]) && isfinite(r[o->dims + i]);
    free(r);
    if (!ordered)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "embed: ranges must be %d finite numbers: the "
                             "%d minimums, then the %d maximums", 2 * o->dims, o->dims, o->dims);
    o->ranges = 1;
    return 0;
}

int gpuq_embed_out_check_rows(struct gpuq_task *t, const struct gpuq_embed_out *o) {
    if ((o->dtype == GPUQ_EMBED_INT8 || o->dtype == GPUQ_EMBED_UINT8) && !o->ranges && t->rows < 2)
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "embed: dtype %s needs ranges for a job of "
                             "one text (ranges from a single row are empty)", dtype_names[o->dtype]);
    return 0;
}

size_t gpuq_embed_out_row_bytes(const struct gpuq_embed_out *o) {
    switch (o->dtype) {
    case GPUQ_EMBED_F32: return (size_t)o->dims * 4;
    case GPUQ_EMBED_F16: return (size_t)o->dims * 2;
    case GPUQ_EMBED_INT8: case GPUQ_EMBED_UINT8: return (size_t)o->dims;
    default: return (size_t)o->dims / 8;
    }
}

/* The kept components of every row, packed at y's start, normalized again. */
static void truncate_rows(float *y, int64_t rows, int hidden, int dims, int normalize) {
    for (int64_t r = 0; r < rows; r++) {
        float *dst = y + r * dims;
        memmove(dst, y + r * hidden, (size_t)dims * sizeof(float));
        if (!normalize || dims == hidden) continue;
        double ss = 0;
        for (int j = 0; j < dims; j++) ss += (double)dst[j] * dst[j];
        double scale = ss > 0 ? 1.0 / sqrt(ss) : 0;     /* as F.normalize: a zero vector stays zero */
        for (int j = 0; j < dims; j++) dst[j] = (float)(dst[j] * scale);
    }
}

/* int8/uint8 as quantize_embeddings, in f32 as it computes them:
 * floor((x - min) / ((max - min) / 255)) clipped to 0..255 (a step of 0
 * taken as 1), less 128 for int8; the ranges are the job's, else its rows'
 * own. */
static void quantize8(struct gpuq_task *t, const struct gpuq_embed_out *o, const float *y, int64_t rows,
                      unsigned char *out) {
    int d = o->dims, n = 0;
    double *lo = malloc(2 * (size_t)d * sizeof(double)), *hi;
    if (!lo) {
        gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "embed: out of memory quantizing");
        return;
    }
    hi = lo + d;
    if (!o->ranges || gpuq_job_param_f64s(&t->job, "ranges", lo, 2 * d, &n) < 0 || n != 2 * d) {
        /* the rows' own; float, as the embeddings are */
        for (int j = 0; j < d; j++) lo[j] = hi[j] = y[j];
        for (int64_t r = 1; r < rows; r++)
            for (int j = 0; j < d; j++) {
                double v = y[r * d + j];
                if (v < lo[j]) lo[j] = v;
                if (v > hi[j]) hi[j] = v;
            }
    }
    int shift = o->dtype == GPUQ_EMBED_INT8 ? 128 : 0;
    for (int j = 0; j < d; j++) {
        float start = (float)lo[j], step = ((float)hi[j] - start) / 255.0f;
        if (step == 0.0f) step = 1.0f;
        for (int64_t r = 0; r < rows; r++) {
            float q = floorf((y[r * d + j] - start) / step);
            q = q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q;
            out[r * d + j] = (unsigned char)((int)q - shift);  /* int8: the byte of q - 128 */
        }
    }
    free(lo);
}

int64_t gpuq_embed_out_finish(struct gpuq_task *t, const struct gpuq_embed_out *o, int normalize,
                              float *y, int64_t rows, int hidden, enum gpuq_dtype *dt) {
    int d = o->dims;
    truncate_rows(y, rows, hidden, d, normalize);
    unsigned char *out = (unsigned char *)y;
    switch (o->dtype) {
    case GPUQ_EMBED_F32:
        *dt = GPUQ_DTYPE_F32;
        return d;
    case GPUQ_EMBED_F16:    /* front to back: each 2-byte write lands behind what is still to read */
        for (int64_t i = 0; i < rows * d; i++) {
            uint16_t h = gpuq_f32_to_f16(y[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        *dt = GPUQ_DTYPE_F16;
        return d;
    case GPUQ_EMBED_INT8:
    case GPUQ_EMBED_UINT8: {
        float *copy = malloc((size_t)(rows * d) * sizeof(float));  /* ranges read all rows first */
        if (!copy) {
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "embed: out of memory quantizing");
            *dt = GPUQ_DTYPE_F32;
            return d;
        }
        memcpy(copy, y, (size_t)(rows * d) * sizeof(float));
        quantize8(t, o, copy, rows, out);
        free(copy);
        *dt = o->dtype == GPUQ_EMBED_INT8 ? GPUQ_DTYPE_I8 : GPUQ_DTYPE_U8;
        return d;
    }
    default:    /* packed bits of x > 0, first component in the high bit; binary less 128 */
        for (int64_t r = 0; r < rows; r++)
            for (int b = 0; b < d / 8; b++) {
                unsigned v = 0;
                for (int k = 0; k < 8; k++) v = v << 1 | (y[r * d + b * 8 + k] > 0);
                out[r * (d / 8) + b] = (unsigned char)(o->dtype == GPUQ_EMBED_BINARY ? v ^ 0x80 : v);
            }
        *dt = o->dtype == GPUQ_EMBED_BINARY ? GPUQ_DTYPE_I8 : GPUQ_DTYPE_U8;
        return d / 8;
    }
}
