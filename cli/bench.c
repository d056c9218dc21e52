/* bench.c -- `gpuq bench-compute`: the same batched mlp GEMMs a worker
 * runs, the way it runs them (rows packed into the slot's pinned staging,
 * two batches under way at once), with no queue around them: the ceiling a
 * worker is measured against. */
#include "worker/clock.h"
#include "cli/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/target.h"
#include "models/mlp/mlp.h"
#include "ops/mlp.h"
#include "ops/op.h"
#include "ops/table.h"

/* Packs rows of x into the slot's staging (pinned where the backend has
 * some, as a worker's batches are) and starts the mlp on them. */
static int run_batch(struct gpuq_ops_slot *s, const struct gpuq_model *m, const float *x, int rows) {
    struct gpuq_backend *be = s->be;
    int rc = be->iface->begin ? be->iface->begin(be, s->index) : 0;
    float *in = gpuq_ops_buf(s, 0, (size_t)rows * gpuq_model_in_dim(m) * sizeof(float));
    float *out = gpuq_ops_buf(s, 1, (size_t)rows * gpuq_model_out_dim(m) * sizeof(float));
    if (rc == 0 && (!in || !out)) rc = GPUQ_BE_NOMEM;
    if (rc == 0) {
        memcpy(in, x, (size_t)rows * gpuq_model_in_dim(m) * sizeof(float));
        s->out[0] = out;
        s->rows = rows;
        struct gpuq_mlp_args args = {m, in, rows, out};
        rc = gpuq_backend_run(be, GPUQ_OP_MLP, rows, &args);
    }
    if (rc != 0) fprintf(stderr, "gpuq bench-compute: %s\n", be->errstr);
    return rc;
}

/* Waits for the slot's batch and copies its outputs out, as a worker
 * scatters them to its jobs. */
static int finish_batch(struct gpuq_ops_slot *s, float *y, int d_out) {
    struct gpuq_backend *be = s->be;
    int rc = be->iface->sync ? be->iface->sync(be, s->index) : 0;
    if (rc != 0) {
        fprintf(stderr, "gpuq bench-compute: %s\n", be->errstr);
        return rc;
    }
    memcpy(y, s->out[0], (size_t)s->rows * d_out * sizeof(float));
    return 0;
}

int gpuq_bench_main(int argc, char **argv) {
    const char *model_path = NULL, *backend = "cpu", *precision = "f32";
    double n_jobs = 20000, n_batch = 256, threads;
    int help = argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"));
    for (int i = 0; !help && i + 1 < argc; i += 2) {
        const char *f = argv[i], *v = argv[i + 1];
        if (!strcmp(f, "--model")) model_path = v;
        else if (!strcmp(f, "--backend")) backend = v;
        else if (!strcmp(f, "--precision") || !strcmp(f, "--mlp-precision")) precision = v;
        else if (!strcmp(f, "--jobs") || !strcmp(f, "--batch")) {
            if (gpuq_cli_number("bench-compute", f, v, 1, 0, f[2] == 'j' ? 1e12 : 1e6, 1,
                                f[2] == 'j' ? &n_jobs : &n_batch) != 0)
                return 2;
        } else if (!strcmp(f, "--cpu-threads")) {
            if (gpuq_cli_number("bench-compute", f, v, 0, 0, 4096, 1, &threads) != 0) return 2;
            gpuq_backend_cpu_threads((int)threads);
        } else {
            break;
        }
    }
    long jobs = (long)n_jobs, batch = (long)n_batch;
    if (help || !model_path || jobs < 1 || batch < 1 || argc % 2 || gpuq_precision_from_name(precision) < 0) {
        fprintf(help ? stdout : stderr, "usage: gpuq bench-compute --model PATH [--jobs N] [--batch ROWS] "
                        "[--backend cpu|cuda] [--precision f32|bf16|f16] [--cpu-threads N]\n"
                        "Runs N one-row mlp jobs as batches of ROWS rows on the backend as a worker "
                        "does (pinned staging, two batches under way), with no queue, and prints "
                        "jobs/s.\n");
        return help ? 0 : 2;
    }
    struct gpuq_backend be;
    struct gpuq_model m;
    char err[512];
    if (gpuq_backend_create(&be, backend, 0, err, sizeof(err)) != 0 ||
        gpuq_model_load(&m, "bench", model_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "gpuq bench-compute: %s\n", err);
        return 2;
    }
    be.precision = (enum gpuq_precision)gpuq_precision_from_name(precision);
    const struct gpuq_mlp *net = gpuq_model_mlp(&m);
    if (!net || be.iface->model_load(&be, &m) != 0) {
        fprintf(stderr, "gpuq bench-compute: %s\n", !net ? "not an mlp" : be.errstr);
        return 2;
    }
    int d_in = gpuq_model_in_dim(&m), d_out = gpuq_model_out_dim(&m);
    float *x = malloc((size_t)batch * d_in * sizeof(float)), *y = malloc((size_t)batch * d_out * sizeof(float));
    for (long i = 0; i < batch * d_in; i++) x[i] = (float)(i % 17) / 17.0f - 0.5f;
    struct gpuq_ops_slot slot[2] = {{.index = 0, .be = &be}, {.index = 1, .be = &be}};
    long nb = (jobs + batch - 1) / batch;
    run_batch(&slot[0], &m, x, (int)batch);    /* warm up */
    if (finish_batch(&slot[0], y, d_out) != 0) return 1;
    double t0 = gpuq_mono_s();
    /* as in a worker: batch b is packed and started before batch b - 1 is
     * finished, two slots in turn */
    for (long b = 0; b <= nb; b++) {
        if (b < nb && run_batch(&slot[b & 1], &m, x, (int)(b < nb - 1 ? batch : jobs - b * batch)) != 0)
            return 1;
        if (b > 0 && finish_batch(&slot[(b - 1) & 1], y, d_out) != 0) return 1;
    }
    double dt = gpuq_mono_s() - t0, flops = 0;
    for (int l = 0; l < net->n_layers; l++) flops += 2.0 * net->layers[l].d_in * net->layers[l].d_out;
    printf("backend=%s precision=%s jobs=%ld batch=%ld seconds=%.4f jobs_per_s=%.0f gflops=%.2f\n", be.iface->name,
           precision, jobs, batch, dt, jobs / dt, flops * jobs / dt / 1e9);
    free(x);
    free(y);
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < GPUQ_OPS_BUFS; k++) free(slot[i].buf[k]);
    be.iface->model_free(&be, &m);
    gpuq_model_free(&m);
    gpuq_backend_destroy(&be);
    return 0;
}
