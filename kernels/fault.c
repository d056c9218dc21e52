/* fault.c -- a backend that fails as a failing device would, for tests of
 * what the worker does then: out-of-memory above a batch size or for every
 * model, or a device lost for good after some calls. It wraps a real backend and passes
 * everything else through. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"

struct fault_ctx {
    struct gpuq_backend inner;
    struct gpuq_backend_i iface;
    long long nomem_above;      /* -1: off */
    long long lost_after;       /* -1: off */
    long long model_nomem;      /* nonzero: no model fits */
    char refuse[64];            /* the one model this device does not serve, or "" */
    long long slow_ms;          /* each kernel call takes this much longer */
    long long calls;
};

#define INNER(be) (&((struct fault_ctx *)(be)->ctx)->inner)

/* Whether rows rows fit. */
static int nomem(struct gpuq_backend *be, long long rows) {
    struct fault_ctx *f = be->ctx;
    if (f->nomem_above >= 0 && rows > f->nomem_above) {
        snprintf(be->errstr, sizeof(be->errstr), "out of memory for %lld rows (injected fault "
                 "above %lld)", rows, f->nomem_above);
        return GPUQ_BE_NOMEM;
    }
    return 0;
}

/* Whether an op on rows rows fails, and how. */
static int inject(struct gpuq_backend *be, long long rows) {
    struct fault_ctx *f = be->ctx;
    if (f->lost_after >= 0 && f->calls++ >= f->lost_after) {
        snprintf(be->errstr, sizeof(be->errstr), "device lost (injected fault after %lld calls)",
                 f->lost_after);
        return GPUQ_BE_LOST;
    }
    return nomem(be, rows);
}

/* The inner backend's errstr becomes ours when it fails. */
static int pass(struct gpuq_backend *be, int rc) {
    if (rc != 0) snprintf(be->errstr, sizeof(be->errstr), "%s", INNER(be)->errstr);
    return rc;
}

static void fault_destroy(struct gpuq_backend *be) {
    struct fault_ctx *f = be->ctx;
    gpuq_backend_destroy(&f->inner);
    free(f);
    be->ctx = NULL;
}

static int fault_model_load(struct gpuq_backend *be, struct gpuq_model *m) {
    INNER(be)->precision = be->precision;
    const struct fault_ctx *f = be->ctx;
    if (f->model_nomem) {
        snprintf(be->errstr, sizeof(be->errstr), "out of memory for the model (injected fault)");
        return GPUQ_BE_NOMEM;
    }
    if (f->refuse[0] && !strcmp(m->name, f->refuse)) {
        snprintf(be->errstr, sizeof(be->errstr), "this model is not served here (injected fault)");
        return GPUQ_BE_UNSERVED;
    }
    return pass(be, INNER(be)->iface->model_load(INNER(be), m));
}

static void fault_model_free(struct gpuq_backend *be, struct gpuq_model *m) {
    INNER(be)->iface->model_free(INNER(be), m);
}

/* Every op alike: the rows of its call decide; a slow device takes its time. */
static int fault_kernel(struct gpuq_backend *be, const struct gpuq_launch *l) {
    const struct fault_ctx *f = be->ctx;
    if (f->slow_ms > 0) {
        struct timespec ts = {(time_t)(f->slow_ms / 1000), (long)(f->slow_ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
    }
    int rc = inject(be, l->rows);
    return rc ? rc : pass(be, INNER(be)->kernel[l->op](INNER(be), l));
}

static int fault_memory_used(struct gpuq_backend *be, int64_t *bytes) {
    return pass(be, INNER(be)->iface->memory_used(INNER(be), bytes));
}

/* Sizing for more rows than fit is out of memory too, as on a device. */
static int fault_reserve(struct gpuq_backend *be, int rows) {
    int rc = nomem(be, rows);
    if (rc || !INNER(be)->iface->reserve) return rc;
    return pass(be, INNER(be)->iface->reserve(INNER(be), rows));
}

static int fault_begin(struct gpuq_backend *be, int slot) {
    return pass(be, INNER(be)->iface->begin(INNER(be), slot));
}

static int fault_sync(struct gpuq_backend *be, int slot) {
    return pass(be, INNER(be)->iface->sync(INNER(be), slot));
}

static void *fault_staging(struct gpuq_backend *be, int slot, int i, size_t bytes) {
    void *p = INNER(be)->iface->staging(INNER(be), slot, i, bytes);
    if (!p) pass(be, -1);
    return p;
}

static int parse(struct fault_ctx *f, const char *spec) {
    const char *eq = strchr(spec, '=');
    if (!eq) return -1;
    if ((size_t)(eq - spec) == strlen("refuse-model") && !strncmp(spec, "refuse-model", strlen("refuse-model"))) {
        if (!eq[1] || strlen(eq + 1) >= sizeof(f->refuse)) return -1;
        snprintf(f->refuse, sizeof(f->refuse), "%s", eq + 1);
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(eq + 1, &end, 10);
    if (errno || end == eq + 1 || *end || v < 0) return -1;
    size_t len = (size_t)(eq - spec);
    if (len == strlen("nomem-above") && !strncmp(spec, "nomem-above", len))
        f->nomem_above = v;
    else if (len == strlen("lost-after") && !strncmp(spec, "lost-after", len))
        f->lost_after = v;
    else if (len == strlen("model-nomem") && !strncmp(spec, "model-nomem", len))
        f->model_nomem = v;
    else if (len == strlen("slow-ms") && !strncmp(spec, "slow-ms", len))
        f->slow_ms = v;
    else
        return -1;
    return 0;
}

int gpuq_backend_fault(struct gpuq_backend *be, const char *spec, char *err, size_t errlen) {
    struct fault_ctx *f = calloc(1, sizeof(*f));
    if (!f) return -1;
    f->nomem_above = f->lost_after = -1;
    if (parse(f, spec) != 0) {
        snprintf(err, errlen, "fault spec '%s': want nomem-above=ROWS, model-nomem=1, refuse-model=NAME, lost-after=N or slow-ms=MS", spec);
        free(f);
        return -1;
    }
    f->inner = *be;
    const struct gpuq_backend_i *in = be->iface;
    f->iface = (struct gpuq_backend_i){
        .name = in->name, .kind = in->kind, .destroy = fault_destroy,
        .model_load = fault_model_load, .model_free = fault_model_free,
        .memory_used = in->memory_used ? fault_memory_used : NULL,
        .reserve = fault_reserve, .begin = in->begin ? fault_begin : NULL,
        .sync = in->sync ? fault_sync : NULL, .staging = in->staging ? fault_staging : NULL,
    };
    for (int op = 0; op < GPUQ_OP_COUNT; op++)
        be->kernel[op] = be->kernel[op] ? fault_kernel : NULL;
    be->iface = &f->iface;
    be->ctx = f;
    snprintf(be->desc, sizeof(be->desc), "%s (fault injection: %s)", f->inner.desc, spec);
    return 0;
}
