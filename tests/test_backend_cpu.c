/* test_backend_cpu.c -- the CPU backend against plain C references. */
#include "ops_ref.h"

int main(void) {
    struct gpuq_backend be;
    char err[128];
    CHECK(gpuq_backend_create(&be, "cpu", 0, err, sizeof(err)) == 0);
    CHECK(strcmp(be.iface->name, "cpu") == 0);
    check_backend(&be, 5e-5);   /* f32 sums against a double reference */
    check_backend_rows(&be, 5e-5);
    gpuq_backend_destroy(&be);
    CHECK(gpuq_backend_create(&be, "tpu", 0, err, sizeof(err)) == -1);
    CHECK(strstr(err, "unknown backend") != NULL);
    /* auto always gives a working backend */
    CHECK(gpuq_backend_create(&be, "auto", 0, err, sizeof(err)) == 0 && be.iface != NULL);
    gpuq_backend_destroy(&be);
    /* scalar activations */
    CHECK_CLOSE(gpuq_act_apply(GPUQ_ACT_GELU, 1.0f), 0.8413447, 1e-6);
    CHECK_CLOSE(gpuq_act_apply(GPUQ_ACT_SILU, 2.0f), 1.7615942, 1e-6);
    CHECK(gpuq_act_apply(GPUQ_ACT_RELU, -3.0f) == 0.0f);
    CHECK_CLOSE(gpuq_act_apply(GPUQ_ACT_TANH, 0.5f), 0.46211716, 1e-6);
    return check_done("test_backend_cpu");
}
