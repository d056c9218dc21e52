/* stream_int.h -- what stream.c (connection, reading) and publish.c
 * (writing) share. Private to queue/. */
#ifndef GPUQ_STREAM_INT_H
#define GPUQ_STREAM_INT_H

#include "queue/stream.h"

/* Sets err and errstr (hiredis style). */
void gpuq_stream_set_error(struct gpuq_stream *s, int type, const char *str);
/* After an I/O error the context is useless: drops it, so callers reconnect. */
void gpuq_stream_drop(struct gpuq_stream *s);
/* On a cluster, points rc at the master of queue q's slot, connecting when
 * needed. Returns 0, or -1 with errstr (every connection dropped). */
int gpuq_stream_use(struct gpuq_stream *s, int q);
/* Frees what the writing half allocated. */
void gpuq_stream_free_writes(struct gpuq_stream *s);

#endif
