/* test_url.c -- Redis URL parsing. */
#include "check.h"
#include "queue/url.h"

int main(void) {
    struct gpuq_redis_url u;
    char err[256];
    CHECK(gpuq_redis_url_parse(&u, "redis://127.0.0.1:6379", err, sizeof(err)) == 0);
    CHECK_STR(u.host, "127.0.0.1");
    CHECK(u.port == 6379 && u.db == 0 && u.password[0] == 0);
    CHECK(gpuq_redis_url_parse(&u, "redis://:s3cret@cache.internal:7000/3", err, sizeof(err)) == 0);
    CHECK_STR(u.host, "cache.internal");
    CHECK_STR(u.password, "s3cret");
    CHECK(u.port == 7000 && u.db == 3 && u.user[0] == 0);
    CHECK(gpuq_redis_url_parse(&u, "redis://app:pw@h", err, sizeof(err)) == 0);
    CHECK_STR(u.user, "app");
    CHECK_STR(u.password, "pw");
    CHECK(u.port == 6379);
    CHECK(gpuq_redis_url_parse(&u, "unix:///run/redis.sock", err, sizeof(err)) == 0);
    CHECK_STR(u.path, "/run/redis.sock");
    CHECK(gpuq_redis_url_parse(&u, "unix:///run/redis.sock?db=2", err, sizeof(err)) == 0);
    CHECK(u.db == 2 && u.tls == 0);
    /* rediss://: the same fields, and TLS */
    CHECK(gpuq_redis_url_parse(&u, "redis://h:6380", err, sizeof(err)) == 0);
    CHECK(u.tls == 0);
    CHECK(gpuq_redis_url_parse(&u, "rediss://default:tok3n@cache.example.com:6380/2", err,
                               sizeof(err)) == 0);
    CHECK(u.tls == 1 && u.port == 6380 && u.db == 2);
    CHECK_STR(u.host, "cache.example.com");
    CHECK_STR(u.user, "default");
    CHECK_STR(u.password, "tok3n");
    CHECK(gpuq_redis_url_parse(&u, "rediss://:pw@10.0.0.7", err, sizeof(err)) == 0);
    CHECK(u.tls == 1 && u.port == 6379 && u.user[0] == 0);
    CHECK_STR(u.host, "10.0.0.7");
    CHECK_STR(u.password, "pw");
    CHECK(gpuq_redis_url_parse(&u, "rediss://h/", err, sizeof(err)) == 0);
    CHECK(u.tls == 1 && u.db == 0);
    char where[300];
    CHECK_STR(gpuq_redis_url_where(&u, where, sizeof(where)), "h:6379");
    const char *bad[] = {"http://h:1", "redis://", "redis://h:0", "redis://h:70000", "redis://h:x",
                         "redis://h/db", "redis://user@h", "unix://relative", "", "redis://:pw@",
                         "rediss://", "rediss://:pw@", "rediss://h:0", "redis:/h", "redisss://h",
                         "rediss//h", "rediss://user@h", "unixs:///run/r.sock"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(gpuq_redis_url_parse(&u, bad[i], err, sizeof(err)) == -1);
        CHECK(strstr(err, "pw") == NULL);   /* never echo a password */
    }
    return check_done("test_url");
}
