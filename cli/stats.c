/* stats.c -- a queue at a glance, and waiting for one job's result. */
#include "worker/clock.h"
#include "cli/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue/client.h"
#include "cli/target.h"
#include "cli/enqueue.h"

/* Parses the target flags; other flags go to fn. Returns the index of the
 * first positional argument, -1 when there is none, -2 on a bad flag. */
static int parse(struct gpuq_cli_target *t, int argc, char **argv,
                 int (*fn)(void *ud, const char *flag, const char *value), void *ud) {
    gpuq_cli_target_init(t);
    int positional = -1;
    for (int i = 0; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (argv[i][0] != '-') {
            if (positional < 0) positional = i;
            continue;
        }
        if (!v || (!gpuq_cli_target_flag(t, argv[i], v) && (!fn || fn(ud, argv[i], v) != 0))) return -2;
        i++;
    }
    return positional;
}

static int stats_flag(void *ud, const char *flag, const char *value) {
    if (strcmp(flag, "--window") != 0 || atof(value) <= 0) return -1;
    *(double *)ud = atof(value);
    return 0;
}

int gpuq_stats_main(int argc, char **argv) {
    struct gpuq_cli_target c;
    double window = 1.0;
    if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: gpuq stats [--queue Q] [--window SECONDS] [--redis URL] [--prefix P]\n\n"
               "Shows a queue: stream length, backlog (not yet delivered), pending (delivered, not\n"
               "acked), dead letters, webhooks owed, consumers with their pending and idle time, and\n"
               "results per second over the window [1 s].\n");
        return 0;
    }
    if (parse(&c, argc, argv, stats_flag, &window) != -1) {
        fprintf(stderr, "gpuq stats: bad arguments (see gpuq stats --help)\n");
        return 2;
    }
    redisContext *rc = gpuq_cli_connect(&c, "stats");
    if (!rc) return 2;
    struct gpuq_queue_stats a, b;
    char err[256];
    int result = 1;
    double t0 = gpuq_mono_s();
    if (gpuq_client_stats(rc, c.prefix, c.queue, &a, err, sizeof(err)) != 0) goto fail;
    struct timespec ts = {(time_t)window, (long)((window - (time_t)window) * 1e9)};
    nanosleep(&ts, NULL);
    if (gpuq_client_stats(rc, c.prefix, c.queue, &b, err, sizeof(err)) != 0) goto fail;
    double dt = gpuq_mono_s() - t0;
    printf("queue %s (prefix %s)\n", c.queue, c.prefix);
    if (b.length < 0) {
        printf("  no stream yet: nothing has been enqueued and no worker has served it\n");
    } else {
        printf("  stream length   %lld\n", (long long)b.length);
        printf("  backlog         %lld\n", (long long)b.backlog);
        printf("  pending         %lld\n", (long long)b.pending);
        if (a.read >= 0 && b.read >= 0)
            printf("  results/s       %.1f  (acked over %.1f s)\n",
                   ((b.read - b.pending) - (a.read - a.pending)) / dt, dt);
    }
    printf("  dead letters    %lld\n", (long long)(b.dead > 0 ? b.dead : 0));
    printf("  webhooks owed   %lld\n", (long long)(b.hooks > 0 ? b.hooks : 0));
    printf("  consumers       %d\n", b.n_consumers);
    for (int i = 0; i < b.n_consumers; i++)
        printf("    %-32s pending %-6lld idle %.1f s\n", b.consumers[i].name,
               (long long)b.consumers[i].pending, b.consumers[i].idle_ms / 1000.0);
    result = 0;
    goto out;
fail:
    fprintf(stderr, "gpuq stats: %s\n", err);
out:
    redisFree(rc);
    return result;
}

static int wait_flag(void *ud, const char *flag, const char *value) {
    if (strcmp(flag, "--timeout") != 0 || atof(value) < 0) return -1;
    *(double *)ud = atof(value);
    return 0;
}

int gpuq_wait_main(int argc, char **argv) {
    struct gpuq_cli_target c;
    double timeout = 30;
    if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: gpuq wait ID [--timeout SECONDS] [--queue Q] [--redis URL] [--prefix P]\n\n"
               "Waits until job ID's result is stored (P:{Q}:result:ID), then prints it. Exit status:\n"
               "0 ok, 1 an error result, 3 no result within the timeout [30 s].\n");
        return 0;
    }
    int id = parse(&c, argc, argv, wait_flag, &timeout);
    if (id < 0) {
        fprintf(stderr, "gpuq wait: name a job id (see gpuq wait --help)\n");
        return 2;
    }
    redisContext *rc = gpuq_cli_connect(&c, "wait");
    if (!rc) return 2;
    char err[256], *bytes = NULL;
    size_t len = 0;
    double deadline = gpuq_mono_s() + timeout;
    int got;
    while ((got = gpuq_client_result(rc, c.prefix, c.queue, argv[id], &bytes, &len, err, sizeof(err))) == 0 &&
           gpuq_mono_s() < deadline) {
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    redisFree(rc);
    if (got < 0) {
        fprintf(stderr, "gpuq wait: %s\n", err);
        return 1;
    }
    if (got == 0) {
        fprintf(stderr, "gpuq wait: no result for %s within %.1f s\n", argv[id], timeout);
        return 3;
    }
    int ok = gpuq_print_result(bytes, len, NULL);
    free(bytes);
    return ok ? 0 : 1;
}
