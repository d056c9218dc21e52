/* image_preprocess.h -- the image kernel's arguments, shared by
 * ops/image_preprocess.c and its CUDA kernel ops/image_preprocess.cu. */
#ifndef GPUQ_OP_IMAGE_PREPROCESS_H
#define GPUQ_OP_IMAGE_PREPROCESS_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPUQ_IMAGE_CHANNELS 16

/* One image of a batch: u8 [h, w, c] in, f32 [c, out_h, out_w] out,
 * (bilinear(x)/255 - mean[ch]) / std[ch]. */
struct gpuq_image {
    const unsigned char *src;
    int h, w, c;
    int out_h, out_w;
    const float *mean, *std;    /* [c] */
    float *dst;
};

struct gpuq_images {
    const struct gpuq_image *im;
    int n;
};

int gpuq_cuda_image_preprocess(struct gpuq_backend *be, const struct gpuq_launch *l);

#ifdef __cplusplus
}
#endif
#endif
