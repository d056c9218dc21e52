/* stream_int.h -- what stream.c (connection, reading) and publish.c
 * (writing) share. Private to queue/. */
#ifndef GPUQ_STREAM_INT_H
#define GPUQ_STREAM_INT_H

#include "queue/stream.h"

/* What the writes of one transaction owe Redis besides results: acks (XACK
 * and XDEL) of job and webhook entries, and reply-list pushes, each grouped
 * per key when the transaction is sent (publish.c). */
struct gpuq_ack;
struct gpuq_push;
struct gpuq_pushed;

/* The writing half of a connection (publish.c): the open transaction, and
 * the reply lists Redis refused, kept across the transactions built again. */
struct gpuq_tx {
    int tx_queue;           /* the queue of the open transaction's first write, or -1 */
    char *txbuf;            /* its commands, formatted, sent behind MULTI */
    size_t txbuf_len, txbuf_cap;
    int n_cmds;             /* commands in txbuf */
    int queued;             /* commands sent, MULTI and EXEC included */
    int failed;             /* an append failed: the MULTI must not be committed */
    int sent;               /* replies owed by a sent transaction */
    size_t tx_bytes;        /* bytes of values put into it */
    int *tags;              /* per queued command: the push it carries, or -1 */
    int cap_tags;
    struct gpuq_ack *acks;
    int n_acks, cap_acks;
    struct gpuq_push *pushes;
    int n_pushes, cap_pushes;
    struct gpuq_pushed *vals;
    int n_vals, cap_vals;
    char *arena;            /* the pushed values' bytes */
    size_t arena_len, arena_cap;
    struct gpuq_refused refused[GPUQ_MAX_REFUSED];
    int n_refused;
};

/* Sets err and errstr (hiredis style). */
void gpuq_stream_set_error(struct gpuq_stream *s, int type, const char *str);
/* After an I/O error the context is useless: drops it, so callers reconnect. */
void gpuq_stream_drop(struct gpuq_stream *s);
/* On a cluster, points rc at the master of queue q's slot, connecting when
 * needed. Returns 0, or -1 with errstr (every connection dropped). */
int gpuq_stream_use(struct gpuq_stream *s, int q);
/* Runs one command (on a cluster, on the master of the slot last used,
 * following MOVED and ASK); returns the reply, or NULL with errstr
 * (connection dropped on I/O errors). An error reply is returned as it is. */
redisReply *gpuq_stream_command(struct gpuq_stream *s, int argc, const char **argv, const size_t *lens);
/* Runs a command whose reply only says whether it worked; an error that
 * starts with ok_error, or ok_error2, counts as working. 0, or -1 with errstr. */
int gpuq_stream_simple(struct gpuq_stream *s, int argc, const char **argv, const char *ok_error,
                       const char *ok_error2);
/* The monotonic clock in microseconds. */
int64_t gpuq_stream_now_us(void);
/* Frees what the writing half allocated. */
void gpuq_stream_free_writes(struct gpuq_stream *s);

#endif
