/* stats.c -- a queue at a glance, and waiting for one job's result. */
#include "worker/clock.h"
#include "cli/stats.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/client.h"
#include "queue/stream.h"
#include "cli/target.h"
#include "cli/enqueue.h"

/* A command's own flags: --json, and one number flag with its range. */
struct flags {
    const char *who, *number;
    double min, max, value;
    int above, json;
};

/* Parses the target flags and f's. Returns the index of the first
 * positional argument, -1 when there is none, -2 after printing why the
 * arguments are bad. */
static int parse(struct gpuq_cli_target *t, struct flags *f, int argc, char **argv) {
    gpuq_cli_target_init(t);
    int positional = -1;
    for (int i = 0; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (argv[i][0] != '-') {
            if (positional < 0) positional = i;
        } else if (!strcmp(argv[i], "--json")) {
            f->json = 1;
        } else if (!strcmp(argv[i], f->number)) {
            if (gpuq_cli_number(f->who, argv[i], v, f->min, f->above, f->max, 0, &f->value) != 0) return -2;
            i++;
        } else if (gpuq_cli_target_switch(t, argv[i])) {
            continue;
        } else if (v && gpuq_cli_target_flag(t, argv[i], v)) {
            i++;
        } else {
            int known = !v && gpuq_cli_target_flag(&(struct gpuq_cli_target){0}, argv[i], "");
            fprintf(stderr, "gpuq %s: %s %s (see gpuq %s --help)\n", f->who, argv[i],
                    known ? "needs a value" : "is not a flag of this command", f->who);
            return -2;
        }
    }
    return positional;
}

static void print_json(json_t *o) {
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text) printf("%s\n", text);
    free(text);
    json_decref(o);
}

/* The second sample b, taken dt seconds after a, as one JSON object. */
static void stats_json(const struct gpuq_cli_target *c, const struct gpuq_queue_stats *a,
                       const struct gpuq_queue_stats *b, double dt) {
    json_t *o = json_pack("{s:s,s:s,s:b,s:I,s:I}", "queue", c->queue, "prefix", c->prefix, "exists",
                          b->length >= 0, "dead_letters", (json_int_t)(b->dead > 0 ? b->dead : 0),
                          "webhooks_owed", (json_int_t)(b->hooks > 0 ? b->hooks : 0));
    if (o && b->length >= 0) {
        json_object_set_new(o, "length", json_integer(b->length));
        json_object_set_new(o, "backlog", json_integer(b->backlog));
        json_object_set_new(o, "pending", json_integer(b->pending));
        if (a->read >= 0 && b->read >= 0)
            json_object_set_new(o, "results_per_s",
                                json_real(((b->read - b->pending) - (a->read - a->pending)) / dt));
    }
    json_t *list = json_array();
    for (int i = 0; list && i < b->n_consumers; i++)
        json_array_append_new(list, json_pack("{s:s,s:I,s:I}", "name", b->consumers[i].name, "pending",
                                              (json_int_t)b->consumers[i].pending, "idle_ms",
                                              (json_int_t)b->consumers[i].idle_ms));
    if (o) json_object_set_new(o, "consumers", list);
    else json_decref(list);
    print_json(o);
}

static void stats_text(const struct gpuq_cli_target *c, const struct gpuq_queue_stats *a,
                       const struct gpuq_queue_stats *b, double dt) {
    printf("queue %s (prefix %s)\n", c->queue, c->prefix);
    printf("  stream length   %lld\n", (long long)b->length);
    printf("  backlog         %lld\n", (long long)b->backlog);
    printf("  pending         %lld\n", (long long)b->pending);
    if (a->read >= 0 && b->read >= 0)
        printf("  results/s       %.1f  (acked over %.1f s)\n",
               ((b->read - b->pending) - (a->read - a->pending)) / dt, dt);
    printf("  dead letters    %lld\n", (long long)(b->dead > 0 ? b->dead : 0));
    printf("  webhooks owed   %lld\n", (long long)(b->hooks > 0 ? b->hooks : 0));
    printf("  consumers       %d\n", b->n_consumers);
    for (int i = 0; i < b->n_consumers; i++)
        printf("    %-32s pending %-6lld idle %.1f s\n", b->consumers[i].name,
               (long long)b->consumers[i].pending, b->consumers[i].idle_ms / 1000.0);
}

int gpuq_stats_main(int argc, char **argv) {
    struct gpuq_cli_target c;
    struct flags f = {"stats", "--window", 0, 3600, 1.0, 1, 0};
    if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: gpuq stats [--queue Q] [--window SECONDS] [--json] [--redis URL] [--prefix P]\n\n"
               "Shows a queue: stream length, backlog (not yet delivered), pending (delivered, not\n"
               "acked), dead letters, webhooks owed, consumers with their pending and idle time, and\n"
               "results per second over the window [1 s]. --json prints one JSON object. Exit status:\n"
               "0, 1 no such queue or a Redis error, 2 bad flags or no Redis. rediss:// takes\n"
               "--redis-ca, --redis-cert, --redis-key and --redis-insecure, as for gpuq worker.\n");
        return 0;
    }
    int pos = parse(&c, &f, argc, argv);
    if (pos != -1) {
        if (pos >= 0) fprintf(stderr, "gpuq stats: unexpected argument '%s' (see gpuq stats --help)\n", argv[pos]);
        return 2;
    }
    struct gpuq_conn *rc = gpuq_cli_connect(&c, "stats");
    if (!rc) return 2;
    struct gpuq_queue_stats a, b;
    char err[256];
    int result = 1;
    double t0 = gpuq_mono_s();
    if (gpuq_client_stats(rc, c.prefix, c.queue, &a, err, sizeof(err)) != 0) goto fail;
    if (a.length < 0) {     /* no stream: say so at once, no window to wait */
        char key[512];
        gpuq_stream_key(key, sizeof(key), c.prefix, c.queue, "jobs");
        if (f.json) stats_json(&c, &a, &a, 1);
        else fprintf(stderr, "gpuq stats: no queue %s: %s does not exist (nothing enqueued, no worker "
                             "served it; check --queue and --prefix)\n", c.queue, key);
        goto out;
    }
    struct timespec ts = {(time_t)f.value, (long)((f.value - (time_t)f.value) * 1e9)};
    nanosleep(&ts, NULL);
    if (gpuq_client_stats(rc, c.prefix, c.queue, &b, err, sizeof(err)) != 0) goto fail;
    double dt = gpuq_mono_s() - t0;
    (f.json ? stats_json : stats_text)(&c, &a, &b, dt);
    result = 0;
    goto out;
fail:
    fprintf(stderr, "gpuq stats: %s\n", err);
out:
    gpuq_conn_free(rc);
    return result;
}

int gpuq_wait_main(int argc, char **argv) {
    struct gpuq_cli_target c;
    struct flags f = {"wait", "--timeout", 0, 1e9, 30, 0, 0};
    if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: gpuq wait ID [--timeout SECONDS] [--json] [--queue Q] [--redis URL] [--prefix P]\n\n"
               "Waits until job ID's result is stored (P:{Q}:result:ID), then prints it (--json: as one\n"
               "line of JSON, tensor data in base64). Exit status: 0 ok, 1 an error result, 3 no result\n"
               "within the timeout [30 s]. rediss:// takes --redis-ca, --redis-cert, --redis-key and\n"
               "--redis-insecure, as for gpuq worker.\n");
        return 0;
    }
    int id = parse(&c, &f, argc, argv);
    if (id < 0) {
        if (id == -1) fprintf(stderr, "gpuq wait: name a job id (see gpuq wait --help)\n");
        return 2;
    }
    struct gpuq_conn *rc = gpuq_cli_connect(&c, "wait");
    if (!rc) return 2;
    char err[256], *bytes = NULL;
    size_t len = 0;
    double deadline = gpuq_mono_s() + f.value;
    int got;
    while ((got = gpuq_client_result(rc, c.prefix, c.queue, argv[id], &bytes, &len, err, sizeof(err))) == 0 &&
           gpuq_mono_s() < deadline) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    gpuq_conn_free(rc);
    if (got < 0) {
        fprintf(stderr, "gpuq wait: %s\n", err);
        return 1;
    }
    if (got == 0) {
        fprintf(stderr, "gpuq wait: no result for %s within %.1f s\n", argv[id], f.value);
        return 3;
    }
    int ok = gpuq_print_result(bytes, len, NULL, f.json);
    free(bytes);
    return ok ? 0 : 1;
}
