/* table.c -- the op table, from ops.def, and binding it to backends. */
#include "ops/table.h"

#include "ops/op.h"

#define GPUQ_OP(id, name) extern const struct gpuq_op_desc gpuq_op_##name;
#include "base/ops.def"
#undef GPUQ_OP

const struct gpuq_op_desc *const gpuq_op_table[GPUQ_OP_COUNT] = {
#define GPUQ_OP(id, name) [GPUQ_OP_##id] = &gpuq_op_##name,
#include "base/ops.def"
#undef GPUQ_OP
};

/* The descriptors' kernels and reserves, where the backend brought none of
 * its own (the CUDA module brings its own). */
static void bind_kernels(struct gpuq_backend *be) {
    for (int op = 0; op < GPUQ_OP_COUNT; op++) {
        if (!be->kernel[op]) be->kernel[op] = gpuq_op_table[op]->kernel[be->iface->kind];
        if (!be->reserve[op]) be->reserve[op] = gpuq_op_table[op]->reserve[be->iface->kind];
    }
}

int gpuq_backend_create(struct gpuq_backend *be, const char *kind, int device, char *err,
                        size_t errlen) {
    if (gpuq_backend_open(be, kind, device, err, errlen) != 0) return -1;
    bind_kernels(be);
    return 0;
}

int gpuq_backend_cpu_init(struct gpuq_backend *be) {
    if (gpuq_backend_cpu_open(be) != 0) return -1;
    bind_kernels(be);
    return 0;
}
