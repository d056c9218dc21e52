/* op_rows.c -- row-wise ops: softmax, layernorm, image_preprocess. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "worker/op_impl.h"

/* x [rows, cols], batched per cols. */
static int rows_prepare(struct gpuq_task *t, const char *const *names, int required) {
    struct gpuq_job *job = &t->job;
    if (gpuq_ops_want_inputs(job, names, required, 0) != 0) return -1;
    const struct gpuq_tensor *x = gpuq_job_input(job, "x");
    if (x->ndim != 2)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "%s wants x [rows, cols]",
                             gpuq_op_name(job->op));
    t->rows = x->shape[0];
    t->cols = (int)x->shape[1];
    t->out_words = (size_t)(t->rows * t->cols);
    return 0;
}

static void rows_scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    gpuq_ops_scatter_rows(p, n, s->out[0], p[0].t->cols);
}

static void rows_finish(struct gpuq_task *t) {
    int64_t shape[2] = {t->rows, t->cols};
    gpuq_ops_set_output(t, 0, "y", GPUQ_DTYPE_F32, t->out, 2, shape);
}

/* ---- softmax ---- */

static int softmax_prepare(struct gpuq_ops *o, struct gpuq_task *t) {
    static const char *const names[] = {"x", NULL};
    (void)o;
    return rows_prepare(t, names, 1);
}

static int softmax_run(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    int cols = p[0].t->cols;
    float *x = gpuq_ops_buf(s, 0, (size_t)rows * cols), *y = gpuq_ops_buf(s, 1, (size_t)rows * cols);
    if (!x || !y) return GPUQ_BE_NOMEM;
    gpuq_ops_pack_rows(p, n, "x", cols, x);
    s->out[0] = y;
    return s->be->iface->softmax(s->be, x, (int)rows, cols, y);
}

const struct gpuq_op_impl gpuq_op_softmax = {softmax_prepare, softmax_run, rows_scatter,
                                             rows_finish};

/* ---- layernorm: optional gamma, beta [cols]; eps ---- */

static int layernorm_prepare(struct gpuq_ops *o, struct gpuq_task *t) {
    static const char *const names[] = {"x", "gamma", "beta", NULL};
    struct gpuq_job *job = &t->job;
    (void)o;
    if (rows_prepare(t, names, 1) != 0) return -1;
    const char *vec[] = {"gamma", "beta"};
    for (int i = 0; i < 2; i++) {
        const struct gpuq_tensor *v = gpuq_job_input(job, vec[i]);
        if (v && (v->ndim != 1 || v->shape[0] != t->cols))
            return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "layernorm: %s must be [%d]", vec[i],
                                 t->cols);
    }
    double eps = 1e-5;
    if (gpuq_job_param_f64(job, "eps", &eps) < 0) return -1;
    if (!(eps >= 0) || !isfinite(eps))
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "layernorm: eps must be >= 0");
    t->eps = (float)eps;
    return 0;
}

/* Each piece is one parameter set: its job's gamma, beta and eps. */
static int layernorm_run(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    int cols = p[0].t->cols;
    float *x = gpuq_ops_buf(s, 0, (size_t)rows * cols), *y = gpuq_ops_buf(s, 1, (size_t)rows * cols);
    float *gb = gpuq_ops_buf(s, 2, (size_t)n * (2 * cols + 1));
    int *row_set = (int *)gpuq_ops_buf(s, 3, (size_t)rows);
    if (!x || !y || !gb || !row_set) return GPUQ_BE_NOMEM;
    float *gamma = gb, *beta = gb + (size_t)n * cols, *eps = beta + (size_t)n * cols;
    gpuq_ops_pack_rows(p, n, "x", cols, x);
    int64_t r = 0;
    for (int i = 0; i < n; i++) {
        struct gpuq_job *job = &p[i].t->job;
        const struct gpuq_tensor *g = gpuq_job_input(job, "gamma"), *b = gpuq_job_input(job, "beta");
        float *gi = gamma + (size_t)i * cols, *bi = beta + (size_t)i * cols;
        if (g) gpuq_tensor_to_f32(g, gi);
        else for (int j = 0; j < cols; j++) gi[j] = 1.0f;
        if (b) gpuq_tensor_to_f32(b, bi);
        else memset(bi, 0, (size_t)cols * sizeof(float));
        eps[i] = p[i].t->eps;
        for (int64_t j = 0; j < p[i].rows; j++) row_set[r++] = i;
    }
    struct gpuq_layernorm ln = {x, (int)rows, cols, row_set, gamma, beta, eps, y};
    s->out[0] = y;
    return s->be->iface->layernorm(s->be, &ln);
}

const struct gpuq_op_impl gpuq_op_layernorm = {layernorm_prepare, layernorm_run, rows_scatter,
                                               rows_finish};

/* ---- image_preprocess: image u8 [h, w, c] -> f32 [c, height, width] ---- */

static int image_prepare(struct gpuq_ops *o, struct gpuq_task *t) {
    static const char *const names[] = {"image", NULL};
    struct gpuq_job *job = &t->job;
    (void)o;
    if (gpuq_ops_want_inputs(job, names, 1, 1) != 0) return -1;
    const struct gpuq_tensor *im = gpuq_job_input(job, "image");
    if (im->ndim != 3 || im->shape[2] > GPUQ_MAX_CHANNELS)
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "image_preprocess wants image u8 "
                             "[h, w, c] with c <= %d", GPUQ_MAX_CHANNELS);
    int c = (int)im->shape[2];
    int64_t h = 0, w = 0;
    if (gpuq_job_param_i64(job, "height", &h) < 0 || gpuq_job_param_i64(job, "width", &w) < 0)
        return -1;
    if (h < 1 || w < 1 || h > 16384 || w > 16384)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "image_preprocess needs params height "
                             "and width in [1, 16384]");
    if (c * h * w > GPUQ_MAX_ELEMS)
        return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "image_preprocess: output too large");
    double mean[GPUQ_MAX_CHANNELS], std[GPUQ_MAX_CHANNELS];
    int n_mean, n_std;
    if (gpuq_job_param_f64s(job, "mean", mean, GPUQ_MAX_CHANNELS, &n_mean) < 0 ||
        gpuq_job_param_f64s(job, "std", std, GPUQ_MAX_CHANNELS, &n_std) < 0)
        return -1;
    if ((n_mean > 1 && n_mean != c) || (n_std > 1 && n_std != c))
        return gpuq_job_fail(job, GPUQ_ERR_SHAPE_MISMATCH, "image_preprocess: mean and std need "
                             "one value or %d (one per channel)", c);
    for (int ch = 0; ch < c; ch++) {
        t->mean[ch] = n_mean ? (float)mean[n_mean > 1 ? ch : 0] : 0.0f;
        t->std[ch] = n_std ? (float)std[n_std > 1 ? ch : 0] : 1.0f;
        if (!(t->std[ch] != 0.0f) || !isfinite(t->std[ch]) || !isfinite(t->mean[ch]))
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "image_preprocess: std must be "
                                 "non-zero and mean and std finite");
    }
    t->rows = 1;    /* an image is one row: images of any size share a batch */
    t->cols = c;
    t->out_h = (int)h;
    t->out_w = (int)w;
    t->out_words = (size_t)(c * h * w);
    return 0;
}

/* The images are packed back to back, as are their outputs. */
static int image_run(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n, int64_t rows) {
    (void)rows;
    size_t src_bytes = 0, out_words = 0;
    for (int i = 0; i < n; i++) {
        src_bytes += gpuq_job_input(&p[i].t->job, "image")->nbytes;
        out_words += p[i].t->out_words;
    }
    struct gpuq_image *ims = (struct gpuq_image *)gpuq_ops_buf(s, 0, (size_t)n * sizeof(*ims) / 4 + 1);
    unsigned char *src = (unsigned char *)gpuq_ops_buf(s, 1, src_bytes / 4 + 1);
    float *dst = gpuq_ops_buf(s, 2, out_words);
    if (!ims || !src || !dst) return GPUQ_BE_NOMEM;
    s->out[0] = dst;
    for (int i = 0; i < n; i++) {
        const struct gpuq_task *t = p[i].t;
        const struct gpuq_tensor *im = gpuq_job_input(&t->job, "image");
        memcpy(src, im->data, im->nbytes);
        ims[i] = (struct gpuq_image){src, (int)im->shape[0], (int)im->shape[1], t->cols,
                                     t->out_h, t->out_w, t->mean, t->std, dst};
        src += im->nbytes;
        dst += t->out_words;
    }
    return s->be->iface->image(s->be, ims, n);
}

static void image_scatter(const struct gpuq_ops_slot *s, const struct gpuq_piece *p, int n) {
    const float *y = s->out[0];
    for (int i = 0; i < n; i++) {
        memcpy(p[i].t->out, y, p[i].t->out_words * sizeof(float));
        y += p[i].t->out_words;
    }
}

static void image_finish(struct gpuq_task *t) {
    int64_t shape[3] = {t->cols, t->out_h, t->out_w};
    gpuq_ops_set_output(t, 0, "y", GPUQ_DTYPE_F32, t->out, 3, shape);
}

const struct gpuq_op_impl gpuq_op_image = {image_prepare, image_run, image_scatter, image_finish};
