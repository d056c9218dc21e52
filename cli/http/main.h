/* main.h -- `gpuq http`: the front door (server.c). */
#ifndef GPUQ_HTTP_MAIN_H
#define GPUQ_HTTP_MAIN_H

/* Serves until SIGTERM or SIGINT: 0; bad flags or no Redis: 2. */
int gpuq_http_main(int argc, char **argv);

#endif
