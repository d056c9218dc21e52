/* test_resp.c -- commands written as RESP (queue/conn.h's gpuq_resp_format)
 * byte for byte as hiredis's redisFormatCommandArgv writes them: binary
 * values, empty ones, strlen'd ones, many arguments, and appended after
 * what a buffer already holds. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "queue/conn.h"

/* argv through both; the buffer starts holding "x" (an earlier command). */
static void same(int argc, const char **argv, const size_t *lens) {
    char *want = NULL, *buf = malloc(1);
    size_t len = 1, cap = 1;
    buf[0] = 'x';
    int n = redisFormatCommandArgv(&want, argc, argv, lens);
    CHECK(n > 0);
    CHECK(gpuq_resp_format(&buf, &len, &cap, argc, argv, lens) == 0);
    CHECK(len == (size_t)n + 1 && cap >= len && buf[0] == 'x');
    CHECK(n > 0 && len == (size_t)n + 1 && memcmp(buf + 1, want, (size_t)n) == 0);
    redisFreeCommand(want);
    free(buf);
}

int main(void) {
    const char *set[] = {"SET", "gpuq:{default}:result:j1", "a\0b\r\n", "EX", "3600"};
    size_t set_l[] = {3, 24, 5, 2, 4};
    same(5, set, set_l);
    const char *empty[] = {"RPUSH", "l", ""};
    size_t empty_l[] = {5, 1, 0};
    same(3, empty, empty_l);
    const char *bare[] = {"MULTI"};
    same(1, bare, NULL);            /* lens NULL: strlen */
    /* a long value and past ten arguments: lengths of several digits */
    enum { N = 1203 };
    const char *many[N];
    size_t many_l[N];
    char *big = malloc(100000);
    memset(big, 'v', 100000);
    for (int i = 0; i < N; i++) many[i] = big, many_l[i] = (size_t)(i * 83) % 100000;
    same(N, many, many_l);
    free(big);
    return check_done("test_resp");
}
