/* pool.c -- idle Redis connections per queue. */
#include "cli/http/pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUEUES 64
#define MAX_IDLE 64

struct queue_pool {
    char name[128];
    struct gpuq_conn *idle[MAX_IDLE];
    int n_idle;
};

struct gpuq_http_pool {
    struct gpuq_cli_target base;
    pthread_mutex_t lock;
    struct queue_pool queues[MAX_QUEUES];
    int n_queues;
};

struct gpuq_http_pool *gpuq_http_pool_create(const struct gpuq_cli_target *base) {
    struct gpuq_http_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->base = *base;
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

void gpuq_http_pool_destroy(struct gpuq_http_pool *p) {
    if (!p) return;
    for (int q = 0; q < p->n_queues; q++)
        for (int i = 0; i < p->queues[q].n_idle; i++) gpuq_conn_free(p->queues[q].idle[i]);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* The queue's pool, made on first use; lock held. NULL when full. */
static struct queue_pool *find(struct gpuq_http_pool *p, const char *queue) {
    for (int q = 0; q < p->n_queues; q++)
        if (!strcmp(p->queues[q].name, queue)) return &p->queues[q];
    if (p->n_queues == MAX_QUEUES || strlen(queue) >= sizeof(p->queues[0].name)) return NULL;
    struct queue_pool *qp = &p->queues[p->n_queues++];
    strcpy(qp->name, queue);
    return qp;
}

struct gpuq_conn *gpuq_http_pool_get(struct gpuq_http_pool *p, const char *queue) {
    struct gpuq_conn *c = NULL;
    pthread_mutex_lock(&p->lock);
    struct queue_pool *qp = find(p, queue);
    if (qp && qp->n_idle) c = qp->idle[--qp->n_idle];
    pthread_mutex_unlock(&p->lock);
    if (c || !qp) return c;
    struct gpuq_cli_target t = p->base;
    t.queue = queue;
    if ((c = gpuq_cli_connect(&t, "http"))) gpuq_conn_set_timeout(c, 5000);
    return c;
}

void gpuq_http_pool_put(struct gpuq_http_pool *p, const char *queue, struct gpuq_conn *c, int broken) {
    if (!c) return;
    if (!broken && !c->err) {
        pthread_mutex_lock(&p->lock);
        struct queue_pool *qp = find(p, queue);
        if (qp && qp->n_idle < MAX_IDLE) {
            qp->idle[qp->n_idle++] = c;
            c = NULL;
        }
        pthread_mutex_unlock(&p->lock);
    }
    gpuq_conn_free(c);
}
