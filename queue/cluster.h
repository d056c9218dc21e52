/* cluster.h -- Redis Cluster routing: the slot map (CLUSTER SLOTS), one
 * connection per master the caller needs, and commands that follow MOVED
 * (refreshing the map) and ASK (one-off ASKING). No knowledge of queues. */
#ifndef GPUQ_CLUSTER_H
#define GPUQ_CLUSTER_H

#include <stdint.h>

#include "queue/conn.h"
#include "queue/slot.h"
#include "queue/url.h"

#define GPUQ_CLUSTER_NODES 64

struct gpuq_cluster_node {
    char host[256];
    int port;
    struct gpuq_conn *rc;       /* NULL until needed; reopened when it failed */
};

struct gpuq_cluster {
    struct gpuq_redis_url url;  /* the seed, and the credentials (and TLS) for every node */
    struct gpuq_tls *tls;       /* borrowed: for rediss://, every node's TLS */
    int timeout_ms;
    int n_nodes;                /* every master seen, kept across refreshes */
    struct gpuq_cluster_node nodes[GPUQ_CLUSTER_NODES];
    int16_t owner[GPUQ_SLOTS];  /* node of each slot, -1 when none holds it */
    char err[256];
};

/* Whether c speaks to a cluster node (INFO cluster): 1, 0 (also when INFO
 * is refused), or -1 when the connection failed (err set). */
int gpuq_cluster_detect(struct gpuq_conn *c, char *err, size_t errlen);

/* For a client that needs one slot: a connection to the master serving
 * slot, found through the seed. NULL with err. The caller frees it. */
struct gpuq_conn *gpuq_cluster_connect_slot(const struct gpuq_redis_url *seed, struct gpuq_tls *tls,
                                            int slot, int timeout_ms, char *err, size_t errlen);

/* Allocates a cluster with an empty map; NULL when out of memory. tls (for
 * rediss://, else NULL) is borrowed and must outlive it. */
struct gpuq_cluster *gpuq_cluster_create(const struct gpuq_redis_url *seed, struct gpuq_tls *tls,
                                         int timeout_ms);
/* Closes every connection and frees c (NULL is fine). */
void gpuq_cluster_destroy(struct gpuq_cluster *c);
/* Closes every connection; the map and the nodes are kept. */
void gpuq_cluster_close(struct gpuq_cluster *c);

/* Reads the slot map from the seed, or, when it does not answer, from any
 * node seen before. Returns 0, or -1 with err. */
int gpuq_cluster_refresh(struct gpuq_cluster *c);

/* The connection to the owner of slot, opened when needed. NULL with err
 * when no node holds the slot or it does not answer. */
struct gpuq_conn *gpuq_cluster_conn(struct gpuq_cluster *c, int slot);

/* Runs one command on the owner of slot, following up to five MOVED and
 * ASK redirections. Returns the reply (an error reply as it is), or NULL
 * with err when a node did not answer (its connection is reopened next
 * time). The caller frees the reply. */
redisReply *gpuq_cluster_command(struct gpuq_cluster *c, int slot, int argc, const char **argv,
                                 const size_t *lens);

/* Takes a "MOVED <slot> <host>:<port>" error: reads the map again, and
 * the slot is the named node's whatever it says. 0, or -1 when err is not
 * such an error. */
int gpuq_cluster_moved(struct gpuq_cluster *c, const char *err);

/* Whether an error reply says the slot is elsewhere or moving (MOVED, ASK,
 * TRYAGAIN) or the cluster cannot serve it now (CLUSTERDOWN). */
int gpuq_cluster_redirected(const char *err);

#endif
