/* clock.h -- the two clocks the worker reads. */
#ifndef GPUQ_CLOCK_H
#define GPUQ_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Wall-clock microseconds: comparable with stream entry ids (unix ms). */
static inline int64_t gpuq_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Monotonic seconds, for measuring how long something took. */
static inline double gpuq_mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
