/* fuzz_safetensors.c -- libFuzzer target: the safetensors parser on
 * arbitrary bytes; every tensor it accepts is read in full. */
#include <stdint.h>
#include <stdlib.h>

#include "models/safetensors.h"

/* libFuzzer's entry points */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct gpuq_safetensors st;
    char err[256];
    if (gpuq_safetensors_parse(&st, data, size, err, sizeof(err)) != 0) return 0;
    for (int i = 0; i < st.n_entries; i++) {
        const struct gpuq_tensor *t = &st.entries[i].t;
        int64_t n = gpuq_tensor_numel(t);
        if (n > 0 && n < (1 << 20)) {
            float *f = malloc((size_t)n * sizeof(float));
            gpuq_tensor_to_f32(t, f);
            free(f);
        }
    }
    gpuq_safetensors_meta(&st, "activation");
    gpuq_safetensors_free(&st);
    return 0;
}
