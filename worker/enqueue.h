/* enqueue.h -- `gpuq enqueue`. */
#ifndef GPUQ_ENQUEUE_H
#define GPUQ_ENQUEUE_H

/* Returns the process exit status: 0 ok, 1 an error result or Redis error,
 * 2 bad flags or unreachable Redis, 3 timed out waiting. */
int gpuq_enqueue_main(int argc, char **argv);

#endif
