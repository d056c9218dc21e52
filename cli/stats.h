/* stats.h -- `gpuq stats` and `gpuq wait`. */
#ifndef GPUQ_STATS_CLI_H
#define GPUQ_STATS_CLI_H

/* Exit status: 0 ok, 1 a Redis error (stats: or no such queue; wait: an
 * error result), 2 bad usage; wait: 3 on timeout. */
int gpuq_stats_main(int argc, char **argv);
int gpuq_wait_main(int argc, char **argv);

#endif
