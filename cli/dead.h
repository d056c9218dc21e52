/* dead.h -- `gpuq dead list | retry | purge`. */
#ifndef GPUQ_DEAD_CLI_H
#define GPUQ_DEAD_CLI_H

/* Returns the exit status: 0 ok, 1 a Redis error, 2 bad usage. */
int gpuq_dead_main(int argc, char **argv);

#endif
