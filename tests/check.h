/* check.h -- tiny assertion macros for the unit tests. A failed check prints
 * where and why, and the test exits 1 at the end. */
#ifndef GPUQ_CHECK_H
#define GPUQ_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures, check_count;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        check_count++;                                                               \
        if (!(cond)) {                                                               \
            check_failures++;                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b) CHECK(strcmp((a), (b)) == 0)

#define CHECK_CLOSE(a, b, tol)                                                          \
    do {                                                                                \
        double a_ = (a), b_ = (b);                                                      \
        check_count++;                                                                  \
        if (!(fabs(a_ - b_) <= (tol) * (1.0 + fabs(b_)))) {                             \
            check_failures++;                                                           \
            fprintf(stderr, "%s:%d: %s = %g, want %g\n", __FILE__, __LINE__, #a, a_, b_); \
        }                                                                               \
    } while (0)

static inline int check_done(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

/* Deterministic uniform floats in [-1, 1). */
static inline float check_rand(unsigned *state) {
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

#endif
