/* ops.c -- the dispatcher: admission through the op table, batch keys,
 * and running batches on a backend. */
#include "base/invariant.h"
#include "worker/clock.h"
#include "worker/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "worker/cache.h"
#include "worker/log.h"
#include "worker/task.h"

/* the op's descriptor: only decoded jobs (a valid op) reach here */
#define DESC(t) (GPUQ_INVARIANT((t)->job.op >= 0 && (t)->job.op < GPUQ_OP_COUNT), gpuq_op_table[(t)->job.op])
/* Packing space larger than this (16 MiB) is freed after its batch. */
#define KEEP_BYTES ((size_t)16 << 20)

/* ---- admission ---- */

static int short_len(const struct gpuq_str *s) { return (int)(s->len > 32 ? 32 : s->len); }

/* The job's inputs must be exactly the op's (the first `required` of them
 * present), non-empty, and of its kind: float dtypes, u8, or text and
 * integer dtypes. */
static int want_inputs(struct gpuq_job *job, const struct gpuq_op_desc *d) {
    const char *op = gpuq_op_name(job->op);
    const char *const *names = d->inputs;
    int n = 0;
    for (; names[n]; n++)
        if (n < d->required && !gpuq_job_find(job, names[n]))
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s needs input '%s'", op, names[n]);
    for (int i = 0; i < job->n_inputs; i++) {
        const struct gpuq_input *in = &job->inputs[i];
        int known = 0;
        for (int k = 0; k < n; k++)
            known |= strlen(names[k]) == in->name.len && !memcmp(names[k], in->name.ptr, in->name.len);
        if (!known)
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s takes no input '%.*s'", op,
                                 short_len(&in->name), in->name.ptr);
        if (in->text && d->text) continue;      /* which input takes text is the op's to say */
        int bits = d->bits && (in->t.dtype == GPUQ_DTYPE_U8 || in->t.dtype == GPUQ_DTYPE_I8);
        if (in->text || (!d->text && (d->u8 ? in->t.dtype != GPUQ_DTYPE_U8
                                            : !gpuq_dtype_is_float(in->t.dtype) && !bits)))
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s: input '%.*s' must be %s", op,
                                 short_len(&in->name), in->name.ptr,
                                 d->u8 ? "a u8 tensor" : d->bits ? "an f32, f16, bf16 or f64 tensor, "
                                 "or u8 or i8 packed bits" : "an f32, f16, bf16 or f64 tensor");
        for (int k = 0; k < in->t.ndim; k++)
            if (in->t.shape[k] == 0)
                return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s: input '%.*s' is empty", op,
                                     short_len(&in->name), in->name.ptr);
        if (gpuq_tensor_numel(&in->t) > GPUQ_MAX_ELEMS)
            return gpuq_job_fail(job, GPUQ_ERR_TOO_LARGE, "%s: input '%.*s' has more than %lld "
                                 "elements", op, short_len(&in->name), in->name.ptr,
                                 (long long)GPUQ_MAX_ELEMS);
    }
    return 0;
}

/* Every param must be one the op knows (or one of the worker's own), so
 * that a client never gets a silently different result from a worker
 * that predates a param. */
static int listed(const char *const *names, const msgpack_object *k) {
    for (; names && *names; names++)
        if (strlen(*names) == k->via.str.size && !memcmp(*names, k->via.str.ptr, k->via.str.size)) return 1;
    return 0;
}

static int want_params(struct gpuq_job *job, const struct gpuq_op_desc *d) {
    static const char *const common[] = {"callback_format", NULL};    /* checked as decoded */
    const msgpack_object *p = job->params;
    for (uint32_t i = 0; p && i < p->via.map.size; i++) {
        const msgpack_object *k = &p->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) continue;    /* the decoder refuses these */
        if (!listed(d->params, k) && !listed(common, k))
            return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s takes no param '%.*s'",
                                 gpuq_op_name(job->op), (int)(k->via.str.size > 32 ? 32 : k->via.str.size),
                                 k->via.str.ptr);
    }
    return 0;
}

/* The model named in the job, with what the op needs. */
static int find_model(struct gpuq_ops *o, struct gpuq_task *t, enum gpuq_cap cap) {
    struct gpuq_job *job = &t->job;
    const char *what = gpuq_cap_name(cap);
    if (!job->model.ptr)
        return gpuq_job_fail(job, GPUQ_ERR_BAD_REQUEST, "%s needs a model", gpuq_op_name(job->op));
    const struct gpuq_model *named = NULL;
    for (int i = 0; i < o->n_models; i++)
        if (strlen(o->models[i].name) == job->model.len && memcmp(o->models[i].name, job->model.ptr, job->model.len) == 0)
            named = &o->models[i];
    int len = (int)(job->model.len > 64 ? 64 : job->model.len);
    if (!named) return gpuq_job_fail(job, GPUQ_ERR_UNKNOWN_MODEL, "no %s '%.*s' on this worker", what, len, job->model.ptr);
    for (int c = 0; c < GPUQ_CAPS && !gpuq_model_can(named, cap); c++)
        if (gpuq_model_can(named, (enum gpuq_cap)c))
            return gpuq_job_fail(job, GPUQ_ERR_UNKNOWN_MODEL, "%s wants a %s; model '%.*s' is %s %s",
                                 gpuq_op_name(job->op), what, len, job->model.ptr, c == GPUQ_CAP_MLP ? "an" : "a",
                                 gpuq_cap_name((enum gpuq_cap)c));
    t->model = named;
    return 0;
}

/* ---- the public face ---- */

int gpuq_ops_prepare(struct gpuq_ops *o, struct gpuq_task *t) {
    const struct gpuq_op_desc *d = DESC(t);
    t->unit = 1;
    t->dtype = t->job.n_inputs ? t->job.inputs[0].t.dtype : GPUQ_DTYPE_F32;
    if (d->needs && find_model(o, t, (enum gpuq_cap)(d->needs - 1)) != 0) return -1;
    if (want_inputs(&t->job, d) != 0 || want_params(&t->job, d) != 0 || d->prepare(t) != 0) return -1;
    if (t->rows < 1)
        return gpuq_job_fail(&t->job, GPUQ_ERR_BAD_REQUEST, "%s: no rows", gpuq_op_name(t->job.op));
    t->out_bytes = d->out_bytes(t);
    if (t->out_bytes > (uint64_t)o->max_result_bytes)
        return gpuq_job_fail(&t->job, GPUQ_ERR_TOO_LARGE, "%s: a result of %zu bytes is more than "
                             "this worker's --max-result-bytes %lld", gpuq_op_name(t->job.op),
                             t->out_bytes, (long long)o->max_result_bytes);
    return 0;
}

#define CMP(x, y) do { if ((x) != (y)) return (x) < (y) ? -1 : 1; } while (0)

int gpuq_ops_compare(const struct gpuq_task *a, const struct gpuq_task *b) {
    CMP(a->job.op, b->job.op);
    CMP(a->dtype, b->dtype);
    CMP((uintptr_t)a->model, (uintptr_t)b->model);
    return DESC(a)->compare ? DESC(a)->compare(a, b) : 0;
}

int gpuq_ops_on_backend(const struct gpuq_ops *o, enum gpuq_op op) {
    return o->be->kernel[op] != NULL;
}

int gpuq_ops_to_cpu(struct gpuq_ops *o, enum gpuq_op op) {
    const struct gpuq_op_desc *d = gpuq_op_table[op];
    o->be->kernel[op] = NULL;
    o->cpu->precision = o->be->precision;
    for (int i = 0; d->needs && i < o->n_models; i++)
        if (gpuq_model_can(&o->models[i], (enum gpuq_cap)(d->needs - 1)) && o->cpu->iface->model_load(o->cpu, &o->models[i]) != 0)
            return -1;
    return 0;
}

int gpuq_ops_init(struct gpuq_ops *o, int max_pieces) {
    for (int i = 0; i < 2; i++) {
        o->slot[i].index = i;
        if (!(o->slot[i].p = calloc((size_t)max_pieces, sizeof(struct gpuq_piece)))) return -1;
    }
    return 0;
}

static int64_t sum_rows(const struct gpuq_piece *p, int n) {
    int64_t rows = 0;
    for (int i = 0; i < n; i++) rows += p[i].rows;
    return rows;
}

static int split(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n);

/* After a batch failed: what it queued before failing may still read or
 * write the slot's staging, so the slot waits for it before it is packed
 * again. The wait's own failure adds nothing to the batch's. */
static void settle(struct gpuq_ops_slot *s, int rc) {
    if (rc != 0 && s->be->iface->sync) s->be->iface->sync(s->be, s->index);
}

/* Runs pieces to the end: started, synced, scattered; halved again when
 * they still do not fit. */
static int run_now(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n) {
    const struct gpuq_op_desc *d = DESC(p[0].t);
    int rc = d->pack(s, p, n, sum_rows(p, n));
    settle(s, rc);
    if (rc == 0 && s->be->iface->sync) rc = s->be->iface->sync(s->be, s->index);
    if (rc == 0) d->scatter(s, p, n);
    return rc == GPUQ_BE_NOMEM ? split(s, p, n) : rc;
}

/* Two halves of a batch, one after the other; a lone piece is cut at a
 * multiple of its unit. */
static int split(struct gpuq_ops_slot *s, struct gpuq_piece *p, int n) {
    struct gpuq_piece two[2];
    if (n == 1) {
        int64_t unit = p->t->unit, units = p->rows / unit;
        if (units < 2) return GPUQ_BE_NOMEM;
        two[0] = two[1] = *p;
        two[0].rows = units / 2 * unit;
        two[1].row0 += two[0].rows;
        two[1].rows -= two[0].rows;
        p = two;
        n = 2;
    }
    int rc = run_now(s, p, n / 2);
    return rc ? rc : run_now(s, p + n / 2, n - n / 2);
}

void gpuq_ops_start(struct gpuq_ops *o, const struct gpuq_piece *p, int n) {
    struct gpuq_ops_slot *s = &o->slot[o->next];
    enum gpuq_op op = (enum gpuq_op)p[0].t->job.op;
    o->next ^= 1;
    o->n_pending++;
    const struct gpuq_op_desc *d = gpuq_op_table[op];
    const struct gpuq_model *m = p[0].t->model;     /* a batch shares its model */
    s->be = gpuq_ops_on_backend(o, op) && !(d->cpu_only && d->cpu_only(p[0].t)) && !(m && m->on_cpu) ? o->be : o->cpu;
    memcpy(s->p, p, (size_t)n * sizeof(*p));
    s->n = n;
    s->rows = sum_rows(p, n);
    s->start_us = gpuq_now_us();
    s->split = 0;
    s->rc = s->be->iface->begin ? s->be->iface->begin(s->be, s->index) : 0;
    if (s->rc == 0) s->rc = gpuq_op_table[op]->pack(s, s->p, n, s->rows);
    settle(s, s->rc);
    if (s->rc == GPUQ_BE_NOMEM) {
        log_warn("a batch of %lld rows does not fit: %s; running it in parts", (long long)s->rows,
                 s->be->errstr);
        s->rc = split(s, s->p, n);
        s->split = 1;
    }
}

int gpuq_ops_async(const struct gpuq_ops *o) {
    return o->n_pending > 0 && o->slot[o->next ^ 1].be->iface->sync != NULL;
}

void gpuq_ops_finish(struct gpuq_ops *o, struct gpuq_batch *b) {
    struct gpuq_ops_slot *s = &o->slot[o->n_pending == 2 ? o->next : o->next ^ 1];
    enum gpuq_op op = (enum gpuq_op)s->p[0].t->job.op;
    o->n_pending--;
    int rc = s->rc;
    if (rc == 0 && !s->split) {
        if (s->be->iface->sync) rc = s->be->iface->sync(s->be, s->index);
        if (rc == 0) gpuq_op_table[op]->scatter(s, s->p, s->n);
    }
    int64_t compute = gpuq_now_us() - s->start_us;
    for (int i = 0; i < s->n; i++) {
        struct worker_task *wt = worker_task_of(s->p[i].t);
        struct gpuq_task *t = &wt->t;
        if (!wt->queue_us) wt->queue_us = s->start_us - wt->entry.enqueued_ms * 1000;   /* first piece */
        wt->compute_us += compute;
        if (s->rows > wt->batch_rows) wt->batch_rows = s->rows;
        wt->rows_done += s->p[i].rows;
        if (rc != 0)
            gpuq_job_fail(&t->job, GPUQ_ERR_INTERNAL, "%s backend: %s", s->be->iface->name,
                          s->be->errstr);
        else if (wt->rows_done == t->rows && t->job.err == GPUQ_ERR_NONE) {
            if (wt->cache_names) gpuq_cache_keep(wt);   /* the raw rows, before finish shapes them */
            gpuq_op_table[op]->finish(t);
        }
    }
    *b = (struct gpuq_batch){s->p, s->n, s->rows, rc, s->be->errstr, s->split, compute};
    /* packing space an outsized batch grew is given back, not kept for good */
    for (int i = 0; i < GPUQ_OPS_BUFS; i++)
        if (s->cap[i] > KEEP_BYTES) {
            free(s->buf[i]);
            s->buf[i] = NULL;
            s->cap[i] = 0;
        }
}

void gpuq_ops_free(struct gpuq_ops *o) {
    if (!o) return;
    for (int k = 0; k < 2; k++) {
        struct gpuq_ops_slot *s = &o->slot[k];
        for (int i = 0; i < GPUQ_OPS_BUFS; i++) {
            free(s->buf[i]);
            s->buf[i] = NULL;
            s->cap[i] = 0;
        }
        free(s->p);
        s->p = NULL;
    }
}
