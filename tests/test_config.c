/* test_config.c -- worker flags, environment variables and their precedence. */
#include <stdarg.h>
#include <stdlib.h>

#include "check.h"
#include "worker/config.h"

static int parse(struct gpuq_config *c, char *err, int argc, ...) {
    char *argv[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) argv[i] = va_arg(ap, char *);
    va_end(ap);
    return gpuq_config_parse(c, argc, argv, err, 256);
}

int main(void) {
    struct gpuq_config c;
    char err[256];
    CHECK(parse(&c, err, 0) == 0);
    CHECK_STR(c.redis, "redis://127.0.0.1:6379");
    CHECK(c.n_queues == 1 && strcmp(c.queues[0], "default") == 0);
    CHECK(c.max_batch == 256 && c.max_delay_us == 2000 && c.max_attempts == 5);
    CHECK(c.claim_idle_ms == 30000 && c.result_ttl == 3600 && c.device == 0);
    CHECK_STR(c.backend, "auto");
    CHECK_STR(c.prefix, "gpuq");
    CHECK(c.consumer && strchr(c.consumer, ':'));
    gpuq_config_free(&c);

    CHECK(parse(&c, err, 7, "--queue", "hi", "--queue=default", "--max-batch", "7",
                "--model", "m=/x.safetensors") == 0);
    CHECK(c.n_queues == 2 && strcmp(c.queues[0], "hi") == 0 && strcmp(c.queues[1], "default") == 0);
    CHECK(c.max_batch == 7 && c.n_models == 1);
    gpuq_config_free(&c);

    /* a flag given twice: the last wins */
    CHECK(parse(&c, err, 5, "--max-batch", "8", "--max-batch=64", "--prefix", "a") == 0);
    CHECK(c.max_batch == 64 && c.max_drain_ms == 20000);
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 4, "--prefix", "a", "--prefix", "b") == 0);
    CHECK_STR(c.prefix, "b");
    gpuq_config_free(&c);

    /* the environment, and a flag winning over it */
    setenv("GPUQ_QUEUE", "a,b,c", 1);
    setenv("GPUQ_MAX_BATCH", "64", 1);
    setenv("GPUQ_RESULT_TTL", "0", 1);
    CHECK(parse(&c, err, 0) == 0);
    CHECK(c.n_queues == 3 && strcmp(c.queues[2], "c") == 0);
    CHECK(c.max_batch == 64 && c.result_ttl == 0);
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 4, "--queue", "z", "--max-batch", "9") == 0);
    CHECK(c.n_queues == 1 && strcmp(c.queues[0], "z") == 0 && c.max_batch == 9);
    gpuq_config_free(&c);
    setenv("GPUQ_MAX_BATCH", "lots", 1);
    CHECK(parse(&c, err, 0) == -1 && strstr(err, "GPUQ_MAX_BATCH") != NULL);
    gpuq_config_free(&c);
    unsetenv("GPUQ_QUEUE");
    unsetenv("GPUQ_MAX_BATCH");
    unsetenv("GPUQ_RESULT_TTL");

    CHECK(parse(&c, err, 1, "--max-bach") == -1 && strstr(err, "unknown flag '--max-bach'"));
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 2, "--max-batch", "0") == -1 && strstr(err, "--max-batch"));
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 1, "--redis") == -1 && strstr(err, "needs a value"));
    gpuq_config_free(&c);
    /* rediss:// options: --redis-insecure takes no value, its variable yes or no */
    CHECK(parse(&c, err, 0) == 0);
    CHECK(!c.redis_ca && !c.redis_cert && !c.redis_key && c.redis_insecure == 0);
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 6, "--redis-insecure", "--redis-ca", "/ca.pem", "--redis-cert=/c.pem",
                "--max-batch", "9") == 0);
    CHECK(c.redis_insecure == 1 && c.max_batch == 9);
    CHECK_STR(c.redis_ca, "/ca.pem");
    CHECK_STR(c.redis_cert, "/c.pem");
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 1, "--redis-insecure=no") == 0 && c.redis_insecure == 0);
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 1, "--redis-insecure=maybe") == -1 && strstr(err, "--redis-insecure"));
    gpuq_config_free(&c);
    setenv("GPUQ_REDIS_INSECURE", "true", 1);
    setenv("GPUQ_REDIS_KEY", "/k.pem", 1);
    CHECK(parse(&c, err, 0) == 0 && c.redis_insecure == 1);
    CHECK_STR(c.redis_key, "/k.pem");
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 1, "--redis-insecure=0") == 0 && c.redis_insecure == 0);
    gpuq_config_free(&c);
    setenv("GPUQ_REDIS_INSECURE", "2", 1);
    CHECK(parse(&c, err, 0) == -1 && strstr(err, "GPUQ_REDIS_INSECURE"));
    gpuq_config_free(&c);
    unsetenv("GPUQ_REDIS_INSECURE");
    unsetenv("GPUQ_REDIS_KEY");
    CHECK(parse(&c, err, 1, "stray") == -1 && strstr(err, "unexpected argument"));
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 2, "--webhook-secret", "nope") == -1 && strstr(err, "whsec_"));
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 1, "--help") == 0 && c.help == 1);
    gpuq_config_free(&c);
    /* --precision, and its former name --mlp-precision, GPUQ_MLP_PRECISION */
    CHECK(parse(&c, err, 0) == 0);
    CHECK_STR(c.precision, "f32");
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 2, "--mlp-precision", "bf16") == 0);
    CHECK_STR(c.precision, "bf16");
    gpuq_config_free(&c);
    setenv("GPUQ_MLP_PRECISION", "f16", 1);
    CHECK(parse(&c, err, 0) == 0);
    CHECK_STR(c.precision, "f16");
    gpuq_config_free(&c);
    setenv("GPUQ_PRECISION", "bf16", 1);    /* the new name wins */
    CHECK(parse(&c, err, 0) == 0);
    CHECK_STR(c.precision, "bf16");
    gpuq_config_free(&c);
    CHECK(parse(&c, err, 1, "--precision=f32") == 0);    /* a flag wins */
    CHECK_STR(c.precision, "f32");
    gpuq_config_free(&c);
    unsetenv("GPUQ_MLP_PRECISION");
    unsetenv("GPUQ_PRECISION");
    CHECK(parse(&c, err, 1, "--mlp-precisio") == -1 && strstr(err, "unknown flag"));
    gpuq_config_free(&c);
    return check_done("test_config");
}
