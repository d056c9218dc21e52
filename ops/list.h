/* list.h -- enum gpuq_op, generated from ops.def: the one list of ops. */
#ifndef GPUQ_OP_LIST_H
#define GPUQ_OP_LIST_H

enum gpuq_op {
#define GPUQ_OP(id, name) GPUQ_OP_##id,
#include "ops/ops.def"
#undef GPUQ_OP
    GPUQ_OP_COUNT
};

#endif
