/* image_preprocess.cu -- every pixel of every image of a batch in one
 * launch; the twin of the CPU kernel in image_preprocess.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda_int.h"
#include "ops/image_preprocess.h"

#define IMG_CHANNELS GPUQ_IMAGE_CHANNELS

struct img_desc {
    int64_t src, dst, first;    /* byte offset, float offset, first pixel */
    int h, w, c, H, W;
    float mean[IMG_CHANNELS], std[IMG_CHANNELS];
};

/* As src_coord in image_preprocess.c; __fmul_rn and friends keep nvcc from fusing
 * into FMAs, so the coordinates match the CPU's bit for bit. */
__device__ static void img_coord(int o, int in, int out, int *i0, int *i1, float *frac) {
    float s = __fsub_rn(__fmul_rn(__fadd_rn((float)o, 0.5f), __fdiv_rn((float)in, (float)out)), 0.5f);
    if (s < 0) s = 0;
    int f = (int)s;
    if (f > in - 1) f = in - 1;
    *i0 = f;
    *i1 = f + 1 < in ? f + 1 : in - 1;
    *frac = *i0 == *i1 ? 0.0f : __fsub_rn(s, (float)f);
}

__global__ static void image_kernel(const unsigned char *src, float *dst, const struct img_desc *d,
                                    int n, int64_t pixels) {
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < pixels;
         p += (int64_t)gridDim.x * blockDim.x) {
        int lo = 0, hi = n - 1;     /* the image holding pixel p */
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (d[mid].first <= p) lo = mid;
            else hi = mid - 1;
        }
        const struct img_desc *im = &d[lo];
        int64_t q = p - im->first;
        int y = (int)(q / im->W), x = (int)(q % im->W), c = im->c, y0, y1, x0, x1;
        float fy, fx;
        img_coord(y, im->h, im->H, &y0, &y1, &fy);
        img_coord(x, im->w, im->W, &x0, &x1, &fx);
        const unsigned char *s = src + im->src;
        const unsigned char *p00 = s + ((size_t)y0 * im->w + x0) * c, *p01 = s + ((size_t)y0 * im->w + x1) * c,
                            *p10 = s + ((size_t)y1 * im->w + x0) * c, *p11 = s + ((size_t)y1 * im->w + x1) * c;
        for (int ch = 0; ch < c; ch++) {
            float top = __fadd_rn((float)p00[ch], __fmul_rn((float)(p01[ch] - p00[ch]), fx));
            float bot = __fadd_rn((float)p10[ch], __fmul_rn((float)(p11[ch] - p10[ch]), fx));
            float v = __fadd_rn(top, __fmul_rn(__fsub_rn(bot, top), fy));
            dst[im->dst + ((size_t)ch * im->H + y) * im->W + x] =
                __fdiv_rn(__fsub_rn(__fdiv_rn(v, 255.0f), im->mean[ch]), im->std[ch]);
        }
    }
}

/* Copies n pieces of host memory to or from the device, one copy for each
 * run of pieces that lie back to back on the host. */
static int copy_runs(struct gpuq_backend *be, int up, char *dev, const char *const *host,
                     const size_t *bytes, int n) {
    for (int i = 0, rc; i < n;) {
        size_t run = bytes[i];
        int j = i + 1;
        while (j < n && host[j] == host[j - 1] + bytes[j - 1]) run += bytes[j++];
        rc = up ? cuda_up(be, dev, host[i], run) : cuda_down(be, (void *)host[i], dev, run);
        if (rc) return rc;
        dev += run;
        i = j;
    }
    return 0;
}

extern "C" int gpuq_cuda_image_preprocess(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_image *ims = ((const struct gpuq_images *)l->args)->im;
    int n = ((const struct gpuq_images *)l->args)->n;
    struct cuda_slot *sl = cuda_cur(be);
    size_t src_bytes = 0, dst_bytes = 0, desc_bytes = (size_t)n * sizeof(struct img_desc);
    size_t meta = desc_bytes + (size_t)n * 2 * (sizeof(char *) + sizeof(size_t));
    struct img_desc *d = (struct img_desc *)be->iface->staging(be, cuda_of(be)->cur, GPUQ_STAGING, meta);
    if (!d) return GPUQ_BE_NOMEM;
    const char **srcs = (const char **)(d + n), **dsts = srcs + n;
    size_t *sbytes = (size_t *)(dsts + n), *dbytes = sbytes + n;
    int64_t pixels = 0;
    for (int i = 0; i < n; i++) {
        const struct gpuq_image *im = &ims[i];
        if (im->c > IMG_CHANNELS) {
            snprintf(be->errstr, sizeof(be->errstr), "an image has %d channels (at most %d)", im->c,
                     IMG_CHANNELS);
            return GPUQ_BE_FAILED;
        }
        srcs[i] = (const char *)im->src, dsts[i] = (const char *)im->dst;
        sbytes[i] = (size_t)im->h * im->w * im->c;
        dbytes[i] = (size_t)im->c * im->out_h * im->out_w * sizeof(float);
        d[i] = (struct img_desc){(int64_t)src_bytes, (int64_t)(dst_bytes / 4), pixels, im->h, im->w,
                                 im->c, im->out_h, im->out_w, {0}, {0}};
        for (int ch = 0; ch < im->c; ch++) d[i].mean[ch] = im->mean[ch], d[i].std[ch] = im->std[ch];
        src_bytes += sbytes[i], dst_bytes += dbytes[i];
        pixels += (int64_t)im->out_h * im->out_w;
    }
    void *dsrc, *ddst, *ddesc;
    int rc;
    if ((rc = cuda_dev(be, 0, src_bytes, &dsrc)) || (rc = cuda_dev(be, 1, dst_bytes, &ddst)) ||
        (rc = cuda_dev(be, 2, desc_bytes, &ddesc)) ||
        (rc = copy_runs(be, 1, (char *)dsrc, srcs, sbytes, n)) || (rc = cuda_up(be, ddesc, d, desc_bytes)))
        return rc;
    int64_t blocks = (pixels + CUDA_THREADS - 1) / CUDA_THREADS;
    image_kernel<<<(unsigned)(blocks > 65535 ? 65535 : blocks), CUDA_THREADS, 0, sl->stream>>>(
        (const unsigned char *)dsrc, (float *)ddst, (const struct img_desc *)ddesc, n, pixels);
    LAUNCHED();
    return copy_runs(be, 0, (char *)ddst, dsts, dbytes, n);
}
