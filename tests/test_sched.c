/* test_sched.c -- the batching policy with a hand-driven clock: readiness
 * by size, age and force; order by queue, priority, deadline; chunking;
 * keys never mixed; the in-flight bound. */
#include "check.h"
#include "worker/sched.h"

static struct worker_task tasks[64];
static struct gpuq_model model_a, model_b;

/* an mlp task of `rows` rows on model m */
static struct worker_task *task(int i, int rows, const struct gpuq_model *m, int queue, int prio,
                                int64_t deadline_ms) {
    struct worker_task *t = &tasks[i];
    memset(t, 0, sizeof(*t));
    t->t.job.op = GPUQ_OP_MLP;
    t->t.model = m;
    t->t.rows = rows;
    t->t.unit = 1;
    t->entry.queue = queue;
    t->t.job.priority = prio;
    t->deadline_ms = deadline_ms;
    return t;
}

static void test_ready_by_size_age_force(void) {
    struct gpuq_sched s;
    struct gpuq_piece p[16];
    int64_t wait;
    gpuq_sched_init(&s, 4, 16384, 1000, 100, 64);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 0 && wait == -1);
    gpuq_sched_add(&s, task(0, 1, &model_a, 0, 0, 0), 0);
    gpuq_sched_add(&s, task(1, 1, &model_a, 0, 0, 0), 100);
    CHECK(gpuq_sched_next(&s, 200, 0, p, 16, &wait) == 0);
    CHECK(wait == 800);                         /* the oldest is due at 1000 */
    CHECK(gpuq_sched_next(&s, 1000, 0, p, 16, &wait) == 2);   /* aged */
    CHECK(p[0].t == &tasks[0].t && p[1].t == &tasks[1].t);
    CHECK(s.n == 0);
    for (int i = 0; i < 5; i++) gpuq_sched_add(&s, task(2 + i, 1, &model_a, 0, 0, 0), 2000);
    CHECK(gpuq_sched_next(&s, 2001, 0, p, 16, &wait) == 4);   /* full */
    CHECK(gpuq_sched_next(&s, 2001, 0, p, 16, &wait) == 0);   /* the fifth waits */
    CHECK(gpuq_sched_next(&s, 2001, 1, p, 16, &wait) == 1);   /* unless forced */
    CHECK(p[0].t == &tasks[6].t);
    gpuq_sched_free(&s);
}

static void test_order(void) {
    struct gpuq_sched s;
    struct gpuq_piece p[16];
    int64_t wait;
    gpuq_sched_init(&s, 3, 16384, 0, 100, 64);
    gpuq_sched_add(&s, task(0, 1, &model_a, 1, 9, 0), 0);     /* second queue, high priority */
    gpuq_sched_add(&s, task(1, 1, &model_a, 0, 0, 0), 0);
    gpuq_sched_add(&s, task(2, 1, &model_a, 0, 5, 0), 0);
    gpuq_sched_add(&s, task(3, 1, &model_a, 0, 0, 500), 0);   /* nearer deadline */
    gpuq_sched_add(&s, task(4, 1, &model_a, 0, 0, 900), 0);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 3);
    CHECK(p[0].t == &tasks[2].t && p[1].t == &tasks[3].t && p[2].t == &tasks[4].t);
    CHECK(gpuq_sched_next(&s, 0, 1, p, 16, &wait) == 2);
    CHECK(p[0].t == &tasks[1].t && p[1].t == &tasks[0].t);      /* first queue before the second */
    gpuq_sched_free(&s);
}

static void test_keys_never_mix(void) {
    struct gpuq_sched s;
    struct gpuq_piece p[16];
    int64_t wait;
    gpuq_sched_init(&s, 8, 16384, 0, 100, 64);
    for (int i = 0; i < 6; i++) gpuq_sched_add(&s, task(i, 1, i % 2 ? &model_b : &model_a, 0, 0, 0), i);
    struct worker_task *m = task(6, 1, &model_a, 0, 0, 0);
    m->t.dtype = GPUQ_DTYPE_F16;                  /* same model, other dtype */
    gpuq_sched_add(&s, m, 6);
    int batches = 0, n;
    while ((n = gpuq_sched_next(&s, 10, 1, p, 16, &wait)) > 0) {
        batches++;
        for (int i = 1; i < n; i++) CHECK(gpuq_ops_compare(p[0].t, p[i].t) == 0);
        CHECK(n == (p[0].t->dtype == GPUQ_DTYPE_F16 ? 1 : 3));
    }
    CHECK(batches == 3);
    gpuq_sched_free(&s);
}

static void test_chunking(void) {
    struct gpuq_sched s;
    struct gpuq_piece p[16];
    int64_t wait;
    gpuq_sched_init(&s, 4, 16384, 0, 100, 64);
    gpuq_sched_add(&s, task(0, 10, &model_a, 0, 0, 0), 0);
    int64_t covered = 0;
    for (int b = 0; b < 3; b++) {
        CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 1);
        CHECK(p[0].row0 == covered && p[0].rows == (b < 2 ? 4 : 2));
        covered += p[0].rows;
    }
    CHECK(covered == 10 && s.n == 0);
    /* matmul-like units: 3 matrices of 3 rows never split inside a matrix */
    struct worker_task *t = task(1, 9, &model_a, 0, 0, 0);
    t->t.unit = 3;
    gpuq_sched_add(&s, t, 0);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 1 && p[0].rows == 3);
    /* a unit larger than a batch goes alone, whole */
    t = task(2, 6, &model_b, 0, 0, 0);
    t->t.unit = 6;
    gpuq_sched_add(&s, t, 0);
    int seen6 = 0, n;
    while ((n = gpuq_sched_next(&s, 0, 1, p, 16, &wait)) > 0)
        for (int i = 0; i < n; i++) {
            CHECK(p[i].rows % p[i].t->unit == 0);
            seen6 |= p[i].rows == 6;
        }
    CHECK(seen6);
    gpuq_sched_free(&s);
}

static void test_room_and_expiry(void) {
    struct gpuq_sched s;
    struct worker_task *out[8];
    gpuq_sched_init(&s, 4, 16384, 0, 10, 64);
    CHECK(gpuq_sched_room(&s) == 10);
    gpuq_sched_add(&s, task(0, 6, &model_a, 0, 0, 1000), 0);
    gpuq_sched_add(&s, task(1, 3, &model_a, 0, 0, 0), 0);
    CHECK(gpuq_sched_room(&s) == 1);
    CHECK(gpuq_sched_expire(&s, 1000, out, 8) == 0);    /* not yet past */
    CHECK(gpuq_sched_expire(&s, 1001, out, 8) == 1 && out[0] == &tasks[0]);
    CHECK(s.n == 1);
    gpuq_sched_release(&s, out[0]);
    CHECK(gpuq_sched_room(&s) == 7);
    /* a task that has started is not expired */
    struct gpuq_piece p[4];
    int64_t wait;
    gpuq_sched_add(&s, task(2, 8, &model_b, 0, 0, 50), 0);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 4, &wait) == 1);
    CHECK(gpuq_sched_expire(&s, 100, out, 8) == 0);
    gpuq_sched_free(&s);
}

/* Tasks batched by tokens: rows taken in order while their tokens fit the
 * budget, readiness by tokens, and a row over the budget alone. */
static void test_tokens(void) {
    struct gpuq_sched s;
    struct gpuq_piece p[16];
    int64_t wait;
    /* task 0: rows of 3, 5, 40 (over the budget of 10) and 2 tokens; tasks 1, 2: one row of 4 */
    static const int64_t off0[] = {0, 3, 8, 48, 50}, off1[] = {0, 4};
    gpuq_sched_init(&s, 2, 10, 1000, 100, 64);
    task(0, 4, &model_a, 0, 0, 0)->t.token_off = off0;
    task(1, 1, &model_a, 0, 0, 0)->t.token_off = off1;
    task(2, 1, &model_a, 0, 0, 0)->t.token_off = off1;
    gpuq_sched_add(&s, &tasks[1], 0);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 0);     /* 4 tokens: not full, whatever max_batch */
    gpuq_sched_add(&s, &tasks[0], 0);                        /* 54 tokens: full */
    gpuq_sched_add(&s, &tasks[2], 0);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 2);     /* 4 + 3; 5 more would not fit */
    CHECK(p[0].t == &tasks[1].t && p[1].t == &tasks[0].t && p[1].row0 == 0 && p[1].rows == 1);
    /* the short task's 4, then 5: a task under way yields to one not started */
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 2);
    CHECK(p[0].t == &tasks[2].t && p[1].t == &tasks[0].t && p[1].row0 == 1 && p[1].rows == 1);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 1);     /* 40 tokens, alone */
    CHECK(p[0].t == &tasks[0].t && p[0].row0 == 2 && p[0].rows == 1);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 0 && wait == 1000);  /* 2 tokens wait */
    CHECK(gpuq_sched_next(&s, 0, 1, p, 16, &wait) == 1);
    CHECK(p[0].t == &tasks[0].t && p[0].row0 == 3 && p[0].rows == 1);
    CHECK(s.n == 0);
    /* 8, 9 and 2 tokens: the 9 is passed over for the 2, and leads the next batch */
    static const int64_t off8[] = {0, 8}, off9[] = {0, 9}, off2[] = {0, 2};
    task(3, 1, &model_a, 0, 0, 0)->t.token_off = off8;
    task(4, 1, &model_a, 0, 0, 0)->t.token_off = off9;
    task(5, 1, &model_a, 0, 0, 0)->t.token_off = off2;
    for (int i = 3; i < 6; i++) gpuq_sched_add(&s, &tasks[i], 0);
    CHECK(gpuq_sched_next(&s, 0, 0, p, 16, &wait) == 2);
    CHECK(p[0].t == &tasks[3].t && p[1].t == &tasks[5].t);
    CHECK(gpuq_sched_next(&s, 0, 1, p, 16, &wait) == 1 && p[0].t == &tasks[4].t);
    gpuq_sched_free(&s);
}

/* With a drain bound, what is held is bounded by its measured compute
 * time: a few rows before anything is measured, then the bound over the
 * slowest pace; finished tasks owe nothing, released ones leave. */
static void test_drain_bound(void) {
    struct gpuq_sched s;
    struct gpuq_piece p[16];
    int64_t wait;
    gpuq_sched_init(&s, 8, 16384, 0, 1000, 64);
    gpuq_sched_set_drain(&s, 1000000);                  /* 1 s */
    CHECK(gpuq_sched_room(&s) == 1000);                 /* nothing measured: rows alone */
    for (int i = 0; i < 4; i++) gpuq_sched_add(&s, task(i, 1, &model_a, 0, 0, 0), 0);
    CHECK(gpuq_sched_room(&s) == 996);
    CHECK(gpuq_sched_next(&s, 0, 1, p, 16, &wait) == 2 + 2);
    for (int i = 0; i < 4; i++) tasks[i].rows_done = 1;
    gpuq_sched_add(&s, task(4, 2, &model_a, 0, 0, 0), 0);   /* admitted unmeasured */
    gpuq_sched_finished(&s, p, 4, 400000, 1);           /* 100 ms a row */
    CHECK(gpuq_sched_held_us(&s) == 200000);            /* task 4, estimated now */
    CHECK(gpuq_sched_room(&s) == 8);                    /* 800 ms left at 100 ms a row */
    for (int i = 0; i < 4; i++) gpuq_sched_release(&s, &tasks[i]);
    gpuq_sched_add(&s, task(5, 8, &model_a, 0, 0, 0), 0);
    CHECK(gpuq_sched_held_us(&s) == 1000000 && gpuq_sched_room(&s) == 0);
    gpuq_sched_release(&s, &tasks[4]);                  /* its deadline passed: never ran */
    CHECK(gpuq_sched_held_us(&s) == 800000 && gpuq_sched_room(&s) == 2);
    gpuq_sched_set_drain(&s, 0);
    CHECK(gpuq_sched_room(&s) == 1000 - 8);             /* rows alone */
    gpuq_sched_free(&s);
}

int main(void) {
    test_drain_bound();
    test_tokens();
    test_ready_by_size_age_force();
    test_order();
    test_keys_never_mix();
    test_chunking();
    test_room_and_expiry();
    return check_done("test_sched");
}
