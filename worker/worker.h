/* worker.h -- `gpuq worker`: fetch -> decode -> group -> execute -> publish. */
#ifndef GPUQ_WORKER_H
#define GPUQ_WORKER_H

#include "worker/config.h"

/* Runs a worker until SIGTERM or SIGINT. Returns the process exit status:
 * 0 after a clean stop, 2 when it could not start (bad flags, unreachable
 * Redis, unreadable model), 1 on a fatal error while serving. */
int gpuq_worker_main(int argc, char **argv);

#endif
