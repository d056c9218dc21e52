/* dead.c -- inspect dead letters and put them back on their queue. */
#include "cli/dead.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/client.h"
#include "queue/dead.h"
#include "cli/target.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: gpuq dead list  [--count N] [--json] [flags]\n"
        "       gpuq dead retry (ID... | --all) [flags]\n"
        "       gpuq dead purge (ID... | --all) [flags]\n\n"
        "Dead letters are jobs that could not be decoded, poison jobs whose worker died on every\n"
        "delivery, and webhooks that failed every attempt. retry puts a dead letter's job back on\n"
        "its queue (and deletes the letter); purge deletes letters.\n\n"
        "  --redis URL, --queue Q, --prefix P   as for gpuq worker (also GPUQ_REDIS, ...)\n"
        "  --redis-ca F, --redis-cert F, --redis-key F, --redis-insecure   rediss://: as for gpuq worker\n"
        "  --count N                            letters to list [100]\n"
        "  --json                               list: one JSON array of the letters\n");
}

struct ids {
    char **v;
    int n;
};

/* Prints one letter: its id, attempts, error, and what the job was; as
 * text, or appended to the JSON array ud. */
static void print_dead(void *ud, const struct gpuq_dead *d) {
    char code[64] = "?", msg[200] = "", op[64] = "", id[200] = "";
    const char *format = "none";
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    if (d->error.len && msgpack_unpack_next(&u, d->error.ptr, d->error.len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR) continue;
            if (k->via.str.size == 4 && !memcmp(k->via.str.ptr, "code", 4))
                snprintf(code, sizeof(code), "%.*s", (int)v->via.str.size, v->via.str.ptr);
            else
                snprintf(msg, sizeof(msg), "%.*s", (int)v->via.str.size, v->via.str.ptr);
        }
    msgpack_unpacked_destroy(&u);
    struct gpuq_job job;
    char what[200] = "no job bytes";
    if (d->job.len && d->job.ptr[0] == '{') {
        format = "json";
        snprintf(what, sizeof(what), "JSON job, %zu bytes", d->job.len);
    } else if (d->job.len) {
        format = "undecodable";
        if (gpuq_job_decode(&job, d->job.ptr, d->job.len, NULL) == GPUQ_DECODE_UNDECODABLE) {
            snprintf(what, sizeof(what), "undecodable, %zu bytes", d->job.len);
        } else {
            format = "msgpack";
            snprintf(op, sizeof(op), "%.*s", (int)job.op_name.len, job.op_name.ptr ? job.op_name.ptr : "");
            snprintf(id, sizeof(id), "%.*s", (int)job.id.len, job.id.ptr ? job.id.ptr : "");
            snprintf(what, sizeof(what), "op %s id %s, %zu bytes", op, id[0] ? id : "-", d->job.len);
        }
        gpuq_job_free(&job);
    }
    if (ud) {
        json_t *o = json_pack("{s:s%,s:I,s:s,s:s,s:s,s:I}", "id", d->id.ptr, d->id.len, "attempts",
                              (json_int_t)d->attempts, "code", code, "message", msg, "job_format", format,
                              "job_bytes", (json_int_t)d->job.len);
        if (o && op[0]) json_object_set_new(o, "op", json_string(op));
        if (o && id[0]) json_object_set_new(o, "job_id", json_string(id));
        if (o && d->callback.len) json_object_set_new(o, "callback", json_stringn(d->callback.ptr, d->callback.len));
        if (o) json_array_append_new(ud, o);
        return;
    }
    printf("%.*s  attempts %lld  %s: %s  (%s)%s%.*s\n", (int)d->id.len, d->id.ptr,
           (long long)d->attempts, code, msg, what, d->callback.len ? "  callback " : "",
           (int)d->callback.len, d->callback.ptr ? d->callback.ptr : "");
}

/* Whether s is a stream entry id: MS or MS-SEQ, in digits. */
static int is_entry_id(const char *s) {
    size_t ms = strspn(s, "0123456789");
    if (ms == 0 || ms > 20) return 0;
    if (!s[ms]) return 1;
    size_t seq = strspn(s + ms + 1, "0123456789");
    return s[ms] == '-' && seq > 0 && seq <= 20 && !s[ms + 1 + seq];
}

static void collect(void *ud, const struct gpuq_dead *d) {
    struct ids *ids = ud;
    char **v = realloc(ids->v, (size_t)(ids->n + 1) * sizeof(char *));
    if (!v) return;
    ids->v = v;
    ids->v[ids->n++] = strndup(d->id.ptr, d->id.len);
}

int gpuq_dead_main(int argc, char **argv) {
    struct gpuq_cli_target t;
    gpuq_cli_target_init(&t);
    struct ids ids = {0};
    int all = 0, json = 0, result = 2;
    double count = 100;
    char err[256] = "";
    struct gpuq_conn *c = NULL;
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    const char *cmd = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--all")) all = 1;
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (gpuq_cli_target_switch(&t, argv[i])) continue;
        else if (v && gpuq_cli_target_flag(&t, argv[i], v)) i++;
        else if (!strcmp(argv[i], "--count")) {
            if (gpuq_cli_number("dead", "--count", v, 1, 0, 100000, 1, &count) != 0) goto out;
            i++;
        } else if (argv[i][0] != '-') {
            if (!is_entry_id(argv[i])) {
                fprintf(stderr, "gpuq dead: '%s' is not a dead letter id: ids are stream entry ids such as "
                                "1700000000000-0, as gpuq dead list shows them\n", argv[i]);
                goto out;
            }
            collect(&ids, &(struct gpuq_dead){.id = {argv[i], strlen(argv[i])}});
        } else {
            fprintf(stderr, "gpuq dead: bad flag %s (see gpuq dead --help)\n", argv[i]);
            goto out;
        }
    }
    int is_list = !strcmp(cmd, "list"), is_retry = !strcmp(cmd, "retry"), is_purge = !strcmp(cmd, "purge");
    if (!is_list && !is_retry && !is_purge) {
        fprintf(stderr, "gpuq dead: unknown command '%s' (list, retry, purge)\n", cmd);
        goto out;
    }
    if (!is_list && !all && ids.n == 0) {
        fprintf(stderr, "gpuq dead %s: name dead letter ids, or --all\n", cmd);
        goto out;
    }
    if (!(c = gpuq_cli_connect(&t, "dead"))) goto out;
    result = 1;
    if (is_list) {
        json_t *list = json ? json_array() : NULL;
        int n = gpuq_dead_list(c, t.prefix, t.queue, "-", (int)count, print_dead, list, err, sizeof(err));
        char *text = n >= 0 && list ? json_dumps(list, JSON_COMPACT) : NULL;
        if (text) printf("%s\n", text);
        free(text);
        json_decref(list);
        if (n < 0) goto fail;
        if (n == 0 && !json) printf("no dead letters on %s\n", t.queue);
        result = 0;
        goto out;
    }
    if (is_purge && all) {
        long long n = gpuq_dead_purge(c, t.prefix, t.queue, NULL, err, sizeof(err));
        if (n < 0) goto fail;
        printf("purged %lld dead letters from %s\n", n, t.queue);
        result = 0;
        goto out;
    }
    if (all) {  /* page through every letter first: retrying deletes as it goes */
        char from[80] = "-";
        for (;;) {
            int before = ids.n;
            if (gpuq_dead_list(c, t.prefix, t.queue, from, 500, collect, &ids, err, sizeof(err)) < 0) goto fail;
            if (ids.n == before) break;
            snprintf(from, sizeof(from), "(%s", ids.v[ids.n - 1]);
        }
    }
    long long done = 0;
    for (int i = 0; i < ids.n; i++) {
        long long rc = is_retry ? gpuq_dead_retry(c, t.prefix, t.queue, ids.v[i], err, sizeof(err))
                                : gpuq_dead_purge(c, t.prefix, t.queue, ids.v[i], err, sizeof(err));
        if (rc < 0) goto fail;
        if (rc == 0 && is_retry) printf("%s: not retried (no such letter, or no job bytes)\n", ids.v[i]);
        done += rc;
    }
    printf("%s %lld dead letters on %s\n", is_retry ? "retried" : "purged", done, t.queue);
    result = 0;
    goto out;
fail:
    fprintf(stderr, "gpuq dead: %s\n", err);
out:
    for (int i = 0; i < ids.n; i++) free(ids.v[i]);
    free(ids.v);
    gpuq_conn_free(c);
    return result;
}
