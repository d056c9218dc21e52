/* sched.h -- the pending set and the batching policy. No I/O, no clock of
 * its own: the worker passes the time in, so tests can drive it.
 *
 * Tasks wait per batch key. A batch is ready when its key holds max_batch
 * rows, when its oldest task has waited max_delay_us, or at once when
 * forced (the worker can fetch nothing more: at the in-flight bound, or
 * stopping). Ready batches go best first: earlier --queue, then higher
 * priority, then nearer deadline, then arrival. A task of more rows than
 * max_batch is cut into pieces at multiples of its unit.
 *
 * Tasks batched by tokens (t.token_off set: embed) count tokens instead of
 * rows, against max_tokens: a batch takes rows in order while their tokens
 * fit, and a row of more tokens than max_tokens runs as a batch of its own. */
#ifndef GPUQ_SCHED_H
#define GPUQ_SCHED_H

#include "worker/ops.h"
#include "worker/task.h"

/* The measured pace of one kind of work (an op on a model). */
struct gpuq_sched_pace {
    int op;
    const void *model;
    double us_per_weight;   /* per row, or per token for tasks batched by tokens */
    double us_per_row;
};

#define GPUQ_SCHED_PACES 64

struct gpuq_sched {
    int64_t max_batch, max_tokens, max_delay_us, max_inflight;
    int64_t max_drain_us;   /* 0: rows alone bound what is held */
    int64_t held_us;        /* the estimated compute time of the rows held */
    double worst_us_per_row;    /* the slowest pace seen, for work not read yet */
    struct gpuq_sched_pace pace[GPUQ_SCHED_PACES];
    int n_pace;
    struct worker_task **q; /* tasks with rows still to hand out, by key then order */
    int n, cap;
    int64_t rows_held;      /* rows admitted and not yet released, less those done of a task under way */
    uint64_t seq;
};

/* cap: most tasks held at once. Returns 0, -1 when out of memory. */
int gpuq_sched_init(struct gpuq_sched *s, int64_t max_batch, int64_t max_tokens,
                    int64_t max_delay_us, int64_t max_inflight, int cap);
void gpuq_sched_free(struct gpuq_sched *s);

/* Admits a prepared task (t->t.rows > 0). Returns 0, or -1 when cap is reached. */
int gpuq_sched_add(struct gpuq_sched *s, struct worker_task *t, int64_t now_us);

/* Rows that may still be admitted before the in-flight bound: max_inflight
 * rows, and with max_drain_us, no more than the backend is measured to
 * finish in that time (counting rows not read yet at the slowest pace
 * seen). Before any batch is measured, rows alone. */
int64_t gpuq_sched_room(const struct gpuq_sched *s);

/* Bounds what is held by compute time (0: off). */
void gpuq_sched_set_drain(struct gpuq_sched *s, int64_t max_drain_us);

/* A batch of pieces p[0, n) finished in us (ok: it ran; else it failed):
 * its tasks whose last rows ran no longer count as compute owed, and when
 * ok its pace is learned (tasks admitted before their kind was measured
 * are estimated now). */
void gpuq_sched_finished(struct gpuq_sched *s, const struct gpuq_piece *p, int n, int64_t us, int ok);

/* Takes out tasks none of whose rows was handed out, last in order
 * first, until what is held is estimated at keep_us or less (at most max);
 * their rows and cost leave the in-flight count. Returns how many. */
int gpuq_sched_take_back(struct gpuq_sched *s, int64_t keep_us, struct worker_task **out, int max);

/* Estimated compute time still owed for what is held, in microseconds. */
static inline int64_t gpuq_sched_held_us(const struct gpuq_sched *s) { return s->held_us; }

/* Takes out tasks whose deadline passed before any of their rows ran
 * (at most max); returns how many. */
int gpuq_sched_expire(struct gpuq_sched *s, int64_t now_ms, struct worker_task **out, int max);

/* Fills out with the pieces of the next ready batch (at most max) and
 * returns their count. With none ready, returns 0 and sets *wait_us to the
 * time until one will be, or -1 when nothing is pending. */
int gpuq_sched_next(struct gpuq_sched *s, int64_t now_us, int force, struct gpuq_piece *out,
                    int max, int64_t *wait_us);

/* An answered task's rows (and what is left of its estimated compute) leave the in-flight count. */
void gpuq_sched_release(struct gpuq_sched *s, struct worker_task *t);

#endif
