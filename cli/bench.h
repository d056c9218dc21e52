/* bench.h -- `gpuq bench-compute`: the compute-only ceiling. */
#ifndef GPUQ_BENCH_CLI_H
#define GPUQ_BENCH_CLI_H

int gpuq_bench_main(int argc, char **argv);

#endif
