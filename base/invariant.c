/* invariant.c -- a broken invariant stops the process (base/invariant.h). */
#include "base/invariant.h"

#include <stdio.h>
#include <stdlib.h>

void gpuq_invariant_failed(const char *what, const char *file, int line) {
    fprintf(stderr, "gpuq: bug: invariant broken at %s:%d: %s\n", file, line, what);
    fflush(stderr);
    abort();
}
