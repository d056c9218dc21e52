/* image_preprocess.c -- the image_preprocess op: image u8 [h, w, c] to f32
 * [c, height, width], resized bilinearly and normalized. An image is one
 * row: images of any size share a batch, packed back to back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/image_preprocess.h"
#include "ops/op.h"
#include "ops/twin.h"

struct params {
    int c, out_h, out_w;
    float mean[GPUQ_IMAGE_CHANNELS], std[GPUQ_IMAGE_CHANNELS];
};
_Static_assert(sizeof(struct params) <= GPUQ_OP_PARAMS, "image_preprocess params fit a task");

static const struct params *P(const struct gpuq_task *t) { return gpuq_task_params(t); }

static int prepare(struct gpuq_task *t) {
    struct gpuq_job *job = &t->job;
    struct params *p = gpuq_task_params(t);
    const struct gpuq_tensor *im = gpuq_job_input(job, "image");
    if (im->ndim != 3 || im->shape[2] > GPUQ_IMAGE_CHANNELS)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "image_preprocess wants image u8 "
                             "[h, w, c] with c <= %d", GPUQ_IMAGE_CHANNELS);
    int c = (int)im->shape[2];
    int64_t h = 0, w = 0;
    if (gpuq_job_param_i64(job, "height", &h) < 0 || gpuq_job_param_i64(job, "width", &w) < 0)
        return -1;
    if (h < 1 || w < 1 || h > 16384 || w > 16384)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "image_preprocess needs params height "
                             "and width in [1, 16384]");
    if (c * h * w > GPUQ_MAX_ELEMS)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "image_preprocess: output too large");
    double mean[GPUQ_IMAGE_CHANNELS], std[GPUQ_IMAGE_CHANNELS];
    int n_mean, n_std;
    if (gpuq_job_param_f64s(job, "mean", mean, GPUQ_IMAGE_CHANNELS, &n_mean) < 0 ||
        gpuq_job_param_f64s(job, "std", std, GPUQ_IMAGE_CHANNELS, &n_std) < 0)
        return -1;
    if ((n_mean > 1 && n_mean != c) || (n_std > 1 && n_std != c))
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "image_preprocess: mean and std need "
                             "one value or %d (one per channel)", c);
    for (int ch = 0; ch < c; ch++) {
        p->mean[ch] = n_mean ? (float)mean[n_mean > 1 ? ch : 0] : 0.0f;
        p->std[ch] = n_std ? (float)std[n_std > 1 ? ch : 0] : 1.0f;
        if (!(p->std[ch] != 0.0f) || !isfinite(p->std[ch]) || !isfinite(p->mean[ch]))
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "image_preprocess: std must be "
                                 "non-zero and mean and std finite");
    }
    t->rows = 1;
    p->c = c;
    p->out_h = (int)h;
    p->out_w = (int)w;
    return 0;
}

static size_t out_bytes(const struct gpuq_task *t) {
    return (size_t)P(t)->c * P(t)->out_h * P(t)->out_w * sizeof(float);
}

/* The images are packed back to back, as are their outputs. */
static int pack(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    size_t src_bytes = 0, dst_bytes = 0;
    for (int i = 0; i < n; i++) {
        src_bytes += gpuq_job_input(&p[i].t->job, "image")->nbytes;
        dst_bytes += p[i].t->out_bytes;
    }
    struct gpuq_image *ims = gpuq_ops_buf(s, 0, (size_t)n * sizeof(*ims));
    unsigned char *src = gpuq_ops_buf(s, 1, src_bytes);
    float *dst = gpuq_ops_buf(s, 2, dst_bytes);
    if (!ims || !src || !dst) return GPUQ_BE_NOMEM;
    s->out[0] = dst;
    for (int i = 0; i < n; i++) {
        const struct params *prm = P(p[i].t);
        const struct gpuq_tensor *im = gpuq_job_input(&p[i].t->job, "image");
        memcpy(src, im->data, im->nbytes);
        ims[i] = (struct gpuq_image){src, (int)im->shape[0], (int)im->shape[1], prm->c,
                                     prm->out_h, prm->out_w, prm->mean, prm->std, dst};
        src += im->nbytes;
        dst += p[i].t->out_bytes / sizeof(float);
    }
    struct gpuq_images args = {ims, n};
    return gpuq_backend_run(s->be, GPUQ_OP_IMAGE_PREPROCESS, rows, &args);
}

static void scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    const char *y = s->out[0];
    for (int i = 0; i < n; i++) {
        memcpy(p[i].t->out, y, p[i].t->out_bytes);
        y += p[i].t->out_bytes;
    }
}

static void finish(struct gpuq_task *t) {
    int64_t shape[3] = {P(t)->c, P(t)->out_h, P(t)->out_w};
    gpuq_ops_set_output(t, 0, "y", GPUQ_DTYPE_F32, t->out, 3, shape);
}

/* ---- the CPU kernel: bilinear resize, half-pixel centers ---- */

/* Source coordinate of output index o for a resize from `in` to `out`
 * pixels, as OpenCV's INTER_LINEAR: edges clamp, no antialiasing. */
static void src_coord(int o, int in, int out, int *i0, int *i1, float *frac) {
    float s = ((float)o + 0.5f) * ((float)in / (float)out) - 0.5f;
    if (s < 0) s = 0;
    int f = (int)s;
    if (f > in - 1) f = in - 1;
    *i0 = f;
    *i1 = f + 1 < in ? f + 1 : in - 1;
    *frac = s - (float)f;
    if (*i0 == *i1) *frac = 0;
}

static int cpu(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct gpuq_images *a = l->args;
    (void)be;
    for (const struct gpuq_image *im = a->im; im < a->im + a->n; im++) {
        int c = im->c, W = im->out_w, H = im->out_h;
        for (int y = 0; y < H; y++) {
            int y0, y1;
            float fy;
            src_coord(y, im->h, H, &y0, &y1, &fy);
            for (int x = 0; x < W; x++) {
                int x0, x1;
                float fx;
                src_coord(x, im->w, W, &x0, &x1, &fx);
                const unsigned char *p00 = im->src + ((size_t)y0 * im->w + x0) * c,
                                    *p01 = im->src + ((size_t)y0 * im->w + x1) * c,
                                    *p10 = im->src + ((size_t)y1 * im->w + x0) * c,
                                    *p11 = im->src + ((size_t)y1 * im->w + x1) * c;
                for (int ch = 0; ch < c; ch++) {
                    float top = p00[ch] + (p01[ch] - p00[ch]) * fx;
                    float bot = p10[ch] + (p11[ch] - p10[ch]) * fx;
                    float v = top + (bot - top) * fy;
                    im->dst[((size_t)ch * H + y) * W + x] = (v / 255.0f - im->mean[ch]) / im->std[ch];
                }
            }
        }
    }
    return 0;
}

/* ---- twin: images of mixed sizes and channels in one call ---- */

static void twin(struct gpuq_twin_run *r) {
    static const int small[][5] = {{7, 5, 3, 4, 6}, {20, 30, 1, 9, 7}};
    static const int large[][5] = {{480, 640, 3, 224, 224}, {31, 17, 1, 64, 80}, {224, 224, 3, 224, 224},
                                   {5, 1000, 4, 3, 999}, {2, 2, 3, 1, 1}};
    const int(*dims)[5] = r->large ? large : small;
    int n = r->large ? 5 : 2;
    struct gpuq_image a[5], b[5];
    size_t src = 0, dst = 0;
    for (int i = 0; i < n; i++) {
        src += (size_t)dims[i][0] * dims[i][1] * dims[i][2];
        dst += (size_t)dims[i][2] * dims[i][3] * dims[i][4];
    }
    unsigned char *pix = malloc(src);
    float *y = malloc(dst * sizeof(float)), *want = malloc(dst * sizeof(float));
    float mean[4] = {0.485f, 0.456f, 0.406f, 0.5f}, std[4] = {0.229f, 0.224f, 0.225f, 0.5f};
    if (pix && y && want) {
        for (size_t j = 0; j < src; j++) pix[j] = (unsigned char)((gpuq_twin_rnd(r) + 1) * 127.9f);
        size_t so = 0, d0 = 0;
        for (int i = 0; i < n; i++) {
            const int *d = dims[i];
            a[i] = (struct gpuq_image){pix + so, d[0], d[1], d[2], d[3], d[4], mean, std, y + d0};
            b[i] = a[i];
            b[i].dst = want + d0;
            so += (size_t)d[0] * d[1] * d[2], d0 += (size_t)d[2] * d[3] * d[4];
        }
        struct gpuq_images on_be = {a, n}, on_cpu = {b, n};
        if (gpuq_twin_both(r, n, &on_be, &on_cpu) == 0) gpuq_twin_note(r, gpuq_twin_err(y, want, dst, 0));
    }
    free(pix), free(y), free(want);
}

static const char *const inputs[] = {"image", NULL};
static const char *const params[] = {"height", "width", "mean", "std", NULL};

const struct gpuq_op_desc gpuq_op_image_preprocess = {
    .inputs = inputs, .params = params, .required = 1, .u8 = 1,
    .prepare = prepare, .out_bytes = out_bytes, .pack = pack, .scatter = scatter, .finish = finish,
    .kernel = {[GPUQ_BACKEND_CPU] = cpu,
               [GPUQ_BACKEND_CUDA] = GPUQ_CUDA_KERNEL(gpuq_cuda_image_preprocess)},
    .twin = twin, .tol = 1e-5,
};
