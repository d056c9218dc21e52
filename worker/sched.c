/* sched.c -- pending set kept sorted by (batch key, order). */
#include "worker/sched.h"

#include <stdlib.h>
#include <string.h>

/* Which of two tasks of one key runs first. */
static int order(const struct worker_task *a, const struct worker_task *b) {
    int64_t da = a->deadline_ms ? a->deadline_ms : INT64_MAX;
    int64_t db = b->deadline_ms ? b->deadline_ms : INT64_MAX;
    if (a->entry.queue != b->entry.queue) return a->entry.queue < b->entry.queue ? -1 : 1;
    if (a->t.job.priority != b->t.job.priority) return a->t.job.priority > b->t.job.priority ? -1 : 1;
    if (da != db) return da < db ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int cmp(const struct worker_task *a, const struct worker_task *b) {
    int c = gpuq_ops_compare(&a->t, &b->t);
    return c ? c : order(a, b);
}

int gpuq_sched_init(struct gpuq_sched *s, int64_t max_batch, int64_t max_tokens,
                    int64_t max_delay_us, int64_t max_inflight, int cap) {
    memset(s, 0, sizeof(*s));
    s->max_batch = max_batch;
    s->max_tokens = max_tokens;
    s->max_delay_us = max_delay_us;
    s->max_inflight = max_inflight;
    s->cap = cap;
    s->q = calloc((size_t)cap, sizeof(*s->q));
    return s->q ? 0 : -1;
}

void gpuq_sched_free(struct gpuq_sched *s) {
    if (!s) return;
    free(s->q);
    memset(s, 0, sizeof(*s));
}

/* What rows [row0, row0 + rows) of t weigh against the batch's budget. */
static int64_t weight(const struct gpuq_task *t, int64_t row0, int64_t rows) {
    return t->token_off ? t->token_off[row0 + rows] - t->token_off[row0] : rows;
}

static struct gpuq_sched_pace *pace_of(struct gpuq_sched *s, const struct gpuq_task *t) {
    for (int i = 0; i < s->n_pace; i++)
        if (s->pace[i].op == t->job.op && s->pace[i].model == (const void *)t->model) return &s->pace[i];
    return NULL;
}

void gpuq_sched_set_drain(struct gpuq_sched *s, int64_t max_drain_us) { s->max_drain_us = max_drain_us; }

/* t's compute time at the pace of its kind, or at the slowest pace seen. */
static int64_t estimate(const struct gpuq_sched *s, const struct gpuq_sched_pace *k,
                        const struct worker_task *t) {
    return (int64_t)(k ? k->us_per_weight * (double)weight(&t->t, 0, t->t.rows)
                       : s->worst_us_per_row * (double)t->t.rows);
}

static void learn(struct gpuq_sched *s, const struct gpuq_piece *p, int n, int64_t us) {
    int64_t rows = 0, w = 0;
    for (int i = 0; i < n; i++) {
        rows += p[i].rows;
        w += weight(p[i].t, p[i].row0, p[i].rows);
    }
    if (rows <= 0 || w <= 0 || us <= 0) return;
    struct gpuq_sched_pace *k = pace_of(s, p[0].t);
    double per_w = (double)us / (double)w, per_row = (double)us / (double)rows;
    if (!k && s->n_pace < GPUQ_SCHED_PACES) {
        k = &s->pace[s->n_pace++];
        *k = (struct gpuq_sched_pace){p[0].t->job.op, p[0].t->model, per_w, per_row};
    } else if (k) {     /* a moving average over the last few batches */
        k->us_per_weight += (per_w - k->us_per_weight) / 4;
        k->us_per_row += (per_row - k->us_per_row) / 4;
    }
    s->worst_us_per_row = 0;
    for (int i = 0; i < s->n_pace; i++)
        if (s->pace[i].us_per_row > s->worst_us_per_row) s->worst_us_per_row = s->pace[i].us_per_row;
}

void gpuq_sched_finished(struct gpuq_sched *s, const struct gpuq_piece *p, int n, int64_t us, int ok) {
    for (int i = 0; i < n; i++) {
        struct worker_task *t = worker_task_of(p[i].t);
        if (t->rows_done < t->t.rows) {
            /* a task of many batches under way: its done rows and their time
             * leave the bounds, so that the worker reads on beside it */
            int64_t left = t->cost_us * (t->t.rows - t->rows_done) / t->t.rows;
            s->held_us -= t->cost_us - left;
            t->cost_us = left;
            s->rows_held -= p[i].rows;
            t->rows_freed += p[i].rows;
            continue;
        }
        s->held_us -= t->cost_us;
        t->cost_us = 0;
    }
    if (!ok || n <= 0) return;
    learn(s, p, n, us);
    for (int i = 0; i < s->n; i++) {    /* admitted before anything was measured */
        struct worker_task *t = s->q[i];
        if (t->cost_us == 0 && t->rows_queued == 0) {
            t->cost_us = estimate(s, pace_of(s, &t->t), t);
            s->held_us += t->cost_us;
        }
    }
}

int gpuq_sched_add(struct gpuq_sched *s, struct worker_task *t, int64_t now_us) {
    if (s->n == s->cap) return -1;
    t->cost_us = estimate(s, pace_of(s, &t->t), t);
    s->held_us += t->cost_us;
    t->arrival_us = now_us;
    t->seq = s->seq++;
    int lo = 0, hi = s->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cmp(s->q[mid], t) < 0) lo = mid + 1;
        else hi = mid;
    }
    memmove(s->q + lo + 1, s->q + lo, (size_t)(s->n - lo) * sizeof(*s->q));
    s->q[lo] = t;
    s->n++;
    s->rows_held += t->t.rows;
    return 0;
}

int64_t gpuq_sched_room(const struct gpuq_sched *s) {
    int64_t room = s->max_inflight - s->rows_held;
    if (s->max_drain_us <= 0 || s->worst_us_per_row <= 0) return room;    /* nothing measured yet */
    double left = (double)(s->max_drain_us - s->held_us);
    int64_t by_time = left <= 0 ? 0 : (int64_t)(left / s->worst_us_per_row);
    if (left > 0 && by_time < 1) by_time = 1;
    return by_time < room ? by_time : room;
}

void gpuq_sched_release(struct gpuq_sched *s, struct worker_task *t) {
    s->rows_held -= t->t.rows - t->rows_freed;
    s->held_us -= t->cost_us;   /* a task that never ran (its deadline passed) */
    t->cost_us = 0;
}

int gpuq_sched_take_back(struct gpuq_sched *s, int64_t keep_us, struct worker_task **out, int max) {
    int got = 0;
    for (int i = s->n - 1; i >= 0 && got < max && s->held_us > keep_us; i--) {
        struct worker_task *t = s->q[i];
        if (t->rows_queued) continue;
        gpuq_sched_release(s, t);
        out[got++] = t;
        memmove(s->q + i, s->q + i + 1, (size_t)(s->n - i - 1) * sizeof(*s->q));
        s->n--;
    }
    return got;
}

/* Drops tasks with nothing left to hand out, keeping the order. */
static void compact(struct gpuq_sched *s) {
    int w = 0;
    for (int r = 0; r < s->n; r++)
        if (s->q[r]->rows_queued < s->q[r]->t.rows) s->q[w++] = s->q[r];
    s->n = w;
}

int gpuq_sched_expire(struct gpuq_sched *s, int64_t now_ms, struct worker_task **out, int max) {
    int got = 0;
    for (int i = 0; i < s->n && got < max; i++) {
        struct worker_task *t = s->q[i];
        if (t->deadline_ms && now_ms > t->deadline_ms && t->rows_queued == 0) {
            out[got++] = t;
            t->rows_queued = t->t.rows;     /* nothing of it will run */
        }
    }
    if (got) compact(s);
    return got;
}

/* Whether q[i], under way (some of its rows handed out), yields to a task
 * after it in [i, end) of the same queue, priority and deadline with none
 * handed out. */
static int yields(const struct gpuq_sched *s, int i, int end) {
    const struct worker_task *t = s->q[i];
    if (!t->rows_queued) return 0;
    for (int j = i + 1; j < end; j++) {
        const struct worker_task *u = s->q[j];
        if (u->entry.queue != t->entry.queue || u->t.job.priority != t->t.job.priority ||
            u->deadline_ms != t->deadline_ms)
            return 0;
        if (!u->rows_queued) return 1;
    }
    return 0;
}

static int took(const struct gpuq_piece *out, int n, const struct worker_task *t) {
    for (int i = 0; i < n; i++)
        if (out[i].t == &t->t) return 1;
    return 0;
}

/* The most rows of t from row0 on, at most left of them, that weigh at
 * most room. */
static int64_t fit(const struct gpuq_task *t, int64_t row0, int64_t left, int64_t room) {
    if (!t->token_off) return left < room ? left : room;
    int64_t lo = 0, hi = left;      /* weight is monotone in rows: bisect */
    while (lo < hi) {
        int64_t mid = hi - (hi - lo) / 2;
        if (weight(t, row0, mid) <= room) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

int gpuq_sched_next(struct gpuq_sched *s, int64_t now_us, int force, struct gpuq_piece *out,
                    int max, int64_t *wait_us) {
    int best = -1, best_end = 0;
    *wait_us = -1;
    /* each run of one key is a candidate batch; its first task is its best */
    for (int i = 0, end; i < s->n; i = end) {
        int64_t load = 0, oldest = INT64_MAX;
        int64_t budget = s->q[i]->t.token_off ? s->max_tokens : s->max_batch;
        for (end = i; end < s->n && gpuq_ops_compare(&s->q[i]->t, &s->q[end]->t) == 0; end++) {
            const struct worker_task *t = s->q[end];
            load += weight(&t->t, t->rows_queued, t->t.rows - t->rows_queued);
            if (t->arrival_us < oldest) oldest = t->arrival_us;
        }
        int64_t due = oldest + s->max_delay_us - now_us;
        if (force || load >= budget || due <= 0) {
            if (best < 0 || order(s->q[i], s->q[best]) < 0) best = i, best_end = end;
        } else if (*wait_us < 0 || due < *wait_us) {
            *wait_us = due;
        }
    }
    if (best < 0) return 0;
    int n = 0, stop = 0, first_pass = 0;
    int64_t load = 0, budget = s->q[best]->t.token_off ? s->max_tokens : s->max_batch;
    /* first pass: a task already under way yields to one of its rank not yet
     * started, so that a job of many batches never holds a newer one back by
     * more than one batch; second pass: those that yielded */
    for (int pass = 0; pass < 2 && !stop; pass++)
        for (int i = best; i < best_end && n < max && load < budget; i++) {
            struct worker_task *t = s->q[i];
            if (t->rows_queued == t->t.rows || (pass == 0 && yields(s, i, best_end)) ||
                (pass == 1 && took(out, first_pass, t)))
                continue;
            int64_t left = t->t.rows - t->rows_queued, take = fit(&t->t, t->rows_queued, left, budget - load);
            take -= take % t->t.unit;
            if (take == 0) {
                if (load > 0 && t->t.token_off) continue;   /* a later job's texts may fit */
                if (load > 0) {     /* the next unit does not fit: it leads the next batch */
                    stop = 1;
                    break;
                }
                take = left < t->t.unit ? left : t->t.unit;     /* one unit larger than a batch */
            }
            out[n++] = (struct gpuq_piece){&t->t, t->rows_queued, take};
            load += weight(&t->t, t->rows_queued, take);
            t->rows_queued += take;
            if (pass == 0) first_pass = n;
        }
    compact(s);
    return n;
}
