/* fuzz_job.c -- libFuzzer target: the job decoder on arbitrary bytes, then
 * every accessor a worker calls on what it accepted. */
#include <stddef.h>
#include <stdint.h>

#include "queue/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct gpuq_job job;
    if (gpuq_job_decode(&job, (const char *)data, size) == GPUQ_DECODE_OK) {
        double d;
        int64_t i;
        int b, n;
        double arr[16];
        struct gpuq_str s;
        gpuq_job_param_f64(&job, "alpha", &d);
        gpuq_job_param_i64(&job, "k", &i);
        gpuq_job_param_bool(&job, "trans_a", &b);
        gpuq_job_param_str(&job, "metric", &s);
        gpuq_job_param_f64s(&job, "mean", arr, 16, &n);
        for (int k = 0; k < job.n_inputs; k++) {
            /* decoded tensors are safe to read in full */
            const struct gpuq_tensor *t = &job.inputs[k].t;
            volatile uint8_t sum = 0;
            for (size_t j = 0; j < t->nbytes; j++) sum += ((const uint8_t *)t->data)[j];
            (void)sum;
        }
    }
    gpuq_job_free(&job);
    return 0;
}
