/* test_ops.c -- the dispatcher (worker/ops.c) on a backend with streams
 * that fails: a failed batch's slot is waited for before it is packed
 * again; and an op moved to the CPU keeps the backend's mlp precision. */
#include "ops_ref.h"
#include "base/tensor.h"
#include "worker/ops.h"
#include "worker/task.h"

/* A stream backend whose softmax fails with status: each call leaves work
 * queued on its slot until sync; staging handed out over queued work is a
 * slot repacked while a batch may still use it. */
static struct {
    int status, cur, queued[2], repacked_busy, syncs;
    float buf[2][GPUQ_STAGING][64];
} fake;

static int fake_begin(struct gpuq_backend *be, int slot) {
    (void)be;
    fake.cur = slot;
    return 0;
}

static int fake_sync(struct gpuq_backend *be, int slot) {
    (void)be;
    fake.queued[slot] = 0;
    fake.syncs++;
    return 0;
}

static void *fake_staging(struct gpuq_backend *be, int slot, int i, size_t bytes) {
    (void)be;
    if (fake.queued[slot]) fake.repacked_busy++;
    return bytes <= sizeof(fake.buf[0][0]) ? fake.buf[slot][i] : NULL;
}

static int fake_softmax(struct gpuq_backend *be, const struct gpuq_launch *l) {
    (void)l;
    fake.queued[fake.cur] = 1;
    snprintf(be->errstr, sizeof(be->errstr), "injected");
    return fake.status;
}

static const struct gpuq_backend_i fake_iface = {
    .name = "fake", .kind = GPUQ_BACKEND_CUDA, .begin = fake_begin, .sync = fake_sync,
    .staging = fake_staging,
};

static void check_failed_batches(struct gpuq_backend *cpu) {
    struct gpuq_backend be = {.iface = &fake_iface};
    be.kernel[GPUQ_OP_SOFTMAX] = fake_softmax;
    struct gpuq_ops o = {.be = &be, .cpu = cpu, .max_result_bytes = 1 << 20};
    CHECK(gpuq_ops_init(&o, 4) == 0);
    static const float x[4][3] = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {1, 1, 1}};
    struct worker_task wt;      /* the dispatcher runs worker tasks */
    struct gpuq_task *t = &wt.t;
    memset(&wt, 0, sizeof(wt));
    t->job.op = GPUQ_OP_SOFTMAX;
    t->job.n_inputs = 1;
    t->job.inputs[0] = (struct gpuq_input){.name = {"x", 1}, .t = {GPUQ_DTYPE_F32, 2, {4, 3}, x, sizeof(x)}};
    CHECK(gpuq_ops_prepare(&o, t) == 0 && t->rows == 4);
    static const int statuses[] = {GPUQ_BE_FAILED, GPUQ_BE_NOMEM};
    for (int k = 0; k < 2; k++) {
        fake.status = statuses[k];
        fake.repacked_busy = fake.syncs = 0;
        /* three batches: the third takes the first one's slot again */
        for (int b = 0; b < 3; b++) {
            struct gpuq_piece p = {t, 0, 4};
            struct gpuq_batch done;
            gpuq_ops_start(&o, &p, 1);
            gpuq_ops_finish(&o, &done);
            CHECK(done.rc == statuses[k] && strcmp(done.why, "injected") == 0);
            CHECK(done.split == (statuses[k] == GPUQ_BE_NOMEM));
        }
        printf("  %s: %d syncs, %d repacked over queued work\n",
               k ? "out of memory (split)" : "failed", fake.syncs, fake.repacked_busy);
        CHECK(fake.repacked_busy == 0 && fake.syncs > 0);
    }
    gpuq_ops_free(&o);
}

/* mlp moved off a device that runs bf16: the CPU runs it in bf16 too, on
 * weights rounded as the device's copies are. */
static void check_to_cpu(struct gpuq_backend *cpu) {
    struct gpuq_backend dev;
    char err[128];
    CHECK(gpuq_backend_create(&dev, "cpu", 0, err, sizeof(err)) == 0);
    dev.precision = GPUQ_PREC_BF16;    /* its weights are rounded on its device only */
    unsigned seed = 5;
    static const int widths[] = {16, 8};
    struct gpuq_model m;
    rand_mlp(&m, widths, 1, GPUQ_ACT_NONE, &seed);
    struct gpuq_ops o = {.be = &dev, .cpu = cpu, .models = &m, .n_models = 1};
    CHECK(gpuq_ops_to_cpu(&o, GPUQ_OP_MLP) == 0);
    CHECK(!gpuq_ops_on_backend(&o, GPUQ_OP_MLP) && gpuq_ops_on_backend(&o, GPUQ_OP_SOFTMAX));
    CHECK(cpu->precision == GPUQ_PREC_BF16);
    int rounded = 1;
    const float *w = gpuq_model_mlp(&m)->layers[0].w;
    for (int i = 0; i < 16 * 8; i++) rounded &= w[i] == gpuq_round_bf16(w[i]);
    CHECK(rounded);
    cpu->precision = GPUQ_PREC_F32;
    gpuq_model_free(&m);
    gpuq_backend_destroy(&dev);
}

int main(void) {
    struct gpuq_backend cpu;
    char err[128];
    CHECK(gpuq_backend_create(&cpu, "cpu", 0, err, sizeof(err)) == 0);
    check_failed_batches(&cpu);
    check_to_cpu(&cpu);
    gpuq_backend_destroy(&cpu);
    return check_done("test_ops");
}
