/* invariant.h -- invariants that stay checked in release builds. A broken
 * one is a bug: the process stops at once, naming the file, the line and
 * the condition, rather than turning it into a wrong result for a job.
 * For cheap checks only: a count that indexes an array, an op id before a
 * table lookup. */
#ifndef GPUQ_INVARIANT_H
#define GPUQ_INVARIANT_H

#ifdef __cplusplus
extern "C" {
#endif

__attribute__((noreturn, cold)) void gpuq_invariant_failed(const char *what, const char *file, int line);

#define GPUQ_INVARIANT(cond) ((cond) ? (void)0 : gpuq_invariant_failed(#cond, __FILE__, __LINE__))

#ifdef __cplusplus
}
#endif
#endif
