/* cluster.c -- Redis Cluster routing: the slot map, a connection per
 * master (TCP or TLS, as the seed's URL says), MOVED and ASK. */
#include "queue/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/client.h"

int gpuq_cluster_detect(struct gpuq_conn *c, char *err, size_t errlen) {
    redisReply *r = gpuq_conn_command(c, "INFO cluster");
    if (!r) {
        snprintf(err, errlen, "INFO cluster: %s", c->errstr);
        return -1;
    }
    /* INFO refused (an ACL without it): taken for a single Redis, as before clusters */
    int on = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1") != NULL;
    freeReplyObject(r);
    return on;
}

struct gpuq_cluster *gpuq_cluster_create(const struct gpuq_redis_url *seed, struct gpuq_tls *tls,
                                         int timeout_ms) {
    struct gpuq_cluster *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->url = *seed;
    c->tls = tls;
    c->url.db = 0;      /* a cluster has only db 0 */
    c->timeout_ms = timeout_ms;
    memset(c->owner, 0xff, sizeof(c->owner));
    return c;
}

void gpuq_cluster_close(struct gpuq_cluster *c) {
    for (int i = 0; c && i < c->n_nodes; i++)
        if (c->nodes[i].rc) {
            gpuq_conn_free(c->nodes[i].rc);
            c->nodes[i].rc = NULL;
        }
}

void gpuq_cluster_destroy(struct gpuq_cluster *c) {
    gpuq_cluster_close(c);
    free(c);
}

/* The index of node host:port, added when new; -1 when the table is full. */
static int node(struct gpuq_cluster *c, const char *host, size_t host_len, int port) {
    if (host_len >= sizeof(c->nodes[0].host)) return -1;
    for (int i = 0; i < c->n_nodes; i++)
        if (c->nodes[i].port == port && strlen(c->nodes[i].host) == host_len &&
            !memcmp(c->nodes[i].host, host, host_len))
            return i;
    if (c->n_nodes == GPUQ_CLUSTER_NODES) {
        snprintf(c->err, sizeof(c->err), "more than %d cluster masters", GPUQ_CLUSTER_NODES);
        return -1;
    }
    struct gpuq_cluster_node *n = &c->nodes[c->n_nodes];
    memcpy(n->host, host, host_len);
    n->host[host_len] = 0;
    n->port = port;
    n->rc = NULL;
    return c->n_nodes++;
}

/* The open connection to node i, (re)opened when needed; NULL with err. */
static struct gpuq_conn *open_node(struct gpuq_cluster *c, int i) {
    struct gpuq_cluster_node *n = &c->nodes[i];
    if (n->rc && !n->rc->err) return n->rc;
    if (n->rc) gpuq_conn_free(n->rc);
    struct gpuq_redis_url u = c->url;
    snprintf(u.host, sizeof(u.host), "%s", n->host);
    u.port = n->port;
    u.path[0] = 0;
    char err[192];
    if (!(n->rc = gpuq_redis_connect(&u, c->tls, c->timeout_ms, err, sizeof(err))))
        snprintf(c->err, sizeof(c->err), "%s:%d: %s", n->host, n->port, err);
    return n->rc;
}

/* Reads CLUSTER SLOTS over rc into the map; host stands in for a node that
 * does not know its own address. */
static int read_slots(struct gpuq_cluster *c, struct gpuq_conn *rc, const char *host) {
    redisReply *r = gpuq_conn_command(rc, "CLUSTER SLOTS");
    int result = -1;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(c->err, sizeof(c->err), "CLUSTER SLOTS: %s", !r ? rc->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        goto out;
    }
    memset(c->owner, 0xff, sizeof(c->owner));
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
            e->element[2]->elements < 2 || e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        const redisReply *m = e->element[2];
        const char *h = m->element[0]->len && strcmp(m->element[0]->str, "?") ? m->element[0]->str : host;
        int n = node(c, h, strlen(h), (int)m->element[1]->integer);
        if (n < 0) goto out;
        for (long long s = e->element[0]->integer; s <= e->element[1]->integer && s < GPUQ_SLOTS; s++)
            if (s >= 0) c->owner[s] = (int16_t)n;
    }
    result = 0;
out:
    if (r) freeReplyObject(r);
    return result;
}

int gpuq_cluster_refresh(struct gpuq_cluster *c) {
    char err[192];
    struct gpuq_conn *seed = gpuq_redis_connect(&c->url, c->tls, c->timeout_ms, err, sizeof(err));
    if (seed) {
        int rc = read_slots(c, seed, c->url.host);
        gpuq_conn_free(seed);
        if (rc == 0) return 0;
    } else {
        snprintf(c->err, sizeof(c->err), "%s", err);
    }
    /* the seed may be the master that died: ask the others */
    for (int i = 0; i < c->n_nodes; i++) {
        struct gpuq_conn *rc = open_node(c, i);
        if (rc && read_slots(c, rc, c->nodes[i].host) == 0) return 0;
    }
    return -1;
}

struct gpuq_conn *gpuq_cluster_conn(struct gpuq_cluster *c, int slot) {
    int n = c->owner[slot];
    if (n < 0) {
        snprintf(c->err, sizeof(c->err), "no cluster node holds slot %d", slot);
        return NULL;
    }
    return open_node(c, n);
}

int gpuq_cluster_redirected(const char *err) {
    static const char *const codes[] = {"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN"};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (!strncmp(err, codes[i], strlen(codes[i]))) return 1;
    return 0;
}

/* Parses "MOVED|ASK <slot> <host>:<port>" into the node it names; -1. */
static int target(struct gpuq_cluster *c, const char *err) {
    const char *sp = strchr(err, ' '), *addr = sp ? strchr(sp + 1, ' ') : NULL;
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon) return -1;
    addr++;
    return node(c, addr, (size_t)(colon - addr), atoi(colon + 1));
}

/* slot is served by node n now: the map is read again, as other slots
 * may have moved too, but n holds slot whatever it says. */
static void moved_to(struct gpuq_cluster *c, int slot, int n) {
    gpuq_cluster_refresh(c);
    c->owner[slot] = (int16_t)n;
}

int gpuq_cluster_moved(struct gpuq_cluster *c, const char *err) {
    int n = strncmp(err, "MOVED ", 6) ? -1 : target(c, err);
    if (n < 0) return -1;
    moved_to(c, atoi(err + 6) % GPUQ_SLOTS, n);
    return 0;
}

redisReply *gpuq_cluster_command(struct gpuq_cluster *c, int slot, int argc, const char **argv,
                                 const size_t *lens) {
    struct gpuq_conn *rc = gpuq_cluster_conn(c, slot);
    int asking = 0;
    for (int hop = 0; rc; hop++) {
        redisReply *r = NULL;
        if (asking && (gpuq_conn_appendf(rc, "ASKING") != 0 ||
                       gpuq_conn_reply(rc, &r) != 0))
            break;
        if (r) freeReplyObject(r);
        if (!(r = gpuq_conn_command_argv(rc, argc, argv, lens))) break;
        int moved = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED ", 6);
        asking = r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "ASK ", 4);
        if ((!moved && !asking) || hop == 5) return r;
        int n = target(c, r->str);
        freeReplyObject(r);
        if (n < 0) {
            snprintf(c->err, sizeof(c->err), "a redirection names no usable node");
            return NULL;
        }
        if (moved) moved_to(c, slot, n);
        rc = open_node(c, n);
    }
    if (rc) snprintf(c->err, sizeof(c->err), "%s", rc->errstr[0] ? rc->errstr : "I/O error");
    return NULL;
}

struct gpuq_conn *gpuq_cluster_connect_slot(const struct gpuq_redis_url *seed, struct gpuq_tls *tls,
                                            int slot, int timeout_ms, char *err, size_t errlen) {
    struct gpuq_cluster *c = gpuq_cluster_create(seed, tls, timeout_ms);
    struct gpuq_conn *rc = NULL;
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (gpuq_cluster_refresh(c) == 0 && (rc = gpuq_cluster_conn(c, slot)))
        c->nodes[c->owner[slot]].rc = NULL;     /* the caller's now */
    else
        snprintf(err, errlen, "%s", c->err);
    gpuq_cluster_destroy(c);
    return rc;
}
