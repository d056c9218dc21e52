/* op_list.h -- enum gpuq_op, generated from ops.def: the one list of ops,
 * which queue/ (the protocol's names), kernels/ (the backend tables) and
 * ops/ (the descriptors) all stand on. */
#ifndef GPUQ_OP_LIST_H
#define GPUQ_OP_LIST_H

enum gpuq_op {
#define GPUQ_OP(id, name) GPUQ_OP_##id,
#include "base/ops.def"
#undef GPUQ_OP
    GPUQ_OP_COUNT
};

#endif
