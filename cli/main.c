/* main.c -- `gpuq`: one program, subcommands: the daemon (worker/) and the
 * client commands (cli/). */
#include <stdio.h>
#include <string.h>

#include "cli/bench.h"
#include "cli/dead.h"
#include "cli/enqueue.h"
#include "cli/http/main.h"
#include "cli/stats.h"
#include "worker/worker.h"

static void usage(FILE *f) {
    fprintf(f, "usage: gpuq <command> [flags]\n\n"
               "gpuq batches small compute jobs from Redis queues into large GEMMs and kernels.\n\n"
               "commands:\n"
               "  worker     serve queues: fetch, batch, compute, write results\n"
               "  enqueue    put jobs on a queue from the shell, optionally wait for results\n"
               "  stats      a queue at a glance: backlog, pending, consumers, results/s\n"
               "  wait       wait for a job's result by id and print it\n"
               "  dead       list, retry or purge dead letters\n"
               "  http       serve HTTP: OpenAI- and TEI-compatible embeddings, jobs, a dashboard\n"
               "  bench-compute  the batched GEMMs of an mlp with no queue: the ceiling\n"
               "  version    print the version\n"
               "  help       this text\n\n"
               "`gpuq <command> --help` describes each command's flags.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "worker") == 0) return gpuq_worker_main(argc - 2, argv + 2);
    if (strcmp(cmd, "enqueue") == 0) return gpuq_enqueue_main(argc - 2, argv + 2);
    if (strcmp(cmd, "stats") == 0) return gpuq_stats_main(argc - 2, argv + 2);
    if (strcmp(cmd, "wait") == 0) return gpuq_wait_main(argc - 2, argv + 2);
    if (strcmp(cmd, "bench-compute") == 0) return gpuq_bench_main(argc - 2, argv + 2);
    if (strcmp(cmd, "dead") == 0) return gpuq_dead_main(argc - 2, argv + 2);
    if (strcmp(cmd, "http") == 0) return gpuq_http_main(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("gpuq %s\n", GPUQ_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "gpuq: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
